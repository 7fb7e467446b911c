//! `ringfence run`: start the sandbox, relay, record, and exit with the command's code.

use crate::args::RunArgs;
use crate::report;
use ringfence::{exit_code, Command, EndReason, ExitStatus, Stdio};
use ringfence_audit::{EventBody, EventWriter, Rusage};
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The run's event file, shared with the gateway's threads.
type Events = Option<Arc<Mutex<EventWriter>>>;

fn emit(events: &Events, body: EventBody) {
    if let Some(w) = events {
        let _ = w.lock().unwrap_or_else(|p| p.into_inner()).emit(body);
    }
}

/// Distinct refusals told on stderr; the rest are only in the event file, so a command that
/// tries endless names can't flood the terminal or grow ringfence's memory.
const NOTICES: usize = 32;

/// Where the gateway's events go: the event file, and a notice on stderr for each distinct
/// refusal so the user sees why a download failed.
fn gateway_sink(events: Events) -> impl Fn(EventBody) + Send + Sync + 'static {
    let told: Mutex<HashSet<(String, u16, String)>> = Mutex::new(HashSet::new());
    let newline = if std::io::stderr().is_terminal() { "\r\n" } else { "\n" };
    move |body: EventBody| {
        if let EventBody::NetDeny { host, port, reason, detail, .. } = &body {
            let mut told = told.lock().unwrap_or_else(|p| p.into_inner());
            if told.len() < NOTICES && told.insert((host.clone(), *port, reason.clone())) {
                let _ = write!(std::io::stderr(), "ringfence: network: {detail}{newline}");
                if told.len() == NOTICES {
                    let more = "ringfence: network: further refusals are not shown here; --events records each one";
                    let _ = write!(std::io::stderr(), "{more}{newline}");
                }
            }
        }
        emit(&events, body);
    }
}

/// The terminal signals the supervisor passes on (Linux: a signalfd; Windows: console events
/// reach the sandbox's job directly).
#[cfg(target_os = "linux")]
pub type Signals = Option<nix::sys::signalfd::SignalFd>;
#[cfg(not(target_os = "linux"))]
pub type Signals = Option<()>;

/// Blocks the signals the supervisor forwards and returns a descriptor to read them from.
#[cfg(target_os = "linux")]
pub fn block_forwarded_signals() -> Signals {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    for sig in ringfence::linux::FORWARDED_SIGNALS {
        set.add(*sig);
    }
    set.add(Signal::SIGWINCH);
    set.thread_block().ok()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok()
}

fn run_id() -> String {
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}", t.as_millis(), std::process::id())
}

/// Whether `fd` was handed to us open, for --json-status.
#[cfg(target_os = "linux")]
fn status_fd_is_open(fd: i32) -> bool {
    ringfence::linux::inherited_fd_is_open(fd)
}

#[cfg(not(target_os = "linux"))]
fn status_fd_is_open(_: i32) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn write_status_fd(fd: i32, bytes: &[u8]) -> std::io::Result<()> {
    ringfence::linux::write_inherited_fd(fd, bytes)
}

#[cfg(not(target_os = "linux"))]
fn write_status_fd(_: i32, _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::other("--json-status is not supported on this platform; use --events"))
}

pub fn run(args: RunArgs, mut signals: Signals) -> i32 {
    let policy = match ringfence::load_policy(&args.policy.sources(), args.policy.overrides()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return exit_code::POLICY;
        }
    };
    if let Some(fd) = args.json_status {
        if !status_fd_is_open(fd) {
            report(&format!("--json-status {fd}: descriptor {fd} is not open (open it, e.g. `{fd}>status.json`)"));
            return exit_code::POLICY;
        }
    }
    let events: Events = match &args.events {
        Some(path) => match EventWriter::create(path, run_id()) {
            Ok(w) => Some(Arc::new(Mutex::new(w))),
            Err(e) => {
                report(&format!("--events {}: {e}", path.display()));
                return exit_code::POLICY;
            }
        },
        None => None,
    };
    let mut argv = args.command.into_iter();
    let program = argv.next().unwrap_or_default();
    let rest: Vec<_> = argv.collect();
    let terminal = !args.no_pty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let argv_text: Vec<String> =
        std::iter::once(&program).chain(rest.iter()).map(|a| a.to_string_lossy().into_owned()).collect();
    let cwd = policy.workspace.clone();
    let limits = policy.limits.clone();
    let allow_degraded = policy.allow_degraded;
    let profile = policy.profile.to_string();
    let digest = policy.digest();
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
    let (enforced, not_enforced) = child.layers();
    // Without --allow-degraded only defaults this machine can't carry can be missing (anything
    // asked for would have refused the run): run.start records them, and `check` and `explain`
    // say how to get them, rather than every run's stderr.
    for layer in not_enforced.iter().filter(|_| allow_degraded) {
        eprintln!("ringfence: warning: not enforced (--allow-degraded): {}: {}", layer.name, layer.detail);
    }
    if let Some(w) = head.as_mut() {
        let _ = w.emit(EventBody::RunStart {
            argv: argv_text.clone(),
            cwd: cwd.display().to_string(),
            profile,
            policy_digest: digest,
            enforced,
            not_enforced,
            kernel: child.platform_json(),
        });
        let _ = w.emit(EventBody::ProcExec {
            pid: child.command_id().unwrap_or(0),
            ppid: child.id(),
            argv: argv_text,
            cwd: cwd.display().to_string(),
        });
    }
    drop(head);
    #[cfg(windows)]
    {
        let killer = child.killer();
        let _ = ctrlc::set_handler(move || killer.kill());
    }
    let relays = relay_streams(&mut child);
    let status = match child.wait_forwarding(signals.as_mut()) {
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
    let code = status.exit_code();
    explain_end(&status, &limits, &events);
    for warning in &status.warnings {
        eprintln!("ringfence: warning: {warning}");
    }
    for (path, detail) in &status.git_findings {
        eprintln!("ringfence: warning: {}: {detail}", path.display());
        emit(&events, EventBody::PolicyDeny { rule: "git".into(), detail: format!("{}: {detail}", path.display()) });
    }
    emit(
        &events,
        EventBody::RunEnd {
            exit_code: status.code(),
            signal: status.signal(),
            status: code,
            reason: status.reason.name().into(),
            duration_ms: status.duration.as_millis() as u64,
            rusage: rusage(&status),
        },
    );
    if let Some(fd) = args.json_status {
        let json = serde_json::json!({
            "exit_code": status.code(),
            "signal": status.signal(),
            "status": code,
            "reason": status.reason.name(),
            "duration_ms": status.duration.as_millis() as u64,
            "rusage": rusage(&status),
        });
        if let Err(e) = write_status_fd(fd, format!("{json}\n").as_bytes()) {
            report(&format!("--json-status {fd}: {e}"));
        }
    }
    code
}

/// Copies piped streams between the command and our terminal. The input relay is not joined:
/// it may wait on the terminal after the command ended, and ends with the process.
fn relay_streams(child: &mut ringfence::Child) -> Vec<std::thread::JoinHandle<()>> {
    if let Some(mut to_child) = child.stdin.take() {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_child);
        });
    }
    let mut joins = Vec::new();
    if let Some(mut from) = child.stdout.take() {
        joins.push(std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut std::io::stdout().lock());
        }));
    }
    if let Some(mut from) = child.stderr.take() {
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
            eprintln!("ringfence: {msg}");
            return;
        }
        _ => return,
    };
    eprintln!("ringfence: {message} (exit {})", status.exit_code());
    emit(events, EventBody::LimitHit { limit: limit.into(), value, detail: message });
}
