//! Threads for work that may block, so the handler thread never waits on the sandbox: a connect
//! on a blocking socket can wait for a full backlog or a TCP handshake for as long as the
//! sandbox makes it. Idle threads are reused; at most [`MAX_THREADS`] run at once, and beyond
//! that calls wait their turn (the sandbox only slows itself down). When the pool is dropped,
//! queued work is dropped, sockets still connecting are shut down (which ends a TCP handshake's
//! wait; a Unix connect's ends when the sandbox's listener closes), and idle threads end.

use super::Answer;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

const MAX_THREADS: usize = 256;

type Work = Box<dyn FnOnce() -> Answer + Send>;

struct Job {
    id: u64,
    socket: Arc<OwnedFd>,
    work: Work,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    idle: usize,
    threads: usize,
    stopping: bool,
    /// The sockets of the jobs in progress, by call.
    running: HashMap<u64, Arc<OwnedFd>>,
}

struct Shared {
    listener: Arc<OwnedFd>,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) struct Workers {
    shared: Arc<Shared>,
}

impl Workers {
    pub fn new(listener: Arc<OwnedFd>) -> Self {
        Workers { shared: Arc::new(Shared { listener, state: Mutex::default(), wake: Condvar::new() }) }
    }

    /// Runs `work` for call `id` on a worker, which answers the call with its result.
    pub fn run(&self, id: u64, socket: Arc<OwnedFd>, work: Work) {
        let mut state = self.shared.lock();
        state.queue.push_back(Job { id, socket, work });
        if state.idle == 0 && state.threads < MAX_THREADS {
            state.threads += 1;
            let shared = self.shared.clone();
            if std::thread::Builder::new().name("ringfence-connect".into()).spawn(move || serve(&shared)).is_err() {
                state.threads -= 1;
                if state.threads == 0 {
                    // Nobody would ever take it: the caller learns at once.
                    if let Some(job) = state.queue.pop_back() {
                        super::answer(&self.shared.listener, job.id, Answer::Errno(libc::EAGAIN));
                    }
                }
            }
        }
        self.shared.wake.notify_one();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.stopping = true;
        // The sandbox is gone (or its guard broke, which kills it): nobody waits for these.
        state.queue.clear();
        for socket in state.running.values() {
            let _ = nix::sys::socket::shutdown(socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        self.shared.wake.notify_all();
    }
}

/// A worker: takes jobs until the pool stops and the queue is empty.
fn serve(shared: &Shared) {
    while let Some(job) = next(shared) {
        let answer = (job.work)();
        super::answer(&shared.listener, job.id, answer);
        shared.lock().running.remove(&job.id);
    }
}

fn next(shared: &Shared) -> Option<Job> {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            state.running.insert(job.id, job.socket.clone());
            return Some(job);
        }
        if state.stopping {
            state.threads -= 1;
            return None;
        }
        state.idle += 1;
        state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        state.idle -= 1;
    }
}
