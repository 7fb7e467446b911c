//! ringfence's Linux backend. The supervisor plans the mount view, the seccomp filter and the
//! limits, then clones a child into new namespaces; the child, pid 1 of its pid namespace,
//! builds the view, confines itself and runs the command. See docs/ARCHITECTURE.md.

#![cfg(target_os = "linux")]
#![deny(clippy::too_many_lines, clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

mod api;
mod cache_plan;
mod caches;
mod canon;
mod cgroup;
mod cleaner;
mod enforcement;
mod error;
pub mod features;
mod gitcheck;
mod host;
mod init;
mod landlock_rules;
mod launch;
mod limits;
mod mount_plan;
pub mod mounts;
mod notify;
mod output;
mod placeholder;
pub mod plan;
mod protocol;
mod pty;
mod resolve;
mod rollback;
pub mod roots;
mod sandbox;
pub mod seccomp;
mod secrets;
mod sys;
mod view;

pub use cgroup::{memory_origin, CgroupProbe, CgroupStats, LimitMechanism, LimitPlan, CGROUP_REMEDY};
pub use error::{ErrorKind, LaunchError};
pub use features::{FeatureReport, Features};
pub use output::{inherited_output_path, open_output, OutputFile, OutputMode};
pub use ringfence_audit::ReviewFinding;

/// Writes to a descriptor inherited from the caller (`--json-status 3`), as it is: appending,
/// socket or pipe alike.
pub fn write_inherited_fd(fd: std::os::fd::RawFd, data: &[u8]) -> std::io::Result<()> {
    sys::write_fd(fd, data)
}

/// Whether the caller passed this descriptor open.
pub fn inherited_fd_is_open(fd: std::os::fd::RawFd) -> bool {
    sys::fd_is_open(fd)
}
pub use api::{Enforcement, ExitKind, GatewayListeners, LaunchSpec, LayerStatus, Outcome, StdioSpec};
pub use launch::spawn;
pub use protocol::FORWARDED_SIGNALS;
pub use sandbox::{Sandbox, TIMEOUT_GRACE};
