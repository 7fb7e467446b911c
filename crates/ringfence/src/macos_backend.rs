//! `Command` and `Child` on macOS: the command under a Seatbelt profile compiled from the
//! policy (crates/macos), with a private temporary folder, and the gateway in this process on
//! two free loopback ports that the profile alone lets the command reach.

use crate::{Child, Command, Error, ExitStatus, StdioEnd};
use ringfence_macos::{ExitKind, ForwardedSignals, LaunchSpec, StdioSpec, TempDir};

impl Command {
    /// Starts the command.
    pub fn spawn(self) -> Result<Child, Error> {
        let policy = self.resolved_policy()?;
        let cwd = self.cwd.clone().unwrap_or_else(|| policy.workspace.clone());
        let tmp = TempDir::create()
            .map_err(|e| Error::Io(std::io::Error::other(format!("creating the run's temporary folder: {e}"))))?;
        // In allow mode the gateway listens before the command starts, so its first
        // connections wait in the backlog until the gateway serves them.
        let (mut gateway, mut ports) = (None, None);
        if policy.network == crate::policy::NetworkMode::Allow {
            let (http, socks, bound) = ringfence_macos::bind_gateway().map_err(Error::Io)?;
            let sink = self.events.clone().unwrap_or_else(|| std::sync::Arc::new(|_| {}));
            gateway = Some(
                ringfence_gateway::Gateway::start(http, socks, policy.net.clone(), sink)
                    .map_err(|e| Error::Io(std::io::Error::other(format!("starting the network gateway: {e}"))))?,
            );
            ports = Some(bound);
        }
        let proxy = ports.as_ref().map_or((0, 0), |p| (p.http, p.socks));
        let env = self.environment_in(&policy, &cwd, proxy, &tmp.path().to_string_lossy());
        let (theirs, ours) = self.stdio_ends()?;
        let stdio = theirs.map(|end| match end {
            StdioEnd::Inherit => StdioSpec::Inherit,
            StdioEnd::Null => StdioSpec::Null,
            StdioEnd::Pipe(fd) => StdioSpec::Fd(fd),
        });
        let spec = LaunchSpec {
            program: self.program,
            args: self.args,
            env,
            cwd,
            policy,
            stdio,
            terminal: self.terminal,
            tmp,
            gateway: ports,
        };
        let sandbox = match ringfence_macos::spawn(spec) {
            Ok(s) => s,
            Err(e) => {
                if let Some(g) = gateway {
                    g.stop();
                }
                return Err(Error::Launch(e));
            }
        };
        let [stdin, stdout, stderr] = ours;
        Ok(Child { sandbox, gateway, stdin, stdout, stderr })
    }
}

impl Child {
    /// The process id of the command, the leader of its own session and process group.
    pub fn id(&self) -> u32 {
        self.sandbox.id()
    }

    /// The process id of the command itself (on macOS the same as `id`).
    pub fn command_id(&self) -> Option<u32> {
        Some(self.sandbox.id()).filter(|&pid| pid > 0)
    }

    /// Kills every process of the run.
    pub fn kill(&self) {
        self.sandbox.kill()
    }

    /// Waits, passing on the signals read from `signals` (the CLI's terminal signals).
    pub fn wait_forwarding(mut self, signals: Option<&mut ForwardedSignals>) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        let out = self.sandbox.wait(signals);
        // Nothing of the run is left: its connections end, and each is recorded.
        if let Some(gateway) = self.gateway.take() {
            gateway.stop();
        }
        let out = out.map_err(Error::Launch)?;
        let (code, signal) = match out.exit {
            ExitKind::Code(c) => (Some(c), None),
            ExitKind::Signal(s) => (None, Some(s)),
        };
        Ok(ExitStatus {
            code,
            signal,
            reason: out.reason,
            duration: out.duration,
            user_time: out.user_time,
            system_time: out.system_time,
            max_rss_kb: out.max_rss_kb,
            git_findings: Vec::new(),
            review_failures: Vec::new(),
            warnings: out.warnings,
        })
    }

    /// The protections in force for this run, and those requested but not enforced.
    pub fn layers(&self) -> (Vec<ringfence_audit::Layer>, Vec<ringfence_audit::Layer>) {
        let e = &self.sandbox.enforcement;
        (e.enforced.clone(), e.not_enforced.clone())
    }

    /// Platform facts for the run.start event's `kernel` field.
    pub fn platform_json(&self) -> serde_json::Value {
        serde_json::json!({
            "os": "macos",
            "release": ringfence_macos::os_version(),
            "sandbox": "seatbelt",
            "not_available": ["private /tmp", "own loopback", "cpu limit", "git review", "exec monitor"],
        })
    }
}
