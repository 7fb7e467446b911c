//! The supervisor's side of seccomp user notification. The sandbox's filter traps some system
//! calls (SECCOMP_RET_USER_NOTIF) instead of deciding them itself; init hands the listener
//! descriptor to the supervisor, where threads started after the clone (`serving.rs`) receive
//! each trapped call, dispatch it by system call number and answer it: connect(2) (`connect.rs`)
//! and execve(2)/execveat(2) (`exec.rs`, with `processes.rs` watching what they start). To trap
//! another, add it to the filter's prologue (seccomp.rs) and give it an arm in [`dispatch`].
//!
//! Fail closed: a handler that breaks (an error, a panic) ends the sandbox at once: it kills
//! init and waits for it, which takes the whole pid namespace down, while the listener keeps
//! every trapped call waiting. The listener closes only when the guard stops, after the
//! sandbox is gone; a call still trapped then fails with ENOSYS. The kernel allows one
//! listener per filter chain, so while ours is open no process of the sandbox can install a
//! listener of its own and let its calls continue. [`Guard::stop`] says why a broken handler
//! ended the run.

mod connect;
mod exec;
mod exec_args;
mod kernel;
mod processes;
mod script;
mod serving;
mod sock_diag;
mod target;
mod unix;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

pub(crate) use exec_args::{ARGC_CAP, ARGS_CAP};
pub(crate) use sock_diag::open as open_sock_diag;

/// A trapped system call, as the kernel reported it.
pub(crate) struct Call {
    pub id: u64,
    /// The calling thread, as a pid of the supervisor's pid namespace.
    pub tid: libc::pid_t,
    pub nr: i64,
    pub args: [u64; 6],
}

/// How a trapped call ends: with this return value, or failing with this errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Value(i64),
    Errno(i32),
    /// The kernel carries the call out itself, reading its arguments again.
    Continue,
}

/// Work whose result answers a call.
pub(crate) type Work = Box<dyn FnOnce() -> Answer + Send>;

/// What a handler makes of a call (a refusal is a [`Fail`]).
pub(crate) enum Step {
    /// A connect, whose result is the answer. When it `may_block`, other threads receive the
    /// next calls meanwhile, and `socket` is shut down if the guard stops while it waits.
    Connect { socket: Arc<OwnedFd>, may_block: bool, work: Work },
    /// The kernel carries the call out as the caller made it (an exec that is allowed).
    Continue,
    /// The caller stopped waiting (killed, or interrupted by a signal): nothing to answer.
    Gone,
}

/// Why a call is not carried out: an errno for the caller, or the guard itself is broken,
/// which ends the run.
#[derive(Debug)]
pub(crate) enum Fail {
    Errno(i32),
    Broken(String),
}

impl Fail {
    /// The errno of a failed system call.
    fn of(err: impl Into<io::Error>) -> Fail {
        Fail::Errno(err.into().raw_os_error().unwrap_or(libc::EIO))
    }
}

/// What the handlers share.
pub(crate) struct Context {
    listener: OwnedFd,
    /// The connect(2) handler's knowledge of the sandbox, when connect is supervised.
    unix: Option<unix::Sandbox>,
    /// The gateway's early decision on TCP connections (network `allow`).
    egress: Option<ringfence_backend::EgressJudge>,
    /// The exec handler, when execs are watched.
    exec: Option<exec::Monitor>,
}

impl Context {
    /// Answers a call. A failure means the caller no longer waits (killed or interrupted), so
    /// there is nobody to tell.
    fn answer(&self, id: u64, answer: Answer) {
        let (val, error) = match answer {
            Answer::Value(v) => (v, 0),
            Answer::Errno(e) => (0, -e),
            Answer::Continue => (0, 0),
        };
        let _ = kernel::respond(self.listener.as_fd(), id, val, error, answer == Answer::Continue);
    }

    /// Whether the call still waits: then its caller is alive, and what was read from it by
    /// pid (its descriptors, memory, root) was read from the right process.
    fn still_pending(&self, id: u64) -> bool {
        kernel::still_pending(self.listener.as_fd(), id)
    }
}

/// What the exec monitor needs from the launch.
pub(crate) struct ExecWatch {
    pub rules: ringfence_policy::ExecRules,
    pub home: std::path::PathBuf,
    pub sink: ringfence_backend::EventSink,
}

/// How the handler ended: why it failed, if it did, and what the exec monitor counted.
pub(crate) struct Stopped {
    pub failure: Option<String>,
    pub counts: Option<ringfence_backend::ProcessCounts>,
}

/// The exec monitor's own threads: the watch of the processes' ends and the event delivery.
struct ExecThreads {
    processes: Arc<processes::Processes>,
    watch: std::thread::JoinHandle<()>,
    /// Dropped to end the watch.
    stop: OwnedFd,
    delivery: ringfence_backend::Delivery,
}

impl ExecThreads {
    /// Ends the watch, reports the processes it still held, and waits until every event is
    /// delivered (every reporter must be dropped first but the watch's).
    fn finish(self) {
        drop(self.stop);
        let _ = self.watch.join();
        self.processes.finish();
        drop(self.processes);
        self.delivery.finish();
    }
}

/// The running handler. Stopping it (or dropping it) ends its threads.
pub(crate) struct Guard {
    shared: Option<Arc<serving::Shared>>,
    /// Dropped to tell the threads to stop.
    stop: Option<OwnedFd>,
    exec: Option<ExecThreads>,
}

impl Guard {
    /// Starts serving the listener for the sandbox whose init is `init`. `connect`: connect(2)
    /// is supervised, with a netlink socket init created in the sandbox's own network namespace,
    /// or None when the sandbox shares ours (`--network host`). `exec`: execs are watched.
    /// `egress` decides TCP connections before they are made, in `allow` mode.
    pub fn start(
        listener: OwnedFd,
        connect: Option<Option<OwnedFd>>,
        exec: Option<ExecWatch>,
        init: libc::pid_t,
        egress: Option<ringfence_backend::EgressJudge>,
    ) -> io::Result<Guard> {
        let unix = match connect {
            Some(Some(diag)) => Some(unix::Sandbox::new(init, unix::Network::Own(diag))),
            Some(None) => Some(unix::Sandbox::new(init, unix::Network::Shared(open_sock_diag()?))),
            None => None,
        };
        let (monitor, threads) = match exec {
            Some(watch) => {
                // Every exec is a round trip: worth the kernel's direct hand-over, where it has one.
                kernel::prefer_sync_wake_up(listener.as_fd());
                let (monitor, threads) = start_exec_monitor(watch, init)?;
                (Some(monitor), Some(threads))
            }
            None => (None, None),
        };
        let ctx = Context { listener, unix, egress, exec: monitor };
        let init = Init { pid: init, pidfd: kernel::pidfd_open(init, 0)? };
        let (stop_read, stop_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let shared = serving::Shared::new(ctx, stop_read, init);
        shared.spawn()?;
        Ok(Guard { shared: Some(shared), stop: Some(stop_write), exec: threads })
    }

    /// Ends the sandbox (if it still runs) and the handler; the reason the handler failed, if
    /// it did, and the exec monitor's counts. The listener closes last.
    pub fn stop(mut self) -> Stopped {
        self.finish()
    }

    fn finish(&mut self) -> Stopped {
        drop(self.stop.take());
        let Some(shared) = self.shared.take() else { return Stopped { failure: None, counts: None } };
        let failure = shared.stop();
        let counts = shared.ctx.exec.as_ref().map(exec::Monitor::counts);
        // The serving threads are gone: this is the last reference, and with it the handler's
        // reporter goes.
        drop(shared);
        if let Some(threads) = self.exec.take() {
            threads.finish();
        }
        Stopped { failure, counts }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The exec handler's state, and the threads that watch processes end and deliver events.
fn start_exec_monitor(watch: ExecWatch, init: libc::pid_t) -> io::Result<(exec::Monitor, ExecThreads)> {
    let (reporter, delivery) =
        ringfence_backend::Delivery::start(watch.sink, ringfence_backend::events::QUEUE_CAPACITY)?;
    let (stop_read, stop) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let processes = Arc::new(processes::Processes::new(init, reporter.clone(), &stop_read)?);
    let watcher = processes.clone();
    let watch_thread = std::thread::Builder::new().name("ringfence-exits".into()).spawn(move || {
        let _keep = stop_read;
        watcher.run();
    })?;
    let monitor = exec::Monitor::new(watch.rules, watch.home, reporter, processes.clone());
    Ok((monitor, ExecThreads { processes, watch: watch_thread, stop, delivery }))
}

/// The sandbox's init, the supervisor's child: it is reaped only after the guard has stopped,
/// so its pid can't name another process meanwhile.
pub(crate) struct Init {
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

impl Init {
    /// Kills init (nothing, if it has already exited) and waits until it has exited, which it
    /// does only once every other process of its pid namespace is gone.
    fn end(&self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
        let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
        while let Err(nix::Error::EINTR) = poll(&mut fds, PollTimeout::from(10_000u16)) {}
    }
}

/// The handler for each trapped system call.
fn dispatch(ctx: &Context, call: &Call) -> Result<Step, Fail> {
    match call.nr {
        libc::SYS_connect => connect::handle(ctx, call),
        libc::SYS_execve | libc::SYS_execveat => exec::handle(ctx, call),
        // The filter traps nothing else; a call trapped by mistake fails rather than passes.
        _ => Err(Fail::Errno(libc::ENOSYS)),
    }
}

/// Whether this machine offers what the connect(2) handler needs: what the exec monitor needs
/// ([`probe_exec`]), the mount ID from statx (5.8), and Unix socket diagnostics
/// (CONFIG_UNIX_DIAG). The error names what is missing.
pub fn probe() -> Result<(), String> {
    probe_exec()?;
    let root = std::fs::File::open("/").map_err(|e| format!("opening /: {e}"))?;
    match kernel::file_id(root.as_fd()) {
        Ok(id) if id.mount_id.is_some() => {}
        _ => return Err("statx reports no mount ID (Linux 5.8+)".into()),
    }
    sock_diag::probe().map_err(|e| format!("the kernel answers no Unix socket diagnostics (CONFIG_UNIX_DIAG): {e}"))
}

/// Whether this machine offers what every handler needs: seccomp user notification (Linux
/// 5.0), a /proc, pidfd_getfd (5.6) and process_vm_readv not forbidden by Yama.
pub fn probe_exec() -> Result<(), String> {
    if !crate::sys::seccomp_user_notif() {
        return Err("the kernel has no seccomp user notification (Linux 5.0+)".into());
    }
    // The sandbox's processes, and verified sockets (through /proc/self/fd), are reached there.
    if !std::path::Path::new("/proc/self/fd").is_dir() {
        return Err("ringfence's own mount namespace has no /proc".into());
    }
    if !kernel::has_pidfd_getfd() {
        return Err("the kernel has no pidfd_getfd (Linux 5.6+)".into());
    }
    if std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|s| s.trim() == "3") {
        return Err("Yama's ptrace_scope 3 forbids pidfd_getfd and process_vm_readv".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{receive_handover, Control, Handover};
    use crate::sys;
    use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

    fn filter() -> Vec<seccompiler::sock_filter> {
        crate::seccomp::build(crate::seccomp::Options { supervise_connect: true, ..Default::default() }).unwrap()
    }

    /// connect(2) to `path` on a fresh Unix socket; the errno, or 0.
    fn connect_errno(path: &str) -> i32 {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .unwrap();
        let addr = nix::sys::socket::UnixAddr::new(path).unwrap();
        match nix::sys::socket::connect(sock.as_raw_fd(), &addr) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }
    }

    /// In a forked child: confine it with the filter, send the listener over `hand_over` (or
    /// just close it), connect to `path`, report the errno on `report`, and wait to be killed.
    fn confined_child(path: &str, hand_over: Option<BorrowedFd>, report: RawFd) -> ! {
        sys::set_no_new_privs().unwrap();
        let listener = sys::install_seccomp(&filter(), true).unwrap().unwrap();
        if let Some(sock) = hand_over {
            Control::Handover(Handover::SeccompListener, listener.as_fd()).send(sock).unwrap();
        }
        drop(listener);
        let errno = connect_errno(path);
        let _ = sys::write_fd(report, &errno.to_ne_bytes());
        std::thread::sleep(std::time::Duration::from_secs(30));
        sys::exit_now(0)
    }

    /// Once the listener is closed, the kernel fails every trapped call with ENOSYS: a dead
    /// handler never lets a connect through.
    #[test]
    fn trapped_calls_fail_with_enosys_without_a_listener() {
        let (read, write) = nix::unistd::pipe().unwrap();
        // SAFETY: the child takes no lock other threads of the test may hold (libc's fork keeps
        // the allocator usable; it prints nothing unless it fails).
        let pid = unsafe { sys::fork_with_libc() }.unwrap();
        if pid == 0 {
            confined_child("/nonexistent-ringfence.sock", None, write.as_raw_fd());
        }
        drop(write);
        let mut buf = [0u8; 4];
        let n = sys::read_fd(read.as_raw_fd(), &mut buf).unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let _ = sys::wait4(pid);
        assert_eq!((n, i32::from_ne_bytes(buf)), (4, libc::ENOSYS));
    }

    /// A handler that breaks (here: its sock_diag socket is not one) kills the sandbox's init
    /// and says why when stopped.
    #[test]
    fn a_broken_handler_kills_the_sandbox_and_says_why() {
        let dir = std::env::temp_dir().join(format!("rf-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        // SAFETY: as above.
        let pid = unsafe { sys::fork_with_libc() }.unwrap();
        if pid == 0 {
            confined_child(path.to_str().unwrap(), Some(theirs.as_fd()), write.as_raw_fd());
        }
        drop((theirs, write));
        let listener = receive_handover(ours.as_fd(), Handover::SeccompListener).unwrap();
        let (not_netlink, _keep) = nix::unistd::pipe().unwrap();
        let guard = Guard::start(listener, Some(Some(not_netlink)), None, pid, None).unwrap();
        let (status, _) = sys::wait4(pid).unwrap();
        let why = guard.stop().failure;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL, "status {status:#x}");
        assert!(why.as_deref().is_some_and(|w| w.contains("sock_diag")), "{why:?}");
        drop(read);
    }
}
