//! `Command`: what to run and under which policy, built like `std::process::Command`.

use crate::child::Child;
use crate::platform::Platform;
use crate::{load_policy, policy, Error, EventBody, EventSink, Overrides, Policy, PolicyError, PolicySources};
use ringfence_backend::{Backend, LaunchRequest, Prepared, Sandbox};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a standard stream of the command goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own stream.
    #[default]
    Inherit,
    /// /dev/null.
    Null,
    /// A pipe, available on the [`Child`].
    Piped,
}

/// A command to run in a sandbox, built like `std::process::Command`.
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
    policy: Option<Policy>,
    stdio: [Stdio; 3],
    terminal: bool,
    events: Option<EventSink>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &self.env)
            .field("policy", &self.policy)
            .field("stdio", &self.stdio)
            .field("terminal", &self.terminal)
            .field("events", &self.events.is_some())
            .finish()
    }
}

impl Command {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            policy: None,
            stdio: Default::default(),
            terminal: false,
            events: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The command's directory; defaults to the policy's workspace.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets a variable for the command, on top of what the policy passes through.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The policy to enforce; defaults to the built-in `workspace` profile for the current directory.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    pub fn stdin(mut self, s: Stdio) -> Self {
        self.stdio[0] = s;
        self
    }

    pub fn stdout(mut self, s: Stdio) -> Self {
        self.stdio[1] = s;
        self
    }

    pub fn stderr(mut self, s: Stdio) -> Self {
        self.stdio[2] = s;
        self
    }

    /// Give the command its own pseudo-terminal, relayed to this process's stdin and stdout
    /// (for interactive programs; the caller's stdin must be a terminal).
    pub fn terminal(mut self, on: bool) -> Self {
        self.terminal = on;
        self
    }

    /// Where the run's events go as they happen: the gateway's (net.dns, net.connect, net.deny)
    /// from its threads, and the backend's (proc.exec, proc.exit, policy.deny of exec rules,
    /// events.dropped) from its delivery thread. The sink may be slow: the backend's events
    /// wait in a bounded queue, and what overflows it is counted in an `events.dropped` record.
    pub fn on_event(mut self, sink: impl Fn(EventBody) + Send + Sync + 'static) -> Self {
        self.events = Some(std::sync::Arc::new(sink));
        self
    }

    /// The environment the command will get under `policy`, with the gateway's proxies on the
    /// ports `gateway` names (in `allow` mode) and `TMPDIR` at `temp` where given.
    pub fn environment(
        &self,
        policy: &Policy,
        cwd: &Path,
        gateway: Option<ringfence_backend::GatewayPorts>,
        temp: Option<&str>,
    ) -> Vec<(OsString, OsString)> {
        crate::environment::build(policy, &self.env, cwd, gateway, temp)
    }

    /// The policy to run under (the default profile when none was given), once the caller's
    /// own variables are checked.
    fn resolved_policy(&self) -> Result<Policy, Error> {
        let policy = match self.policy.clone() {
            Some(p) => p,
            None => load_policy(&PolicySources::default(), Overrides::default())?,
        };
        for (name, _) in &self.env {
            policy::env::validate_name(name)
                .map_err(|e| Error::Policy(PolicyError::new(format!("Command::env: {e}"))))?;
        }
        Ok(policy)
    }

    /// Starts the command. On Linux, call it while the process has a single thread (the
    /// sandbox is created with a fork-like clone).
    pub fn spawn(self) -> Result<Child, Error> {
        ringfence_backend::trace::start(false);
        let policy = self.resolved_policy()?;
        create_agent_state(&policy)?;
        let cwd = self.cwd.clone().unwrap_or_else(|| policy.workspace.clone());
        let mut prepared = Platform::prepare(&policy).map_err(Error::Launch)?;
        let env = self.environment(&policy, &cwd, prepared.gateway_ports(), prepared.temp_dir().as_deref());
        let (theirs, ours) = crate::child::stdio_ends(&self.stdio)?;
        let sink = self.events.unwrap_or_else(|| std::sync::Arc::new(|_| {}));
        // The gateway's state exists before the launch: the backend may ask it about
        // connections (the transparent path's early decision) as soon as the command runs.
        let egress = ringfence_gateway::Egress::new(policy.net.clone(), sink.clone());
        let allow = policy.network == policy::NetworkMode::Allow;
        let judge = allow.then(|| {
            let egress = egress.clone();
            ringfence_backend::EgressJudge::new(move |to| egress.judge(to))
        });
        // A gateway the backend bound on the host serves before the launch; one inside the
        // sandbox once the sockets are handed over. Either way the sockets already listen, so
        // the command's first connections wait in their backlog until the gateway serves them.
        let mut gateway = match prepared.take_host_listeners() {
            Some(listeners) => Some(crate::child::start_gateway(listeners, &egress)?),
            None => None,
        };
        let request = LaunchRequest {
            program: self.program,
            args: self.args,
            env,
            cwd,
            policy,
            stdio: theirs,
            terminal: self.terminal,
            egress: judge,
            events: sink,
        };
        ringfence_backend::trace::mark("library", "prepare, environment, stdio");
        let mut sandbox = Platform::spawn(prepared, request).map_err(Error::Launch)?;
        if let Some(listeners) = sandbox.take_gateway_listeners() {
            match crate::child::start_gateway(listeners, &egress) {
                Ok(g) => gateway = Some(g),
                Err(e) => {
                    sandbox.killer().kill();
                    return Err(e);
                }
            }
        }
        let [stdin, stdout, stderr] = ours;
        Ok(Child { sandbox, gateway, stdin, stdout, stderr })
    }

    /// Runs the command to completion.
    pub fn status(self) -> Result<crate::ExitStatus, Error> {
        self.spawn()?.wait()
    }
}

/// Creates the state folders of the policy's agent profile that don't exist yet, so that the
/// agent's first confined run can keep its login and sessions. A path the profile names inside
/// another of its folders (the agent's login file) is the agent's to create.
fn create_agent_state(policy: &Policy) -> Result<(), Error> {
    for root in policy.fs.agent_roots() {
        if policy.fs.is_agent_file(root) || std::fs::symlink_metadata(root).is_ok() {
            continue;
        }
        std::fs::create_dir_all(root).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("creating {}, the state folder of the {} profile: {e}", root.display(), policy.profile_label()),
            ))
        })?;
    }
    Ok(())
}
