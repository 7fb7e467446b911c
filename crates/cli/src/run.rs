//! `ringfence run`: start the sandbox, relay, record, and exit with the command's code.

use crate::args::RunArgs;
use crate::report;
use ringfence::{exit_code, Command, EndReason, ExitStatus, Stdio};
use ringfence_audit::untrusted::for_terminal;
use ringfence_audit::{EventBody, EventWriter, Rusage};
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The run's event file, shared with the gateway's threads.
pub type Events = Option<Arc<Mutex<EventWriter>>>;

fn emit(events: &Events, body: EventBody) {
    if let Some(w) = events {
        let _ = w.lock().unwrap_or_else(|p| p.into_inner()).emit(body);
    }
}

/// Distinct refusals told on stderr; the rest are only in the event file, so a command that
/// tries endless names can't flood the terminal or grow ringfence's memory.
const NOTICES: usize = 32;

/// Where the gateway's events go: the event file, and a notice on stderr for each distinct
/// refusal so the user sees why a download failed. The notice quotes what the sandbox sent
/// (names, header values): shown escaped and bounded.
fn gateway_sink(events: Events) -> impl Fn(EventBody) + Send + Sync + 'static {
    let told: Mutex<HashSet<(String, u16, String)>> = Mutex::new(HashSet::new());
    let newline = if std::io::stderr().is_terminal() { "\r\n" } else { "\n" };
    move |body: EventBody| {
        if let EventBody::NetDeny { host, port, reason, detail, .. } = &body {
            let mut told = told.lock().unwrap_or_else(|p| p.into_inner());
            if told.len() < NOTICES && told.insert((host.clone(), *port, reason.clone())) {
                let _ = write!(std::io::stderr(), "ringfence: network: {}{newline}", for_terminal(detail));
                if told.len() == NOTICES {
                    let more = "ringfence: network: further refusals are not shown here; --events records each one";
                    let _ = write!(std::io::stderr(), "{more}{newline}");
                }
            }
        }
        emit(&events, body);
    }
}

fn run_id() -> String {
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}", t.as_millis(), std::process::id())
}

pub fn run(args: RunArgs, mut signals: ringfence::Signals) -> i32 {
    ringfence::trace::start(args.trace_launch);
    let mut policy = match ringfence::load_policy(&args.policy.sources(), args.policy.overrides()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return exit_code::POLICY;
        }
    };
    ringfence::trace::mark("cli", "policy loaded");
    // The digest names the policy as configured; the rules that protect ringfence's own output
    // files are not part of it.
    let digest = policy.digest();
    let mut outputs = match crate::record::open(args.events.as_deref(), args.json_status.as_ref(), &mut policy) {
        Ok(o) => o,
        Err(e) => {
            report(&e.message);
            return e.code;
        }
    };
    ringfence::arm_signals(&mut signals);
    let events: Events = outputs.events.take().map(|file| Arc::new(Mutex::new(EventWriter::new(file, run_id()))));
    let mut argv = args.command.into_iter();
    let program = argv.next().unwrap_or_default();
    let rest: Vec<_> = argv.collect();
    let terminal = !args.no_pty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let request = Request {
        argv: std::iter::once(&program).chain(rest.iter()).map(|a| a.to_string_lossy().into_owned()).collect(),
        cwd: policy.workspace.display().to_string(),
        profile: policy.profile.to_string(),
        digest,
        allow_degraded: policy.allow_degraded,
    };
    let limits = policy.limits.clone();
    // Without a terminal of its own, the command must not get ours either: a terminal's
    // ioctls (line discipline, modes, window size) would reach the user's session. Terminals
    // among the streams are relayed through pipes instead.
    let relay = |is_tty: bool| if !terminal && is_tty { Stdio::Piped } else { Stdio::Inherit };
    let tty = [std::io::stdin().is_terminal(), std::io::stdout().is_terminal(), std::io::stderr().is_terminal()];
    let command = Command::new(&program)
        .args(&rest)
        .policy(policy)
        .stdin(relay(tty[0]))
        .stdout(relay(tty[1]))
        .stderr(relay(tty[2]))
        .terminal(terminal)
        .on_event(gateway_sink(events.clone()));
    // run.start comes first in the file: the gateway's events wait for this lock.
    let mut head = events.as_ref().map(|w| w.lock().unwrap_or_else(|p| p.into_inner()));
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return e.exit_code();
        }
    };
    let start = start_events(request, &child);
    if let Some(w) = head.as_mut() {
        for event in start {
            let _ = w.emit(event);
        }
    }
    drop(head);
    ringfence::trace::mark("cli", "run.start, proc.exec written");
    let relays = relay_streams(&mut child);
    let status = match child.wait_forwarding(&mut signals) {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return e.exit_code();
        }
    };
    // The sandbox is gone, so its ends of the pipes are closed: the output relays finish.
    for relay in relays {
        let _ = relay.join();
    }
    let code = finish(&status, &limits, &events, outputs.status);
    ringfence::trace::mark("cli", "findings, run.end, --json-status written");
    code
}

/// After the run: why it ended, the git review's findings, run.end, and --json-status.
fn finish(
    status: &ExitStatus,
    limits: &ringfence_policy::Limits,
    events: &Events,
    target: Option<std::fs::File>,
) -> i32 {
    explain_end(status, limits, events);
    report_review(status, events);
    emit(
        events,
        EventBody::RunEnd {
            exit_code: status.code(),
            signal: status.signal(),
            status: status.exit_code(),
            reason: status.reason.name().into(),
            duration_ms: status.duration.as_millis() as u64,
            rusage: rusage(status),
        },
    );
    if let Some(mut target) = target {
        if let Err(e) = target.write_all(format!("{}\n", status_json(status)).as_bytes()) {
            report(&format!("--json-status: {e}"));
        }
    }
    status.exit_code()
}

/// What run.start and proc.exec say about the request, taken before the policy moves into the
/// command.
struct Request {
    argv: Vec<String>,
    cwd: String,
    profile: String,
    digest: String,
    /// Warn on stderr about what is not enforced (otherwise only run.start records it).
    allow_degraded: bool,
}

/// Warns about the protections this run lacks (with --allow-degraded), and returns the
/// run.start and proc.exec events.
fn start_events(request: Request, child: &ringfence::Child) -> [EventBody; 2] {
    let (enforced, not_enforced) = child.layers();
    // Without --allow-degraded only defaults this machine can't carry can be missing (anything
    // asked for would have refused the run): run.start records them, and `check` and `explain`
    // say how to get them, rather than every run's stderr.
    for layer in not_enforced.iter().filter(|_| request.allow_degraded) {
        eprintln!("ringfence: warning: not enforced (--allow-degraded): {}: {}", layer.name, layer.detail);
    }
    [
        EventBody::RunStart {
            argv: request.argv.clone(),
            cwd: request.cwd.clone(),
            profile: request.profile,
            policy_digest: request.digest,
            enforced,
            not_enforced,
            kernel: child.platform_json(),
        },
        EventBody::ProcExec {
            pid: child.command_id().unwrap_or(0),
            ppid: child.id(),
            argv: request.argv,
            cwd: request.cwd,
        },
    ]
}

/// What --json-status writes: run.end's fields without the event's own.
fn status_json(status: &ExitStatus) -> serde_json::Value {
    serde_json::json!({
        "exit_code": status.code(),
        "signal": status.signal(),
        "status": status.exit_code(),
        "reason": status.reason.name(),
        "duration_ms": status.duration.as_millis() as u64,
        "rusage": rusage(status),
    })
}

/// The clean-up's warnings, and what the post-run review moved aside (warnings) and what it could not review
/// (errors, which make the run's exit code 120), on stderr and as `policy.deny` events.
fn report_review(status: &ExitStatus, events: &Events) {
    report_findings(&status.warnings, &status.git_findings, &status.review_failures, events);
}

/// The clean-up's warnings and the review's findings on stderr (and in the events); what the
/// review could not check as errors, with the remedy.
pub fn report_findings(
    warnings: &[String],
    findings: &[ringfence::ReviewFinding],
    failures: &[ringfence::ReviewFinding],
    events: &Events,
) {
    for warning in warnings {
        eprintln!("ringfence: warning: {}", for_terminal(warning));
    }
    for finding in findings {
        eprintln!("ringfence: warning: {}: {}", for_terminal(&finding.path), for_terminal(&finding.detail));
        let text = format!("{}: {}", finding.path.display(), finding.detail);
        emit(events, EventBody::PolicyDeny { rule: finding.rule.into(), detail: text });
    }
    for failure in failures {
        eprintln!(
            "ringfence: error: the review after the run could not check {}: {}",
            for_terminal(&failure.path),
            for_terminal(&failure.detail)
        );
        let text = format!("{}: {}", failure.path.display(), failure.detail);
        emit(events, EventBody::PolicyDeny { rule: failure.rule.into(), detail: text });
    }
    if !failures.is_empty() {
        eprintln!(
            "  help: something the command left there may run code when you use git, direnv or an editor in that \
             folder: look at it (and move aside or delete what you did not expect) before you do (exit {})",
            exit_code::REVIEW
        );
    }
}

/// Copies piped streams between the command and our terminal. The input relay is not joined:
/// it may wait on the terminal after the command ended, and ends with the process.
fn relay_streams(child: &mut ringfence::Child) -> Vec<std::thread::JoinHandle<()>> {
    relay(child.stdin.take(), child.stdout.take(), child.stderr.take())
}

/// Copies our stdin to the command's and its outputs to ours, on threads; the output threads
/// to join once the command ended (the input one ends with the process).
pub fn relay(
    stdin: Option<std::fs::File>,
    stdout: Option<std::fs::File>,
    stderr: Option<std::fs::File>,
) -> Vec<std::thread::JoinHandle<()>> {
    if let Some(mut to_child) = stdin {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_child);
        });
    }
    let mut joins = Vec::new();
    if let Some(mut from) = stdout {
        joins.push(std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut std::io::stdout().lock());
        }));
    }
    if let Some(mut from) = stderr {
        joins.push(std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut std::io::stderr().lock());
        }));
    }
    joins
}

fn rusage(status: &ExitStatus) -> Rusage {
    Rusage {
        user_ms: status.user_time.as_millis() as u64,
        system_ms: status.system_time.as_millis() as u64,
        max_rss_kb: status.max_rss_kb,
    }
}

/// Says why ringfence ended the run, on stderr and in the events.
fn explain_end(status: &ExitStatus, limits: &ringfence_policy::Limits, events: &Events) {
    let text = |v: Option<String>| v.unwrap_or_default();
    let (limit, value, message) = match &status.reason {
        EndReason::Timeout => (
            "timeout",
            text(limits.timeout.map(|t| t.to_string())),
            format!("timed out after {:.1}s; the command was killed", status.duration.as_secs_f64()),
        ),
        EndReason::MemoryLimit => (
            "memory",
            text(limits.memory.map(|m| m.to_string())),
            "the memory limit was reached; the command was killed".to_string(),
        ),
        EndReason::PidsLimit => (
            "pids",
            text(limits.pids.map(|p| p.to_string())),
            "the process limit was reached (fork failed inside the sandbox)".to_string(),
        ),
        EndReason::ExecFailed(msg) => {
            eprintln!("ringfence: {}", for_terminal(msg));
            return;
        }
        _ => return,
    };
    eprintln!("ringfence: {message} (exit {})", status.exit_code());
    emit(events, EventBody::LimitHit { limit: limit.into(), value, detail: message });
}
