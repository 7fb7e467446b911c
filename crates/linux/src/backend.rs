//! The Linux backend behind the contract every platform implements (crates/backend).

use crate::api;
use crate::launch;
use crate::protocol::FORWARDED_SIGNALS;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use ringfence_backend::{
    Enforcement, Explanation, GatewayListeners, GatewayPorts, Killer, LaunchError, LaunchRequest, Outcome, OutputFile,
    Probe, ProbeItem, SessionExec, SessionExit, SessionInfo, SessionStart, Usage,
};
use ringfence_policy::Policy;
use std::os::fd::IntoRawFd;
use std::time::Duration;

/// The Linux backend: namespaces, the mount view, Landlock, seccomp, cgroups.
pub struct Linux;

/// The signals the supervisor forwards, blocked at start-up. The descriptor to read them from
/// is made when armed, once the descriptors the caller passed were taken over.
#[derive(Debug, Default)]
pub struct Signals {
    blocked: Option<SigSet>,
    fd: Option<SignalFd>,
}

impl Signals {
    /// The descriptor to read the blocked signals from (those already pending included).
    fn arm(&mut self) {
        if let (None, Some(blocked)) = (&self.fd, &self.blocked) {
            self.fd = SignalFd::with_flags(blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
        }
    }
}

/// Opens /dev/null on any of the standard descriptors the caller left closed, so that no pipe
/// or socket of ringfence's own lands on 0, 1 or 2 and is taken for the command's stdio.
fn fill_closed_stdio() {
    for fd in 0..3 {
        if !crate::sys::fd_is_open(fd) {
            // The lowest free number is the one just found closed.
            if let Ok(null) = std::fs::File::options().read(true).write(true).open("/dev/null") {
                let _ = null.into_raw_fd();
            }
        }
    }
}

/// What a Linux run fixes before its environment is known: the gateway listens on the sandbox's
/// own loopback at fixed ports (init makes the sockets inside and hands them over), and the
/// command's temporary folder is the private /tmp.
pub struct Prepared {
    gateway: Option<GatewayPorts>,
}

impl ringfence_backend::Prepared for Prepared {
    fn gateway_ports(&self) -> Option<GatewayPorts> {
        self.gateway
    }

    fn temp_dir(&self) -> Option<String> {
        Some("/tmp".into())
    }
}

/// A running Linux sandbox.
pub struct Sandbox {
    inner: crate::sandbox::Sandbox,
    enforcement: Enforcement,
}

impl ringfence_backend::Sandbox for Sandbox {
    type Signals = Signals;

    fn id(&self) -> u32 {
        self.inner.id()
    }

    fn command_id(&self) -> Option<u32> {
        self.inner.command_id()
    }

    fn records_execs(&self) -> bool {
        self.inner.records_execs()
    }

    fn killer(&self) -> Killer {
        let init = nix::unistd::Pid::from_raw(self.inner.id() as i32);
        Killer::new(move || {
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
        })
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    fn take_gateway_listeners(&mut self) -> Option<GatewayListeners> {
        self.inner.gateway_listeners.take()
    }

    fn wait(self, signals: &mut Signals) -> Result<Outcome, LaunchError> {
        signals.arm();
        let out = self.inner.wait(signals.fd.as_mut())?;
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Ok(Outcome {
            exit: out.exit,
            reason: out.reason,
            duration: out.duration,
            usage: Usage {
                user: tv(out.rusage.ru_utime),
                system: tv(out.rusage.ru_stime),
                max_rss_kb: out.rusage.ru_maxrss.max(0) as u64,
            },
            findings: out.git_findings,
            review_failures: out.review_failures,
            warnings: out.left,
            processes: out.processes,
            peak_memory: out.peak_memory,
        })
    }
}

/// The run's enforcement in the contract's terms: defaults this machine can't carry are
/// reported with what is not enforced.
fn enforcement(e: &api::Enforcement) -> Enforcement {
    Enforcement {
        enforced: e.enforced.clone(),
        not_enforced: e.not_enforced.iter().chain(&e.missing_defaults).cloned().collect(),
        platform: serde_json::json!({ "release": e.kernel, "landlock_abi": e.landlock_abi, "limits": e.limits }),
    }
}

impl ringfence_backend::Backend for Linux {
    type Signals = Signals;
    type Prepared = Prepared;
    type Sandbox = Sandbox;

    fn start_process() -> Result<Signals, i32> {
        fill_closed_stdio();
        // Blocked before anything else, so none is lost between now and the moment the
        // sandbox's init can take them.
        let mut set = SigSet::empty();
        for sig in FORWARDED_SIGNALS {
            set.add(*sig);
        }
        set.add(Signal::SIGWINCH);
        Ok(Signals { blocked: set.thread_block().ok().map(|()| set), fd: None })
    }

    fn arm_signals(signals: &mut Signals) {
        signals.arm();
    }

    fn release_signals(signals: Signals) {
        if let Some(blocked) = signals.blocked {
            let _ = blocked.thread_unblock();
        }
    }

    fn prepare(policy: &Policy) -> Result<Prepared, LaunchError> {
        let ports = GatewayPorts { http: ringfence_policy::HTTP_PROXY_PORT, socks: ringfence_policy::SOCKS_PROXY_PORT };
        Ok(Prepared { gateway: (policy.network == ringfence_policy::NetworkMode::Allow).then_some(ports) })
    }

    fn spawn(_: Prepared, request: LaunchRequest) -> Result<Sandbox, LaunchError> {
        let inner = launch::spawn(request)?;
        let enforcement = enforcement(&inner.enforcement);
        Ok(Sandbox { inner, enforcement })
    }

    fn session_start(_: Prepared, start: SessionStart) -> Result<SessionInfo, LaunchError> {
        crate::session::start(start)
    }

    fn session_exec(session: &str, exec: SessionExec, signals: &mut Signals) -> Result<SessionExit, LaunchError> {
        signals.arm();
        crate::session::exec(session, exec, signals.fd.as_mut())
    }

    fn session_stop(session: &str) -> Result<(), LaunchError> {
        crate::session::stop(session)
    }

    fn session_list() -> Result<Vec<SessionInfo>, LaunchError> {
        crate::session::list()
    }

    fn physical_memory() -> Option<u64> {
        crate::features::physical_memory()
    }

    fn user_home() -> Option<std::path::PathBuf> {
        nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.dir)
    }

    fn check_named_root(
        named: &std::path::Path,
        resolved: &std::path::Path,
        home: &std::path::Path,
        what: &str,
    ) -> Result<(), LaunchError> {
        crate::roots::refuse_planted_link(named, home, what, |real| {
            format!("run from the real folder: cd {0} (or -C {0})", real.display())
        })
        .map_err(|e| LaunchError::policy(e.0, e.1))?;
        let (now, _) = crate::roots::walk(named);
        if now != resolved {
            return Err(LaunchError::policy(
                format!(
                    "{what} {} changed while ringfence started: it led to {}, then to {}",
                    named.display(),
                    resolved.display(),
                    now.display()
                ),
                "run again from the real folder, and check what is changing it",
            ));
        }
        Ok(())
    }

    fn probe() -> Probe {
        let features = crate::features::Features::probe();
        let items = features
            .report()
            .into_iter()
            .map(|item| {
                let required = matches!(item.name, "user namespaces" | "seccomp");
                let probe = ProbeItem::new(item.name, item.available, item.detail).remedy(item.remedy);
                if required {
                    probe.required()
                } else {
                    probe
                }
            })
            .collect();
        Probe { platform: format!("Linux {}", features.kernel), items, notes: Vec::new() }
    }

    fn explain(policy: &Policy) -> Result<Explanation, LaunchError> {
        crate::explain::explain(policy)
    }

    fn open_output(path: &std::path::Path, policy: &Policy, append: bool) -> Result<OutputFile, LaunchError> {
        let mode = if append { crate::output::OutputMode::Append } else { crate::output::OutputMode::Replace };
        let out = crate::output::open_output(path, policy, mode)?;
        Ok(OutputFile { file: out.file, protect: out.in_writable_root.then_some(out.path) })
    }

    fn inherited_output(fd: i32, policy: &Policy) -> Result<OutputFile, LaunchError> {
        let file = crate::sys::take_inherited_fd(fd).ok_or_else(|| {
            LaunchError::policy(
                format!("descriptor {fd} is not open"),
                format!("open it, e.g. `{fd}>status.json`, or pass a file path"),
            )
        })?;
        // Descriptors 0 to 2 are the command's own streams too: it writes there anyway.
        let protect = if fd > 2 { crate::output::inherited_output_path(fd, policy)? } else { None };
        Ok(OutputFile { file, protect })
    }
}
