//! What a run enforced and how it ended, and what `setup` did and found: plain data, shared by
//! every target so the library and the CLI can render it anywhere.

use std::fmt;
use std::time::Duration;

pub use ringfence_audit::Layer;

/// What this run enforces, and what it does not: what Windows can't enforce for any run (see
/// [`crate::prepare::platform_gaps`]), reported with every run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enforcement {
    pub enforced: Vec<Layer>,
    pub not_enforced: Vec<Layer>,
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The command's exit code (`GetExitCodeProcess`). After a timeout or `kill`, the code the
    /// job was terminated with ([`KILLED_EXIT_CODE`]).
    pub exit_code: u32,
    pub timed_out: bool,
    /// The job reported that its memory limit refused an allocation.
    pub memory_limit_hit: bool,
    pub duration: Duration,
    /// CPU time of every process that ran in the job.
    pub user_time: Duration,
    pub kernel_time: Duration,
    /// The job's peak committed memory.
    pub peak_memory_bytes: u64,
    /// What the run's clean-up could not undo (an ACL entry on a file that changed owner, a
    /// temporary file the command locked); empty normally.
    pub cleanup_warnings: Vec<String>,
}

/// The exit code every process of the job gets when the run is killed (timeout, `kill`):
/// `STATUS_CONTROL_C_EXIT`, what a console process reports after Ctrl-C.
pub const KILLED_EXIT_CODE: u32 = 0xC000_013A;

/// What `setup` or `uninstall` changed, one line per action, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetupReport {
    pub actions: Vec<String>,
}

impl SetupReport {
    #[cfg(windows)]
    pub(crate) fn did(&mut self, action: impl Into<String>) {
        self.actions.push(action.into());
    }
}

/// The WFP filters `setup` installs, as found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterState {
    /// Every expected filter is installed.
    Present { count: usize },
    /// Some or all are missing.
    Missing { missing: usize, expected: usize },
    /// They could not be read (the filter engine refused, usually for want of elevation).
    Unknown(String),
}

/// The machine's state for `ringfence check`: what `setup` installs and whether it works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupState {
    /// This process runs elevated (only `setup` and `uninstall` need it).
    pub elevated: bool,
    /// The sandbox account's SID, when the account exists.
    pub account_sid: Option<String>,
    /// The account's password could be read and decrypted by this user.
    pub secret_readable: bool,
    /// A logon as the sandbox account succeeded (None: not tried, the secret was unreadable).
    pub logon_works: Option<bool>,
    /// The runner executable is installed where the sandbox account can run it.
    pub runner_installed: bool,
    pub filters: FilterState,
    /// The sandbox account's profile folder, when it exists.
    pub profile: Option<String>,
    /// Whether sandboxed commands may write to the NUL device (None: its ACL can't be read).
    pub null_device: Option<bool>,
    /// What Windows can't enforce for any run.
    pub not_enforced: Vec<Layer>,
    /// Why a check failed, in the words of the system.
    pub notes: Vec<String>,
}

impl SetupState {
    /// Whether `spawn` can work: the account, its profile, its secret, the runner, the filters
    /// (readable by this user) and the NUL device's entry are there.
    pub fn ready(&self) -> bool {
        self.problems().is_empty()
    }

    /// What is missing, each with its remedy.
    pub fn problems(&self) -> Vec<String> {
        let setup = crate::error::SETUP_REMEDY;
        let mut out = Vec::new();
        if self.account_sid.is_none() {
            out.push(format!("the sandbox account `{}` does not exist; {setup}", crate::install::ACCOUNT_NAME));
        }
        if self.account_sid.is_some() && !self.secret_readable {
            out.push(format!(
                "the sandbox account's password can't be read by this user; {setup} from this user's account"
            ));
        }
        if self.logon_works == Some(false) {
            out.push(format!("a logon as the sandbox account failed; {setup} again to reset its password"));
        }
        if !self.runner_installed {
            out.push(format!("the runner is not installed; {setup}"));
        }
        if self.account_sid.is_some() && self.profile.is_none() {
            out.push(format!("the sandbox account has no profile; {setup} again"));
        }
        match &self.filters {
            FilterState::Present { .. } => {}
            FilterState::Missing { missing, expected } => {
                out.push(format!("{missing} of {expected} WFP filters are missing; {setup}"))
            }
            // Filters that can't be checked are not trusted: `spawn` refuses to run.
            FilterState::Unknown(_) => {
                out.push(format!("the WFP filters can't be read by this user; {setup} from this user's account"))
            }
        }
        match self.null_device {
            Some(true) => {}
            Some(false) => {
                out.push(format!("sandboxed commands can't write to NUL (its boot task did not run); {setup} again"))
            }
            None => out.push(format!("the NUL device's ACL can't be read (see the notes); {setup} again")),
        }
        out
    }
}

impl fmt::Display for SetupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "elevated: {}", yes(self.elevated))?;
        match &self.account_sid {
            Some(sid) => writeln!(f, "sandbox account: {} ({sid})", crate::install::ACCOUNT_NAME)?,
            None => writeln!(f, "sandbox account: missing")?,
        }
        writeln!(f, "password readable: {}", yes(self.secret_readable))?;
        match self.logon_works {
            Some(b) => writeln!(f, "logon: {}", if b { "works" } else { "fails" })?,
            None => writeln!(f, "logon: not tried")?,
        }
        writeln!(f, "runner installed: {}", yes(self.runner_installed))?;
        match &self.profile {
            Some(p) => writeln!(f, "profile: {p}")?,
            None => writeln!(f, "profile: missing")?,
        }
        match self.null_device {
            Some(b) => writeln!(f, "NUL writable by commands: {}", yes(b))?,
            None => writeln!(f, "NUL writable by commands: unknown")?,
        }
        match &self.filters {
            FilterState::Present { count } => writeln!(f, "WFP filters: {count} present")?,
            FilterState::Missing { missing, expected } => writeln!(f, "WFP filters: {missing} of {expected} missing")?,
            FilterState::Unknown(why) => writeln!(f, "WFP filters: unknown ({why})")?,
        }
        for gap in &self.not_enforced {
            writeln!(f, "not enforced on Windows: {}: {}", gap.name, gap.detail)?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_state() -> SetupState {
        SetupState {
            elevated: false,
            account_sid: Some("S-1-5-21-1-2-3-1001".into()),
            secret_readable: true,
            logon_works: Some(true),
            runner_installed: true,
            filters: FilterState::Present { count: 20 },
            profile: Some(r"C:\Users\ringfence-sandbox".into()),
            null_device: Some(true),
            not_enforced: vec![Layer::new("dns", "through the DNS Client service")],
            notes: vec![],
        }
    }

    #[test]
    fn a_complete_setup_is_ready() {
        let state = ready_state();
        assert!(state.ready(), "{:?}", state.problems());
        let text = state.to_string();
        assert!(text.contains("sandbox account: ringfence-sandbox (S-1-5-21-1-2-3-1001)"), "{text}");
    }

    #[test]
    fn filters_that_cant_be_read_are_a_problem() {
        // `spawn` refuses to trust filters it can't see; `check` says so, with the remedy.
        let state = SetupState { filters: FilterState::Unknown("access denied".into()), ..ready_state() };
        assert!(!state.ready());
        assert!(state.problems()[0].contains("can't be read by this user"), "{:?}", state.problems());
    }

    #[test]
    fn a_missing_profile_or_nul_entry_is_a_problem() {
        let state = SetupState { profile: None, null_device: Some(false), ..ready_state() };
        let problems = state.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no profile") && problems[1].contains("NUL"), "{problems:?}");
        // An ACL that can't be read is not taken for a good one: `spawn` refuses then too.
        assert!(!SetupState { null_device: None, ..ready_state() }.ready());
        let text = ready_state().to_string();
        assert!(text.contains("not enforced on Windows: dns"), "{text}");
    }

    #[test]
    fn each_missing_piece_names_setup() {
        let state = SetupState {
            account_sid: None,
            secret_readable: false,
            logon_works: None,
            runner_installed: false,
            filters: FilterState::Missing { missing: 3, expected: 20 },
            ..ready_state()
        };
        let problems = state.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("ringfence setup")));
        assert!(problems[2].contains("3 of 20 WFP filters"));
    }
}
