//! The built-in things a rule can come from, by name: agents with a profile, and exec
//! presets. Plain enums, so that a rule's origin can name them without depending on the
//! profiles and rules behind them (`agents.rs`, `exec/preset.rs`).

use serde::Serialize;
use std::fmt;

/// A coding agent with a built-in profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Agent {
    Claude,
    Codex,
    Gemini,
    Aider,
    Opencode,
}

impl Agent {
    pub fn all() -> &'static [Agent] {
        &[Agent::Claude, Agent::Codex, Agent::Gemini, Agent::Aider, Agent::Opencode]
    }

    /// The agent's name in `agent:NAME`, which is also its command.
    pub fn name(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::Aider => "aider",
            Agent::Opencode => "opencode",
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent:{}", self.name())
    }
}

/// Built-in exec rule sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecPreset {
    /// Denies what should stay the user's call: `git push`, `git remote add|set-url`,
    /// `npm publish`, `cargo publish`, `twine upload`, `gh release create`, `sudo`, `su`,
    /// `doas`, and a recursive `rm` aimed at `/`, an entry directly in `/`, the home folder or
    /// an entry directly in it.
    Guardrails,
}

impl ExecPreset {
    pub fn name(self) -> &'static str {
        match self {
            ExecPreset::Guardrails => "guardrails",
        }
    }

    pub fn all() -> &'static [ExecPreset] {
        &[ExecPreset::Guardrails]
    }
}

impl std::fmt::Display for ExecPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ExecPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names: Vec<&str> = ExecPreset::all().iter().map(|p| p.name()).collect();
        ExecPreset::all()
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown exec preset `{s}`; use one of: {}", names.join(", ")))
    }
}
