//! The process behind a trapped call, and what the handler reads from it: a descriptor
//! (pidfd_getfd gives our own descriptor for the same open file), its memory (read once, into a
//! buffer of ours), and its root and working directory. The caller may have died and its pid
//! been reused meanwhile: nothing read here is acted on before `Context::still_pending` has
//! confirmed the call still waits.

use super::{kernel, Fail};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// pidfd_open's flag for a pidfd naming one thread (Linux 6.9); it equals O_EXCL.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

pub(crate) struct Target {
    tid: libc::pid_t,
    pidfd: OwnedFd,
}

/// The caller is gone, or never was: there is nobody to answer.
fn gone(_: impl std::fmt::Debug) -> Fail {
    Fail::Errno(libc::ESRCH)
}

impl Target {
    pub fn open(tid: libc::pid_t) -> Result<Target, Fail> {
        let pidfd = match kernel::pidfd_open(tid, PIDFD_THREAD) {
            // Before Linux 6.9 a pidfd names a thread group: take the caller's.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => kernel::pidfd_open(thread_group(tid)?, 0),
            other => other,
        };
        Ok(Target { tid, pidfd: pidfd.map_err(gone)? })
    }

    /// Our descriptor for the caller's descriptor `arg` (the kernel reads it as an int).
    pub fn descriptor(&self, arg: u64) -> Result<OwnedFd, Fail> {
        let fd = arg as u32 as i32;
        if fd < 0 {
            return Err(Fail::Errno(libc::EBADF));
        }
        kernel::pidfd_getfd(self.pidfd.as_fd(), fd).map_err(|e| match e.raw_os_error() {
            Some(errno @ (libc::EBADF | libc::ESRCH)) => Fail::Errno(errno),
            _ => Fail::Broken(format!("taking a descriptor of process {} (pidfd_getfd): {e}", self.tid)),
        })
    }

    /// `len` bytes of the caller's memory at `addr`, read once; EFAULT where the kernel would
    /// have failed to read them.
    pub fn memory(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fail> {
        Ok(self.memory_batch(&[(addr, len)])?.pop().unwrap_or_default())
    }

    /// Several pieces of the caller's memory, `(address, length)` each, in one read; EFAULT if
    /// any can't be read whole.
    pub fn memory_batch(&self, pieces: &[(u64, usize)]) -> Result<Vec<Vec<u8>>, Fail> {
        let mut bufs: Vec<Vec<u8>> = pieces.iter().map(|(_, len)| vec![0u8; *len]).collect();
        let remote: Vec<RemoteIoVec> =
            pieces.iter().map(|(a, len)| RemoteIoVec { base: *a as usize, len: *len }).collect();
        let total: usize = pieces.iter().map(|(_, len)| len).sum();
        let mut local: Vec<std::io::IoSliceMut> = bufs.iter_mut().map(|b| std::io::IoSliceMut::new(b)).collect();
        match process_vm_readv(nix::unistd::Pid::from_raw(self.tid), &mut local, &remote) {
            Ok(n) if n == total => Ok(bufs),
            Ok(_) | Err(nix::Error::EFAULT) => Err(Fail::Errno(libc::EFAULT)),
            Err(nix::Error::ESRCH) => Err(Fail::Errno(libc::ESRCH)),
            Err(e) => Err(Fail::Broken(format!("reading the memory of process {} (process_vm_readv): {e}", self.tid))),
        }
    }

    /// The calling thread, as a pid of the supervisor's pid namespace.
    pub fn tid(&self) -> libc::pid_t {
        self.tid
    }

    /// Where the caller's descriptor `fd` leads, in the caller's view; EBADF when it has none.
    pub fn descriptor_path(&self, fd: i32) -> Result<Vec<u8>, Fail> {
        use std::os::unix::ffi::OsStringExt;
        if fd < 0 {
            return Err(Fail::Errno(libc::EBADF));
        }
        match std::fs::read_link(format!("/proc/{}/fd/{fd}", self.tid)) {
            Ok(path) => Ok(path.into_os_string().into_vec()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(Fail::Errno(libc::EBADF)),
            Err(e) => Err(gone(e)),
        }
    }

    /// The caller's root ("root") or working directory ("cwd"), opened as a path.
    pub fn directory(&self, which: &str) -> Result<OwnedFd, Fail> {
        let path = format!("/proc/{}/{which}", self.tid);
        nix::fcntl::open(path.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(
            |e| match e {
                nix::Error::ENOENT | nix::Error::ESRCH => Fail::Errno(libc::ESRCH),
                e => Fail::Broken(format!("opening {path}: {e}")),
            },
        )
    }

    /// The caller's working directory as the sandbox sees it (the kernel writes the path up to
    /// the root of the caller's own mount namespace).
    pub fn working_directory(&self) -> Result<PathBuf, Fail> {
        let path = std::fs::read_link(format!("/proc/{}/cwd", self.tid)).map_err(gone)?;
        if path.is_absolute() {
            Ok(path)
        } else {
            Err(Fail::Errno(libc::ENOENT)) // a deleted or unreachable folder
        }
    }
}

/// The thread group (process) of a thread, from /proc.
fn thread_group(tid: libc::pid_t) -> Result<libc::pid_t, Fail> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).map_err(gone)?;
    let tgid = status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok());
    tgid.ok_or(Fail::Errno(libc::ESRCH))
}
