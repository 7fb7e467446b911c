//! `Child`: a running sandboxed command, and how it ended.

use crate::platform::Platform;
use crate::{exit_code, Error, Stdio};
use ringfence_audit::{EndReason, ReviewFinding};
use ringfence_backend::{Backend, Enforcement, Exit, GatewayListeners, Killer, Layer, OwnedStream, Sandbox};
use std::time::Duration;

/// The signals a supervisor forwards to the command: get them once, first thing in `main`,
/// from [`crate::start_process`], and pass them to [`Child::wait_forwarding`].
pub type Signals = <Platform as Backend>::Signals;

/// A running sandboxed command.
pub struct Child {
    pub(crate) sandbox: <Platform as Backend>::Sandbox,
    pub(crate) gateway: Option<ringfence_gateway::Gateway>,
    pub stdin: Option<std::fs::File>,
    pub stdout: Option<std::fs::File>,
    pub stderr: Option<std::fs::File>,
}

/// Starts the gateway on the run's listening sockets, with the run's shared state.
pub(crate) fn start_gateway(
    listeners: GatewayListeners,
    egress: &std::sync::Arc<ringfence_gateway::Egress>,
) -> Result<ringfence_gateway::Gateway, Error> {
    ringfence_gateway::Gateway::start(listeners, egress.clone())
        .map_err(|e| Error::Io(std::io::Error::other(format!("starting the network gateway: {e}"))))
}

/// The command's end of each stream, and ours for the piped ones. Pipes are close-on-exec; the
/// backend passes only the command's ends on.
pub(crate) fn stdio_ends(
    stdio: &[Stdio; 3],
) -> Result<([ringfence_backend::Stdio; 3], [Option<std::fs::File>; 3]), Error> {
    let mut ours: [Option<std::fs::File>; 3] = [None, None, None];
    let mut theirs =
        [ringfence_backend::Stdio::Inherit, ringfence_backend::Stdio::Inherit, ringfence_backend::Stdio::Inherit];
    for (i, s) in stdio.iter().enumerate() {
        theirs[i] = match s {
            Stdio::Inherit => ringfence_backend::Stdio::Inherit,
            Stdio::Null => ringfence_backend::Stdio::Null,
            Stdio::Piped => {
                let (read, write) = std::io::pipe().map_err(Error::Io)?;
                let (end, mine): (OwnedStream, OwnedStream) =
                    if i == 0 { (read.into(), write.into()) } else { (write.into(), read.into()) };
                ours[i] = Some(std::fs::File::from(mine));
                ringfence_backend::Stdio::Stream(end)
            }
        };
    }
    Ok((theirs, ours))
}

/// How a sandboxed command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    code: Option<i32>,
    signal: Option<i32>,
    /// Why the run ended, when ringfence ended it.
    pub reason: EndReason,
    pub duration: Duration,
    pub user_time: Duration,
    pub system_time: Duration,
    pub max_rss_kb: u64,
    /// What the post-run review of the writable roots found the run left that would run code
    /// later (git hooks and configs, nested protected files, FIFOs), and moved aside.
    pub git_findings: Vec<ReviewFinding>,
    /// What the review could not review; the run then ends with [`EndReason::ReviewFailed`].
    pub review_failures: Vec<ReviewFinding>,
    /// What the run's clean-up could not undo (Linux: a placeholder it could not remove;
    /// Windows: an ACL entry it could not remove).
    pub warnings: Vec<String>,
    /// Programs started and execs denied, when the exec monitor ran.
    pub processes: Option<ringfence_backend::ProcessCounts>,
    /// The sandbox's peak memory use in bytes, where the backend can tell.
    pub peak_memory: Option<u64>,
}

impl ExitStatus {
    pub fn code(&self) -> Option<i32> {
        self.code
    }
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.reason == EndReason::Exited
    }

    /// The exit code ringfence itself exits with for this status (see [`exit_code`]).
    pub fn exit_code(&self) -> i32 {
        match (&self.reason, self.code, self.signal) {
            (EndReason::ReviewFailed, _, _) => exit_code::REVIEW,
            (EndReason::Timeout, _, _) => exit_code::TIMEOUT,
            (EndReason::MemoryLimit | EndReason::PidsLimit, _, _) => exit_code::LIMIT,
            (_, Some(code), _) => code,
            (_, _, Some(sig)) => 128 + sig,
            _ => exit_code::INTERNAL,
        }
    }
}

impl Child {
    /// The process id of the sandbox's top process (Linux: its init).
    pub fn id(&self) -> u32 {
        self.sandbox.id()
    }

    /// The process id of the command itself, while it runs.
    pub fn command_id(&self) -> Option<u32> {
        self.sandbox.command_id()
    }

    /// Whether the backend's exec monitor reports every exec of the run (the command's
    /// included) through the event sink.
    pub fn records_execs(&self) -> bool {
        self.sandbox.records_execs()
    }

    /// Kills every process in the sandbox.
    pub fn kill(&self) {
        self.sandbox.killer().kill()
    }

    /// Kills the run from another thread (a Ctrl-C handler, say) while `wait` runs.
    pub fn killer(&self) -> Killer {
        self.sandbox.killer()
    }

    /// What this run enforces, and what it could not.
    pub fn enforcement(&self) -> &Enforcement {
        self.sandbox.enforcement()
    }

    /// The protections in force for this run, and those requested but not enforced.
    pub fn layers(&self) -> (Vec<Layer>, Vec<Layer>) {
        let e = self.sandbox.enforcement();
        (e.enforced.clone(), e.not_enforced.clone())
    }

    /// Platform facts for the run.start event's `kernel` field.
    pub fn platform_json(&self) -> serde_json::Value {
        self.sandbox.enforcement().platform.clone()
    }

    /// Waits for the run to end, forwarding no signals.
    pub fn wait(self) -> Result<ExitStatus, Error> {
        self.wait_forwarding(&mut Signals::default())
    }

    /// Waits, passing on the signals `signals` receives (the CLI's terminal signals).
    pub fn wait_forwarding(mut self, signals: &mut Signals) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        let out = self.sandbox.wait(signals);
        // Nothing in the sandbox runs any more: its connections end, and each is recorded.
        if let Some(gateway) = self.gateway.take() {
            gateway.stop();
        }
        let out = out.map_err(Error::Launch)?;
        let (code, signal) = match out.exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
        };
        Ok(ExitStatus {
            code,
            signal,
            reason: out.reason,
            duration: out.duration,
            user_time: out.usage.user,
            system_time: out.usage.system,
            max_rss_kb: out.usage.max_rss_kb,
            git_findings: out.findings,
            review_failures: out.review_failures,
            warnings: out.warnings,
            processes: out.processes,
            peak_memory: out.peak_memory,
        })
    }
}
