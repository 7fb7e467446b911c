//! Built-in agent profiles: one TOML file per coding agent, in the config format users write,
//! applied as a layer over the `workspace` profile (`--profile agent:NAME`). Each opens what its
//! agent needs to run confined whole: its API hosts, its own state folder (its own credentials
//! included), and the variables it reads; everything else stays at the `workspace` defaults.

use crate::config::LoadedConfig;
use crate::error::PolicyError;
use crate::modes::ProfileName;
pub use crate::named::Agent;
use std::fmt;
use std::path::Path;

impl Agent {
    /// The profile's text: a config file (`ringfence profile show agent:NAME`).
    pub fn profile_text(self) -> &'static str {
        match self {
            Agent::Claude => include_str!("agents/claude.toml"),
            Agent::Codex => include_str!("agents/codex.toml"),
            Agent::Gemini => include_str!("agents/gemini.toml"),
            Agent::Aider => include_str!("agents/aider.toml"),
            Agent::Opencode => include_str!("agents/opencode.toml"),
        }
    }

    /// The profile, parsed. Its name (`agent:NAME`) stands for its path in messages.
    pub fn profile(self) -> Result<LoadedConfig, PolicyError> {
        let config = LoadedConfig::parse(Path::new(&self.to_string()), self.profile_text().to_string())?;
        if let Some(profile) = &config.config.profile {
            // The layer goes over `workspace`; a base profile of its own would be ignored.
            return Err(config.error_at(profile.span(), "an agent profile can't name a base profile"));
        }
        Ok(config)
    }
}

/// What `--profile` names: a built-in profile, or an agent's profile over `workspace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileChoice {
    Base(ProfileName),
    Agent(Agent),
}

impl ProfileChoice {
    /// The base profile and the agent layer it stands for.
    pub fn parts(self) -> (ProfileName, Option<Agent>) {
        match self {
            ProfileChoice::Base(p) => (p, None),
            ProfileChoice::Agent(a) => (ProfileName::Workspace, Some(a)),
        }
    }
}

impl std::str::FromStr for ProfileChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let agents = || Agent::all().iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
        match s.strip_prefix("agent:") {
            Some(name) => Agent::all()
                .iter()
                .find(|a| a.name() == name)
                .map(|a| ProfileChoice::Agent(*a))
                .ok_or_else(|| format!("unknown agent profile `{s}`; use one of {}", agents())),
            None => s
                .parse()
                .map(ProfileChoice::Base)
                .map_err(|e: String| format!("{e}, or an agent's profile: {}", agents())),
        }
    }
}

impl fmt::Display for ProfileChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileChoice::Base(p) => write!(f, "{p}"),
            ProfileChoice::Agent(a) => write!(f, "{a}"),
        }
    }
}
