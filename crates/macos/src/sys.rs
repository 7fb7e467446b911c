//! The macOS calls the backend makes, each in a small function with its safety argument: one
//! call or dereference per `unsafe` block, descriptors passed borrowed or owned, never raw.
//! `sandbox_init_with_parameters`, `sandbox_check` and `posix_spawn_file_actions_addinherit_np`
//! are exported by libSystem without a public header (sandbox-exec, Chromium, WebKit and Nix
//! use them), so they are declared here.

use std::ffi::{c_char, c_int, CStr, CString};
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

extern "C" {
    fn sandbox_init_with_parameters(
        profile: *const c_char,
        flags: u64,
        parameters: *const *const c_char,
        errorbuf: *mut *mut c_char,
    ) -> c_int;
    fn sandbox_check(pid: libc::pid_t, operation: *const c_char, filter: c_int, ...) -> c_int;
    fn posix_spawn_file_actions_addinherit_np(actions: *mut libc::posix_spawn_file_actions_t, fd: c_int) -> c_int;
}

/// `sandbox_check` filter types and flags (sandbox.h).
const SANDBOX_FILTER_NONE: c_int = 0;
const SANDBOX_FILTER_PATH: c_int = 1;
const SANDBOX_CHECK_NO_REPORT: c_int = 0x4000_0000;
/// The number of signals plus one (sys/signal.h).
const NSIG: c_int = 32;
/// `proc_listpids` selector: processes of one effective uid (libproc.h).
const PROC_UID_ONLY: u32 = 4;

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn check(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(last_error())
    } else {
        Ok(rc)
    }
}

/// The byte count read(2) or write(2) returned, or the error its -1 stands for.
fn byte_count(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(last_error())
    } else {
        Ok(n as usize)
    }
}

/// Whether the caller passed this descriptor open.
pub fn inherited_fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Writes all of `data` to `fd`.
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: the pointer and length describe `data`, which outlives the call.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        match n {
            n if n > 0 => data = &data[n as usize..],
            0 => return Err(io::ErrorKind::WriteZero.into()),
            _ if last_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return Err(last_error()),
        }
    }
    Ok(())
}

/// A C string, or an error naming what had a NUL byte (no path on macOS can).
pub fn cstring(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} holds a NUL byte")))
}

/// C strings and the NULL-terminated array of pointers to them that C takes (argv, envp, the
/// profile's parameters). The strings' buffers stay where they are when this moves, so the
/// pointers stay valid as long as it lives.
pub struct CStrArray {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CStrArray {
    pub fn new(strings: Vec<CString>) -> CStrArray {
        let pointers = strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        CStrArray { _strings: strings, pointers }
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

/// Applies a profile to this process; after a fork, before exec. The error text is the
/// profile compiler's own, `Err(None)` when there is none.
pub fn apply_profile(profile: &CStr, params: &CStrArray) -> Result<(), Option<&'static [u8]>> {
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the profile is NUL-terminated; `params` is a NULL-terminated array of pointers to
    // NUL-terminated strings, alive for the call; `error` receives a string or stays null.
    let rc = unsafe { sandbox_init_with_parameters(profile.as_ptr(), 0, params.as_ptr(), &mut error) };
    if rc == 0 {
        return Ok(());
    }
    if error.is_null() {
        return Err(None);
    }
    // SAFETY: a non-null error is a NUL-terminated string the sandbox library allocated and
    // never frees on its own (nothing here calls sandbox_free_error): it lives as long as the
    // process, which, forked for this, exits right after reading it.
    Err(Some(unsafe { CStr::from_ptr(error) }.to_bytes()))
}

/// Whether `pid` runs under a sandbox that allows `op` on `allowed` and refuses it on
/// `refused`: the fingerprint of one run's profile, whose private folder only it may write.
pub fn sandbox_matches(pid: libc::pid_t, op: &CStr, allowed: &CStr, refused: &CStr) -> bool {
    // SAFETY: a null operation with SANDBOX_FILTER_NONE asks only whether `pid` is sandboxed.
    let sandboxed = unsafe { sandbox_check(pid, std::ptr::null(), SANDBOX_FILTER_NONE) } == 1;
    let ask = |path: &CStr| {
        // SAFETY: `op` and `path` are NUL-terminated and outlive the call; the variadic argument
        // of SANDBOX_FILTER_PATH is one `const char *`.
        unsafe { sandbox_check(pid, op.as_ptr(), SANDBOX_FILTER_PATH | SANDBOX_CHECK_NO_REPORT, path.as_ptr()) }
    };
    sandboxed && ask(allowed) == 0 && ask(refused) == 1
}

/// Takes ownership of a descriptor a call returned.
///
/// # Safety
/// `fd` must be a new descriptor that nothing else owns or closes.
unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller promises a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A pipe whose ends are close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: pipe(2) just returned this descriptor, owned by nobody else.
    let read = unsafe { owned(fds[0]) };
    // SAFETY: as above.
    let write = unsafe { owned(fds[1]) };
    set_cloexec(read.as_fd())?;
    set_cloexec(write.as_fd())?;
    Ok((read, write))
}

pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETFD changes only the descriptor's flags.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL change only the open file's status flags.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Reads into `buf`; Ok(0) at the end, WouldBlock when nothing is there.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`.
    byte_count(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Whether `fd` becomes readable (or reaches its end) within `timeout`.
pub fn readable_within(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(c_int::MAX as u128) as c_int;
    // SAFETY: one pollfd, valid for the call.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Writes what it can of `data`.
pub fn write_fd(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `data`.
    byte_count(unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) })
}

/// The exit status and usage of `pid` if it has ended, without waiting.
pub fn try_wait(pid: libc::pid_t) -> io::Result<Option<(c_int, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it when it reaps.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        match rc {
            0 => return Ok(None),
            r if r == pid => return Ok(Some((status, usage))),
            _ if last_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return Err(last_error()),
        }
    }
}

/// Waits for `pid` to end and reaps it.
pub fn wait_blocking(pid: libc::pid_t) -> io::Result<(c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: as in `try_wait`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            return Ok((status, usage));
        }
        if last_error().kind() != io::ErrorKind::Interrupted {
            return Err(last_error());
        }
    }
}

pub fn kill(pid: libc::pid_t, sig: c_int) {
    // SAFETY: kill(2) has no memory effects; a gone process is ESRCH, which is fine here.
    unsafe { libc::kill(pid, sig) };
}

pub fn kill_group(pgid: libc::pid_t, sig: c_int) {
    // SAFETY: killpg(2) has no memory effects; an empty group is ESRCH, which is fine here.
    unsafe { libc::killpg(pgid, sig) };
}

/// The processes whose effective uid is `uid`.
pub fn pids_of_user(uid: libc::uid_t) -> Vec<libc::pid_t> {
    let mut pids: Vec<libc::pid_t> = vec![0; 1024];
    loop {
        let bytes = (pids.len() * std::mem::size_of::<libc::pid_t>()) as c_int;
        // SAFETY: the buffer holds `bytes` bytes; the call writes at most that many.
        let n = unsafe { libc::proc_listpids(PROC_UID_ONLY, uid, pids.as_mut_ptr().cast(), bytes) };
        if n <= 0 {
            return Vec::new();
        }
        let count = n as usize / std::mem::size_of::<libc::pid_t>();
        if count < pids.len() {
            pids.truncate(count);
            pids.retain(|&p| p > 0);
            return pids;
        }
        pids.resize(pids.len() * 2, 0);
    }
}

/// A `proc_pidinfo` structure and the flavor that fills it.
///
/// # Safety
/// The type is plain data (all zeros, and whatever bytes the call writes, are values of it),
/// and it is the structure of `FLAVOR`.
unsafe trait PidInfo {
    const FLAVOR: c_int;
}

// SAFETY: plain data, the structure of PROC_PIDTBSDINFO (libproc.h).
unsafe impl PidInfo for libc::proc_bsdinfo {
    const FLAVOR: c_int = libc::PROC_PIDTBSDINFO;
}

// SAFETY: plain data, the structure of PROC_PIDTASKINFO (libproc.h).
unsafe impl PidInfo for libc::proc_taskinfo {
    const FLAVOR: c_int = libc::PROC_PIDTASKINFO;
}

/// What `proc_pidinfo` tells of `pid`, if it still runs.
fn pid_info<T: PidInfo>(pid: libc::pid_t) -> Option<T> {
    // SAFETY: the structure is plain data (the trait's promise); all zeros is a value of it.
    let mut info: T = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<T>() as c_int;
    // SAFETY: the buffer is one `T` of `size` bytes, the structure of its flavor (the trait
    // ties them).
    let n = unsafe { libc::proc_pidinfo(pid, T::FLAVOR, 0, (&mut info as *mut T).cast(), size) };
    (n == size).then_some(info)
}

/// What the backend needs to know of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub ppid: libc::pid_t,
    pub pgid: libc::pid_t,
    pub uid: libc::uid_t,
    /// Start time in microseconds since the epoch: with the pid, a process's identity.
    pub start_us: u64,
    /// Ended, waiting for its parent to reap it: it runs nothing and holds no memory.
    pub zombie: bool,
}

/// `pbi_status` of a process that has ended but not been reaped (sys/proc.h).
const SZOMB: u32 = 5;

/// The parent, group, owner and start time of `pid`, if it still runs.
pub fn proc_info(pid: libc::pid_t) -> Option<ProcInfo> {
    let info: libc::proc_bsdinfo = pid_info(pid)?;
    Some(ProcInfo {
        ppid: info.pbi_ppid as libc::pid_t,
        pgid: info.pbi_pgid as libc::pid_t,
        uid: info.pbi_uid,
        start_us: info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
        zombie: info.pbi_status == SZOMB,
    })
}

/// The resident memory of `pid`, in bytes.
pub fn resident_bytes(pid: libc::pid_t) -> Option<u64> {
    pid_info::<libc::proc_taskinfo>(pid).map(|info| info.pti_resident_size)
}

pub fn uid() -> libc::uid_t {
    // SAFETY: geteuid(2) has no failure and no memory effects.
    unsafe { libc::geteuid() }
}

/// The hard limit on the user's processes (RLIMIT_NPROC).
pub fn nproc_hard_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is valid for writes.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) })?;
    Ok(lim.rlim_max)
}

/// A string kernel variable (`kern.osproductversion`).
pub fn sysctl_string(name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    let mut buf = [0u8; 256];
    let mut len = buf.len();
    // SAFETY: `buf` holds `len` bytes and sysctlbyname writes at most that many, updating `len`.
    let rc = unsafe { libc::sysctlbyname(name.as_ptr(), buf.as_mut_ptr().cast(), &mut len, std::ptr::null_mut(), 0) };
    (rc == 0).then(|| String::from_utf8_lossy(&buf[..len]).trim_end_matches('\0').to_string())
}

/// The path of the file open on `fd` (F_GETPATH).
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: F_GETPATH writes a NUL-terminated path of at most PATH_MAX bytes into `buf`.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) })?;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(len);
    Ok(PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf)))
}

/// The file actions and attributes of the exec that follows the profile: stdio as given, every
/// other descriptor closed, signals to their defaults and unblocked, this process replaced. The
/// descriptors the streams come from are borrowed for `'fd`: they stay open until the exec.
pub struct SpawnSetup<'fd> {
    actions: libc::posix_spawn_file_actions_t,
    attr: libc::posix_spawnattr_t,
    _sources: PhantomData<BorrowedFd<'fd>>,
}

/// Where one of descriptors 0, 1 and 2 comes from.
#[derive(Clone, Copy)]
pub enum Stdio<'fd> {
    Inherit,
    Null,
    From(BorrowedFd<'fd>),
}

impl<'fd> SpawnSetup<'fd> {
    pub fn new(stdio: [Stdio<'fd>; 3]) -> io::Result<Self> {
        let mut setup = SpawnSetup {
            // SAFETY: plain data, initialised by its init call below before any other use, and
            // destroyed in Drop.
            actions: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            attr: unsafe { std::mem::zeroed() },
            _sources: PhantomData,
        };
        // SAFETY: `actions` is valid for the write.
        spawn_rc(unsafe { libc::posix_spawn_file_actions_init(&mut setup.actions) })?;
        // SAFETY: `attr` is valid for the write.
        spawn_rc(unsafe { libc::posix_spawnattr_init(&mut setup.attr) })?;
        for (target, source) in stdio.into_iter().enumerate() {
            setup.stdio(target as c_int, source)?;
        }
        setup.attributes()?;
        Ok(setup)
    }

    fn stdio(&mut self, target: c_int, source: Stdio<'fd>) -> io::Result<()> {
        let null = c"/dev/null";
        let actions = &mut self.actions;
        spawn_rc(match source {
            Stdio::Inherit if inherited_fd_is_open(target) => {
                // SAFETY: `actions` is initialised.
                unsafe { posix_spawn_file_actions_addinherit_np(actions, target) }
            }
            // SAFETY: as above.
            Stdio::From(fd) if fd.as_raw_fd() == target => unsafe {
                posix_spawn_file_actions_addinherit_np(actions, target)
            },
            // SAFETY: as above; the source stays open until the exec (it is borrowed for 'fd).
            Stdio::From(fd) => unsafe { libc::posix_spawn_file_actions_adddup2(actions, fd.as_raw_fd(), target) },
            Stdio::Inherit | Stdio::Null => {
                // SAFETY: as above; the path is NUL-terminated and static.
                unsafe { libc::posix_spawn_file_actions_addopen(actions, target, null.as_ptr(), libc::O_RDWR, 0) }
            }
        })
    }

    fn attributes(&mut self) -> io::Result<()> {
        let flags = libc::POSIX_SPAWN_SETEXEC
            | libc::POSIX_SPAWN_CLOEXEC_DEFAULT
            | libc::POSIX_SPAWN_SETSIGDEF
            | libc::POSIX_SPAWN_SETSIGMASK;
        // Every signal a handler can be set for (not SIGKILL and SIGSTOP) back to its default,
        // SIGPIPE and the signals ringfence ignores included.
        let all = signal_set((1..NSIG).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP));
        let none = signal_set(std::iter::empty());
        // SAFETY: `attr` is initialised; the set is valid for the call.
        spawn_rc(unsafe { libc::posix_spawnattr_setsigdefault(&mut self.attr, &all) })?;
        // SAFETY: as above.
        spawn_rc(unsafe { libc::posix_spawnattr_setsigmask(&mut self.attr, &none) })?;
        // SAFETY: `attr` is initialised.
        spawn_rc(unsafe { libc::posix_spawnattr_setflags(&mut self.attr, flags as libc::c_short) })
    }

    /// Replaces this process with `program` (POSIX_SPAWN_SETEXEC); returns only the error.
    pub fn exec(&self, program: &CStr, argv: &CStrArray, envp: &CStrArray) -> c_int {
        // SAFETY: the program is NUL-terminated, argv and envp are NULL-terminated arrays of
        // NUL-terminated strings, all alive for the call; actions and attributes are
        // initialised.
        unsafe {
            libc::posix_spawn(
                std::ptr::null_mut(),
                program.as_ptr(),
                &self.actions,
                &self.attr,
                argv.as_ptr() as *const *mut c_char,
                envp.as_ptr() as *const *mut c_char,
            )
        }
    }
}

impl Drop for SpawnSetup<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and not used after this.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.actions) };
        // SAFETY: as above.
        unsafe { libc::posix_spawnattr_destroy(&mut self.attr) };
    }
}

/// The set of `signals`.
fn signal_set(signals: impl Iterator<Item = c_int>) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for the write.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in signals {
        // SAFETY: as above; `sig` is a signal number.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    set
}

fn spawn_rc(rc: c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Forks. The child runs `child`, then exits (with 125 if `child` returns).
///
/// # Safety
/// Other threads may hold locks the child inherits: `child` must make only async-signal-safe
/// calls (system calls; no allocation, no locks, no destructors that do either).
pub unsafe fn fork(child: impl FnOnce()) -> io::Result<libc::pid_t> {
    // SAFETY: fork(2); in the child, `child` runs only async-signal-safe calls (the caller
    // promises), then the child exits without returning to the caller.
    match unsafe { libc::fork() } {
        -1 => Err(last_error()),
        0 => {
            child();
            exit_now(125)
        }
        pid => Ok(pid),
    }
}

/// Leaves the process at once, running no destructors and no atexit handlers.
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit(2) ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// New session: no controlling terminal, own process group.
pub fn setsid() -> c_int {
    // SAFETY: setsid(2) has no memory effects.
    if unsafe { libc::setsid() } < 0 {
        errno()
    } else {
        0
    }
}

/// Makes `fd`, a terminal, this session's controlling terminal.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> c_int {
    // SAFETY: TIOCSCTTY takes no argument memory.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY as libc::c_ulong, 0) } < 0 {
        errno()
    } else {
        0
    }
}

pub fn set_nproc(limit: u64) -> c_int {
    let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: `lim` is valid for the read.
    if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &lim) } < 0 {
        errno()
    } else {
        0
    }
}

pub fn chdir(path: &CStr) -> c_int {
    // SAFETY: the path is NUL-terminated.
    if unsafe { libc::chdir(path.as_ptr()) } < 0 {
        errno()
    } else {
        0
    }
}

fn errno() -> c_int {
    last_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Whether `path` is an executable regular file for us.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: the path is NUL-terminated.
    path.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

/// A kqueue: the supervisor's one place to wait for process events, signals and terminal input.
pub struct Kqueue(OwnedFd);

/// One event a kqueue reported.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub ident: usize,
    pub filter: i16,
}

impl Kqueue {
    pub fn new() -> io::Result<Self> {
        // SAFETY: kqueue(2) returns a new descriptor (not inherited across fork) or -1.
        let fd = check(unsafe { libc::kqueue() })?;
        // SAFETY: the descriptor was just created and is owned by nobody else.
        let kq = Kqueue(unsafe { owned(fd) });
        set_cloexec(kq.0.as_fd())?;
        Ok(kq)
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Adds (or changes) an event source, level-triggered: a descriptor with data left to read
    /// is reported again (the user's stdin is never made non-blocking, so it is read once per
    /// event).
    pub fn add(&self, ident: usize, filter: i16, fflags: u32) -> io::Result<()> {
        self.change(ident, filter, fflags, libc::EV_ADD)
    }

    /// Removes an event source; one already gone is not an error.
    pub fn remove(&self, ident: usize, filter: i16) {
        let _ = self.change(ident, filter, 0, libc::EV_DELETE);
    }

    fn change(&self, ident: usize, filter: i16, fflags: u32, flags: u16) -> io::Result<()> {
        let ev = libc::kevent { ident, filter, flags, fflags, data: 0, udata: std::ptr::null_mut() };
        // SAFETY: one change in, no events out.
        check(unsafe { libc::kevent(self.fd(), &ev, 1, std::ptr::null_mut(), 0, std::ptr::null()) }).map(drop)
    }

    /// Waits up to `timeout` (forever with None) for events.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> io::Result<Vec<Event>> {
        // SAFETY: kevent is plain data; the kernel fills the first `n` entries.
        let mut out: [libc::kevent; 16] = unsafe { std::mem::zeroed() };
        let ts = timeout
            .map(|t| libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as libc::c_long });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `out` has room for 16 events; `ts_ptr` is null or points to `ts`.
        let n = unsafe { libc::kevent(self.fd(), std::ptr::null(), 0, out.as_mut_ptr(), out.len() as c_int, ts_ptr) };
        if n < 0 {
            let e = last_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(Vec::new()) } else { Err(e) };
        }
        Ok(out[..n as usize].iter().map(|e| Event { ident: e.ident, filter: e.filter }).collect())
    }
}

/// The disposition of `sig` before it was changed.
pub struct SavedAction(c_int, libc::sigaction);

/// Ignores `sig`; a kqueue still sees each delivery (EVFILT_SIGNAL).
pub fn ignore_signal(sig: c_int) -> io::Result<SavedAction> {
    // SAFETY: sigaction is plain data; SIG_IGN needs no handler.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = libc::SIG_IGN;
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both structures are valid for the call.
    check(unsafe { libc::sigaction(sig, &new, &mut old) })?;
    Ok(SavedAction(sig, old))
}

pub fn restore_signal(saved: &SavedAction) {
    // SAFETY: the saved structure came from sigaction(2) itself.
    unsafe { libc::sigaction(saved.0, &saved.1, std::ptr::null_mut()) };
}
