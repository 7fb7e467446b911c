//! `Command` and `Child` on Windows: the sandbox account's restricted process in a job
//! (crates/windows), with the gateway in this process on two loopback ports the backend opens
//! to this run alone.

use crate::{Child, Command, EndReason, Error, ExitStatus, StdioEnd};
use ringfence_windows::{LaunchSpec, StdioSpec};
use std::net::{Ipv4Addr, TcpListener};

/// Two listeners on 127.0.0.1, on ports the system picks.
fn bind_gateway() -> Result<(TcpListener, TcpListener), Error> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::Io(std::io::Error::other(format!("binding the network gateway on 127.0.0.1: {e}"))))
    };
    Ok((bind()?, bind()?))
}

impl Command {
    /// Starts the command.
    pub fn spawn(self) -> Result<Child, Error> {
        let policy = self.resolved_policy()?;
        // Cache overlays need overlayfs. Caches a preset implies are a convenience and are left
        // out; one asked for by name is a requested protection this backend can't give.
        let asked = policy.caches.iter().find(|c| !matches!(c.origin, crate::policy::Origin::Builtin(_)));
        if let (Some(cache), false) = (asked, policy.allow_degraded) {
            return Err(Error::Unsupported(format!(
                "{}: sharing the {} cache needs overlayfs, which only the Linux backend has; drop it, or pass \
                 --allow-degraded to run with the cache read-only",
                cache.origin, cache.tool
            )));
        }
        let cwd = self.cwd.clone().unwrap_or_else(|| policy.workspace.clone());
        // In allow mode the gateway listens before the command starts, so its first
        // connections wait in the backlog until the gateway serves them.
        let mut gateway = None;
        let mut ports = (0, 0);
        if policy.network == crate::policy::NetworkMode::Allow {
            let (http, socks) = bind_gateway()?;
            let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(Error::Io);
            ports = (port(&http)?, port(&socks)?);
            let sink = self.events.clone().unwrap_or_else(|| std::sync::Arc::new(|_| {}));
            gateway = Some(
                ringfence_gateway::Gateway::start(http, socks, policy.net.clone(), sink)
                    .map_err(|e| Error::Io(std::io::Error::other(format!("starting the network gateway: {e}"))))?,
            );
        }
        let env = self.environment_with_proxy(&policy, &cwd, ports);
        let (theirs, ours) = self.stdio_ends()?;
        let stdio = theirs.map(|end| match end {
            StdioEnd::Inherit => StdioSpec::Inherit,
            StdioEnd::Null => StdioSpec::Null,
            StdioEnd::Pipe(handle) => StdioSpec::Handle(handle),
        });
        let gateway_ports = if gateway.is_some() { vec![ports.0, ports.1] } else { vec![] };
        let spec = LaunchSpec {
            program: self.program,
            args: self.args,
            env,
            cwd,
            policy,
            stdio,
            terminal: self.terminal,
            gateway_ports,
        };
        let sandbox = ringfence_windows::spawn(spec).map_err(Error::Launch)?;
        let [stdin, stdout, stderr] = ours;
        Ok(Child { sandbox, gateway, stdin, stdout, stderr })
    }
}

impl Child {
    /// The process id of the command.
    pub fn id(&self) -> u32 {
        self.sandbox.id()
    }

    /// The process id of the command itself (on Windows the same as `id`).
    pub fn command_id(&self) -> Option<u32> {
        Some(self.sandbox.id())
    }

    /// Kills every process in the sandbox's job.
    pub fn kill(&self) {
        self.sandbox.kill()
    }

    /// A handle that kills the run from another thread (a Ctrl-C handler) while `wait` runs.
    pub fn killer(&self) -> ringfence_windows::Killer {
        self.sandbox.killer()
    }

    /// Waits for the command; Windows has no signals to pass on (console events reach the
    /// job's processes directly).
    pub fn wait_forwarding(mut self, _signals: Option<&mut ()>) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        let out = self.sandbox.wait();
        if let Some(gateway) = self.gateway.take() {
            gateway.stop();
        }
        let out = out.map_err(Error::Launch)?;
        let reason = if out.timed_out {
            EndReason::Timeout
        } else if out.memory_limit_hit {
            EndReason::MemoryLimit
        } else {
            EndReason::Exited
        };
        Ok(ExitStatus {
            code: Some(out.exit_code as i32),
            signal: None,
            reason,
            duration: out.duration,
            user_time: out.user_time,
            system_time: out.kernel_time,
            max_rss_kb: out.peak_memory_bytes / 1024,
            git_findings: Vec::new(),
            review_failures: Vec::new(),
            warnings: out.cleanup_warnings,
        })
    }

    /// The protections in force for this run, and those requested but not enforced.
    pub fn layers(&self) -> (Vec<ringfence_audit::Layer>, Vec<ringfence_audit::Layer>) {
        let e = &self.sandbox.enforcement;
        (e.enforced.clone(), e.not_enforced.clone())
    }

    /// Platform facts for the run.start event's `kernel` field.
    pub fn platform_json(&self) -> serde_json::Value {
        serde_json::json!({ "os": "windows" })
    }
}
