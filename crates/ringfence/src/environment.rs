//! The environment the command gets: the host's variables filtered by the policy, the
//! caller's own, and what ringfence sets (proxies, TMPDIR).

use ringfence_backend::GatewayPorts;
use ringfence_policy::{CacheTool, FsAccess, NetworkMode, Policy};
use std::ffi::OsString;
use std::path::Path;

/// An environment value as bytes, exactly on Unix; on Windows as UTF-8 (an unpaired surrogate,
/// which no real program's environment carries, becomes U+FFFD).
fn os_bytes(v: OsString) -> Vec<u8> {
    #[cfg(unix)]
    return std::os::unix::ffi::OsStringExt::into_vec(v);
    #[cfg(not(unix))]
    return v.to_string_lossy().into_owned().into_bytes();
}

fn os_string(v: Vec<u8>) -> OsString {
    #[cfg(unix)]
    return std::os::unix::ffi::OsStringExt::from_vec(v);
    #[cfg(not(unix))]
    return String::from_utf8_lossy(&v).into_owned().into();
}

/// The command's environment under `policy`, with the caller's variables `own`. `gateway`
/// names the proxies' ports in `allow` mode; `temp` is the command's TMPDIR where the library
/// sets it (the private /tmp on Linux, a folder of the run's own on macOS; the Windows backend
/// sets TEMP and TMP itself).
pub fn build(
    policy: &Policy,
    own: &[(String, String)],
    cwd: &Path,
    gateway: Option<GatewayPorts>,
    temp: Option<&str>,
) -> Vec<(OsString, OsString)> {
    build_from(std::env::vars_os(), policy, own, cwd, gateway, temp)
}

/// As [`build`], from the caller's variables `host` instead of this process's (a session's
/// command brings its caller's).
pub fn build_from(
    host: impl IntoIterator<Item = (OsString, OsString)>,
    policy: &Policy,
    own: &[(String, String)],
    cwd: &Path,
    gateway: Option<GatewayPorts>,
    temp: Option<&str>,
) -> Vec<(OsString, OsString)> {
    let host = host.into_iter().filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v)));
    let mut rules = policy.env.clone();
    rules.set.extend(own.iter().cloned());
    // A cache found through a variable (CARGO_HOME, PIP_CACHE_DIR, ...) is where the overlay
    // shows it: the tool inside gets the same variable, unless set otherwise.
    for (k, v) in policy.caches.iter().flat_map(|c| &c.env) {
        rules.set.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut overrides = vec![("PWD", cwd.to_string_lossy().into_owned()), ("RINGFENCE", "1".to_string())];
    if let Some(tmp) = temp {
        overrides.push(("TMPDIR", tmp.to_string()));
    }
    if let (NetworkMode::Allow, Some(ports)) = (policy.network, gateway) {
        overrides.extend(ringfence_gateway::proxy_environment(ports.http, ports.socks));
        // npm refuses to install at all when it can't write its cache (~/.npm, outside the
        // workspace by default): give it one in the command's temporary folder, unless the
        // policy shares its cache (`--cache npm`, implied by the npm preset) or lets it write
        // its own, or the caller chose one.
        let caller_set = rules.set.keys().any(|k| k.eq_ignore_ascii_case("npm_config_cache"));
        let shared = policy.caches.iter().any(|c| c.tool == CacheTool::Npm);
        let writable = policy.fs.access(&policy.home.join(".npm")).access == FsAccess::Write;
        if let Some(tmp) = temp.filter(|_| !caller_set && !shared && !writable) {
            overrides.push(("npm_config_cache", format!("{tmp}/.npm")));
        }
    }
    rules
        .apply(host.map(|(k, v)| (k, os_bytes(v))), &overrides)
        .into_iter()
        .map(|(k, v)| (OsString::from(k), os_string(v)))
        .collect()
}
