//! What a run enforces and how, decided before the clone: the requested protections this
//! machine carries, the mechanism of the limits (a cgroup made for the run, or rlimits), and the
//! refusal of a run that asks for what can't be enforced (unless --allow-degraded).

use crate::api::{Enforcement, LayerStatus};
use crate::cgroup::{self, CgroupJoin, CgroupProbe, LimitMechanism, LimitPlan, RunCgroup, SocketGuard};
use crate::limits::RlimitPlan;
use crate::plan::MountPlan;
use crate::rollback::Rollback;
use ringfence_audit::LaunchError;
use ringfence_policy::{NetworkMode, Policy, HTTP_PROXY_PORT, SOCKS_PROXY_PORT};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which requested protections are enforced, and how; which can't be.
fn assess(policy: &Policy, landlock_abi: i32, plan: &LimitPlan, root: bool) -> Enforcement {
    let mut e = Enforcement { landlock_abi, ..Default::default() };
    let layer = |n: &str, d: String| LayerStatus { name: n.into(), detail: d };
    e.enforced.push(layer(
        "namespaces",
        format!("user, mount, pid, ipc, uts, cgroup{}", if policy.network != NetworkMode::Host { ", net" } else { "" }),
    ));
    if policy.network == NetworkMode::Allow {
        e.enforced.push(layer(
            "network gateway",
            format!(
                "{} allow rules, {} deny rules; HTTP proxy 127.0.0.1:{} and SOCKS5 127.0.0.1:{} served by the supervisor; \
                 the sandbox's network namespace has only loopback",
                policy.net.allow.len(),
                policy.net.deny.len(),
                HTTP_PROXY_PORT,
                SOCKS_PROXY_PORT
            ),
        ));
    }
    e.enforced.push(layer("mount view", "read-only host, masks, writable roots, private /tmp /dev /proc".into()));
    if landlock_abi > 0 {
        e.enforced.push(layer("landlock", format!("ABI {landlock_abi}")));
    } else {
        e.not_enforced
            .push(layer("landlock", "the kernel has no Landlock: one filesystem layer instead of two".into()));
    }
    e.enforced.push(layer("seccomp", "escalation system calls and set-id file modes refused with EPERM".into()));
    e.enforced.push(layer("no_new_privs", "capabilities dropped, setuid inert".into()));
    assess_limits(policy, plan, root, &mut e);
    e
}

/// The limits' part of [`assess`].
fn assess_limits(policy: &Policy, plan: &LimitPlan, root: bool, e: &mut Enforcement) {
    let layer = |n: &str, d: String| LayerStatus { name: n.into(), detail: d };
    if let Some(cap) = plan.pid_max {
        e.enforced.push(layer("pids limit", format!("pid namespace pid_max {cap} (default cap)")));
    }
    if let Some(detail) = plan.no_memory_detail(&policy.limits) {
        e.missing_defaults.push(layer("memory limit", format!("no memory cap: {detail}")));
    }
    if plan.controllers.is_empty() {
        return;
    }
    let rlimits = plan.mechanism == LimitMechanism::Rlimit;
    let detail = match (rlimits, &plan.why) {
        (true, Some(why)) => format!("rlimits ({why})"),
        _ => plan.mechanism.to_string(),
    };
    if rlimits && root && plan.controllers.contains(&"pids") {
        e.not_enforced.push(layer(
            "pids limit",
            "no writable cgroup, and the kernel does not apply RLIMIT_NPROC to uid 0".into(),
        ));
    }
    if rlimits && plan.memory.is_some() {
        e.not_enforced.push(layer(
            "memory limit",
            "no writable cgroup: RLIMIT_AS would cap each process's address space, not the sandbox's memory".into(),
        ));
    } else if let Some(memory) = plan.memory_detail(&policy.limits) {
        e.enforced.push(layer("memory limit", memory));
    }
    e.limits = Some(detail.clone());
    e.enforced.push(layer("limits", detail));
}

/// The layer that supervises connect(2) to Unix sockets.
const UNIX_GUARD: &str = "unix socket guard";

/// Records the Unix-socket guard: enforced when this kernel can supervise connect(2), else
/// listed as not enforced (so the run is refused without --allow-degraded). Whether the
/// filter should trap connect.
fn record_unix_guard(e: &mut Enforcement, network: NetworkMode) -> bool {
    let layer = |detail: String| LayerStatus { name: UNIX_GUARD.into(), detail };
    match crate::notify::probe() {
        Ok(()) => {
            let whose = match network {
                NetworkMode::Host => "held open by the sandbox's processes (the network namespace is the host's)",
                NetworkMode::None | NetworkMode::Allow => "listening in the sandbox's network namespace",
            };
            e.enforced.push(layer(format!(
                "connect(2) supervised (seccomp user notification): Unix sockets only if {whose}; \
                 Unix datagram sockets refused"
            )));
            true
        }
        Err(missing) => {
            e.not_enforced.push(layer(format!("{missing}: Unix sockets bound after the launch would be reachable")));
            false
        }
    }
}

/// The layer that watches every exec.
const EXEC_MONITOR: &str = "exec monitor";

/// Records the exec monitor: enforced when this kernel can supervise execve(2); else, with exec
/// rules, listed as not enforced (the run is refused without --allow-degraded), and without
/// them as a missing default (recorded only). Whether the filter should trap exec.
fn record_exec_monitor(e: &mut Enforcement, policy: &Policy) -> bool {
    if !policy.exec.monitor {
        return false;
    }
    let layer = |detail: String| LayerStatus { name: EXEC_MONITOR.into(), detail };
    match crate::notify::probe_exec() {
        Ok(()) => {
            let rules = &policy.exec.rules;
            let kernel_backed = crate::landlock_rules::no_exec_files(policy).len();
            let landlock = if kernel_backed > 0 && e.landlock_abi > 0 {
                format!(", {kernel_backed} of them also by Landlock (no execute right)")
            } else {
                String::new()
            };
            e.enforced.push(layer(format!(
                "every execve/execveat checked and recorded before it runs (seccomp user notification); {} exec \
                 rules{landlock}",
                rules.len()
            )));
            true
        }
        Err(missing) if policy.exec.has_rules() => {
            e.not_enforced.push(layer(format!("{missing}: exec rules can't be enforced")));
            false
        }
        Err(missing) => {
            e.missing_defaults.push(layer(format!("{missing}: only the top-level command is recorded")));
            false
        }
    }
}

/// Creates the run's cgroup. If that fails, rlimits carry the limits instead: not a silent
/// downgrade, since the run.start event says which mechanism was used and why (and a limit
/// rlimits can't carry is then refused, unless --allow-degraded).
fn create_cgroup(
    policy: &Policy,
    probe: &CgroupProbe,
    plan: &mut LimitPlan,
    run_name: &str,
    enforcement: &mut Enforcement,
) -> Option<RunCgroup> {
    if plan.mechanism == LimitMechanism::Rlimit {
        return None;
    }
    let dirs = RunCgroup::planned(probe, plan, run_name);
    let planned: Vec<PathBuf> = dirs.iter().map(|(_, d)| d.clone()).collect();
    let err = match RunCgroup::create(dirs, probe, plan, &policy.limits) {
        Ok(cg) => return Some(cg),
        Err(err) => err,
    };
    cgroup::remove_dirs(planned.iter().map(|p| p.as_path()));
    let why = format!("creating the cgroup failed: {err}");
    let without = CgroupProbe { v2_writable: false, v1_dirs: vec![], ..probe.clone() };
    *plan = LimitPlan::new(&policy.limits, &enforcement.kernel, &without);
    plan.why = Some(why.clone());
    if plan.no_default_memory.is_some() {
        plan.no_default_memory = Some(why);
    }
    *enforcement = Enforcement {
        kernel: std::mem::take(&mut enforcement.kernel),
        ..assess(policy, enforcement.landlock_abi, plan, probe.root)
    };
    None
}

/// What the run enforces and how, ready before the clone.
pub(crate) struct Limiting {
    pub enforcement: Enforcement,
    pub cgroup: Option<RunCgroup>,
    pub join: CgroupJoin,
    pub socket_guard: Option<SocketGuard>,
    pub rlimits: RlimitPlan,
    pub pid_max: Option<u64>,
    /// connect(2) traps to the supervisor.
    pub supervise_connect: bool,
    /// execve(2) and execveat(2) trap to the supervisor.
    pub supervise_exec: bool,
}

/// Decides what this run enforces and how: plans the limits, creates the run's cgroup (in
/// `rollback`) and opens what init needs to join it, checks the cache overlays and the
/// Unix-socket guard; refuses a requested protection this machine can't enforce (unless
/// --allow-degraded).
pub(crate) fn set_up_limits(
    policy: &Policy,
    landlock_abi: i32,
    mounts: &mut MountPlan,
    rollback: &mut Rollback,
) -> Result<Limiting, LaunchError> {
    let kernel = crate::host::kernel_release();
    let root = nix::unistd::geteuid().is_root();
    // Reading the cgroup hierarchy costs a little; skip it when no limit needs one.
    let probe = if cgroup::wants_cgroup(&policy.limits, &kernel) {
        CgroupProbe::detect()
    } else {
        CgroupProbe { root, ..Default::default() }
    };
    let mut plan = LimitPlan::new(&policy.limits, &kernel, &probe);
    let mut enforcement = assess(policy, landlock_abi, &plan, root);
    let cache_layer = crate::caches::assess(mounts, &kernel);
    enforcement.kernel = kernel;
    let run_name = format!("ringfence-{}-{}", std::process::id(), RUN_COUNTER.fetch_add(1, Ordering::Relaxed));
    // A cgroup that can't be created redoes the assessment: the layers below come after it.
    let cgroup = create_cgroup(policy, &probe, &mut plan, &run_name, &mut enforcement);
    if let Some(cgroup) = &cgroup {
        rollback.add_cgroup(cgroup);
    }
    match cache_layer {
        Some(Ok(detail)) => enforcement.enforced.push(LayerStatus { name: "cache overlays".into(), detail }),
        Some(Err(detail)) => enforcement.not_enforced.push(LayerStatus { name: "cache overlays".into(), detail }),
        None => {}
    }
    let supervise_connect = record_unix_guard(&mut enforcement, policy.network);
    let supervise_exec = record_exec_monitor(&mut enforcement, policy);
    refuse_degraded(policy, &enforcement)?;
    let opened = cgroup.as_ref().map(|cg| Ok::<_, std::io::Error>((cg.open_join()?, cg.socket_guard(&plan)?)));
    let (join, socket_guard) = opened
        .transpose()
        .map_err(|e| LaunchError::internal(format!("opening the run's cgroup: {e}")))?
        .unwrap_or_default();
    let rlimits = rlimit_plan(policy, &plan);
    Ok(Limiting {
        enforcement,
        cgroup,
        join,
        socket_guard,
        rlimits,
        pid_max: plan.pid_max,
        supervise_connect,
        supervise_exec,
    })
}

/// Refuses a run that asks for a protection this machine can't enforce, unless the policy
/// allows running degraded.
fn refuse_degraded(policy: &Policy, enforcement: &Enforcement) -> Result<(), LaunchError> {
    if enforcement.not_enforced.is_empty() || policy.allow_degraded {
        return Ok(());
    }
    let what: Vec<String> = enforcement.not_enforced.iter().map(|l| format!("{}: {}", l.name, l.detail)).collect();
    Err(LaunchError::unsupported(
        format!("this machine can't enforce the requested policy ({})", what.join("; ")),
        "see `ringfence check` for how to enable it, or pass --allow-degraded to run with less",
    ))
}

/// The limits init applies itself when no cgroup carries them.
fn rlimit_plan(policy: &Policy, plan: &LimitPlan) -> RlimitPlan {
    if plan.mechanism != LimitMechanism::Rlimit {
        return RlimitPlan::default();
    }
    RlimitPlan {
        nproc: if plan.pid_max.is_some() { None } else { policy.limits.pids },
        address_space: plan.memory,
        cpus: policy.limits.cpus.map(|c| c.ceil().max(1.0) as usize),
    }
}
