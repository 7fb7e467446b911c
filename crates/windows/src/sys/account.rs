//! The sandbox account and its secret: local user management (netapi32), logon rights (LSA),
//! hiding the account from the sign-in screen (registry), the password's DPAPI protection, and
//! random bytes.

use super::{copy_bytes, local_free, message, os_error, owned, wide, Aligned};
use crate::error::LaunchError;
use crate::sid::Sid;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::NetworkManagement::NetManagement::{
    NERR_UserExists, NERR_UserNotFound, NetUserAdd, NetUserDel, NetUserSetInfo, UF_DONT_EXPIRE_PASSWD,
    UF_PASSWD_CANT_CHANGE, UF_SCRIPT, USER_INFO_1, USER_INFO_1003, USER_INFO_1008, USER_PRIV_USER,
};
use windows_sys::Win32::Security::Authentication::Identity::{
    LsaAddAccountRights, LsaClose, LsaNtStatusToWinError, LsaOpenPolicy, LsaRemoveAccountRights, LSA_HANDLE,
    LSA_OBJECT_ATTRIBUTES, LSA_UNICODE_STRING, POLICY_CREATE_ACCOUNT, POLICY_LOOKUP_NAMES,
};
use windows_sys::Win32::Security::Cryptography::{
    BCryptGenRandom, CryptProtectData, CryptUnprotectData, BCRYPT_USE_SYSTEM_PREFERRED_RNG, CRYPTPROTECT_UI_FORBIDDEN,
    CRYPT_INTEGER_BLOB,
};
use windows_sys::Win32::Security::{LogonUserW, LOGON32_LOGON_INTERACTIVE, LOGON32_PROVIDER_DEFAULT};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteKeyValueW, RegSetValueExW, HKEY, HKEY_LOCAL_MACHINE, KEY_SET_VALUE,
    REG_DWORD, REG_OPTION_NON_VOLATILE,
};

/// `n` random bytes from the system's preferred generator.
pub fn random(n: usize) -> Result<Vec<u8>, LaunchError> {
    let mut buf = vec![0u8; n];
    // SAFETY: the buffer is `n` bytes long.
    let status =
        unsafe { BCryptGenRandom(std::ptr::null_mut(), buf.as_mut_ptr(), n as u32, BCRYPT_USE_SYSTEM_PREFERRED_RNG) };
    if status < 0 {
        return Err(LaunchError::internal(format!("BCryptGenRandom failed with status {status:#x}")));
    }
    Ok(buf)
}

const FLAGS: u32 = UF_SCRIPT | UF_DONT_EXPIRE_PASSWD | UF_PASSWD_CANT_CHANGE;

/// Creates the local account `name`, or resets its password and flags if it exists. Returns
/// whether it was created.
pub fn create_or_reset_user(name: &str, password: &str, comment: &str) -> Result<bool, LaunchError> {
    let mut name_w = wide(name);
    let mut password_w = wide(password);
    let mut comment_w = wide(comment);
    let info = USER_INFO_1 {
        usri1_name: name_w.as_mut_ptr(),
        usri1_password: password_w.as_mut_ptr(),
        usri1_password_age: 0,
        usri1_priv: USER_PRIV_USER,
        usri1_home_dir: std::ptr::null_mut(),
        usri1_comment: comment_w.as_mut_ptr(),
        usri1_flags: FLAGS,
        usri1_script_path: std::ptr::null_mut(),
    };
    let mut parm = 0u32;
    // SAFETY: a USER_INFO_1 whose strings live through the call.
    let err = unsafe { NetUserAdd(std::ptr::null(), 1, (&info as *const USER_INFO_1).cast(), &mut parm) };
    let created = match err {
        0 => true,
        e if e == NERR_UserExists => {
            let pw = USER_INFO_1003 { usri1003_password: password_w.as_mut_ptr() };
            // SAFETY: the password is NUL-terminated and outlives the call.
            unsafe { set_user_info(name, &pw) }
                .map_err(|e| net_error(format!("resetting the password of {name}"), "NetUserSetInfo", e))?;
            let flags = USER_INFO_1008 { usri1008_flags: FLAGS };
            // SAFETY: no strings.
            unsafe { set_user_info(name, &flags) }
                .map_err(|e| net_error(format!("enabling {name}"), "NetUserSetInfo", e))?;
            false
        }
        _ => return Err(net_error(format!("creating the account {name}"), "NetUserAdd", err)),
    };
    password_w.iter_mut().for_each(|c| *c = 0);
    Ok(created)
}

/// A USER_INFO_<level> structure NetUserSetInfo takes, with its level.
///
/// # Safety
/// The type is the structure of level `LEVEL`.
unsafe trait UserInfo {
    const LEVEL: u32;
}

// SAFETY: the structure of level 1003 (lmaccess.h).
unsafe impl UserInfo for USER_INFO_1003 {
    const LEVEL: u32 = 1003;
}

// SAFETY: the structure of level 1008 (lmaccess.h).
unsafe impl UserInfo for USER_INFO_1008 {
    const LEVEL: u32 = 1008;
}

/// Sets one piece of information on the account `name` with NetUserSetInfo; Err: its status.
///
/// # Safety
/// Every string `info` points to must be NUL-terminated and live through the call.
unsafe fn set_user_info<T: UserInfo>(name: &str, info: &T) -> Result<(), u32> {
    let name_w = wide(name);
    let mut parm = 0u32;
    // SAFETY: `info` is the structure of level `T::LEVEL` (the trait's promise); the caller
    // promises its strings; the name is NUL-terminated.
    let err =
        unsafe { NetUserSetInfo(std::ptr::null(), name_w.as_ptr(), T::LEVEL, (info as *const T).cast(), &mut parm) };
    if err != 0 {
        return Err(err);
    }
    Ok(())
}

fn net_error(what: String, call: &str, err: u32) -> LaunchError {
    if err == 5 {
        return LaunchError::unsupported(format!("{what}: access denied"), crate::error::SETUP_REMEDY);
    }
    os_error(what, call, err)
}

/// Deletes the local account `name`; false if there was none.
pub fn delete_user(name: &str) -> Result<bool, LaunchError> {
    let name_w = wide(name);
    // SAFETY: NUL-terminated name.
    match unsafe { NetUserDel(std::ptr::null(), name_w.as_ptr()) } {
        0 => Ok(true),
        e if e == NERR_UserNotFound => Ok(false),
        err => Err(net_error(format!("deleting the account {name}"), "NetUserDel", err)),
    }
}

/// Logs on as `name` (interactive logon type, as the runner's logon is) to check the password.
pub fn logon(name: &str, password: &str) -> Result<OwnedHandle, LaunchError> {
    let name_w = wide(name);
    let domain = wide(".");
    let mut password_w = wide(password);
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings; `token` receives a new handle.
    let ok = unsafe {
        LogonUserW(
            name_w.as_ptr(),
            domain.as_ptr(),
            password_w.as_ptr(),
            LOGON32_LOGON_INTERACTIVE,
            LOGON32_PROVIDER_DEFAULT,
            &mut token,
        )
    };
    let err = super::last_error();
    password_w.iter_mut().for_each(|c| *c = 0);
    if ok == 0 {
        return Err(os_error(format!("logging on as {name}"), "LogonUserW", err));
    }
    // SAFETY: just returned by the call, owned by nothing else.
    unsafe { owned(token, format!("logging on as {name}"), "LogonUserW") }
}

fn lsa_string(s: &mut [u16]) -> LSA_UNICODE_STRING {
    let len = (s.len().saturating_sub(1) * 2) as u16;
    LSA_UNICODE_STRING { Length: len, MaximumLength: len + 2, Buffer: s.as_mut_ptr() }
}

struct Policy(LSA_HANDLE);

impl Policy {
    fn open() -> Result<Policy, LaunchError> {
        let attrs = LSA_OBJECT_ATTRIBUTES::default();
        let mut handle: LSA_HANDLE = 0;
        // SAFETY: zeroed attributes as the documentation requires; local system.
        let status = unsafe {
            LsaOpenPolicy(std::ptr::null(), &attrs, (POLICY_CREATE_ACCOUNT | POLICY_LOOKUP_NAMES) as u32, &mut handle)
        };
        if status != 0 {
            // SAFETY: converts a status code.
            let err = unsafe { LsaNtStatusToWinError(status) };
            return Err(net_error("opening the local security policy".into(), "LsaOpenPolicy", err));
        }
        Ok(Policy(handle))
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        // SAFETY: opened above, closed once.
        unsafe { LsaClose(self.0) };
    }
}

/// The logon rights the account is denied: over the network and over Remote Desktop, so its
/// password is useless anywhere but on this machine's secondary logon.
pub const DENIED_RIGHTS: &[&str] = &["SeDenyNetworkLogonRight", "SeDenyRemoteInteractiveLogonRight"];

/// Grants `rights` to `sid` in the local security policy.
pub fn add_rights(sid: &Sid, rights: &[&str]) -> Result<(), LaunchError> {
    let policy = Policy::open()?;
    let sid_bytes = Aligned::new(&sid.to_bytes());
    let mut storage: Vec<Vec<u16>> = rights.iter().map(wide).collect();
    let strings: Vec<LSA_UNICODE_STRING> = storage.iter_mut().map(|s| lsa_string(s)).collect();
    // SAFETY: a valid SID and strings that live through the call.
    let status = unsafe { LsaAddAccountRights(policy.0, sid_bytes.ptr(), strings.as_ptr(), strings.len() as u32) };
    if status != 0 {
        // SAFETY: converts a status code.
        let err = unsafe { LsaNtStatusToWinError(status) };
        return Err(net_error("denying the account network and remote logons".into(), "LsaAddAccountRights", err));
    }
    Ok(())
}

/// Removes every right `sid` holds in the local security policy (before the account goes).
pub fn remove_all_rights(sid: &Sid) -> Result<(), LaunchError> {
    let policy = Policy::open()?;
    let sid_bytes = Aligned::new(&sid.to_bytes());
    // SAFETY: a valid SID; AllRights removes the account object, no strings needed.
    let status = unsafe { LsaRemoveAccountRights(policy.0, sid_bytes.ptr(), true, std::ptr::null(), 0) };
    // STATUS_OBJECT_NAME_NOT_FOUND: it held none.
    if status != 0 && status as u32 != 0xC000_0034 {
        // SAFETY: converts a status code.
        let err = unsafe { LsaNtStatusToWinError(status) };
        return Err(os_error("removing the account's logon rights", "LsaRemoveAccountRights", err));
    }
    Ok(())
}

const USER_LIST: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon\SpecialAccounts\UserList";

/// Hides (or shows again) the account on the sign-in screen.
pub fn hide_from_sign_in(name: &str, hide: bool) -> Result<(), LaunchError> {
    let key_w = wide(USER_LIST);
    let name_w = wide(name);
    if !hide {
        // SAFETY: NUL-terminated key and value names.
        let err = unsafe { RegDeleteKeyValueW(HKEY_LOCAL_MACHINE, key_w.as_ptr(), name_w.as_ptr()) };
        return match err {
            0 | 2 => Ok(()),
            e => Err(os_error("showing the account on the sign-in screen again", "RegDeleteKeyValueW", e)),
        };
    }
    let mut key: HKEY = std::ptr::null_mut();
    // SAFETY: creates or opens the key; `key` receives a handle closed below.
    let err = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key_w.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            std::ptr::null(),
            &mut key,
            std::ptr::null_mut(),
        )
    };
    if err != 0 {
        return Err(net_error("hiding the account from the sign-in screen".into(), "RegCreateKeyExW", err));
    }
    let zero = 0u32.to_le_bytes();
    // SAFETY: an open key and a 4-byte DWORD value.
    let err = unsafe { RegSetValueExW(key, name_w.as_ptr(), 0, REG_DWORD, zero.as_ptr(), 4) };
    // SAFETY: opened above, closed once.
    unsafe { RegCloseKey(key) };
    if err != 0 {
        return Err(os_error("hiding the account from the sign-in screen", "RegSetValueExW", err));
    }
    Ok(())
}

fn blob(data: &[u8]) -> CRYPT_INTEGER_BLOB {
    CRYPT_INTEGER_BLOB { cbData: data.len() as u32, pbData: data.as_ptr() as *mut u8 }
}

/// Which way [`dpapi`] goes.
enum Dpapi<'a> {
    /// Encrypt, with this description stored in the blob.
    Protect(&'a str),
    Unprotect,
}

/// Encrypts or decrypts `data` for the current user with DPAPI (with `entropy` mixed in), and
/// returns a copy of the result (freeing the system's). Err: the call failed, with the last
/// error.
fn dpapi(direction: Dpapi<'_>, data: &[u8], entropy: &[u8]) -> Result<Vec<u8>, u32> {
    let (input, entropy) = (blob(data), blob(entropy));
    let (reserved, prompt, flags) = (std::ptr::null(), std::ptr::null(), CRYPTPROTECT_UI_FORBIDDEN);
    let description = match direction {
        Dpapi::Protect(text) => Some(wide(text)),
        Dpapi::Unprotect => None,
    };
    let mut out = CRYPT_INTEGER_BLOB { cbData: 0, pbData: std::ptr::null_mut() };
    let ok = match &description {
        // SAFETY: input blobs point at live slices the call only reads, the description is
        // NUL-terminated; the output is LocalAlloc'ed and freed below.
        Some(desc) => unsafe { CryptProtectData(&input, desc.as_ptr(), &entropy, reserved, prompt, flags, &mut out) },
        // SAFETY: as above, without a description.
        None => unsafe {
            CryptUnprotectData(&input, std::ptr::null_mut(), &entropy, reserved, prompt, flags, &mut out)
        },
    };
    if ok == 0 {
        return Err(super::last_error());
    }
    // SAFETY: the call returned `cbData` bytes at `pbData`.
    let bytes = unsafe { copy_bytes(out.pbData, out.cbData as usize) };
    // SAFETY: LocalAlloc'ed by the call, and not used after this.
    unsafe { local_free(out.pbData) };
    Ok(bytes)
}

/// Encrypts `data` for the current user with DPAPI (with `entropy` mixed in).
pub fn protect(data: &[u8], entropy: &[u8], description: &str) -> Result<Vec<u8>, LaunchError> {
    dpapi(Dpapi::Protect(description), data, entropy)
        .map_err(|e| os_error("protecting the password with DPAPI", "CryptProtectData", e))
}

/// Decrypts what [`protect`] made, as the same user.
pub fn unprotect(data: &[u8], entropy: &[u8]) -> Result<Vec<u8>, String> {
    dpapi(Dpapi::Unprotect, data, entropy).map_err(message)
}

/// Creates the local group `name` (an existing one is fine).
pub fn ensure_group(name: &str, comment: &str) -> Result<(), LaunchError> {
    use windows_sys::Win32::NetworkManagement::NetManagement::{NERR_GroupExists, NetLocalGroupAdd, LOCALGROUP_INFO_1};
    let mut name_w = wide(name);
    let mut comment_w = wide(comment);
    let info = LOCALGROUP_INFO_1 { lgrpi1_name: name_w.as_mut_ptr(), lgrpi1_comment: comment_w.as_mut_ptr() };
    let mut parm = 0u32;
    // SAFETY: a LOCALGROUP_INFO_1 whose strings live through the call.
    let err = unsafe { NetLocalGroupAdd(std::ptr::null(), 1, (&info as *const LOCALGROUP_INFO_1).cast(), &mut parm) };
    match err {
        0 => Ok(()),
        e if e == NERR_GroupExists || e == windows_sys::Win32::Foundation::ERROR_ALIAS_EXISTS => Ok(()),
        e => Err(net_error(format!("creating the local group {name}"), "NetLocalGroupAdd", e)),
    }
}

/// Makes `member` a member of the local group `group` (already one is fine).
pub fn add_to_group(group: &str, member: &Sid) -> Result<(), LaunchError> {
    use windows_sys::Win32::NetworkManagement::NetManagement::{NetLocalGroupAddMembers, LOCALGROUP_MEMBERS_INFO_0};
    let group_w = wide(group);
    let sid = Aligned::new(&member.to_bytes());
    let info = LOCALGROUP_MEMBERS_INFO_0 { lgrmi0_sid: sid.ptr() };
    // SAFETY: one LOCALGROUP_MEMBERS_INFO_0 pointing at a valid SID that lives through the call.
    let err = unsafe {
        NetLocalGroupAddMembers(
            std::ptr::null(),
            group_w.as_ptr(),
            0,
            (&info as *const LOCALGROUP_MEMBERS_INFO_0).cast(),
            1,
        )
    };
    match err {
        0 => Ok(()),
        e if e == windows_sys::Win32::Foundation::ERROR_MEMBER_IN_ALIAS => Ok(()),
        e => Err(net_error(format!("adding {member} to the local group {group}"), "NetLocalGroupAddMembers", e)),
    }
}

/// Deletes the local group `name` (a missing one is fine).
pub fn delete_group(name: &str) -> Result<(), LaunchError> {
    use windows_sys::Win32::NetworkManagement::NetManagement::{NERR_GroupNotFound, NetLocalGroupDel};
    let name_w = wide(name);
    // SAFETY: NUL-terminated name.
    match unsafe { NetLocalGroupDel(std::ptr::null(), name_w.as_ptr()) } {
        0 => Ok(()),
        e if e == NERR_GroupNotFound || e == windows_sys::Win32::Foundation::ERROR_NO_SUCH_ALIAS => Ok(()),
        e => Err(net_error(format!("deleting the local group {name}"), "NetLocalGroupDel", e)),
    }
}

/// Enables `names` (privileges this process holds, such as an elevated administrator's
/// SeBackupPrivilege) in its own token.
fn enable_privileges(names: &[&str]) -> Result<(), LaunchError> {
    use windows_sys::Win32::Foundation::LUID;
    use windows_sys::Win32::Security::{
        AdjustTokenPrivileges, LookupPrivilegeValueW, SE_PRIVILEGE_ENABLED, TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES,
        TOKEN_QUERY,
    };
    let token = super::security::own_token(TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY)?;
    for name in names {
        let name_w = wide(name);
        let mut luid = LUID::default();
        // SAFETY: a NUL-terminated name; `luid` receives the value.
        if unsafe { LookupPrivilegeValueW(std::ptr::null(), name_w.as_ptr(), &mut luid) } == 0 {
            return Err(super::last_os_error(format!("looking up {name}"), "LookupPrivilegeValueW"));
        }
        let mut state = TOKEN_PRIVILEGES { PrivilegeCount: 1, ..Default::default() };
        state.Privileges[0].Luid = luid;
        state.Privileges[0].Attributes = SE_PRIVILEGE_ENABLED;
        let (none, no_len) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: an open token with TOKEN_ADJUST_PRIVILEGES and one privilege entry.
        let ok = unsafe { AdjustTokenPrivileges(token.as_raw_handle(), 0, &state, 0, none, no_len) };
        // It "succeeds" without the privilege and says so in the last error.
        if ok == 0 || super::last_error() != 0 {
            return Err(super::last_os_error(format!("enabling {name}"), "AdjustTokenPrivileges"));
        }
    }
    Ok(())
}

/// PI_NOUI: no message box if the profile can't be loaded.
const PI_NOUI: u32 = 1;

/// Loads (and on the first call creates) the profile of the local account `name`, and returns
/// its folder. Needs an elevated administrator.
pub fn create_profile(name: &str, password: &str) -> Result<String, LaunchError> {
    use windows_sys::Win32::UI::Shell::{GetUserProfileDirectoryW, LoadUserProfileW, UnloadUserProfile, PROFILEINFOW};
    enable_privileges(&["SeBackupPrivilege", "SeRestorePrivilege"])?;
    let token = logon(name, password)?;
    let mut name_w = wide(name);
    let mut info = PROFILEINFOW {
        dwSize: std::mem::size_of::<PROFILEINFOW>() as u32,
        dwFlags: PI_NOUI,
        lpUserName: name_w.as_mut_ptr(),
        ..Default::default()
    };
    // SAFETY: a logon token and a PROFILEINFOW whose name lives through the call.
    if unsafe { LoadUserProfileW(token.as_raw_handle(), &mut info) } == 0 {
        return Err(super::last_os_error(format!("creating the profile of {name}"), "LoadUserProfileW"));
    }
    let mut buf = vec![0u16; 1024];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` characters.
    let ok = unsafe { GetUserProfileDirectoryW(token.as_raw_handle(), buf.as_mut_ptr(), &mut len) };
    let err = super::last_os_error(format!("finding the profile of {name}"), "GetUserProfileDirectoryW");
    // SAFETY: the profile handle LoadUserProfileW returned, for the same token, unloaded once.
    unsafe { UnloadUserProfile(token.as_raw_handle(), info.hProfile) };
    if ok == 0 {
        return Err(err);
    }
    Ok(super::os_string(&buf).to_string_lossy().into_owned())
}

/// `DeleteProfileW` (userenv.dll), looked up when needed: Wine, where the unit tests run,
/// lacks it, and a missing import would keep the whole program from loading.
type DeleteProfileW = unsafe extern "system" fn(*const u16, *const u16, *const u16) -> i32;

/// Deletes the profile (folder and registry) of the account `sid`; a missing one is fine.
pub fn delete_profile(sid: &Sid) -> Result<(), LaunchError> {
    // SAFETY: `DeleteProfileW` is the function's documented signature.
    let Some(delete) = (unsafe { super::system_function::<DeleteProfileW>("userenv.dll", c"DeleteProfileW") }) else {
        return Err(LaunchError::internal("userenv.dll has no DeleteProfileW"));
    };
    let sid_w = wide(sid.to_string());
    // SAFETY: the function's documented signature; a NUL-terminated SID string, no path, the
    // local machine.
    if unsafe { delete(sid_w.as_ptr(), std::ptr::null(), std::ptr::null()) } == 0 {
        let code = super::last_error();
        if code != windows_sys::Win32::Foundation::ERROR_FILE_NOT_FOUND {
            return Err(os_error(format!("deleting the profile of {sid}"), "DeleteProfileW", code));
        }
    }
    Ok(())
}

/// Runs `schtasks.exe` from the system folder with `args`; its output is the error's text.
fn schtasks(args: &[&str]) -> Result<(), String> {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
    let exe = std::path::Path::new(&root).join("System32").join("schtasks.exe");
    let out = std::process::Command::new(&exe).args(args).output().map_err(|e| format!("{}: {e}", exe.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(if text.is_empty() { String::from_utf8_lossy(&out.stdout).trim().to_string() } else { text })
}

/// Installs (or replaces) the task `name` that runs `program arg` as SYSTEM at every boot.
pub fn install_boot_task(name: &str, program: &str, arg: &str) -> Result<(), LaunchError> {
    let action = format!("\"{program}\" {arg}");
    schtasks(&["/Create", "/F", "/TN", name, "/TR", &action, "/SC", "ONSTART", "/RU", "SYSTEM", "/RL", "HIGHEST"])
        .map_err(|e| LaunchError::internal(format!("scheduling `{action}` at boot: schtasks: {e}")))
}

/// Removes the task `name`, if it exists.
pub fn remove_boot_task(name: &str) -> Result<(), LaunchError> {
    if schtasks(&["/Query", "/TN", name]).is_err() {
        return Ok(());
    }
    schtasks(&["/Delete", "/F", "/TN", name])
        .map_err(|e| LaunchError::internal(format!("removing the scheduled task {name}: schtasks: {e}")))
}
