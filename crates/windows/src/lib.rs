//! ringfence's Windows backend.
//!
//! A sandboxed command runs as a dedicated local account (`ringfence-sandbox`, created once by
//! an elevated [`setup`]) with a write-restricted token, in a job object, on a private desktop,
//! with only its standard handles. Files: the run's logon SID gets ACL entries on the
//! writable roots (and deny entries on protected and hidden paths), removed when the run ends.
//! Network: persistent WFP filters on the account let it reach only loopback ports in
//! [`GATEWAY_PORT_RANGE`], where the gateway listens in explicit-proxy mode.
//!
//! The pure parts (command-line quoting, the environment block, SIDs, ACLs, the WFP filter
//! descriptions, the job limits, the ACL plan, the journal and the runner protocol) build on
//! every target and are unit-tested everywhere; the OS calls are `cfg(windows)`. See
//! docs/windows.md.

pub mod acl;
pub mod cmdline;
pub mod envblock;
mod error;
#[cfg(test)]
mod fixtures;
pub mod install;
pub mod job;
pub mod journal;
pub mod plan;
pub mod prepare;
pub mod protocol;
pub mod report;
pub mod sid;
pub mod wfp;
pub mod wpath;

#[cfg(windows)]
mod changes;
#[cfg(windows)]
mod launch;
#[cfg(windows)]
mod runner;
#[cfg(windows)]
mod setup;
#[cfg(windows)]
mod sys;

#[cfg(windows)]
pub use launch::{spawn, Killer, LaunchSpec, Sandbox, StdioSpec};
#[cfg(windows)]
pub use setup::{setup, state, uninstall};

pub use error::{ErrorKind, LaunchError, SETUP_REMEDY};
pub use report::{Enforcement, FilterState, Layer, Outcome, SetupReport, SetupState, KILLED_EXIT_CODE};

/// The loopback port range the sandbox account may connect to (the gateway binds inside it);
/// fixed at setup, WFP filters permit exactly it.
pub const GATEWAY_PORT_RANGE: std::ops::RangeInclusive<u16> = 61000..=61099;

/// The sandbox account's name (at most 20 characters, the limit for local accounts).
pub const ACCOUNT_NAME: &str = "ringfence-sandbox";

/// Call first thing in `main` of every program that may be installed as the runner (the
/// `ringfence` binary): when this process was started as the runner, it does the runner's
/// work and returns the exit code to exit with; otherwise it returns None at once. Always
/// None on other platforms.
pub fn runner_entry() -> Option<i32> {
    #[cfg(windows)]
    {
        let mut args = std::env::args_os().skip(1);
        if args.next()? != protocol::RUNNER_ARG {
            return None;
        }
        let name = args.next()?.into_string().ok()?;
        Some(runner::main(&name))
    }
    #[cfg(not(windows))]
    {
        None
    }
}
