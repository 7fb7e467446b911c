//! The launch sequence, on the supervisor's side: plan the view, decide what the run enforces,
//! set up on the host (the run's cgroup, cache layers, the cleaner, placeholders), clone init
//! into its namespaces, and exchange with it until the command has started. Everything set up on
//! the host is registered in one [`Rollback`] as it is made, so a launch that fails at any step
//! undoes all the steps before it; after the clone, the [`Sandbox`] owns that guard, and ends
//! init too. See docs/ARCHITECTURE.md for the sequence, and `protocol.rs` for the messages.

use crate::cgroup::CgroupJoin;
use crate::enforcement::{set_up_limits, Limiting};
use crate::landlock_rules::LandlockBuilder;
use crate::plan::{self, MountPlan};
use crate::protocol::{receive_handover, ChildSetup, Control, Handover};
use crate::rollback::Rollback;
use crate::sandbox::Sandbox;
use crate::sys;
use crate::trace::supervisor as trace;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use ringfence_audit::LaunchError;
use ringfence_backend::{GatewayListeners, LaunchRequest, Stdio, TransparentSockets};
use ringfence_policy::{NetworkMode, Policy};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Starts the command in a new sandbox.
///
/// Refused while the process has more than one thread: init is a raw clone of this process
/// and runs Rust code (it allocates) on its copy of the memory, where a lock another thread
/// held at the clone would stay held forever.
pub fn spawn(request: LaunchRequest) -> Result<Sandbox, LaunchError> {
    launch(request, false).map(|(sandbox, _)| sandbox)
}

/// Starts a session's sandbox: init runs no command of its own but those ordered on the
/// control socket, whose supervisor's end comes back with the sandbox.
pub(crate) fn spawn_session(request: LaunchRequest) -> Result<(Sandbox, OwnedFd), LaunchError> {
    let (sandbox, control) = launch(request, true)?;
    Ok((sandbox, control.ok_or_else(|| LaunchError::internal("the session's control socket was closed"))?))
}

/// The launch; the control socket stays open for a session.
fn launch(request: LaunchRequest, session: bool) -> Result<(Sandbox, Option<OwnedFd>), LaunchError> {
    if crate::host::thread_count() != Some(1) {
        return Err(LaunchError::internal(
            "ringfence starts a sandbox only from a process with a single thread (the sandbox is a \
             fork-like clone of it); start it before any other thread, as the ringfence command does",
        ));
    }
    let LaunchRequest { program, args, env, cwd, policy, stdio, terminal, egress, events } = request;
    let gateway = policy.network == NetworkMode::Allow;
    let captured_ports = if gateway { policy.net.captured_ports() } else { Vec::new() };
    let landlock_abi = sys::landlock_abi();
    let mut plan = plan_view(&policy)?;
    trace("plan the mount view");
    let mut rollback = Rollback::default();
    let Limiting { enforcement, cgroup, join, socket_guard, rlimits, pid_max, supervise_connect, supervise_exec } =
        set_up_limits(&policy, landlock_abi, &mut plan, &mut rollback)?;
    trace("limits and the run's cgroup");
    let exec_watch = supervise_exec.then(|| crate::notify::ExecWatch {
        rules: policy.exec.clone(),
        home: policy.home.clone(),
        sink: events,
    });
    let no_exec = if supervise_exec { crate::landlock_rules::no_exec_files(&policy) } else { Vec::new() };
    let (supervisor_ends, init_ends) = open_channels(stdio)?;
    rollback.hold_cache_layers(&mut plan, &policy.home)?;
    rollback.start_cleaner(&plan, &policy.home)?;
    trace("channels, cache layers, the cleaner");
    rollback.make_placeholders(&mut plan, &policy.home)?;
    trace("placeholders");
    let setup = ChildSetup {
        program: &program,
        args: &args,
        env: &env,
        cwd: &cwd,
        plan: &plan,
        overlay_ids: rollback.overlay_ids()?,
        allow_ptrace: policy.allow_ptrace,
        landlock_abi,
        rlimits,
        pid_max,
        isolate_network: policy.network != NetworkMode::Host,
        gateway,
        captured_ports: &captured_ports,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        control: init_ends.control.as_fd(),
        status: init_ends.status.as_fd(),
        stdio: [0, 1, 2].map(|i| init_ends.stdio[i].as_ref().map(|fd| fd.as_fd())),
        terminal,
        supervise_connect,
        supervise_exec,
        cgroup_files: &join.files,
        session,
    };
    let init = clone_init(&setup, &join)?;
    trace("clone");
    rollback.reap_cleaner_middle();
    let exchange = Exchange::of(&setup, egress, no_exec);
    // Init holds its copies: ours would keep the pipe and the socket from ever closing.
    drop((init_ends, join));
    let timeout = policy.limits.timeout.map(|t| t.0);
    let mut sandbox = Sandbox::new(init, supervisor_ends.status, rollback, cgroup, socket_guard, enforcement, timeout);
    let exchanged = exchange.run(&mut sandbox, supervisor_ends.control.as_fd(), &plan, exec_watch);
    let control = session.then_some(supervisor_ends.control);
    match exchanged {
        Ok(()) => sandbox.await_started().inspect(|_| trace("the command started")).map(|s| (s, control)),
        Err(e) => Err(sandbox.abort(e)),
    }
}

/// The mount view the policy asks for, planned from the host as it is now.
fn plan_view(policy: &Policy) -> Result<MountPlan, LaunchError> {
    if !policy.caches.is_empty() {
        crate::caches::make_root(&policy.home)?;
    }
    plan::build(policy, &plan::host_sockets(), plan::kept_runtime_dirs(policy.network))
        .map_err(|e| LaunchError::policy(e.0, e.1))
}

/// The supervisor's ends of the channels to init.
struct SupervisorEnds {
    control: OwnedFd,
    status: OwnedFd,
}

/// Init's ends, and the command's standard streams; the supervisor closes its copies once
/// init is cloned.
struct InitEnds {
    control: OwnedFd,
    status: OwnedFd,
    stdio: [Option<OwnedFd>; 3],
}

/// The control socket and the status pipe (see `protocol.rs`), and the command's streams.
fn open_channels(stdio: [Stdio; 3]) -> Result<(SupervisorEnds, InitEnds), LaunchError> {
    let failed = |what: &str, e: nix::Error| LaunchError::internal(format!("{what}: {e}"));
    let (init_control, control) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| failed("socketpair", e))?;
    let (status, init_status) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed("pipe", e))?;
    let mut streams: [Option<OwnedFd>; 3] = [None, None, None];
    for (slot, spec) in streams.iter_mut().zip(stdio) {
        *slot = match spec {
            Stdio::Inherit => None,
            Stdio::Null => Some(
                std::fs::File::options()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| LaunchError::internal(format!("/dev/null: {e}")))?,
            ),
            Stdio::Stream(fd) => Some(fd),
        };
    }
    Ok((SupervisorEnds { control, status }, InitEnds { control: init_control, status: init_status, stdio: streams }))
}

/// Clones the sandbox's init into its namespaces, and in the child runs it; returns its pid.
fn clone_init(setup: &ChildSetup, join: &CgroupJoin) -> Result<libc::pid_t, LaunchError> {
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if setup.isolate_network {
        flags |= libc::CLONE_NEWNET;
    }
    match clone_sandbox(flags, join) {
        Ok((0, born_in_cgroup)) => crate::init::main(setup, born_in_cgroup),
        Ok((pid, _)) => Ok(pid),
        Err(e) => Err(LaunchError::unsupported(
            format!("creating the sandbox's namespaces failed: {e}"),
            crate::host::userns_remedy(),
        )),
    }
}

/// Clones the sandbox's init, born in the run's cgroup v2 where the kernel allows; returns
/// its pid (0 in the child) and whether it was born there.
fn clone_sandbox(flags: libc::c_int, join: &CgroupJoin) -> std::io::Result<(libc::pid_t, bool)> {
    if let Some(dir) = &join.directory {
        // SAFETY: `spawn`'s caller keeps the process single-threaded (its documented
        // requirement), so init may allocate in its copy of the memory.
        match unsafe { sys::clone_into_cgroup(flags, dir.as_fd()) } {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)) => {}
            other => return other.map(|pid| (pid, true)),
        }
    }
    // SAFETY: as above.
    unsafe { sys::clone_process(flags) }.map(|pid| (pid, false))
}

/// What the supervisor exchanges with init on the control socket after the clone, in the
/// order init sends (see `protocol.rs`).
struct Exchange {
    landlock_abi: i32,
    terminal: bool,
    gateway: bool,
    /// How many sockets of the transparent path come after the gateway's.
    capture_sockets: usize,
    /// The gateway's early decision on TCP connections, for the connect(2) handler.
    egress: Option<ringfence_backend::EgressJudge>,
    /// A sock_diag socket of the sandbox's own network namespace comes before "go".
    sock_diag: bool,
    /// connect(2) is supervised.
    supervise_connect: bool,
    /// The seccomp listener comes after "go".
    seccomp_listener: bool,
    /// Files the exec rules deny by path: no execute right in the Landlock ruleset.
    no_exec: Vec<std::path::PathBuf>,
}

impl Exchange {
    fn of(
        setup: &ChildSetup,
        egress: Option<ringfence_backend::EgressJudge>,
        no_exec: Vec<std::path::PathBuf>,
    ) -> Exchange {
        Exchange {
            landlock_abi: setup.landlock_abi,
            terminal: setup.terminal,
            gateway: setup.gateway,
            capture_sockets: crate::capture::socket_count(setup.captured_ports),
            egress,
            sock_diag: setup.supervise_connect && setup.isolate_network,
            supervise_connect: setup.supervise_connect,
            seccomp_listener: setup.supervise_connect || setup.supervise_exec,
            no_exec,
        }
    }

    /// While init builds the sandbox: builds the Landlock ruleset, takes what init hands over,
    /// says "go", and starts the handler of trapped calls (with the exec monitor's `exec`).
    fn run(
        &self,
        sandbox: &mut Sandbox,
        control: BorrowedFd,
        plan: &MountPlan,
        exec: Option<crate::notify::ExecWatch>,
    ) -> Result<(), LaunchError> {
        let ruleset = landlock_ruleset(plan, self.landlock_abi, &self.no_exec)?;
        trace("Landlock ruleset");
        if self.terminal {
            sandbox.relay_terminal(receive_handover(control, Handover::Terminal)?);
        }
        if self.gateway {
            let http = receive_handover(control, Handover::GatewaySocket)?.into();
            let socks = receive_handover(control, Handover::GatewaySocket)?.into();
            let transparent = Some(self.receive_capture_sockets(control)?);
            sandbox.gateway_listeners = Some(GatewayListeners { http, socks, transparent });
        }
        let sock_diag = self.sock_diag.then(|| receive_handover(control, Handover::SockDiag)).transpose()?;
        Control::Go { ruleset: ruleset.as_ref().map(|r| r.as_fd()) }
            .send(control)
            .map_err(|e| LaunchError::internal(format!("starting the sandbox: {e}")))?;
        drop(ruleset);
        trace("go");
        if self.seccomp_listener {
            let connect = self.supervise_connect.then_some(sock_diag);
            let listener = receive_handover(control, Handover::SeccompListener)?;
            sandbox.start_guard(listener, connect, exec, self.egress.clone())?;
            trace("the handler of trapped calls");
        }
        Ok(())
    }

    /// The transparent path's sockets, in the order `capture::open_sockets` makes them.
    fn receive_capture_sockets(&self, control: BorrowedFd) -> Result<TransparentSockets, LaunchError> {
        let mut sockets = Vec::with_capacity(self.capture_sockets);
        for _ in 0..self.capture_sockets {
            sockets.push(receive_handover(control, Handover::CaptureSocket)?);
        }
        let mut last = || {
            sockets
                .pop()
                .ok_or_else(|| LaunchError::internal("the sandbox's init sent too few transparent-path sockets"))
        };
        let (tap_v6, tap_v4, dns_tcp, dns_v6, dns_v4) = (last()?, last()?, last()?, last()?, last()?);
        Ok(TransparentSockets {
            tcp: sockets.into_iter().map(Into::into).collect(),
            dns_udp: [dns_v4.into(), dns_v6.into()],
            dns_tcp: dns_tcp.into(),
            udp_taps: [tap_v4, tap_v6],
        })
    }
}

/// The Landlock ruleset, built while the child builds its view.
fn landlock_ruleset(
    plan: &MountPlan,
    landlock_abi: i32,
    no_exec: &[std::path::PathBuf],
) -> Result<Option<OwnedFd>, LaunchError> {
    (landlock_abi > 0)
        .then(|| LandlockBuilder::new(&plan.rules, landlock_abi).without_execute(no_exec).build())
        .transpose()
        .map_err(|e| LaunchError::unsupported(format!("Landlock: {e}"), "pass --allow-degraded to run without it"))
}
