//! Terminal relay: an interactive command gets its own pseudo-terminal, so it has a controlling
//! terminal (job control, vim, REPLs) while input injection can only reach that inner terminal,
//! never the user's. The supervisor relays between the user's terminal (its stdin and stdout)
//! and the inner terminal's master side.

use crate::sys;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::PollFlags;
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Input for the command's terminal held while it doesn't read; our input waits beyond that.
const PENDING_INPUT_MAX: usize = 1 << 20;

/// How long to wait before writing to a master that took nothing.
const INPUT_RETRY: Duration = Duration::from_millis(50);

/// Our standard descriptors, which the relay reads and writes.
const OUR_STDIN: i32 = 0;
const OUR_STDOUT: i32 = 1;

/// Puts the user's terminal (our stdin) in raw mode for the relay and restores it when dropped.
pub struct RawMode {
    terminal: std::io::Stdin,
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> Option<RawMode> {
        let terminal = std::io::stdin();
        let saved = termios::tcgetattr(terminal.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(terminal.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { terminal, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.terminal.as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Copies the user's window size to the inner terminal (on start and on SIGWINCH).
pub fn sync_size(master: BorrowedFd) {
    if let Some(ws) = sys::get_winsize(OUR_STDIN) {
        sys::set_winsize(master.as_raw_fd(), &ws);
    }
}

/// The relay's state. It never blocks: input for the inner terminal waits here while the
/// command doesn't read it, so the timeout and signals stay in force whatever the command does.
pub struct Relay {
    master: OwnedFd,
    /// Our input has not ended yet.
    stdin_open: bool,
    pending: Vec<u8>,
    /// A pty master can report room it doesn't have: after a write that took nothing, wait a
    /// little instead of polling for it again at once.
    retry_input: Option<Instant>,
    buf: Vec<u8>,
}

impl Relay {
    pub fn new(master: OwnedFd) -> Relay {
        Relay { master, stdin_open: true, pending: Vec::new(), retry_input: None, buf: vec![0u8; 64 * 1024] }
    }

    /// Starts relaying: the user's terminal in raw mode (until the returned guard drops), its
    /// size copied, the master non-blocking.
    pub fn begin(&self) -> Option<RawMode> {
        let raw = RawMode::enter();
        sync_size(self.master.as_fd());
        let _ = fcntl(&self.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        raw
    }

    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// When a write to the master may be tried again, if one waits.
    pub fn wake_at(&self) -> Option<Instant> {
        self.retry_input
    }

    fn may_write(&self) -> bool {
        !self.pending.is_empty() && self.retry_input.is_none_or(|r| Instant::now() >= r)
    }

    /// What to poll the master for: output, and room when input waits.
    pub fn master_events(&self) -> PollFlags {
        if self.may_write() {
            PollFlags::POLLIN | PollFlags::POLLOUT
        } else {
            PollFlags::POLLIN
        }
    }

    /// Whether to poll our stdin: until it ends, and while the held input has room.
    pub fn wants_input(&self) -> bool {
        self.stdin_open && self.pending.len() < PENDING_INPUT_MAX
    }

    /// After a poll: copies the command's output to our stdout, takes our input, and writes
    /// what input the master takes.
    pub fn pump(&mut self, master_ready: bool, stdin_ready: bool) {
        if master_ready {
            if let Ok(n) = sys::read_fd(self.master.as_raw_fd(), &mut self.buf) {
                let _ = sys::write_fd(OUR_STDOUT, &self.buf[..n]);
            }
        }
        if stdin_ready {
            self.stdin_open = self.read_input();
        }
        if self.may_write() {
            let before = self.pending.len();
            self.flush_input();
            self.retry_input = (self.pending.len() == before).then(|| Instant::now() + INPUT_RETRY);
        }
    }

    /// Reads our input for the terminal; false once it has ended.
    fn read_input(&mut self) -> bool {
        match sys::read_fd(OUR_STDIN, &mut self.buf) {
            // Our input ended: pass the end on as the terminal's end-of-file character.
            Ok(0) | Err(_) => {
                self.pending.push(0x04);
                false
            }
            Ok(n) => {
                self.pending.extend_from_slice(&self.buf[..n]);
                true
            }
        }
    }

    /// Writes as much pending input to the terminal as it takes now.
    fn flush_input(&mut self) {
        while !self.pending.is_empty() {
            match nix::unistd::write(&self.master, &self.pending) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
            }
        }
    }

    /// Output still buffered in the terminal after the command exited.
    pub fn drain(&mut self) {
        let _ = fcntl(&self.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        while let Ok(n) = sys::read_fd(self.master.as_raw_fd(), &mut self.buf) {
            if n == 0 {
                break;
            }
            let _ = sys::write_fd(OUR_STDOUT, &self.buf[..n]);
        }
    }
}
