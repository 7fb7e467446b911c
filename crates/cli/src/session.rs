//! `ringfence session`: start a sandbox once, run many commands in it, stop it, list them.

use crate::args::{SessionCommand, SessionExecArgs, SessionStartArgs};
use crate::{emit, report};
use ringfence::session::DEFAULT_IDLE;
use ringfence::{exit_code, Owner, Session, SessionInfo, Stdio};
use ringfence_audit::untrusted::for_terminal;
use std::io::IsTerminal;

pub fn session(command: SessionCommand, signals: ringfence::Signals) -> i32 {
    let done = match command {
        SessionCommand::Start(args) => start(*args),
        SessionCommand::Exec(args) => return exec(args, signals),
        SessionCommand::Stop { session } => Session::open(session).stop(),
        SessionCommand::List { json } => list(json),
    };
    match done {
        Ok(()) => 0,
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    }
}

fn start(args: SessionStartArgs) -> Result<(), ringfence::Error> {
    let policy = ringfence::load_policy(&args.policy.sources(), args.policy.overrides())?;
    let idle = args.idle_timeout.map_or(DEFAULT_IDLE, |d| d.0);
    let info = Session::start_with(policy, args.name, Owner::Parent, idle)?;
    emit(&if args.json { format!("{}\n", json(&info)) } else { format!("{}\n", info.id) });
    Ok(())
}

fn list(as_json: bool) -> Result<(), ringfence::Error> {
    for info in Session::list()? {
        emit(&if as_json {
            format!("{}\n", json(&info))
        } else {
            format!(
                "{}  {}  pid {}  {}\n",
                info.id,
                for_terminal(info.name.as_deref().unwrap_or("-")),
                info.pid,
                for_terminal(&info.workspace.display().to_string())
            )
        });
    }
    Ok(())
}

fn json(info: &SessionInfo) -> serde_json::Value {
    serde_json::to_value(info).unwrap_or_default()
}

/// Runs one command; exits with its code, 128+N for a signal, or 124 when its time ran out.
fn exec(args: SessionExecArgs, mut signals: ringfence::Signals) -> i32 {
    let mut argv = args.command.into_iter();
    let program = argv.next().unwrap_or_default();
    // As for `run`: terminals among the streams are relayed through pipes, so that none of the
    // command's terminal ioctls reach the user's session.
    let relay = |is_tty: bool| if is_tty { Stdio::Piped } else { Stdio::Inherit };
    let mut command = Session::open(args.session)
        .command(program)
        .args(argv)
        .background(args.background)
        .stdin(relay(std::io::stdin().is_terminal()))
        .stdout(relay(std::io::stdout().is_terminal()))
        .stderr(relay(std::io::stderr().is_terminal()));
    if let Some(timeout) = args.timeout {
        command = command.timeout(timeout.0);
    }
    let mut outputs = Vec::new();
    let ended = command.status_forwarding(&mut signals, |[stdin, stdout, stderr]| {
        outputs = crate::run::relay(stdin, stdout, stderr);
    });
    for relay in outputs {
        let _ = relay.join();
    }
    if let Ok(end) = &ended {
        crate::run::report_findings(&[], &end.findings, &end.review_failures, &|_| {});
    }
    match ended {
        Ok(end) if !end.review_failures.is_empty() => exit_code::REVIEW,
        Ok(end) if end.timed_out => {
            report_end("the command's time ran out; it was killed", exit_code::TIMEOUT);
            exit_code::TIMEOUT
        }
        Ok(end) if end.memory_limit && end.exit != ringfence::session::Exit::Code(0) => {
            report_end("the memory limit was reached; the command was killed", exit_code::LIMIT);
            exit_code::LIMIT
        }
        Ok(end) => match end.exit {
            ringfence::session::Exit::Code(code) => code,
            ringfence::session::Exit::Signal(sig) => 128 + sig,
        },
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    }
}

/// Says why ringfence ended the command, as `run` does.
fn report_end(why: &str, code: i32) {
    eprintln!("ringfence: {why} (exit {code})");
}
