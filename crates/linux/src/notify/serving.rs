//! The threads that serve the listener. One of them at a time has the receiver's turn: it waits
//! for trapped calls, receives and handles them itself while they can't block, and passes the
//! turn on (to a new thread when none waits for it) before doing work that may block, a
//! connect that may wait for a backlog or a TCP handshake. So a caller waits for no thread
//! hand-over, and a blocking call never keeps the next one from being received. At most
//! [`MAX_THREADS`] serve at once; beyond that, calls wait to be received, so the sandbox can
//! only slow itself down.

use super::{dispatch, kernel, Answer, Call, Context, Fail, Init, Step, Work};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

const MAX_THREADS: usize = 256;

/// What the serving threads and the guard share.
pub(super) struct Shared {
    pub ctx: Context,
    /// Readable (closed) once the guard stops.
    stop: OwnedFd,
    pub init: Init,
    /// The receiver's turn.
    turn: Mutex<()>,
    state: Mutex<State>,
    /// Signalled when a thread ends.
    ended: Condvar,
}

#[derive(Default)]
struct State {
    threads: usize,
    /// Threads not handling a call: receiving, or waiting for the turn.
    spare: usize,
    failure: Option<String>,
    /// The sockets of connects in progress, by call, to cut short when the guard stops.
    connecting: HashMap<u64, Arc<OwnedFd>>,
    /// The guard stops: a connect that starts now is cut short at once.
    stopping: bool,
}

fn cut_short(socket: &OwnedFd) {
    let _ = nix::sys::socket::shutdown(socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

/// What waiting for the next call gave.
enum Next {
    Call(Call),
    /// The guard stops, or no process of the sandbox is left.
    Stop,
}

impl Shared {
    pub fn new(ctx: Context, stop: OwnedFd, init: Init) -> Arc<Shared> {
        let state = Mutex::new(State::default());
        Arc::new(Shared { ctx, stop, init, turn: Mutex::new(()), state, ended: Condvar::new() })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a serving thread.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let shared = self.clone();
        let mut state = self.state();
        std::thread::Builder::new().name("ringfence-notify".into()).spawn(move || shared.serve())?;
        state.threads += 1;
        state.spare += 1;
        Ok(())
    }

    /// Ends the sandbox, cuts short the connects in progress, and waits for every thread to
    /// end; the reason a thread failed, if one did.
    pub fn stop(&self) -> Option<String> {
        self.init.end();
        let mut state = self.state();
        state.stopping = true;
        state.connecting.values().for_each(|s| cut_short(s));
        while state.threads > 0 {
            state = self.ended.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.failure.take()
    }

    fn serve(self: Arc<Self>) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve_calls()));
        if let Err(why) = served.unwrap_or_else(|_| Err("the handler panicked".into())) {
            self.state().failure.get_or_insert(why);
            // A broken guard ends the sandbox; the listener stays open until the guard stops.
            self.init.end();
        }
        let mut state = self.state();
        state.threads -= 1;
        state.spare -= 1;
        self.ended.notify_all();
    }

    fn serve_calls(self: &Arc<Self>) -> Result<(), String> {
        loop {
            // The turn is kept while calls can't block, and passed on for one that may.
            let (id, socket, work) = {
                let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let Next::Call(call) = self.receive()? else { return Ok(()) };
                    match dispatch(&self.ctx, &call) {
                        Ok(Step::Connect { socket, may_block: true, work }) => break (call.id, socket, work),
                        Ok(Step::Connect { work, .. }) => self.ctx.answer(call.id, work()),
                        Ok(Step::Continue) => self.ctx.answer(call.id, Answer::Continue),
                        Ok(Step::Gone) => {}
                        Err(Fail::Errno(e)) => self.ctx.answer(call.id, Answer::Errno(e)),
                        Err(Fail::Broken(why)) => return Err(why),
                    }
                }
            };
            self.wait_aside(id, socket, work);
        }
    }

    /// Does work that may block, the turn passed on (to a new thread if none waits for it).
    fn wait_aside(self: &Arc<Self>, id: u64, socket: Arc<OwnedFd>, work: Work) {
        let mut state = self.state();
        state.spare -= 1;
        if state.stopping {
            cut_short(&socket);
        }
        state.connecting.insert(id, socket);
        let needed = state.spare == 0 && state.threads < MAX_THREADS;
        drop(state);
        if needed {
            // Failing that, the next call waits until this one is done.
            let _ = self.spawn();
        }
        let answer = work();
        let mut state = self.state();
        state.connecting.remove(&id);
        // Spare again before the caller learns the answer and traps its next call.
        state.spare += 1;
        drop(state);
        self.ctx.answer(id, answer);
    }

    /// Waits for the next trapped call (or the guard's stop) and receives it.
    fn receive(&self) -> Result<Next, String> {
        loop {
            let listener = self.ctx.listener.as_fd();
            let mut fds = [PollFd::new(listener, PollFlags::POLLIN), PollFd::new(self.stop.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(format!("waiting for trapped system calls: {e}")),
            }
            let ready = fds[0].revents().unwrap_or(PollFlags::empty());
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(Next::Stop);
            }
            if !ready.contains(PollFlags::POLLIN) {
                if ready.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    return Ok(Next::Stop);
                }
                continue;
            }
            match kernel::receive(listener) {
                Ok(n) => {
                    let args = n.data.args;
                    return Ok(Next::Call(Call { id: n.id, tid: n.pid as libc::pid_t, nr: n.data.nr.into(), args }));
                }
                // The caller was killed or interrupted between the poll and the receive.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) => {}
                Err(e) => return Err(format!("receiving a trapped system call: {e}")),
            }
        }
    }
}
