//! Thin wrappers over the Win32 calls the backend makes. Every `unsafe` block of the crate is
//! here (but the runner's adoption of the handles the supervisor passes it), one call or
//! dereference each, in a small function with a `SAFETY:` comment. A wrapper takes borrowed or
//! owned handles, never raw ones, so everything above this module is safe Rust.

pub mod account;
pub mod console;
pub mod desktop;
pub mod fs;
pub mod job;
pub mod pipe;
pub mod process;
pub mod security;
#[cfg(test)]
mod tests;
pub mod wfp;

use crate::error::LaunchError;
use std::ffi::{OsStr, OsString};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::{GetLastError, HANDLE, INVALID_HANDLE_VALUE};

/// A NUL-terminated UTF-16 copy of `s`.
pub fn wide(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(std::iter::once(0)).collect()
}

/// `s` as UTF-16 without a terminator.
pub fn units(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().collect()
}

/// A NUL-terminated copy of UTF-16 units.
pub fn nul_terminated(units: &[u16]) -> Vec<u16> {
    let mut out = units.to_vec();
    if out.last() != Some(&0) {
        out.push(0);
    }
    out
}

/// UTF-16 units back to an OsString (lossless).
pub fn os_string(units: &[u16]) -> OsString {
    let end = units.iter().position(|&c| c == 0).unwrap_or(units.len());
    OsString::from_wide(&units[..end])
}

/// The calling thread's last Win32 error.
pub fn last_error() -> u32 {
    // SAFETY: GetLastError only reads thread-local state.
    unsafe { GetLastError() }
}

/// The system's message for a Win32 error code.
pub fn message(code: u32) -> String {
    let text = std::io::Error::from_raw_os_error(code as i32).to_string();
    text.trim_end_matches(['\r', '\n', '.']).to_string()
}

/// An internal error for a failed call: what was done, the call, the code and its message.
pub fn os_error(what: impl std::fmt::Display, call: &str, code: u32) -> LaunchError {
    LaunchError::internal(format!("{what}: {call} failed with error {code} ({})", message(code)))
}

/// Wraps the last error of a failed `call`.
pub fn last_os_error(what: impl std::fmt::Display, call: &str) -> LaunchError {
    os_error(what, call, last_error())
}

/// Takes ownership of a handle a call returned, or reports the call's error. Null and
/// INVALID_HANDLE_VALUE both count as failure (calls differ in which they return).
///
/// # Safety
/// `handle` must be what the call just returned: a failure value, or a new handle that nothing
/// else owns or closes.
pub unsafe fn owned(handle: HANDLE, what: impl std::fmt::Display, call: &str) -> Result<OwnedHandle, LaunchError> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Err(last_os_error(what, call));
    }
    // SAFETY: the caller promises a new handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// Copies bytes into 8-byte-aligned storage: ACLs, SIDs and security descriptors passed to
/// the API must be at least DWORD-aligned, which a `Vec<u8>` does not promise.
pub struct Aligned(Vec<u64>);

impl Aligned {
    pub fn new(bytes: &[u8]) -> Aligned {
        let mut words = vec![0u64; bytes.len().div_ceil(8).max(1)];
        // SAFETY: `words` has at least `bytes.len()` bytes of storage; u64 has no invalid bit
        // patterns and the regions don't overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast::<u8>(), bytes.len()) };
        Aligned(words)
    }

    pub fn ptr<T>(&self) -> *mut T {
        self.0.as_ptr() as *mut T
    }
}

/// Copies `len` bytes from memory the system allocated.
///
/// # Safety
/// `ptr` must be valid for reading `len` bytes.
pub unsafe fn copy_bytes(ptr: *const u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller promises `ptr` is readable for `len` bytes.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

/// Frees memory the system allocated with LocalAlloc.
///
/// # Safety
/// `ptr` must be null or returned by a call documented to LocalAlloc it, and not be used or
/// freed again afterwards.
pub unsafe fn local_free<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: the caller promises memory LocalAlloc'ed by the system, freed once.
        unsafe { windows_sys::Win32::Foundation::LocalFree(ptr.cast()) };
    }
}

/// The number of logical processors in all groups.
pub fn logical_cpus() -> u32 {
    // SAFETY: no arguments beyond the group selector; ALL_PROCESSOR_GROUPS counts every group.
    unsafe { windows_sys::Win32::System::Threading::GetActiveProcessorCount(0xFFFF) }
}

/// This process's id.
pub fn current_pid() -> u32 {
    // SAFETY: no arguments.
    unsafe { windows_sys::Win32::System::Threading::GetCurrentProcessId() }
}

/// A function of a system DLL looked up at run time, for the few calls Wine (where the unit
/// tests run) lacks: an import it lacks would keep the whole program from loading there.
///
/// # Safety
/// `F` must be the `unsafe extern "system" fn` type of the function's documented signature.
pub unsafe fn system_function<F: Copy>(dll: &str, name: &std::ffi::CStr) -> Option<F> {
    use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryExW, LOAD_LIBRARY_SEARCH_SYSTEM32};
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>(), "F must be a function pointer") };
    let dll_w = wide(dll);
    // SAFETY: a NUL-terminated name, loaded from the system folder only; the module stays
    // loaded for the life of the process (never freed).
    let module = unsafe { LoadLibraryExW(dll_w.as_ptr(), std::ptr::null_mut(), LOAD_LIBRARY_SEARCH_SYSTEM32) };
    if module.is_null() {
        return None;
    }
    // SAFETY: a loaded module and a NUL-terminated name.
    let address = unsafe { GetProcAddress(module, name.as_ptr().cast()) }?;
    // SAFETY: `F` is a function pointer type of the same size (checked above), and the caller
    // promises it is the function's signature.
    Some(unsafe { std::mem::transmute_copy::<unsafe extern "system" fn() -> isize, F>(&address) })
}
