//! ringfence's macOS backend: the policy compiled to a Seatbelt profile (SBPL) and a command
//! launched under it. See docs/macos.md.
//!
//! The compiler ([`profile`], [`regions`], [`resolve`], [`sbpl`], [`platform`], [`services`])
//! and the reports ([`report`]) are platform-neutral and tested on every host, golden profiles
//! included (tests/golden.rs). Applying a profile, the launch and the watch over the process
//! tree are `cfg(target_os = "macos")`.

#![deny(clippy::too_many_lines)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

pub mod explain;
pub mod platform;
pub mod profile;
pub mod regions;
pub mod report;
pub mod resolve;
pub mod sbpl;
pub mod services;

#[cfg(target_os = "macos")]
mod backend;
#[cfg(target_os = "macos")]
mod child;
#[cfg(target_os = "macos")]
mod launch;
#[cfg(target_os = "macos")]
mod pty;
#[cfg(target_os = "macos")]
mod relay;
#[cfg(target_os = "macos")]
mod signals;
#[cfg(target_os = "macos")]
mod sys;
#[cfg(target_os = "macos")]
mod tree;

#[cfg(target_os = "macos")]
pub use backend::{Macos, Sandbox as MacosSandbox, Signals};
#[cfg(target_os = "macos")]
pub use launch::{
    bind_gateway, os_version, probe, spawn, ExitKind, GatewayPorts, LaunchSpec, Outcome, Sandbox, TempDir,
    TIMEOUT_GRACE,
};
#[cfg(target_os = "macos")]
pub use signals::ForwardedSignals;

pub use profile::{compile, CompileError, Compiled, Net, Request};
pub use report::Enforcement;

/// Whether ringfence runs as root (RLIMIT_NPROC does not apply to root).
#[cfg(target_os = "macos")]
pub fn is_root() -> bool {
    sys::uid() == 0
}
