//! The filter engine: installs and removes ringfence's provider, sublayer and filters (from the
//! descriptions in [`crate::wfp`]) in one transaction, checks which are present, opens them to
//! the installing user (reading ours, adding a run's permits to our sublayer), and holds the
//! dynamic session in which a run's gateway permits live.

use super::{copy_bytes, wide, Aligned};
use crate::acl::{Ace, Acl};
use crate::error::LaunchError;
use crate::wfp::{Action, Condition, FilterSpec, Guid, PROVIDER_KEY, SUBLAYER_KEY, SUBLAYER_WEIGHT};
use windows_sys::core::GUID;
use windows_sys::Win32::Foundation::{
    FWP_E_ALREADY_EXISTS, FWP_E_FILTER_NOT_FOUND, FWP_E_IN_USE, FWP_E_PROVIDER_NOT_FOUND, FWP_E_SUBLAYER_NOT_FOUND,
    HANDLE,
};
use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::*;
use windows_sys::Win32::System::Rpc::RPC_C_AUTHN_DEFAULT;

fn guid(g: Guid) -> GUID {
    GUID::from_u128(g.0)
}

fn hresult_text(code: u32) -> String {
    format!("{code:#010x} ({})", super::message(code))
}

fn check(what: &str, call: &str, code: u32) -> Result<(), LaunchError> {
    if code == 0 {
        return Ok(());
    }
    if code == 5 {
        return Err(LaunchError::unsupported(format!("{what}: {call}: access denied"), crate::error::SETUP_REMEDY));
    }
    Err(LaunchError::internal(format!("{what}: {call} failed with {}", hresult_text(code))))
}

/// Like [`check`], but `benign` (already there, or not there) is no error either: Ok(false)
/// for it, Ok(true) for success.
fn check_unless(benign: i32, what: &str, call: &str, code: u32) -> Result<bool, LaunchError> {
    if code == benign as u32 {
        return Ok(false);
    }
    check(what, call, code)?;
    Ok(true)
}

/// An open handle to the base filtering engine.
pub struct Engine(HANDLE);

// SAFETY: an engine handle is an RPC binding usable from any thread; the run's dynamic session
// is held by the Sandbox, which may be waited on from another thread than the one that made it.
unsafe impl Send for Engine {}

/// The WFP objects whose security ringfence changes.
#[derive(Clone, Copy, Debug)]
pub enum Object {
    /// A filter, or with no key the container of all filters.
    Filter,
    SubLayer,
}

impl Engine {
    /// A session whose objects are persistent unless added with `persistent: false`.
    pub fn open() -> Result<Engine, LaunchError> {
        Engine::open_with(None)
    }

    /// A dynamic session: the engine deletes every object added in it when the session closes,
    /// also when this process dies.
    pub fn open_dynamic() -> Result<Engine, LaunchError> {
        let session = FWPM_SESSION0 { flags: FWPM_SESSION_FLAG_DYNAMIC, ..Default::default() };
        Engine::open_with(Some(&session))
    }

    fn open_with(session: Option<&FWPM_SESSION0>) -> Result<Engine, LaunchError> {
        let mut handle: HANDLE = std::ptr::null_mut();
        let session = session.map_or(std::ptr::null(), |s| s as *const FWPM_SESSION0);
        // SAFETY: local engine, default authentication, an optional session that outlives the
        // call; `handle` receives it.
        let err = unsafe {
            FwpmEngineOpen0(std::ptr::null(), RPC_C_AUTHN_DEFAULT as u32, std::ptr::null(), session, &mut handle)
        };
        check("opening the filter engine", "FwpmEngineOpen0", err)?;
        Ok(Engine(handle))
    }

    /// The DACL of `object` (`key` None: the container of all filters); None: a NULL DACL,
    /// which grants everyone everything.
    pub fn dacl(&self, object: Object, key: Option<Guid>) -> Result<Option<Acl>, LaunchError> {
        let k = key.map(guid);
        let kp = k.as_ref().map_or(std::ptr::null(), |g| g as *const GUID);
        let (mut owner, mut group) = (std::ptr::null_mut(), std::ptr::null_mut());
        let (mut dacl, mut sacl) = (std::ptr::null_mut(), std::ptr::null_mut());
        let mut sd: windows_sys::Win32::Security::PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        let info = windows_sys::Win32::Security::DACL_SECURITY_INFORMATION;
        let err = match object {
            // SAFETY: an open engine, a key that lives through the call (or null for the
            // container); the descriptor is engine memory, copied and freed below.
            Object::Filter => unsafe {
                FwpmFilterGetSecurityInfoByKey0(self.0, kp, info, &mut owner, &mut group, &mut dacl, &mut sacl, &mut sd)
            },
            // SAFETY: as above.
            Object::SubLayer => unsafe {
                FwpmSubLayerGetSecurityInfoByKey0(
                    self.0, kp, info, &mut owner, &mut group, &mut dacl, &mut sacl, &mut sd,
                )
            },
        };
        check("reading the security of a WFP object", "Fwpm*GetSecurityInfoByKey0", err)?;
        let bytes = if dacl.is_null() {
            None
        } else {
            // SAFETY: the DACL points into the descriptor the call returned, at an ACL header.
            let size = usize::from(unsafe { (*dacl).AclSize });
            // SAFETY: an ACL's header holds its whole size.
            Some(unsafe { copy_bytes(dacl as *const u8, size) })
        };
        let mut p = sd;
        // SAFETY: memory the engine allocated for this call (the DACL points into it), freed
        // once, after the copy.
        unsafe { FwpmFreeMemory0(&mut p) };
        bytes
            .map(|b| Acl::from_bytes(&b).map_err(|e| LaunchError::internal(format!("the DACL of a WFP object: {e}"))))
            .transpose()
    }

    /// Replaces the DACL of `object` (outside any transaction, as the engine requires).
    pub fn set_dacl(&self, object: Object, key: Option<Guid>, acl: &Acl) -> Result<(), LaunchError> {
        let k = key.map(guid);
        let kp = k.as_ref().map_or(std::ptr::null(), |g| g as *const GUID);
        let bytes = Aligned::new(&acl.to_bytes());
        let info = windows_sys::Win32::Security::DACL_SECURITY_INFORMATION;
        let (no_sid, no_acl) = (std::ptr::null(), std::ptr::null());
        let err = match object {
            // SAFETY: an open engine, a key (or null) and an aligned binary ACL that live
            // through the call.
            Object::Filter => unsafe {
                FwpmFilterSetSecurityInfoByKey0(self.0, kp, info, no_sid, no_sid, bytes.ptr(), no_acl)
            },
            // SAFETY: as above.
            Object::SubLayer => unsafe {
                FwpmSubLayerSetSecurityInfoByKey0(self.0, kp, info, no_sid, no_sid, bytes.ptr(), no_acl)
            },
        };
        check("changing the security of a WFP object", "Fwpm*SetSecurityInfoByKey0", err)
    }

    /// Adds `ace` to the DACL of `object` unless it is there.
    pub fn allow(&self, object: Object, key: Option<Guid>, ace: Ace) -> Result<(), LaunchError> {
        let Some(mut acl) = self.dacl(object, key)? else { return Ok(()) };
        if acl.add_explicit(ace) {
            self.set_dacl(object, key, &acl)?;
        }
        Ok(())
    }

    /// Removes the explicit entry `ace` (one [`Engine::allow`] added) from the DACL of `object`.
    pub fn revoke(&self, object: Object, key: Option<Guid>, ace: &Ace) -> Result<(), LaunchError> {
        let Some(mut acl) = self.dacl(object, key)? else { return Ok(()) };
        if acl.remove_explicit(ace) {
            self.set_dacl(object, key, &acl)?;
        }
        Ok(())
    }

    /// Runs `f` in a transaction: all of it or nothing.
    pub fn transaction<T>(&self, f: impl FnOnce(&Engine) -> Result<T, LaunchError>) -> Result<T, LaunchError> {
        // SAFETY: an open engine handle.
        check("starting a filter transaction", "FwpmTransactionBegin0", unsafe { FwpmTransactionBegin0(self.0, 0) })?;
        match f(self) {
            Ok(v) => {
                // SAFETY: a transaction is open on this handle.
                let err = unsafe { FwpmTransactionCommit0(self.0) };
                check("committing the filters", "FwpmTransactionCommit0", err)?;
                Ok(v)
            }
            Err(e) => {
                // SAFETY: a transaction is open on this handle.
                unsafe { FwpmTransactionAbort0(self.0) };
                Err(e)
            }
        }
    }

    /// Adds ringfence's persistent provider and sublayer (already present is fine).
    pub fn add_provider_and_sublayer(&self) -> Result<(), LaunchError> {
        let mut name = wide("ringfence");
        let mut desc = wide("ringfence sandbox: network limits of the sandbox account");
        let provider = FWPM_PROVIDER0 {
            providerKey: guid(PROVIDER_KEY),
            displayData: FWPM_DISPLAY_DATA0 { name: name.as_mut_ptr(), description: desc.as_mut_ptr() },
            flags: FWPM_PROVIDER_FLAG_PERSISTENT,
            providerData: FWP_BYTE_BLOB { size: 0, data: std::ptr::null_mut() },
            serviceName: std::ptr::null_mut(),
        };
        // SAFETY: the structure and its strings live through the call; no security descriptor.
        let err = unsafe { FwpmProviderAdd0(self.0, &provider, std::ptr::null_mut()) };
        check_unless(FWP_E_ALREADY_EXISTS, "adding the WFP provider", "FwpmProviderAdd0", err)?;
        let mut provider_key = guid(PROVIDER_KEY);
        let sublayer = FWPM_SUBLAYER0 {
            subLayerKey: guid(SUBLAYER_KEY),
            displayData: FWPM_DISPLAY_DATA0 { name: name.as_mut_ptr(), description: desc.as_mut_ptr() },
            flags: FWPM_SUBLAYER_FLAG_PERSISTENT,
            providerKey: &mut provider_key,
            providerData: FWP_BYTE_BLOB { size: 0, data: std::ptr::null_mut() },
            weight: SUBLAYER_WEIGHT,
        };
        // SAFETY: as above.
        let err = unsafe { FwpmSubLayerAdd0(self.0, &sublayer, std::ptr::null_mut()) };
        check_unless(FWP_E_ALREADY_EXISTS, "adding the WFP sublayer", "FwpmSubLayerAdd0", err)?;
        Ok(())
    }

    /// Adds one filter in ringfence's sublayer: persistent and ringfence's provider's (what
    /// `setup` installs), or neither (a run's permits, in a dynamic session).
    pub fn add_filter(&self, spec: &FilterSpec, persistent: bool) -> Result<(), LaunchError> {
        let mut name = wide(&spec.name);
        let mut desc = wide(spec.to_string());
        // Storage the condition values point into; sized up front so nothing moves.
        let mut blobs: Vec<FWP_BYTE_BLOB> = Vec::with_capacity(spec.conditions.len());
        let mut sds: Vec<Vec<u8>> = Vec::with_capacity(spec.conditions.len());
        let mut v6: Vec<FWP_BYTE_ARRAY16> = Vec::with_capacity(spec.conditions.len());
        let mut conditions: Vec<FWPM_FILTER_CONDITION0> = Vec::with_capacity(spec.conditions.len());
        for c in &spec.conditions {
            let mut value = FWP_CONDITION_VALUE0::default();
            match c {
                Condition::User { sd, .. } => {
                    sds.push(sd.clone());
                    let bytes = sds.last_mut().expect("just pushed");
                    blobs.push(FWP_BYTE_BLOB { size: bytes.len() as u32, data: bytes.as_mut_ptr() });
                    value.r#type = FWP_SECURITY_DESCRIPTOR_TYPE;
                    value.Anonymous.sd = blobs.last_mut().expect("just pushed");
                }
                Condition::Protocol(p) => {
                    value.r#type = FWP_UINT8;
                    value.Anonymous.uint8 = *p;
                }
                Condition::RemotePort(p) => {
                    value.r#type = FWP_UINT16;
                    value.Anonymous.uint16 = *p;
                }
                Condition::RemoteV4(a) => {
                    // Host byte order, as a number.
                    value.r#type = FWP_UINT32;
                    value.Anonymous.uint32 = u32::from(*a);
                }
                Condition::RemoteV6(a) => {
                    v6.push(FWP_BYTE_ARRAY16 { byteArray16: a.octets() });
                    value.r#type = FWP_BYTE_ARRAY16_TYPE;
                    value.Anonymous.byteArray16 = v6.last_mut().expect("just pushed");
                }
            }
            conditions.push(FWPM_FILTER_CONDITION0 {
                fieldKey: guid(c.field()),
                matchType: FWP_MATCH_EQUAL,
                conditionValue: value,
            });
        }
        let mut provider_key = guid(PROVIDER_KEY);
        let mut weight = FWP_VALUE0 { r#type: FWP_UINT8, ..Default::default() };
        weight.Anonymous.uint8 = spec.weight;
        let mut flags = if persistent { FWPM_FILTER_FLAG_PERSISTENT } else { FWPM_FILTER_FLAG_NONE };
        if spec.hard {
            flags |= FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT;
        }
        let mut filter = FWPM_FILTER0 {
            filterKey: guid(spec.key),
            displayData: FWPM_DISPLAY_DATA0 { name: name.as_mut_ptr(), description: desc.as_mut_ptr() },
            flags,
            providerKey: if persistent { &mut provider_key } else { std::ptr::null_mut() },
            layerKey: guid(spec.layer.key()),
            subLayerKey: guid(SUBLAYER_KEY),
            weight,
            numFilterConditions: conditions.len() as u32,
            filterCondition: conditions.as_mut_ptr(),
            ..Default::default()
        };
        filter.action.r#type = match spec.action {
            Action::Permit => FWP_ACTION_PERMIT,
            Action::Block => FWP_ACTION_BLOCK,
        };
        let mut id = 0u64;
        // SAFETY: every pointer in `filter` refers to storage in this frame that outlives the
        // call (the vectors were sized up front and never reallocated).
        let err = unsafe { FwpmFilterAdd0(self.0, &filter, std::ptr::null_mut(), &mut id) };
        check(&format!("adding the WFP filter `{}`", spec.name), "FwpmFilterAdd0", err)
    }

    /// Deletes a filter; false if it wasn't there.
    pub fn delete_filter(&self, key: Guid) -> Result<bool, LaunchError> {
        let k = guid(key);
        // SAFETY: an open engine handle and a GUID that lives through the call.
        let err = unsafe { FwpmFilterDeleteByKey0(self.0, &k) };
        check_unless(FWP_E_FILTER_NOT_FOUND, "removing a WFP filter", "FwpmFilterDeleteByKey0", err)
    }

    /// Deletes the sublayer and provider (after their filters).
    pub fn delete_provider_and_sublayer(&self) -> Result<bool, LaunchError> {
        let s = guid(SUBLAYER_KEY);
        // SAFETY: as above.
        let err = unsafe { FwpmSubLayerDeleteByKey0(self.0, &s) };
        if err == FWP_E_IN_USE as u32 {
            return Err(LaunchError::internal(
                "removing the WFP sublayer: filters that ringfence doesn't know are still in it",
            ));
        }
        let sublayer =
            check_unless(FWP_E_SUBLAYER_NOT_FOUND, "removing the WFP sublayer", "FwpmSubLayerDeleteByKey0", err)?;
        let p = guid(PROVIDER_KEY);
        // SAFETY: as above.
        let err = unsafe { FwpmProviderDeleteByKey0(self.0, &p) };
        let provider =
            check_unless(FWP_E_PROVIDER_NOT_FOUND, "removing the WFP provider", "FwpmProviderDeleteByKey0", err)?;
        Ok(sublayer || provider)
    }

    /// Whether a filter with `key` exists.
    pub fn has_filter(&self, key: Guid) -> Result<bool, LaunchError> {
        let k = guid(key);
        let mut filter: *mut FWPM_FILTER0 = std::ptr::null_mut();
        // SAFETY: `filter` receives engine-allocated memory, freed below.
        let err = unsafe { FwpmFilterGetByKey0(self.0, &k, &mut filter) };
        if !filter.is_null() {
            let mut p = filter.cast::<std::ffi::c_void>();
            // SAFETY: memory the engine allocated for this call, freed once.
            unsafe { FwpmFreeMemory0(&mut p) };
        }
        check_unless(FWP_E_FILTER_NOT_FOUND, "reading the WFP filters", "FwpmFilterGetByKey0", err)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { FwpmEngineClose0(self.0) };
    }
}
