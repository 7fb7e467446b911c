//! Processes: the runner (started as the sandbox account through the secondary logon
//! service), the command (started suspended from a restricted token with an explicit handle
//! list), handle duplication between them, waiting and exit codes.

use super::{last_error, last_os_error, nul_terminated, os_error, owned};
use crate::error::LaunchError;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
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

fn started(info: &PROCESS_INFORMATION) -> Started {
    // SAFETY: both handles were just returned by a successful CreateProcess* call and are owned
    // by nobody else.
    unsafe {
        Started {
            process: OwnedHandle::from_raw_handle(info.hProcess),
            thread: OwnedHandle::from_raw_handle(info.hThread),
            pid: info.dwProcessId,
        }
    }
}

/// A PROC_THREAD_ATTRIBUTE_LIST holding an explicit handle list and, for a terminal, a
/// pseudoconsole. The values it points to live in the struct, which must outlive the
/// CreateProcess call.
pub struct Attributes {
    storage: Vec<u64>,
    handles: Box<[HANDLE]>,
    console: Box<isize>,
}

impl Attributes {
    pub fn new(handles: &[HANDLE], pseudoconsole: Option<isize>) -> Result<Attributes, LaunchError> {
        let mut unique: Vec<HANDLE> = Vec::new();
        for h in handles {
            if !h.is_null() && !unique.contains(h) {
                unique.push(*h);
            }
        }
        let count = (!unique.is_empty()) as u32 + pseudoconsole.is_some() as u32;
        let mut size = 0usize;
        // SAFETY: a size query with a null list.
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), count.max(1), 0, &mut size) };
        let mut attrs = Attributes {
            storage: vec![0u64; size.div_ceil(8).max(1)],
            handles: unique.into_boxed_slice(),
            console: Box::new(pseudoconsole.unwrap_or(0)),
        };
        // SAFETY: the storage has the size the query asked for.
        if unsafe { InitializeProcThreadAttributeList(attrs.list(), count.max(1), 0, &mut size) } == 0 {
            return Err(last_os_error("preparing the command's attributes", "InitializeProcThreadAttributeList"));
        }
        if !attrs.handles.is_empty() {
            let (value, size) = (attrs.handles.as_ptr().cast(), std::mem::size_of_val(&*attrs.handles));
            // SAFETY: the handle array lives in `attrs` as long as the list does.
            unsafe { attrs.update(PROC_THREAD_ATTRIBUTE_HANDLE_LIST, value, size, "listing the command's handles") }?;
        }
        if pseudoconsole.is_some() {
            let (value, size) = (*attrs.console as *const std::ffi::c_void, std::mem::size_of::<isize>());
            // SAFETY: the attribute takes the HPCON value itself (not a pointer to it), as the
            // ConPTY documentation shows.
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

    pub fn inherits(&self) -> bool {
        !self.handles.is_empty()
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: the list was initialized in `new` (a failed init leaves zeroed storage, which
        // the call tolerates as an empty list).
        unsafe { DeleteProcThreadAttributeList(self.list()) };
    }
}

/// Marks a handle inheritable or not.
pub fn set_inheritable(handle: HANDLE, inherit: bool) -> Result<(), LaunchError> {
    // SAFETY: the caller holds the handle open.
    if unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, inherit as u32) } == 0 {
        return Err(last_os_error("marking a handle inheritable", "SetHandleInformation"));
    }
    Ok(())
}

/// What to start and how.
pub struct Launch<'a> {
    pub application: &'a [u16],
    pub command_line: &'a [u16],
    /// A double-NUL-terminated UTF-16 environment block.
    pub env_block: &'a [u16],
    pub cwd: &'a [u16],
    /// `WinSta0\<desktop>`, or None for the caller's.
    pub desktop: Option<&'a [u16]>,
    /// Standard input, output and error; inherited through the explicit handle list.
    pub stdio: Option<[HANDLE; 3]>,
    pub pseudoconsole: Option<isize>,
}

/// Starts a process suspended, from `token` (None: this process's own token), inheriting only
/// the handles in `stdio`. Returns the Win32 error on failure, for the caller to explain.
pub fn create_suspended(token: Option<&OwnedHandle>, launch: &Launch<'_>) -> Result<Started, u32> {
    let stdio = launch.stdio.unwrap_or([std::ptr::null_mut(); 3]);
    let mut attrs = Attributes::new(&stdio, launch.pseudoconsole).map_err(|_| last_error())?;
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
        si.StartupInfo.dwFlags |= STARTF_USESTDHANDLES;
        si.StartupInfo.hStdInput = stdio[0];
        si.StartupInfo.hStdOutput = stdio[1];
        si.StartupInfo.hStdError = stdio[2];
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
    // SAFETY: every pointer refers to a NUL-terminated buffer or structure that lives until the
    // call returns; the command line buffer is writable, as the call requires.
    let ok = unsafe {
        match token.map(|t| t.as_raw_handle()) {
            Some(t) => {
                CreateProcessAsUserW(t, app, line, no_attrs, no_attrs, inherit, flags, env, dir, startup, &mut info)
            }
            None => CreateProcessW(app, line, no_attrs, no_attrs, inherit, flags, env, dir, startup, &mut info),
        }
    };
    let err = last_error();
    for h in attrs.handles.iter() {
        let _ = set_inheritable(*h, false);
    }
    if ok == 0 {
        return Err(err);
    }
    Ok(started(&info))
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
    std: [HANDLE; 3],
) -> Result<Started, LaunchError> {
    let user_w = super::wide(user);
    let domain_w = super::wide(".");
    let mut password_w = super::wide(password);
    let application = nul_terminated(application);
    let mut command_line = nul_terminated(command_line);
    let cwd = nul_terminated(cwd);
    for h in std.iter().filter(|h| !h.is_null()) {
        set_inheritable(*h, true)?;
    }
    let si = STARTUPINFOW {
        cb: std::mem::size_of::<STARTUPINFOW>() as u32,
        dwFlags: STARTF_USESTDHANDLES,
        hStdInput: std[0],
        hStdOutput: std[1],
        hStdError: std[2],
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
    for h in std.iter().filter(|h| !h.is_null()) {
        let _ = set_inheritable(*h, false);
    }
    if ok == 0 {
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
        return Err(e);
    }
    Ok(started(&info))
}

/// Duplicates `handle` (ours) into `target`; returns its value there.
pub fn duplicate_into(target: &OwnedHandle, handle: HANDLE, access: Option<u32>) -> Result<u64, LaunchError> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: our pseudo process handle and the caller's handles are valid; `out` is a value in
    // the target's table, never used here.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            handle,
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
    // SAFETY: the source process handle has PROCESS_DUP_HANDLE; `out` receives a new handle.
    let ok = unsafe {
        DuplicateHandle(
            source.as_raw_handle(),
            value as HANDLE,
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(last_os_error("taking the command's handles from the runner", "DuplicateHandle"));
    }
    owned(out, "taking the command's handles from the runner", "DuplicateHandle")
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
pub fn wait_any(handles: &[HANDLE], timeout: Option<Duration>) -> Result<Option<usize>, LaunchError> {
    let ms = timeout.map(|t| t.as_millis().min(u32::MAX as u128 - 1) as u32).unwrap_or(u32::MAX);
    // SAFETY: every handle is valid and has SYNCHRONIZE.
    let r = unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, ms) };
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
pub fn std_handle(index: usize) -> Option<HANDLE> {
    let which = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE][index];
    // SAFETY: no arguments beyond the selector.
    let h = unsafe { GetStdHandle(which) };
    (!h.is_null() && h != windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE).then_some(h)
}

/// Whether a handle is a console.
pub fn is_console(handle: HANDLE) -> bool {
    let mut mode = 0;
    // SAFETY: any handle value is acceptable; the call fails for non-console handles.
    unsafe { GetConsoleMode(handle, &mut mode) != 0 }
}

/// Ends a process (the runner, or a command that could not be put in its job).
pub fn terminate(process: &OwnedHandle, code: u32) {
    // SAFETY: the handle has PROCESS_TERMINATE; failure (already gone) is harmless.
    unsafe { TerminateProcess(process.as_raw_handle(), code) };
}

/// Cancels a thread's blocking read (the terminal relay's read of our console).
pub fn cancel_io(thread: HANDLE) {
    // SAFETY: the thread handle is valid; nothing to cancel is not an error that matters.
    unsafe { windows_sys::Win32::System::IO::CancelSynchronousIo(thread) };
}

/// This process's pseudo handle.
pub fn current_process() -> HANDLE {
    // SAFETY: no arguments; the pseudo handle needs no closing.
    unsafe { GetCurrentProcess() }
}

/// This thread's pseudo handle.
pub fn current_thread() -> HANDLE {
    // SAFETY: no arguments; the pseudo handle needs no closing.
    unsafe { windows_sys::Win32::System::Threading::GetCurrentThread() }
}
