//! Built-in sets of exec rules.

use super::{ExecDecision, ExecRule};
use crate::origin::{Builtin, Origin};
use std::path::Path;

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

/// One rule of a preset: program, argument patterns, reason.
type PresetRule = (&'static str, &'static [&'static str], &'static str);

const PUSH: &str = "pushing is the user's call";
const REMOTE: &str = "changing where git pushes is the user's call";
const PUBLISH: &str = "publishing is the user's call";
const PRIVILEGE: &str = "the sandbox never gains privileges; ask the user to run it";
const REMOVE: &str = "removing / or the home folder";

const GUARDRAILS: &[PresetRule] = &[
    ("git", &["push"], PUSH),
    // git's own programs for its subcommands (/usr/lib/git-core/git-push is git itself).
    ("git-push", &[], PUSH),
    ("git", &["remote", "add|set-url"], REMOTE),
    ("git-remote", &["add|set-url"], REMOTE),
    ("npm", &["publish"], PUBLISH),
    ("cargo", &["publish"], PUBLISH),
    ("twine", &["upload"], PUBLISH),
    ("gh", &["release", "create"], PUBLISH),
    ("sudo", &[], PRIVILEGE),
    ("su", &[], PRIVILEGE),
    ("doas", &[], PRIVILEGE),
    ("rm", &["-r|-R|--recursive", "**", "/*|~|~/*"], REMOVE),
];

impl ExecPreset {
    pub fn name(self) -> &'static str {
        match self {
            ExecPreset::Guardrails => "guardrails",
        }
    }

    pub fn all() -> &'static [ExecPreset] {
        &[ExecPreset::Guardrails]
    }

    /// The preset's rules, all from `by`.
    pub fn rules(self, by: &Origin, home: &Path) -> Vec<ExecRule> {
        let table = match self {
            ExecPreset::Guardrails => GUARDRAILS,
        };
        let origin = Origin::from(Builtin::ExecPreset { preset: self, by: Box::new(by.clone()) });
        table
            .iter()
            .filter_map(|(program, args, reason)| {
                let args = args.iter().map(|a| a.to_string()).collect();
                let reason = Some(reason.to_string());
                ExecRule::new(program, args, ExecDecision::Deny, reason, origin.clone(), home).ok()
            })
            .collect()
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
