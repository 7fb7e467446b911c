//! The terminal relay of an interactive run: our stdin to the command's terminal and its output
//! to our stdout, never blocking, so the timeout and signals stay in force whatever the command
//! does.

use crate::sys::{self, Event, Kqueue};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Input for the command's terminal held while it doesn't read; our input waits beyond that.
const PENDING_INPUT_MAX: usize = 1 << 20;

/// Our stdin, as a kqueue identifies it.
const STDIN: usize = 0;

/// The supervisor's end of the command's terminal, and what is on its way through it.
pub struct Relay {
    master: OwnedFd,
    pending: Vec<u8>,
    stdin_open: bool,
    buf: Vec<u8>,
}

impl Relay {
    /// Relays through `master`, made non-blocking, whose output `kq` now reports.
    pub fn new(master: OwnedFd, kq: &Kqueue) -> io::Result<Relay> {
        sys::set_nonblocking(master.as_fd())?;
        kq.add(master.as_raw_fd() as usize, libc::EVFILT_READ, 0)?;
        Ok(Relay { master, pending: Vec::new(), stdin_open: false, buf: vec![0; 64 * 1024] })
    }

    /// The command's terminal (for its window size).
    pub fn terminal(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Starts passing our input on, as `kq` reports it.
    pub fn listen(&mut self, kq: &Kqueue) {
        self.stdin_open = kq.add(STDIN, libc::EVFILT_READ, 0).is_ok();
    }

    pub fn handle(&mut self, event: Event, kq: &Kqueue) {
        let master = self.master.as_raw_fd() as usize;
        match (event.ident, event.filter) {
            (fd, libc::EVFILT_READ) if fd == master => self.drain(),
            (STDIN, libc::EVFILT_READ) if self.stdin_open => self.read_input(kq),
            (fd, libc::EVFILT_WRITE) if fd == master => self.flush(kq),
            _ => {}
        }
    }

    fn read_input(&mut self, kq: &Kqueue) {
        match sys::read_fd(io::stdin().as_fd(), &mut self.buf) {
            // Our input ended: pass the end on as the terminal's end-of-file character.
            Ok(0) | Err(_) => {
                self.pending.push(0x04);
                self.stdin_open = false;
                kq.remove(STDIN, libc::EVFILT_READ);
            }
            Ok(n) => self.pending.extend_from_slice(&self.buf[..n]),
        }
        if self.pending.len() >= PENDING_INPUT_MAX {
            kq.remove(STDIN, libc::EVFILT_READ);
        }
        self.flush(kq);
    }

    fn flush(&mut self, kq: &Kqueue) {
        while !self.pending.is_empty() {
            match sys::write_fd(self.master.as_fd(), &self.pending) {
                Ok(n) if n > 0 => {
                    self.pending.drain(..n);
                }
                _ => break,
            }
        }
        let master = self.master.as_raw_fd() as usize;
        if self.pending.is_empty() {
            kq.remove(master, libc::EVFILT_WRITE);
            if self.stdin_open {
                let _ = kq.add(STDIN, libc::EVFILT_READ, 0);
            }
        } else {
            let _ = kq.add(master, libc::EVFILT_WRITE, 0);
        }
    }

    /// Copies whatever output the terminal holds now.
    pub fn drain(&mut self) {
        while let Ok(n) = sys::read_fd(self.master.as_fd(), &mut self.buf) {
            if n == 0 {
                break;
            }
            let _ = sys::write_all(io::stdout().as_fd(), &self.buf[..n]);
        }
    }
}
