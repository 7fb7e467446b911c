//! Environment scrubbing: an allowlist, with secret-looking names dropped unless kept by name.
//!
//! How names compare is a parameter ([`NameRules`]): Unix names are case-sensitive, Windows
//! names are not (`Path` is `PATH`), and Windows programs need a few more variables kept. Each
//! function that takes no rules uses [`NameRules::NATIVE`], the rules of the platform this
//! was built for; the `_with` forms take them explicitly so both behaviours are tested
//! everywhere.

use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

/// Variables passed through by default.
pub const DEFAULT_KEEP: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "COLORTERM",
    "TZ",
    "SHELL",
    "PWD",
    "TMPDIR",
    "NO_COLOR",
];

/// Variables Windows programs need besides [`DEFAULT_KEEP`], passed through on Windows only:
/// Winsock fails without `SystemRoot`, shells without `ComSpec` and `PATHEXT`, installers and
/// toolchains look for the program folders, PowerShell for its module path. None holds a
/// secret. (The profile folders, `USERPROFILE`, `APPDATA` and the like, are set by the
/// Windows backend to the sandbox account's own.)
pub const WINDOWS_KEEP: &[&str] = &[
    "SystemRoot",
    "windir",
    "SystemDrive",
    "ComSpec",
    "PATHEXT",
    "OS",
    "NUMBER_OF_PROCESSORS",
    "PROCESSOR_ARCHITECTURE",
    "PROCESSOR_IDENTIFIER",
    "PROCESSOR_LEVEL",
    "PROCESSOR_REVISION",
    "ProgramData",
    "ProgramFiles",
    "ProgramFiles(x86)",
    "ProgramW6432",
    "CommonProgramFiles",
    "CommonProgramFiles(x86)",
    "CommonProgramW6432",
    "ALLUSERSPROFILE",
    "PUBLIC",
    "PSModulePath",
    "COMPUTERNAME",
    "DriverData",
];

/// Name fragments that mark a variable as a likely secret.
pub const SECRET_MARKERS: &[&str] =
    &["TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION"];

/// How one platform treats variable names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRules {
    /// Names are case-sensitive; [`DEFAULT_KEEP`] is kept.
    Unix,
    /// Names are case-insensitive everywhere (keep, set, drop, secret patterns);
    /// [`DEFAULT_KEEP`] and [`WINDOWS_KEEP`] are kept.
    Windows,
}

impl NameRules {
    /// The rules of the platform this was built for.
    pub const NATIVE: NameRules = if cfg!(windows) { NameRules::Windows } else { NameRules::Unix };

    /// Whether two names are the same variable.
    pub fn same(self, a: &str, b: &str) -> bool {
        match self {
            NameRules::Unix => a == b,
            NameRules::Windows => a.eq_ignore_ascii_case(b),
        }
    }

    /// The names and globs passed through by default.
    pub fn default_keep(self) -> impl Iterator<Item = &'static str> {
        let windows: &[&str] = if self == NameRules::Windows { WINDOWS_KEEP } else { &[] };
        DEFAULT_KEEP.iter().chain(windows).copied()
    }

    /// Shell-style glob with `*` and `?` over names, compared as names are.
    pub fn glob_match(self, pattern: &str, name: &str) -> bool {
        match self {
            NameRules::Unix => glob_with(pattern.as_bytes(), name.as_bytes(), &|a, b| a == b),
            NameRules::Windows => glob_with(pattern.as_bytes(), name.as_bytes(), &|a, b| a.eq_ignore_ascii_case(&b)),
        }
    }
}

/// Environment rules for the sandboxed command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EnvRules {
    /// Extra names or globs (`AWS_*`) to pass through. A secret-looking name passes only when
    /// listed by its exact name.
    pub keep: Vec<String>,
    /// Variables set (or overridden) inside the sandbox.
    pub set: BTreeMap<String, String>,
}

/// Why a host variable was passed or dropped, for `explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvVerdict {
    Kept,
    KeptExplicitly,
    DroppedSecret,
    DroppedNotAllowed,
}

impl EnvRules {
    /// The verdict for `name` under this platform's rules.
    pub fn verdict(&self, name: &str) -> EnvVerdict {
        self.verdict_with(name, NameRules::NATIVE)
    }

    /// The verdict for `name` under `rules`.
    pub fn verdict_with(&self, name: &str, rules: NameRules) -> EnvVerdict {
        if self.keep.iter().any(|k| rules.same(k, name)) {
            return EnvVerdict::KeptExplicitly;
        }
        let matches = |pattern: &str| rules.glob_match(pattern, name);
        if !(rules.default_keep().any(matches) || self.keep.iter().any(|k| matches(k))) {
            EnvVerdict::DroppedNotAllowed
        } else if looks_secret(name) {
            EnvVerdict::DroppedSecret
        } else {
            EnvVerdict::Kept
        }
    }

    /// The environment for the command under this platform's rules: kept host variables, then
    /// `set`, then `overrides` (values ringfence fixes for the sandbox, such as TMPDIR and PWD).
    pub fn apply<I, V>(&self, host: I, overrides: &[(&str, String)]) -> Vec<(String, V)>
    where
        I: IntoIterator<Item = (String, V)>,
        V: From<String>,
    {
        self.apply_with(host, overrides, NameRules::NATIVE)
    }

    /// [`EnvRules::apply`] under `rules`. A later value replaces an earlier one of the same
    /// name as `rules` compares names (`PATH` replaces `Path` on Windows); the result is sorted
    /// by name.
    pub fn apply_with<I, V>(&self, host: I, overrides: &[(&str, String)], rules: NameRules) -> Vec<(String, V)>
    where
        I: IntoIterator<Item = (String, V)>,
        V: From<String>,
    {
        let mut out: Vec<(String, V)> = Vec::new();
        let mut put = |name: String, value: V| {
            out.retain(|(n, _)| !rules.same(n, &name));
            out.push((name, value));
        };
        for (k, v) in host {
            if matches!(self.verdict_with(&k, rules), EnvVerdict::Kept | EnvVerdict::KeptExplicitly) {
                put(k, v);
            }
        }
        for (k, v) in &self.set {
            put(k.clone(), V::from(v.clone()));
        }
        for (k, v) in overrides {
            put(k.to_string(), V::from(v.clone()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Whether a name looks like it holds a secret (markers match in any case).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|m| upper.contains(m))
}

/// Shell-style glob with `*` and `?`, as used for variable names (case-sensitive; see
/// [`NameRules::glob_match`]).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    NameRules::Unix.glob_match(pattern, name)
}

/// The glob of [`glob_match`], with `same` deciding whether two bytes match.
fn glob_with(p: &[u8], n: &[u8], same: &dyn Fn(u8, u8) -> bool) -> bool {
    match (p.first(), n.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_with(&p[1..], n, same) || (!n.is_empty() && glob_with(p, &n[1..], same)),
        (Some(b'?'), Some(_)) => glob_with(&p[1..], &n[1..], same),
        (Some(a), Some(b)) if same(*a, *b) => glob_with(&p[1..], &n[1..], same),
        _ => false,
    }
}

/// Checks a name for `--env-keep` or `keep`: letters, digits, `_`, and glob characters.
pub fn validate_keep(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || !pattern.chars().all(|c| c.is_ascii_alphanumeric() || "_*?".contains(c)) {
        return Err(format!("`{pattern}` is not a variable name or glob; use letters, digits, `_`, `*` and `?`"));
    }
    Ok(())
}

/// Checks a variable name for `--env NAME=VALUE` or `set`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid variable name; use letters, digits and `_`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("LC_*", "LC_ALL"));
        assert!(glob_match("A?C", "ABC"));
        assert!(!glob_match("LC_*", "XLC_ALL"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn secrets_need_exact_names() {
        let rules = EnvRules { keep: vec!["AWS_*".into(), "GITHUB_TOKEN".into()], set: BTreeMap::new() };
        assert_eq!(rules.verdict("AWS_REGION"), EnvVerdict::Kept);
        assert_eq!(rules.verdict("AWS_SECRET_ACCESS_KEY"), EnvVerdict::DroppedSecret);
        assert_eq!(rules.verdict("GITHUB_TOKEN"), EnvVerdict::KeptExplicitly);
        assert_eq!(rules.verdict("OPENAI_API_KEY"), EnvVerdict::DroppedNotAllowed);
        assert_eq!(rules.verdict("PATH"), EnvVerdict::Kept);
    }

    #[test]
    fn apply_orders_overrides_last() {
        let mut set = BTreeMap::new();
        set.insert("FOO".into(), "1".into());
        set.insert("TMPDIR".into(), "/nope".into());
        let rules = EnvRules { keep: vec![], set };
        let host: Vec<(String, String)> = vec![("PATH".into(), "/bin".into()), ("SECRET_TOKEN".into(), "x".into())];
        let env = rules.apply(host, &[("TMPDIR", "/tmp".into())]);
        assert_eq!(
            env,
            vec![("FOO".into(), "1".into()), ("PATH".into(), "/bin".into()), ("TMPDIR".into(), "/tmp".into())]
        );
    }

    fn host(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn windows_names_match_in_any_case() {
        let w = NameRules::Windows;
        let rules = EnvRules { keep: vec!["aws_*".into(), "github_token".into()], set: BTreeMap::new() };
        assert_eq!(rules.verdict_with("Path", w), EnvVerdict::Kept, "PATH is kept as Windows spells it");
        assert_eq!(rules.verdict_with("path", w), EnvVerdict::Kept);
        assert_eq!(rules.verdict_with("AWS_REGION", w), EnvVerdict::Kept, "a keep glob matches in any case");
        assert_eq!(rules.verdict_with("Aws_Secret_Access_Key", w), EnvVerdict::DroppedSecret);
        assert_eq!(rules.verdict_with("GITHUB_TOKEN", w), EnvVerdict::KeptExplicitly, "an exact keep in any case");
        assert_eq!(rules.verdict_with("Github_Token", w), EnvVerdict::KeptExplicitly);
        assert_eq!(rules.verdict_with("OPENAI_API_KEY", w), EnvVerdict::DroppedNotAllowed);
        assert_eq!(rules.verdict_with("my_api_key", w), EnvVerdict::DroppedNotAllowed);
    }

    #[test]
    fn unix_names_stay_case_sensitive() {
        let u = NameRules::Unix;
        let rules = EnvRules { keep: vec!["aws_*".into(), "github_token".into()], set: BTreeMap::new() };
        assert_eq!(rules.verdict_with("PATH", u), EnvVerdict::Kept);
        assert_eq!(rules.verdict_with("Path", u), EnvVerdict::DroppedNotAllowed);
        assert_eq!(rules.verdict_with("AWS_REGION", u), EnvVerdict::DroppedNotAllowed);
        assert_eq!(rules.verdict_with("aws_region", u), EnvVerdict::Kept);
        assert_eq!(rules.verdict_with("GITHUB_TOKEN", u), EnvVerdict::DroppedNotAllowed);
        assert_eq!(rules.verdict_with("github_token", u), EnvVerdict::KeptExplicitly);
        // The secret markers match in any case on both.
        assert_eq!(rules.verdict_with("aws_secret", u), EnvVerdict::DroppedSecret);
    }

    #[test]
    fn windows_programs_keep_what_they_need_on_windows_only() {
        let rules = EnvRules::default();
        for name in ["SystemRoot", "SYSTEMROOT", "windir", "ComSpec", "PATHEXT", "ProgramFiles(x86)", "PSModulePath"] {
            assert_eq!(rules.verdict_with(name, NameRules::Windows), EnvVerdict::Kept, "{name}");
        }
        for name in ["SystemRoot", "ComSpec", "PATHEXT", "windir"] {
            assert_eq!(rules.verdict_with(name, NameRules::Unix), EnvVerdict::DroppedNotAllowed, "{name}");
        }
        for name in WINDOWS_KEEP {
            assert!(!looks_secret(name), "{name} would be dropped as a secret");
        }
        // The caller's profile folders are not passed: the backend sets the sandbox's own.
        for name in ["USERPROFILE", "APPDATA", "LOCALAPPDATA", "HOMEPATH"] {
            assert_eq!(rules.verdict_with(name, NameRules::Windows), EnvVerdict::DroppedNotAllowed, "{name}");
        }
    }

    #[test]
    fn windows_set_and_overrides_replace_any_spelling() {
        let mut set = BTreeMap::new();
        set.insert("path".into(), r"C:\tools".into());
        let rules = EnvRules { keep: vec![], set };
        let env = rules.apply_with(
            host(&[("Path", r"C:\Windows"), ("ComSpec", "cmd.exe"), ("TEMP", "x")]),
            &[("Pwd", "w".into())],
            NameRules::Windows,
        );
        assert_eq!(env, host(&[("ComSpec", "cmd.exe"), ("Pwd", "w"), ("path", r"C:\tools")]));
        // On Unix the same names are different variables.
        let env = rules.apply_with(host(&[("PATH", "/bin"), ("Path", "/x")]), &[], NameRules::Unix);
        assert_eq!(env, host(&[("PATH", "/bin"), ("path", r"C:\tools")]));
    }

    #[test]
    fn native_rules_follow_the_target() {
        assert_eq!(NameRules::NATIVE == NameRules::Windows, cfg!(windows));
        let rules = EnvRules::default();
        assert_eq!(rules.verdict("PATH"), rules.verdict_with("PATH", NameRules::NATIVE));
    }
}
