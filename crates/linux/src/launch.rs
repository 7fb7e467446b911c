//! The supervisor side: validate and plan, clone into the namespaces, then watch the run.

use crate::cgroup::{self, CgroupJoin, CgroupProbe, CgroupStats, LimitMechanism, LimitPlan, RunCgroup, SocketGuard};
use crate::cleaner::{Cleaner, Leftovers};
use crate::error::{ChildError, ErrorKind, LaunchError};
use crate::gitcheck::{Review, ReviewReport};
use crate::landlock_rules::LandlockBuilder;
use crate::limits::RlimitPlan;
use crate::placeholder;
use crate::plan::{self, MountPlan};
use crate::{pty, sys};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use ringfence_audit::{EndReason, ReviewFinding};
use ringfence_policy::{NetworkMode, Policy, RuleKind, HTTP_PROXY_PORT, SOCKS_PROXY_PORT};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Signals the supervisor passes on to the command.
pub const FORWARDED_SIGNALS: &[Signal] =
    &[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Input for the command's terminal held while it doesn't read; our input waits beyond that.
const PENDING_INPUT_MAX: usize = 1 << 20;

/// How long a timed-out command gets between SIGTERM and SIGKILL.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

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

/// What the child needs; it is a copy of the supervisor's memory, so this is plain data.
pub(crate) struct ChildSetup {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub plan: MountPlan,
    /// Each cache overlay's path and the identities of its lower, upper and work folders.
    pub overlay_ids: Vec<(PathBuf, [crate::caches::FolderId; 3])>,
    pub allow_ptrace: bool,
    pub landlock_abi: i32,
    pub rlimits: RlimitPlan,
    /// The pid namespace's pid_max, when it carries the process cap.
    pub pid_max: Option<u64>,
    pub isolate_network: bool,
    /// Create the gateway's listening sockets on the sandbox's loopback and hand them over.
    pub gateway: bool,
    pub uid: u32,
    pub gid: u32,
    pub go_read: RawFd,
    pub status_write: RawFd,
    pub stdio: [Option<RawFd>; 3],
    /// Open a terminal for the command inside the sandbox.
    pub terminal: bool,
    /// connect(2) traps to the supervisor: hand over the seccomp listener (and, in the
    /// sandbox's own network namespace, a sock_diag socket).
    pub supervise_connect: bool,
    /// The run's cgroup files init writes "0" to (itself) unless it was born in the cgroup.
    pub cgroup_files: Vec<(RawFd, PathBuf)>,
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

/// A running sandbox.
pub struct Sandbox {
    init: libc::pid_t,
    status: BufReader<std::fs::File>,
    terminal: Option<OwnedFd>,
    cgroup: Option<RunCgroup>,
    socket_guard: Option<SocketGuard>,
    cleaner: Option<Cleaner>,
    leftovers: Leftovers,
    /// Placeholders this run uses, locked shared until it ends.
    held: Vec<placeholder::Held>,
    /// The cache layers this run uses, locked until it ends.
    layers: crate::caches::HeldLayers,
    started: Instant,
    timeout: Option<Duration>,
    /// The command's host pid.
    command: Option<u32>,
    /// Status lines that arrived before init's "started" line.
    early: Vec<String>,
    /// Set once placeholders are removed and the writable roots reviewed.
    settled: bool,
    review: ReviewReport,
    /// Set once the run's leftovers are removed.
    finished: bool,
    /// What the clean-up could not remove, for the caller to report.
    left: Vec<String>,
    pub enforcement: Enforcement,
    /// The gateway's sockets, until the caller takes them to serve.
    pub gateway_listeners: Option<GatewayListeners>,
    /// The handler of the system calls the filter traps (connect), while the sandbox runs.
    guard: Option<crate::notify::Guard>,
}

fn unsupported(message: impl Into<String>, remedy: impl Into<String>) -> LaunchError {
    LaunchError::new(ErrorKind::Unsupported, message, Some(remedy.into()))
}

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

/// Creates (or joins) the plan's placeholders. One the caller may not create (a folder it can't
/// write, a read-only filesystem) is one the sandbox can't create either: its mount is dropped.
fn hold_placeholders(plan: &mut MountPlan) -> Result<Vec<placeholder::Held>, LaunchError> {
    let mut held = Vec::new();
    for p in &plan.placeholders {
        match placeholder::hold(p) {
            Ok(Some(h)) => held.push(h),
            Ok(None) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT)) => {
                plan.ops.retain(|op| op.path() != p.path);
            }
            Err(e) => {
                crate::cleaner::warn(release_all(held));
                return Err(LaunchError::internal(format!("creating the placeholder {}: {e}", p.path.display())));
            }
        }
    }
    Ok(held)
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

/// Clones the sandbox's init, born in the run's cgroup v2 where the kernel allows; returns
/// its pid (0 in the child) and whether it was born there.
fn clone_sandbox(flags: libc::c_int, join: &CgroupJoin) -> std::io::Result<(libc::pid_t, bool)> {
    if let Some(dir) = &join.directory {
        match sys::clone_into_cgroup(flags, dir.as_raw_fd()) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)) => {}
            other => return other.map(|pid| (pid, true)),
        }
    }
    sys::clone_process(flags).map(|pid| (pid, false))
}

/// The run's limits, ready before the clone.
struct Limiting {
    enforcement: Enforcement,
    cgroup: Option<RunCgroup>,
    join: CgroupJoin,
    socket_guard: Option<SocketGuard>,
    rlimits: RlimitPlan,
    pid_max: Option<u64>,
    /// connect(2) traps to the supervisor.
    supervise_connect: bool,
}

/// Decides what this run enforces and how: plans the limits, creates the run's cgroup and
/// opens what init needs to join it, checks the cache overlays and the Unix-socket guard;
/// refuses a requested protection this machine can't enforce (unless --allow-degraded).
fn set_up_limits(policy: &Policy, landlock_abi: i32, mounts: &mut MountPlan) -> Result<Limiting, LaunchError> {
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
    match crate::caches::assess(mounts, &kernel) {
        Some(Ok(detail)) => enforcement.enforced.push(LayerStatus { name: "cache overlays".into(), detail }),
        Some(Err(detail)) => enforcement.not_enforced.push(LayerStatus { name: "cache overlays".into(), detail }),
        None => {}
    }
    let supervise_connect = record_unix_guard(&mut enforcement, policy.network);
    enforcement.kernel = kernel;
    let run_name = format!("ringfence-{}-{}", std::process::id(), RUN_COUNTER.fetch_add(1, Ordering::Relaxed));
    let cgroup = create_cgroup(policy, &probe, &mut plan, &run_name, &mut enforcement);
    let remove = |cg: &Option<RunCgroup>| {
        cgroup::remove_dirs(cg.iter().flat_map(|c| c.dirs.iter().map(|(_, d)| d.as_path())));
    };
    if !enforcement.not_enforced.is_empty() && !policy.allow_degraded {
        remove(&cgroup);
        let what: Vec<String> = enforcement.not_enforced.iter().map(|l| format!("{}: {}", l.name, l.detail)).collect();
        return Err(unsupported(
            format!("this machine can't enforce the requested policy ({})", what.join("; ")),
            "see `ringfence check` for how to enable it, or pass --allow-degraded to run with less",
        ));
    }
    let opened = cgroup.as_ref().map(|cg| Ok::<_, std::io::Error>((cg.open_join()?, cg.socket_guard(&plan)?)));
    let (join, socket_guard) = match opened.transpose() {
        Ok(opened) => opened.unwrap_or_default(),
        Err(e) => {
            remove(&cgroup);
            return Err(LaunchError::internal(format!("opening the run's cgroup: {e}")));
        }
    };
    let rlimits = if plan.mechanism == LimitMechanism::Rlimit {
        RlimitPlan {
            nproc: if plan.pid_max.is_some() { None } else { policy.limits.pids },
            address_space: plan.memory,
            cpus: policy.limits.cpus.map(|c| c.ceil().max(1.0) as usize),
        }
    } else {
        RlimitPlan::default()
    };
    Ok(Limiting { enforcement, cgroup, join, socket_guard, rlimits, pid_max: plan.pid_max, supervise_connect })
}

/// The Landlock ruleset, built while the child builds its view.
fn landlock_ruleset(plan: &MountPlan, landlock_abi: i32) -> Result<Option<OwnedFd>, LaunchError> {
    (landlock_abi > 0)
        .then(|| LandlockBuilder::new(&plan.rules, landlock_abi).build())
        .transpose()
        .map_err(|e| unsupported(format!("Landlock: {e}"), "pass --allow-degraded to run without it"))
}

/// Releases placeholders, deepest first; returns what could not be removed.
fn release_all(held: Vec<placeholder::Held>) -> Vec<String> {
    held.into_iter().rev().filter_map(placeholder::Held::release).collect()
}

fn internal(what: &str) -> impl Fn(nix::Error) -> LaunchError + '_ {
    move |e| LaunchError::internal(format!("{what}: {e}"))
}

/// A descriptor init hands over on the control socket.
fn handed_over(go: RawFd, what: &str) -> Result<OwnedFd, LaunchError> {
    match sys::recv_with_fd(go) {
        Ok((1, Some(fd))) => Ok(fd),
        _ => Err(LaunchError::internal(format!("the sandbox's init sent no {what}"))),
    }
}

/// Starts the command in a new sandbox. Must be called while the process has one thread.
pub fn spawn(spec: LaunchSpec) -> Result<Sandbox, LaunchError> {
    let policy = &spec.policy;
    let landlock_abi = sys::landlock_abi();
    if !policy.caches.is_empty() {
        crate::caches::make_root(&policy.home)?;
    }
    let mut plan = plan::build(policy, &plan::host_sockets(), plan::kept_runtime_dirs(policy.network))
        .map_err(|e| LaunchError::new(ErrorKind::Policy, e.0, Some(e.1)))?;
    let limiting = set_up_limits(policy, landlock_abi, &mut plan)?;
    let mut leftovers = Leftovers {
        cgroups: limiting.cgroup.iter().flat_map(|c| c.dirs.iter().map(|(_, d)| d.clone())).collect(),
        placeholders: Vec::new(),
        cache_layers: Vec::new(),
        review: Review::default(),
    };

    let (go_child, go_parent) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(internal("socketpair"))?;
    let (status_read, status_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(internal("pipe"))?;
    let mut stdio_fds: [Option<OwnedFd>; 3] = [None, None, None];
    for (slot, spec) in stdio_fds.iter_mut().zip(spec.stdio) {
        *slot = match spec {
            StdioSpec::Inherit => None,
            StdioSpec::Null => Some(
                std::fs::File::options()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| LaunchError::internal(format!("/dev/null: {e}")))?,
            ),
            StdioSpec::Fd(fd) => Some(fd),
        };
    }

    let mut layers = match crate::caches::hold(&mut plan, &policy.home) {
        Ok(layers) => layers,
        Err(e) => {
            crate::cleaner::warn(leftovers.remove());
            return Err(e);
        }
    };
    // The cleaner starts before anything it cleans exists, so a SIGKILL at any later point
    // leaves nothing behind.
    leftovers.placeholders = plan.placeholders.clone();
    leftovers.cache_layers = layers.private.clone();
    let write_roots: Vec<PathBuf> = plan.rules.of_kind(RuleKind::Write).map(|r| r.path.clone()).collect();
    leftovers.review = Review::new(&plan, &policy.home);
    // Any writable root may get a new repository whose hooks the cleaner must review if the
    // supervisor dies; only a run that writes nothing needs no cleaner.
    let cleaner = if leftovers.is_empty() && write_roots.is_empty() {
        None
    } else {
        match Cleaner::spawn(leftovers.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                crate::cleaner::warn(leftovers.remove());
                return Err(LaunchError::internal(format!("starting the cleaner: {e}")));
            }
        }
    };
    let held = match crate::caches::make_private(&mut layers, &policy.home).and_then(|()| hold_placeholders(&mut plan))
    {
        Ok(h) => h,
        Err(e) => {
            crate::cleaner::warn(leftovers.remove());
            if let Some(c) = cleaner {
                c.dismiss();
            }
            return Err(e);
        }
    };

    let overlay_ids = match layers.ids() {
        Ok(ids) => ids,
        Err(e) => {
            crate::cleaner::warn(leftovers.remove());
            if let Some(c) = cleaner {
                c.dismiss();
            }
            return Err(e);
        }
    };
    let setup = ChildSetup {
        program: spec.program,
        args: spec.args,
        env: spec.env,
        cwd: spec.cwd,
        plan,
        overlay_ids,
        allow_ptrace: policy.allow_ptrace,
        landlock_abi,
        rlimits: limiting.rlimits,
        pid_max: limiting.pid_max,
        isolate_network: policy.network != NetworkMode::Host,
        gateway: policy.network == NetworkMode::Allow,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        go_read: go_child.as_raw_fd(),
        status_write: status_write.as_raw_fd(),
        stdio: [0, 1, 2].map(|i| stdio_fds[i].as_ref().map(|f| f.as_raw_fd())),
        terminal: spec.terminal,
        supervise_connect: limiting.supervise_connect,
        cgroup_files: limiting.join.files.iter().map(|(fd, path)| (fd.as_raw_fd(), path.clone())).collect(),
    };
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if setup.isolate_network {
        flags |= libc::CLONE_NEWNET;
    }
    let init = match clone_sandbox(flags, &limiting.join) {
        Ok((0, born_in_cgroup)) => crate::init::main(&setup, born_in_cgroup),
        Ok((pid, _)) => pid,
        Err(e) => {
            // Our own shared locks would keep the placeholders from being removed.
            crate::cleaner::warn(release_all(held).into_iter().chain(leftovers.remove()));
            if let Some(c) = cleaner {
                c.dismiss();
            }
            return Err(unsupported(
                format!("creating the sandbox's namespaces failed: {e}"),
                crate::host::userns_remedy(),
            ));
        }
    };
    drop((go_child, status_write, stdio_fds, limiting.join));
    let mut sandbox = Sandbox {
        init,
        status: BufReader::new(std::fs::File::from(status_read)),
        terminal: None,
        cgroup: limiting.cgroup,
        socket_guard: limiting.socket_guard,
        cleaner,
        leftovers,
        held,
        layers,
        started: Instant::now(),
        timeout: policy.limits.timeout.map(|t| t.0),
        command: None,
        early: Vec::new(),
        settled: false,
        review: ReviewReport::default(),
        finished: false,
        left: Vec::new(),
        enforcement: limiting.enforcement,
        gateway_listeners: None,
        guard: None,
    };
    // From here on the child builds its view while we work in parallel.
    let ready = landlock_ruleset(&setup.plan, landlock_abi);
    let ruleset = match ready {
        Ok(r) => r,
        Err(e) => return Err(sandbox.abort(e)),
    };
    if setup.terminal {
        match sys::recv_with_fd(go_parent.as_raw_fd()) {
            Ok((1, Some(master))) => sandbox.terminal = Some(master),
            Ok(_) | Err(_) => {
                return Err(sandbox.abort(LaunchError::internal("the sandbox's init sent no terminal")));
            }
        }
    }
    if setup.gateway {
        let listener = || match sys::recv_with_fd(go_parent.as_raw_fd()) {
            Ok((1, Some(fd))) => Ok(std::net::TcpListener::from(fd)),
            _ => Err(LaunchError::internal("the sandbox's init sent no gateway socket")),
        };
        match (listener(), listener()) {
            (Ok(http), Ok(socks)) => sandbox.gateway_listeners = Some(GatewayListeners { http, socks }),
            (Err(e), _) | (_, Err(e)) => return Err(sandbox.abort(e)),
        }
    }
    let own_netns = setup.supervise_connect && setup.isolate_network;
    let sock_diag = own_netns.then(|| handed_over(go_parent.as_raw_fd(), "sock_diag socket")).transpose();
    let sock_diag = sock_diag.map_err(|e| sandbox.abort(e))?;
    if let Err(e) = sys::send_with_fd(go_parent.as_raw_fd(), b"g", ruleset.as_ref().map(|r| r.as_raw_fd())) {
        return Err(sandbox.abort(LaunchError::internal(format!("starting the sandbox: {e}"))));
    }
    drop(ruleset);
    if setup.supervise_connect {
        if let Err(e) = sandbox.start_guard(go_parent.as_raw_fd(), sock_diag) {
            return Err(sandbox.abort(e));
        }
    }
    drop(go_parent);
    sandbox.await_ready()?;
    Ok(sandbox)
}

impl Sandbox {
    /// The host pid of the sandbox's init.
    pub fn id(&self) -> u32 {
        self.init as u32
    }

    /// The host pid of the command, read when it started (None if it had already ended).
    pub fn command_id(&self) -> Option<u32> {
        self.command
    }

    /// Kills every process of the sandbox.
    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init), Signal::SIGKILL);
    }

    /// Receives the seccomp listener, which init sends right after "go", and starts its handler.
    fn start_guard(&mut self, go: RawFd, sock_diag: Option<OwnedFd>) -> Result<(), LaunchError> {
        let listener = handed_over(go, "seccomp listener")?;
        let guard = crate::notify::Guard::start(listener, sock_diag, self.init)
            .map_err(|e| LaunchError::internal(format!("starting the connect(2) handler: {e}")))?;
        self.guard = Some(guard);
        Ok(())
    }

    /// Ends the sandbox, if it still runs, and then the handler of trapped calls; why the
    /// handler failed, if it did. Called before init is reaped, so the guard's kill of init
    /// can't reach a reused pid.
    fn stop_guard(&mut self) -> Option<String> {
        self.guard.take().and_then(crate::notify::Guard::stop)
    }

    /// Ends a launch that failed. The child's own report, when it sent one, is the better
    /// explanation than ours (a broken pipe usually means the child failed first).
    fn abort(&mut self, ours: LaunchError) -> LaunchError {
        self.kill();
        self.stop_guard();
        let _ = sys::wait4(self.init);
        // The command may have started: what it left is reviewed, though nobody hears of it.
        self.settle();
        self.finish();
        crate::cleaner::warn(std::mem::take(&mut self.left));
        let mut line = String::new();
        while matches!(self.status.read_line(&mut line), Ok(n) if n > 0) {
            if let Some(theirs) = ChildError::decode(line.trim_end()) {
                return theirs;
            }
            line.clear();
        }
        ours
    }

    /// Removes what the run left and dismisses the cleaner.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.left.extend(release_all(std::mem::take(&mut self.held)));
        self.left.extend(self.leftovers.remove());
        drop(std::mem::take(&mut self.layers));
        if let Some(c) = self.cleaner.take() {
            c.dismiss();
        }
    }

    /// Waits for init's "started" line, so set-up errors surface from `spawn`.
    fn await_ready(&mut self) -> Result<(), LaunchError> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.status.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    return Err(self.abort(LaunchError::internal("the sandbox's init exited during set-up")));
                }
                Ok(_) if line.starts_with("P\t") => {
                    // Init's only child; read now, while it surely still runs or has just ended.
                    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.init));
                    self.command = children.ok().and_then(|c| c.split_whitespace().next()?.parse().ok());
                    return Ok(());
                }
                Ok(_) => {
                    if let Some(err) = ChildError::decode(line.trim_end()) {
                        return Err(self.abort(err));
                    }
                    // The command's own report (exec failed) can beat init's "started" line.
                    self.early.push(line.trim_end().to_string());
                }
            }
        }
    }

    /// Runs the run to its end: relays the terminal, forwards signals from `signals`, enforces
    /// the timeout, then collects the exit status and usage.
    pub fn wait(mut self, signals: Option<&mut SignalFd>) -> Result<Outcome, LaunchError> {
        let result = self.watch(signals);
        let guard_failure = self.stop_guard();
        let (status, rusage) = sys::wait4(self.init).map_err(|e| LaunchError::internal(format!("wait: {e}")))?;
        let duration = self.started.elapsed();
        self.settle();
        let stats = self.cgroup.as_ref().map(|c| c.stats()).unwrap_or_default();
        self.finish();
        let watched = result?;
        if let Some(why) = guard_failure {
            return Err(LaunchError::internal(format!(
                "supervising the sandbox's connect(2) calls failed ({why}); the sandbox was killed"
            )));
        }
        let (exit, mut reason) = match watched.command {
            Some(exit @ ExitKind::Code(_)) => (exit, EndReason::Exited),
            Some(exit @ ExitKind::Signal(_)) => (exit, EndReason::Signaled),
            None if libc::WIFSIGNALED(status) => (ExitKind::Signal(libc::WTERMSIG(status)), EndReason::Signaled),
            None => {
                return Err(LaunchError::internal("the sandbox's init ended without reporting the command's status"))
            }
        };
        if let Some(msg) = watched.exec_error {
            reason = EndReason::ExecFailed(msg);
        } else if watched.timed_out {
            reason = EndReason::Timeout;
        } else if stats.oom_kills > 0 || watched.socket_memory_exceeded {
            reason = EndReason::MemoryLimit;
        } else if stats.pids_limit_hits > 0 && exit != ExitKind::Code(0) {
            reason = EndReason::PidsLimit;
        }
        let review = std::mem::take(&mut self.review);
        if !review.failures.is_empty() {
            reason = EndReason::ReviewFailed;
        }
        Ok(Outcome {
            git_findings: review.findings,
            review_failures: review.failures,
            left: std::mem::take(&mut self.left),
            exit,
            reason,
            duration,
            rusage,
            cgroup: stats,
        })
    }

    /// Once nothing of the sandbox runs: reviews the writable roots and removes the
    /// placeholders.
    fn settle(&mut self) {
        if !std::mem::replace(&mut self.settled, true) {
            self.review = self.leftovers.review.run();
            self.left.extend(release_all(std::mem::take(&mut self.held)));
        }
    }

    fn watch(&mut self, mut signals: Option<&mut SignalFd>) -> Result<Watched, LaunchError> {
        let mut watched = Watched::default();
        for line in std::mem::take(&mut self.early) {
            watched.parse(&line);
        }
        let mut deadline = self.timeout.map(|t| self.started + t);
        let mut stdin_open = self.terminal.is_some();
        // Input for the terminal waits here while the command doesn't read it: the relay never
        // blocks, so the timeout and signals stay in force whatever the command does.
        let mut pending: Vec<u8> = Vec::new();
        // A pty master can report room it doesn't have: after a write that took nothing, wait a
        // little instead of polling for it again at once.
        let mut retry_input: Option<Instant> = None;
        let _raw = self.terminal.as_ref().and_then(|_| pty::RawMode::enter(0));
        if let Some(master) = &self.terminal {
            pty::sync_size(0, master);
            let _ = nix::fcntl::fcntl(master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        }
        let mut line = String::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut guard_at = self.socket_guard.as_ref().map(|_| Instant::now() + cgroup::SOCKET_GUARD_INTERVAL);
        loop {
            let wake = [deadline, retry_input, guard_at].into_iter().flatten().min();
            // Rounded up: a wait cut short by the rounding would spin until the time comes.
            let wait_ms = wake.map(|d| {
                d.saturating_duration_since(Instant::now()).as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            });
            let want_room = !pending.is_empty() && retry_input.is_none_or(|r| Instant::now() >= r);
            let stdin = sys::borrow_fd(0);
            let mut fds = vec![PollFd::new(self.status.get_ref().as_fd(), PollFlags::POLLIN)];
            let sig_index = signals.as_ref().map(|s| {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let master_index = self.terminal.as_ref().map(|m| {
                let want = if want_room { PollFlags::POLLIN | PollFlags::POLLOUT } else { PollFlags::POLLIN };
                fds.push(PollFd::new(m.as_fd(), want));
                fds.len() - 1
            });
            let stdin_index = (stdin_open && pending.len() < PENDING_INPUT_MAX).then(|| {
                fds.push(PollFd::new(stdin, PollFlags::POLLIN));
                fds.len() - 1
            });
            let timeout = match wait_ms {
                Some(ms) => PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(LaunchError::internal(format!("poll: {e}"))),
            }
            let ready =
                |i: Option<usize>| i.and_then(|i| fds.get(i)).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            let (status_ready, sig_ready, master_ready, stdin_ready) =
                (ready(Some(0)), ready(sig_index), ready(master_index), ready(stdin_index));
            drop(fds);

            if master_ready {
                self.relay_output(&mut buf);
            }
            if stdin_ready {
                stdin_open = self.read_input(&mut buf, &mut pending);
            }
            if !pending.is_empty() && retry_input.is_none_or(|r| Instant::now() >= r) {
                let before = pending.len();
                self.flush_input(&mut pending);
                retry_input = (pending.len() == before).then(|| Instant::now() + Duration::from_millis(50));
            }
            if sig_ready {
                if let Some(sfd) = signals.as_mut() {
                    while let Ok(Some(info)) = sfd.read_signal() {
                        let sig = info.ssi_signo as i32;
                        if sig == libc::SIGWINCH {
                            if let Some(master) = &self.terminal {
                                pty::sync_size(0, master);
                            }
                        } else if let Ok(sig) = Signal::try_from(sig) {
                            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init), sig);
                        }
                    }
                }
            }
            if status_ready {
                line.clear();
                match self.status.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => watched.parse(line.trim_end()),
                }
                // Init reports only once everything else in the sandbox is dead: clean up while
                // the kernel tears the namespaces down.
                if watched.command.is_some() {
                    self.settle();
                }
            }
            // Once init reported, everything in the sandbox is gone: its buffers only shrink.
            if watched.command.is_none() && guard_at.is_some_and(|at| Instant::now() >= at) {
                guard_at = self.guard_socket_memory(&mut watched);
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    let init = nix::unistd::Pid::from_raw(self.init);
                    if watched.timed_out {
                        let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
                        deadline = None;
                    } else {
                        watched.timed_out = true;
                        let _ = nix::sys::signal::kill(init, Signal::SIGTERM);
                        deadline = Some(Instant::now() + TIMEOUT_GRACE);
                    }
                }
            }
        }
        if self.terminal.is_some() {
            self.drain_output(&mut buf);
        }
        Ok(watched)
    }

    /// Ends the run if its socket buffers outgrew their share of the memory cap; returns when
    /// to look next.
    fn guard_socket_memory(&self, watched: &mut Watched) -> Option<Instant> {
        let guard = self.socket_guard.as_ref()?;
        if !guard.exceeded() {
            return Some(Instant::now() + cgroup::SOCKET_GUARD_INTERVAL);
        }
        watched.socket_memory_exceeded = true;
        self.kill();
        None
    }

    fn relay_output(&mut self, buf: &mut [u8]) {
        let Some(master) = &self.terminal else { return };
        if let Ok(n) = sys::read_fd(master.as_raw_fd(), buf) {
            let _ = sys::write_fd(1, &buf[..n]);
        }
    }

    /// Reads our input for the terminal; false once it has ended.
    fn read_input(&mut self, buf: &mut [u8], pending: &mut Vec<u8>) -> bool {
        match sys::read_fd(0, buf) {
            // Our input ended: pass the end on as the terminal's end-of-file character.
            Ok(0) | Err(_) => {
                pending.push(0x04);
                false
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Writes as much pending input to the terminal as it takes now.
    fn flush_input(&mut self, pending: &mut Vec<u8>) {
        let Some(master) = &self.terminal else { return };
        while !pending.is_empty() {
            match nix::unistd::write(master, pending) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    pending.drain(..n);
                }
            }
        }
    }

    /// Output still buffered in the terminal after the command exited.
    fn drain_output(&mut self, buf: &mut [u8]) {
        let Some(master) = &self.terminal else { return };
        let _ = nix::fcntl::fcntl(master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        while let Ok(n) = sys::read_fd(master.as_raw_fd(), buf) {
            if n == 0 {
                break;
            }
            let _ = sys::write_fd(1, &buf[..n]);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A sandbox dropped without `wait` must not keep running.
        if !self.finished {
            self.kill();
            self.stop_guard();
            let _ = sys::wait4(self.init);
            self.settle();
            self.finish();
            crate::cleaner::warn(std::mem::take(&mut self.left));
        }
    }
}

/// What init reported about the command.
#[derive(Default)]
struct Watched {
    command: Option<ExitKind>,
    exec_error: Option<String>,
    timed_out: bool,
    /// The run's socket buffers outgrew their share of the memory cap, and it was ended.
    socket_memory_exceeded: bool,
}

impl Watched {
    fn parse(&mut self, line: &str) {
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["X", "exit", code] => self.command = code.parse().ok().map(ExitKind::Code),
            ["X", "signal", sig, ..] => self.command = sig.parse().ok().map(ExitKind::Signal),
            ["X", "exec", _, msg] => self.exec_error = Some(msg.to_string()),
            _ => {}
        }
    }
}
