//! `ringfence run`: start the sandbox, relay, record, and exit with the command's code.

use crate::args::RunArgs;
use crate::report;
use ringfence::{exit_code, Command, EndReason, ExitStatus, Stdio};
use ringfence_audit::untrusted::for_terminal;
use ringfence_audit::{EventBody, EventWriter, Rusage};
use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The run's event file, shared with the gateway's and the backend's threads.
pub type Events = Option<Arc<Mutex<EventWriter>>>;

/// Distinct refusals told on stderr; the rest are only in the event file, so a command that
/// tries endless names can't flood the terminal or grow ringfence's memory.
const NOTICES: usize = 32;

/// Where every event of the run goes: the event file, the counts for run.end, the summary for
/// --report, and a notice on stderr for each distinct refusal (a connection or an exec), so the
/// user sees why something failed. Notices quote what the sandbox chose (names, header
/// values, command lines): shown escaped and bounded.
struct Recorder {
    events: Events,
    tally: Mutex<Tally>,
    told: Mutex<HashSet<String>>,
    newline: &'static str,
}

/// What run.end and --report count from the events.
#[derive(Default)]
struct Tally {
    connections_allowed: u64,
    connections_denied: u64,
    /// With --report.
    summary: Option<crate::summary::Summary>,
}

impl Recorder {
    fn new(events: Events, run: &str, report: bool) -> Arc<Recorder> {
        let tally = Tally { summary: report.then(|| crate::summary::Summary::new(run)), ..Default::default() };
        let newline = if std::io::stderr().is_terminal() { "\r\n" } else { "\n" };
        Arc::new(Recorder { events, tally: Mutex::new(tally), told: Mutex::default(), newline })
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one event for run.end and the summary.
    fn count(&self, body: &EventBody) {
        let mut tally = self.tally();
        match body {
            EventBody::NetConnect { .. } => tally.connections_allowed += 1,
            EventBody::NetDeny { .. } => tally.connections_denied += 1,
            _ => {}
        }
        if let (Some(summary), Ok(value)) = (tally.summary.as_mut(), serde_json::to_value(body)) {
            summary.add(&value);
        }
    }

    /// Counts and writes one event.
    fn emit(&self, body: EventBody) {
        self.count(&body);
        if let Some(w) = &self.events {
            let _ = w.lock().unwrap_or_else(|p| p.into_inner()).emit(body);
        }
    }

    /// Tells a refusal on stderr, once per distinct refusal and at most [`NOTICES`] times.
    fn notice(&self, body: &EventBody) {
        let (key, what, text) = match body {
            EventBody::NetDeny { host, port, reason, detail, .. } => {
                (format!("{host}:{port}:{reason}"), "network", detail)
            }
            EventBody::PolicyDeny { rule, detail } if rule == "exec" => (detail.clone(), "exec", detail),
            _ => return,
        };
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        if told.len() < NOTICES && told.insert(key) {
            let newline = self.newline;
            let _ = write!(std::io::stderr(), "ringfence: {what}: {}{newline}", for_terminal(text));
            if told.len() == NOTICES {
                let more = "ringfence: further refusals are not shown here; --events records each one";
                let _ = write!(std::io::stderr(), "{more}{newline}");
            }
        }
    }

    /// The sink the library calls with the gateway's and the backend's events.
    fn sink(self: &Arc<Self>) -> impl Fn(EventBody) + Send + Sync + 'static {
        let recorder = self.clone();
        move |body: EventBody| {
            recorder.notice(&body);
            recorder.emit(body);
        }
    }
}

fn run_id() -> String {
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}", t.as_millis(), std::process::id())
}

/// The run's policy, its digest and its opened output files (which the policy then protects);
/// the exit code when one of them fails.
fn policy_and_outputs(args: &RunArgs) -> Result<(ringfence::Policy, String, crate::record::Outputs), i32> {
    let mut policy = ringfence::load_policy(&args.policy.sources(), args.policy.overrides()).map_err(|e| {
        report(&e);
        exit_code::POLICY
    })?;
    ringfence::trace::mark("cli", "policy loaded");
    // The digest names the policy as configured; the rules that protect ringfence's own output
    // files are not part of it.
    let digest = policy.digest();
    let outputs = crate::record::open(args.events.as_ref(), args.json_status.as_ref(), &mut policy).map_err(|e| {
        report(&e.message);
        e.code
    })?;
    Ok((policy, digest, outputs))
}

pub fn run(args: RunArgs, mut signals: ringfence::Signals) -> i32 {
    ringfence::trace::start(args.trace_launch);
    let (policy, digest, mut outputs) = match policy_and_outputs(&args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let (cwd, input) = match placement(&args, &policy.workspace) {
        Ok(placed) => placed,
        Err(code) => return code,
    };
    ringfence::arm_signals(&mut signals);
    let run = run_id();
    let events: Events = outputs.events.take().map(|out| Arc::new(Mutex::new(EventWriter::new(out, run.clone()))));
    let recorder = Recorder::new(events.clone(), &run, args.report);
    let mut argv = args.command.into_iter();
    let program = argv.next().unwrap_or_default();
    let rest: Vec<_> = argv.collect();
    let terminal = !args.no_pty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let request = Request {
        argv: std::iter::once(&program).chain(rest.iter()).map(|a| a.to_string_lossy().into_owned()).collect(),
        cwd: cwd.as_ref().unwrap_or(&policy.workspace).display().to_string(),
        profile: policy.profile_label(),
        digest,
        allow_degraded: policy.allow_degraded,
    };
    let limits = policy.limits.clone();
    // Without a terminal of its own, the command must not get ours either: a terminal's
    // ioctls (line discipline, modes, window size) would reach the user's session. Terminals
    // among the streams are relayed through pipes instead.
    let relay = |is_tty: bool| if !terminal && is_tty { Stdio::Piped } else { Stdio::Inherit };
    let tty = [std::io::stdin().is_terminal(), std::io::stdout().is_terminal(), std::io::stderr().is_terminal()];
    let stdin = if input.is_some() { Stdio::Piped } else { relay(tty[0]) };
    let command = cwd
        .into_iter()
        .fold(Command::new(&program), |command, dir| command.current_dir(dir))
        .args(&rest)
        .policy(policy)
        .stdin(stdin)
        .stdout(relay(tty[1]))
        .stderr(relay(tty[2]))
        .terminal(terminal)
        .on_event(recorder.sink());
    // run.start comes first in the file: the gateway's and the backend's events wait for this
    // lock (the backend's in its queue: the sandbox never waits for it).
    let mut head = events.as_ref().map(|w| w.lock().unwrap_or_else(|p| p.into_inner()));
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return e.exit_code();
        }
    };
    for event in start_events(request, &child) {
        recorder.count(&event);
        if let Some(w) = head.as_mut() {
            let _ = w.emit(event);
        }
    }
    drop(head);
    if let Some(input) = input {
        hold_lifeline(&mut child, input);
    }
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
    let code = finish(&status, &limits, &recorder, outputs.status);
    ringfence::trace::mark("cli", "findings, run.end, --json-status written");
    code
}

/// After the run: why it ended, the git review's findings, run.end, --report's summary, and
/// --json-status.
fn finish(
    status: &ExitStatus,
    limits: &ringfence_policy::Limits,
    recorder: &Recorder,
    target: Option<std::fs::File>,
) -> i32 {
    explain_end(status, limits, recorder);
    report_review(status, recorder);
    let (connections_allowed, connections_denied) = {
        let tally = recorder.tally();
        (tally.connections_allowed, tally.connections_denied)
    };
    recorder.emit(EventBody::RunEnd {
        exit_code: status.code(),
        signal: status.signal(),
        status: status.exit_code(),
        reason: status.reason.name().into(),
        duration_ms: status.duration.as_millis() as u64,
        rusage: rusage(status),
        processes: status.processes.map(|p| p.started),
        execs_denied: status.processes.map(|p| p.denied),
        connections_allowed,
        connections_denied,
        peak_memory_kb: status.peak_memory.map(|b| b / 1024),
    });
    if let Some(summary) = &recorder.tally().summary {
        eprint!("{}", summary.render().replace('\n', recorder.newline));
    }
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
/// run.start event, and the command's proc.exec unless the exec monitor records it.
fn start_events(request: Request, child: &ringfence::Child) -> Vec<EventBody> {
    let (enforced, not_enforced) = child.layers();
    // Without --allow-degraded only defaults this machine can't carry can be missing (anything
    // asked for would have refused the run): run.start records them, and `check` and `explain`
    // say how to get them, rather than every run's stderr.
    for layer in not_enforced.iter().filter(|_| request.allow_degraded) {
        eprintln!("ringfence: warning: not enforced (--allow-degraded): {}: {}", layer.name, layer.detail);
    }
    let mut events = vec![EventBody::RunStart {
        argv: request.argv.clone(),
        cwd: request.cwd.clone(),
        profile: request.profile,
        policy_digest: request.digest,
        enforced,
        not_enforced,
        kernel: child.platform_json(),
    }];
    if !child.records_execs() {
        events.push(EventBody::ProcExec {
            pid: child.command_id().unwrap_or(0),
            ppid: child.id(),
            ns_pid: None,
            chain: Vec::new(),
            path: None,
            argv: request.argv,
            cwd: request.cwd,
            rule: None,
            decision: None,
            time: None,
        });
    }
    events
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
fn report_review(status: &ExitStatus, recorder: &Recorder) {
    report_findings(&status.warnings, &status.git_findings, &status.review_failures, &|body| recorder.emit(body));
}

/// The clean-up's warnings and the review's findings on stderr (and to `emit` as events); what
/// the review could not check as errors, with the remedy.
pub fn report_findings(
    warnings: &[String],
    findings: &[ringfence::ReviewFinding],
    failures: &[ringfence::ReviewFinding],
    emit: &dyn Fn(EventBody),
) {
    for warning in warnings {
        eprintln!("ringfence: warning: {}", for_terminal(warning));
    }
    for finding in findings {
        eprintln!("ringfence: warning: {}: {}", for_terminal(&finding.path), for_terminal(&finding.detail));
        let text = format!("{}: {}", finding.path.display(), finding.detail);
        emit(EventBody::PolicyDeny { rule: finding.rule.into(), detail: text });
    }
    for failure in failures {
        eprintln!(
            "ringfence: error: the review after the run could not check {}: {}",
            for_terminal(&failure.path),
            for_terminal(&failure.detail)
        );
        let text = format!("{}: {}", failure.path.display(), failure.detail);
        emit(EventBody::PolicyDeny { rule: failure.rule.into(), detail: text });
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
fn explain_end(status: &ExitStatus, limits: &ringfence_policy::Limits, recorder: &Recorder) {
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
    recorder.emit(EventBody::LimitHit { limit: limit.into(), value, detail: message });
}

/// The command's directory (`--cwd`) and its input (`--stdin-lifeline`), or ringfence's exit
/// code once the error is reported.
fn placement(args: &RunArgs, workspace: &Path) -> Result<(Option<PathBuf>, Option<Vec<u8>>), i32> {
    let cwd = args.cwd.as_deref().map(|dir| command_dir(workspace, dir)).transpose().map_err(|e| {
        report(&format!("--cwd {e}"));
        exit_code::POLICY
    })?;
    let input = args.stdin_lifeline.then(read_framed_input).transpose().map_err(|e| {
        report(&format!("--stdin-lifeline: {e}"));
        exit_code::INTERNAL
    })?;
    Ok((cwd, input))
}

/// The command's directory for `--cwd`: `dir` (relative to the workspace) as it resolves,
/// which must lie inside the workspace.
pub fn command_dir(workspace: &Path, dir: &Path) -> Result<PathBuf, String> {
    let joined = workspace.join(dir);
    let real = joined.canonicalize().map_err(|e| format!("{}: {e}", joined.display()))?;
    if !real.is_dir() || !real.starts_with(workspace) {
        return Err(format!(
            "{}: the command's directory must be a folder inside the workspace {}\n  help: name a folder \
             in the workspace, or run with -C for another workspace",
            real.display(),
            workspace.display()
        ));
    }
    Ok(real)
}

/// The most input `--stdin-lifeline` takes for the command.
const MAX_INPUT: usize = 16 << 20;

/// Reads the command's input from the head of ringfence's stdin: its length in bytes on a line
/// of its own, then the bytes.
fn read_framed_input() -> Result<Vec<u8>, String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("reading the input's length: {e}"))?;
    let len: usize = line.trim().parse().map_err(|_| format!("`{}` is not a length in bytes", line.trim()))?;
    if len > MAX_INPUT {
        return Err(format!("{len} bytes of input is more than the {MAX_INPUT} taken"));
    }
    let mut input = vec![0; len];
    std::io::stdin().read_exact(&mut input).map_err(|e| format!("reading {len} bytes of input: {e}"))?;
    Ok(input)
}

/// Gives the command its input, and kills the run when ringfence's stdin closes: the caller
/// (`ringfence mcp`) went away or cancelled the command.
fn hold_lifeline(child: &mut ringfence::Child, input: Vec<u8>) {
    if let Some(mut to_child) = child.stdin.take() {
        std::thread::spawn(move || {
            let _ = to_child.write_all(&input);
        });
    }
    let killer = child.killer();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        killer.kill();
    });
}
