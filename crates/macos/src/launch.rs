//! Starting a command under its profile, and watching it to the end.
//!
//! The supervisor compiles the profile and prepares every string and the exec's file actions,
//! then forks. The child ([`crate::child`]) makes system calls only: a new session (own process
//! group, no controlling terminal but its own), the process limit, the working folder, the
//! profile (`sandbox_init_with_parameters`), then `posix_spawn` with `POSIX_SPAWN_SETEXEC` (an
//! exec that closes every descriptor but stdio and resets every signal). A failure at any step
//! is written to a close-on-exec pipe, so the supervisor knows the command started exactly when
//! the pipe closes empty.

use crate::child::{self, Prepared, Report};
use crate::profile::{compile, Net, Request};
use crate::pty::{self, Pty, RawMode};
use crate::relay::Relay;
use crate::report::{self, Enforcement, WATCH_INTERVAL_MS};
use crate::resolve;
use crate::signals::ForwardedSignals;
use crate::sys::{self, CStrArray, Kqueue, SpawnSetup};
use crate::tree::{Sample, Tree};
use ringfence_audit::{EndReason, LaunchError};
use ringfence_backend::{LaunchRequest, Stdio};
use ringfence_policy::{NetworkMode, Policy};
use std::ffi::{c_int, CString, OsStr, OsString};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Everything needed to start one sandboxed command: the contract's request (its TMPDIR is
/// `tmp`), the run's private temporary folder, and the gateway's ports in the `allow` mode.
pub struct LaunchSpec {
    pub request: LaunchRequest,
    pub tmp: TempDir,
    pub gateway: Option<GatewayPorts>,
}

/// The run's private temporary folder, made with mode 0700 in the caller's own temporary
/// folder, its path resolved; removed when the run ends.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    removed: bool,
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TempDir {
    pub fn create() -> std::io::Result<TempDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir().canonicalize()?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("ringfence-{}-{n}-{nanos:08x}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(TempDir { path, removed: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remove(&mut self) -> std::io::Result<()> {
        self.removed = true;
        std::fs::remove_dir_all(&self.path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The gateway's two loopback ports. Seatbelt's `(remote ip "localhost:P")` means TCP and UDP
/// to both 127.0.0.1 and ::1, so ringfence holds every other socket of each port too (listening
/// or bound, reading nothing): no other program can take one during the run.
#[derive(Debug)]
pub struct GatewayPorts {
    pub http: u16,
    pub socks: u16,
    _held: Vec<HeldPort>,
}

/// The sockets that keep one port's other addresses and protocol from other programs.
#[derive(Debug)]
struct HeldPort {
    _tcp6: Option<TcpListener>,
    _udp: Vec<UdpSocket>,
}

/// Binds the gateway's HTTP and SOCKS5 listeners on 127.0.0.1, on free ports whose ::1 and UDP
/// twins are free too.
pub fn bind_gateway() -> std::io::Result<(TcpListener, TcpListener, GatewayPorts)> {
    let (http, http_held) = loopback_port()?;
    let (socks, socks_held) = loopback_port()?;
    let ports = GatewayPorts {
        http: http.local_addr()?.port(),
        socks: socks.local_addr()?.port(),
        _held: vec![http_held, socks_held],
    };
    Ok((http, socks, ports))
}

fn loopback_port() -> std::io::Result<(TcpListener, HeldPort)> {
    for _ in 0..32 {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = v4.local_addr()?.port();
        if let Ok(held) = hold_twins(port) {
            return Ok((v4, held));
        }
    }
    Err(std::io::Error::other("no free loopback port whose ::1 and UDP twins are free too, for the network gateway"))
}

/// Takes the ::1 listener and the UDP sockets of `port`.
fn hold_twins(port: u16) -> std::io::Result<HeldPort> {
    let tcp6 = without_ipv6(TcpListener::bind((Ipv6Addr::LOCALHOST, port)))?;
    let mut udp = vec![UdpSocket::bind((Ipv4Addr::LOCALHOST, port))?];
    udp.extend(without_ipv6(UdpSocket::bind((Ipv6Addr::LOCALHOST, port)))?);
    Ok(HeldPort { _tcp6: tcp6, _udp: udp })
}

/// A socket on ::1, or none where the machine has no ::1 at all (then nothing can use it).
fn without_ipv6<T>(bound: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match bound {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Ok(None),
        Err(e) => Err(e),
    }
}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub exit: ExitKind,
    pub reason: EndReason,
    pub duration: Duration,
    pub user_time: Duration,
    pub system_time: Duration,
    pub max_rss_kb: u64,
    /// What the clean-up could not undo.
    pub warnings: Vec<String>,
}

fn io_internal(what: &'static str) -> impl Fn(std::io::Error) -> LaunchError {
    move |e| LaunchError::internal(format!("{what}: {e}"))
}

/// A NUL byte where the command's strings can't have one: the policy's or the caller's to fix.
fn nul_refused(e: std::io::Error) -> LaunchError {
    LaunchError::policy(e.to_string(), "remove the NUL byte")
}

/// The profile's parameters as C strings: name, value, name, value, …
fn profile_params(profile: &crate::sbpl::Profile) -> Result<CStrArray, LaunchError> {
    let internal = io_internal("preparing the launch");
    let mut params = Vec::new();
    for (name, value) in &profile.params {
        params.push(sys::cstring(name.as_bytes(), "a parameter name").map_err(&internal)?);
        params.push(sys::cstring(value, "a path").map_err(nul_refused)?);
    }
    Ok(CStrArray::new(params))
}

/// What the forked child needs to start `program` as `spec` says, with `stdio` (or the
/// terminal) as its streams.
fn prepare<'fd>(
    spec: &LaunchSpec,
    stdio: &'fd [Stdio; 3],
    profile: &crate::sbpl::Profile,
    program: &Path,
    pty: Option<&'fd Pty>,
) -> Result<Prepared<'fd>, LaunchError> {
    let internal = io_internal("preparing the launch");
    let argv: Vec<CString> = std::iter::once(&spec.request.program)
        .chain(&spec.request.args)
        .map(|a| sys::cstring(a.as_bytes(), "an argument"))
        .collect::<Result<_, _>>()
        .map_err(nul_refused)?;
    let envp: Vec<CString> = spec
        .request
        .env
        .iter()
        .map(|(k, v)| sys::cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat(), "the environment"))
        .collect::<Result<_, _>>()
        .map_err(nul_refused)?;
    Ok(Prepared {
        profile: sys::cstring(profile.text.as_bytes(), "the profile").map_err(&internal)?,
        params: profile_params(profile)?,
        program: sys::cstring(program.as_os_str().as_bytes(), "the program").map_err(&internal)?,
        argv: CStrArray::new(argv),
        envp: CStrArray::new(envp),
        cwd: sys::cstring(spec.request.cwd.as_os_str().as_bytes(), "the working folder").map_err(nul_refused)?,
        setup: SpawnSetup::new(stdio_sources(stdio, pty)).map_err(io_internal("preparing the command's streams"))?,
        terminal: pty.map(|p| p.slave.as_fd()),
        nproc: nproc_limit(&spec.request.policy),
    })
}

/// The source of each standard stream: the terminal's end, or what the caller passed.
fn stdio_sources<'fd>(stdio: &'fd [Stdio; 3], pty: Option<&'fd Pty>) -> [sys::Stdio<'fd>; 3] {
    if let Some(pty) = pty {
        let fd = pty.slave.as_fd();
        return [sys::Stdio::From(fd), sys::Stdio::From(fd), sys::Stdio::From(fd)];
    }
    stdio.each_ref().map(|s| match s {
        Stdio::Inherit => sys::Stdio::Inherit,
        Stdio::Null => sys::Stdio::Null,
        Stdio::Stream(fd) => sys::Stdio::From(fd.as_fd()),
    })
}

/// RLIMIT_NPROC counts every process of the user, so the run may start `pids` more than the
/// user has now (never above the hard limit). It does not apply to root.
fn nproc_limit(policy: &Policy) -> Option<u64> {
    let pids = policy.limits.pids?;
    if sys::uid() == 0 {
        return None;
    }
    let now = sys::pids_of_user(sys::uid()).len() as u64;
    let hard = sys::nproc_hard_limit().unwrap_or(u64::MAX);
    Some((now + pids).min(hard))
}

/// Finds `program` as execvp(3) would, in the command's own PATH.
fn find_program(program: &OsStr, env: &[(OsString, OsString)], cwd: &Path) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        let path = cwd.join(program);
        return path.exists().then_some(path);
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| sys::is_executable(candidate))
}

/// Starts the command in a new sandbox.
pub fn spawn(mut spec: LaunchSpec) -> Result<Sandbox, LaunchError> {
    let ports = spec.gateway.as_ref().map(|g| (g.http, g.socks));
    let enforcement = report::enforcement(&spec.request.policy, ports, sys::uid() == 0);
    if let Some((message, remedy)) = report::refusal(&enforcement, spec.request.policy.allow_degraded) {
        return Err(LaunchError::unsupported(message, remedy));
    }
    let pty = if spec.request.terminal {
        Some(Pty::open().map_err(io_internal("opening a terminal for the command"))?)
    } else {
        None
    };
    let net = match (spec.request.policy.network, ports) {
        (NetworkMode::None, _) | (NetworkMode::Allow, None) => Net::None,
        (NetworkMode::Allow, Some((http, socks))) => Net::Gateway { http, socks },
        (NetworkMode::Host, _) => Net::Host,
    };
    let terminal = pty.as_ref().map(|p| p.path.as_path());
    let request = Request { policy: &spec.request.policy, tmp: spec.tmp.path(), net, terminal };
    let compiled = compile(&request, &resolve::host()).map_err(|e| LaunchError::policy(e.message, e.remedy))?;
    let shown = spec.request.program.to_string_lossy().into_owned();
    let stdio = std::mem::replace(&mut spec.request.stdio, [Stdio::Null, Stdio::Null, Stdio::Null]);
    let limits = (spec.request.policy.limits.memory.map(|m| m.0), spec.request.policy.limits.pids);
    let timeout = spec.request.policy.limits.timeout.map(|t| t.0);
    let prepared = match find_program(&spec.request.program, &spec.request.env, &spec.request.cwd) {
        Some(program) => prepare(&spec, &stdio, &compiled.profile, &program, pty.as_ref())?,
        None => {
            let base = Sandbox::base(enforcement, spec.tmp, spec.gateway, timeout, limits)?;
            return Ok(base.not_started(127, format!("{shown}: command not found")));
        }
    };
    let LaunchSpec { tmp, gateway, request } = spec;
    let cwd = request.cwd;
    let base = Sandbox::base(enforcement, tmp, gateway, timeout, limits)?;
    let (status_read, status_write) = sys::pipe().map_err(io_internal("creating the status pipe"))?;
    // SAFETY: the child makes system calls only: everything it needs was prepared before.
    let pid = unsafe { sys::fork(|| child::run(&prepared, status_write.as_fd())) }.map_err(io_internal("fork"))?;
    drop(prepared);
    drop((status_write, stdio));
    // The child reports within milliseconds; one that never does (stuck before its exec) is
    // killed rather than waited for.
    if !sys::readable_within(status_read.as_fd(), SETUP_DEADLINE) {
        sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait_blocking(pid);
        return Err(LaunchError::internal(format!(
            "the sandbox's set-up did not finish within {} s",
            SETUP_DEADLINE.as_secs()
        )));
    }
    let master = pty.map(|p| p.master);
    base.started(pid, read_to_end(status_read), master, &shown, &cwd)
}

/// How long a timed-out command gets between SIGTERM and SIGKILL (as on Linux).
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// How long the forked child may take to apply the profile and exec.
const SETUP_DEADLINE: Duration = Duration::from_secs(20);

fn read_to_end(fd: OwnedFd) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let _ = std::fs::File::from(fd).read_to_end(&mut out);
    out
}

/// A running sandbox.
pub struct Sandbox {
    pid: libc::pid_t,
    started: Instant,
    timeout: Option<Duration>,
    /// Memory in bytes and processes, when limited.
    limits: (Option<u64>, Option<u64>),
    tree: Option<Tree>,
    kq: Kqueue,
    terminal: Option<Relay>,
    tmp: TempDir,
    _gateway: Option<GatewayPorts>,
    /// The command could not be started: its exit code and why.
    failed: Option<(i32, String)>,
    finished: bool,
    pub enforcement: Enforcement,
}

impl Sandbox {
    fn base(
        enforcement: Enforcement,
        tmp: TempDir,
        gateway: Option<GatewayPorts>,
        timeout: Option<Duration>,
        limits: (Option<u64>, Option<u64>),
    ) -> Result<Sandbox, LaunchError> {
        Ok(Sandbox {
            pid: 0,
            started: Instant::now(),
            timeout,
            limits,
            tree: None,
            kq: Kqueue::new().map_err(io_internal("kqueue"))?,
            terminal: None,
            tmp,
            _gateway: gateway,
            failed: None,
            finished: false,
            enforcement,
        })
    }

    fn not_started(mut self, code: i32, message: String) -> Sandbox {
        self.failed = Some((code, message));
        self
    }

    /// Reads the child's report: empty when the command started.
    fn started(
        mut self,
        pid: libc::pid_t,
        report: Vec<u8>,
        terminal: Option<OwnedFd>,
        program: &str,
        cwd: &Path,
    ) -> Result<Sandbox, LaunchError> {
        self.pid = pid;
        if let Some(failure) = Report::parse(&report) {
            let _ = sys::wait_blocking(pid);
            self.finished = true;
            let (code, message) = failure.not_started(program, cwd)?;
            return Ok(self.not_started(code, message));
        }
        // Fails only when the command has already ended; the watch reaps it first thing.
        let _ = self.kq.add(pid as usize, libc::EVFILT_PROC, libc::NOTE_EXIT);
        if let Some(master) = terminal {
            self.terminal = Some(Relay::new(master, &self.kq).map_err(io_internal("the terminal"))?);
        }
        self.tree = Some(Tree::new(pid, self.tmp.path()));
        Ok(self)
    }

    /// The process id of the command (the leader of its process group and session).
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Kills every process of the run.
    pub fn kill(&self) {
        if let Some(tree) = &self.tree {
            tree.signal(libc::SIGKILL);
        }
    }

    /// Waits for the command, passing on the signals read from `signals`, enforcing the
    /// timeout and limits; then kills whatever of the run is left and cleans up.
    pub fn wait(mut self, signals: Option<&mut ForwardedSignals>) -> Result<Outcome, LaunchError> {
        if let Some((code, message)) = self.failed.take() {
            let outcome = self.outcome(ExitKind::Code(code), EndReason::ExecFailed(message), None);
            self.finish();
            return Ok(outcome);
        }
        let watched = self.watch(signals);
        if let Some(tree) = self.tree.as_mut() {
            tree.kill_all();
        }
        let mut warnings = self.finish();
        let watched = watched?;
        let exit = if libc::WIFSIGNALED(watched.status) {
            ExitKind::Signal(libc::WTERMSIG(watched.status))
        } else {
            ExitKind::Code(libc::WEXITSTATUS(watched.status))
        };
        let reason = watched.reason(exit);
        let mut outcome = self.outcome(exit, reason, Some((&watched.usage, watched.peak.resident_bytes)));
        outcome.warnings.append(&mut warnings);
        Ok(outcome)
    }

    fn outcome(&self, exit: ExitKind, reason: EndReason, usage: Option<(&libc::rusage, u64)>) -> Outcome {
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        let (user_time, system_time, rss) = match usage {
            // ru_maxrss is in bytes on macOS.
            Some((u, peak)) => (tv(u.ru_utime), tv(u.ru_stime), (u.ru_maxrss.max(0) as u64).max(peak)),
            None => (Duration::ZERO, Duration::ZERO, 0),
        };
        Outcome {
            exit,
            reason,
            duration: self.started.elapsed(),
            user_time,
            system_time,
            max_rss_kb: rss / 1024,
            warnings: Vec::new(),
        }
    }

    /// Removes the run's temporary folder; returns what could not be undone.
    fn finish(&mut self) -> Vec<String> {
        self.finished = true;
        if self.tmp.removed {
            return Vec::new();
        }
        match self.tmp.remove() {
            Ok(()) => Vec::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => vec![format!("removing the run's temporary folder {}: {e}", self.tmp.path().display())],
        }
    }

    fn watch(&mut self, mut signals: Option<&mut ForwardedSignals>) -> Result<Watched, LaunchError> {
        let mut w = Watched::default();
        if let Some(s) = signals.as_deref() {
            self.kq.add(s.fd() as usize, libc::EVFILT_READ, 0).map_err(io_internal("watching signals"))?;
        }
        let stdin = std::io::stdin();
        let _raw = self.terminal.as_ref().and_then(|_| RawMode::enter(stdin.as_fd()));
        if let Some(relay) = self.terminal.as_mut() {
            relay.listen(&self.kq);
        }
        let mut deadline = self.timeout.map(|t| self.started + t);
        // Short commands end before the first sample: it costs a scan of the process table.
        let mut next_sample = self.started + Duration::from_millis(WATCH_INTERVAL_MS);
        loop {
            if let Some((status, usage)) = sys::try_wait(self.pid).map_err(io_internal("wait"))? {
                w.status = status;
                w.usage = usage;
                break;
            }
            let now = Instant::now();
            if now >= next_sample {
                self.sample(&mut w);
                next_sample = now + Duration::from_millis(WATCH_INTERVAL_MS);
            }
            if deadline.is_some_and(|d| now >= d) {
                deadline = self.time_out(&mut w);
            }
            let wake = deadline.map_or(next_sample, |d| d.min(next_sample));
            for event in self.kq.wait(Some(wake.saturating_duration_since(now))).map_err(io_internal("kevent"))? {
                self.dispatch(event, signals.as_deref_mut());
            }
        }
        if let Some(relay) = self.terminal.as_mut() {
            relay.drain();
        }
        Ok(w)
    }

    /// Samples the tree and ends the run when it is over a limit.
    fn sample(&mut self, w: &mut Watched) {
        let Some(tree) = self.tree.as_mut() else { return };
        let s: Sample = tree.refresh();
        w.peak.processes = w.peak.processes.max(s.processes);
        w.peak.resident_bytes = w.peak.resident_bytes.max(s.resident_bytes);
        let (memory, pids) = self.limits;
        if w.killed.is_none() && memory.is_some_and(|m| s.resident_bytes > m) {
            w.killed = Some(EndReason::MemoryLimit);
        } else if w.killed.is_none() && pids.is_some_and(|p| s.processes as u64 > p) {
            w.killed = Some(EndReason::PidsLimit);
        }
        w.pids_reached |= pids.is_some_and(|p| s.processes as u64 >= p);
        if w.killed.is_some() {
            tree.kill_all();
        }
    }

    /// First SIGTERM to the run, then, after the grace period, SIGKILL.
    fn time_out(&mut self, w: &mut Watched) -> Option<Instant> {
        let tree = self.tree.as_mut()?;
        if w.timed_out {
            tree.kill_all();
            None
        } else {
            w.timed_out = true;
            tree.signal(libc::SIGTERM);
            Some(Instant::now() + TIMEOUT_GRACE)
        }
    }

    fn dispatch(&mut self, event: sys::Event, signals: Option<&mut ForwardedSignals>) {
        if let Some(s) = signals.filter(|s| event.ident == s.fd() as usize && event.filter == libc::EVFILT_READ) {
            for sig in s.take() {
                match (sig, &self.terminal) {
                    (libc::SIGWINCH, Some(relay)) => pty::sync_size(std::io::stdin().as_fd(), relay.terminal()),
                    (libc::SIGWINCH, None) => {}
                    _ => sys::kill_group(self.pid, sig),
                }
            }
        } else if let Some(relay) = self.terminal.as_mut() {
            relay.handle(event, &self.kq);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A sandbox dropped without `wait` must not keep running.
        if !self.finished {
            if let Some(tree) = self.tree.as_mut() {
                tree.kill_all();
            }
            if self.pid > 0 {
                let _ = sys::wait_blocking(self.pid);
            }
            self.finish();
        }
    }
}

/// What the watch saw.
struct Watched {
    status: c_int,
    usage: libc::rusage,
    timed_out: bool,
    /// The limit the supervisor ended the run for.
    killed: Option<EndReason>,
    /// The process count reached the limit (forks failed from there on).
    pids_reached: bool,
    peak: Sample,
}

impl Default for Watched {
    fn default() -> Self {
        Watched {
            status: 0,
            // SAFETY: rusage is plain data; all zeros is a valid value.
            usage: unsafe { std::mem::zeroed() },
            timed_out: false,
            killed: None,
            pids_reached: false,
            peak: Sample::default(),
        }
    }
}

impl Watched {
    fn reason(&self, exit: ExitKind) -> EndReason {
        match (&self.killed, exit) {
            _ if self.timed_out => EndReason::Timeout,
            (Some(reason), _) => reason.clone(),
            (None, ExitKind::Code(c)) if c != 0 && self.pids_reached => EndReason::PidsLimit,
            (None, ExitKind::Code(_)) => EndReason::Exited,
            (None, ExitKind::Signal(_)) => EndReason::Signaled,
        }
    }
}

/// Applies a profile compiled from the default policy, with every kind of rule the backend
/// writes, in a child process: Ok when this macOS accepts ringfence's profiles.
pub fn probe() -> Result<(), String> {
    let tmp = TempDir::create().map_err(|e| format!("creating a temporary folder: {e}"))?;
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/".into());
    let policy = ringfence_policy::PolicyBuilder::new(tmp.path(), &home)
        .overrides(ringfence_policy::Overrides { deny_write: vec!["a \"b\"".into()], ..Default::default() })
        .build()
        .map_err(|e| e.to_string())?;
    let request = Request {
        policy: &policy,
        tmp: tmp.path(),
        net: Net::Gateway { http: 1, socks: 2 },
        terminal: Some(Path::new("/dev/ttys999")),
    };
    let compiled = compile(&request, &resolve::host()).map_err(|e| e.message)?;
    let text = sys::cstring(compiled.profile.text.as_bytes(), "the profile").map_err(|e| e.to_string())?;
    let params = profile_params(&compiled.profile).map_err(|e| e.message)?;
    let (read, write) = sys::pipe().map_err(|e| e.to_string())?;
    let applied = || match sys::apply_profile(&text, &params) {
        Ok(()) => sys::exit_now(0),
        Err(error) => child::profile_refused(write.as_fd(), error),
    };
    // SAFETY: the child applies the profile and exits: system calls only.
    let pid = unsafe { sys::fork(applied) }.map_err(|e| format!("fork: {e}"))?;
    drop(write);
    let report = read_to_end(read);
    let (status, _) = sys::wait_blocking(pid).map_err(|e| format!("wait: {e}"))?;
    let refusal = Report::parse(&report).map(|r| r.text).filter(|text| !text.is_empty());
    match (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, refusal) {
        (true, _) => Ok(()),
        (false, Some(text)) => Err(format!("Seatbelt refused a generated profile: {}", text.trim())),
        (false, None) => Err(format!("the probe process ended with status {status}")),
    }
}

/// The macOS version, for the run.start event.
pub fn os_version() -> String {
    sys::sysctl_string("kern.osproductversion").unwrap_or_default()
}
