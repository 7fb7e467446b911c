//! The contract every platform backend implements: what the library hands a backend to start
//! a command ([`LaunchRequest`]), what a running sandbox offers ([`Sandbox`]), how a run ends
//! ([`Outcome`]), and what the backend tells `ringfence check` ([`Probe`]) and `ringfence
//! explain` ([`Explanation`]) about this machine. The library (crates/ringfence) picks one
//! [`Backend`] per target; the CLI only ever talks to the library.
//!
//! Linux (crates/linux), Windows (crates/windows) and macOS (crates/macos) implement it.

#![forbid(unsafe_code)]
#![deny(clippy::too_many_lines)]

pub mod events;
pub mod explain;
mod output;
mod probe;
pub mod session;
pub mod trace;

pub use events::{Delivery, EventSink, Reporter};
pub use explain::{Explanation, Line, Section};
pub use output::OutputFile;
pub use probe::{Probe, ProbeItem};
pub use ringfence_audit::{EndReason, ErrorKind, LaunchError, Layer, ReviewFinding};
pub use session::{SessionExec, SessionExit, SessionInfo, SessionStart};

use ringfence_policy::Policy;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One end of a pipe or file that becomes a standard stream of the command.
#[cfg(unix)]
pub type OwnedStream = std::os::fd::OwnedFd;
/// One end of a pipe or file that becomes a standard stream of the command.
#[cfg(windows)]
pub type OwnedStream = std::os::windows::io::OwnedHandle;

/// Where one of the command's standard streams goes.
#[derive(Debug)]
pub enum Stdio {
    /// The caller's own stream.
    Inherit,
    /// The null device.
    Null,
    /// This pipe end or file becomes the stream.
    Stream(OwnedStream),
}

/// The loopback ports the command reaches the gateway's HTTP and SOCKS5 proxies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayPorts {
    pub http: u16,
    pub socks: u16,
}

/// The gateway's two listening sockets, for the library to serve, and the transparent path's
/// sockets where the backend has one.
#[derive(Debug)]
pub struct GatewayListeners {
    pub http: TcpListener,
    pub socks: TcpListener,
    pub transparent: Option<TransparentSockets>,
}

/// The sockets of the transparent path (Linux), made inside the sandbox's network namespace,
/// where every address is routed to loopback.
#[derive(Debug)]
pub struct TransparentSockets {
    /// One listener per captured port, on every address (IPv4 as mapped IPv6): a connection's
    /// local address is where the command meant to connect.
    pub tcp: Vec<TcpListener>,
    /// The resolver's UDP sockets on port 53 of every address, IPv4 then IPv6; each reports
    /// the address a datagram was sent to (IP_PKTINFO, IPV6_RECVPKTINFO).
    pub dns_udp: [UdpSocket; 2],
    /// The resolver's TCP listener on port 53 of every address.
    pub dns_tcp: TcpListener,
    /// Raw UDP sockets, IPv4 then IPv6, that receive the start of every other UDP datagram the
    /// sandbox sends, to record it: IPv4 from its IP header, IPv6 from its UDP header with the
    /// destination in IPV6_PKTINFO.
    pub udp_taps: [OwnedStream; 2],
}

/// Decides, before any packet is sent, whether the sandbox may open a TCP connection to an
/// address (Linux: when connect(2) traps to the supervisor). A refusal is recorded by the
/// judge; the caller answers the command as a refused connection would.
#[derive(Clone)]
pub struct EgressJudge(Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>);

impl EgressJudge {
    pub fn new(judge: impl Fn(SocketAddr) -> bool + Send + Sync + 'static) -> Self {
        EgressJudge(Arc::new(judge))
    }

    /// Whether a connection to `to` may be made.
    pub fn allows(&self, to: SocketAddr) -> bool {
        (self.0)(to)
    }
}

impl std::fmt::Debug for EgressJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EgressJudge")
    }
}

/// What a backend prepares for a run before the command's environment is known.
pub trait Prepared {
    /// Where the command reaches the gateway, in `allow` mode.
    fn gateway_ports(&self) -> Option<GatewayPorts>;
    /// The command's temporary folder (`TMPDIR`), where the library sets it.
    fn temp_dir(&self) -> Option<String>;
    /// Gateway sockets the backend bound on the host, for the library to serve before the
    /// launch (otherwise they come from the running sandbox).
    fn take_host_listeners(&mut self) -> Option<GatewayListeners> {
        None
    }
}

/// Everything a backend needs to start one sandboxed command.
pub struct LaunchRequest {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The command's complete environment, already scrubbed by the policy (with the proxy
    /// variables in `allow` mode).
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub policy: Policy,
    pub stdio: [Stdio; 3],
    /// Give the command its own terminal, relayed to the caller's (interactive programs).
    pub terminal: bool,
    /// In `allow` mode, the gateway's early decision on connections, for a backend that can ask
    /// it before a connection is made (Linux).
    pub egress: Option<EgressJudge>,
    /// Where the backend's events go as they happen (programs started and ended, execs
    /// denied), through a [`Delivery`] queue so the sandbox never waits for the sink.
    pub events: EventSink,
}

impl std::fmt::Debug for LaunchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchRequest")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("policy", &self.policy)
            .field("stdio", &self.stdio)
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

/// What the exec monitor counted over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    /// Programs started: execs allowed.
    pub started: u64,
    /// Execs an exec rule refused.
    pub denied: u64,
}

/// The layer that says a policy's exec rules are not enforced, on a backend without an exec
/// monitor: such a run is refused unless --allow-degraded.
pub fn exec_rules_not_enforced(policy: &Policy) -> Option<Layer> {
    policy.exec.has_rules().then(|| {
        Layer::new(
            "exec rules",
            format!(
                "{} exec rules: this platform has no exec monitor, so they are not enforced",
                policy.exec.rules.len()
            ),
        )
    })
}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Resource usage of the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    pub max_rss_kb: u64,
}

/// How a run ended, and what ringfence found and did afterwards.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub exit: Exit,
    pub reason: EndReason,
    pub duration: Duration,
    pub usage: Usage,
    /// What the run left that would run code later, and what was done about it.
    pub findings: Vec<ReviewFinding>,
    /// What the review after the run could not check (the reason is then `ReviewFailed`).
    pub review_failures: Vec<ReviewFinding>,
    /// What the clean-up could not undo (a placeholder, an ACL entry), each naming the path.
    pub warnings: Vec<String>,
    /// What the exec monitor counted; None without one.
    pub processes: Option<ProcessCounts>,
    /// The sandbox's peak memory use in bytes, where its memory cgroup tells it.
    pub peak_memory: Option<u64>,
}

/// What a run enforces, and what it could not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Enforcement {
    pub enforced: Vec<Layer>,
    /// Requested protections that could not be enforced (the run goes on only with
    /// `--allow-degraded`), and defaults this machine can't carry (always recorded).
    pub not_enforced: Vec<Layer>,
    /// Platform facts for the `run.start` event's `kernel` field.
    pub platform: serde_json::Value,
}

/// Kills every process of a run, from any thread (a Ctrl-C handler, a timeout).
#[derive(Clone)]
pub struct Killer(Arc<dyn Fn() + Send + Sync>);

impl Killer {
    pub fn new(kill: impl Fn() + Send + Sync + 'static) -> Self {
        Killer(Arc::new(kill))
    }

    pub fn kill(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Killer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Killer")
    }
}

/// The signals of a backend that forwards none (its commands get console events directly).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSignals;

/// A running sandbox.
pub trait Sandbox {
    /// The terminal signals the supervisor passes on (see [`Backend::Signals`]).
    type Signals;

    /// The process id of the sandbox's top process (Linux: its init).
    fn id(&self) -> u32;
    /// The process id of the command itself, when known.
    fn command_id(&self) -> Option<u32>;
    fn killer(&self) -> Killer;
    fn enforcement(&self) -> &Enforcement;
    /// Whether the backend reports every exec itself (its exec monitor runs): then the caller
    /// writes no `proc.exec` of its own for the command.
    fn records_execs(&self) -> bool {
        false
    }
    /// The gateway's sockets, for a backend that makes them inside the sandbox.
    fn take_gateway_listeners(&mut self) -> Option<GatewayListeners> {
        None
    }
    /// Runs the run to its end, passing on the signals read from `signals`, and cleans up.
    fn wait(self, signals: &mut Self::Signals) -> Result<Outcome, LaunchError>;
}

/// One platform: how it starts a sandbox, and what it can tell about this machine.
pub trait Backend {
    /// What the caller gets from [`Backend::start_process`] at start-up and passes to
    /// [`Sandbox::wait`]: the signals it forwards to the command, blocked before anything
    /// else runs so none is lost. The default forwards none.
    type Signals: Default;
    type Prepared: Prepared;
    type Sandbox: Sandbox<Signals = Self::Signals>;

    /// Called first thing in `main` of a program that runs sandboxes: fills standard
    /// descriptors the caller left closed, blocks the signals the supervisor forwards, and,
    /// where the program doubles as a helper (Windows' runner), runs that and returns its exit
    /// code as `Err`.
    fn start_process() -> Result<Self::Signals, i32>;
    /// Starts receiving the forwarded signals: called once the descriptors the caller passed
    /// (`--json-status 3`) were taken over, so that what receives them can't take such a number.
    fn arm_signals(signals: &mut Self::Signals) {
        let _ = signals;
    }
    /// Gives the signals [`Backend::start_process`] blocked their usual effect again, for a
    /// program that runs its sandboxes as child processes instead of supervising one itself
    /// (`ringfence mcp`): a SIGTERM then ends it as it ends any server.
    fn release_signals(signals: Self::Signals) {
        let _ = signals;
    }
    /// What a run of `policy` needs before the command's environment is known: the gateway's
    /// ports in `allow` mode, the command's temporary folder.
    fn prepare(policy: &Policy) -> Result<Self::Prepared, LaunchError>;
    /// Starts the command. Must be called while the process has a single thread where the
    /// backend says so (Linux).
    fn spawn(prepared: Self::Prepared, request: LaunchRequest) -> Result<Self::Sandbox, LaunchError>;
    /// Opens a file ringfence writes for the caller (`--events`, `--json-status`) so that
    /// nothing a sandbox planted at the path (a link, a FIFO, a second name) redirects or stalls
    /// it; the file's path comes back when a run could write it, to be protected.
    fn open_output(path: &std::path::Path, policy: &Policy, append: bool) -> Result<OutputFile, LaunchError> {
        output::open_by_name(path, policy, append)
    }
    /// Takes over a descriptor the caller passed open for `--json-status`, checked the same way.
    fn inherited_output(fd: i32, policy: &Policy) -> Result<OutputFile, LaunchError> {
        let _ = (fd, policy);
        Err(LaunchError::unsupported(
            "a descriptor for --json-status is not supported on this platform",
            "pass a file path instead",
        ))
    }
    /// The machine's physical memory in bytes, for the default memory cap; None where the
    /// backend sets no default cap.
    fn physical_memory() -> Option<u64> {
        None
    }
    /// The user's home folder when `$HOME` is unset (the account database).
    fn user_home() -> Option<PathBuf> {
        None
    }
    /// Refuses a writable root (`what`, for messages) the user named as `named` through a link
    /// a sandboxed run could have planted, or that no longer leads to `resolved`.
    fn check_named_root(
        named: &std::path::Path,
        resolved: &std::path::Path,
        home: &std::path::Path,
        what: &str,
    ) -> Result<(), LaunchError> {
        let _ = (named, resolved, home, what);
        Ok(())
    }
    /// What this machine offers, for `ringfence check`.
    fn probe() -> Probe;
    /// The backend's part of `ringfence explain`: how each rule of `policy` is enforced here.
    fn explain(policy: &Policy) -> Result<Explanation, LaunchError>;
    /// One-time installation (Windows); a message saying there is nothing to do elsewhere.
    fn setup() -> Result<Vec<String>, LaunchError> {
        Ok(vec!["nothing to set up on this platform; `ringfence check` shows what it can enforce".into()])
    }
    /// Starts a session (see [`session`]) and returns once its sandbox runs; the session
    /// lives on in a process of its own.
    fn session_start(prepared: Self::Prepared, start: SessionStart) -> Result<SessionInfo, LaunchError> {
        let _ = (prepared, start);
        Err(no_sessions())
    }
    /// Runs one command in the session named `session` (its id or name), passing on the
    /// signals read from `signals`, and returns how it ended.
    fn session_exec(session: &str, exec: SessionExec, signals: &mut Self::Signals) -> Result<SessionExit, LaunchError> {
        let _ = (session, exec, signals);
        Err(no_sessions())
    }
    /// Ends a session and everything running in it.
    fn session_stop(session: &str) -> Result<(), LaunchError> {
        let _ = session;
        Err(no_sessions())
    }
    /// The caller's running sessions (stale ones are cleaned away).
    fn session_list() -> Result<Vec<SessionInfo>, LaunchError> {
        Ok(Vec::new())
    }
    /// Undoes [`Backend::setup`].
    fn uninstall() -> Result<Vec<String>, LaunchError> {
        Ok(vec!["nothing was installed on this platform".into()])
    }
}

/// The error of a backend without sessions.
fn no_sessions() -> LaunchError {
    LaunchError::unsupported("sessions are not supported on this platform", "use `ringfence run` for each command")
}
