//! Built-in sets of exec rules.

use super::{ExecDecision, ExecRule};
use crate::origin::{Builtin, Origin};
use std::path::Path;

pub use crate::named::ExecPreset;

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
