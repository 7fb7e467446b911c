//! execve(2) and execveat(2), trapped for every process of the sandbox. The supervisor reads
//! the path and argv from the caller's memory (`exec_args.rs`), finds the program in the
//! caller's view of the filesystem, checks the exec rules, confirms the call still waits, and
//! records the exec; then it either refuses the exec (EPERM) or lets the kernel carry it out
//! (CONTINUE).
//!
//! CONTINUE means the kernel reads the path and argv again, after the check: another thread of
//! the caller can rewrite them in between. So an allow is a guardrail against mistakes and
//! injected instructions, not a boundary; a rule that names a file by its absolute path gets
//! the file's execute right withheld in the Landlock ruleset too, which no rewrite gets around.

use super::exec_args::{Base, ExecRequest};
use super::processes::{Place, Processes};
use super::script;
use super::target::Target;
use super::{kernel, Call, Context, Fail, Step};
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use ringfence_audit::{timestamp, EventBody};
use ringfence_backend::{ProcessCounts, Reporter};
use ringfence_policy::{ExecCall, ExecDecision, ExecRule, ExecRules};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the exec handler needs: the rules, where events go, the processes it watches.
pub(crate) struct Monitor {
    rules: ExecRules,
    home: PathBuf,
    reporter: Reporter,
    pub processes: Arc<Processes>,
    started: AtomicU64,
    denied: AtomicU64,
}

impl Monitor {
    pub fn new(rules: ExecRules, home: PathBuf, reporter: Reporter, processes: Arc<Processes>) -> Monitor {
        Monitor { rules, home, reporter, processes, started: AtomicU64::new(0), denied: AtomicU64::new(0) }
    }

    pub fn counts(&self) -> ProcessCounts {
        ProcessCounts { started: self.started.load(Ordering::Relaxed), denied: self.denied.load(Ordering::Relaxed) }
    }
}

/// The program an exec names: the path as given, made absolute (for the rules), and the file
/// it resolves to in the caller's view (opened as a path).
struct Program {
    given: String,
    absolute: String,
    resolved: String,
    file: OwnedFd,
}

/// A program the kernel runs for a script, with the arguments it gets (owned, for an
/// [`ExecCall`] to borrow).
struct Interpreter {
    absolute: String,
    resolved: String,
    argv: Vec<String>,
}

pub(super) fn handle(ctx: &Context, call: &Call) -> Result<Step, Fail> {
    let monitor = ctx.exec.as_ref().ok_or(Fail::Errno(libc::ENOSYS))?;
    let target = Target::open(call.tid)?;
    let request = ExecRequest::read(&target, call)?;
    let cwd = target.working_directory()?;
    let program = locate(&target, &request, &cwd)?;
    let place = monitor.processes.place(call.tid)?;
    let argv: Vec<String> = request.argv.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let cwd = cwd.to_string_lossy().into_owned();
    let exec = ExecCall {
        executed: program.absolute.clone(),
        resolved: Some(program.resolved.clone()),
        argv: &argv,
        cwd: &cwd,
        home: &monitor.home,
    };
    // A script's interpreters run without an exec of their own: the rules see them too.
    let interpreters =
        if monitor.rules.has_rules() { interpreters(&target, &program, &argv, Path::new(&cwd))? } else { Vec::new() };
    let calls: Vec<ExecCall> =
        std::iter::once(exec).chain(interpreters.iter().map(|i| i.call(&cwd, &monitor.home))).collect();
    let rule = monitor.rules.decide_any(&calls).cloned();
    drop(calls);
    // Everything above was read by pid: it named the caller only if the call still waits.
    if !ctx.still_pending(call.id) {
        return Ok(Step::Gone);
    }
    let denied = rule.as_ref().is_some_and(|r| r.decision == ExecDecision::Deny);
    if !denied {
        monitor.processes.watch(&place)?;
    }
    record(monitor, place, program, argv, cwd, rule.as_ref());
    if denied {
        Err(Fail::Errno(libc::EPERM))
    } else {
        Ok(Step::Continue)
    }
}

/// Records the exec (and, when denied, the refusal) and counts it. Never waits for the sink.
fn record(monitor: &Monitor, place: Place, program: Program, argv: Vec<String>, cwd: String, rule: Option<&ExecRule>) {
    let decision = rule.map_or(ExecDecision::Allow, |r| r.decision);
    let counter = if decision == ExecDecision::Deny { &monitor.denied } else { &monitor.started };
    counter.fetch_add(1, Ordering::Relaxed);
    let denial = (decision == ExecDecision::Deny).then(|| EventBody::PolicyDeny {
        rule: "exec".into(),
        detail: format!(
            "exec of `{}` denied by {}",
            shown_command(&argv, &program.given),
            rule.map(ExecRule::describe).unwrap_or_default()
        ),
    });
    monitor.reporter.report(EventBody::ProcExec {
        pid: place.pid as u32,
        ppid: place.ppid as u32,
        ns_pid: Some(place.ns_pid),
        chain: place.chain,
        path: Some(program.given),
        argv,
        cwd,
        rule: rule.map(|r| format!("{} ({})", r.pattern(), r.origin)),
        decision: Some(decision.name().into()),
        time: Some(timestamp(std::time::SystemTime::now())),
    });
    if let Some(denial) = denial {
        monitor.reporter.report(denial);
    }
}

/// The command line for a message: argv, or the path when argv is empty; long ones cut.
fn shown_command(argv: &[String], path: &str) -> String {
    const SHOWN: usize = 200;
    let line = if argv.is_empty() { path.to_string() } else { argv.join(" ") };
    match line.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// Finds the program in the caller's view: the path as given, made absolute against the
/// working directory or the directory descriptor, and the file it resolves to, which must be a
/// regular file with an execute bit (else EACCES, as the kernel says). A lookup that fails
/// fails the exec with the same error (a shell searching PATH sees ENOENT as usual).
fn locate(target: &Target, request: &ExecRequest, cwd: &Path) -> Result<Program, Fail> {
    let given = String::from_utf8_lossy(&request.path).into_owned();
    if let (true, Base::Descriptor(fd)) = (request.the_descriptor, &request.base) {
        let file = target.descriptor(*fd as u64)?;
        runnable(&file)?;
        let path = String::from_utf8_lossy(&target.descriptor_path(*fd)?).into_owned();
        return Ok(Program { given: path.clone(), absolute: path.clone(), resolved: path, file });
    }
    let joined = if request.path.starts_with(b"/") {
        request.path.clone()
    } else {
        let base = match request.base {
            Base::Cwd => cwd.as_os_str().as_bytes().to_vec(),
            Base::Descriptor(fd) => target.descriptor_path(fd)?,
        };
        [base.as_slice(), b"/", request.path.as_slice()].concat()
    };
    let (file, absolute, resolved) = open_program(target, &joined, request.no_follow)?;
    Ok(Program { given, absolute, resolved, file })
}

/// Opens the program at `joined` (absolute, in the caller's view) and checks the kernel could
/// run it: the file, its path made absolute, and the path it resolves to.
fn open_program(target: &Target, joined: &[u8], no_follow: bool) -> Result<(OwnedFd, String, String), Fail> {
    let joined = PathBuf::from(std::ffi::OsStr::from_bytes(joined));
    let file = open_in_view(target, &joined, no_follow)?;
    runnable(&file)?;
    let resolved = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| Fail::Broken(format!("reading the path of an opened program: {e}")))?;
    let absolute = ringfence_policy::normalize(&joined).to_string_lossy().into_owned();
    Ok((file, absolute, resolved.to_string_lossy().into_owned()))
}

/// The interpreters the kernel runs when the program is a script, outermost last, each with
/// the argv the kernel gives it: the interpreter, the `#!` line's argument, the script as
/// executed, then the script's own arguments. Deeper than the kernel goes, ELOOP.
fn interpreters(target: &Target, program: &Program, argv: &[String], cwd: &Path) -> Result<Vec<Interpreter>, Fail> {
    let mut found: Vec<Interpreter> = Vec::new();
    let mut script_path = program.given.clone();
    let mut shebang = script::of_file(&program.file)?;
    let mut rest: Vec<String> = argv.iter().skip(1).cloned().collect();
    while let Some(line) = shebang.take() {
        if found.len() == script::MAX_DEPTH {
            return Err(Fail::Errno(libc::ELOOP));
        }
        let given = String::from_utf8_lossy(&line.interpreter).into_owned();
        let joined = if line.interpreter.starts_with(b"/") {
            line.interpreter.clone()
        } else {
            [cwd.as_os_str().as_bytes(), b"/", &line.interpreter].concat()
        };
        let (file, absolute, resolved) = open_program(target, &joined, false)?;
        let argument = line.argument.map(|a| String::from_utf8_lossy(&a).into_owned());
        rest = argument.into_iter().chain(std::iter::once(script_path)).chain(rest).collect();
        let argv = std::iter::once(given.clone()).chain(rest.iter().cloned()).collect();
        shebang = script::of_file(&file)?;
        script_path = given;
        found.push(Interpreter { absolute, resolved, argv });
    }
    Ok(found)
}

impl Interpreter {
    fn call<'a>(&'a self, cwd: &'a str, home: &'a Path) -> ExecCall<'a> {
        ExecCall { executed: self.absolute.clone(), resolved: Some(self.resolved.clone()), argv: &self.argv, cwd, home }
    }
}

/// Opens `path` (absolute, in the caller's view) as the kernel would look it up for the
/// caller: from the caller's root, never leaving it. `/proc/self/exe`, `/proc/self/fd/N` and
/// their `thread-self` forms, which programs use to run themselves or a descriptor again, are
/// opened through the caller's own /proc entry; any other magic link fails with ELOOP.
fn open_in_view(target: &Target, path: &Path, no_follow: bool) -> Result<OwnedFd, Fail> {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if no_follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    if let Some(own) = own_proc_entry(path) {
        let path = format!("/proc/{}/{own}", target.tid());
        return nix::fcntl::open(path.as_str(), flags, Mode::empty()).map_err(|e| Fail::Errno(e as i32));
    }
    let root = target.directory("root")?;
    let how = OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_fd(), path, how).map_err(|e| Fail::Errno(e as i32))
}

/// `exe` or `fd/N` when `path` is the caller's own /proc entry for them.
fn own_proc_entry(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let rest = text.strip_prefix("/proc/self/").or_else(|| text.strip_prefix("/proc/thread-self/"))?;
    let digits = rest.strip_prefix("fd/").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (rest == "exe" || digits.is_some()).then(|| rest.to_string())
}

/// A program the kernel could run: a regular file with an execute bit.
fn runnable(file: &OwnedFd) -> Result<(), Fail> {
    let id = kernel::file_id(file.as_fd()).map_err(|e| Fail::Errno(e.raw_os_error().unwrap_or(libc::EACCES)))?;
    if id.mode & libc::S_IFMT != libc::S_IFREG || id.mode & 0o111 == 0 {
        return Err(Fail::Errno(libc::EACCES));
    }
    Ok(())
}
