//! `ringfence explain`: the effective policy, and which layer enforces each rule.

use crate::args::ExplainArgs;
use crate::report;
use ringfence::exit_code;
use ringfence_audit::untrusted::{lines_for_terminal, to_json_pretty, EVENT_CAP};
use ringfence_policy::env::{EnvVerdict, DEFAULT_KEEP};
#[cfg(target_os = "linux")]
use ringfence_policy::{Builtin, Origin, Presence, RuleKind};
use ringfence_policy::{FsAccess, NetworkMode, Policy};
#[cfg(target_os = "linux")]
use std::path::Path;

pub fn explain(args: ExplainArgs) -> i32 {
    let policy = match ringfence::load_policy(&args.policy.sources(), args.policy.overrides()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return exit_code::POLICY;
        }
    };
    // Paths, names and values from config files (a project's may have been written by an earlier
    // run) are shown escaped and bounded, in both formats.
    let text = if args.json {
        Ok(to_json_pretty(&policy, EVENT_CAP).unwrap_or_default() + "\n")
    } else {
        render(&policy).map(|text| lines_for_terminal(&text, EVENT_CAP))
    };
    // Like `run`, a policy whose mount view can't be built is an error, whatever the format.
    match text.and_then(|text| check_view(&policy).map(|()| text)) {
        Ok(text) => {
            crate::emit(&text);
            0
        }
        Err(e) => {
            report(&e);
            exit_code::POLICY
        }
    }
}

#[cfg(target_os = "linux")]
fn check_view(policy: &Policy) -> Result<(), String> {
    use ringfence::linux::plan;
    plan::build(policy, &[], plan::kept_runtime_dirs(policy.network))
        .map(drop)
        .map_err(|e| format!("{}\n  fix: {}", e.0, e.1))
}

#[cfg(target_os = "macos")]
fn check_view(policy: &Policy) -> Result<(), String> {
    macos_profile(policy).map(drop)
}

/// The profile a run of `policy` would get, with a stand-in for the run's temporary folder.
#[cfg(target_os = "macos")]
fn macos_profile(policy: &Policy) -> Result<ringfence::macos::Compiled, String> {
    use ringfence::macos::{compile, resolve, Net, Request};
    let tmp = std::env::temp_dir().join("ringfence-RUN");
    let net = match policy.network {
        NetworkMode::None => Net::None,
        NetworkMode::Allow => Net::Gateway { http: 0, socks: 0 },
        NetworkMode::Host => Net::Host,
    };
    let request = Request { policy, tmp: &tmp, net, terminal: None };
    compile(&request, &resolve::host()).map_err(|e| format!("{}\n  fix: {}", e.message, e.remedy))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn check_view(_: &Policy) -> Result<(), String> {
    Ok(())
}

fn access_name(a: FsAccess) -> &'static str {
    match a {
        FsAccess::Deny => "hidden",
        FsAccess::Read => "read-only",
        FsAccess::Write => "writable",
    }
}

#[cfg(target_os = "linux")]
fn filesystem(policy: &Policy, out: &mut String) -> Result<(), String> {
    use ringfence::linux::plan::{self, MountOp};
    let abi = ringfence::linux::features::landlock_abi();
    let landlock = if abi > 0 { format!("landlock (ABI {abi})") } else { "landlock unavailable".into() };
    let plan = plan::build(policy, &plan::host_sockets(), plan::kept_runtime_dirs(policy.network))
        .map_err(|e| format!("{}\n  fix: {}", e.0, e.1))?;
    out.push_str("Filesystem (the most specific rule wins):\n");
    for op in &plan.ops {
        let how = match op {
            MountOp::Tmpfs { path, writable: true, size } if path == Path::new("/tmp") => {
                format!("writable   private tmpfs, {}  [mount view]", ringfence_policy::ByteSize(*size))
            }
            MountOp::Tmpfs { path, .. } if path.starts_with("/run") || path.starts_with("/var/run") => {
                "hidden     empty tmpfs (host sockets and runtime state)  [mount view]".to_string()
            }
            MountOp::Tmpfs { path, .. } | MountOp::MaskFile { path } => {
                // Landlock can't narrow a writable tree, and below ABI 9 can't stop connect(2).
                let socket = plan
                    .rules
                    .rules
                    .iter()
                    .any(|r| &r.path == path && matches!(r.origin, Origin::Builtin(Builtin::HostSocket)));
                let writable = path.parent().is_some_and(|p| plan.rules.access(p).access == FsAccess::Write);
                if socket || writable {
                    "hidden     masked  [mount view]".to_string()
                } else {
                    format!("hidden     masked  [mount view, {landlock}]")
                }
            }
            MountOp::Bind { writable: true, .. } => format!("writable   bind  [mount view, {landlock}]"),
            MountOp::Bind { writable: false, .. } => format!("read-only  bind  [mount view, {landlock}]"),
            MountOp::ReadOnly { path } => {
                let placeholder = plan.placeholders.iter().any(|p| &p.path == path);
                format!(
                    "read-only  protected{}  [mount view: read-only bind the sandbox can't unmount]",
                    if placeholder { ", absent: an empty placeholder is created for the run" } else { "" }
                )
            }
            MountOp::Overlay { upper, .. } => format!(
                "writable   cache overlay: the host's cache read-only below, the run's changes kept in {}{}  \
                 [mount view: overlayfs, nosuid, nodev; landlock: all rights on the overlay]",
                upper.display(),
                if op.path().exists() { "" } else { " (absent: created empty at launch)" }
            ),
        };
        let from = match op {
            MountOp::Overlay { path, .. } => cache_origin(policy, path),
            _ => plan.rules.rules.iter().filter(|r| r.path == op.path()).map(|r| r.origin.to_string()).next_back(),
        }
        .unwrap_or_else(|| "built-in".into());
        out.push_str(&format!("  {:<44} {how}\n      from {from}\n", op.path().display()));
    }
    out.push_str(&format!(
        "  {:<44} read-only  host tree, nosuid, nodev  [mount view, {landlock}]\n",
        "/ (everything else)"
    ));
    out.push_str("  /dev                                         null, zero, full, random, urandom, tty, own devpts and /dev/shm\n");
    out.push_str("  /proc                                        the sandbox's own processes; /proc/sys read-only\n");
    // Absent hidden paths in read-only regions: the sandbox can't create them, and Landlock
    // keeps them unreadable if the host does. (In writable regions they get a placeholder.)
    let absent: Vec<_> = plan
        .rules
        .of_kind(RuleKind::DenyRead)
        .filter(|r| {
            let parent = r.path.parent().unwrap_or(Path::new("/"));
            !r.path.exists()
                && plan.rules.access(&r.path).access == FsAccess::Deny
                && plan.rules.access(parent).access != FsAccess::Write
                && !plan.placeholders.iter().any(|p| p.path == r.path)
        })
        .map(|r| r.path.display().to_string())
        .collect();
    if !absent.is_empty() {
        out.push_str(&format!(
            "  hidden if created later ({}): {}\n",
            if abi > 0 { "landlock" } else { "NOT ENFORCED without Landlock" },
            absent.join(", ")
        ));
    }
    let (inert, unplaced): (Vec<_>, Vec<_>) = plan
        .rules
        .of_kind(RuleKind::DenyWrite)
        .filter(|r| {
            plan.rules.access(r.path.parent().unwrap_or(Path::new("/"))).access == FsAccess::Write
                && !r.path.exists()
                && !plan.placeholders.iter().any(|p| p.path == r.path)
        })
        .partition(|r| r.presence == Presence::WhilePresent);
    let names = |list: Vec<&ringfence_policy::FsRule>| {
        let mut v: Vec<_> = list.iter().map(|r| r.path.display().to_string()).collect();
        v.dedup();
        v.join(", ")
    };
    if !unplaced.is_empty() {
        out.push_str(&format!("  protected once their folder exists (none to bind yet): {}\n", names(unplaced)));
    }
    if !inert.is_empty() {
        out.push_str(&format!("  protected while present (no placeholder when absent): {}\n", names(inert)));
    }
    let direct: Vec<String> = policy
        .caches
        .iter()
        .flat_map(|c| c.dirs.iter().map(move |d| (c, plan::canonicalize_lenient(&d.path))))
        .filter(|(_, p)| !plan.ops.iter().any(|op| matches!(op, MountOp::Overlay { path, .. } if path == p)))
        .map(|(c, p)| format!("{} ({})", p.display(), c.tool))
        .collect();
    if !direct.is_empty() {
        out.push_str(&format!(
            "  caches inside a writable root, written directly (no overlay): {}\n",
            direct.join(", ")
        ));
    }
    Ok(())
}

#[cfg(target_os = "macos")]
fn filesystem(policy: &Policy, out: &mut String) -> Result<(), String> {
    out.push_str(&ringfence::macos::report::explain_files(&macos_profile(policy)?));
    Ok(())
}

/// Why the cache overlay at `path` is there: the flag, config line or preset.
#[cfg(target_os = "linux")]
fn cache_origin(policy: &Policy, path: &Path) -> Option<String> {
    use ringfence::linux::plan::canonicalize_lenient;
    let rule = policy.caches.iter().find(|c| c.dirs.iter().any(|d| canonicalize_lenient(&d.path) == path))?;
    Some(format!("{} (cache {})", rule.origin, rule.tool))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn filesystem(policy: &Policy, out: &mut String) -> Result<(), String> {
    out.push_str("Filesystem:\n");
    for r in &policy.fs.rules {
        let a = policy.fs.access(&r.path).access;
        out.push_str(&format!("  {:<44} {}  from {}\n", r.path.display(), access_name(a), r.origin));
    }
    Ok(())
}

#[cfg(not(target_os = "macos"))]
fn landlock_abi() -> i32 {
    #[cfg(target_os = "linux")]
    return ringfence::linux::features::landlock_abi();
    #[cfg(not(target_os = "linux"))]
    return 0;
}

/// Where the allow mode is enforced.
#[cfg(target_os = "macos")]
fn gateway_layer() -> String {
    ringfence::macos::report::explain_network_layer(NetworkMode::Allow).trim_matches(['[', ']']).to_string()
}

/// Where the allow mode is enforced.
#[cfg(not(target_os = "macos"))]
fn gateway_layer() -> String {
    format!(
        "gateway in the supervisor (HTTP proxy 127.0.0.1:{}, SOCKS5 127.0.0.1:{}); \
         the sandbox's own network namespace has only loopback",
        ringfence_policy::HTTP_PROXY_PORT,
        ringfence_policy::SOCKS_PROXY_PORT
    )
}

#[cfg(not(target_os = "macos"))]
const NETWORK_NONE: &str = "  none: own loopback only  [net namespace]\n";
#[cfg(target_os = "macos")]
const NETWORK_NONE: &str =
    "  none  [seatbelt: no network-outbound rule; Unix sockets only in the run's TMPDIR; no loopback]\n";

/// What ringfence sets in the command's environment.
#[cfg(not(target_os = "macos"))]
const SET_BY_RINGFENCE: &str = "  set by ringfence: PWD, TMPDIR=/tmp, RINGFENCE=1\n\n";
#[cfg(target_os = "macos")]
const SET_BY_RINGFENCE: &str = "  set by ringfence: PWD, TMPDIR=(the run's private folder), RINGFENCE=1\n\n";

/// What holds the size of the command's temporary files.
#[cfg(not(target_os = "macos"))]
const TMP_SIZE_LAYER: &str = "[tmpfs]";
#[cfg(target_os = "macos")]
const TMP_SIZE_LAYER: &str = "NOT ENFORCED on macOS: TMPDIR is a folder on the host's disk";

/// Where Unix sockets are enforced.
#[cfg(target_os = "linux")]
fn unix_sockets(policy: &Policy, out: &mut String) {
    if let Err(missing) = ringfence::linux::features::unix_socket_guard() {
        out.push_str(&format!(
            "  Unix sockets: NOT SUPERVISED here ({missing}): only those bound at launch are masked;\n  \
             runs need --allow-degraded  [mount view]\n\n"
        ));
        return;
    }
    let whose = match policy.network {
        NetworkMode::Host => "listening sockets a process of the sandbox holds open",
        NetworkMode::None | NetworkMode::Allow => "sockets listening in the sandbox's own network namespace",
    };
    out.push_str(&format!(
        "  Unix sockets: connect only to {whose}, whenever bound  [seccomp user notification: connect(2) made by the supervisor]\n"
    ));
    out.push_str("  Unix datagram sockets: refused  [seccomp: EPERM]\n\n");
}

#[cfg(not(target_os = "linux"))]
fn unix_sockets(_: &Policy, out: &mut String) {
    out.push('\n');
}

fn network(policy: &Policy, out: &mut String) {
    out.push_str("Network:\n");
    match policy.network {
        NetworkMode::None => out.push_str(NETWORK_NONE),
        NetworkMode::Host => out.push_str("  host: the host's network, UNFILTERED (danger)  [no isolation]\n"),
        NetworkMode::Allow => {
            let net = &policy.net;
            out.push_str("  allow: only the hosts allowed below; every attempt is checked and recorded\n");
            out.push_str(&format!("    [{}]\n", gateway_layer()));
            out.push_str("  allowed:\n");
            let own: Vec<_> = net.allow.iter().filter(|r| net.preset_of(r).is_none()).collect();
            if own.is_empty() && net.presets.is_empty() {
                out.push_str("    nothing: every connection is refused\n");
            }
            for rule in own {
                out.push_str(&format!("    {:<42} from {}\n", rule.pattern.to_string(), rule.origin));
            }
            for (preset, origin) in &net.presets {
                out.push_str(&format!("    {:<42} from {origin}\n", format!("preset {preset}")));
                out.push_str(&format!("      {}\n", preset.hosts().join(", ")));
            }
            if !net.deny.is_empty() {
                out.push_str("  denied (beats any allow rule):\n");
                for rule in &net.deny {
                    out.push_str(&format!("    {:<42} from {}\n", rule.pattern.to_string(), rule.origin));
                }
            }
            out.push_str("  IP addresses: only those listed by address\n");
            if net.allow_private.is_empty() {
                out.push_str("  private ranges: none (RFC 1918, ULA and CGNAT addresses are refused)\n");
            } else {
                out.push_str("  private ranges the gateway may dial:\n");
                for (range, origin) in &net.allow_private {
                    out.push_str(&format!("    {:<42} from {origin}\n", range.to_string()));
                }
            }
            out.push_str(
                "  always refused: loopback, link-local, cloud metadata, this host's addresses, unspecified, multicast\n",
            );
            match &net.resolver {
                Some((addr, origin)) => {
                    out.push_str(&format!("  resolver: {addr}  from {origin}  [gateway only]\n"));
                }
                None => out.push_str("  resolver: system resolver  [gateway only; the sandbox has none]\n"),
            }
        }
    }
    unix_sockets(policy, out);
}

/// How the process cap, the memory cap (the whole line) and the other limits are enforced here.
#[cfg(target_os = "linux")]
fn limit_mechanisms(l: &ringfence_policy::Limits) -> (String, String, String) {
    use ringfence::linux::{memory_origin, LimitMechanism, LimitPlan};
    let kernel = ringfence::linux::features::kernel_release();
    let plan = LimitPlan::new(l, &kernel, &ringfence::linux::CgroupProbe::detect());
    let mech = match (&plan.mechanism, &plan.why) {
        (LimitMechanism::Rlimit, Some(why)) => format!("rlimits ({why})"),
        (m, _) => m.to_string(),
    };
    let pids = match plan.pid_max {
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
    (pids, memory, mech)
}

#[cfg(target_os = "macos")]
fn limit_mechanisms(l: &ringfence_policy::Limits) -> (String, String, String) {
    let (pids, how) = ringfence::macos::report::explain_limit_mechanisms(ringfence::macos::is_root());
    let memory = l.memory.map(|m| format!("{m}  [{how}]")).unwrap_or_else(|| "none".into());
    (pids, memory, how)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn limit_mechanisms(l: &ringfence_policy::Limits) -> (String, String, String) {
    let how = "platform backend".to_string();
    let memory = l.memory.map(|m| format!("{m}  [{how}]")).unwrap_or_else(|| "none".into());
    (how.clone(), memory, how)
}

pub fn render(policy: &Policy) -> Result<String, String> {
    let mut out = String::new();
    out.push_str(&format!("Profile: {}    Workspace: {}\n", policy.profile, policy.workspace.display()));
    if policy.sources.is_empty() {
        out.push_str("Config files: none\n");
    } else {
        let list: Vec<_> = policy.sources.iter().map(|p| p.display().to_string()).collect();
        out.push_str(&format!("Config files: {}\n", list.join(", ")));
    }
    out.push('\n');
    filesystem(policy, &mut out)?;
    let ws = policy.fs.access(&policy.workspace).access;
    out.push_str(&format!("  workspace is {}\n\n", access_name(ws)));

    out.push_str("Environment [scrubbed before exec]:\n");
    out.push_str(&format!("  passed through: {}", DEFAULT_KEEP.join(", ")));
    if !policy.env.keep.is_empty() {
        out.push_str(&format!(", {}", policy.env.keep.join(", ")));
    }
    out.push('\n');
    let mut secret = Vec::new();
    let mut other = Vec::new();
    for (k, _) in std::env::vars_os() {
        let Ok(k) = k.into_string() else { continue };
        match policy.env.verdict(&k) {
            EnvVerdict::DroppedSecret => secret.push(k),
            EnvVerdict::DroppedNotAllowed => other.push(k),
            _ => {}
        }
    }
    secret.sort();
    other.sort();
    out.push_str(&format!(
        "  dropped as secret-looking: {}\n",
        if secret.is_empty() { "none".into() } else { secret.join(", ") }
    ));
    out.push_str(&format!("  dropped, not allowed: {} variable(s)\n", other.len()));
    for (k, v) in &policy.env.set {
        out.push_str(&format!("  set: {k}={v}\n"));
    }
    out.push_str(SET_BY_RINGFENCE);

    network(policy, &mut out);

    #[cfg(target_os = "macos")]
    out.push_str(&ringfence::macos::report::explain_processes(policy));
    #[cfg(not(target_os = "macos"))]
    processes(policy, &mut out);
    limits(policy, &mut out);
    Ok(out)
}

#[cfg(not(target_os = "macos"))]
fn processes(policy: &Policy, out: &mut String) {
    out.push_str("Processes:\n");
    out.push_str(&format!(
        "  host processes invisible, signals and ptrace can't reach them  [pid namespace{}]\n",
        if landlock_abi() >= 6 { ", landlock signal scope" } else { "" }
    ));
    out.push_str("  everything dies with the command or with ringfence  [pid namespace init, parent-death signal]\n");
    out.push_str("  no setuid, no capabilities, no new namespaces, io_uring, bpf, perf, userfaultfd, keyctl,\n");
    out.push_str("  mount, kexec, modules, open_by_handle_at, TIOCSTI/TIOCLINUX  [seccomp: EPERM]\n");
    out.push_str(
        "  no set-user-ID or set-group-ID bit on any file (chmod, open, mkdir, mknod modes)  [seccomp: EPERM]\n",
    );
    out.push_str(&format!(
        "  ptrace, process_vm_*: {}\n",
        if policy.allow_ptrace { "allowed inside the sandbox (--allow-ptrace)" } else { "refused  [seccomp: EPERM]" }
    ));
    out.push_str("  inherited descriptors beyond stdio closed; own session\n\n");
}

fn limits(policy: &Policy, out: &mut String) {
    out.push_str("Limits:\n");
    let l = &policy.limits;
    #[cfg_attr(target_os = "macos", allow(unused_variables))]
    let (pids_how, memory, mech) = limit_mechanisms(l);
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    out.push_str(&format!("  pids: {}  [{pids_how}]\n", or_none(l.pids.map(|p| p.to_string()))));
    out.push_str(&format!("  memory: {memory}\n"));
    #[cfg(not(target_os = "macos"))]
    out.push_str(&format!("  cpus: {}\n", or_none(l.cpus.map(|c| format!("{c}  [{mech}]")))));
    #[cfg(target_os = "macos")]
    out.push_str(&format!("  cpus: {}\n", or_none(l.cpus.map(|c| format!("{c}  [NOT ENFORCED: macOS can't cap it]")))));
    out.push_str(&format!("  timeout: {}  [supervisor]\n", or_none(l.timeout.map(|t| t.to_string()))));
    out.push_str(&format!("  /tmp size: {}  {TMP_SIZE_LAYER}\n", l.tmp_size));
    if policy.allow_degraded {
        out.push_str("\n--allow-degraded: protections this machine lacks are skipped (see `ringfence check`)\n");
    }
}
