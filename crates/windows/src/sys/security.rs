//! SIDs, tokens and security descriptors: reading and writing DACLs on files and kernel
//! objects, the restricted token of the sandboxed command, and the account lookups.

use super::process::current_process;
use super::{copy_bytes, last_os_error, local_free, os_error, owned, wide, Aligned};
use crate::acl::{Ace, Acl, SecurityDescriptor};
use crate::error::LaunchError;
use crate::sid::{well_known, Sid};
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle};
use std::path::Path;
use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    GetNamedSecurityInfoW, GetSecurityInfo, SetNamedSecurityInfoW, SetSecurityInfo, SE_FILE_OBJECT, SE_KERNEL_OBJECT,
    SE_OBJECT_TYPE, SE_WINDOW_OBJECT,
};
use windows_sys::Win32::Security::{
    CreateRestrictedToken, GetLengthSid, GetSecurityDescriptorLength, GetTokenInformation, LookupAccountNameW,
    SetTokenInformation, TokenDefaultDacl, TokenElevation, TokenGroups, TokenUser, ACL, DACL_SECURITY_INFORMATION,
    DISABLE_MAX_PRIVILEGE, OBJECT_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, SID_AND_ATTRIBUTES,
    SID_NAME_USE, TOKEN_ACCESS_MASK, TOKEN_ADJUST_DEFAULT, TOKEN_ASSIGN_PRIMARY, TOKEN_DEFAULT_DACL, TOKEN_DUPLICATE,
    TOKEN_ELEVATION, TOKEN_GROUPS, TOKEN_INFORMATION_CLASS, TOKEN_QUERY, TOKEN_USER,
    UNPROTECTED_DACL_SECURITY_INFORMATION, WRITE_RESTRICTED,
};
use windows_sys::Win32::System::Threading::OpenProcessToken;

/// SE_GROUP_LOGON_ID: the group that identifies a token's logon.
const SE_GROUP_LOGON_ID: u32 = 0xC000_0000;

/// Reads a SID the system handed out.
///
/// # Safety
/// `psid` must point to a valid SID.
unsafe fn sid_at(psid: PSID) -> Result<Sid, LaunchError> {
    // SAFETY: the caller promises a valid SID; GetLengthSid reads its header.
    let len = unsafe { GetLengthSid(psid) } as usize;
    // SAFETY: a valid SID is readable for its own length.
    let bytes = unsafe { copy_bytes(psid as *const u8, len) };
    Sid::from_bytes(&bytes).map(|(s, _)| s).map_err(LaunchError::internal)
}

/// Opens this process's token with `access`.
pub fn own_token(access: TOKEN_ACCESS_MASK) -> Result<OwnedHandle, LaunchError> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: this process's pseudo handle; `token` receives a new handle.
    if unsafe { OpenProcessToken(current_process().as_raw_handle(), access, &mut token) } == 0 {
        return Err(last_os_error("opening this process's token", "OpenProcessToken"));
    }
    // SAFETY: just returned by the call, owned by nothing else.
    unsafe { owned(token, "opening this process's token", "OpenProcessToken") }
}

/// Reads one token information class into a u64-aligned buffer.
fn token_info(token: &OwnedHandle, class: TOKEN_INFORMATION_CLASS, what: &str) -> Result<Vec<u64>, LaunchError> {
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, `len` receives the size needed.
    unsafe { GetTokenInformation(token.as_raw_handle(), class, std::ptr::null_mut(), 0, &mut len) };
    let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
    // SAFETY: `buf` holds at least `len` bytes, aligned for every TOKEN_* structure.
    let ok = unsafe { GetTokenInformation(token.as_raw_handle(), class, buf.as_mut_ptr().cast(), len, &mut len) };
    if ok == 0 {
        return Err(last_os_error(what, "GetTokenInformation"));
    }
    Ok(buf)
}

/// A token's user SID.
pub fn token_user(token: &OwnedHandle) -> Result<Sid, LaunchError> {
    let buf = token_info(token, TokenUser, "reading the token's user")?;
    // SAFETY: the buffer holds a TOKEN_USER, aligned (u64 storage).
    let psid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    // SAFETY: the SID pointer points into the same buffer, at a valid SID.
    unsafe { sid_at(psid) }
}

/// A token's logon SID (`S-1-5-5-X-Y`), if it has one.
pub fn token_logon_sid(token: &OwnedHandle) -> Result<Option<Sid>, LaunchError> {
    let buf = token_info(token, TokenGroups, "reading the token's groups")?;
    // SAFETY: the buffer holds a TOKEN_GROUPS, aligned (u64 storage), and lives as long as
    // `groups`.
    let groups = unsafe { &*buf.as_ptr().cast::<TOKEN_GROUPS>() };
    // SAFETY: GroupCount entries follow in the same buffer (the structure declares one).
    let list = unsafe { std::slice::from_raw_parts(groups.Groups.as_ptr(), groups.GroupCount as usize) };
    match list.iter().find(|g| g.Attributes & SE_GROUP_LOGON_ID == SE_GROUP_LOGON_ID) {
        // SAFETY: the SID pointers point into the same buffer, at valid SIDs.
        Some(g) => unsafe { sid_at(g.Sid) }.map(Some),
        None => Ok(None),
    }
}

/// Whether this process runs elevated.
pub fn is_elevated() -> bool {
    let Ok(token) = own_token(TOKEN_QUERY) else { return false };
    let Ok(buf) = token_info(&token, TokenElevation, "reading the token's elevation") else { return false };
    // SAFETY: the buffer holds a TOKEN_ELEVATION, aligned (u64 storage).
    unsafe { (*buf.as_ptr().cast::<TOKEN_ELEVATION>()).TokenIsElevated != 0 }
}

/// The SID of this process's user.
pub fn current_user() -> Result<Sid, LaunchError> {
    token_user(&own_token(TOKEN_QUERY)?)
}

/// Looks up a local account's SID; None if there is no such account.
pub fn lookup_account(name: &str) -> Result<Option<Sid>, LaunchError> {
    let name_w = wide(name);
    let mut sid_len = 0u32;
    let mut domain_len = 0u32;
    let mut usage: SID_NAME_USE = 0;
    // SAFETY: a size query: null buffers, the lengths receive the sizes needed.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            name_w.as_ptr(),
            std::ptr::null_mut(),
            &mut sid_len,
            std::ptr::null_mut(),
            &mut domain_len,
            &mut usage,
        )
    };
    let err = super::last_error();
    if ok == 0 && err != ERROR_INSUFFICIENT_BUFFER {
        // ERROR_NONE_MAPPED (1332): no such account.
        return if err == 1332 {
            Ok(None)
        } else {
            Err(os_error(format!("looking up {name}"), "LookupAccountNameW", err))
        };
    }
    let sid = Aligned::new(&vec![0u8; sid_len as usize]);
    let mut domain = vec![0u16; domain_len as usize + 1];
    // SAFETY: the buffers have the sizes the first call asked for.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            name_w.as_ptr(),
            sid.ptr(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut usage,
        )
    };
    if ok == 0 {
        return Err(last_os_error(format!("looking up {name}"), "LookupAccountNameW"));
    }
    // SAFETY: the call wrote a valid SID into the buffer.
    unsafe { sid_at(sid.ptr()) }.map(Some)
}

/// An object whose security descriptor is read: a file or folder by path, or a kernel or window
/// object through a handle with READ_CONTROL.
enum Secured<'a> {
    /// A NUL-terminated path.
    File(&'a [u16]),
    Handle(BorrowedHandle<'a>, SE_OBJECT_TYPE),
}

/// Reads the parts `info` of `object`'s security descriptor; `what` names the reading in errors.
fn read_descriptor(
    object: Secured<'_>,
    info: OBJECT_SECURITY_INFORMATION,
    what: &str,
) -> Result<SecurityDescriptor, LaunchError> {
    let mut psd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    let (no_sid, no_acl) = (std::ptr::null_mut(), std::ptr::null_mut());
    let (call, err) = match object {
        Secured::File(path) => (
            "GetNamedSecurityInfoW",
            // SAFETY: `path` is NUL-terminated; only the descriptor pointer is requested, and it
            // receives a LocalAlloc'ed buffer freed below.
            unsafe {
                GetNamedSecurityInfoW(path.as_ptr(), SE_FILE_OBJECT, info, no_sid, no_sid, no_acl, no_acl, &mut psd)
            },
        ),
        Secured::Handle(handle, kind) => (
            "GetSecurityInfo",
            // SAFETY: a borrowed, so open, handle; as above.
            unsafe { GetSecurityInfo(handle.as_raw_handle(), kind, info, no_sid, no_sid, no_acl, no_acl, &mut psd) },
        ),
    };
    if err != 0 {
        return Err(os_error(what, call, err));
    }
    // SAFETY: the call returned a self-relative descriptor.
    let len = unsafe { GetSecurityDescriptorLength(psd) } as usize;
    // SAFETY: a self-relative descriptor is readable for its whole length.
    let bytes = unsafe { copy_bytes(psd as *const u8, len) };
    // SAFETY: LocalAlloc'ed by the call, and not used after this.
    unsafe { local_free(psd) };
    SecurityDescriptor::from_bytes(&bytes).map_err(|e| LaunchError::internal(format!("{what}: {e}")))
}

/// Writes `acl` through `set`, which gets what to write (the DACL, protected from inheritance
/// or not) and the aligned binary list, and returns the call's error code (0: success).
fn write_dacl(acl: &Acl, protected: bool, set: impl FnOnce(OBJECT_SECURITY_INFORMATION, *mut ACL) -> u32) -> u32 {
    let bytes = Aligned::new(&acl.to_bytes());
    let info = DACL_SECURITY_INFORMATION
        | if protected { PROTECTED_DACL_SECURITY_INFORMATION } else { UNPROTECTED_DACL_SECURITY_INFORMATION };
    set(info, bytes.ptr())
}

/// A file or folder's DACL (None: a NULL DACL, open to everyone) and whether it is protected
/// from inheritance.
pub fn file_dacl(path: impl AsRef<Path>) -> Result<(Option<Acl>, bool), LaunchError> {
    let what = format!("reading the ACL of {}", path.as_ref().display());
    let sd = read_descriptor(Secured::File(&wide(path.as_ref())), DACL_SECURITY_INFORMATION, &what)?;
    Ok((sd.dacl, sd.protected))
}

/// Writes a file or folder's DACL. An unprotected list keeps inheriting from the parent, and
/// Windows propagates the change to everything below that inherits.
pub fn set_file_dacl(path: impl AsRef<Path>, acl: &Acl, protected: bool) -> Result<(), u32> {
    let path = wide(path.as_ref());
    let no_sid = std::ptr::null_mut();
    let err = write_dacl(acl, protected, |info, dacl| {
        // SAFETY: `path` is NUL-terminated and the ACL is a valid, aligned binary ACL.
        unsafe { SetNamedSecurityInfoW(path.as_ptr(), SE_FILE_OBJECT, info, no_sid, no_sid, dacl, std::ptr::null()) }
    });
    if err == 0 {
        Ok(())
    } else {
        Err(err)
    }
}

fn object_type(window: bool) -> SE_OBJECT_TYPE {
    if window {
        SE_WINDOW_OBJECT
    } else {
        SE_KERNEL_OBJECT
    }
}

/// A kernel or window object's DACL, through a handle with READ_CONTROL.
pub fn handle_dacl(handle: BorrowedHandle<'_>, window: bool) -> Result<(Option<Acl>, bool), LaunchError> {
    let object = Secured::Handle(handle, object_type(window));
    let sd = read_descriptor(object, DACL_SECURITY_INFORMATION, "reading an object's ACL")?;
    Ok((sd.dacl, sd.protected))
}

/// Writes a kernel or window object's DACL through a handle with WRITE_DAC.
pub fn set_handle_dacl(
    handle: BorrowedHandle<'_>,
    window: bool,
    acl: &Acl,
    protected: bool,
) -> Result<(), LaunchError> {
    let no_sid = std::ptr::null_mut();
    let handle = handle.as_raw_handle();
    let err = write_dacl(acl, protected, |info, dacl| {
        // SAFETY: the handle is borrowed, so open, for the call's duration, and the ACL is valid
        // and aligned.
        unsafe { SetSecurityInfo(handle, object_type(window), info, no_sid, no_sid, dacl, std::ptr::null()) }
    });
    if err == 0 {
        Ok(())
    } else {
        Err(os_error("writing an object's ACL", "SetSecurityInfo", err))
    }
}

/// SECURITY_ATTRIBUTES carrying a self-relative security descriptor; keep it alive while the
/// pointer is in use.
pub struct SecurityAttributes {
    _sd: Aligned,
    pub attrs: SECURITY_ATTRIBUTES,
}

impl SecurityAttributes {
    pub fn new(sd: &SecurityDescriptor, inherit: bool) -> SecurityAttributes {
        let bytes = Aligned::new(&sd.to_bytes());
        let attrs = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: bytes.ptr(),
            bInheritHandle: inherit as i32,
        };
        SecurityAttributes { _sd: bytes, attrs }
    }

    /// Not inheritable attributes of an object that SYSTEM and `me` have `full` access to,
    /// `other` only `access`, and nobody else any.
    pub fn private(full: u32, me: &Sid, other: &Sid, access: u32) -> SecurityAttributes {
        let sd = SecurityDescriptor::protected_dacl(vec![
            Ace::Allow { flags: 0, mask: full, sid: well_known::local_system() },
            Ace::Allow { flags: 0, mask: full, sid: me.clone() },
            Ace::Allow { flags: 0, mask: access, sid: other.clone() },
        ]);
        SecurityAttributes::new(&sd, false)
    }
}

/// Converts SDDL to a self-relative descriptor with the system's parser.
#[cfg(test)]
pub fn sddl_to_sd(sddl: &str) -> Result<Vec<u8>, LaunchError> {
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
    };
    let text = wide(sddl);
    let mut psd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: NUL-terminated input; the descriptor is LocalAlloc'ed and freed below.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(text.as_ptr(), SDDL_REVISION_1, &mut psd, &mut len)
    };
    if ok == 0 {
        return Err(last_os_error(format!("parsing {sddl}"), "ConvertStringSecurityDescriptorToSecurityDescriptorW"));
    }
    // SAFETY: the call reported `len` bytes at `psd`.
    let bytes = unsafe { copy_bytes(psd as *const u8, len as usize) };
    // SAFETY: LocalAlloc'ed by the call, and not used after this.
    unsafe { local_free(psd) };
    Ok(bytes)
}

/// Converts a self-relative descriptor's DACL (and owner, group) to SDDL with the system.
#[cfg(test)]
pub fn sd_to_sddl(sd: &[u8]) -> Result<String, LaunchError> {
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, SDDL_REVISION_1,
    };
    let bytes = Aligned::new(sd);
    let mut text: *mut u16 = std::ptr::null_mut();
    let mut len = 0u32;
    // OWNER | GROUP | DACL.
    let info = 0x1 | 0x2 | DACL_SECURITY_INFORMATION;
    // SAFETY: a valid self-relative descriptor; the string is LocalAlloc'ed and freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(bytes.ptr(), SDDL_REVISION_1, info, &mut text, &mut len)
    };
    if ok == 0 {
        return Err(last_os_error("printing a descriptor", "ConvertSecurityDescriptorToStringSecurityDescriptorW"));
    }
    // SAFETY: the call returned a NUL-terminated string of `len` characters.
    let units = unsafe { std::slice::from_raw_parts(text, len as usize) }.to_vec();
    // SAFETY: LocalAlloc'ed by the call, and not used after this.
    unsafe { local_free(text) };
    Ok(String::from_utf16_lossy(&units).trim_end_matches('\0').to_string())
}

/// The command's token: a restricted copy of this process's own token (so no privilege is
/// needed to start a process with it) with every privilege but "bypass traverse checking"
/// removed, the groups in `deny_only` matching deny entries only, and WRITE_RESTRICTED with
/// `restricting` as the restricting SIDs, so any write access must also be granted to one of
/// them. Its default DACL (for the objects the command creates, its own process and threads
/// included) is `default_dacl`.
pub fn restricted_token(
    restricting: &[Sid],
    deny_only: &[Sid],
    default_dacl: &Acl,
) -> Result<OwnedHandle, LaunchError> {
    let base = own_token(TOKEN_DUPLICATE | TOKEN_QUERY | TOKEN_ASSIGN_PRIMARY | TOKEN_ADJUST_DEFAULT)?;
    let restrict_sids: Vec<Aligned> = restricting.iter().map(|s| Aligned::new(&s.to_bytes())).collect();
    let disable_sids: Vec<Aligned> = deny_only.iter().map(|s| Aligned::new(&s.to_bytes())).collect();
    let entries = |sids: &[Aligned]| -> Vec<SID_AND_ATTRIBUTES> {
        sids.iter().map(|s| SID_AND_ATTRIBUTES { Sid: s.ptr(), Attributes: 0 }).collect()
    };
    let (restrict, disable) = (entries(&restrict_sids), entries(&disable_sids));
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: both lists point at SIDs that live in `restrict_sids` and `disable_sids` until
    // the call returns; `token` receives a new handle.
    let ok = unsafe {
        CreateRestrictedToken(
            base.as_raw_handle(),
            DISABLE_MAX_PRIVILEGE | WRITE_RESTRICTED,
            disable.len() as u32,
            disable.as_ptr(),
            0,
            std::ptr::null(),
            restrict.len() as u32,
            restrict.as_ptr(),
            &mut token,
        )
    };
    if ok == 0 {
        return Err(last_os_error("restricting the command's token", "CreateRestrictedToken"));
    }
    // SAFETY: just returned by the call, owned by nothing else.
    let token = unsafe { owned(token, "restricting the command's token", "CreateRestrictedToken") }?;
    set_default_dacl(&token, default_dacl)?;
    Ok(token)
}

/// A file or folder's owner (opened without following a final link).
pub fn file_owner(path: impl AsRef<Path>) -> Result<Sid, LaunchError> {
    let what = format!("reading the owner of {}", path.as_ref().display());
    let sd = read_descriptor(Secured::File(&wide(path.as_ref())), OWNER_SECURITY_INFORMATION, &what)?;
    sd.owner.ok_or_else(|| LaunchError::internal(format!("{what}: it has no owner")))
}

/// Makes `owner` the owner of a file or folder. Taking ownership for oneself needs only the
/// WRITE_OWNER right on it, no privilege.
pub fn set_file_owner(path: impl AsRef<Path>, owner: &Sid) -> Result<(), LaunchError> {
    let shown = path.as_ref().display().to_string();
    let path = wide(path.as_ref());
    let sid = Aligned::new(&owner.to_bytes());
    let (no_sid, no_acl) = (std::ptr::null_mut(), std::ptr::null());
    // SAFETY: `path` is NUL-terminated and the SID is valid and aligned for the call.
    let err = unsafe {
        SetNamedSecurityInfoW(
            path.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            sid.ptr(),
            no_sid,
            no_acl,
            no_acl,
        )
    };
    if err != 0 {
        return Err(os_error(format!("giving {shown} back to its user"), "SetNamedSecurityInfoW", err));
    }
    Ok(())
}

/// Sets a token's default DACL (needs TOKEN_ADJUST_DEFAULT).
pub fn set_default_dacl(token: &OwnedHandle, dacl: &Acl) -> Result<(), LaunchError> {
    let bytes = Aligned::new(&dacl.to_bytes());
    let info = TOKEN_DEFAULT_DACL { DefaultDacl: bytes.ptr() };
    // SAFETY: `info` points at a valid ACL that outlives the call.
    let ok = unsafe {
        SetTokenInformation(
            token.as_raw_handle(),
            TokenDefaultDacl,
            (&info as *const TOKEN_DEFAULT_DACL).cast(),
            std::mem::size_of::<TOKEN_DEFAULT_DACL>() as u32,
        )
    };
    if ok == 0 {
        return Err(last_os_error("setting a token's default ACL", "SetTokenInformation"));
    }
    Ok(())
}

/// Opens the NUL device (`\\.\NUL`, the kernel's `\Device\Null`) itself, with `access`.
fn open_null_device(access: u32) -> Result<std::fs::File, LaunchError> {
    use std::os::windows::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .access_mode(access)
        .share_mode(
            windows_sys::Win32::Storage::FileSystem::FILE_SHARE_READ
                | windows_sys::Win32::Storage::FileSystem::FILE_SHARE_WRITE,
        )
        .open(r"\\.\NUL")
        .map_err(|e| LaunchError::internal(format!("opening the NUL device (\\\\.\\NUL): {e}")))
}

/// The NUL device's DACL (None: a NULL DACL). Anyone may read it.
pub fn null_device_dacl() -> Result<Option<Acl>, LaunchError> {
    let device = open_null_device(crate::acl::mask::READ_CONTROL)?;
    handle_dacl(device.as_handle(), false).map(|(dacl, _)| dacl)
}

/// Adds `ace` to the NUL device's DACL (only administrators may). The device's ACL lives in
/// memory: it is as Windows made it again after a restart.
pub fn grant_null_device(ace: Ace) -> Result<(), LaunchError> {
    let device = open_null_device(crate::acl::mask::READ_CONTROL | crate::acl::mask::WRITE_DAC)?;
    let (dacl, protected) = handle_dacl(device.as_handle(), false)?;
    let Some(mut acl) = dacl else { return Ok(()) };
    if acl.add_explicit(ace) {
        set_handle_dacl(device.as_handle(), false, &acl, protected)?;
    }
    Ok(())
}

/// Removes the entries naming `sid` from the NUL device's DACL.
pub fn revoke_null_device(sid: &Sid) -> Result<(), LaunchError> {
    let device = open_null_device(crate::acl::mask::READ_CONTROL | crate::acl::mask::WRITE_DAC)?;
    let (dacl, protected) = handle_dacl(device.as_handle(), false)?;
    if let Some(mut acl) = dacl {
        if acl.remove_explicit_for(sid) > 0 {
            set_handle_dacl(device.as_handle(), false, &acl, protected)?;
        }
    }
    Ok(())
}
