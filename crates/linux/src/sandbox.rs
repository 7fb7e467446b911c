//! A running sandbox, on the supervisor's side: it relays the terminal, forwards signals,
//! enforces the timeout and the socket buffers' share of the memory cap, reads init's reports
//! (see `protocol.rs`), and ends the run: init reaped, the writable roots reviewed, and what
//! the launch set up on the host undone by its [`Rollback`].

use crate::api::{Enforcement, Outcome};
use crate::cgroup::{self, CgroupStats, RunCgroup, SocketGuard};
use crate::protocol::Status;
use crate::pty::{self, Relay};
use crate::rollback::Rollback;
use crate::sys;
use crate::trace::supervisor as trace;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use ringfence_audit::{EndReason, LaunchError};
use ringfence_backend::{Exit, GatewayListeners};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a timed-out command gets between SIGTERM and SIGKILL.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// The status pipe's reading end.
struct StatusReader(BufReader<std::fs::File>);

/// The status pipe has closed: init and the command's process are gone.
struct Closed;

impl StatusReader {
    /// The next line, decoded (None for a line that is no message).
    fn next(&mut self) -> Result<Option<Status>, Closed> {
        let mut line = Vec::new();
        match self.0.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => Err(Closed),
            Ok(_) => Ok(Status::decode(&line)),
        }
    }
}

/// A running sandbox.
pub struct Sandbox {
    init: libc::pid_t,
    /// Set once init is reaped: its pid may name another process after that.
    reaped: bool,
    status: StatusReader,
    relay: Option<Relay>,
    cgroup: Option<RunCgroup>,
    socket_guard: Option<SocketGuard>,
    /// What the launch set up on the host, undone when the run ends.
    rollback: Rollback,
    started: Instant,
    timeout: Option<Duration>,
    /// The command's host pid.
    command: Option<u32>,
    /// Reports that arrived before init's "started".
    early: Vec<Status>,
    pub enforcement: Enforcement,
    /// The gateway's sockets, until the caller takes them to serve.
    pub gateway_listeners: Option<GatewayListeners>,
    /// The handler of the system calls the filter traps (connect, exec), while the sandbox runs.
    guard: Option<crate::notify::Guard>,
    /// The exec monitor runs.
    records_execs: bool,
}

impl Sandbox {
    /// The sandbox whose init was just cloned; `status` is the status pipe's reading end.
    pub(crate) fn new(
        init: libc::pid_t,
        status: OwnedFd,
        rollback: Rollback,
        cgroup: Option<RunCgroup>,
        socket_guard: Option<SocketGuard>,
        enforcement: Enforcement,
        timeout: Option<Duration>,
    ) -> Sandbox {
        Sandbox {
            init,
            reaped: false,
            status: StatusReader(BufReader::new(std::fs::File::from(status))),
            relay: None,
            cgroup,
            socket_guard,
            rollback,
            started: Instant::now(),
            timeout,
            command: None,
            early: Vec::new(),
            enforcement,
            gateway_listeners: None,
            guard: None,
            records_execs: false,
        }
    }

    /// The host pid of the sandbox's init.
    pub fn id(&self) -> u32 {
        self.init as u32
    }

    /// The host pid of the command, read when it started (None if it had already ended).
    pub fn command_id(&self) -> Option<u32> {
        self.command
    }

    /// Kills every process of the sandbox.
    pub fn kill(&self) {
        let _ = kill(Pid::from_raw(self.init), Signal::SIGKILL);
    }

    /// Relays between our stdin and stdout and the command's terminal, whose master init sent.
    pub(crate) fn relay_terminal(&mut self, master: OwnedFd) {
        self.relay = Some(Relay::new(master));
    }

    /// Starts the handler of the calls the filter traps, on the listener init sent: connect(2)
    /// when `connect` is given (with init's sock_diag socket, if any), exec when `exec` is;
    /// `egress` decides TCP connections before they are made, in `allow` mode.
    pub(crate) fn start_guard(
        &mut self,
        listener: OwnedFd,
        connect: Option<Option<OwnedFd>>,
        exec: Option<crate::notify::ExecWatch>,
        egress: Option<ringfence_backend::EgressJudge>,
    ) -> Result<(), LaunchError> {
        self.records_execs = exec.is_some();
        let guard = crate::notify::Guard::start(listener, connect, exec, self.init, egress)
            .map_err(|e| LaunchError::internal(format!("starting the handler of trapped system calls: {e}")))?;
        self.guard = Some(guard);
        Ok(())
    }

    /// Whether the exec monitor reports every exec.
    pub fn records_execs(&self) -> bool {
        self.records_execs
    }

    /// Ends the sandbox, if it still runs, and then the handler of trapped calls; why the
    /// handler failed, if it did, and what the exec monitor counted. Called before init is
    /// reaped, so the guard's kill of init can't reach a reused pid.
    fn stop_guard(&mut self) -> crate::notify::Stopped {
        match self.guard.take() {
            Some(guard) => guard.stop(),
            None => crate::notify::Stopped { failure: None, counts: None },
        }
    }

    /// Waits for init to exit, which it does only once nothing else of the sandbox runs.
    fn reap(&mut self) -> std::io::Result<(libc::c_int, libc::rusage)> {
        let reaped = sys::wait4(self.init)?;
        self.reaped = true;
        Ok(reaped)
    }

    /// Ends the sandbox now: kills it, stops the handler, reaps init, and settles (the command
    /// may have started: what it left is reviewed, though nobody hears of it).
    fn end_now(&mut self) {
        self.kill();
        self.stop_guard();
        let _ = self.reap();
        self.rollback.settle();
    }

    /// Ends a launch that failed. The child's own report, when it sent one, is the better
    /// explanation than ours (a broken pipe usually means the child failed first).
    pub(crate) fn abort(mut self, ours: LaunchError) -> LaunchError {
        self.end_now();
        loop {
            match self.status.next() {
                Err(Closed) => return ours,
                Ok(Some(Status::SetupFailed(theirs))) => return theirs,
                Ok(_) => {}
            }
        }
    }

    /// Reviews the writable roots after a session's command (see `Review::run_again`).
    pub(crate) fn review_again(&mut self) -> crate::gitcheck::ReviewReport {
        self.rollback.review_again()
    }

    /// How many OOM kills the run's cgroup counted so far (0 without a memory cgroup).
    pub(crate) fn oom_kills(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, |c| c.stats().oom_kills)
    }

    /// The socket buffers' guard (cgroup v1 with a memory cap), for a session's server to poll.
    pub(crate) fn take_socket_guard(&mut self) -> Option<SocketGuard> {
        self.socket_guard.take()
    }

    /// The next report of a session's init; None once init is gone.
    pub(crate) fn next_report(&mut self) -> Option<Status> {
        loop {
            match self.status.next() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(Closed) => return None,
            }
        }
    }

    /// Waits for init's "started", so set-up errors surface from `spawn`.
    pub(crate) fn await_started(mut self) -> Result<Sandbox, LaunchError> {
        loop {
            match self.status.next() {
                Err(Closed) => return Err(self.abort(LaunchError::internal("the sandbox's init exited during set-up"))),
                Ok(Some(Status::Started)) => {
                    // Init's only child; read now, while it surely still runs or has just ended.
                    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.init));
                    self.command = children.ok().and_then(|c| c.split_whitespace().next()?.parse().ok());
                    return Ok(self);
                }
                Ok(Some(Status::SetupFailed(err))) => return Err(self.abort(err)),
                // The command's own report (exec failed) can beat init's "started".
                Ok(Some(early)) => self.early.push(early),
                Ok(None) => {}
            }
        }
    }

    /// Runs the run to its end: relays the terminal, forwards signals from `signals`, enforces
    /// the timeout, then collects the exit status and usage.
    pub fn wait(mut self, signals: Option<&mut SignalFd>) -> Result<Outcome, LaunchError> {
        let watched = self.watch(signals);
        trace("the run (until init's report and end of file)");
        let stopped = self.stop_guard();
        let (status, rusage) = self.reap().map_err(|e| LaunchError::internal(format!("wait: {e}")))?;
        trace("stopped the guard, reaped init");
        let duration = self.started.elapsed();
        self.rollback.settle();
        let stats = self.cgroup.as_ref().map(|c| c.stats()).unwrap_or_default();
        self.rollback.finish();
        trace("teardown: cgroups, cache layers, the cleaner dismissed");
        let watched = watched?;
        if let Some(why) = stopped.failure {
            return Err(LaunchError::internal(format!(
                "supervising the sandbox's connect(2) and exec calls failed ({why}); the sandbox was killed"
            )));
        }
        let (exit, mut reason) = watched.ending(status, &stats)?;
        let review = self.rollback.take_review();
        if !review.failures.is_empty() {
            reason = EndReason::ReviewFailed;
        }
        Ok(Outcome {
            git_findings: review.findings,
            review_failures: review.failures,
            left: self.rollback.take_left(),
            exit,
            reason,
            duration,
            rusage,
            processes: stopped.counts,
            peak_memory: stats.memory_peak,
        })
    }

    fn watch(&mut self, mut signals: Option<&mut SignalFd>) -> Result<Watched, LaunchError> {
        let mut watched = Watched::default();
        for status in std::mem::take(&mut self.early) {
            watched.record(status);
        }
        let mut deadline = self.timeout.map(|t| self.started + t);
        let mut socket_check = self.socket_guard.as_ref().map(|_| Instant::now() + cgroup::SOCKET_GUARD_INTERVAL);
        let _raw = self.relay.as_ref().and_then(Relay::begin);
        loop {
            let wake =
                [deadline, socket_check, self.relay.as_ref().and_then(Relay::wake_at)].into_iter().flatten().min();
            let ready = self.poll(signals.as_deref(), wake)?;
            if let Some(relay) = &mut self.relay {
                relay.pump(ready.master, ready.stdin);
            }
            if let (true, Some(signals)) = (ready.signals, signals.as_deref_mut()) {
                self.forward_signals(signals);
            }
            if ready.status {
                match self.status.next() {
                    Err(Closed) => break,
                    Ok(Some(status)) => watched.record(status),
                    Ok(None) => {}
                }
                // Init reports only once everything else in the sandbox is dead: clean up while
                // the kernel tears the namespaces down.
                if watched.command.is_some() {
                    trace("the command ended (init's report)");
                    self.rollback.settle();
                }
            }
            // Once init reported, everything in the sandbox is gone: its buffers only shrink.
            if watched.command.is_none() && socket_check.is_some_and(|at| Instant::now() >= at) {
                socket_check = self.guard_socket_memory(&mut watched);
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                deadline = self.time_out(&mut watched);
            }
        }
        if let Some(relay) = &mut self.relay {
            relay.drain();
        }
        Ok(watched)
    }

    /// Waits until the status pipe, the signals, the terminal or our input has something, or
    /// until `wake`.
    fn poll(&self, signals: Option<&SignalFd>, wake: Option<Instant>) -> Result<Ready, LaunchError> {
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(self.status.0.get_ref().as_fd(), PollFlags::POLLIN)];
        let sig_index = signals.map(|s| push(&mut fds, s.as_fd(), PollFlags::POLLIN));
        let (master_index, stdin_index) = match &self.relay {
            Some(relay) => (
                Some(push(&mut fds, relay.master(), relay.master_events())),
                relay.wants_input().then(|| push(&mut fds, stdin.as_fd(), PollFlags::POLLIN)),
            ),
            None => (None, None),
        };
        match poll(&mut fds, poll_timeout(wake)) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => return Ok(Ready::default()),
            Err(e) => return Err(LaunchError::internal(format!("poll: {e}"))),
        }
        let ready =
            |i: Option<usize>| i.and_then(|i| fds.get(i)).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        Ok(Ready {
            status: ready(Some(0)),
            signals: ready(sig_index),
            master: ready(master_index),
            stdin: ready(stdin_index),
        })
    }

    /// Passes the signals we received on to init, which passes them to the command (SIGWINCH
    /// resizes the command's terminal instead).
    fn forward_signals(&self, signals: &mut SignalFd) {
        while let Ok(Some(info)) = signals.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGWINCH {
                if let Some(relay) = &self.relay {
                    pty::sync_size(relay.master());
                }
            } else if let Ok(sig) = Signal::try_from(sig) {
                let _ = kill(Pid::from_raw(self.init), sig);
            }
        }
    }

    /// The run's time is up: SIGTERM, and SIGKILL once the grace is over too; returns the
    /// next deadline.
    fn time_out(&self, watched: &mut Watched) -> Option<Instant> {
        let init = Pid::from_raw(self.init);
        if watched.timed_out {
            let _ = kill(init, Signal::SIGKILL);
            return None;
        }
        watched.timed_out = true;
        let _ = kill(init, Signal::SIGTERM);
        Some(Instant::now() + TIMEOUT_GRACE)
    }

    /// Ends the run if its socket buffers outgrew their share of the memory cap; returns when
    /// to look next.
    fn guard_socket_memory(&self, watched: &mut Watched) -> Option<Instant> {
        let guard = self.socket_guard.as_ref()?;
        if !guard.exceeded() {
            return Some(Instant::now() + cgroup::SOCKET_GUARD_INTERVAL);
        }
        watched.socket_memory_exceeded = true;
        self.kill();
        None
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A sandbox dropped without `wait` must not keep running. The rollback, dropped after
        // this, undoes the rest.
        if !self.reaped {
            self.end_now();
        }
    }
}

fn push<'a>(fds: &mut Vec<PollFd<'a>>, fd: BorrowedFd<'a>, events: PollFlags) -> usize {
    fds.push(PollFd::new(fd, events));
    fds.len() - 1
}

/// How long to poll until `wake`, rounded up: a wait cut short by the rounding would spin
/// until the time comes.
fn poll_timeout(wake: Option<Instant>) -> PollTimeout {
    let Some(wake) = wake else { return PollTimeout::NONE };
    let ms = wake.saturating_duration_since(Instant::now()).as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// Which of the polled descriptors are ready.
#[derive(Default)]
struct Ready {
    status: bool,
    signals: bool,
    master: bool,
    stdin: bool,
}

/// What init reported about the command, and what the supervisor did to it.
#[derive(Default)]
struct Watched {
    command: Option<Exit>,
    exec_error: Option<String>,
    timed_out: bool,
    /// The run's socket buffers outgrew their share of the memory cap, and it was ended.
    socket_memory_exceeded: bool,
}

impl Watched {
    fn record(&mut self, status: Status) {
        match status {
            Status::Exited { code } => self.command = Some(Exit::Code(code)),
            Status::Signaled { signal } => self.command = Some(Exit::Signal(signal)),
            Status::ExecFailed { message } => self.exec_error = Some(message),
            Status::Started | Status::SetupFailed(_) | Status::ExecEnded { .. } => {}
        }
    }

    /// How the command ended and why, from init's report, init's own wait status (when init
    /// reported nothing) and the cgroup's counters.
    fn ending(self, init_status: libc::c_int, stats: &CgroupStats) -> Result<(Exit, EndReason), LaunchError> {
        let (exit, reason) = match self.command {
            Some(exit @ Exit::Code(_)) => (exit, EndReason::Exited),
            Some(exit @ Exit::Signal(_)) => (exit, EndReason::Signaled),
            None if libc::WIFSIGNALED(init_status) => (Exit::Signal(libc::WTERMSIG(init_status)), EndReason::Signaled),
            None => {
                return Err(LaunchError::internal("the sandbox's init ended without reporting the command's status"))
            }
        };
        let reason = if let Some(message) = self.exec_error {
            EndReason::ExecFailed(message)
        } else if self.timed_out {
            EndReason::Timeout
        } else if stats.oom_kills > 0 || self.socket_memory_exceeded {
            EndReason::MemoryLimit
        } else if stats.pids_limit_hits > 0 && exit != Exit::Code(0) {
            EndReason::PidsLimit
        } else {
            reason
        };
        Ok((exit, reason))
    }
}
