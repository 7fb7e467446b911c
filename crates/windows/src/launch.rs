//! The supervisor's side of a run: checks the installation, prepares the decisions, starts the
//! runner as the sandbox account, applies the run's ACL entries, hands the runner what it needs
//! to start the command, and then watches the command until it ends.

use crate::changes::{self, RunChanges};
use crate::control::{self, Control};
use crate::error::LaunchError;
use crate::install::ACCOUNT_NAME;
use crate::prepare::{self, Prepared, Request};
use crate::protocol::{ConsoleRequest, FromRunner, LaunchRequest, ToRunner, RUNNER_ARG};
use crate::relay::{start_relay, Terminal};
use crate::report::{Enforcement, Outcome, KILLED_EXIT_CODE};
use crate::setup::{self, Installed};
use crate::sid::Sid;
use crate::slots::{RunSlots, Slots};
use crate::sys::desktop::{self, Desktop};
use crate::sys::fs as sfs;
use crate::sys::job::{self as sjob, Job};
use crate::sys::pipe::{self, ControlServer};
use crate::sys::process::{self, Started};
use crate::sys::{account, console, security, units, wfp as swfp};
use crate::{cmdline, envblock};
use ringfence_backend::Stdio;
use std::fs::File;
use std::os::windows::io::{AsHandle, BorrowedHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything needed to start one sandboxed command: the contract's request (its `TEMP` and
/// `TMP` are replaced by the run's private folder; with `terminal`, `stdio` is unused), and the
/// 127.0.0.1 ports this run's gateway listens on, the only ones the command may reach (empty
/// without a gateway).
#[derive(Debug)]
pub struct LaunchSpec {
    pub request: ringfence_backend::LaunchRequest,
    pub gateway_ports: Vec<u16>,
}

/// How often the wait loop looks at the job's notifications.
const SLICE: Duration = Duration::from_millis(50);

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Ends a run from any thread (a Ctrl-C handler, say): kills every process in the job.
#[derive(Clone)]
pub struct Killer {
    job: Arc<OwnedHandle>,
    killed: Arc<AtomicBool>,
}

impl Killer {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        sjob::terminate(self.job.as_handle(), KILLED_EXIT_CODE);
    }
}

/// A running sandbox.
pub struct Sandbox {
    pub enforcement: Enforcement,
    pid: u32,
    process: OwnedHandle,
    job: Job,
    killer: Killer,
    timeout: Option<Duration>,
    started: Instant,
    /// The runner, kept for a terminal run (it owns the pseudoconsole).
    runner: Option<OwnedHandle>,
    control: Option<Arc<Mutex<File>>>,
    terminal: Option<Terminal>,
    changes: Option<RunChanges>,
    desktop: Option<Desktop>,
    logon: Sid,
    account: Sid,
    /// The dynamic filter-engine session holding the run's gateway permits: closing it
    /// removes them.
    gateway_filters: Option<swfp::Engine>,
    /// The run's hold on its roots' slots.
    _slots: RunSlots,
    /// Where a `.git` the command created is given back to the user after the run.
    repositories: Repositories,
    finished: bool,
}

/// The folders whose `.git`, if the command created it, goes back to the user after the run:
/// git refuses a repository owned by another account ("dubious ownership"), and the command
/// runs as the sandbox account. Only these few paths are looked at, never the tree.
struct Repositories {
    folders: Vec<String>,
    account: Sid,
    user: Sid,
}

impl Repositories {
    fn give_back(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for folder in &self.folders {
            let git = crate::wpath::join(folder, ".git");
            if sfs::kind(Path::new(&git)).is_none() {
                continue;
            }
            match security::file_owner(&git) {
                Ok(owner) if owner == self.account => {
                    if let Err(e) = security::set_file_owner(&git, &self.user) {
                        warnings.push(e.message);
                    }
                }
                Ok(_) => {}
                Err(e) => warnings.push(e.message),
            }
        }
        warnings
    }
}

/// The state of a launch in progress; undone on drop unless it became a Sandbox.
struct Launching {
    runner: Option<Started>,
    changes: Option<RunChanges>,
    job: Option<Job>,
    logon: Option<Sid>,
    account: Sid,
}

impl Drop for Launching {
    fn drop(&mut self) {
        if let Some(job) = &self.job {
            job.terminate(KILLED_EXIT_CODE);
        }
        if let Some(r) = &self.runner {
            process::terminate(&r.process, 1);
        }
        if let Some(c) = self.changes.take() {
            let _ = c.undo();
        }
        if let Some(l) = &self.logon {
            let _ = desktop::revoke_logon(l, &self.account, false);
        }
    }
}

/// What one of the command's standard streams is made from: a handle of the caller's (or of
/// this process), or the NUL device, opened for it.
enum Stream<'a> {
    Borrowed(BorrowedHandle<'a>),
    Null(File),
}

impl AsHandle for Stream<'_> {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        match self {
            Stream::Borrowed(h) => *h,
            Stream::Null(f) => f.as_handle(),
        }
    }
}

fn stream(spec: &Stdio, index: usize) -> Result<Stream<'_>, LaunchError> {
    let console_error = || {
        LaunchError::policy(
            format!("standard stream {index} is a console; a sandboxed command must not get the caller's console"),
            "pass a pipe or a file (the caller relays it), or ask for a terminal",
        )
    };
    let null = || -> Result<Stream<'_>, LaunchError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("NUL")
            .map_err(|e| LaunchError::internal(format!("opening NUL: {e}")))?;
        Ok(Stream::Null(f))
    };
    match spec {
        Stdio::Null => null(),
        Stdio::Inherit => match process::std_handle(index) {
            None => null(),
            Some(h) if process::is_console(h) => Err(console_error()),
            Some(h) => Ok(Stream::Borrowed(h)),
        },
        Stdio::Stream(h) if process::is_console(h.as_handle()) => Err(console_error()),
        Stdio::Stream(h) => Ok(Stream::Borrowed(h.as_handle())),
    }
}

/// The runner's environment: only what Windows itself needs to start a process.
fn runner_env() -> Result<Vec<u16>, LaunchError> {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
    let mut path = root.clone();
    path.push(r"\System32");
    let vars: Vec<(Vec<u16>, Vec<u16>)> =
        vec![(units("SystemRoot"), units(&root)), (units("windir"), units(&root)), (units("PATH"), units(&path))];
    envblock::build_env_block(&vars)
}

/// Starts a sandboxed command. It runs when this returns; [`Sandbox::wait`] collects it.
pub fn spawn(spec: LaunchSpec) -> Result<Sandbox, LaunchError> {
    let installed = setup::installed()?;
    let runner = RunnerStart::Logon { password: installed.password.clone() };
    spawn_with(spec, installed, runner)
}

/// How the runner is started.
pub(crate) enum RunnerStart {
    /// As the sandbox account, through the secondary logon service: the only way in use.
    Logon { password: String },
    /// As the caller, with these arguments before the pipe name (the call-sequence tests under
    /// Wine, whose secondary logon is a stub: no account switch, nothing isolated).
    #[cfg(test)]
    Caller { exe: String, args: Vec<String>, env: Vec<(String, String)> },
}

/// Undoes what runs that died left behind (their journals are no longer held); refuses to run
/// while anything of theirs is left: a logon SID's entries could match a later logon after a
/// restart.
fn recover_or_refuse(runs_dir: &Path) -> Result<(), LaunchError> {
    let left = changes::recover(runs_dir);
    if left.is_empty() {
        return Ok(());
    }
    Err(LaunchError::unsupported(
        format!("ACL entries of an earlier run could not be removed:\n  {}", left.join("\n  ")),
        "restore your access to those paths, or remove the entries (`icacls <path> /remove:g *<SID>`); the next \
         run tries again",
    ))
}

/// The names of one launch: the run's number in this process and a random nonce.
struct RunNames {
    pid: u32,
    n: u32,
    nonce: String,
}

impl RunNames {
    fn new() -> Result<RunNames, LaunchError> {
        let nonce = account::random(8)?.iter().map(|b| format!("{b:02x}")).collect();
        Ok(RunNames { pid: crate::sys::current_pid(), n: RUNS.fetch_add(1, Ordering::Relaxed), nonce })
    }

    fn temp_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("ringfence-{}-{}", self.pid, self.n))
    }

    fn private(&self) -> String {
        format!("ringfence-{}-{}-{}", self.pid, self.n, self.nonce)
    }
}

/// Decides everything for the run (see [`prepare`]).
fn prepare_run(spec: &LaunchSpec, account: &Sid, profile: &str, temp_dir: &Path) -> Result<Prepared, LaunchError> {
    let temp_text = temp_dir
        .to_str()
        .map(crate::wpath::normalize)
        .ok_or_else(|| LaunchError::internal("the temporary folder's path is not valid Unicode"))?;
    let program = units(&spec.request.program);
    let args: Vec<Vec<u16>> = spec.request.args.iter().map(units).collect();
    let env = spec.request.env.iter().map(|(n, v)| (units(n), units(v))).collect();
    prepare::prepare(
        Request {
            program: &program,
            args: &args,
            env,
            cwd: &spec.request.cwd,
            policy: &spec.request.policy,
            terminal: spec.request.terminal,
            temp_dir: temp_text,
            logical_cpus: crate::sys::logical_cpus(),
            account,
            profile,
            gateway_ports: &spec.gateway_ports,
            system_env: ringfence_policy::env::WINDOWS_KEEP
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|v| (units(name), units(v))))
                .collect(),
        },
        &|p| Path::new(p).is_file(),
        &|p| sfs::kind(Path::new(p)),
    )
}

/// Starts the runner, as `start` says, with NUL as its standard streams.
fn start_runner(start: &RunnerStart, layout: &crate::install::Layout, pipe_name: &str) -> Result<Started, LaunchError> {
    let runner_exe = layout.runner();
    let null = stream(&Stdio::Null, 0)?;
    let null = null.as_handle();
    match start {
        RunnerStart::Logon { password } => {
            let line = cmdline::build_command_line(&units(&runner_exe), &[units(RUNNER_ARG), units(pipe_name)])?;
            process::create_with_logon(
                ACCOUNT_NAME,
                password,
                &units(&runner_exe),
                &line,
                &runner_env()?,
                &units(layout.bin_dir()),
                [null; 3],
            )
        }
        #[cfg(test)]
        RunnerStart::Caller { exe, args, env: extra } => {
            let mut all: Vec<Vec<u16>> = args.iter().map(units).collect();
            all.push(units(pipe_name));
            let line = cmdline::build_command_line(&units(exe), &all)?;
            let mut env: Vec<(Vec<u16>, Vec<u16>)> = std::env::vars_os().map(|(k, v)| (units(k), units(v))).collect();
            env.extend(extra.iter().map(|(k, v)| (units(k), units(v))));
            let block = envblock::build_env_block(&env)?;
            let launch = process::Launch {
                application: &units(exe),
                command_line: &line,
                env_block: &block,
                cwd: &units(layout.bin_dir()),
                desktop: None,
                stdio: Some([Some(null); 3]),
                pseudoconsole: None,
            };
            let started = process::create_suspended(None, &launch)
                .map_err(|code| crate::sys::os_error("starting the runner", "CreateProcessW", code))?;
            process::resume(&started.thread)?;
            Ok(started)
        }
    }
}

/// The run's gateway permits, in a dynamic session that removes them when it closes (at the
/// end of the run, or when this process dies). None without a gateway.
fn gateway_filters(logon: &Sid, ports: &[u16]) -> Result<Option<swfp::Engine>, LaunchError> {
    if ports.is_empty() {
        return Ok(None);
    }
    let key_base = account::random(16)?.iter().fold(0u128, |k, b| (k << 8) | u128::from(*b));
    let engine = swfp::Engine::open_dynamic()?;
    for filter in crate::wfp::gateway_filters(logon, ports, key_base) {
        engine.add_filter(&filter, false).map_err(|e| e.context("opening the gateway's ports to this run"))?;
    }
    Ok(Some(engine))
}

/// The handles the runner needs for the command's standard streams (or, with a terminal, for
/// its pseudoconsole), duplicated into it; the terminal's other pipe ends stay here.
struct Streams {
    stdio: [u64; 3],
    console: Option<ConsoleRequest>,
    terminal_pipes: Option<(OwnedHandle, OwnedHandle)>,
    /// NUL handles opened for the call, closed once the runner has its copies.
    keep: Vec<File>,
}

fn streams(spec: &LaunchSpec, runner: &Started) -> Result<Streams, LaunchError> {
    let mut out = Streams { stdio: [0; 3], console: None, terminal_pipes: None, keep: Vec::new() };
    if spec.request.terminal {
        let (in_read, in_write) = pipe::anonymous()?;
        let (out_read, out_write) = pipe::anonymous()?;
        let (cols, rows) = process::std_handle(1).and_then(console::size).unwrap_or((80, 25));
        out.console = Some(ConsoleRequest {
            input: process::duplicate_into(&runner.process, in_read.as_handle(), None)?,
            output: process::duplicate_into(&runner.process, out_write.as_handle(), None)?,
            cols,
            rows,
        });
        out.terminal_pipes = Some((in_write, out_read));
    } else {
        for (i, s) in spec.request.stdio.iter().enumerate() {
            let stream = stream(s, i)?;
            out.stdio[i] = process::duplicate_into(&runner.process, stream.as_handle(), None)?;
            if let Stream::Null(f) = stream {
                out.keep.push(f);
            }
        }
    }
    Ok(out)
}

/// Hands the runner the launch request; returns the command's process and thread, suspended.
fn launch_command(
    control: &Control,
    runner: &Started,
    request: LaunchRequest,
) -> Result<(u32, OwnedHandle, OwnedHandle), LaunchError> {
    control.send(&ToRunner::Launch(Box::new(request)))?;
    let (child_pid, process_value, thread_value) = match control.recv(runner)? {
        FromRunner::Started { pid, process, thread } => (pid, process, thread),
        other => return Err(LaunchError::internal(format!("unexpected reply from the runner: {other:?}"))),
    };
    let child = process::duplicate_from(&runner.process, process_value)?;
    let thread = process::duplicate_from(&runner.process, thread_value)?;
    if process::pid(&child) != child_pid {
        return Err(LaunchError::internal("the runner reported another process than the one it handed over"));
    }
    control.send(&ToRunner::Go)?;
    Ok((child_pid, child, thread))
}

/// The command must not start while a process of its account without restrictions exists:
/// waits for the runner to exit, ends it if it doesn't, and fails the launch unless its exit is
/// confirmed.
fn confirm_runner_exit(runner: &Started) -> Result<(), LaunchError> {
    let handle = [runner.process.as_handle()];
    if process::wait_any(&handle, Some(Duration::from_secs(10)))?.is_some() {
        return Ok(());
    }
    process::terminate(&runner.process, 1);
    if process::wait_any(&handle, Some(Duration::from_secs(5)))?.is_some() {
        return Ok(());
    }
    Err(LaunchError::internal(
        "the runner did not exit after starting the command, and could not be ended: the command was not started",
    ))
}

/// Starts the runner and waits for its hello; returns the control pipe and the run's logon
/// SID, with the user's desktop taken back from that logon and the window station opened to it.
fn connect_runner(
    state: &mut Launching,
    start: &RunnerStart,
    layout: &crate::install::Layout,
    names: &RunNames,
    me: &Sid,
) -> Result<(Control, Sid), LaunchError> {
    let pipe_name = names.private();
    let server = ControlServer::create(&pipe_name, me, &state.account)?;
    let runner = start_runner(start, layout, &pipe_name)?;
    let pipe = control::accept(server, &pipe_name, &runner);
    let runner = state.runner.insert(runner);
    let control = Control::new(pipe?)?;
    let logon = control::hello(&control, runner, &state.account)?;
    state.logon = Some(logon.clone());
    // The secondary logon service granted the runner's logon the user's desktop; take it back.
    desktop::revoke_logon(&logon, &state.account, true)
        .map_err(|e| e.context("keeping the user's desktop out of the sandbox's reach"))?;
    desktop::grant_station(&logon).map_err(|e| e.context("opening the window station to the run"))?;
    Ok((control, logon))
}

/// The command, started suspended by the runner, and the runner's process when it must stay
/// (a terminal run); otherwise the runner's exit is confirmed.
struct Launched {
    pid: u32,
    process: OwnedHandle,
    thread: OwnedHandle,
    runner: Option<OwnedHandle>,
    terminal_pipes: Option<(OwnedHandle, OwnedHandle)>,
}

/// Hands the runner the job, the streams and the launch request, and takes the command back.
fn start_command(
    state: &mut Launching,
    spec: &LaunchSpec,
    prepared: &Prepared,
    control: &Control,
    desk: &Desktop,
    slots: &crate::grants::TokenSlots,
) -> Result<Launched, LaunchError> {
    let runner = state.runner.as_ref().expect("set by connect_runner");
    let job = state.job.as_ref().expect("set before the runner");
    let job_value = process::duplicate_into(&runner.process, job.handle.as_handle(), Some(sjob::JOB_ASSIGN_PROCESS))?;
    let streams = streams(spec, runner)?;
    let request = LaunchRequest {
        application: units(&prepared.application),
        command_line: prepared.command_line.clone(),
        env_block: prepared.env_block.clone(),
        cwd: units(&prepared.cwd),
        desktop: units(&desk.path),
        job: job_value,
        stdio: streams.stdio,
        console: streams.console.clone(),
        restricting: slots.restricting.iter().map(Sid::to_string).collect(),
        deny_only: slots.deny_only.iter().map(Sid::to_string).collect(),
    };
    let (pid, process, thread) = launch_command(control, runner, request)?;
    let runner_keep = if spec.request.terminal {
        state.runner.take().map(|r| r.process)
    } else {
        // Left in `state` until confirmed, so a failure ends it with the rest of the launch.
        confirm_runner_exit(state.runner.as_ref().expect("set by connect_runner"))?;
        state.runner = None;
        None
    };
    drop(streams.keep);
    Ok(Launched { pid, process, thread, runner: runner_keep, terminal_pipes: streams.terminal_pipes })
}

pub(crate) fn spawn_with(spec: LaunchSpec, installed: Installed, start: RunnerStart) -> Result<Sandbox, LaunchError> {
    let Installed { layout, account, password: _, user, profile, slots } = installed;
    recover_or_refuse(Path::new(&layout.runs()))?;
    let me = security::current_user()?;
    let names = RunNames::new()?;
    let temp_dir = names.temp_dir();
    let prepared = prepare_run(&spec, &account, &profile, &temp_dir)?;
    let mut state = Launching { runner: None, changes: None, job: None, logon: None, account: account.clone() };
    state.job = Some(Job::create(&prepared.job)?);
    let (control, logon) = connect_runner(&mut state, &start, &layout, &names, &me)?;

    // The filesystem: the roots through their slots, the rest journaled for this run only.
    let run_slots = Slots::new(&layout.grants(), slots, user.clone()).open(&prepared.acl.roots)?;
    let mut changes = RunChanges::begin(Path::new(&layout.runs()), &logon)?;
    changes.temp_dir(&temp_dir)?;
    state.changes.insert(changes).apply(&prepared.acl, &account)?;
    let gateway = gateway_filters(&logon, &spec.gateway_ports)?;
    let desk = Desktop::create(&names.private(), &me, &logon)?;

    let command = start_command(&mut state, &spec, &prepared, &control, &desk, &run_slots.token)?;
    let terminal = match command.terminal_pipes {
        Some((in_write, out_read)) => Some(start_relay(in_write, out_read, Arc::clone(&control.write))?),
        None => None,
    };
    process::resume(&command.thread)?;
    drop(command.thread);

    let job = state.job.take().expect("set before the runner");
    let killer = Killer {
        job: Arc::new(job.handle.try_clone().map_err(|e| LaunchError::internal(format!("the job handle: {e}")))?),
        killed: Arc::new(AtomicBool::new(false)),
    };
    let mut enforcement = prepared.enforcement;
    if let Some(d) = enforcement.enforced.iter_mut().find(|l| l.name == "desktop") {
        d.detail = format!("{} ({})", d.detail, desk.path);
    }
    let mut folders = prepared.acl.write_roots.clone();
    folders.push(prepared.cwd.clone());
    let sandbox = Sandbox {
        enforcement,
        pid: command.pid,
        process: command.process,
        job,
        killer,
        timeout: prepared.timeout,
        started: Instant::now(),
        runner: command.runner,
        control: spec.request.terminal.then(|| Arc::clone(&control.write)),
        terminal,
        changes: state.changes.take(),
        desktop: Some(desk),
        logon,
        account: account.clone(),
        gateway_filters: gateway,
        _slots: run_slots,
        repositories: Repositories { folders, account, user },
        finished: false,
    };
    state.logon = None;
    drop(state);
    Ok(sandbox)
}

impl Sandbox {
    /// The command's process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Kills every process of the run.
    pub fn kill(&self) {
        self.killer.kill();
    }

    /// A handle that kills the run from another thread while [`Sandbox::wait`] runs.
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }

    /// Waits for the command, enforcing the timeout; then kills whatever else still runs in
    /// the job, collects the accounting and undoes the run's changes.
    pub fn wait(mut self) -> Result<Outcome, LaunchError> {
        let mut timed_out = false;
        let mut memory_limit_hit = false;
        let deadline = self.timeout.map(|t| self.started + t);
        loop {
            while let Some((msg, _)) = self.job.next_message(Duration::ZERO) {
                memory_limit_hit |= msg == sjob::MSG_JOB_MEMORY_LIMIT;
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            if process::wait_any(&[self.process.as_handle()], Some(slice))?.is_some() {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                timed_out = true;
                self.job.terminate(KILLED_EXIT_CODE);
                process::wait_any(&[self.process.as_handle()], Some(Duration::from_secs(10)))?;
                break;
            }
        }
        let exit_code = process::exit_code(&self.process)?;
        // Nothing outlives the command.
        self.job.terminate(exit_code);
        while let Some((msg, _)) = self.job.next_message(Duration::from_millis(10)) {
            memory_limit_hit |= msg == sjob::MSG_JOB_MEMORY_LIMIT;
        }
        // Accounting is reporting, not enforcement: a failure to read it leaves zeros.
        let (user_time, kernel_time, peak_memory_bytes) = self.job.accounting().unwrap_or_default();
        let duration = self.started.elapsed();
        let cleanup_warnings = self.finish();
        Ok(Outcome {
            exit_code,
            timed_out,
            memory_limit_hit,
            duration,
            user_time,
            kernel_time,
            peak_memory_bytes,
            cleanup_warnings,
        })
    }

    /// Ends the terminal relay and the runner, and undoes the run's changes.
    fn finish(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.finished, true) {
            return vec![];
        }
        self.job.terminate(KILLED_EXIT_CODE);
        // Closing the control pipe lets the runner close the pseudoconsole, which ends its output.
        self.control = None;
        if let Some(t) = self.terminal.as_mut() {
            t.stop_resizing();
        }
        if let Some(r) = self.runner.take() {
            if process::wait_any(&[r.as_handle()], Some(Duration::from_secs(5))).ok().flatten().is_none() {
                process::terminate(&r, 1);
            }
        }
        if let Some(t) = self.terminal.take() {
            t.finish();
        }
        // Nothing of the run is left to use the gateway's ports: close them first.
        self.gateway_filters = None;
        let mut warnings = self.changes.take().map(RunChanges::undo).unwrap_or_default();
        warnings.extend(self.repositories.give_back());
        if let Err(e) = desktop::revoke_logon(&self.logon, &self.account, false) {
            warnings.push(e.message);
        }
        self.desktop = None;
        warnings
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Killer>();
    is_send::<Sandbox>();
}
