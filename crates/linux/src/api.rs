//! The types callers of the backend see: what to launch, and what a run enforced and how it
//! ended.

use crate::cgroup::CgroupStats;
use ringfence_audit::{EndReason, ReviewFinding};
use ringfence_policy::Policy;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// Where one of the command's standard streams goes.
#[derive(Debug)]
pub enum StdioSpec {
    Inherit,
    Null,
    /// This descriptor becomes the stream (a pipe end, a file).
    Fd(OwnedFd),
}

/// Everything needed to start one sandboxed command.
#[derive(Debug)]
pub struct LaunchSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The command's complete environment (already scrubbed by the policy).
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub policy: Policy,
    pub stdio: [StdioSpec; 3],
    /// Give the command its own pseudo-terminal, relayed to our stdin and stdout.
    pub terminal: bool,
}

/// One protection and how it is enforced on this run.
pub use ringfence_audit::Layer as LayerStatus;

/// What this run enforces, and what it could not (only with `allow_degraded`).
#[derive(Clone, Debug, Default)]
pub struct Enforcement {
    pub enforced: Vec<LayerStatus>,
    pub not_enforced: Vec<LayerStatus>,
    /// Default protections this machine can't carry (the memory cap without a cgroup): no
    /// reason to refuse the run, but reported with `not_enforced` in run.start.
    pub missing_defaults: Vec<LayerStatus>,
    pub landlock_abi: i32,
    pub limits: Option<String>,
    pub kernel: String,
}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

#[derive(Clone, Debug)]
pub struct Outcome {
    /// What the run left in the writable roots that would run code on the host later, and
    /// what the review did about it.
    pub git_findings: Vec<ReviewFinding>,
    /// What the review could not review: the run's reason is then `ReviewFailed`.
    pub review_failures: Vec<ReviewFinding>,
    /// What ringfence made for the run and could not remove afterwards (a placeholder), each
    /// naming the path.
    pub left: Vec<String>,
    pub exit: ExitKind,
    pub reason: EndReason,
    pub duration: Duration,
    pub rusage: libc::rusage,
    pub cgroup: CgroupStats,
}

/// Listening sockets on the sandbox's loopback, for the gateway to serve from outside.
#[derive(Debug)]
pub struct GatewayListeners {
    pub http: std::net::TcpListener,
    pub socks: std::net::TcpListener,
}
