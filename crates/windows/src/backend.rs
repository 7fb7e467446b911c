//! The Windows backend behind the contract every platform implements (crates/backend): the
//! sandbox account's restricted process in a job, with the gateway on two loopback ports the
//! backend opens to this run alone.

use crate::launch::{self, LaunchSpec};
use crate::report::FilterState;
use ringfence_backend::explain::{self, Line, Section};
use ringfence_backend::{
    EndReason, Enforcement, Exit, Explanation, GatewayListeners, GatewayPorts, Killer, LaunchError, LaunchRequest,
    NoSignals, Outcome, Probe, ProbeItem, Usage,
};
use ringfence_policy::{NetworkMode, Origin, Policy};
use std::net::{Ipv4Addr, TcpListener};

/// The Windows backend: sandbox account, write-restricted token, ACL entries, WFP filters, job.
pub struct Windows;

/// What a Windows run fixes before its environment is known: the gateway's two listeners,
/// bound on ports the system picks (the run's WFP permits name exactly those).
pub struct Prepared {
    listeners: Option<GatewayListeners>,
    ports: Option<GatewayPorts>,
}

impl ringfence_backend::Prepared for Prepared {
    fn gateway_ports(&self) -> Option<GatewayPorts> {
        self.ports
    }

    /// The backend sets TEMP and TMP to the run's private folder itself.
    fn temp_dir(&self) -> Option<String> {
        None
    }

    fn take_host_listeners(&mut self) -> Option<GatewayListeners> {
        self.listeners.take()
    }
}

/// A running Windows sandbox.
pub struct Sandbox {
    inner: launch::Sandbox,
    enforcement: Enforcement,
}

impl ringfence_backend::Sandbox for Sandbox {
    /// Windows has no signals to pass on: console events reach the job's processes directly,
    /// and Ctrl-C ends the run while it is waited for.
    type Signals = NoSignals;

    fn id(&self) -> u32 {
        self.inner.id()
    }

    fn command_id(&self) -> Option<u32> {
        Some(self.inner.id())
    }

    fn killer(&self) -> Killer {
        let killer = self.inner.killer();
        Killer::new(move || killer.kill())
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    fn wait(self, _: &mut NoSignals) -> Result<Outcome, LaunchError> {
        // The command's processes have no console of ours: Ctrl-C ends the run.
        let killer = self.inner.killer();
        let _ = ctrlc::set_handler(move || killer.kill());
        let out = self.inner.wait()?;
        let reason = if out.timed_out {
            EndReason::Timeout
        } else if out.memory_limit_hit {
            EndReason::MemoryLimit
        } else {
            EndReason::Exited
        };
        Ok(Outcome {
            exit: Exit::Code(out.exit_code as i32),
            reason,
            duration: out.duration,
            usage: Usage { user: out.user_time, system: out.kernel_time, max_rss_kb: out.peak_memory_bytes / 1024 },
            findings: Vec::new(),
            review_failures: Vec::new(),
            warnings: out.cleanup_warnings,
            processes: None,
            peak_memory: Some(out.peak_memory_bytes),
        })
    }
}

/// Exec rules need an exec monitor, which this backend lacks: a policy with them is refused
/// unless --allow-degraded (then run.start lists them as not enforced).
fn refuse_exec_rules(policy: &Policy) -> Result<(), LaunchError> {
    match ringfence_backend::exec_rules_not_enforced(policy) {
        Some(layer) if !policy.allow_degraded => Err(LaunchError::unsupported(
            format!("this machine can't enforce the requested policy ({}: {})", layer.name, layer.detail),
            "remove the exec rules, or pass --allow-degraded to run without them",
        )),
        _ => Ok(()),
    }
}

/// Cache overlays need overlayfs. Caches a preset implies are a convenience and are left out;
/// one asked for by name is a requested protection this backend can't give.
fn refuse_caches(policy: &Policy) -> Result<(), LaunchError> {
    let asked = policy.caches.iter().find(|c| !matches!(c.origin, Origin::Builtin(_)));
    match (asked, policy.allow_degraded) {
        (Some(cache), false) => Err(LaunchError::unsupported(
            format!(
                "{}: sharing the {} cache needs overlayfs, which only the Linux backend has",
                cache.origin, cache.tool
            ),
            "drop it, or pass --allow-degraded to run with the cache read-only",
        )),
        _ => Ok(()),
    }
}

/// A listener on 127.0.0.1, on a port the system picks.
fn bind() -> Result<(TcpListener, u16), LaunchError> {
    let failed = |e: std::io::Error| LaunchError::internal(format!("binding the network gateway on 127.0.0.1: {e}"));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(failed)?;
    let port = listener.local_addr().map_err(failed)?.port();
    Ok((listener, port))
}

impl ringfence_backend::Backend for Windows {
    type Signals = NoSignals;
    type Prepared = Prepared;
    type Sandbox = Sandbox;

    fn start_process() -> Result<NoSignals, i32> {
        // This binary is also the runner that starts commands as the sandbox account.
        match crate::runner_entry() {
            Some(code) => Err(code),
            None => Ok(NoSignals),
        }
    }

    fn prepare(policy: &Policy) -> Result<Prepared, LaunchError> {
        refuse_caches(policy)?;
        refuse_exec_rules(policy)?;
        if policy.network != NetworkMode::Allow {
            return Ok(Prepared { listeners: None, ports: None });
        }
        let ((http, http_port), (socks, socks_port)) = (bind()?, bind()?);
        Ok(Prepared {
            listeners: Some(GatewayListeners { http, socks, transparent: None }),
            ports: Some(GatewayPorts { http: http_port, socks: socks_port }),
        })
    }

    fn spawn(prepared: Prepared, request: LaunchRequest) -> Result<Sandbox, LaunchError> {
        let gateway_ports = prepared.ports.map(|p| vec![p.http, p.socks]).unwrap_or_default();
        let spec = LaunchSpec { request, gateway_ports };
        let inner = launch::spawn(spec)?;
        let e = &inner.enforcement;
        let enforcement = Enforcement {
            enforced: e.enforced.clone(),
            not_enforced: e.not_enforced.clone(),
            platform: serde_json::json!({ "os": "windows" }),
        };
        Ok(Sandbox { inner, enforcement })
    }

    fn probe() -> Probe {
        probe()
    }

    fn explain(policy: &Policy) -> Result<Explanation, LaunchError> {
        Ok(explain(policy))
    }

    fn setup() -> Result<Vec<String>, LaunchError> {
        crate::setup::setup().map(|r| r.actions)
    }

    fn uninstall() -> Result<Vec<String>, LaunchError> {
        crate::setup::uninstall().map(|r| r.actions)
    }
}

/// What `ringfence check` reports: the installation `setup` made, and what Windows never
/// enforces.
fn probe() -> Probe {
    let state = crate::setup::state();
    let account = match &state.account_sid {
        Some(sid) => format!("`{}` ({sid})", crate::ACCOUNT_NAME),
        None => format!("`{}` does not exist", crate::ACCOUNT_NAME),
    };
    let mut items = vec![
        ProbeItem::new("sandbox account", state.account_sid.is_some(), account).required(),
        ProbeItem::new("account secret", state.secret_readable, "readable by this user (DPAPI)").required(),
    ];
    if let Some(works) = state.logon_works {
        items.push(ProbeItem::new("logon", works, "as the sandbox account").required());
    }
    items.push(ProbeItem::new("runner", state.runner_installed, "installed for the sandbox account").required());
    let filters = match &state.filters {
        FilterState::Present { count } => (true, format!("{count} WFP filters on the account")),
        FilterState::Missing { missing, expected } => (false, format!("{missing} of {expected} WFP filters missing")),
        FilterState::Unknown(why) => (false, format!("WFP filters unknown: {why}")),
    };
    items.push(ProbeItem::new("network filters", filters.0, filters.1).required());
    let profile = state.profile.clone().unwrap_or_else(|| "missing".into());
    items.push(ProbeItem::new("profile", state.profile.is_some(), profile).required());
    let null = state.null_device == Some(true);
    items.push(ProbeItem::new("NUL device", null, "writable by sandboxed commands").required());
    for gap in &state.not_enforced {
        items.push(ProbeItem::new(gap.name.clone(), false, format!("not enforced on Windows: {}", gap.detail)));
    }
    let mut notes = state.notes.clone();
    notes.extend(state.problems().iter().map(|p| format!("→ {p}")));
    Probe { platform: "Windows".into(), items, notes }
}

/// What `ringfence explain` says on Windows: the rules, enforced by the sandbox account's
/// restricted token and the run's ACL entries; the network by WFP; processes by the job.
fn explain(policy: &Policy) -> Explanation {
    let mut files = Section::new("Filesystem (the most specific rule wins)");
    for r in &policy.fs.rules {
        let access = explain::access_name(policy.fs.access(&r.path).access);
        let path = r.path.display().to_string();
        let layers = vec!["sandbox account, write-restricted token, ACL entries".to_string()];
        files.push(Line::Path { path, verdict: access.into(), layers, origin: Some(r.origin.to_string()) });
    }
    files.push(explain::workspace_line(policy));
    let none = Line::fact("none", &["WFP filters on the sandbox account: no outbound connection"]);
    let allow = "gateway in the supervisor on two 127.0.0.1 ports; per-run WFP permits for those alone";
    let mut processes = Section::new("Processes");
    processes.push(Line::fact(
        "nothing outlives the run; other runs' and your processes are out of reach",
        &["job object, sandbox account, the token's default DACL"],
    ));
    processes.push(Line::fact("windows, hooks and input of your desktop out of reach", &["private desktop"]));
    let mut limits = Section::new("Limits");
    let l = &policy.limits;
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    limits.push(Line::fact(format!("pids: {}", or_none(l.pids.map(|p| p.to_string()))), &["job object"]));
    limits.push(Line::fact(format!("memory: {}", or_none(l.memory.map(|m| m.to_string()))), &["job object"]));
    limits.push(Line::fact(format!("cpus: {}", or_none(l.cpus.map(|c| c.to_string()))), &["job object"]));
    limits.push(Line::fact(format!("timeout: {}", or_none(l.timeout.map(|t| t.to_string()))), &["supervisor"]));
    limits.push(Line::text(format!("/tmp size: {}  NOT ENFORCED on Windows", l.tmp_size)));
    Explanation {
        header: explain::header(policy),
        sections: vec![
            files,
            explain::environment(policy, "PWD, TEMP and TMP (the run's private folder), RINGFENCE=1"),
            explain::network(policy, none, allow, Vec::new()),
            processes,
            explain::exec_rules_unenforced(policy),
            limits,
        ],
        footer: Vec::new(),
    }
}
