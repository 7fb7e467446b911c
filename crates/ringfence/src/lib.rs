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
//! On Linux, `spawn` must be called while the process has a single thread (the sandbox is
//! created with a fork-like clone); the CLI does so before it starts anything else.
//!
//! The library picks this platform's backend (crates/linux, crates/windows, crates/macos), all
//! behind one contract (crates/backend); nothing here is platform-specific but that choice.

#![forbid(unsafe_code)]
#![deny(clippy::too_many_lines)]

mod child;
mod command;
mod config;
mod environment;
pub mod exit_code;
mod platform;
pub mod session;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported;

pub use child::{Child, ExitStatus, Signals};
pub use command::{Command, Stdio};
pub use config::{home_dir, load_policy, user_config_path, PolicySources, PROJECT_CONFIG};
pub use platform::{
    arm_signals, explain, inherited_output, open_output, probe, release_signals, setup, start_process, uninstall,
};
pub use ringfence_audit::{EndReason, EventBody, ReviewFinding};
pub use ringfence_backend::trace;
pub use ringfence_backend::{
    Enforcement, Explanation, GatewayPorts, Killer, Layer, OutputFile, Probe, ProbeItem, ProcessCounts,
};
pub use ringfence_gateway::EventSink;
pub use ringfence_policy as policy;
pub use ringfence_policy::{Overrides, Policy, PolicyError};
pub use session::{Owner, Session, SessionCommand, SessionExit, SessionInfo};

use std::fmt;

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
