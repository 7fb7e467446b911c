//! Sessions: one sandbox, built once under a fixed policy, that runs many commands at nearly
//! the cost of running them bare. Each command gets its own standard streams, exit status,
//! signals and timeout, and its environment scrubbed afresh by the session's policy; what it
//! starts dies when it exits unless it ran in the background. A session ends, with everything
//! in it, when its owner process exits, when it is stopped, or after it was idle too long.

use crate::platform::Platform;
use crate::{Error, Policy, Stdio};
pub use ringfence_backend::session::DEFAULT_IDLE;
use ringfence_backend::{Backend, Prepared};
pub use ringfence_backend::{Exit, SessionExit, SessionInfo};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

/// The process whose exit ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The process that starts it.
    This,
    /// That process's parent (the shell or agent that ran `ringfence session start`).
    Parent,
}

/// A running session, by its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    id: String,
}

impl Session {
    /// Starts a session of `policy` owned by this process (it ends when this process exits),
    /// idle for at most [`DEFAULT_IDLE`]. Call it while the process has a single thread, as
    /// for [`crate::Command::spawn`].
    pub fn start(policy: Policy) -> Result<Session, Error> {
        Session::start_with(policy, None, Owner::This, DEFAULT_IDLE).map(|info| Session { id: info.id })
    }

    /// Starts a session with a `name` to find it by, ended when `owner` exits or after `idle`
    /// without a command running.
    pub fn start_with(
        policy: Policy,
        name: Option<String>,
        owner: Owner,
        idle: Duration,
    ) -> Result<SessionInfo, Error> {
        let owner = match owner {
            Owner::This => std::process::id(),
            #[cfg(unix)]
            Owner::Parent => std::os::unix::process::parent_id(),
            #[cfg(not(unix))]
            Owner::Parent => std::process::id(),
        };
        let prepared = Platform::prepare(&policy).map_err(Error::Launch)?;
        let (gateway, temp) = (prepared.gateway_ports(), prepared.temp_dir());
        let scrubbing = policy.clone();
        let environment = Box::new(move |caller: &[(OsString, OsString)], cwd: &std::path::Path| {
            crate::environment::build_from(caller.iter().cloned(), &scrubbing, &[], cwd, gateway, temp.as_deref())
        });
        let start = ringfence_backend::SessionStart { policy, name, owner, idle, environment };
        Platform::session_start(prepared, start).map_err(Error::Launch)
    }

    /// The running session with this id or name (checked when a command runs).
    pub fn open(id_or_name: impl Into<String>) -> Session {
        Session { id: id_or_name.into() }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A command to run in the session.
    pub fn command(&self, program: impl AsRef<OsStr>) -> SessionCommand {
        SessionCommand {
            session: self.id.clone(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            background: false,
            timeout: None,
            stdio: Default::default(),
        }
    }

    /// Ends the session and everything running in it; returns once it is gone.
    pub fn stop(&self) -> Result<(), Error> {
        Platform::session_stop(&self.id).map_err(Error::Launch)
    }

    /// This user's running sessions; those whose server died are cleaned away.
    pub fn list() -> Result<Vec<SessionInfo>, Error> {
        Platform::session_list().map_err(Error::Launch)
    }
}

/// A command to run in a session, built like `std::process::Command`.
#[derive(Debug)]
pub struct SessionCommand {
    session: String,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    background: bool,
    timeout: Option<Duration>,
    stdio: [Stdio; 3],
}

impl SessionCommand {
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
    /// Sets a variable on top of this process's environment; the session's policy scrubs both.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }
    /// The working folder (the session's workspace by default).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
    /// Leave what the command starts in the background running after it exits (until the
    /// session ends).
    pub fn background(mut self, on: bool) -> Self {
        self.background = on;
        self
    }
    /// SIGTERM after this long, SIGKILL two seconds later.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
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

    /// Runs the command to its end; with piped streams, `on_start` gets ours (stdin, stdout,
    /// stderr) once the command runs, to feed and drain them on threads of its own.
    pub fn status_forwarding(
        self,
        signals: &mut crate::Signals,
        on_start: impl FnOnce([Option<std::fs::File>; 3]),
    ) -> Result<SessionExit, Error> {
        let (theirs, ours) = crate::child::stdio_ends(&self.stdio)?;
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        env.extend(self.env);
        let exec = ringfence_backend::SessionExec {
            program: self.program,
            args: self.args,
            env,
            cwd: self.cwd,
            background: self.background,
            timeout: self.timeout,
            stdio: theirs,
        };
        on_start(ours);
        Platform::session_exec(&self.session, exec, signals).map_err(Error::Launch)
    }

    /// Runs the command to its end (streams inherited or null; piped ones are dropped).
    pub fn status(self) -> Result<SessionExit, Error> {
        self.status_forwarding(&mut crate::Signals::default(), drop)
    }
}
