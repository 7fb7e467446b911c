//! The resolved policy: what one run may read, write, keep and use.

use crate::env::EnvRules;
use crate::units::{ByteSize, HumanDuration};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a rule came from, so `explain` and errors can point at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A built-in profile, or one of its built-in lists.
    Builtin { what: String },
    /// The user's config file, with the line of the entry.
    File { path: PathBuf, line: usize },
    /// The project's config file, with the line of the entry.
    Project { path: PathBuf, line: usize },
    /// A command-line flag or the library builder.
    Flag { flag: String },
}

impl Origin {
    pub fn builtin(what: impl Into<String>) -> Self {
        Origin::Builtin { what: what.into() }
    }
    pub fn flag(flag: impl Into<String>) -> Self {
        Origin::Flag { flag: flag.into() }
    }
    /// Precedence of the source: on equal paths the higher one wins.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Origin::Builtin { .. } => 0,
            Origin::File { .. } => 1,
            Origin::Project { .. } => 2,
            Origin::Flag { .. } => 3,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin { what } => write!(f, "built-in {what}"),
            Origin::File { path, line } | Origin::Project { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Flag { flag } => write!(f, "{flag}"),
        }
    }
}

/// What a filesystem rule does to the paths beneath it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsAccess {
    /// Hidden: reads fail, nothing can be created.
    Deny,
    /// Readable, not writable.
    Read,
    /// Readable and writable.
    Write,
}

/// Which list a rule sits in; the kind decides how it combines with the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    Read,
    Write,
    DenyRead,
    DenyWrite,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FsRule {
    pub kind: RuleKind,
    pub path: PathBuf,
    pub origin: Origin,
}

/// Filesystem rules. For any path, the rule with the longest matching path decides; on equal
/// paths the higher-precedence source decides, and within one source a deny beats an allow.
/// A `DenyWrite` turns a writable region read-only; it never grants read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FsRules {
    pub rules: Vec<FsRule>,
    /// Rule positions by path, kept by `push`: a lookup walks a path's ancestors instead of
    /// every rule (planning asks this for hundreds of paths on every launch).
    #[serde(skip)]
    by_path: std::collections::HashMap<PathBuf, Vec<usize>>,
    #[serde(skip)]
    indexed: usize,
}

/// The decision for one path and the rule that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsDecision<'a> {
    pub access: FsAccess,
    pub read_rule: Option<&'a FsRule>,
    pub write_rule: Option<&'a FsRule>,
}

impl FsRules {
    pub fn push(&mut self, kind: RuleKind, path: PathBuf, origin: Origin) {
        self.by_path.entry(path.clone()).or_default().push(self.rules.len());
        self.indexed += 1;
        self.rules.push(FsRule { kind, path, origin });
    }

    pub fn of_kind(&self, kind: RuleKind) -> impl Iterator<Item = &FsRule> {
        self.rules.iter().filter(move |r| r.kind == kind)
    }

    /// The effective access to `path` (absolute, normalized).
    pub fn access(&self, path: &Path) -> FsDecision<'_> {
        let read_rule = self.deciding(path, &[RuleKind::Read, RuleKind::Write, RuleKind::DenyRead]);
        let readable = matches!(read_rule, Some(r) if r.kind != RuleKind::DenyRead);
        let write_rule = self.deciding(path, &[RuleKind::Write, RuleKind::DenyWrite, RuleKind::DenyRead]);
        let writable = matches!(write_rule, Some(r) if r.kind == RuleKind::Write);
        let access = match (readable, writable) {
            (true, true) => FsAccess::Write,
            (true, false) => FsAccess::Read,
            _ => FsAccess::Deny,
        };
        FsDecision { access, read_rule, write_rule: if readable { write_rule } else { None } }
    }

    /// The most specific rule of the given kinds that covers `path` (absolute, normalized).
    fn deciding(&self, path: &Path, kinds: &[RuleKind]) -> Option<&FsRule> {
        let is_deny = |r: &FsRule| matches!(r.kind, RuleKind::DenyRead | RuleKind::DenyWrite);
        if self.indexed != self.rules.len() {
            // Rules pushed straight into `rules`: compare them all.
            return self
                .rules
                .iter()
                .filter(|r| kinds.contains(&r.kind) && is_within(path, &r.path))
                .max_by_key(|r| (r.path.as_os_str().len(), r.origin.rank(), is_deny(r)));
        }
        path.ancestors().find_map(|ancestor| {
            self.by_path
                .get(ancestor)?
                .iter()
                .map(|&i| &self.rules[i])
                .filter(|r| kinds.contains(&r.kind))
                .max_by_key(|r| (r.origin.rank(), is_deny(r)))
        })
    }
}

/// Network access for the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// No network: the sandbox has its own loopback and nothing else.
    #[default]
    None,
    /// Only the allowed hosts, through ringfence's gateway (HTTP and SOCKS5 proxies); every
    /// attempt is checked and recorded.
    Allow,
    /// The host's network, unfiltered. A danger flag: nothing checks what is sent.
    Host,
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::None => "none",
            NetworkMode::Allow => "allow",
            NetworkMode::Host => "host",
        })
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "allow" => Ok(NetworkMode::Allow),
            "host" => Ok(NetworkMode::Host),
            _ => Err(format!("unknown network mode `{s}`; use `none`, `allow` or `host`")),
        }
    }
}

/// Resource limits. `None` means no limit of that kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limits {
    pub timeout: Option<HumanDuration>,
    pub memory: Option<ByteSize>,
    /// Whether `memory` (or its absence) was set by a config file or flag rather than left at
    /// the default, half of physical memory: only the default may go without a cgroup to carry
    /// it, and the cgroup v1 share for socket buffers is carved out of either.
    pub memory_explicit: bool,
    pub pids: Option<u64>,
    /// Whether `pids` was set by a config file or flag rather than left at the default; an
    /// explicit limit is enforced exactly, the default may use a cheaper, approximate cap.
    pub pids_explicit: bool,
    pub cpus: Option<f64>,
    pub tmp_size: ByteSize,
}

/// The built-in profiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileName {
    /// Read the whole filesystem except secrets; write the workspace and a private /tmp.
    #[default]
    Workspace,
    /// Like `workspace`, but the workspace is read-only too.
    ReadOnly,
    /// Hide all of $HOME except the workspace and toolchain directories.
    Strict,
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileName::Workspace => "workspace",
            ProfileName::ReadOnly => "read-only",
            ProfileName::Strict => "strict",
        })
    }
}

impl std::str::FromStr for ProfileName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "workspace" => Ok(ProfileName::Workspace),
            "read-only" => Ok(ProfileName::ReadOnly),
            "strict" => Ok(ProfileName::Strict),
            _ => Err(format!("unknown profile `{s}`; use `workspace`, `read-only` or `strict`")),
        }
    }
}

/// The complete, validated policy for one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub profile: ProfileName,
    /// The command's working directory; writable under the `workspace` and `strict` profiles.
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub fs: FsRules,
    pub env: EnvRules,
    pub limits: Limits,
    pub network: NetworkMode,
    /// Host rules, presets, private ranges and resolver of the `allow` mode.
    pub net: crate::network::NetworkRules,
    pub allow_ptrace: bool,
    /// Run even where a requested layer can't be enforced (warns and records it).
    pub allow_degraded: bool,
    /// A writable root may hold $HOME (checked again by backends once links are resolved).
    pub allow_writable_home: bool,
    /// Writable roots may lie in $HOME's configuration, program and cache areas
    /// (`profile::home_tool_area`; checked again by backends once links are resolved).
    pub allow_writable_home_config: bool,
    /// Tools' caches shown as overlays: the host's cache read-only below, the run's changes in
    /// a layer the host's tools never read.
    pub caches: Vec<crate::caches::CacheRule>,
    /// Config files that were applied, in order.
    pub sources: Vec<PathBuf>,
}

impl Policy {
    /// A stable digest of the policy, for the run.start event.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).unwrap_or_default();
        let hash = Sha256::digest(json);
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Whether normalized `path` is `base` or below it.
pub fn is_within(path: &Path, base: &Path) -> bool {
    let (p, b) = (path.as_os_str().as_encoded_bytes(), base.as_os_str().as_encoded_bytes());
    let separator = |c: u8| c == b'/' || (cfg!(windows) && c == b'\\');
    p.starts_with(b) && (p.len() == b.len() || b.last().is_some_and(|&c| separator(c)) || separator(p[b.len()]))
}

/// Lexically normalizes an absolute path: removes `.`, resolves `..`, drops trailing slashes.
/// A Windows drive or UNC prefix is kept; `..` never climbs above the root.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Prefix(prefix) => out.push(prefix.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            Component::Normal(p) => {
                if !out.has_root() {
                    out.push(Component::RootDir.as_os_str());
                }
                out.push(p);
            }
            Component::CurDir => {}
        }
    }
    if !out.has_root() {
        out.push(Component::RootDir.as_os_str());
    }
    out
}

/// Expands `~` and makes `raw` absolute against `base`.
pub fn expand_path(raw: &str, base: &Path, home: &Path) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("empty path".into());
    }
    let joined = if raw == "~" {
        home.to_path_buf()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.join(rest)
    } else if raw.starts_with('~') {
        return Err(format!("`{raw}`: only `~` and `~/…` are supported, not `~user`"));
    } else {
        base.join(raw)
    };
    Ok(normalize(&joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(RuleKind, &str, Origin)]) -> FsRules {
        let mut fs = FsRules::default();
        for (k, p, o) in list {
            fs.push(*k, PathBuf::from(p), o.clone());
        }
        fs
    }

    #[test]
    fn most_specific_rule_wins() {
        let b = Origin::builtin("test");
        let fs = rules(&[
            (RuleKind::Read, "/", b.clone()),
            (RuleKind::DenyRead, "/home/u", b.clone()),
            (RuleKind::Read, "/home/u/.cargo", b.clone()),
            (RuleKind::DenyRead, "/home/u/.cargo/credentials", b.clone()),
            (RuleKind::Write, "/home/u/proj", b.clone()),
            (RuleKind::DenyWrite, "/home/u/proj/.git/hooks", b.clone()),
        ]);
        let acc = |p: &str| fs.access(Path::new(p)).access;
        assert_eq!(acc("/usr/bin"), FsAccess::Read);
        assert_eq!(acc("/home/u/.ssh/id_rsa"), FsAccess::Deny);
        assert_eq!(acc("/home/u/.cargo/bin/cargo"), FsAccess::Read);
        assert_eq!(acc("/home/u/.cargo/credentials"), FsAccess::Deny);
        assert_eq!(acc("/home/u/proj/src/main.rs"), FsAccess::Write);
        assert_eq!(acc("/home/u/proj/.git/hooks/pre-commit"), FsAccess::Read);
        assert_eq!(acc("/home/u/proj/.git/objects"), FsAccess::Write);
        assert_eq!(acc("/home/u"), FsAccess::Deny);
    }

    #[test]
    fn equal_paths_follow_source_precedence() {
        let fs = rules(&[
            (RuleKind::Read, "/", Origin::builtin("p")),
            (RuleKind::DenyRead, "/home/u/.aws", Origin::builtin("secrets")),
            (RuleKind::Read, "/home/u/.aws", Origin::flag("--read")),
        ]);
        assert_eq!(fs.access(Path::new("/home/u/.aws/config")).access, FsAccess::Read);
        let fs = rules(&[
            (RuleKind::Write, "/w", Origin::flag("--write")),
            (RuleKind::DenyWrite, "/w", Origin::flag("--deny-write")),
        ]);
        assert_eq!(fs.access(Path::new("/w/x")).access, FsAccess::Read);
    }

    #[test]
    fn within_is_component_wise() {
        assert!(is_within(Path::new("/a/b"), Path::new("/a")));
        assert!(is_within(Path::new("/a"), Path::new("/a")));
        assert!(is_within(Path::new("/a"), Path::new("/")));
        assert!(!is_within(Path::new("/ab"), Path::new("/a")));
        assert!(!is_within(Path::new("/a"), Path::new("/a/b")));
    }

    #[test]
    fn paths_expand() {
        let home = Path::new("/home/u");
        let base = Path::new("/work/p");
        assert_eq!(expand_path("~/.ssh", base, home).unwrap(), PathBuf::from("/home/u/.ssh"));
        assert_eq!(expand_path("../x/./y/", base, home).unwrap(), PathBuf::from("/work/x/y"));
        assert_eq!(expand_path("/abs", base, home).unwrap(), PathBuf::from("/abs"));
        assert!(expand_path("~bob/x", base, home).is_err());
    }
}
