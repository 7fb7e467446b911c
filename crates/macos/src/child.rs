//! The forked child of a launch, and its report. Everything it needs is prepared before the
//! fork ([`Prepared`]), so it only makes system calls: a new session, its terminal, the process
//! limit, the working folder, the profile, then the exec. A failure at any step is written to
//! a close-on-exec pipe as the step, its errno and any text; the supervisor reads it back as a
//! [`Report`]. The pipe closing empty means the command started.

use crate::sys::{self, CStrArray, SpawnSetup};
use ringfence_audit::{ErrorKind, LaunchError};
use std::ffi::{c_int, CString};
use std::os::fd::BorrowedFd;
use std::path::Path;

/// A failure the child reported, by the step it failed at.
const STEP_SESSION: u8 = 1;
const STEP_TERMINAL: u8 = 2;
const STEP_LIMIT: u8 = 3;
const STEP_CWD: u8 = 4;
const STEP_PROFILE: u8 = 5;
const STEP_EXEC: u8 = 6;

/// What the forked child needs, prepared before the fork so that it only makes system calls.
/// The descriptors its streams come from are borrowed for `'fd`, until after the fork.
pub struct Prepared<'fd> {
    pub profile: CString,
    pub params: CStrArray,
    pub program: CString,
    pub argv: CStrArray,
    pub envp: CStrArray,
    pub cwd: CString,
    pub setup: SpawnSetup<'fd>,
    pub terminal: Option<BorrowedFd<'fd>>,
    pub nproc: Option<u64>,
}

/// Writes the failed step and its error for the supervisor, then exits. After the fork.
fn child_fails(status: BorrowedFd<'_>, step: u8, errno: c_int, text: &[u8]) -> ! {
    let mut record = [0u8; 5];
    record[0] = step;
    record[1..].copy_from_slice(&errno.to_le_bytes());
    let _ = sys::write_fd(status, &record);
    let _ = sys::write_fd(status, text);
    sys::exit_now(125)
}

/// The forked child: session, limit, folder, profile, exec. System calls only.
pub fn run(p: &Prepared<'_>, status: BorrowedFd<'_>) -> ! {
    let e = sys::setsid();
    if e != 0 {
        child_fails(status, STEP_SESSION, e, b"");
    }
    if let Some(tty) = p.terminal {
        let e = sys::set_controlling_terminal(tty);
        if e != 0 {
            child_fails(status, STEP_TERMINAL, e, b"");
        }
    }
    if let Some(n) = p.nproc {
        let e = sys::set_nproc(n);
        if e != 0 {
            child_fails(status, STEP_LIMIT, e, b"");
        }
    }
    let e = sys::chdir(&p.cwd);
    if e != 0 {
        child_fails(status, STEP_CWD, e, b"");
    }
    if let Err(error) = sys::apply_profile(&p.profile, &p.params) {
        profile_refused(status, error);
    }
    let e = p.setup.exec(&p.program, &p.argv, &p.envp);
    child_fails(status, STEP_EXEC, e, b"")
}

/// Reports that the profile could not be applied, with the profile compiler's text, then exits.
/// After the fork.
pub fn profile_refused(status: BorrowedFd<'_>, error: Option<&[u8]>) -> ! {
    child_fails(status, STEP_PROFILE, 0, error.unwrap_or(b"no reason given"))
}

/// A failure the child reported.
pub struct Report {
    step: u8,
    errno: c_int,
    /// What came with it (the profile compiler's error).
    pub text: String,
}

impl Report {
    /// The report in what the child wrote; None when it wrote nothing (the command started).
    pub fn parse(bytes: &[u8]) -> Option<Report> {
        if bytes.len() < 5 {
            return None;
        }
        let errno = c_int::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Some(Report { step: bytes[0], errno, text: String::from_utf8_lossy(&bytes[5..]).into_owned() })
    }

    /// What the failure means: the command did not start (the exit code and message a shell
    /// would give), or the launch itself failed.
    pub fn not_started(&self, program: &str, cwd: &Path) -> Result<(i32, String), LaunchError> {
        let why = std::io::Error::from_raw_os_error(self.errno);
        match self.step {
            STEP_EXEC if matches!(self.errno, libc::ENOENT | libc::ENOTDIR) => {
                Ok((127, format!("{program}: command not found")))
            }
            STEP_EXEC => Ok((126, format!("{program}: can't execute: {why}"))),
            STEP_CWD => Ok((126, format!("can't enter {}: {why}", cwd.display()))),
            STEP_PROFILE => Err(LaunchError::new(
                ErrorKind::Unsupported,
                format!("Seatbelt refused the run's profile: {}", self.text.trim()),
                Some("run `ringfence check`; if it passes, this is a bug in ringfence's profile".into()),
            )),
            STEP_LIMIT => Err(LaunchError::internal(format!("setting the process limit: {why}"))),
            STEP_TERMINAL => Err(LaunchError::internal(format!("giving the command its terminal: {why}"))),
            _ => Err(LaunchError::internal(format!("starting the command's session: {why}"))),
        }
    }
}
