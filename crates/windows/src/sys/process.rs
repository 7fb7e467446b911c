//! Processes: the runner (started as the sandbox account through the secondary logon
//! service), the command (started suspended from a restricted token with an explicit handle
//! list), handle duplication between them, waiting and exit codes.

use super::console::PseudoConsole;
use super::{last_error, last_os_error, nul_terminated, os_error, owned};
use crate::error::LaunchError;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::time::Duration;
use windows_sys::Win32::Foundation::{
    DuplicateHandle, SetHandleInformation, DUPLICATE_SAME_ACCESS, HANDLE, HANDLE_FLAG_INHERIT, WAIT_OBJECT_0,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Console::{
    GetConsoleMode, GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Threading::{
    CreateProcessAsUserW, CreateProcessW, CreateProcessWithLogonW, DeleteProcThreadAttributeList, GetCurrentProcess,
    GetExitCodeProcess, GetProcessId, InitializeProcThreadAttributeList, ResumeThread, TerminateProcess,
    UpdateProcThreadAttribute, WaitForMultipleObjects, CREATE_NO_WINDOW, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT,
    EXTENDED_STARTUPINFO_PRESENT, LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_INFORMATION, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
    PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE, STARTF_USESTDHANDLES, STARTUPINFOEXW, STARTUPINFOW,
};

/// A process this code started, and its main thread.
pub struct Started {
    pub process: OwnedHandle,
    pub thread: OwnedHandle,
    pub pid: u32,
}

/// Takes ownership of the process and thread a CreateProcess* call started.
///
/// # Safety
/// `info` must be what a successful CreateProcess* call just filled in: handles that nothing
/// else owns.
unsafe fn started(info: &PROCESS_INFORMATION) -> Started {
    // SAFETY: the caller promises a new process handle that nothing else owns.
    let process = unsafe { OwnedHandle::from_raw_handle(info.hProcess) };
    // SAFETY: the same for the thread handle.
    let thread = unsafe { OwnedHandle::from_raw_handle(info.hThread) };
    Started { process, thread, pid: info.dwProcessId }
}

/// A PROC_THREAD_ATTRIBUTE_LIST holding an explicit handle list and, for a terminal, a
/// pseudoconsole. The values it points to live in the struct, and what they name is borrowed
/// for `'a`, which outlasts the CreateProcess call.
struct Attributes<'a> {
    storage: Vec<u64>,
    /// The handles to inherit. `BorrowedHandle` has the layout of a HANDLE, so this is the
    /// HANDLE array the attribute takes.
    handles: Box<[BorrowedHandle<'a>]>,
    console: Box<isize>,
    _console: std::marker::PhantomData<&'a PseudoConsole>,
}

impl<'a> Attributes<'a> {
    fn new(
        handles: impl IntoIterator<Item = BorrowedHandle<'a>>,
        pseudoconsole: Option<&'a PseudoConsole>,
    ) -> Result<Attributes<'a>, LaunchError> {
        let mut unique: Vec<BorrowedHandle<'a>> = Vec::new();
        for h in handles {
            let raw = h.as_raw_handle();
            if !raw.is_null() && !unique.iter().any(|u| u.as_raw_handle() == raw) {
                unique.push(h);
            }
        }
        let count = (!unique.is_empty()) as u32 + pseudoconsole.is_some() as u32;
        let mut size = 0usize;
        // SAFETY: a size query with a null list.
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), count.max(1), 0, &mut size) };
        let mut attrs = Attributes {
            storage: vec![0u64; size.div_ceil(8).max(1)],
            handles: unique.into_boxed_slice(),
            console: Box::new(pseudoconsole.map_or(0, PseudoConsole::raw)),
            _console: std::marker::PhantomData,
        };
        // SAFETY: the storage has the size the query asked for.
        if unsafe { InitializeProcThreadAttributeList(attrs.list(), count.max(1), 0, &mut size) } == 0 {
            return Err(last_os_error("preparing the command's attributes", "InitializeProcThreadAttributeList"));
        }
        if !attrs.handles.is_empty() {
            let (value, size) = (attrs.handles.as_ptr().cast(), std::mem::size_of_val(&*attrs.handles));
            // SAFETY: an array of HANDLEs that lives in `attrs` as long as the list does, each
            // borrowed for as long as `attrs` lives.
            unsafe { attrs.update(PROC_THREAD_ATTRIBUTE_HANDLE_LIST, value, size, "listing the command's handles") }?;
        }
        if pseudoconsole.is_some() {
            let (value, size) = (*attrs.console as *const std::ffi::c_void, std::mem::size_of::<isize>());
            // SAFETY: the attribute takes the HPCON value itself (not a pointer to it), as the
            // ConPTY documentation shows; the pseudoconsole is borrowed for as long as `attrs`.
            unsafe { attrs.update(PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE, value, size, "attaching the terminal") }?;
        }
        Ok(attrs)
    }

    /// Sets one attribute of the (initialized) list.
    ///
    /// # Safety
    /// `value` and `size` must be what `attribute` takes, and what `value` points to must stay
    /// valid as long as the list is in use.
    unsafe fn update(
        &mut self,
        attribute: u32,
        value: *const std::ffi::c_void,
        size: usize,
        what: &str,
    ) -> Result<(), LaunchError> {
        // SAFETY: the list was initialized in `new`; the caller vouches for the value.
        let ok = unsafe {
            UpdateProcThreadAttribute(
                self.list(),
                0,
                attribute as usize,
                value,
                size,
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        if ok == 0 {
            return Err(last_os_error(what, "UpdateProcThreadAttribute"));
        }
        Ok(())
    }

    fn list(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.storage.as_mut_ptr().cast()
    }

    fn inherits(&self) -> bool {
        !self.handles.is_empty()
    }
}

impl Drop for Attributes<'_> {
    fn drop(&mut self) {
        // SAFETY: the list was initialized in `new` (a failed init leaves zeroed storage, which
        // the call tolerates as an empty list).
        unsafe { DeleteProcThreadAttributeList(self.list()) };
    }
}

/// Marks a handle inheritable or not.
pub fn set_inheritable(handle: BorrowedHandle<'_>, inherit: bool) -> Result<(), LaunchError> {
    // SAFETY: a borrowed, so open, handle.
    if unsafe { SetHandleInformation(handle.as_raw_handle(), HANDLE_FLAG_INHERIT, inherit as u32) } == 0 {
        return Err(last_os_error("marking a handle inheritable", "SetHandleInformation"));
    }
    Ok(())
}

/// What to start and how.
pub struct Launch<'a> {
    pub application: &'a [u16],
    pub command_line: &'a [u16],
    /// A double-NUL-terminated UTF-16 environment block (refused otherwise).
    pub env_block: &'a [u16],
    pub cwd: &'a [u16],
    /// `WinSta0\<desktop>`, or None for the caller's.
    pub desktop: Option<&'a [u16]>,
    /// Standard input, output and error (None: none); inherited through the explicit handle
    /// list.
    pub stdio: Option<[Option<BorrowedHandle<'a>>; 3]>,
    pub pseudoconsole: Option<&'a PseudoConsole>,
}

/// ERROR_INVALID_PARAMETER.
const INVALID_PARAMETER: u32 = 87;

/// Whether `block` ends as an environment block must: an empty string, then the end. Windows
/// reads it up to there, so anything else would be read past its end.
fn is_env_block(block: &[u16]) -> bool {
    block.ends_with(&[0, 0])
}

/// Starts a process suspended, from `token` (None: this process's own token), inheriting only
/// the handles in `stdio`. Returns the Win32 error on failure, for the caller to explain.
pub fn create_suspended(token: Option<&OwnedHandle>, launch: &Launch<'_>) -> Result<Started, u32> {
    if !is_env_block(launch.env_block) {
        return Err(INVALID_PARAMETER);
    }
    let stdio = launch.stdio.unwrap_or_default();
    let mut attrs = Attributes::new(stdio.into_iter().flatten(), launch.pseudoconsole).map_err(|_| last_error())?;
    for h in attrs.handles.iter() {
        set_inheritable(*h, true).map_err(|_| last_error())?;
    }
    let mut desktop = launch.desktop.map(nul_terminated);
    let mut si = STARTUPINFOEXW {
        StartupInfo: STARTUPINFOW { cb: std::mem::size_of::<STARTUPINFOEXW>() as u32, ..Default::default() },
        lpAttributeList: attrs.list(),
    };
    if let Some(d) = desktop.as_mut() {
        si.StartupInfo.lpDesktop = d.as_mut_ptr();
    }
    if launch.stdio.is_some() && launch.pseudoconsole.is_none() {
        let raw = |h: Option<BorrowedHandle<'_>>| h.map_or(std::ptr::null_mut(), |h| h.as_raw_handle());
        si.StartupInfo.dwFlags |= STARTF_USESTDHANDLES;
        si.StartupInfo.hStdInput = raw(stdio[0]);
        si.StartupInfo.hStdOutput = raw(stdio[1]);
        si.StartupInfo.hStdError = raw(stdio[2]);
    }
    let mut flags = CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
    if launch.pseudoconsole.is_none() {
        // A console program gets a console of its own that nobody sees, not the caller's.
        flags |= CREATE_NO_WINDOW;
    }
    let application = nul_terminated(launch.application);
    let mut command_line = nul_terminated(launch.command_line);
    let cwd = nul_terminated(launch.cwd);
    let mut info = PROCESS_INFORMATION::default();
    let inherit = attrs.inherits() as i32;
    let (app, line, env, dir) =
        (application.as_ptr(), command_line.as_mut_ptr(), launch.env_block.as_ptr().cast(), cwd.as_ptr());
    let (no_attrs, startup) = (std::ptr::null(), &si.StartupInfo);
    let ok = match token.map(|t| t.as_raw_handle()) {
        // SAFETY: an open token; every pointer refers to a NUL-terminated buffer (the
        // environment: double-NUL-terminated, checked above) or structure that lives until the
        // call returns; the command line buffer is writable, as the call requires.
        Some(t) => unsafe {
            CreateProcessAsUserW(t, app, line, no_attrs, no_attrs, inherit, flags, env, dir, startup, &mut info)
        },
        // SAFETY: as above.
        None => unsafe { CreateProcessW(app, line, no_attrs, no_attrs, inherit, flags, env, dir, startup, &mut info) },
    };
    let err = last_error();
    for h in attrs.handles.iter() {
        let _ = set_inheritable(*h, false);
    }
    if ok == 0 {
        return Err(err);
    }
    // SAFETY: the call succeeded and filled `info` with new handles.
    Ok(unsafe { started(&info) })
}

/// Starts `application` as another local account through the secondary logon service, with
/// `std` as its standard handles (made inheritable only for the call). The account's profile
/// (its registry hive, for HKEY_CURRENT_USER) is loaded for it.
pub fn create_with_logon(
    user: &str,
    password: &str,
    application: &[u16],
    command_line: &[u16],
    env_block: &[u16],
    cwd: &[u16],
    std: [BorrowedHandle<'_>; 3],
) -> Result<Started, LaunchError> {
    if !is_env_block(env_block) {
        return Err(LaunchError::internal("starting the runner: its environment block is not terminated"));
    }
    let inherited = || std.into_iter().filter(|h| !h.as_raw_handle().is_null());
    let user_w = super::wide(user);
    let domain_w = super::wide(".");
    let mut password_w = super::wide(password);
    let application = nul_terminated(application);
    let mut command_line = nul_terminated(command_line);
    let cwd = nul_terminated(cwd);
    for h in inherited() {
        set_inheritable(h, true)?;
    }
    let si = STARTUPINFOW {
        cb: std::mem::size_of::<STARTUPINFOW>() as u32,
        dwFlags: STARTF_USESTDHANDLES,
        hStdInput: std[0].as_raw_handle(),
        hStdOutput: std[1].as_raw_handle(),
        hStdError: std[2].as_raw_handle(),
        ..Default::default()
    };
    let mut info = PROCESS_INFORMATION::default();
    // SAFETY: NUL-terminated strings and structures that outlive the call; the command line is
    // writable.
    let ok = unsafe {
        CreateProcessWithLogonW(
            user_w.as_ptr(),
            domain_w.as_ptr(),
            password_w.as_ptr(),
            windows_sys::Win32::System::Threading::LOGON_WITH_PROFILE,
            application.as_ptr(),
            command_line.as_mut_ptr(),
            CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW,
            env_block.as_ptr().cast(),
            cwd.as_ptr(),
            &si,
            &mut info,
        )
    };
    let err = last_error();
    password_w.iter_mut().for_each(|c| *c = 0);
    for h in inherited() {
        let _ = set_inheritable(h, false);
    }
    if ok == 0 {
        return Err(logon_error(err));
    }
    // SAFETY: the call succeeded and filled `info` with new handles.
    Ok(unsafe { started(&info) })
}

/// The error for a failed CreateProcessWithLogonW, with the remedy where one is known.
fn logon_error(err: u32) -> LaunchError {
    let remedy = match err {
        1326 | 1327 | 1330 | 1331 | 1909 => {
            Some(format!("the sandbox account's password or status changed; {}", crate::error::SETUP_REMEDY))
        }
        1058 => Some("start the Secondary Logon service (seclogon): `sc config seclogon start= demand`".into()),
        1385 => Some(format!("the account may not log on locally; {}", crate::error::SETUP_REMEDY)),
        _ => None,
    };
    let mut e = os_error("starting the runner as the sandbox account", "CreateProcessWithLogonW", err);
    if remedy.is_some() {
        e.kind = crate::error::ErrorKind::Unsupported;
        e.remedy = remedy;
    }
    e
}

/// Duplicates `handle` (ours) into `target`; returns its value there.
pub fn duplicate_into(
    target: &OwnedHandle,
    handle: BorrowedHandle<'_>,
    access: Option<u32>,
) -> Result<u64, LaunchError> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: our pseudo process handle and the borrowed handles are valid; `out` is a value in
    // the target's table, never used here.
    let ok = unsafe {
        DuplicateHandle(
            current_process().as_raw_handle(),
            handle.as_raw_handle(),
            target.as_raw_handle(),
            &mut out,
            access.unwrap_or(0),
            0,
            if access.is_none() { DUPLICATE_SAME_ACCESS } else { 0 },
        )
    };
    if ok == 0 {
        return Err(last_os_error("passing a handle to the runner", "DuplicateHandle"));
    }
    Ok(out as u64)
}

/// Duplicates a handle value of `source` into this process (same access).
pub fn duplicate_from(source: &OwnedHandle, value: u64) -> Result<OwnedHandle, LaunchError> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: the source process handle has PROCESS_DUP_HANDLE and `value` is looked up in its
    // table, not ours; `out` receives a new handle.
    let ok = unsafe {
        DuplicateHandle(
            source.as_raw_handle(),
            value as HANDLE,
            current_process().as_raw_handle(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(last_os_error("taking the command's handles from the runner", "DuplicateHandle"));
    }
    // SAFETY: the call just made `out`, a handle nothing else owns.
    unsafe { owned(out, "taking the command's handles from the runner", "DuplicateHandle") }
}

/// Adopts a handle value that was duplicated into this process by another.
///
/// # Safety
/// `value` must be a handle of this process that nothing else owns.
pub unsafe fn adopt(value: u64) -> OwnedHandle {
    // SAFETY: the caller promises sole ownership of a valid handle.
    unsafe { OwnedHandle::from_raw_handle(value as HANDLE) }
}

/// Resumes a suspended thread.
pub fn resume(thread: &OwnedHandle) -> Result<(), LaunchError> {
    // SAFETY: the handle has THREAD_SUSPEND_RESUME.
    if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
        return Err(last_os_error("starting the command", "ResumeThread"));
    }
    Ok(())
}

/// Waits for any of `handles`; Some(index) of the one signalled, None on timeout.
pub fn wait_any(handles: &[BorrowedHandle<'_>], timeout: Option<Duration>) -> Result<Option<usize>, LaunchError> {
    let ms = timeout.map(|t| t.as_millis().min(u32::MAX as u128 - 1) as u32).unwrap_or(u32::MAX);
    // SAFETY: `BorrowedHandle` has the layout of a HANDLE, so this is an array of `len` open
    // handles (they are borrowed); the call only reads it.
    let r = unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr().cast::<HANDLE>(), 0, ms) };
    if r == WAIT_TIMEOUT {
        return Ok(None);
    }
    if (WAIT_OBJECT_0..WAIT_OBJECT_0 + handles.len() as u32).contains(&r) {
        return Ok(Some((r - WAIT_OBJECT_0) as usize));
    }
    Err(last_os_error("waiting for the command", "WaitForMultipleObjects"))
}

/// A process's exit code (259, STILL_ACTIVE, while it runs).
pub fn exit_code(process: &OwnedHandle) -> Result<u32, LaunchError> {
    let mut code = 0u32;
    // SAFETY: the handle has PROCESS_QUERY_LIMITED_INFORMATION.
    if unsafe { GetExitCodeProcess(process.as_raw_handle(), &mut code) } == 0 {
        return Err(last_os_error("reading the command's exit code", "GetExitCodeProcess"));
    }
    Ok(code)
}

/// A process's id.
pub fn pid(process: &OwnedHandle) -> u32 {
    // SAFETY: the handle is valid.
    unsafe { GetProcessId(process.as_raw_handle()) }
}

/// One of this process's standard handles (0, 1, 2), or None if it has none.
pub fn std_handle(index: usize) -> Option<BorrowedHandle<'static>> {
    let which = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE][index];
    // SAFETY: no arguments beyond the selector.
    let h = unsafe { GetStdHandle(which) };
    if h.is_null() || h == windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: a standard handle stays open for the life of the process: nothing in ringfence
    // closes or replaces its own (std's `Stdin`, `Stdout` and `Stderr` lend theirs on the same
    // grounds).
    Some(unsafe { BorrowedHandle::borrow_raw(h) })
}

/// Whether a handle is a console.
pub fn is_console(handle: BorrowedHandle<'_>) -> bool {
    let mut mode = 0;
    // SAFETY: a borrowed handle and a valid out-pointer; the call fails for non-console handles.
    unsafe { GetConsoleMode(handle.as_raw_handle(), &mut mode) != 0 }
}

/// Ends a process (the runner, or a command that could not be put in its job).
pub fn terminate(process: &OwnedHandle, code: u32) {
    // SAFETY: the handle has PROCESS_TERMINATE; failure (already gone) is harmless.
    unsafe { TerminateProcess(process.as_raw_handle(), code) };
}

/// Cancels a thread's blocking read (the terminal relay's read of our console).
pub fn cancel_io(thread: BorrowedHandle<'_>) {
    // SAFETY: a borrowed thread handle; nothing to cancel is not an error that matters.
    unsafe { windows_sys::Win32::System::IO::CancelSynchronousIo(thread.as_raw_handle()) };
}

/// This process's pseudo handle.
pub fn current_process() -> BorrowedHandle<'static> {
    // SAFETY: no arguments.
    let handle = unsafe { GetCurrentProcess() };
    // SAFETY: the pseudo handle always names this process and needs no closing (it is the -1
    // that `BorrowedHandle` documents as a valid value).
    unsafe { BorrowedHandle::borrow_raw(handle) }
}

/// The calling thread's pseudo handle: it names whichever thread uses it.
pub fn current_thread() -> BorrowedHandle<'static> {
    // SAFETY: no arguments.
    let handle = unsafe { windows_sys::Win32::System::Threading::GetCurrentThread() };
    // SAFETY: the pseudo handle is always valid and needs no closing.
    unsafe { BorrowedHandle::borrow_raw(handle) }
}
