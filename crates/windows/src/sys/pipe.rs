//! Pipes: the control channel between supervisor and runner, and anonymous pipes for a
//! terminal. The channel is two named pipes, one per direction: synchronous I/O on one file
//! object is serialized, so a read waiting on a duplex pipe would hold up every write through
//! it. Each pipe has one instance, takes local clients only, is open to the sandbox account and
//! the caller only, and checks that its client is the runner's process.

use super::security::SecurityAttributes;
use super::{last_error, last_os_error, owned, wide};
use crate::error::LaunchError;
use crate::sid::Sid;
use std::fs::File;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::{ERROR_PIPE_CONNECTED, HANDLE};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAGS_AND_ATTRIBUTES, FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_ACCESS_INBOUND, PIPE_ACCESS_OUTBOUND,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, CreatePipe, GetNamedPipeClientProcessId, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_WAIT,
};

/// GENERIC_READ | GENERIC_WRITE: what the runner may ask for on either pipe.
const PIPE_RW: u32 = 0x8000_0000 | 0x4000_0000;

/// The pipe the supervisor writes and the runner reads.
pub fn down_name(name: &str) -> String {
    format!(r"\\.\pipe\{name}-down")
}

/// The pipe the runner writes and the supervisor reads.
pub fn up_name(name: &str) -> String {
    format!(r"\\.\pipe\{name}-up")
}

fn create(
    path: &str,
    direction: FILE_FLAGS_AND_ATTRIBUTES,
    attrs: &SecurityAttributes,
) -> Result<OwnedHandle, LaunchError> {
    let path_w = wide(path);
    // SAFETY: NUL-terminated name; the attributes live through the call.
    let handle = unsafe {
        CreateNamedPipeW(
            path_w.as_ptr(),
            direction | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            64 * 1024,
            64 * 1024,
            0,
            &attrs.attrs,
        )
    };
    // SAFETY: just returned by the call, owned by nothing else.
    unsafe { owned(handle, "creating the runner's control pipe", "CreateNamedPipeW") }
}

fn accept_one(handle: &OwnedHandle, expected: u32) -> Result<(), LaunchError> {
    // SAFETY: a valid pipe handle, synchronous mode.
    let ok = unsafe { ConnectNamedPipe(handle.as_raw_handle(), std::ptr::null_mut()) };
    if ok == 0 && last_error() != ERROR_PIPE_CONNECTED {
        return Err(last_os_error("waiting for the runner", "ConnectNamedPipe"));
    }
    let mut pid = 0u32;
    // SAFETY: a connected pipe handle.
    if unsafe { GetNamedPipeClientProcessId(handle.as_raw_handle(), &mut pid) } == 0 {
        return Err(last_os_error("identifying the runner", "GetNamedPipeClientProcessId"));
    }
    if pid != expected {
        return Err(LaunchError::internal(format!(
            "process {pid}, not the runner ({expected}), connected to the control pipe"
        )));
    }
    Ok(())
}

/// The control pipes' server ends, before the runner connects.
pub struct ControlServer {
    down: OwnedHandle,
    up: OwnedHandle,
}

impl ControlServer {
    /// Creates the two pipes named after `name`, open to `me` and to `account`, nobody else.
    pub fn create(name: &str, me: &Sid, account: &Sid) -> Result<ControlServer, LaunchError> {
        let attrs = SecurityAttributes::private(crate::acl::mask::GENERIC_ALL, me, account, PIPE_RW);
        Ok(ControlServer {
            down: create(&down_name(name), PIPE_ACCESS_OUTBOUND, &attrs)?,
            up: create(&up_name(name), PIPE_ACCESS_INBOUND, &attrs)?,
        })
    }

    /// Waits for the client on both pipes and checks it is process `expected`; returns
    /// (the pipe to write, the pipe to read). Blocks: the caller ends the wait by connecting
    /// itself if the runner dies first.
    pub fn accept(self, expected: u32) -> Result<(File, File), LaunchError> {
        accept_one(&self.down, expected)?;
        accept_one(&self.up, expected)?;
        Ok((File::from(self.down), File::from(self.up)))
    }
}

/// The runner's ends: (the pipe to read, the pipe to write).
pub fn connect(name: &str) -> std::io::Result<(File, File)> {
    let down = std::fs::OpenOptions::new().read(true).open(down_name(name))?;
    let up = std::fs::OpenOptions::new().write(true).open(up_name(name))?;
    Ok((down, up))
}

/// Connects to both pipes and drops the connections, to end a blocked [`ControlServer::accept`].
pub fn poke(name: &str) {
    let _ = std::fs::OpenOptions::new().read(true).open(down_name(name));
    let _ = std::fs::OpenOptions::new().write(true).open(up_name(name));
}

/// An anonymous pipe: (read end, write end), neither inheritable.
pub fn anonymous() -> Result<(OwnedHandle, OwnedHandle), LaunchError> {
    let mut read: HANDLE = std::ptr::null_mut();
    let mut write: HANDLE = std::ptr::null_mut();
    // SAFETY: both out-pointers are valid; default security, not inheritable.
    if unsafe { CreatePipe(&mut read, &mut write, std::ptr::null(), 0) } == 0 {
        return Err(last_os_error("creating a pipe", "CreatePipe"));
    }
    // SAFETY: both ends were just returned by the call, owned by nothing else.
    let read = unsafe { owned(read, "creating a pipe", "CreatePipe") }?;
    // SAFETY: as above.
    let write = unsafe { owned(write, "creating a pipe", "CreatePipe") }?;
    Ok((read, write))
}
