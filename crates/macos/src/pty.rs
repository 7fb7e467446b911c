//! The command's own terminal: a pseudo-terminal whose other end the supervisor relays to its
//! own stdin and stdout, so the user's terminal is never handed to the command.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// A new pseudo-terminal: the supervisor's end, the command's end and its device path.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub path: PathBuf,
}

impl Pty {
    pub fn open() -> io::Result<Pty> {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors; the name, termios and size pointers may be null.
        let rc = unsafe {
            libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut())
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openpty just returned this descriptor, owned by nobody else.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: as above.
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        sys::set_cloexec(master.as_fd())?;
        sys::set_cloexec(slave.as_fd())?;
        let path = sys::fd_path(slave.as_fd())?;
        sync_size(io::stdin().as_fd(), master.as_fd());
        Ok(Pty { master, slave, path })
    }
}

/// Copies the window size of terminal `from` to `to`.
pub fn sync_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    // SAFETY: winsize is plain data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills `ws`, valid for the write.
    if unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0 {
        // SAFETY: TIOCSWINSZ reads `ws`.
        unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

/// Our terminal in raw mode while the relay runs; restored on drop.
pub struct RawMode<'fd> {
    fd: BorrowedFd<'fd>,
    saved: libc::termios,
}

impl<'fd> RawMode<'fd> {
    pub fn enter(fd: BorrowedFd<'fd>) -> Option<RawMode<'fd>> {
        // SAFETY: termios is plain data, filled by tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is valid for writes.
        if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw reads and writes `raw` only.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: tcsetattr reads `raw` only.
        unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &raw) };
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe { libc::tcsetattr(self.fd.as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}
