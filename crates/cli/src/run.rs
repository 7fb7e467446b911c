//! `ringfence run`: start the sandbox, relay, record, and exit with the command's code.

use crate::args::RunArgs;
use crate::report;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use ringfence::{exit_code, Command, EndReason, ExitStatus, Stdio};
use ringfence_audit::{EventBody, EventWriter, Layer, Rusage};
use std::io::IsTerminal;
use std::time::SystemTime;

/// Blocks the signals the supervisor forwards and returns a descriptor to read them from.
pub fn block_forwarded_signals() -> Option<SignalFd> {
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

fn layers(list: &[ringfence::linux::LayerStatus]) -> Vec<Layer> {
    list.iter().map(|l| Layer { name: l.name.clone(), detail: l.detail.clone() }).collect()
}

pub fn run(args: RunArgs, mut signals: Option<SignalFd>) -> i32 {
    let policy = match ringfence::load_policy(&args.policy.sources(), args.policy.overrides()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return exit_code::POLICY;
        }
    };
    if let Some(fd) = args.json_status {
        if !ringfence::linux::inherited_fd_is_open(fd) {
            report(&format!("--json-status {fd}: descriptor {fd} is not open (open it, e.g. `{fd}>status.json`)"));
            return exit_code::POLICY;
        }
    }
    let mut events = match &args.events {
        Some(path) => match EventWriter::create(path, run_id()) {
            Ok(w) => Some(w),
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
    let profile = policy.profile.to_string();
    let digest = policy.digest();
    let command = Command::new(&program)
        .args(&rest)
        .policy(policy)
        .stdin(Stdio::Inherit)
        .stdout(Stdio::Inherit)
        .stderr(Stdio::Inherit)
        .terminal(terminal);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return e.exit_code();
        }
    };
    let enforcement = child.enforcement().clone();
    for layer in &enforcement.not_enforced {
        eprintln!("ringfence: warning: not enforced (--allow-degraded): {}: {}", layer.name, layer.detail);
    }
    if let Some(w) = events.as_mut() {
        let _ = w.emit(EventBody::RunStart {
            argv: argv_text.clone(),
            cwd: cwd.display().to_string(),
            profile,
            policy_digest: digest,
            enforced: layers(&enforcement.enforced),
            not_enforced: layers(&enforcement.not_enforced),
            kernel: serde_json::json!({
                "release": enforcement.kernel,
                "landlock_abi": enforcement.landlock_abi,
                "limits": enforcement.limits,
            }),
        });
        let _ = w.emit(EventBody::ProcExec {
            pid: child.command_id().unwrap_or(0),
            ppid: child.id(),
            argv: argv_text,
            cwd: cwd.display().to_string(),
        });
    }
    let status = match child.wait_forwarding(signals.as_mut()) {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return e.exit_code();
        }
    };
    let code = status.exit_code();
    explain_end(&status, &limits, events.as_mut());
    for (path, detail) in &status.git_findings {
        eprintln!("ringfence: warning: {}: {detail}", path.display());
        if let Some(w) = events.as_mut() {
            let _ =
                w.emit(EventBody::PolicyDeny { rule: "git".into(), detail: format!("{}: {detail}", path.display()) });
        }
    }
    if let Some(w) = events.as_mut() {
        let _ = w.emit(EventBody::RunEnd {
            exit_code: status.code(),
            signal: status.signal(),
            status: code,
            reason: status.reason.name().into(),
            duration_ms: status.duration.as_millis() as u64,
            rusage: rusage(&status),
        });
    }
    if let Some(fd) = args.json_status {
        let json = serde_json::json!({
            "exit_code": status.code(),
            "signal": status.signal(),
            "status": code,
            "reason": status.reason.name(),
            "duration_ms": status.duration.as_millis() as u64,
            "rusage": rusage(&status),
        });
        if let Err(e) = ringfence::linux::write_inherited_fd(fd, format!("{json}\n").as_bytes()) {
            report(&format!("--json-status {fd}: {e}"));
        }
    }
    code
}

fn rusage(status: &ExitStatus) -> Rusage {
    Rusage {
        user_ms: status.user_time.as_millis() as u64,
        system_ms: status.system_time.as_millis() as u64,
        max_rss_kb: status.max_rss_kb,
    }
}

/// Says why ringfence ended the run, on stderr and in the events.
fn explain_end(status: &ExitStatus, limits: &ringfence_policy::Limits, events: Option<&mut EventWriter>) {
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
    if let Some(w) = events {
        let _ = w.emit(EventBody::LimitHit { limit: limit.into(), value, detail: message });
    }
}
