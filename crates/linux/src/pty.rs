//! Terminal relay: an interactive command gets its own pseudo-terminal, so it has a controlling
//! terminal (job control, vim, REPLs) while input injection can only reach that inner terminal,
//! never the user's.

use crate::sys;
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// Puts the user's terminal in raw mode for the relay and restores it when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        let borrowed = borrow(fd);
        let saved = termios::tcgetattr(borrowed).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(borrowed, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(borrow(self.fd), SetArg::TCSADRAIN, &self.saved);
    }
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    sys::borrow_fd(fd)
}

/// Copies the user's window size to the inner terminal (on start and on SIGWINCH).
pub fn sync_size(from: RawFd, master: &OwnedFd) {
    if let Some(ws) = sys::get_winsize(from) {
        sys::set_winsize(master.as_raw_fd(), &ws);
    }
}
