//! The terminal signals the supervisor passes on. The command runs in a session of its own, so
//! Ctrl-C at the terminal reaches ringfence only; ringfence ignores these signals (so none ends
//! it before the command is stopped) and reads each delivery from a kqueue (EVFILT_SIGNAL
//! records deliveries of ignored signals too).

use crate::sys::{self, Kqueue, SavedAction};
use std::io;

/// Signals passed on to the command's process group.
pub const FORWARDED: &[libc::c_int] =
    &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// Deliveries of the forwarded signals (and SIGWINCH), from the moment `install` returns.
pub struct ForwardedSignals {
    kq: Kqueue,
    saved: Vec<SavedAction>,
}

impl ForwardedSignals {
    /// Starts recording; call first thing in `main`, before any command starts.
    pub fn install() -> io::Result<Self> {
        let kq = Kqueue::new()?;
        for &sig in FORWARDED.iter().chain(&[libc::SIGWINCH]) {
            kq.add(sig as usize, libc::EVFILT_SIGNAL, 0)?;
        }
        let mut saved = Vec::new();
        for &sig in FORWARDED {
            saved.push(sys::ignore_signal(sig)?);
        }
        Ok(ForwardedSignals { kq, saved })
    }

    /// A descriptor that is readable while deliveries wait.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.kq.fd()
    }

    /// The signals delivered since the last call, in order.
    pub fn take(&self) -> Vec<libc::c_int> {
        let events = self.kq.wait(Some(std::time::Duration::ZERO)).unwrap_or_default();
        events.iter().map(|e| e.ident as libc::c_int).collect()
    }
}

impl Drop for ForwardedSignals {
    fn drop(&mut self) {
        for saved in &self.saved {
            sys::restore_signal(saved);
        }
    }
}
