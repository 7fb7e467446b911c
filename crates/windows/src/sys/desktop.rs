//! The private desktop: windows the command creates live there, out of reach of the user's
//! windows (window messages, hooks and input injection don't cross desktops). Also the clean-up
//! of the access the secondary logon service grants the runner's logon SID on the user's
//! own window station and desktop.

use super::security::{handle_dacl, set_handle_dacl, SecurityAttributes};
use super::{last_os_error, wide};
use crate::acl::Ace;
use crate::error::LaunchError;
use crate::sid::Sid;
use std::os::windows::io::BorrowedHandle;
use windows_sys::Win32::System::StationsAndDesktops::{
    CloseDesktop, CreateDesktopW, GetProcessWindowStation, GetUserObjectInformationW, OpenDesktopW, DESKTOP_CREATEMENU,
    DESKTOP_CREATEWINDOW, DESKTOP_ENUMERATE, DESKTOP_READOBJECTS, DESKTOP_READ_CONTROL, DESKTOP_SYNCHRONIZE,
    DESKTOP_WRITEOBJECTS, DESKTOP_WRITE_DAC, HDESK, UOI_NAME,
};
use windows_sys::Win32::System::StationsAndDesktops::{CloseWindowStation, OpenWindowStationW, HWINSTA};

/// Every desktop right.
const DESKTOP_ALL: u32 = 0x000F_01FF;
/// What the command gets on its desktop: windows and menus, but no hooks, journaling,
/// switching, or changes to the desktop's own protection.
pub const DESKTOP_SANDBOX: u32 = DESKTOP_READOBJECTS
    | DESKTOP_CREATEWINDOW
    | DESKTOP_CREATEMENU
    | DESKTOP_ENUMERATE
    | DESKTOP_WRITEOBJECTS
    | DESKTOP_READ_CONTROL
    | DESKTOP_SYNCHRONIZE;

/// A desktop this process opened or created; closed (and destroyed once unused) on drop.
struct DesktopHandle(HDESK);

// SAFETY: a desktop handle is a process-wide kernel handle, usable from any thread.
unsafe impl Send for DesktopHandle {}

impl DesktopHandle {
    fn borrow(&self) -> BorrowedHandle<'_> {
        // SAFETY: the handle stays open until `self` is dropped.
        unsafe { BorrowedHandle::borrow_raw(self.0) }
    }
}

impl Drop for DesktopHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateDesktopW or OpenDesktopW and is closed once.
        unsafe { CloseDesktop(self.0) };
    }
}

/// A desktop this process created; closed (and destroyed once unused) on drop.
pub struct Desktop {
    /// Held for its drop, which closes the desktop.
    _handle: DesktopHandle,
    /// `WinSta0\<name>`, for STARTUPINFO.lpDesktop.
    pub path: String,
}

impl Desktop {
    /// Creates desktop `name` in this process's window station, open to this user and, with
    /// [`DESKTOP_SANDBOX`], to `logon`.
    pub fn create(name: &str, me: &Sid, logon: &Sid) -> Result<Desktop, LaunchError> {
        let attrs = SecurityAttributes::private(DESKTOP_ALL, me, logon, DESKTOP_SANDBOX);
        let name_w = wide(name);
        // SAFETY: NUL-terminated name, no device or mode, attributes that outlive the call.
        let handle = unsafe {
            CreateDesktopW(name_w.as_ptr(), std::ptr::null(), std::ptr::null(), 0, DESKTOP_ALL, &attrs.attrs)
        };
        if handle.is_null() {
            return Err(last_os_error(format!("creating the private desktop {name}"), "CreateDesktopW"));
        }
        Ok(Desktop { _handle: DesktopHandle(handle), path: format!(r"{}\{name}", station_name()) })
    }

    /// The desktop's handle (for the tests, which change only desktops they made).
    #[cfg(test)]
    pub fn handle(&self) -> BorrowedHandle<'_> {
        self._handle.borrow()
    }
}

/// The name of this process's window station (`WinSta0` for a signed-in user).
pub fn station_name() -> String {
    // SAFETY: no arguments; the handle belongs to the process and is not closed.
    let station = unsafe { GetProcessWindowStation() };
    let mut buf = [0u16; 256];
    let mut needed = 0u32;
    // SAFETY: `buf` is 512 bytes, as passed; the name is NUL-terminated within it.
    let ok = unsafe {
        GetUserObjectInformationW(
            station,
            UOI_NAME,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(&buf) as u32,
            &mut needed,
        )
    };
    if ok == 0 {
        return "WinSta0".into();
    }
    crate::sys::os_string(&buf).to_string_lossy().into_owned()
}

/// This process's window station, opened to read and change its DACL; closed on drop.
struct Station(HWINSTA);

impl Station {
    fn open() -> Result<Station, LaunchError> {
        let name = wide(station_name());
        // SAFETY: NUL-terminated name; the handle is closed on drop.
        let station = unsafe { OpenWindowStationW(name.as_ptr(), 0, DESKTOP_READ_CONTROL | DESKTOP_WRITE_DAC) };
        if station.is_null() {
            return Err(last_os_error("opening the window station", "OpenWindowStationW"));
        }
        Ok(Station(station))
    }

    fn borrow(&self) -> BorrowedHandle<'_> {
        // SAFETY: the handle stays open until `self` is dropped.
        unsafe { BorrowedHandle::borrow_raw(self.0) }
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { CloseWindowStation(self.0) };
    }
}

/// What the run's logon SID gets on the window station: enough for a process to start and use
/// its desktop (enumerate, read attributes, global atoms), not the clipboard, creating
/// desktops, changing the station or logging off.
const STATION_SANDBOX: u32 = 0x0001 | 0x0002 | 0x0020 | 0x0100 | 0x0002_0000 | 0x0010_0000;

/// Grants the run's logon SID [`STATION_SANDBOX`] on this process's window station. The
/// secondary logon service grants the runner's logon access too, but not in a form this code
/// controls; with this entry the command's write-restricted token passes the check through
/// its logon SID either way. Removed at the end of the run by [`revoke_logon`].
pub fn grant_station(logon: &Sid) -> Result<(), LaunchError> {
    let station = Station::open()?;
    let (acl, protected) = handle_dacl(station.borrow(), true)?;
    let mut acl = acl.unwrap_or_default();
    if acl.add_explicit(Ace::Allow { flags: 0, mask: STATION_SANDBOX, sid: logon.clone() }) {
        set_handle_dacl(station.borrow(), true, &acl, protected)?;
    }
    Ok(())
}

/// Removes the entries the secondary logon service adds for the runner's logon: from the
/// `Default` desktop those naming its logon SID or the sandbox account (the user's desktop must
/// stay out of the command's reach), and, unless `keep_station` (the command needs the window
/// station while it runs), from the window station those naming the logon SID.
pub fn revoke_logon(logon: &Sid, account: &Sid, keep_station: bool) -> Result<(), LaunchError> {
    if !keep_station {
        let station = Station::open()?;
        strip_entries(station.borrow(), &[logon])?;
    }
    let name = wide("Default");
    // SAFETY: NUL-terminated name; the handle is closed on drop.
    let desk = unsafe { OpenDesktopW(name.as_ptr(), 0, 0, DESKTOP_READ_CONTROL | DESKTOP_WRITE_DAC) };
    if desk.is_null() {
        return Err(last_os_error("opening the Default desktop", "OpenDesktopW"));
    }
    let desk = DesktopHandle(desk);
    strip_entries(desk.borrow(), &[logon, account])
}

/// Removes the explicit entries naming any of `sids` from the DACL of a window station or
/// desktop (a handle with READ_CONTROL and WRITE_DAC).
pub fn strip_entries(handle: BorrowedHandle<'_>, sids: &[&Sid]) -> Result<(), LaunchError> {
    let (acl, protected) = handle_dacl(handle, true)?;
    if let Some(mut acl) = acl {
        if sids.iter().map(|s| acl.remove_explicit_for(s)).sum::<usize>() > 0 {
            set_handle_dacl(handle, true, &acl, protected)?;
        }
    }
    Ok(())
}
