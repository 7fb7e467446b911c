//! How an exec is matched against a rule.
//!
//! The program: a rule's name glob against the base names of the path as executed and of the
//! file it resolves to; a path glob against both paths. argv[0] is not looked at (a program
//! chooses it freely).
//!
//! The arguments (argv[1..]) are split like getopt does: `--` ends the options; `--name` and
//! `--name=value` are long options; `-abc` is the short options a, b and c; anything else,
//! a lone `-` included, is an operand. For a few programs the matcher knows which options take
//! a value in the next argument (git's `-C dir`, `-c key=value`, `--git-dir dir`, …; see
//! [`value_options`]), so those values are not taken for operands. A rule's argument patterns:
//!
//! - one starting with `-` is an option that must be present, anywhere: `-r` is found in
//!   `-r`, `-rf` and `-fr`; `-rf` needs both; `--force` a long option of that name;
//! - `**` stands for any number of operands;
//! - anything else is matched against the operands in order, from the first (a prefix: more
//!   operands may follow). `*` and `?` are globs; `a|b` are alternatives.
//!   A pattern starting with `/` or `~` is a path: the operand is made absolute against the
//!   caller's working directory, `~` expanded, `.` and `..` resolved lexically, and `*` does not
//!   cross `/` (`/*` is `/` itself or one entry directly in it).
//!
//! When the program is the dynamic loader (`ld-linux*.so*`, `ld-musl*`, `ld.so`), the program
//! it loads and that program's arguments are matched as well: `ld.so /usr/bin/git push` runs git
//! without exec'ing it.

use super::{ExecRule, Program};
use crate::env::glob_match;
use std::path::Path;

/// One exec, as the matcher sees it. Paths are the sandbox's view.
#[derive(Clone, Debug)]
pub struct ExecCall<'a> {
    /// The program as executed, made absolute against the caller's working directory.
    pub executed: String,
    /// The file that path resolves to (links followed), when known.
    pub resolved: Option<String>,
    /// The arguments, argv[0] included.
    pub argv: &'a [String],
    /// The caller's working directory.
    pub cwd: &'a str,
    /// The home folder, for `~` in patterns and operands.
    pub home: &'a Path,
}

/// An argument list split into options and operands.
#[derive(Debug, Default)]
struct Split<'a> {
    shorts: Vec<char>,
    longs: Vec<&'a str>,
    operands: Vec<&'a str>,
}

impl<'a> ExecCall<'a> {
    /// Whether `rule` matches this exec.
    pub fn matches(&self, rule: &ExecRule) -> bool {
        let program = match &rule.program {
            Program::Name(glob) => self.names().any(|n| glob_match(glob, n)),
            Program::Path(glob) => self.paths().any(|p| path_glob(glob, p)),
        };
        program && self.arguments_match(&rule.args)
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.executed.as_str()).chain(self.resolved.as_deref())
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.paths().map(|p| p.rsplit('/').next().unwrap_or(p))
    }

    fn arguments_match(&self, patterns: &[String]) -> bool {
        if patterns.is_empty() {
            return true;
        }
        let takes_value: Vec<&str> = self.names().flat_map(value_options).copied().collect();
        let split = split(self.argv.get(1..).unwrap_or_default(), &takes_value);
        let (options, operands): (Vec<&String>, Vec<&String>) = patterns.iter().partition(|p| p.starts_with('-'));
        options.iter().all(|p| p.split('|').any(|alt| split.has_option(alt)))
            && self.operands_match(&operands, &split.operands)
    }

    /// Operand patterns as a prefix of the operands, `**` skipping any number.
    fn operands_match(&self, patterns: &[&String], operands: &[&str]) -> bool {
        match (patterns.split_first(), operands.split_first()) {
            (None, _) => true,
            (Some((p, rest)), _) if p.as_str() == "**" => {
                self.operands_match(rest, operands)
                    || operands.split_first().is_some_and(|(_, more)| self.operands_match(patterns, more))
            }
            (Some((p, rest)), Some((o, more))) => self.operand_matches(p, o) && self.operands_match(rest, more),
            (Some(_), None) => false,
        }
    }

    fn operand_matches(&self, pattern: &str, operand: &str) -> bool {
        pattern.split('|').any(|alt| {
            if alt.starts_with('/') || alt.starts_with('~') {
                let home = self.home.to_string_lossy();
                path_glob(&expand_home(alt, &home), &absolute(operand, self.cwd, &home))
            } else {
                glob_match(alt, operand)
            }
        })
    }

    /// The same exec seen through the dynamic loader: the program it loads, with that
    /// program's arguments; None when the program is not the loader.
    pub fn behind_loader(&self) -> Option<ExecCall<'a>> {
        if !self.names().any(is_loader) {
            return None;
        }
        let args = self.argv.get(1..)?;
        let mut i = 0;
        while let Some(arg) = args.get(i).filter(|a| a.starts_with("--")) {
            i += if LOADER_VALUE_OPTIONS.contains(&arg.as_str()) { 2 } else { 1 };
        }
        let program = args.get(i)?;
        let home = self.home.to_string_lossy();
        Some(ExecCall {
            executed: absolute(program, self.cwd, &home),
            resolved: None,
            argv: &self.argv[i + 1..],
            cwd: self.cwd,
            home: self.home,
        })
    }
}

impl Split<'_> {
    fn has_option(&self, alternative: &str) -> bool {
        match alternative.strip_prefix("--") {
            Some(long) => self.longs.contains(&long),
            None => {
                let chars = alternative.trim_start_matches('-');
                !chars.is_empty() && chars.chars().all(|c| self.shorts.contains(&c))
            }
        }
    }
}

/// Splits arguments into options and operands; `takes_value` names the options whose value is
/// the next argument (`-C`, `--git-dir`).
fn split<'a>(args: &'a [String], takes_value: &[&str]) -> Split<'a> {
    let mut out = Split::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.operands.extend(iter.map(String::as_str));
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            out.longs.push(name);
            if !long.contains('=') && takes_value.contains(&arg.as_str()) {
                iter.next();
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            if short_cluster(&arg[1..], takes_value, &mut out.shorts) {
                iter.next();
            }
        } else {
            out.operands.push(arg);
        }
    }
    out
}

/// Adds the short options of `-abc` (without the dash); whether the next argument is the value
/// of the last one. A value option takes the rest of the cluster as its value (`-Cdir`).
fn short_cluster(cluster: &str, takes_value: &[&str], shorts: &mut Vec<char>) -> bool {
    for (i, c) in cluster.char_indices() {
        shorts.push(c);
        if takes_value.iter().any(|v| v.len() == 2 && v.strip_prefix('-').is_some_and(|o| o.starts_with(c))) {
            return i + c.len_utf8() == cluster.len();
        }
    }
    false
}

/// The options of well-known programs that take a value in the next argument, so that value is
/// not taken for an operand (`git -C dir push`: the operand is `push`). Global options only:
/// those that may stand before the subcommand a rule names.
pub fn value_options(name: &str) -> &'static [&'static str] {
    match name {
        "git" => &["-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env", "--super-prefix"],
        "npm" | "pnpm" | "yarn" => &[
            "-C",
            "--prefix",
            "--registry",
            "--userconfig",
            "--workspace",
            "-w",
            "--cache",
            "--loglevel",
            "--otp",
            "--tag",
            "--access",
        ],
        "cargo" => &["-C", "-Z", "--config", "--color", "--manifest-path", "--registry", "--index", "--token"],
        "gh" => &["-R", "--repo"],
        _ => &[],
    }
}

/// The dynamic loader's options that take a value.
const LOADER_VALUE_OPTIONS: &[&str] = &[
    "--library-path",
    "--preload",
    "--argv0",
    "--audit",
    "--inhibit-rpath",
    "--glibc-hwcaps-prepend",
    "--glibc-hwcaps-mask",
];

fn is_loader(name: &str) -> bool {
    name == "ld.so" || (name.starts_with("ld-linux") && name.contains(".so")) || name.starts_with("ld-musl")
}

/// Whether a pattern uses glob characters.
pub(super) fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Checks one argument pattern of a rule.
pub(super) fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.split('|').any(str::is_empty) {
        return Err(format!("argument pattern `{pattern}` has an empty alternative"));
    }
    let options = pattern.split('|').filter(|a| a.starts_with('-')).count();
    if options != 0 && options != pattern.split('|').count() {
        return Err(format!(
            "argument pattern `{pattern}` mixes options and operands; write options (`-r|--recursive`) and \
             operands (`add|set-url`) as separate patterns"
        ));
    }
    if options != 0 && pattern.split('|').any(|a| a == "-" || a == "--" || has_glob(a)) {
        return Err(format!("option pattern `{pattern}`: name options plainly, like `-r` or `--force`"));
    }
    Ok(())
}

/// `~` or `~/…` with the home folder in place.
fn expand_home(path: &str, home: &str) -> String {
    match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", home.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

/// `path` made absolute against `cwd` (`~` expanded) and normalized lexically.
fn absolute(path: &str, cwd: &str, home: &str) -> String {
    let expanded = expand_home(path, home);
    let joined = if expanded.starts_with('/') { expanded } else { format!("{cwd}/{expanded}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A path glob: `*` and `?` stay within one component, `**` crosses `/`.
pub fn path_glob(pattern: &str, path: &str) -> bool {
    glob_bytes(pattern.as_bytes(), path.as_bytes())
}

fn glob_bytes(p: &[u8], n: &[u8]) -> bool {
    match (p.first(), n.first()) {
        (None, None) => true,
        (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
            glob_bytes(&p[2..], n) || (!n.is_empty() && glob_bytes(p, &n[1..]))
        }
        (Some(b'*'), _) => glob_bytes(&p[1..], n) || (n.first().is_some_and(|c| *c != b'/') && glob_bytes(p, &n[1..])),
        (Some(b'?'), Some(c)) if *c != b'/' => glob_bytes(&p[1..], &n[1..]),
        (Some(a), Some(b)) if a == b => glob_bytes(&p[1..], &n[1..]),
        _ => false,
    }
}
