//! Environment scrubbing: an allowlist, with secret-looking names dropped unless kept by name.

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

/// Name fragments that mark a variable as a likely secret.
pub const SECRET_MARKERS: &[&str] =
    &["TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION"];

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
    pub fn verdict(&self, name: &str) -> EnvVerdict {
        if self.keep.iter().any(|k| k == name) {
            return EnvVerdict::KeptExplicitly;
        }
        let allowed = DEFAULT_KEEP.iter().copied().chain(self.keep.iter().map(String::as_str));
        let allowed = allowed.clone().any(|pattern| glob_match(pattern, name));
        if !allowed {
            EnvVerdict::DroppedNotAllowed
        } else if looks_secret(name) {
            EnvVerdict::DroppedSecret
        } else {
            EnvVerdict::Kept
        }
    }

    /// The environment for the command: kept host variables, then `set`, then `overrides`
    /// (values ringfence fixes for the sandbox, such as TMPDIR and PWD).
    pub fn apply<I, V>(&self, host: I, overrides: &[(&str, String)]) -> Vec<(String, V)>
    where
        I: IntoIterator<Item = (String, V)>,
        V: From<String>,
    {
        let mut out: BTreeMap<String, V> = host
            .into_iter()
            .filter(|(k, _)| matches!(self.verdict(k), EnvVerdict::Kept | EnvVerdict::KeptExplicitly))
            .collect();
        out.extend(self.set.iter().map(|(k, v)| (k.clone(), V::from(v.clone()))));
        out.extend(overrides.iter().map(|(k, v)| (k.to_string(), V::from(v.clone()))));
        out.into_iter().collect()
    }
}

pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|m| upper.contains(m))
}

/// Shell-style glob with `*` and `?`, as used for variable names.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
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
}
