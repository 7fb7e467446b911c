//! Sessions: one sandbox, built once and kept, that runs many commands. The policy is fixed
//! when the session starts; each command gets its own stdio, exit status and signals, and its
//! environment scrubbed afresh by the session's policy.

use crate::{Exit, Stdio};
use ringfence_policy::Policy;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a session with no command running stays up by default.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);

/// Builds a command's environment from the caller's variables and its working folder, by the
/// session's policy (the library's scrubbing); runs in the process that serves the session.
pub type EnvironmentBuilder = Box<dyn Fn(&[(OsString, OsString)], &Path) -> Vec<(OsString, OsString)> + Send + Sync>;

/// What a session is started with.
pub struct SessionStart {
    pub policy: Policy,
    /// A name to find the session by, besides its id; unique among the user's sessions.
    pub name: Option<String>,
    /// The process whose exit ends the session.
    pub owner: u32,
    /// How long the session stays up with no command running.
    pub idle: Duration,
    pub environment: EnvironmentBuilder,
}

/// A running session, as `ringfence session list` shows it (and `--json` prints it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub name: Option<String>,
    /// The process that serves the session.
    pub pid: u32,
    /// The process whose exit ends it.
    pub owner: u32,
    pub workspace: PathBuf,
    /// When it started, in seconds since the Unix epoch.
    pub started: u64,
}

/// One command to run in a session.
#[derive(Debug)]
pub struct SessionExec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The caller's variables; the session scrubs them by its policy.
    pub env: Vec<(OsString, OsString)>,
    /// The working folder (the session's workspace when None).
    pub cwd: Option<PathBuf>,
    /// Leave what the command starts in the background running after it exits.
    pub background: bool,
    /// SIGTERM after this long, SIGKILL a grace period later.
    pub timeout: Option<Duration>,
    pub stdio: [Stdio; 3],
}

/// How a command in a session ended, and what the review of the writable roots after it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionExit {
    pub exit: Exit,
    /// Its time ran out (`timeout`).
    pub timed_out: bool,
    /// The memory limit was reached while it ran (a process was OOM-killed).
    pub memory_limit: bool,
    /// What the session's commands left that would run code later, and what was done about it.
    pub findings: Vec<crate::ReviewFinding>,
    /// What the review could not check.
    pub review_failures: Vec<crate::ReviewFinding>,
}
