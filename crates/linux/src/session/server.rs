//! The process that serves a session: it holds the sandbox (as a run's supervisor does:
//! cgroups, cleaner, placeholders, the Unix-socket guard), takes commands on the session's
//! socket and orders init to run them, and ends everything when its owner exits, when asked
//! to stop, when the session was idle too long, or when the sandbox ends.

use super::folder::{self, info_path, info_to_json, socket_path};
use super::wire::{self, MEMORY_LIMIT, STOP, TIMED_OUT};
use crate::protocol::{ExecOrder, Order, Status, MAX_ORDER};
use crate::sandbox::Sandbox;
use crate::sys;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, getsockopt, listen, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use ringfence_backend::session::EnvironmentBuilder;
use ringfence_backend::{LaunchError, LaunchRequest, SessionInfo, SessionStart, Stdio};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts a session: binds its socket, then forks the process that serves it (detached: its
/// own session, not the caller's child), and returns once the sandbox runs. Call it while
/// the process has a single thread, as for a run.
pub(crate) fn start(start: SessionStart) -> Result<SessionInfo, LaunchError> {
    if crate::host::thread_count() != Some(1) {
        return Err(LaunchError::internal("ringfence starts a session only from a process with a single thread"));
    }
    if start.policy.network == ringfence_policy::NetworkMode::Allow {
        return Err(LaunchError::unsupported(
            "sessions do not serve the network gateway (--network allow) yet",
            "use --network none or host for the session, or `ringfence run` for commands that need the gateway",
        ));
    }
    let dir = folder::folder()?;
    if let Some(name) = &start.name {
        if folder::list()?.iter().any(|s| s.name.as_ref() == Some(name)) {
            return Err(LaunchError::policy(format!("a session named {name} is running"), "pick another --name"));
        }
    }
    let id = new_id()?;
    let listener = listen_at(&socket_path(&dir, &id))?;
    let owner = sys::pidfd_open(start.owner)
        .map_err(|e| LaunchError::internal(format!("watching the session's owner (pid {}): {e}", start.owner)))?;
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| LaunchError::internal(format!("pipe: {e}")))?;
    let served = Served { dir: dir.clone(), id: id.clone(), listener, owner, ready: ready_write };
    // SAFETY: the process is single-threaded (checked above), so no lock is held in the copy.
    let middle = unsafe { sys::fork_process() }.map_err(|e| LaunchError::internal(format!("fork: {e}")))?;
    if middle == 0 {
        sys::child_life(125, || detach(served, start));
    }
    drop(served);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(middle), None);
    await_ready(ready_read, &dir, &id)
}

/// A random id, 16 hex digits.
fn new_id() -> Result<String, LaunchError> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| LaunchError::internal(format!("/dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session's listening socket, mode 0600 in the user's 0700 folder.
fn listen_at(path: &Path) -> Result<OwnedFd, LaunchError> {
    let fail = |e: nix::Error| LaunchError::internal(format!("the session's socket {}: {e}", path.display()));
    let sock = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).map_err(fail)?;
    bind(sock.as_raw_fd(), &UnixAddr::new(path).map_err(fail)?).map_err(fail)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LaunchError::internal(format!("{}: {e}", path.display())))?;
    listen(&sock, Backlog::new(64).map_err(fail)?).map_err(fail)?;
    Ok(sock)
}

/// Reads the server's first word: its pid once the sandbox runs, or why it could not start.
fn await_ready(ready: OwnedFd, dir: &Path, id: &str) -> Result<SessionInfo, LaunchError> {
    use std::io::Read;
    let mut text = Vec::new();
    let _ = std::fs::File::from(ready).read_to_end(&mut text);
    if let Some(Status::SetupFailed(err)) = Status::decode(&text) {
        return Err(err);
    }
    let info = std::fs::read_to_string(info_path(dir, id)).ok().and_then(|t| folder::info_from_json(id, &t));
    info.ok_or_else(|| {
        let _ = std::fs::remove_file(socket_path(dir, id));
        LaunchError::internal("the session's server exited while starting")
    })
}

/// What the serving process takes along.
struct Served {
    dir: PathBuf,
    id: String,
    listener: OwnedFd,
    owner: OwnedFd,
    ready: OwnedFd,
}

/// In the forked middle process: a session of its own, and the server forked from it, so the
/// server is nobody's child to reap.
fn detach(served: Served, start: SessionStart) -> std::convert::Infallible {
    let _ = nix::unistd::setsid();
    // SAFETY: single-threaded, as its parent was.
    match unsafe { sys::fork_process() } {
        Ok(0) => serve(served, start),
        _ => sys::exit_now(0),
    }
}

/// The server's life; never returns.
fn serve(served: Served, start: SessionStart) -> ! {
    if let Ok(null) = std::fs::File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: the server execs nothing and owns its standard descriptors; nothing of
            // Rust's holds them.
            let _ = unsafe { sys::dup_onto(null.as_raw_fd(), fd) };
        }
    }
    let Served { dir, id, listener, owner, ready } = served;
    let SessionStart { policy, name, owner: owner_pid, idle, environment } = start;
    let workspace = policy.workspace.clone();
    let timeout = policy.limits.timeout.map(|t| t.0);
    let request = LaunchRequest {
        program: Default::default(),
        args: Vec::new(),
        env: Vec::new(),
        cwd: workspace.clone(),
        policy,
        stdio: [Stdio::Null, Stdio::Null, Stdio::Null],
        terminal: false,
        // Sessions refuse network `allow` at start: no gateway to ask.
        egress: None,
        // The exec monitor enforces the exec rules for every command; its records have no
        // event file to go to yet.
        events: Arc::new(|_| {}),
    };
    let (sandbox, control) = match crate::launch::spawn_session(request) {
        Ok(s) => s,
        Err(err) => {
            let _ = std::fs::remove_file(socket_path(&dir, &id));
            let _ = sys::write_fd(ready.as_raw_fd(), &Status::SetupFailed(err).encode());
            sys::exit_now(1)
        }
    };
    let info =
        SessionInfo { id: id.clone(), name, pid: std::process::id(), owner: owner_pid, workspace, started: now() };
    let _ = std::fs::write(info_path(&dir, &id), info_to_json(&info));
    drop(ready);
    // Init is our unreaped child here; the pidfd keeps naming it after the dispatcher reaps it.
    let Ok(init) = sys::pidfd_open(sandbox.id()).map(Arc::new) else { sys::exit_now(1) };
    let mut sandbox = sandbox;
    if let Some(guard) = sandbox.take_socket_guard() {
        let init = init.clone();
        std::thread::spawn(move || guard_socket_memory(&guard, init.as_fd()));
    }
    let (wake_read, wake_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|_| sys::exit_now(1));
    let server = Arc::new(Server::new(control, environment, info.workspace.clone(), wake_write, timeout));
    let dispatcher = {
        let server = server.clone();
        std::thread::spawn(move || server.dispatch(sandbox))
    };
    server.accept_until_done(&listener, &owner, &wake_read, idle);
    let _ = sys::pidfd_kill(init.as_fd());
    let _ = dispatcher.join();
    let _ = std::fs::remove_file(socket_path(&dir, &id));
    let _ = std::fs::remove_file(info_path(&dir, &id));
    sys::exit_now(0)
}

/// As a run's supervisor does: the socket buffers may outgrow their share of the memory cap
/// only until the next look; then the sandbox, and with it the session, ends.
fn guard_socket_memory(guard: &crate::cgroup::SocketGuard, init: std::os::fd::BorrowedFd) {
    while !guard.exceeded() {
        std::thread::sleep(crate::cgroup::SOCKET_GUARD_INTERVAL);
    }
    let _ = sys::pidfd_kill(init);
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The state the server's threads share.
struct Server {
    /// The supervisor's end of the control socket: orders to init, one packet each.
    control: Mutex<OwnedFd>,
    /// The connection of each running command, to send its end on.
    waiting: Mutex<HashMap<u64, OwnedFd>>,
    next_id: AtomicU64,
    running: AtomicUsize,
    last_active: Mutex<Instant>,
    environment: EnvironmentBuilder,
    workspace: PathBuf,
    uid: u32,
    /// A byte here ends the accepting loop: a stop, or the sandbox's end.
    wake: OwnedFd,
    /// The policy's timeout, for each command.
    timeout: Option<Duration>,
    /// The commands whose time ran out.
    timed_out: Mutex<std::collections::HashSet<u64>>,
}

impl Server {
    fn new(
        control: OwnedFd,
        environment: EnvironmentBuilder,
        workspace: PathBuf,
        wake: OwnedFd,
        timeout: Option<Duration>,
    ) -> Server {
        Server {
            control: Mutex::new(control),
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            running: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            environment,
            workspace,
            uid: nix::unistd::geteuid().as_raw(),
            wake,
            timeout,
            timed_out: Mutex::new(Default::default()),
        }
    }

    /// Serves connections until the owner exits, a stop, the idle timeout, or the sandbox's end.
    fn accept_until_done(self: &Arc<Self>, listener: &OwnedFd, owner: &OwnedFd, wake: &OwnedFd, idle: Duration) {
        loop {
            let idle_left = idle.saturating_sub(self.last_active.lock().map(|t| t.elapsed()).unwrap_or_default());
            if self.running.load(Ordering::SeqCst) == 0 && idle_left.is_zero() {
                return;
            }
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(owner.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            // While a command runs the idle clock is stopped: look again now and then only.
            let busy = self.running.load(Ordering::SeqCst) > 0;
            let ms = if busy { 1000 } else { idle_left.as_millis().clamp(1, 60_000) as i32 };
            if poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)).is_err() {
                continue;
            }
            let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
            if ready(1) || ready(2) {
                return;
            }
            if !ready(0) {
                continue;
            }
            let Ok(conn) = accept4(listener, SockFlag::SOCK_CLOEXEC) else { continue };
            if getsockopt(&conn.as_fd(), sockopt::PeerCredentials).map(|c| c.uid()) != Ok(self.uid) {
                continue;
            }
            let server = self.clone();
            std::thread::spawn(move || server.handle(conn));
        }
    }

    /// One connection: a command to run, or a stop.
    fn handle(&self, conn: OwnedFd) {
        let mut buf = vec![0u8; MAX_ORDER];
        let Ok((n, streams)) = sys::recv_with_fds(conn.as_fd(), &mut buf) else { return };
        match buf[..n] {
            [STOP] => {
                let _ = sys::write_fd(self.wake.as_raw_fd(), b"s");
                // Keep the connection open: it closes when the server exits.
                std::mem::forget(conn);
            }
            _ => {
                if let Some(Order::Exec(order)) = Order::decode(&buf[..n]) {
                    self.run(conn, order, streams);
                }
            }
        }
    }

    /// Orders init to run one command, passes its signals on, and kills it if the caller goes.
    fn run(&self, conn: OwnedFd, mut order: ExecOrder, streams: Vec<OwnedFd>) {
        self.running.fetch_add(1, Ordering::SeqCst);
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        order.id = id;
        if order.cwd.as_os_str().is_empty() {
            order.cwd = self.workspace.clone();
        }
        order.env = (self.environment)(&order.env, &order.cwd);
        if let Ok(copy) = conn.try_clone() {
            self.lock_waiting().insert(id, copy);
        }
        let raw: Vec<i32> = streams.iter().map(|s| s.as_raw_fd()).collect();
        let sent = self.order(&Order::Exec(order), &raw);
        drop(streams);
        if let Err(e) = sent {
            self.lock_waiting().remove(&id);
            let err = LaunchError::internal(format!("ordering the command: {e}"));
            let _ = sys::send_with_fds(conn.as_fd(), &Status::SetupFailed(err).encode(), &[]);
        }
        self.relay_signals(&conn, id);
        // The caller went away before the command ended: the command goes too.
        if self.lock_waiting().remove(&id).is_some() {
            let _ = self.order(&Order::Signal { id, signal: libc::SIGKILL }, &[]);
        }
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Passes the caller's signals on to command `id` until the caller closes the connection,
    /// and enforces the policy's timeout (SIGTERM, SIGKILL a grace period later).
    fn relay_signals(&self, conn: &OwnedFd, id: u64) {
        let mut deadline = self.timeout.map(|t| Instant::now() + t);
        let mut buf = [0u8; 64];
        loop {
            let wait =
                deadline.map(|at| at.saturating_duration_since(Instant::now()).as_millis().clamp(1, 60_000) as i32);
            let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
            let timeout = wait.map_or(PollTimeout::NONE, |ms| PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX));
            if matches!(poll(&mut fds, timeout), Ok(0)) {
                if deadline.is_some_and(|at| Instant::now() >= at) {
                    deadline = self.time_out(id);
                }
                continue;
            }
            match sys::recv_with_fds(conn.as_fd(), &mut buf) {
                Ok((0, _)) | Err(_) => return,
                Ok((n, _)) => {
                    if let Some(Order::Signal { signal, .. }) = Order::decode(&buf[..n]) {
                        let _ = self.order(&Order::Signal { id, signal }, &[]);
                    }
                }
            }
        }
    }

    /// Command `id`'s time is up: SIGTERM the first time, SIGKILL the second; the next deadline.
    fn time_out(&self, id: u64) -> Option<Instant> {
        let mut timed_out = self.timed_out.lock().unwrap_or_else(|p| p.into_inner());
        if timed_out.insert(id) {
            let _ = self.order(&Order::Signal { id, signal: libc::SIGTERM }, &[]);
            Some(Instant::now() + crate::sandbox::TIMEOUT_GRACE)
        } else {
            let _ = self.order(&Order::Signal { id, signal: libc::SIGKILL }, &[]);
            None
        }
    }

    fn order(&self, order: &Order, fds: &[i32]) -> std::io::Result<()> {
        let control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        sys::send_with_fds(control.as_fd(), &order.encode(), fds)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, OwnedFd>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Passes each command's end to its caller, until init is gone; then ends the sandbox
    /// (its review and clean-up) and wakes the accepting loop.
    fn dispatch(&self, mut sandbox: Sandbox) {
        let mut oom_kills = sandbox.oom_kills();
        while let Some(report) = sandbox.next_report() {
            if let Status::ExecEnded { id, .. } = &report {
                let review = sandbox.review_again();
                let killed = std::mem::replace(&mut oom_kills, sandbox.oom_kills());
                if let Some(conn) = self.lock_waiting().remove(id) {
                    if oom_kills > killed {
                        let _ = sys::send_with_fds(conn.as_fd(), &[MEMORY_LIMIT], &[]);
                    }
                    let findings = review.findings.iter().map(|f| (false, f));
                    for (failed, finding) in findings.chain(review.failures.iter().map(|f| (true, f))) {
                        let _ = sys::send_with_fds(conn.as_fd(), &wire::encode_finding(failed, finding), &[]);
                    }
                    if self.timed_out.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
                        let _ = sys::send_with_fds(conn.as_fd(), &[TIMED_OUT], &[]);
                    }
                    let _ = sys::send_with_fds(conn.as_fd(), &report.encode(), &[]);
                }
            }
        }
        drop(sandbox);
        self.lock_waiting().clear();
        let _ = sys::write_fd(self.wake.as_raw_fd(), b"e");
    }
}
