//! A tiny forked process that removes the run's cgroups and placeholders, and reviews the
//! writable roots, if the supervisor dies without doing it (even by SIGKILL): it waits on a pipe
//! whose only writer is the supervisor.

use crate::cgroup;
use crate::gitcheck::Review;
use crate::plan::Placeholder;
use crate::sys;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

pub struct Cleaner {
    done: Option<OwnedFd>,
    /// The process that forks the cleaner and exits; reaped later, not waited for at the start.
    middle: Option<libc::pid_t>,
}

/// What to remove.
#[derive(Clone, Debug, Default)]
pub struct Leftovers {
    pub cgroups: Vec<PathBuf>,
    pub placeholders: Vec<Placeholder>,
    /// Private cache layers made for this run (a concurrent run held the persistent ones).
    pub cache_layers: Vec<PathBuf>,
    /// The review of the writable roots, run here if the supervisor can't run it.
    pub review: Review,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty() && self.placeholders.is_empty() && self.cache_layers.is_empty()
    }

    /// Removes everything that is ours and still empty; returns what could not be removed.
    #[must_use]
    pub fn remove(&self) -> Vec<String> {
        cgroup::remove_dirs(self.cgroups.iter().map(|p| p.as_path()));
        // Deepest first: a folder made for the run empties once its placeholder is gone.
        let left = self.placeholders.iter().rev().filter_map(crate::placeholder::remove_orphan).collect();
        for layer in &self.cache_layers {
            crate::caches::remove_layer(layer);
        }
        left
    }
}

impl Cleaner {
    /// Starts the cleaner as a grandchild, so it is never our zombie: when told to go, it exits
    /// on its own and nothing has to wait for it. Uses libc's fork, whose at-fork handlers keep
    /// the allocator usable in the child even if the caller broke `spawn`'s one-thread rule.
    /// The middle process is not waited for here: it forks and exits on another CPU while the
    /// launch goes on, and stays a zombie (its pid can't be reused) until [`Cleaner::reap_middle`].
    pub fn spawn(leftovers: Leftovers) -> std::io::Result<Cleaner> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // SAFETY: called by `spawn`, whose caller keeps the process single-threaded: no lock
        // (stderr's, which the cleaner takes to warn) is held in the copy.
        let middle = unsafe { sys::fork_with_libc() }?;
        if middle == 0 {
            drop(write);
            let _ = nix::unistd::setsid();
            // SAFETY: the middle process has one thread, and takes no lock.
            match unsafe { sys::fork_with_libc() } {
                Ok(0) => sys::child_life(0, || run(read, &leftovers)),
                _ => sys::exit_now(0),
            }
        }
        drop(read);
        Ok(Cleaner { done: Some(write), middle: Some(middle) })
    }

    /// Reaps the middle process (it exits right after forking the cleaner). Only the first call
    /// waits.
    pub fn reap_middle(&mut self) {
        if let Some(middle) = self.middle.take() {
            let _ = sys::wait4(middle);
        }
    }

    /// Tells the cleaner the supervisor cleaned up itself.
    pub fn dismiss(mut self) {
        if let Some(fd) = self.done.take() {
            let _ = sys::write_fd(fd.as_raw_fd(), b"d");
        }
    }
}

impl Drop for Cleaner {
    fn drop(&mut self) {
        self.reap_middle();
    }
}

/// The cleaner's life: wait until the supervisor says it is done, or dies. It runs on a copy of
/// the supervisor's memory, whose frames own descriptors it closes by number: sound because it
/// never returns to them (it ends with `exit_now`) and uses only `read` and what it opens later.
fn run(read: OwnedFd, leftovers: &Leftovers) -> ! {
    let keep = read.as_raw_fd();
    // stderr stays: what can't be removed is said there.
    if let Ok(null) = std::fs::File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..2 {
            // SAFETY: no Rust object owns stdin or stdout.
            let _ = unsafe { sys::dup_onto(null.as_raw_fd(), fd) };
        }
    }
    for fd in 3..keep {
        // SAFETY: see above.
        unsafe { sys::close_fd(fd) };
    }
    // SAFETY: see above.
    unsafe { sys::close_fds_from(keep + 1) };
    let mut byte = [0u8; 1];
    if sys::read_fd(keep, &mut byte).ok() != Some(1) {
        // The supervisor is gone, and the kernel is killing its sandbox (init's parent-death
        // signal). Give that a moment, then clean up after both.
        std::thread::sleep(std::time::Duration::from_millis(100));
        warn(leftovers.remove());
        leftovers.review.run();
    }
    sys::exit_now(0)
}

/// Says on stderr what the clean-up left behind (the supervisor's, or the cleaner's).
pub fn warn(left: impl IntoIterator<Item = String>) {
    for message in left {
        eprintln!("ringfence: warning: {message}");
    }
}
