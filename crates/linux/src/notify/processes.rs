//! The processes that ran a program in the sandbox: where each sits in the sandbox's process
//! tree (for `proc.exec`), and when and how it ended (`proc.exit`).
//!
//! At its first allowed exec the supervisor opens a pidfd of the process (it is alive: its exec
//! still waits for the answer) and one thread watches them all with epoll. A pidfd becomes
//! readable when the process has exited; the kernel keeps its wait status for the pidfd once
//! it has been reaped (PIDFD_INFO_EXIT, Linux 6.15), by its parent or by the sandbox's init.
//! Until then it is looked at again every few milliseconds; whatever is still unknown when the
//! sandbox is gone (an older kernel) is reported with a null exit code.

use super::kernel;
use super::Fail;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use ringfence_audit::{timestamp, EventBody};
use ringfence_backend::Reporter;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

/// The epoll key of the stop pipe (pids are positive).
const STOP_KEY: u64 = u64::MAX;
/// How often exited but not yet reaped processes are looked at again.
const REAP_POLL_MS: u16 = 5;
/// Room for a /proc/PID/status file (about 1.5 KiB), read in one go.
const STATUS_SIZE: usize = 4096;
/// How many ancestors are looked up for one process's chain before giving up.
const CHAIN_DEPTH: usize = 256;

/// Where a process sits: its host pid (the thread group), its parent's, and its sandbox pids
/// from init down to itself.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    pub pid: libc::pid_t,
    pub ppid: libc::pid_t,
    pub ns_pid: u32,
    pub chain: Vec<u32>,
}

/// A watched process.
struct Watched {
    pidfd: OwnedFd,
    place: Place,
    started: Instant,
    /// When its pidfd became readable: it has exited, and waits to be reaped.
    ended: Option<(Instant, SystemTime)>,
}

pub(crate) struct Processes {
    init: libc::pid_t,
    epoll: Epoll,
    watched: Mutex<HashMap<libc::pid_t, Watched>>,
    reporter: Reporter,
}

impl Processes {
    /// `stop` becomes readable when the watch should end.
    pub fn new(init: libc::pid_t, reporter: Reporter, stop: &OwnedFd) -> std::io::Result<Processes> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(stop.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, STOP_KEY))?;
        Ok(Processes { init, epoll, watched: Mutex::default(), reporter })
    }

    fn watched(&self) -> MutexGuard<'_, HashMap<libc::pid_t, Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the thread `tid` sits in the sandbox.
    pub fn place(&self, tid: libc::pid_t) -> Result<Place, Fail> {
        let thread = Status::read(tid).ok_or(Fail::Errno(libc::ESRCH))?;
        // The process: a thread other than the leader takes over the leader's pid when it execs.
        let status =
            if thread.tgid == tid { thread } else { Status::read(thread.tgid).ok_or(Fail::Errno(libc::ESRCH))? };
        Ok(Place { pid: status.tgid, ppid: status.ppid, ns_pid: status.ns_pid, chain: self.chain(&status) })
    }

    /// The sandbox pids from init down to the process: from what is known of its nearest
    /// watched ancestor, and from /proc for the others (forks that ran no program).
    fn chain(&self, status: &Status) -> Vec<u32> {
        let mut below = vec![status.ns_pid];
        let mut parent = status.ppid;
        for _ in 0..CHAIN_DEPTH {
            if parent == self.init {
                below.push(1);
                break;
            }
            if let Some(known) = self.watched().get(&parent).map(|w| w.place.chain.clone()) {
                return known.into_iter().chain(below.into_iter().rev()).collect();
            }
            let Some(up) = Status::read(parent) else { break };
            below.push(up.ns_pid);
            parent = up.ppid;
        }
        below.into_iter().rev().collect()
    }

    /// Watches the process for its end, unless it already is (an earlier exec of its own).
    /// Called while its exec waits for the answer, so the pid still names it.
    pub fn watch(&self, place: &Place) -> Result<(), Fail> {
        let mut watched = self.watched();
        if let Some(w) = watched.get_mut(&place.pid) {
            w.place = place.clone();
            return Ok(());
        }
        let pidfd = kernel::pidfd_open(place.pid, 0).map_err(|_| Fail::Errno(libc::ESRCH))?;
        self.epoll
            .add(pidfd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, place.pid as u64))
            .map_err(|e| Fail::Broken(format!("watching process {} (epoll): {e}", place.pid)))?;
        watched.insert(place.pid, Watched { pidfd, place: place.clone(), started: Instant::now(), ended: None });
        Ok(())
    }

    /// The watching thread: reports each process's end until `stop` is readable.
    pub fn run(&self) {
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let waiting = self.watched().values().any(|w| w.ended.is_some());
            let timeout = if waiting { EpollTimeout::from(REAP_POLL_MS) } else { EpollTimeout::NONE };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => 0,
                Err(_) => return,
            };
            if events[..n].iter().any(|e| e.data() == STOP_KEY) {
                return;
            }
            self.note_ended(events[..n].iter().map(|e| e.data() as libc::pid_t));
            self.report_reaped(false);
        }
    }

    /// Marks the processes whose pidfd became readable as ended, and stops polling them.
    fn note_ended(&self, pids: impl Iterator<Item = libc::pid_t>) {
        let mut watched = self.watched();
        for pid in pids {
            if let Some(w) = watched.get_mut(&pid) {
                let _ = self.epoll.delete(w.pidfd.as_fd());
                w.ended.get_or_insert((Instant::now(), SystemTime::now()));
            }
        }
    }

    /// Reports the ended processes that have been reaped; with `all`, the others too (the
    /// sandbox is gone: nothing more will be learnt about them).
    fn report_reaped(&self, all: bool) {
        let mut watched = self.watched();
        let done: Vec<libc::pid_t> = watched
            .iter()
            .filter(|(_, w)| all || (w.ended.is_some() && kernel::pidfd_exit_status(w.pidfd.as_fd()).is_some()))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in done {
            if let Some(w) = watched.remove(&pid) {
                self.reporter.report(exit_event(&w));
            }
        }
    }

    /// Once the sandbox is gone: reports every process not reported yet.
    pub fn finish(&self) {
        let pids: Vec<libc::pid_t> = self.watched().keys().copied().collect();
        self.note_ended(pids.into_iter());
        self.report_reaped(true);
    }
}

/// The `proc.exit` of an ended process.
fn exit_event(w: &Watched) -> EventBody {
    let (at, when) = w.ended.unwrap_or_else(|| (Instant::now(), SystemTime::now()));
    let status = kernel::pidfd_exit_status(w.pidfd.as_fd());
    let exit_code = status.filter(|s| libc::WIFEXITED(*s)).map(|s| libc::WEXITSTATUS(s));
    let signal = status.filter(|s| libc::WIFSIGNALED(*s)).map(|s| libc::WTERMSIG(s));
    EventBody::ProcExit {
        pid: w.place.pid as u32,
        ns_pid: Some(w.place.ns_pid),
        exit_code,
        signal,
        duration_ms: at.saturating_duration_since(w.started).as_millis() as u64,
        time: timestamp(when),
    }
}

/// What /proc/PID/status says about a thread.
struct Status {
    tgid: libc::pid_t,
    ppid: libc::pid_t,
    /// Its pid in the innermost pid namespace: the sandbox's.
    ns_pid: u32,
}

impl Status {
    fn read(tid: libc::pid_t) -> Option<Status> {
        use std::io::Read;
        // One read: the file's size is unknown (0), and growing a buffer from nothing costs a
        // read(2) per doubling, on every exec.
        let mut text = String::with_capacity(STATUS_SIZE);
        std::fs::File::open(format!("/proc/{tid}/status")).ok()?.read_to_string(&mut text).ok()?;
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        Some(Status {
            tgid: field("Tgid:")?.parse().ok()?,
            ppid: field("PPid:")?.parse().ok()?,
            ns_pid: field("NSpid:")?.split_whitespace().next_back()?.parse().ok()?,
        })
    }
}
