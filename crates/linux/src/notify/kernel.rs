//! The raw calls of the notification handler that nix doesn't wrap: the listener's ioctls, pidfds,
//! integer socket options, connect with the caller's own address bytes, and statx for the mount
//! ID. Like `crate::sys`, every `unsafe` block is in a small function that says why it is sound.

use crate::sys::check;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Wraps a descriptor the kernel just returned.
fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(rc)? as RawFd;
    // SAFETY: a successful call returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits for the next trapped system call on the listener.
pub fn receive(listener: BorrowedFd) -> io::Result<libc::seccomp_notif> {
    // SAFETY: seccomp_notif is plain old data; the kernel requires it zeroed.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV writes one seccomp_notif into `notif`, which outlives the call.
    let rc = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif) };
    check(rc as libc::c_long).map(|_| notif)
}

/// Answers the trapped call `id`: `error` (a negative errno) or, when 0, the return value `val`;
/// with `carry_on`, the kernel carries the call out itself (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
pub fn respond(listener: BorrowedFd, id: u64, val: i64, error: i32, carry_on: bool) -> io::Result<()> {
    let flags = if carry_on { libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 } else { 0 };
    let mut resp = libc::seccomp_notif_resp { id, val, error, flags };
    // SAFETY: SEND reads (and may write back) one seccomp_notif_resp, which outlives the call.
    let rc = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    check(rc as libc::c_long).map(drop)
}

/// Whether the trapped call `id` still waits for its answer: then the process that made it is
/// alive, so a pid read from the notification still names it.
pub fn still_pending(listener: BorrowedFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: ID_VALID reads one u64, which outlives the call.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
}

/// Asks the kernel to pass the CPU straight from a trapped thread to the receiving thread and
/// back (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, Linux 6.6), which saves two scheduler round
/// trips per trapped call. A speed hint only: whether the kernel takes it changes no decision.
pub fn prefer_sync_wake_up(listener: BorrowedFd) -> bool {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: libc::c_ulong = 1;
    // SAFETY: SET_FLAGS takes the flags as an integer argument, not a pointer.
    unsafe {
        libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0
    }
}

/// pidfd_open(2) (Linux 5.3); `flags` may be PIDFD_THREAD (6.9) for a thread that is not its
/// group's leader.
pub fn pidfd_open(pid: libc::pid_t, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })
}

/// pidfd_getfd(2) (Linux 5.6): our own descriptor for the same open file as `fd` of the process.
pub fn pidfd_getfd(pidfd: BorrowedFd, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
}

/// Whether the kernel has pidfd_getfd: without a pidfd it fails with EBADF rather than ENOSYS.
pub fn has_pidfd_getfd() -> bool {
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1, -1, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// An integer SOL_SOCKET option (SO_DOMAIN, SO_TYPE) of a socket.
pub fn socket_option(sock: BorrowedFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the call, and `len` says how big `value` is.
    let rc = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, name, (&mut value as *mut libc::c_int).cast(), &mut len)
    };
    check(rc as libc::c_long).map(|_| value)
}

/// connect(2) with an address given as raw bytes, exactly as a caller passed it.
pub fn connect(sock: BorrowedFd, address: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(address.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the kernel reads `len` bytes from `address`, which outlives the call.
    let rc = unsafe { libc::connect(sock.as_raw_fd(), address.as_ptr().cast(), len) };
    check(rc as libc::c_long).map(drop)
}

/// What statx says about an open file: its type and mode, inode number and mount ID.
pub struct FileId {
    pub mode: u32,
    pub ino: u64,
    pub mount_id: Option<u64>,
}

/// statx(2) of an open descriptor itself (AT_EMPTY_PATH), asking for the mount ID (Linux 5.8).
pub fn file_id(fd: BorrowedFd) -> io::Result<FileId> {
    // SAFETY: statx is plain old data; the kernel fills it in.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_INO | libc::STATX_MNT_ID;
    // SAFETY: the path is a valid empty C string, and `stx` is valid for writes for the call.
    let rc = unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, mask, &mut stx) };
    check(rc as libc::c_long)?;
    let mount_id = (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id);
    Ok(FileId { mode: u32::from(stx.stx_mode), ino: stx.stx_ino, mount_id })
}

/// The part of pidfs's `struct pidfd_info` (Linux 6.13; the exit fields 6.15) ringfence reads,
/// in the kernel's first published size (64 bytes).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    /// pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid.
    ids: [u32; 11],
    exit_code: i32,
}

/// PIDFD_GET_INFO: _IOWR(0xFF, 11, struct pidfd_info), for the 64-byte struct.
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;
/// Asks for the exit status of a process that has been reaped.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// The wait status of the reaped process behind `pidfd`: None while it is not reaped yet, or
/// on a kernel that can't tell (before Linux 6.15).
pub fn pidfd_exit_status(pidfd: BorrowedFd) -> Option<i32> {
    let mut info = PidfdInfo { mask: PIDFD_INFO_EXIT, ..Default::default() };
    // SAFETY: PIDFD_GET_INFO writes at most the size encoded in the request, which is `info`'s.
    let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info) };
    (rc == 0 && info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}
