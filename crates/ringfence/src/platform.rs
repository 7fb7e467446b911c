//! The backend this build runs on, and what the front ends ask of it.

use crate::Error;
use ringfence_backend::{Backend, Explanation, OutputFile, Probe};
use ringfence_policy::Policy;
use std::path::Path;

/// The platform backend of this build.
#[cfg(target_os = "linux")]
pub type Platform = ringfence_linux::Linux;
#[cfg(windows)]
pub type Platform = ringfence_windows::Windows;
#[cfg(target_os = "macos")]
pub type Platform = ringfence_macos::Macos;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
pub type Platform = crate::unsupported::Unsupported;

/// Call first thing in `main` of a program that runs sandboxes: it blocks the signals the
/// supervisor forwards (none may be lost before a sandbox can take them), fills standard
/// descriptors the caller left closed, and, where this program doubles as a helper of the
/// backend (the Windows runner), does that work and returns the exit code to exit with as
/// `Err`.
pub fn start_process() -> Result<crate::Signals, i32> {
    Platform::start_process()
}

/// Starts receiving the signals [`start_process`] blocked: call it once the descriptors the
/// caller passed (`--json-status 3`) were taken over, so that what receives the signals can't
/// take such a number.
pub fn arm_signals(signals: &mut crate::Signals) {
    Platform::arm_signals(signals)
}

/// Undoes what [`start_process`] did to signals, in a program that starts its sandboxes as
/// child processes (each a `ringfence run`) instead of supervising one: the MCP server. Call it
/// before starting any thread.
pub fn release_signals(signals: crate::Signals) {
    Platform::release_signals(signals)
}

/// What `ringfence explain` says about `policy` on this machine: each rule and the layers that
/// enforce it. An error where a run of the policy could not build its sandbox.
pub fn explain(policy: &Policy) -> Result<Explanation, Error> {
    Platform::explain(policy).map_err(Error::Launch)
}

/// What this machine can enforce, for `ringfence check`.
pub fn probe() -> Probe {
    Platform::probe()
}

/// The backend's one-time installation (Windows); what was done.
pub fn setup() -> Result<Vec<String>, Error> {
    Platform::setup().map_err(Error::Launch)
}

/// Undoes [`setup`].
pub fn uninstall() -> Result<Vec<String>, Error> {
    Platform::uninstall().map_err(Error::Launch)
}

/// Opens a file ringfence writes for the caller (the event log, the status) so that nothing a
/// sandbox planted at the path redirects it; its path comes back when a run could write it.
pub fn open_output(path: &Path, policy: &Policy, append: bool) -> Result<OutputFile, Error> {
    Platform::open_output(path, policy, append).map_err(Error::Launch)
}

/// Takes over a descriptor the caller passed open (`--json-status 3`), checked the same way.
pub fn inherited_output(fd: i32, policy: &Policy) -> Result<OutputFile, Error> {
    Platform::inherited_output(fd, policy).map_err(Error::Launch)
}
