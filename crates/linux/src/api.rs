//! What a Linux run enforced and how it ended, before the contract's terms (backend.rs).

use ringfence_audit::{EndReason, ReviewFinding};
use ringfence_backend::Exit;
use std::time::Duration;

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

/// How a run ended, with the kernel's resource usage of init.
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
    pub exit: Exit,
    pub reason: EndReason,
    pub duration: Duration,
    pub rusage: libc::rusage,
    /// What the exec monitor counted, when it ran.
    pub processes: Option<ringfence_backend::ProcessCounts>,
    /// The run's peak memory use in bytes, from its memory cgroup.
    pub peak_memory: Option<u64>,
}
