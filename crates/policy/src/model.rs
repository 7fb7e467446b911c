//! The resolved policy: what one run may read, write, keep and use.

use crate::agents::Agent;
use crate::caches::{CacheDir, CacheTool};
use crate::env::EnvRules;
use crate::modes::{NetworkMode, ProfileName};
use crate::network::NetworkRules;
use crate::origin::Origin;
use crate::rules::FsRules;
use crate::units::{ByteSize, HumanDuration};
use serde::Serialize;
use std::path::PathBuf;

/// A cache in force: where the tool keeps it on this host, the variables that placed it there
/// (the command gets them too, so the tool inside looks in the same place), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheRule {
    pub tool: CacheTool,
    pub dirs: Vec<CacheDir>,
    pub env: Vec<(String, String)>,
    pub origin: Origin,
}

/// Resource limits. `None` means no limit of that kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limits {
    pub timeout: Option<HumanDuration>,
    pub memory: Option<ByteSize>,
    /// Whether `memory` (or its absence) was set by a config file or flag rather than left at
    /// the default, half of physical memory: only the default may go without a cgroup to carry
    /// it, and the cgroup v1 share for socket buffers is carved out of either.
    pub memory_explicit: bool,
    pub pids: Option<u64>,
    /// Whether `pids` was set by a config file or flag rather than left at the default; an
    /// explicit limit is enforced exactly, the default may use a cheaper, approximate cap.
    pub pids_explicit: bool,
    pub cpus: Option<f64>,
    pub tmp_size: ByteSize,
}

/// The complete, validated policy for one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub profile: ProfileName,
    /// The agent profile layered over `profile` (`--profile agent:NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<Agent>,
    /// The command's working directory; writable under the `workspace` and `strict` profiles.
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub fs: FsRules,
    pub env: EnvRules,
    pub limits: Limits,
    pub network: NetworkMode,
    /// Host rules, presets, private ranges and resolver of the `allow` mode.
    pub net: NetworkRules,
    pub allow_ptrace: bool,
    /// Run even where a requested layer can't be enforced (warns and records it).
    pub allow_degraded: bool,
    /// A writable root may hold $HOME (checked again by backends once links are resolved).
    pub allow_writable_home: bool,
    /// Writable roots may lie in $HOME's configuration, program and cache areas
    /// (`profile::home_tool_area`; checked again by backends once links are resolved).
    pub allow_writable_home_config: bool,
    /// Exec monitoring and the exec rules.
    pub exec: crate::exec::ExecRules,
    /// Tools' caches shown as overlays: the host's cache read-only below, the run's changes in
    /// a layer the host's tools never read.
    pub caches: Vec<CacheRule>,
    /// Config files that were applied, in order.
    pub sources: Vec<PathBuf>,
}

impl Policy {
    /// The profile as `--profile` names it: `workspace`, or `agent:claude` for an agent's
    /// layer over `workspace`.
    pub fn profile_label(&self) -> String {
        match self.agent {
            Some(agent) if self.profile == ProfileName::Workspace => agent.to_string(),
            Some(agent) => format!("{} + {agent}", self.profile),
            None => self.profile.to_string(),
        }
    }

    /// A stable digest of the policy, for the run.start event.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).unwrap_or_default();
        let hash = Sha256::digest(json);
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }
}
