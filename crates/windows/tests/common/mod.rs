//! Fixtures shared by the crate's unit tests (as `crate::fixtures`), the enforcement tests and
//! the CLI tests: policies and limits built in one place, reading a child's output while it
//! runs, where those tests may run, and the network probes they make. Each test binary uses
//! some of them.

#![allow(dead_code)]

use ringfence_policy::{FsRules, Limits, NetworkMode, Policy, ProfileName};
use std::path::PathBuf;

/// No limit at all; tests set the ones they need (`Limits { pids: Some(8), ..no_limits() }`).
pub fn no_limits() -> Limits {
    Limits {
        timeout: None,
        memory: None,
        memory_explicit: false,
        pids: None,
        pids_explicit: false,
        cpus: None,
        tmp_size: ringfence_policy::DEFAULT_TMP_SIZE,
    }
}

/// A workspace-profile policy with `fs` as its file rules, no limits, no network and no
/// allowances; tests override the rest (`Policy { limits, ..policy(…) }`).
pub fn policy(workspace: PathBuf, home: PathBuf, fs: FsRules) -> Policy {
    Policy {
        profile: ProfileName::Workspace,
        agent: None,
        workspace,
        home,
        fs,
        env: Default::default(),
        limits: no_limits(),
        network: NetworkMode::None,
        net: Default::default(),
        allow_ptrace: false,
        allow_degraded: false,
        allow_writable_home: false,
        allow_writable_home_config: false,
        caches: vec![],
        exec: Default::default(),
        sources: vec![],
    }
}

/// Reads `input` to its end on a thread of its own, so a child can't block on a full pipe
/// while the test waits for it. (Only the tests that start processes, on Windows, need it.)
#[cfg(windows)]
pub fn read_in_background(mut input: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = input.read_to_string(&mut out);
        out
    })
}

/// Whether this process runs under Wine, which enforces none of the restricted token, the ACLs
/// or the WFP filters (and implements some calls as stubs).
#[cfg(windows)]
pub fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
    // SAFETY: a NUL-terminated name; ntdll is always loaded.
    let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
    // SAFETY: a loaded module and a NUL-terminated name.
    unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some() }
}

/// Stops a test of the `suite` tests that was asked to run where it proves nothing: under
/// Wine, or before `ringfence setup`.
#[cfg(windows)]
pub fn require_windows_host(suite: &str) {
    assert!(!under_wine(), "the {suite} tests prove nothing under Wine; run them on Windows");
    assert_eq!(
        std::env::var_os("RINGFENCE_WINDOWS_ENFORCEMENT").as_deref(),
        Some("1".as_ref()),
        "run `ringfence setup` (elevated), then set RINGFENCE_WINDOWS_ENFORCEMENT=1 (scripts/test-windows.ps1 does both)"
    );
}

/// The caller's profile folder.
#[cfg(windows)]
pub fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("USERPROFILE").expect("USERPROFILE"))
}

/// A PowerShell probe: a TCP connection to 127.0.0.1:`port` that sends `tag`.
pub fn tcp_probe(port: u16, tag: &str) -> String {
    format!(
        "try {{ $c = New-Object Net.Sockets.TcpClient; $c.Connect('127.0.0.1', {port}); \
           $w = New-Object IO.StreamWriter($c.GetStream()); $w.Write('{tag}'); $w.Flush(); $c.Close(); 'open:{tag}' }} \
         catch {{ 'closed:{tag}' }}"
    )
}

/// What every connection that reached a non-blocking listener sent, read now.
pub fn received(listener: &std::net::TcpListener) -> Vec<String> {
    use std::io::Read;
    let mut got = Vec::new();
    while let Ok((mut s, _)) = listener.accept() {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        got.push(text);
    }
    got
}
