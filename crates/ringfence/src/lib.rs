//! ringfence: run a command under kernel-enforced limits.
//!
//! ```no_run
//! use ringfence::{Command, Stdio};
//! let policy = ringfence::load_policy(&Default::default(), Default::default())?;
//! let status = Command::new("npm").arg("test").policy(policy).stdout(Stdio::Inherit).status()?;
//! println!("exit: {:?}", status.code());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `spawn` must be called while the process has a single thread (the sandbox is created with a
//! fork-like clone); the CLI does so before it starts anything else.

mod config;
pub mod exit_code;

pub use config::{home_dir, load_policy, user_config_path, PolicySources, PROJECT_CONFIG};
pub use ringfence_audit::{EndReason, EventBody, ReviewFinding};
pub use ringfence_gateway::EventSink;
pub use ringfence_policy as policy;
pub use ringfence_policy::{Overrides, Policy, PolicyError};

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(target_os = "linux")]
pub use ringfence_linux as linux;
#[cfg(target_os = "macos")]
pub use ringfence_macos as macos;
#[cfg(target_os = "macos")]
mod macos_backend;
#[cfg(windows)]
pub use ringfence_windows as windows;
#[cfg(windows)]
mod windows_backend;
#[cfg(target_os = "linux")]
use ringfence_linux::{LaunchSpec, Sandbox, StdioSpec};

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

/// An error from ringfence itself (not from the command).
#[derive(Debug)]
pub enum Error {
    Policy(PolicyError),
    /// The backend could not start or run the sandbox.
    Launch(ringfence_audit::LaunchError),
    Unsupported(String),
    Io(std::io::Error),
}

impl Error {
    /// The documented exit code for this error (see [`exit_code`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Policy(_) => exit_code::POLICY,
            Error::Launch(e) => match e.kind {
                ringfence_audit::ErrorKind::Policy => exit_code::POLICY,
                ringfence_audit::ErrorKind::Unsupported => exit_code::UNSUPPORTED,
                ringfence_audit::ErrorKind::Internal => exit_code::INTERNAL,
            },
            Error::Unsupported(_) => exit_code::UNSUPPORTED,
            Error::Io(_) => exit_code::INTERNAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Policy(e) => write!(f, "{e}"),
            Error::Launch(e) => write!(f, "{e}"),
            Error::Unsupported(e) => write!(f, "{e}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::Policy(e)
    }
}

/// An environment value as bytes, exactly on Unix; on Windows as UTF-8 (an unpaired surrogate,
/// which no real program's environment carries, becomes U+FFFD).
fn os_bytes(v: OsString) -> Vec<u8> {
    #[cfg(unix)]
    return std::os::unix::ffi::OsStringExt::into_vec(v);
    #[cfg(not(unix))]
    return v.to_string_lossy().into_owned().into_bytes();
}

fn os_string(v: Vec<u8>) -> OsString {
    #[cfg(unix)]
    return std::os::unix::ffi::OsStringExt::from_vec(v);
    #[cfg(not(unix))]
    return String::from_utf8_lossy(&v).into_owned().into();
}

/// A descriptor (Unix) or handle (Windows) the command gets as a standard stream.
#[cfg(unix)]
type OwnedPipeEnd = std::os::fd::OwnedFd;
#[cfg(windows)]
type OwnedPipeEnd = std::os::windows::io::OwnedHandle;

/// The command's end of one standard stream.
enum StdioEnd {
    Inherit,
    Null,
    Pipe(OwnedPipeEnd),
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

    /// Where the run's network events (net.dns, net.connect, net.deny) go as they happen; they
    /// come from the gateway's threads.
    pub fn on_event(mut self, sink: impl Fn(EventBody) + Send + Sync + 'static) -> Self {
        self.events = Some(std::sync::Arc::new(sink));
        self
    }

    /// The environment the command will get under `policy`.
    pub fn environment(&self, policy: &Policy, cwd: &std::path::Path) -> Vec<(OsString, OsString)> {
        self.environment_with_proxy(policy, cwd, (policy::HTTP_PROXY_PORT, policy::SOCKS_PROXY_PORT))
    }

    /// The environment, with the gateway's proxies on these loopback ports in `allow` mode.
    fn environment_with_proxy(
        &self,
        policy: &Policy,
        cwd: &std::path::Path,
        ports: (u16, u16),
    ) -> Vec<(OsString, OsString)> {
        self.environment_in(policy, cwd, ports, "/tmp")
    }

    /// The environment, with the sandbox's temporary folder at `tmp` (Unix: TMPDIR, and npm's
    /// cache in `allow` mode): the private /tmp on Linux, a folder of the run's own on macOS.
    fn environment_in(
        &self,
        policy: &Policy,
        cwd: &std::path::Path,
        (http_port, socks_port): (u16, u16),
        tmp: &str,
    ) -> Vec<(OsString, OsString)> {
        let host = std::env::vars_os().filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v)));
        let mut rules = policy.env.clone();
        rules.set.extend(self.env.iter().cloned());
        // A cache found through a variable (CARGO_HOME, PIP_CACHE_DIR, ...) is where the
        // overlay shows it: the tool inside gets the same variable, unless set otherwise.
        for (k, v) in policy.caches.iter().flat_map(|c| &c.env) {
            rules.set.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut overrides = vec![("PWD", cwd.to_string_lossy().into_owned()), ("RINGFENCE", "1".to_string())];
        // The sandbox's /tmp is private on Linux; the Windows backend sets TEMP and TMP itself.
        if cfg!(unix) {
            overrides.push(("TMPDIR", tmp.to_string()));
        }
        if policy.network == policy::NetworkMode::Allow {
            overrides.extend(ringfence_gateway::proxy_environment(http_port, socks_port));
            // npm refuses to install at all when it can't write its cache (~/.npm, outside the
            // workspace by default): give it one in the private /tmp, unless the policy shares
            // its cache (`--cache npm`, implied by the npm preset) or lets it write its own, or
            // the caller chose one.
            let npm_cache = policy.home.join(".npm");
            let caller_set = rules.set.keys().any(|k| k.eq_ignore_ascii_case("npm_config_cache"));
            let shared = policy.caches.iter().any(|c| c.tool == policy::CacheTool::Npm);
            let writable = policy.fs.access(&npm_cache).access == policy::FsAccess::Write;
            if cfg!(unix) && !caller_set && !shared && !writable {
                overrides.push(("npm_config_cache", format!("{tmp}/.npm")));
            }
        }
        rules
            .apply(host.map(|(k, v)| (k, os_bytes(v))), &overrides)
            .into_iter()
            .map(|(k, v)| (OsString::from(k), os_string(v)))
            .collect()
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

    /// The command's end of each stream (`None` for inherit, or null when asked), and ours for
    /// the piped ones. Pipes are close-on-exec; the backend passes only the command's ends on.
    fn stdio_ends(&self) -> Result<([StdioEnd; 3], [Option<std::fs::File>; 3]), Error> {
        let mut ours: [Option<std::fs::File>; 3] = [None, None, None];
        let mut theirs = [StdioEnd::Inherit, StdioEnd::Inherit, StdioEnd::Inherit];
        for (i, s) in self.stdio.iter().enumerate() {
            theirs[i] = match s {
                Stdio::Inherit => StdioEnd::Inherit,
                Stdio::Null => StdioEnd::Null,
                Stdio::Piped => {
                    let (read, write) = std::io::pipe().map_err(Error::Io)?;
                    let (end, mine): (OwnedPipeEnd, OwnedPipeEnd) =
                        if i == 0 { (read.into(), write.into()) } else { (write.into(), read.into()) };
                    ours[i] = Some(std::fs::File::from(mine));
                    StdioEnd::Pipe(end)
                }
            };
        }
        Ok((theirs, ours))
    }

    /// Starts the command.
    #[cfg(target_os = "linux")]
    pub fn spawn(self) -> Result<Child, Error> {
        let policy = self.resolved_policy()?;
        let cwd = self.cwd.clone().unwrap_or_else(|| policy.workspace.clone());
        let env = self.environment(&policy, &cwd);
        let (theirs, ours) = self.stdio_ends()?;
        let stdio = theirs.map(|end| match end {
            StdioEnd::Inherit => StdioSpec::Inherit,
            StdioEnd::Null => StdioSpec::Null,
            StdioEnd::Pipe(fd) => StdioSpec::Fd(fd),
        });
        let net = policy.net.clone();
        let spec =
            LaunchSpec { program: self.program, args: self.args, env, cwd, policy, stdio, terminal: self.terminal };
        let mut sandbox = ringfence_linux::spawn(spec).map_err(Error::Launch)?;
        // The sockets already listen, so the command's first connections wait in their backlog
        // until the gateway serves them.
        let gateway = match sandbox.gateway_listeners.take() {
            Some(l) => {
                let sink = self.events.unwrap_or_else(|| std::sync::Arc::new(|_| {}));
                match ringfence_gateway::Gateway::start(l.http, l.socks, net, sink) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        sandbox.kill();
                        return Err(Error::Io(std::io::Error::other(format!("starting the network gateway: {e}"))));
                    }
                }
            }
            None => None,
        };
        let [stdin, stdout, stderr] = ours;
        Ok(Child { sandbox, gateway, stdin, stdout, stderr })
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    pub fn spawn(self) -> Result<Child, Error> {
        Err(Error::Unsupported("this platform's backend is not available yet; see the README's Status".into()))
    }

    /// Runs the command to completion.
    pub fn status(self) -> Result<ExitStatus, Error> {
        self.spawn()?.wait()
    }
}

/// A running sandboxed command.
pub struct Child {
    #[cfg(target_os = "linux")]
    sandbox: Sandbox,
    #[cfg(windows)]
    sandbox: ringfence_windows::Sandbox,
    #[cfg(target_os = "macos")]
    sandbox: ringfence_macos::Sandbox,
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    gateway: Option<ringfence_gateway::Gateway>,
    pub stdin: Option<std::fs::File>,
    pub stdout: Option<std::fs::File>,
    pub stderr: Option<std::fs::File>,
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
    #[cfg(target_os = "linux")]
    pub fn id(&self) -> u32 {
        self.sandbox.id()
    }

    /// The host pid of the command itself, while it runs.
    #[cfg(target_os = "linux")]
    pub fn command_id(&self) -> Option<u32> {
        self.sandbox.command_id()
    }

    /// Kills every process in the sandbox.
    #[cfg(target_os = "linux")]
    pub fn kill(&self) {
        self.sandbox.kill()
    }

    /// What this run enforces.
    #[cfg(target_os = "linux")]
    pub fn enforcement(&self) -> &ringfence_linux::Enforcement {
        &self.sandbox.enforcement
    }

    pub fn wait(self) -> Result<ExitStatus, Error> {
        self.wait_forwarding(None)
    }

    /// Waits, passing on the signals read from `signals` (the CLI's terminal signals).
    #[cfg(target_os = "linux")]
    pub fn wait_forwarding(mut self, signals: Option<&mut nix::sys::signalfd::SignalFd>) -> Result<ExitStatus, Error> {
        use ringfence_linux::ExitKind;
        drop(self.stdin.take());
        let out = self.sandbox.wait(signals);
        // Nothing in the sandbox runs any more: its connections end, and each is recorded.
        if let Some(gateway) = self.gateway.take() {
            gateway.stop();
        }
        let out = out.map_err(Error::Launch)?;
        let (code, signal) = match out.exit {
            ExitKind::Code(c) => (Some(c), None),
            ExitKind::Signal(s) => (None, Some(s)),
        };
        let tv = |t: nix::libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Ok(ExitStatus {
            code,
            signal,
            reason: out.reason,
            duration: out.duration,
            user_time: tv(out.rusage.ru_utime),
            system_time: tv(out.rusage.ru_stime),
            max_rss_kb: out.rusage.ru_maxrss.max(0) as u64,
            git_findings: out.git_findings,
            review_failures: out.review_failures,
            warnings: out.left,
        })
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    pub fn wait_forwarding(self, _signals: Option<&mut ()>) -> Result<ExitStatus, Error> {
        Err(Error::Unsupported("this platform's backend is not available yet".into()))
    }

    /// The protections in force for this run, and those not enforced: requested ones (only
    /// with `allow_degraded`), then defaults this machine can't carry (a memory cap without a
    /// cgroup).
    #[cfg(target_os = "linux")]
    pub fn layers(&self) -> (Vec<ringfence_audit::Layer>, Vec<ringfence_audit::Layer>) {
        let e = &self.sandbox.enforcement;
        (e.enforced.clone(), e.not_enforced.iter().chain(&e.missing_defaults).cloned().collect())
    }

    /// Platform facts for the run.start event's `kernel` field.
    #[cfg(target_os = "linux")]
    pub fn platform_json(&self) -> serde_json::Value {
        let e = &self.sandbox.enforcement;
        serde_json::json!({ "release": e.kernel, "landlock_abi": e.landlock_abi, "limits": e.limits })
    }
}
