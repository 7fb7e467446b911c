//! Limits without a cgroup: rlimits and CPU affinity, applied by init before the command starts.

use crate::error::ChildError;
use nix::sys::resource::{setrlimit, Resource};

/// Limits to apply inside the sandbox when no cgroup carries them.
#[derive(Clone, Debug, Default)]
pub struct RlimitPlan {
    /// RLIMIT_NPROC: counted per user namespace, so it caps the sandbox's own processes.
    pub nproc: Option<u64>,
    /// RLIMIT_AS: address space, the only memory rlimit the kernel still enforces.
    pub address_space: Option<u64>,
    /// Number of CPUs to pin the sandbox to.
    pub cpus: Option<usize>,
}

pub fn apply_fallback(plan: &RlimitPlan) -> Result<(), ChildError> {
    let set = |res: Resource, value: u64, what: &str| {
        setrlimit(res, value, value).map_err(|e| ChildError::internal(format!("setting the {what} rlimit: {e}")))
    };
    if let Some(n) = plan.nproc {
        set(Resource::RLIMIT_NPROC, n, "process")?;
    }
    if let Some(bytes) = plan.address_space {
        set(Resource::RLIMIT_AS, bytes, "address space")?;
    }
    if let Some(cpus) = plan.cpus {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        let current = sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map_err(|e| ChildError::internal(format!("reading CPU affinity: {e}")))?;
        let mut chosen = CpuSet::new();
        let mut picked = 0;
        for cpu in 0..CpuSet::count() {
            if picked < cpus && current.is_set(cpu).unwrap_or(false) {
                let _ = chosen.set(cpu);
                picked += 1;
            }
        }
        if picked > 0 {
            sched_setaffinity(nix::unistd::Pid::from_raw(0), &chosen)
                .map_err(|e| ChildError::internal(format!("setting CPU affinity: {e}")))?;
        }
    }
    Ok(())
}
