//! The few raw system calls that neither nix nor a dedicated crate wraps. Every `unsafe` block of
//! the backend lives here, each in a small function with the reason it is sound; only the seccomp
//! notification handler keeps its own, in the same style, in `notify/kernel.rs`.
//!
//! A function whose soundness depends on how it is called is an `unsafe fn` whose `# Safety`
//! section says what the caller must ensure: the clones and forks (the caller's threads), and
//! whatever closes or replaces a descriptor by number (no Rust object may still use it). The rest
//! are sound for any argument: a descriptor number that names nothing fails with `EBADF`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub(crate) fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Fork-like `clone` into new namespaces. Returns the child's pid in the parent and 0 in the child.
///
/// # Safety
///
/// The child gets a copy of the address space with only the calling thread, so a lock another
/// thread held at the clone is held forever there. The caller must be single-threaded, or the
/// child must take no lock (no allocation, no stdio) before it execs or exits.
pub unsafe fn clone_process(flags: libc::c_int) -> io::Result<libc::pid_t> {
    // SAFETY: a null stack makes clone behave like fork (the child runs on a copy-on-write copy
    // of the caller's stack); no pointers are passed; the caller vouches for the child's locks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
        )
    };
    check(rc).map(|pid| pid as libc::pid_t)
}

/// Like [`clone_process`], but the child starts in the cgroup v2 directory `cgroup`
/// (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7+), so it never runs outside it and nobody
/// has to move it (a move waits for an RCU grace period). `ENOSYS`, `E2BIG` or `EINVAL` mean
/// the kernel (or a container's seccomp profile) doesn't offer this.
///
/// # Safety
///
/// As for [`clone_process`].
pub unsafe fn clone_into_cgroup(flags: libc::c_int, cgroup: BorrowedFd) -> io::Result<libc::pid_t> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    /// `struct clone_args` up to its `cgroup` field (CLONE_ARGS_SIZE_VER2).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        flags: flags as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.as_raw_fd() as u64,
    };
    // SAFETY: `args` is a correctly sized, initialized clone_args that outlives the call; with
    // no stack the child runs on a copy-on-write copy of ours, like fork; the caller vouches for
    // the child's locks, as for `clone_process`.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    check(rc).map(|pid| pid as libc::pid_t)
}

/// Plain fork, for the command.
///
/// # Safety
///
/// As for [`clone_process`].
pub unsafe fn fork_process() -> io::Result<libc::pid_t> {
    // SAFETY: the caller vouches for the child's locks.
    unsafe { clone_process(0) }
}

/// libc's `fork`, whose at-fork handlers leave the allocator's locks usable in the child even
/// when other threads were running.
///
/// # Safety
///
/// The child must take no lock another thread could have held at the fork, apart from the
/// allocator's: no stdio locks held elsewhere, no mutexes of the caller's.
pub unsafe fn fork_with_libc() -> io::Result<libc::pid_t> {
    // SAFETY: fork has no memory arguments; the caller vouches for the child's locks.
    check(unsafe { libc::fork() } as libc::c_long).map(|pid| pid as libc::pid_t)
}

/// `mount_setattr(2)` on a whole subtree (Linux 5.12+): flags set and cleared in one call,
/// including on locked mounts we may only tighten.
pub fn mount_setattr_recursive(path: &Path, set: u64, clear: u64, propagation: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr { attr_set: set, attr_clr: clear, propagation, userns_fd: 0 };
    let c = cpath(path)?;
    // SAFETY: `c` is a valid C string and `attr` a correctly sized, initialized struct that
    // outlives the call; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            (libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(rc).map(drop)
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Closes every descriptor from `first` up.
///
/// # Safety
///
/// No Rust object may use a descriptor from `first` up afterwards (an `OwnedFd` would close a
/// number that may by then name another file): callers run this in a forked process that
/// never returns to the frames owning them, before it execs or exits.
pub unsafe fn close_fds_from(first: RawFd) {
    // SAFETY: close_range takes plain integers; the caller vouches for the descriptors' owners.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, 0) };
    if rc < 0 {
        // Kernels before 5.9: close them one by one.
        let max = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX).ok().flatten().unwrap_or(1024);
        for fd in first..max as RawFd {
            // SAFETY: as above; EBADF for unused numbers is harmless.
            unsafe { close_fd(fd) };
        }
    }
}

/// Raw `close` of a descriptor number, for descriptors inherited across a fork.
///
/// # Safety
///
/// As for [`close_fds_from`], for `fd`.
pub unsafe fn close_fd(fd: RawFd) {
    // SAFETY: close takes an integer; the caller vouches for the descriptor's owner.
    unsafe { libc::close(fd) };
}

/// Raw `write` of a whole buffer to a descriptor number (the status pipe, an inherited
/// descriptor).
pub fn write_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer for `data.len()` bytes for the call.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Whether a descriptor number is open in this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD takes no argument and touches no memory.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// A copy (close-on-exec) of a descriptor the caller passed open (`--json-status 3`), as a
/// file of ours; None when it is not open. The caller's own number is left as it is.
pub fn take_inherited_fd(fd: RawFd) -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC takes an integer and touches no memory.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: `copy` is a descriptor this call just made and nothing else owns.
    (copy >= 0).then(|| unsafe { std::fs::File::from_raw_fd(copy) })
}

/// fstat(2) of a descriptor number (one the process inherited, which no Rust object owns).
pub fn fstat_number(fd: RawFd) -> nix::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into `st`, which outlives the call, or fails.
    let rc = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    nix::errno::Errno::result(rc)?;
    // SAFETY: fstat succeeded, so it filled `st` in.
    Ok(unsafe { st.assume_init() })
}

/// Raw `read` from a descriptor number.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Borrows a descriptor by number, for code that holds it open in a form that lends no
/// `BorrowedFd` (a `nix::dir::Dir` while it is iterated).
///
/// # Safety
///
/// `fd` must stay open, and not be closed or replaced by anything, for as long as the borrow
/// is used.
pub unsafe fn borrow_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: the caller keeps `fd` open for the borrow's lifetime.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Sends a message with at most one descriptor (SCM_RIGHTS).
pub fn send_with_fd(sock: BorrowedFd, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let fds: Vec<RawFd> = fd.into_iter().collect();
    send_with_fds(sock, data, &fds)
}

/// Sends a message with these descriptors (SCM_RIGHTS).
pub fn send_with_fds(sock: BorrowedFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock.as_raw_fd(), &[io::IoSlice::new(data)], cmsgs, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives a message into `data` and at most one descriptor (SCM_RIGHTS); the message's length
/// and the descriptor.
pub fn recv_with_fd(sock: BorrowedFd, data: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let (n, fds) = recv_with_fds(sock, data)?;
    Ok((n, fds.into_iter().next()))
}

/// Receives a message into `data` and the descriptors that came with it (at most three); a
/// message cut short (longer than `data`) is an error.
pub fn recv_with_fds(sock: BorrowedFd, data: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [io::IoSliceMut::new(data)];
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut owned = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: SCM_RIGHTS just installed these descriptors in our table; nothing else
            // owns them, so each is wrapped exactly once.
            owned.extend(fds.iter().map(|&raw| unsafe { OwnedFd::from_raw_fd(raw) }));
        }
    }
    if msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "message or its descriptors cut short"));
    }
    Ok((msg.bytes, owned))
}

/// `pidfd_send_signal(2)`: signals the process the pidfd names, never another that took its
/// pid after it was reaped.
pub fn pidfd_kill(pidfd: BorrowedFd) -> io::Result<()> {
    // SAFETY: integer arguments and a null siginfo (the kernel fills it in as for kill(2)).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(rc).map(drop)
}

/// `pidfd_open(2)`: a descriptor that becomes readable when process `pid` exits.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only; on success the kernel returns a new descriptor we own.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    // SAFETY: `fd` was just created by the kernel for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Raw `dup2` onto a fixed number, for stdio set-up after fork.
///
/// # Safety
///
/// As for [`close_fd`], for `to`, which dup2 closes first.
pub unsafe fn dup_onto(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes plain integers; the caller vouches for the owner of `to`.
    check(unsafe { libc::dup2(from, to) } as libc::c_long).map(drop)
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    // SAFETY: `ifreq` is plain old data, zero is a valid value for all its fields.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for SIOCGIFFLAGS, which writes only into it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } as libc::c_long)?;
    // SAFETY: SIOCGIFFLAGS filled in the flags member of the union, which is read here.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: `req` is a valid ifreq for SIOCSIFFLAGS, which only reads it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } as libc::c_long).map(drop)
}

/// Attaches a classic BPF program to a socket (SO_ATTACH_FILTER): the socket receives only
/// what the program keeps.
pub fn attach_socket_filter(sock: BorrowedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
    let size = std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t;
    // SAFETY: the kernel reads one sock_fprog, and through it `len` instructions of `program`,
    // both alive for the call; it copies the program.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            size,
        )
    };
    check(rc as libc::c_long).map(drop)
}

/// Empties the permitted, effective and inheritable capability sets, the bounding set and the
/// ambient set, so nothing the sandbox runs can regain a capability.
pub fn drop_all_capabilities() -> io::Result<()> {
    for cap in 0..=63 {
        // SAFETY: prctl with integer arguments; EINVAL past the last capability ends the loop.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) } as libc::c_long)?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: header and a two-element data array are the layout capset expects for version 3;
    // both outlive the call and are only read.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) }).map(drop)
}

/// Sets no_new_privs, so setuid binaries and file capabilities grant nothing.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as libc::c_long).map(drop)
}

/// Marks the process non-dumpable: no core files, and no ptrace or /proc access from peers.
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } as libc::c_long).map(drop)
}

/// Marks the process dumpable again (as exec would): its owner may read its memory.
pub fn set_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } as libc::c_long).map(drop)
}

/// Makes `fd` (a terminal) the controlling terminal of the calling session leader.
pub fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument and no memory.
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } as libc::c_long).map(drop)
}

/// Reads a terminal's window size.
pub fn get_winsize(fd: RawFd) -> Option<libc::winsize> {
    // SAFETY: winsize is plain old data; TIOCGWINSZ writes exactly one into `ws`.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: RawFd, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ only reads the winsize it is given.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, ws) };
}

/// The Landlock ABI version the kernel offers, or 0 without Landlock.
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and the VERSION flag the call only returns an integer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    rc.max(0) as i32
}

/// Adds a path-beneath rule to a Landlock ruleset (the child's half of the ruleset).
pub fn landlock_add_path_rule(ruleset: RawFd, dir: RawFd, access: u64) -> io::Result<()> {
    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let attr = PathBeneathAttr { allowed_access: access, parent_fd: dir };
    // SAFETY: `attr` has the kernel's packed layout and lives for the call; it is only read.
    check(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0,
        )
    })
    .map(drop)
}

/// Enforces a Landlock ruleset on the calling process; no_new_privs must already be set.
pub fn landlock_restrict_self(ruleset: RawFd) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) }).map(drop)
}

/// Whether seccomp user notification is available (SECCOMP_GET_NOTIF_SIZES succeeds).
pub fn seccomp_user_notif() -> bool {
    #[repr(C)]
    struct Sizes {
        notif: u16,
        resp: u16,
        data: u16,
    }
    let mut sizes = Sizes { notif: 0, resp: 0, data: 0 };
    const SECCOMP_GET_NOTIF_SIZES: libc::c_uint = 3;
    // SAFETY: the kernel writes one `seccomp_notif_sizes` (three u16) into `sizes`.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &mut sizes as *mut Sizes) };
    rc == 0
}

/// Installs a seccomp filter on the calling thread; no_new_privs must already be set. With
/// `listener`, the kernel also returns the descriptor on which the calls the filter traps
/// (SECCOMP_RET_USER_NOTIF) are received.
pub fn install_seccomp(program: &[seccompiler::sock_filter], listener: bool) -> io::Result<Option<OwnedFd>> {
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const seccompiler::sock_filter,
    }
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let prog = Fprog { len, filter: program.as_ptr() };
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    let flags = if listener { libc::SECCOMP_FILTER_FLAG_NEW_LISTENER } else { 0 };
    // SAFETY: `prog` points at `program`, both alive for the call; the kernel copies the filter.
    let rc = check(unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog as *const Fprog) })?;
    // SAFETY: with NEW_LISTENER the result is a fresh descriptor that nothing else owns.
    Ok(listener.then(|| unsafe { OwnedFd::from_raw_fd(rc as RawFd) }))
}

/// Wall-clock-independent resource usage of a reaped child, via `wait4`.
pub fn wait4(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes for the duration of the call.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc >= 0 {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Installs a do-nothing handler, so a pid-namespace init receives the signal at all (the
/// kernel drops signals to such an init whose handler is the default).
pub fn install_noop_handler(signal: libc::c_int) {
    extern "C" fn noop(_: libc::c_int) {}
    // SAFETY: sigaction is plain old data; all zeroes is a valid value (an empty mask).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = noop as *const () as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is a valid sigaction, only read; the handler is async-signal-safe (it
    // does nothing).
    unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
}

/// Restores every signal's default disposition and clears the mask, before exec.
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: integer arguments; the default disposition runs no code of ours.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}

/// Terminates the calling process at once, without running destructors or atexit handlers
/// (the right exit for a forked child that must not flush the parent's buffers).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Runs the life of a forked child, which must never return into the frames it shares with
/// its parent in its copy of the memory: a panic that unwinds (builds other than release)
/// ends the process with `code` instead.
pub fn child_life(code: i32, life: impl FnOnce() -> std::convert::Infallible) -> ! {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(life)) {
        Ok(never) => match never {},
        Err(_) => exit_now(code),
    }
}

/// `getdents64(2)`: reads the next entries of the open directory `fd` into `buf`, as
/// `linux_dirent64` records; 0 at the end. One call per batch, with none of libc's `DIR`
/// bookkeeping (the post-run review lists every folder of the writable roots).
pub fn getdents64(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which is valid and
    // exclusively borrowed for the call; `fd` is open for the borrow's lifetime.
    let rc = unsafe { libc::syscall(libc::SYS_getdents64, fd.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    check(rc).map(|n| n as usize)
}
