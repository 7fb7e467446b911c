//! Exec rules: which programs the sandboxed command may start. Every exec in the sandbox's
//! process tree is checked against them, in order, and the first rule that matches decides:
//! `allow`, `deny` (the exec fails with EPERM) or `log` (it runs, and the record says which rule
//! noted it). Pure: the backend reads the exec's path, arguments and working directory from
//! the kernel and asks [`ExecRules::decide`].
//!
//! What the matcher sees is described in docs/policy.md ("Exec rules"); the argument grammar
//! lives in `matcher.rs`, the built-in preset in `preset.rs`.

mod matcher;
mod preset;

pub use matcher::{path_glob, ExecCall};
pub use preset::ExecPreset;

use crate::origin::Origin;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// What a matching rule does with an exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecDecision {
    /// The program runs.
    Allow,
    /// The exec fails with EPERM; the reason is told on stderr and recorded.
    Deny,
    /// The program runs, and its record names the rule.
    Log,
}

impl ExecDecision {
    pub fn name(self) -> &'static str {
        match self {
            ExecDecision::Allow => "allow",
            ExecDecision::Deny => "deny",
            ExecDecision::Log => "log",
        }
    }
}

impl fmt::Display for ExecDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The program a rule names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "pattern", rename_all = "lowercase")]
pub enum Program {
    /// A name or glob, matched against the base name of the program as executed and of the
    /// file it resolves to (`git`, `python3*`).
    Name(String),
    /// An absolute path or path glob in the sandbox's view (`/usr/bin/git`, `/opt/*/bin/*`),
    /// matched against the path as executed (made absolute) and the file it resolves to.
    Path(String),
}

impl Program {
    /// Parses a rule's `program`: an absolute path (or `~/…`) is a path, anything else a name.
    pub fn parse(raw: &str, home: &Path) -> Result<Program, String> {
        if raw.is_empty() {
            return Err("`program` is empty; name a program (`git`) or an absolute path".into());
        }
        if raw.starts_with('/') || raw.starts_with('~') {
            let path = crate::paths::expand_path(raw, Path::new("/"), home)?;
            return Ok(Program::Path(path.to_string_lossy().into_owned()));
        }
        if raw.contains('/') {
            return Err(format!("`{raw}`: write a program's name (`git`) or an absolute path (`/usr/bin/git`)"));
        }
        Ok(Program::Name(raw.to_string()))
    }

    fn text(&self) -> &str {
        match self {
            Program::Name(s) | Program::Path(s) => s,
        }
    }
}

/// One exec rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecRule {
    pub program: Program,
    /// Argument patterns (see docs/policy.md): operands matched as a prefix, options anywhere.
    pub args: Vec<String>,
    pub decision: ExecDecision,
    pub reason: Option<String>,
    pub origin: Origin,
}

impl ExecRule {
    /// A rule from its parts, checked.
    pub fn new(
        program: &str,
        args: Vec<String>,
        decision: ExecDecision,
        reason: Option<String>,
        origin: Origin,
        home: &Path,
    ) -> Result<ExecRule, String> {
        let program = Program::parse(program, home)?;
        for arg in &args {
            matcher::check_pattern(arg)?;
        }
        Ok(ExecRule { program, args, decision, reason, origin })
    }

    /// A rule from a flag's pattern: `git push` is program `git` with the argument `push`
    /// (words split at white space).
    pub fn from_flag(flag: &str, raw: &str, decision: ExecDecision, home: &Path) -> Result<ExecRule, String> {
        let mut words = raw.split_whitespace().map(str::to_string);
        let program = words.next().ok_or_else(|| format!("{flag}: empty pattern; write a program and arguments"))?;
        let origin = Origin::flag(format!("{flag} '{raw}'"));
        ExecRule::new(&program, words.collect(), decision, None, origin, home).map_err(|e| format!("{flag} {raw}: {e}"))
    }

    /// The rule as one would type it: `git push`.
    pub fn pattern(&self) -> String {
        std::iter::once(self.program.text()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }

    /// The file a deny rule makes unrunnable whatever the arguments: a plain absolute path
    /// with no argument patterns. A backend can then withhold the right to execute that file
    /// in the kernel, which no rewrite of the exec's memory gets around.
    pub fn whole_program_path(&self) -> Option<PathBuf> {
        match &self.program {
            Program::Path(p)
                if self.decision == ExecDecision::Deny && self.args.is_empty() && !matcher::has_glob(p) =>
            {
                Some(PathBuf::from(p))
            }
            _ => None,
        }
    }

    /// What the command is told, and what the record says, when this rule denies an exec.
    pub fn describe(&self) -> String {
        let reason = self.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        format!("`{}` ({}){reason}", self.pattern(), self.origin)
    }
}

/// The exec rules of a policy, and whether execs are watched at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecRules {
    /// Every exec traps to the supervisor, which checks and records it. Off: only the
    /// top-level command is recorded, and rules can't be enforced.
    pub monitor: bool,
    /// In the order they are checked; the first match decides. Flags come first, then the
    /// project config, the user config, and the presets' rules last.
    pub rules: Vec<ExecRule>,
    /// The presets in force, whose rules are at the end of `rules`.
    pub presets: Vec<(ExecPreset, Origin)>,
}

impl Default for ExecRules {
    fn default() -> Self {
        ExecRules { monitor: true, rules: Vec::new(), presets: Vec::new() }
    }
}

impl ExecRules {
    /// The first rule that matches the exec, if any.
    pub fn decide(&self, call: &ExecCall) -> Option<&ExecRule> {
        self.decide_any(std::slice::from_ref(call))
    }

    /// The first rule that matches any of these calls: an exec, and the programs the kernel
    /// runs for it without another exec (a script's interpreters).
    pub fn decide_any(&self, calls: &[ExecCall]) -> Option<&ExecRule> {
        let unwrapped: Vec<ExecCall> = calls.iter().filter_map(ExecCall::behind_loader).collect();
        self.rules.iter().find(|rule| calls.iter().chain(&unwrapped).any(|call| call.matches(rule)))
    }

    /// Puts a preset's rules in force (once).
    pub fn add_preset(&mut self, preset: ExecPreset, origin: Origin) {
        if !self.presets.iter().any(|(p, _)| *p == preset) {
            self.presets.push((preset, origin));
        }
    }

    /// Orders the layers' rules for checking: the most specific source first (flags, project,
    /// user), the presets' last.
    pub fn assemble(&mut self, layers: Vec<Vec<ExecRule>>, home: &Path) {
        self.rules = layers.into_iter().rev().flatten().collect();
        for (preset, origin) in &self.presets {
            self.rules.extend(preset.rules(origin, home));
        }
    }

    /// Whether any rule is in force (monitoring can't then be off).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests;
