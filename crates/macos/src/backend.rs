//! The macOS backend behind the contract every platform implements (crates/backend): the
//! command under a Seatbelt profile compiled from the policy, with a private temporary folder,
//! and the gateway on two loopback ports that the profile alone lets the command reach.

use crate::launch::{self, ExitKind, LaunchSpec, TempDir};
use crate::signals::ForwardedSignals;
use crate::{report, sys};
use ringfence_backend::{
    Enforcement, Exit, Explanation, GatewayListeners, GatewayPorts, Killer, LaunchError, LaunchRequest, Outcome, Probe,
    ProbeItem, Usage,
};
use ringfence_policy::{NetworkMode, Policy};
use std::os::fd::IntoRawFd;

/// The macOS backend: Seatbelt, a session of its own, setrlimit and a watch over the tree.
pub struct Macos;

/// The terminal signals, recorded from a kqueue once armed (ringfence then ignores them, so
/// none ends it before the command is stopped).
#[derive(Default)]
pub struct Signals {
    armed: Option<ForwardedSignals>,
}

/// What a macOS run fixes before its environment is known: its private temporary folder, and
/// the gateway's listeners on free loopback ports.
pub struct Prepared {
    tmp: TempDir,
    listeners: Option<GatewayListeners>,
    ports: Option<launch::GatewayPorts>,
}

impl ringfence_backend::Prepared for Prepared {
    fn gateway_ports(&self) -> Option<GatewayPorts> {
        self.ports.as_ref().map(|p| GatewayPorts { http: p.http, socks: p.socks })
    }

    fn temp_dir(&self) -> Option<String> {
        Some(self.tmp.path().to_string_lossy().into_owned())
    }

    fn take_host_listeners(&mut self) -> Option<GatewayListeners> {
        self.listeners.take()
    }
}

/// A running macOS sandbox.
pub struct Sandbox {
    inner: launch::Sandbox,
    enforcement: Enforcement,
}

impl ringfence_backend::Sandbox for Sandbox {
    type Signals = Signals;

    fn id(&self) -> u32 {
        self.inner.id()
    }

    fn command_id(&self) -> Option<u32> {
        Some(self.inner.id()).filter(|&pid| pid > 0)
    }

    /// Kills the command's process group; what escaped it (setsid) is found and killed when
    /// the run is waited for.
    fn killer(&self) -> Killer {
        let group = self.inner.id() as libc::pid_t;
        Killer::new(move || {
            if group > 0 {
                sys::kill_group(group, libc::SIGKILL);
            }
        })
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    fn wait(self, signals: &mut Signals) -> Result<Outcome, LaunchError> {
        let out = self.inner.wait(signals.armed.as_mut())?;
        Ok(Outcome {
            exit: match out.exit {
                ExitKind::Code(c) => Exit::Code(c),
                ExitKind::Signal(s) => Exit::Signal(s),
            },
            reason: out.reason,
            duration: out.duration,
            usage: Usage { user: out.user_time, system: out.system_time, max_rss_kb: out.max_rss_kb },
            findings: Vec::new(),
            review_failures: Vec::new(),
            warnings: out.warnings,
            processes: None,
            peak_memory: None,
        })
    }
}

/// Opens /dev/null on any of the standard descriptors the caller left closed, so that no pipe
/// or socket of ringfence's own lands on 0, 1 or 2 and is taken for the command's stdio.
fn fill_closed_stdio() {
    for fd in 0..3 {
        if !sys::inherited_fd_is_open(fd) {
            // The lowest free number is the one just found closed.
            if let Ok(null) = std::fs::File::options().read(true).write(true).open("/dev/null") {
                let _ = null.into_raw_fd();
            }
        }
    }
}

impl ringfence_backend::Backend for Macos {
    type Signals = Signals;
    type Prepared = Prepared;
    type Sandbox = Sandbox;

    fn start_process() -> Result<Signals, i32> {
        fill_closed_stdio();
        Ok(Signals::default())
    }

    fn arm_signals(signals: &mut Signals) {
        if signals.armed.is_none() {
            signals.armed = ForwardedSignals::install().ok();
        }
    }

    fn prepare(policy: &Policy) -> Result<Prepared, LaunchError> {
        let internal = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| LaunchError::internal(format!("{what}: {e}"))
        };
        let tmp = TempDir::create().map_err(internal("creating the run's temporary folder"))?;
        if policy.network != NetworkMode::Allow {
            return Ok(Prepared { tmp, listeners: None, ports: None });
        }
        let (http, socks, ports) = launch::bind_gateway().map_err(internal("binding the network gateway"))?;
        Ok(Prepared { tmp, listeners: Some(GatewayListeners { http, socks, transparent: None }), ports: Some(ports) })
    }

    fn spawn(prepared: Prepared, request: LaunchRequest) -> Result<Sandbox, LaunchError> {
        let spec = LaunchSpec { request, tmp: prepared.tmp, gateway: prepared.ports };
        let inner = launch::spawn(spec)?;
        let e = &inner.enforcement;
        let enforcement = Enforcement {
            enforced: e.enforced.clone(),
            not_enforced: e.not_enforced.clone(),
            platform: serde_json::json!({
                "os": "macos",
                "release": launch::os_version(),
                "sandbox": "seatbelt",
                "not_available": ["private /tmp", "own loopback", "cpu limit", "git review", "exec monitor"],
            }),
        };
        Ok(Sandbox { inner, enforcement })
    }

    fn probe() -> Probe {
        let seatbelt = launch::probe();
        let items = report::check_items(&seatbelt)
            .into_iter()
            .map(|i| {
                let item = ProbeItem::new(i.name, i.available, i.detail);
                if i.name == "seatbelt" {
                    item.required()
                } else {
                    item
                }
            })
            .collect();
        Probe { platform: format!("macOS {}", launch::os_version()), items, notes: Vec::new() }
    }

    fn explain(policy: &Policy) -> Result<Explanation, LaunchError> {
        crate::explain::explain(policy, sys::uid() == 0)
    }
}
