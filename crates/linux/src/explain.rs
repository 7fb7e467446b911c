//! The Linux backend's part of `ringfence explain`: the mount view, Landlock and seccomp layer
//! behind each rule, as the plan a run would build says.

use crate::cgroup::{memory_origin, CgroupProbe, LimitMechanism, LimitPlan};
use crate::plan::{self, MountOp, MountPlan};
use ringfence_backend::explain::{self, Line, Section};
use ringfence_backend::{Explanation, LaunchError};
use ringfence_policy::{Builtin, ByteSize, FsAccess, FsRule, NetworkMode, Origin, Policy, Presence, RuleKind};
use std::path::Path;

/// Everything `explain` says about `policy` on this machine; an error where a run of it would
/// fail to plan its view.
pub fn explain(policy: &Policy) -> Result<Explanation, LaunchError> {
    let plan = plan::build(policy, &plan::host_sockets(), plan::kept_runtime_dirs(policy.network))
        .map_err(|e| LaunchError::policy(e.0, e.1))?;
    let mut footer = Vec::new();
    if policy.allow_degraded {
        footer.push("--allow-degraded: protections this machine lacks are skipped (see `ringfence check`)".into());
    }
    Ok(Explanation {
        header: explain::header(policy),
        sections: vec![
            filesystem(policy, &plan),
            explain::environment(policy, "PWD, TMPDIR=/tmp, RINGFENCE=1"),
            network(policy),
            processes(policy),
            exec_rules(policy),
            limits(policy),
        ],
        footer,
    })
}

/// The Landlock layer's name here.
fn landlock() -> String {
    match crate::features::landlock_abi() {
        0 => "landlock unavailable".into(),
        abi => format!("landlock (ABI {abi})"),
    }
}

fn filesystem(policy: &Policy, plan: &MountPlan) -> Section {
    let mut section = Section::new("Filesystem (the most specific rule wins)");
    let landlock = landlock();
    for op in &plan.ops {
        let (verdict, layers) = mount_verdict(op, plan, &landlock);
        let origin = match op {
            MountOp::Overlay { path, .. } => cache_origin(policy, path),
            _ => plan.rules.rules.iter().filter(|r| r.path == op.path()).map(|r| r.origin.to_string()).next_back(),
        }
        .unwrap_or_else(|| "built-in".into());
        let path = op.path().display().to_string();
        section.push(Line::Path { path, verdict, layers, origin: Some(origin) });
    }
    let everything = "/ (everything else)".to_string();
    let layers = vec!["mount view".to_string(), landlock.clone()];
    section.push(Line::Path {
        path: everything,
        verdict: "read-only  host tree, nosuid, nodev".into(),
        layers,
        origin: None,
    });
    section.push(Line::text(format!("{:<44} null, zero, full, random, urandom, tty, own devpts and /dev/shm", "/dev")));
    section.push(Line::text(format!("{:<44} the sandbox's own processes; /proc/sys read-only", "/proc")));
    section.lines.extend(absent_rules(policy, plan));
    section.push(explain::workspace_line(policy));
    section
}

/// What the sandbox sees at one mount operation's path, and the layers that make it so.
fn mount_verdict(op: &MountOp, plan: &MountPlan, landlock: &str) -> (String, Vec<String>) {
    let view = |extra: &str| {
        let mut layers = vec!["mount view".to_string()];
        if !extra.is_empty() {
            layers.push(extra.to_string());
        }
        layers
    };
    match op {
        MountOp::Tmpfs { path, writable: true, size } if path == Path::new("/tmp") => {
            (format!("writable   private tmpfs, {}", ByteSize(*size)), view(""))
        }
        MountOp::Tmpfs { path, .. } if path.starts_with("/run") || path.starts_with("/var/run") => {
            ("hidden     empty tmpfs (host sockets and runtime state)".into(), view(""))
        }
        MountOp::Tmpfs { path, .. } | MountOp::MaskFile { path } => {
            // Landlock can't narrow a writable tree, and below ABI 9 can't stop connect(2).
            let socket = plan
                .rules
                .rules
                .iter()
                .any(|r| &r.path == path && matches!(r.origin, Origin::Builtin(Builtin::HostSocket)));
            let writable = path.parent().is_some_and(|p| plan.rules.access(p).access == FsAccess::Write);
            ("hidden     masked".into(), view(if socket || writable { "" } else { landlock }))
        }
        MountOp::Bind { writable: true, .. } => ("writable   bind".into(), view(landlock)),
        MountOp::Bind { writable: false, .. } => ("read-only  bind".into(), view(landlock)),
        MountOp::ReadOnly { path } => {
            let placeholder = plan.placeholders.iter().any(|p| &p.path == path);
            let absent = if placeholder { ", absent: an empty placeholder is created for the run" } else { "" };
            (
                format!("read-only  protected{absent}"),
                vec!["mount view: read-only bind the sandbox can't unmount".into()],
            )
        }
        MountOp::Overlay { upper, path, .. } => {
            let absent = if path.exists() { "" } else { " (absent: created empty at launch)" };
            let verdict = format!(
                "writable   cache overlay: the host's cache read-only below, the run's changes kept in {}{absent}",
                upper.display()
            );
            (verdict, vec!["mount view: overlayfs, nosuid, nodev; landlock: all rights on the overlay".into()])
        }
    }
}

/// Why the cache overlay at `path` is there: the flag, config line or preset.
fn cache_origin(policy: &Policy, path: &Path) -> Option<String> {
    let rule = policy.caches.iter().find(|c| c.dirs.iter().any(|d| plan::canonicalize_lenient(&d.path) == path))?;
    Some(format!("{} (cache {})", rule.origin, rule.tool))
}

/// Rules with no mount of their own: absent hidden paths outside writable roots (Landlock keeps
/// them unreadable if the host creates them), protected paths absent without a placeholder,
/// and caches written directly.
fn absent_rules(policy: &Policy, plan: &MountPlan) -> Vec<Line> {
    let mut lines = Vec::new();
    let unplaced = |r: &&FsRule| !r.path.exists() && !plan.placeholders.iter().any(|p| p.path == r.path);
    let parent_access = |r: &FsRule| plan.rules.access(r.path.parent().unwrap_or(Path::new("/"))).access;
    let absent: Vec<&FsRule> = plan
        .rules
        .of_kind(RuleKind::DenyRead)
        .filter(unplaced)
        .filter(|r| plan.rules.access(&r.path).access == FsAccess::Deny && parent_access(r) != FsAccess::Write)
        .collect();
    if !absent.is_empty() {
        let how = if crate::features::landlock_abi() > 0 { "landlock" } else { "NOT ENFORCED without Landlock" };
        lines.push(Line::text(format!("hidden if created later ({how}): {}", names(&absent))));
    }
    let (inert, unbound): (Vec<&FsRule>, Vec<&FsRule>) = plan
        .rules
        .of_kind(RuleKind::DenyWrite)
        .filter(unplaced)
        .filter(|r| parent_access(r) == FsAccess::Write)
        .partition(|r| r.presence == Presence::WhilePresent);
    if !unbound.is_empty() {
        lines.push(Line::text(format!("protected once their folder exists (none to bind yet): {}", names(&unbound))));
    }
    if !inert.is_empty() {
        lines.push(Line::text(format!("protected while present (no placeholder when absent): {}", names(&inert))));
    }
    let (files, folders): (Vec<&FsRule>, Vec<&FsRule>) = plan
        .rules
        .of_kind(RuleKind::Write)
        .filter(unplaced)
        .filter(|r| r.presence == Presence::WhilePresent)
        .partition(|r| plan.rules.is_agent_file(&r.path));
    if !folders.is_empty() {
        lines.push(Line::text(format!(
            "the agent's state, writable, created before its first run: {}",
            names(&folders)
        )));
    }
    if !files.is_empty() {
        lines.push(Line::text(format!(
            "the agent's own login, readable and writable once it saves it: {}",
            names(&files)
        )));
    }
    let direct: Vec<String> = policy
        .caches
        .iter()
        .flat_map(|c| c.dirs.iter().map(move |d| (c, plan::canonicalize_lenient(&d.path))))
        .filter(|(_, p)| !plan.ops.iter().any(|op| matches!(op, MountOp::Overlay { path, .. } if path == p)))
        .map(|(c, p)| format!("{} ({})", p.display(), c.tool))
        .collect();
    if !direct.is_empty() {
        lines.push(Line::text(format!(
            "caches inside a writable root, written directly (no overlay): {}",
            direct.join(", ")
        )));
    }
    lines
}

fn names(rules: &[&FsRule]) -> String {
    let mut v: Vec<_> = rules.iter().map(|r| r.path.display().to_string()).collect();
    v.dedup();
    v.join(", ")
}

fn network(policy: &Policy) -> Section {
    let allow = format!(
        "gateway in the supervisor (HTTP proxy 127.0.0.1:{}, SOCKS5 127.0.0.1:{}, and every other \
         TCP connection and DNS question, captured); the sandbox's own network namespace has only \
         loopback, and every address is routed to it",
        ringfence_policy::HTTP_PROXY_PORT,
        ringfence_policy::SOCKS_PROXY_PORT
    );
    let none = Line::fact("none: own loopback only", &["net namespace"]);
    explain::network(policy, none, &allow, unix_sockets(policy.network))
}

/// Where Unix sockets are enforced.
fn unix_sockets(mode: NetworkMode) -> Vec<Line> {
    if let Err(missing) = crate::features::unix_socket_guard() {
        return vec![Line::fact(
            format!(
                "Unix sockets: NOT SUPERVISED here ({missing}): only those bound at launch are masked; \
                 runs need --allow-degraded"
            ),
            &["mount view"],
        )];
    }
    let whose = match mode {
        NetworkMode::Host => "listening sockets a process of the sandbox holds open",
        NetworkMode::None | NetworkMode::Allow => "sockets listening in the sandbox's own network namespace",
    };
    vec![
        Line::fact(
            format!("Unix sockets: connect only to {whose}, whenever bound"),
            &["seccomp user notification: connect(2) made by the supervisor"],
        ),
        Line::fact("Unix datagram sockets: refused", &["seccomp: EPERM"]),
    ]
}

fn processes(policy: &Policy) -> Section {
    let mut section = Section::new("Processes");
    let scope =
        if crate::features::landlock_abi() >= 6 { "pid namespace, landlock signal scope" } else { "pid namespace" };
    section.push(Line::fact("host processes invisible, signals and ptrace can't reach them", &[scope]));
    section.push(Line::fact(
        "everything dies with the command or with ringfence",
        &["pid namespace init, parent-death signal"],
    ));
    section
        .push(Line::text("no setuid, no capabilities, no new namespaces, io_uring, bpf, perf, userfaultfd, keyctl,"));
    section.push(Line::fact("mount, kexec, modules, open_by_handle_at, TIOCSTI/TIOCLINUX", &["seccomp: EPERM"]));
    section.push(Line::fact(
        "no set-user-ID or set-group-ID bit on any file (chmod, open, mkdir, mknod modes)",
        &["seccomp: EPERM"],
    ));
    section.push(if policy.allow_ptrace {
        Line::text("ptrace, process_vm_*: allowed inside the sandbox (--allow-ptrace)")
    } else {
        Line::fact("ptrace, process_vm_*: refused", &["seccomp: EPERM"])
    });
    section.push(Line::text("inherited descriptors beyond stdio closed; own session"));
    section
}

/// The exec rules and the layers behind each: every rule is checked by the exec monitor
/// (seccomp user notification: a guardrail where it allows, since the exec's memory can change
/// after the check); a deny of a whole file by absolute path also by Landlock.
fn exec_rules(policy: &Policy) -> Section {
    let landlock = crate::features::landlock_abi() > 0;
    let layers = |rule: &ringfence_policy::ExecRule| {
        let mut layers = vec!["exec monitor (seccomp user notification)".to_string()];
        if landlock && crate::landlock_rules::no_exec_file(policy, rule).is_some() {
            layers.push("landlock: no execute right on the file".into());
        }
        layers
    };
    let mut section = explain::exec_rules(policy, &layers, None);
    if policy.exec.monitor {
        section.push(Line::text(format!(
            "an exec whose path or arguments can't be read whole, or longer than {} KiB of arguments or {} \
             arguments, is refused",
            crate::notify::ARGS_CAP >> 10,
            crate::notify::ARGC_CAP
        )));
    }
    section
}

fn limits(policy: &Policy) -> Section {
    let mut section = Section::new("Limits");
    let l = &policy.limits;
    let kernel = crate::features::kernel_release();
    let plan = LimitPlan::new(l, &kernel, &CgroupProbe::detect());
    let mech = match (&plan.mechanism, &plan.why) {
        (LimitMechanism::Rlimit, Some(why)) => format!("rlimits ({why})"),
        (m, _) => m.to_string(),
    };
    let pids_how = match plan.pid_max {
        Some(max) => format!("pid namespace pid_max {max}: the default cap, approximate"),
        None => mech.clone(),
    };
    let memory = match (l.memory, plan.memory_mechanism(), plan.no_memory_detail(l)) {
        (_, _, Some(none)) => format!("none  [{none}]"),
        (Some(m), Some(how), _) if plan.mechanism == LimitMechanism::Rlimit => {
            format!("{m}  [{how}, and only with --allow-degraded: {mech}]")
        }
        (Some(m), Some(how), _) => format!("{m}{}  [{how}]", memory_origin(l)),
        _ if l.memory_explicit => "none (removed by a flag or config file)".into(),
        _ => "none".into(),
    };
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    section.push(Line::text(format!("pids: {}  [{pids_how}]", or_none(l.pids.map(|p| p.to_string())))));
    section.push(Line::text(format!("memory: {memory}")));
    section.push(Line::text(format!("cpus: {}", or_none(l.cpus.map(|c| format!("{c}  [{mech}]"))))));
    section.push(Line::fact(format!("timeout: {}", or_none(l.timeout.map(|t| t.to_string()))), &["supervisor"]));
    section.push(Line::fact(format!("/tmp size: {}", l.tmp_size), &["tmpfs"]));
    section
}
