//! One command in a session, on the caller's side: hands the command and its three standard
//! streams to the session's server, passes the caller's signals on, enforces the timeout, and
//! returns how the command ended.

use super::{folder, wire};
use crate::protocol::{ExecOrder, Order, Status};
use crate::sys;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use ringfence_backend::{LaunchError, SessionExec, SessionExit, Stdio};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

/// Runs `exec` in the session named `session`, forwarding the signals read from `signals`.
pub(crate) fn exec(
    session: &str,
    exec: SessionExec,
    signals: Option<&mut SignalFd>,
) -> Result<SessionExit, LaunchError> {
    let conn = folder::connect_session(session)?;
    let SessionExec { program, args, env, cwd, background, timeout, stdio } = exec;
    let streams = streams(stdio)?;
    let order = Order::Exec(ExecOrder { id: 0, background, program, args, env, cwd: cwd.unwrap_or_default() });
    let raw: Vec<i32> = streams.iter().map(|s| s.as_raw_fd()).collect();
    sys::send_with_fds(conn.as_fd(), &order.encode(), &raw)
        .map_err(|e| LaunchError::internal(format!("handing the command to the session: {e}")))?;
    // Our copies would keep the command's pipes from ever reaching end of file.
    drop(streams);
    Waiting { conn, signals, deadline: timeout.map(|t| Instant::now() + t), timed_out: false }.until_end()
}

/// The command's streams: ours, the null device, or the given ones.
fn streams(stdio: [Stdio; 3]) -> Result<Vec<OwnedFd>, LaunchError> {
    let fail = |e: std::io::Error| LaunchError::internal(format!("the command's standard streams: {e}"));
    let mut out = Vec::with_capacity(3);
    for (n, spec) in stdio.into_iter().enumerate() {
        out.push(match spec {
            // SAFETY: 0, 1 and 2 are open for the whole process (the library fills them at
            // start-up); the borrow ends with the copy.
            Stdio::Inherit => unsafe { sys::borrow_fd(n as i32) }.try_clone_to_owned().map_err(fail)?,
            Stdio::Null => std::fs::File::options().read(true).write(true).open("/dev/null").map_err(fail)?.into(),
            Stdio::Stream(fd) => fd,
        });
    }
    Ok(out)
}

/// The caller's side while the command runs.
struct Waiting<'a> {
    conn: OwnedFd,
    signals: Option<&'a mut SignalFd>,
    deadline: Option<Instant>,
    timed_out: bool,
}

impl Waiting<'_> {
    fn until_end(mut self) -> Result<SessionExit, LaunchError> {
        loop {
            let (answer, signalled) = self.poll()?;
            if answer {
                return self.answer();
            }
            if signalled {
                self.forward_signals();
            }
            if self.deadline.is_some_and(|at| Instant::now() >= at) {
                self.time_out();
            }
        }
    }

    /// Waits for the server's answer, a signal or the deadline.
    fn poll(&self) -> Result<(bool, bool), LaunchError> {
        let mut fds = vec![PollFd::new(self.conn.as_fd(), PollFlags::POLLIN)];
        if let Some(s) = &self.signals {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        let ms = self
            .deadline
            .map(|at| at.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32);
        let timeout = ms.map(|ms| PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)).unwrap_or(PollTimeout::NONE);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(LaunchError::internal(format!("poll: {e}"))),
        }
        let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        Ok((ready(0), ready(1)))
    }

    /// The server's answer: the review's findings, whether the timeout ended the command, then
    /// how it ended (or why it could not run).
    fn answer(&mut self) -> Result<SessionExit, LaunchError> {
        let mut buf = vec![0u8; 64 * 1024];
        let gone = || LaunchError::internal("the session ended while the command ran");
        let (mut findings, mut failures, mut memory_limit) = (Vec::new(), Vec::new(), false);
        loop {
            let (n, _) = sys::recv_with_fds(self.conn.as_fd(), &mut buf).map_err(|_| gone())?;
            if let Some((failed, finding)) = wire::decode_finding(&buf[..n]) {
                if failed { &mut failures } else { &mut findings }.push(finding);
                continue;
            }
            match buf[..n] {
                [wire::TIMED_OUT] => self.timed_out = true,
                [wire::MEMORY_LIMIT] => memory_limit = true,
                _ => {}
            }
            if n == 1 {
                continue;
            }
            return match Status::decode(&buf[..n]) {
                Some(Status::ExecEnded { exit, .. }) => Ok(SessionExit {
                    exit,
                    timed_out: self.timed_out,
                    memory_limit,
                    findings,
                    review_failures: failures,
                }),
                Some(Status::SetupFailed(err)) => Err(err),
                _ => Err(gone()),
            };
        }
    }

    fn send_signal(&self, signal: i32) {
        let _ = sys::send_with_fds(self.conn.as_fd(), &Order::Signal { id: 0, signal }.encode(), &[]);
    }

    fn forward_signals(&mut self) {
        let Some(signals) = self.signals.as_deref_mut() else { return };
        let mut got = Vec::new();
        while let Ok(Some(info)) = signals.read_signal() {
            got.push(info.ssi_signo as i32);
        }
        for sig in got.into_iter().filter(|s| *s != libc::SIGWINCH) {
            self.send_signal(sig);
        }
    }

    /// SIGTERM when the time is up, SIGKILL once the grace is over too.
    fn time_out(&mut self) {
        if self.timed_out {
            self.send_signal(libc::SIGKILL);
            self.deadline = None;
        } else {
            self.timed_out = true;
            self.send_signal(libc::SIGTERM);
            self.deadline = Some(Instant::now() + crate::sandbox::TIMEOUT_GRACE);
        }
    }
}

/// Ends a session and everything in it; returns once its server is gone.
pub(crate) fn stop(session: &str) -> Result<(), LaunchError> {
    let conn = folder::connect_session(session)?;
    crate::sys::send_with_fds(conn.as_fd(), &[wire::STOP], &[])
        .map_err(|e| LaunchError::internal(format!("asking the session to stop: {e}")))?;
    // The server closes its end only by exiting, once the sandbox is gone.
    let mut buf = [0u8; 64];
    while matches!(crate::sys::recv_with_fds(conn.as_fd(), &mut buf), Ok((n, _)) if n > 0) {}
    Ok(())
}
