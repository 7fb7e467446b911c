//! ringfence's Windows backend.
//!
//! A sandboxed command runs as a dedicated local account (`ringfence-sandbox`, created once by
//! an elevated [`setup`]) with a write-restricted token, in a job object, on a private desktop,
//! with only its standard handles. Files: each root the policy opens gets a persistent slot
//! grant once (see [`grants`]); per run, the token enables only the slots of the run's roots,
//! and the run's logon SID gets deny entries on protected and hidden paths, removed when the
//! run ends. Network: persistent WFP filters on the account block every connection out; a run
//! with a gateway gets permits for exactly its gateway's loopback ports, for its logon SID.
//!
//! The pure parts (command-line quoting, the environment block, SIDs, ACLs, the WFP filter
//! descriptions, the job limits, the ACL plan, the journal and the runner protocol) build on
//! every target and are unit-tested everywhere; the OS calls are `cfg(windows)`. See
//! docs/windows.md.

#![deny(clippy::too_many_lines)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

pub mod acl;
pub mod cmdline;
pub mod envblock;
mod error;
pub mod escape;
#[cfg(test)]
mod fixtures;
pub mod grants;
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
mod backend;
#[cfg(windows)]
mod changes;
#[cfg(windows)]
mod control;
#[cfg(windows)]
mod launch;
#[cfg(windows)]
mod relay;
#[cfg(windows)]
mod runner;
#[cfg(windows)]
mod setup;
#[cfg(windows)]
mod slots;
#[cfg(windows)]
mod sys;

#[cfg(windows)]
pub use backend::{Sandbox as WindowsSandbox, Windows};
#[cfg(windows)]
pub use launch::{spawn, Killer, LaunchSpec, Sandbox};
#[cfg(windows)]
pub use setup::{forget_root, setup, state, uninstall};

pub use error::{ErrorKind, LaunchError, SETUP_REMEDY};
pub use install::ACCOUNT_NAME;
pub use report::{Enforcement, FilterState, Layer, Outcome, SetupReport, SetupState, KILLED_EXIT_CODE};

/// Call first thing in `main` of every program that may be installed as the runner (the
/// `ringfence` binary): when this process was started as the runner (or as the boot task
/// `setup` schedules), it does that work and returns the exit code to exit with; otherwise it
/// returns None at once. Always None on other platforms.
pub fn runner_entry() -> Option<i32> {
    #[cfg(windows)]
    {
        let mut args = std::env::args_os().skip(1);
        let first = args.next()?;
        if first == protocol::BOOT_ARG {
            return Some(setup::boot());
        }
        if first != protocol::RUNNER_ARG {
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
