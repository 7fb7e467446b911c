//! The job object every sandboxed process runs in, as plain data built from the policy's
//! limits. The job kills everything in it when its last handle closes (the supervisor holds
//! it, so a crashed supervisor takes the run with it), caps the number of processes and the
//! committed memory, optionally caps CPU, and keeps the processes away from the user's
//! clipboard, windows and desktop settings.

use crate::error::LaunchError;
use crate::report::Layer;
use ringfence_policy::Limits;

/// JOB_OBJECT_LIMIT_* bits (winnt.h).
pub mod limit {
    pub const ACTIVE_PROCESS: u32 = 0x0000_0008;
    pub const JOB_MEMORY: u32 = 0x0000_0200;
    pub const DIE_ON_UNHANDLED_EXCEPTION: u32 = 0x0000_0400;
    pub const BREAKAWAY_OK: u32 = 0x0000_0800;
    pub const SILENT_BREAKAWAY_OK: u32 = 0x0000_1000;
    pub const KILL_ON_JOB_CLOSE: u32 = 0x0000_2000;
}

/// JOB_OBJECT_UILIMIT_* bits.
pub mod ui {
    pub const HANDLES: u32 = 0x0001;
    pub const READCLIPBOARD: u32 = 0x0002;
    pub const WRITECLIPBOARD: u32 = 0x0004;
    pub const SYSTEMPARAMETERS: u32 = 0x0008;
    pub const DISPLAYSETTINGS: u32 = 0x0010;
    pub const GLOBALATOMS: u32 = 0x0020;
    pub const DESKTOP: u32 = 0x0040;
    pub const EXITWINDOWS: u32 = 0x0080;
    /// Every restriction: the sandbox gets no USER handles of other processes, no clipboard,
    /// no global atoms, no system-wide settings, no desktops of its own, no logoff/shutdown.
    pub const ALL: u32 = HANDLES
        | READCLIPBOARD
        | WRITECLIPBOARD
        | SYSTEMPARAMETERS
        | DISPLAYSETTINGS
        | GLOBALATOMS
        | DESKTOP
        | EXITWINDOWS;
}

/// JOB_OBJECT_CPU_RATE_CONTROL_* bits.
pub mod cpu {
    pub const ENABLE: u32 = 0x1;
    pub const HARD_CAP: u32 = 0x4;
}

/// The job's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobPlan {
    /// JOBOBJECT_BASIC_LIMIT_INFORMATION.LimitFlags.
    pub limit_flags: u32,
    /// ActiveProcessLimit, when capped.
    pub active_processes: Option<u32>,
    /// JobMemoryLimit in bytes, when capped.
    pub job_memory: Option<u64>,
    /// CpuRate in hundredths of a percent of the whole machine (1..=10000), when capped.
    pub cpu_rate: Option<u32>,
    /// JOBOBJECT_BASIC_UI_RESTRICTIONS.UIRestrictionsClass.
    pub ui_restrictions: u32,
}

impl JobPlan {
    /// Builds the job for `limits` on a machine with `logical_cpus` processors.
    pub fn from_limits(limits: &Limits, logical_cpus: u32) -> Result<JobPlan, LaunchError> {
        let mut flags = limit::KILL_ON_JOB_CLOSE | limit::DIE_ON_UNHANDLED_EXCEPTION;
        let active_processes = match limits.pids {
            Some(0) => {
                return Err(LaunchError::policy("the process limit is 0", "allow at least one process (`--pids 1`)"))
            }
            Some(n) => {
                flags |= limit::ACTIVE_PROCESS;
                Some(u32::try_from(n).unwrap_or(u32::MAX))
            }
            None => None,
        };
        let job_memory = match limits.memory {
            Some(m) if m.0 == 0 => {
                return Err(LaunchError::policy("the memory limit is 0", "give a positive limit, such as `512M`"))
            }
            Some(m) => {
                flags |= limit::JOB_MEMORY;
                Some(m.0)
            }
            None => None,
        };
        let cpu_rate = match limits.cpus {
            Some(c) if !(c.is_finite() && c > 0.0) => {
                return Err(LaunchError::policy(
                    format!("the CPU limit {c} is not positive"),
                    "give a limit like `2` or `0.5`",
                ))
            }
            Some(c) if c >= logical_cpus.max(1) as f64 => None,
            Some(c) => Some(((c / logical_cpus.max(1) as f64) * 10_000.0).round().clamp(1.0, 10_000.0) as u32),
            None => None,
        };
        Ok(JobPlan { limit_flags: flags, active_processes, job_memory, cpu_rate, ui_restrictions: ui::ALL })
    }

    /// Whether breaking away from the job is possible (never, for a sandbox).
    pub fn allows_breakaway(&self) -> bool {
        self.limit_flags & (limit::BREAKAWAY_OK | limit::SILENT_BREAKAWAY_OK) != 0
    }

    /// How the job is described in `run.start`.
    pub fn layer(&self, requested_cpus: Option<f64>) -> Layer {
        let mut parts = vec!["kill on close (nothing outlives the run)".to_string()];
        if let Some(n) = self.active_processes {
            parts.push(format!("at most {n} processes"));
        }
        if let Some(m) = self.job_memory {
            parts.push(format!("{m} bytes of committed memory"));
        }
        match (self.cpu_rate, requested_cpus) {
            (Some(r), _) => parts.push(format!("CPU hard cap {}.{:02}% of the machine", r / 100, r % 100)),
            (None, Some(c)) => parts.push(format!("no CPU cap ({c} CPUs is the whole machine)")),
            (None, None) => {}
        }
        parts.push("no clipboard, global atoms, foreign window handles or system settings".into());
        Layer::new("job object", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::no_limits as limits;
    use ringfence_policy::{ByteSize, HumanDuration};

    #[test]
    fn always_kills_on_close_and_restricts_ui() {
        let plan = JobPlan::from_limits(&limits(), 8).unwrap();
        assert_eq!(plan.limit_flags, limit::KILL_ON_JOB_CLOSE | limit::DIE_ON_UNHANDLED_EXCEPTION);
        assert_eq!(plan.ui_restrictions, 0xFF);
        assert!(!plan.allows_breakaway());
        assert_eq!((plan.active_processes, plan.job_memory, plan.cpu_rate), (None, None, None));
    }

    #[test]
    fn limits_become_job_limits() {
        let l = Limits {
            memory: Some(ByteSize(512 << 20)),
            pids: Some(64),
            cpus: Some(2.0),
            timeout: Some(HumanDuration(std::time::Duration::from_secs(5))),
            ..limits()
        };
        let plan = JobPlan::from_limits(&l, 8).unwrap();
        assert_ne!(plan.limit_flags & limit::ACTIVE_PROCESS, 0);
        assert_ne!(plan.limit_flags & limit::JOB_MEMORY, 0);
        assert_eq!(plan.active_processes, Some(64));
        assert_eq!(plan.job_memory, Some(512 << 20));
        assert_eq!(plan.cpu_rate, Some(2500), "2 of 8 CPUs is 25.00%");
        let layer = plan.layer(Some(2.0));
        assert!(layer.detail.contains("at most 64 processes"), "{}", layer.detail);
        assert!(layer.detail.contains("25.00%"), "{}", layer.detail);
    }

    #[test]
    fn cpu_rate_edges() {
        let rate = |c: f64, n: u32| JobPlan::from_limits(&Limits { cpus: Some(c), ..limits() }, n).unwrap().cpu_rate;
        assert_eq!(rate(8.0, 8), None, "the whole machine needs no cap");
        assert_eq!(rate(16.0, 8), None);
        assert_eq!(rate(0.5, 1), Some(5000));
        assert_eq!(rate(0.00001, 64), Some(1), "never a zero rate");
        assert_eq!(rate(1.0, 0), None, "an unknown CPU count counts as one");
        assert!(JobPlan::from_limits(&Limits { cpus: Some(0.0), ..limits() }, 4).is_err());
        assert!(JobPlan::from_limits(&Limits { cpus: Some(f64::NAN), ..limits() }, 4).is_err());
    }

    #[test]
    fn zero_and_huge_limits() {
        assert!(JobPlan::from_limits(&Limits { pids: Some(0), ..limits() }, 4).is_err());
        assert!(JobPlan::from_limits(&Limits { memory: Some(ByteSize(0)), ..limits() }, 4).is_err());
        let plan = JobPlan::from_limits(&Limits { pids: Some(u64::MAX), ..limits() }, 4).unwrap();
        assert_eq!(plan.active_processes, Some(u32::MAX));
    }
}
