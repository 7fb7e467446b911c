//! Filesystem rules and how they combine. Each rule carries what backends need to know about
//! it, decided once by whoever makes the rule: when it holds (`Presence`) and what stands in
//! for its path while the path is absent (`Placeholder`).

use crate::origin::Origin;
use crate::paths::is_within;
use crate::profile::{HOME_FILES, HOME_SECRET_FILES};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// When a rule holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    /// Whether its path exists or not: an absent protected or hidden path inside a writable
    /// tree gets a placeholder, so the run can't create it.
    #[default]
    Always,
    /// Only while its path exists: nothing is made for it when absent (a name tools must be
    /// able to create, or that is inert until something else runs it).
    WhilePresent,
}

/// What a backend puts at a rule's path, for the run, while the path is absent inside a
/// writable tree: something empty and read-only that takes the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placeholder {
    /// Nothing: allow rules, and rules that hold only while present.
    None,
    /// An empty directory. Used even for names that are files (.envrc, .gitmodules): git
    /// ignores empty directories, so the sandbox's `git add -A` can't commit one.
    Dir,
    /// An empty file, for names tools read wherever they are ($HOME's rc files, .gitconfig,
    /// .netrc, included git configs), where a directory would break the tools inside.
    File,
}

/// The last component of `path` as either platform names it (policies are built on each
/// platform, and the Windows backend's tests run everywhere).
fn base_name(path: &Path) -> &str {
    path.to_str().and_then(|p| p.rsplit(['/', '\\']).next()).unwrap_or("")
}

impl Placeholder {
    /// The placeholder a rule of `kind` at `path` gets unless its maker says otherwise: a file
    /// for the names of `HOME_FILES` (protected) and `HOME_SECRET_FILES` (hidden), wherever
    /// they are; a directory for other protected and hidden paths; none for allow rules.
    pub fn by_name(kind: RuleKind, path: &Path) -> Placeholder {
        let name = base_name(path);
        let file = match kind {
            RuleKind::Read | RuleKind::Write => return Placeholder::None,
            RuleKind::DenyWrite => HOME_FILES.contains(&name),
            RuleKind::DenyRead => HOME_SECRET_FILES.iter().any(|f| base_name(Path::new(f)) == name),
        };
        if file {
            Placeholder::File
        } else {
            Placeholder::Dir
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FsRule {
    pub kind: RuleKind,
    pub path: PathBuf,
    pub origin: Origin,
    pub presence: Presence,
    pub placeholder: Placeholder,
}

impl FsRule {
    /// A rule that always holds, with the placeholder its kind and name call for
    /// (`Placeholder::by_name`).
    pub fn new(kind: RuleKind, path: PathBuf, origin: impl Into<Origin>) -> Self {
        let placeholder = Placeholder::by_name(kind, &path);
        FsRule { kind, path, origin: origin.into(), presence: Presence::Always, placeholder }
    }

    /// The rule, holding only while its path exists (so with no placeholder).
    pub fn while_present(self) -> Self {
        FsRule { presence: Presence::WhilePresent, placeholder: Placeholder::None, ..self }
    }

    /// The rule, with `placeholder` standing in for its path while absent.
    pub fn with_placeholder(self, placeholder: Placeholder) -> Self {
        FsRule { placeholder, ..self }
    }
}

/// Filesystem rules. For any path, the rule with the longest matching path decides; on equal
/// paths the higher-precedence source decides, and within one source a deny beats an allow.
/// A `DenyWrite` turns a writable region read-only; it never grants read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FsRules {
    pub rules: Vec<FsRule>,
    /// Rule positions by path, kept by `add`: a lookup walks a path's ancestors instead of
    /// every rule (planning asks this for hundreds of paths on every launch).
    #[serde(skip)]
    by_path: HashMap<PathBuf, Vec<usize>>,
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
    /// Adds a rule made by `FsRule::new`.
    pub fn push(&mut self, kind: RuleKind, path: PathBuf, origin: impl Into<Origin>) {
        self.add(FsRule::new(kind, path, origin));
    }

    pub fn add(&mut self, rule: FsRule) {
        self.by_path.entry(rule.path.clone()).or_default().push(self.rules.len());
        self.indexed += 1;
        self.rules.push(rule);
    }

    pub fn of_kind(&self, kind: RuleKind) -> impl Iterator<Item = &FsRule> {
        self.rules.iter().filter(move |r| r.kind == kind)
    }

    /// The writable roots an agent profile opened: the agent's own state, whose credentials
    /// and stores the profile names itself.
    pub fn agent_roots(&self) -> impl Iterator<Item = &Path> {
        self.of_kind(RuleKind::Write).filter(|r| matches!(r.origin, Origin::Agent { .. })).map(|r| r.path.as_path())
    }

    /// Whether `path` is one an agent profile names inside another of its state folders: a
    /// credential file it re-allows over the secret list, which the agent creates itself.
    pub fn is_agent_file(&self, path: &Path) -> bool {
        self.agent_roots().any(|root| root != path && path.starts_with(root))
            && self.agent_roots().any(|root| root == path)
    }

    /// The rules whose path is exactly `path`.
    pub fn at<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = &'a FsRule> + 'a {
        let indexed = self.indexed == self.rules.len();
        let listed = self.by_path.get(path).filter(|_| indexed).into_iter().flatten().map(|&i| &self.rules[i]);
        let scanned = self.rules.iter().filter(move |r| !indexed && r.path == path);
        listed.chain(scanned)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::Builtin;

    fn rules(list: &[(RuleKind, &str, Origin)]) -> FsRules {
        let mut fs = FsRules::default();
        for (k, p, o) in list {
            fs.push(*k, PathBuf::from(p), o.clone());
        }
        fs
    }

    #[test]
    fn most_specific_rule_wins() {
        let b = Origin::from(Builtin::ProtectedPath);
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
            (RuleKind::Read, "/", Builtin::ProtectedPath.into()),
            (RuleKind::DenyRead, "/home/u/.aws", Builtin::WslProfile.into()),
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
    fn placeholders_follow_the_kind_and_name_unless_the_maker_says() {
        let rule = |kind, path: &str| FsRule::new(kind, PathBuf::from(path), Origin::flag("--x"));
        assert_eq!(rule(RuleKind::DenyWrite, "/h/.bashrc").placeholder, Placeholder::File);
        assert_eq!(rule(RuleKind::DenyWrite, "/h/proj/.envrc").placeholder, Placeholder::Dir);
        assert_eq!(rule(RuleKind::DenyRead, "/h/.netrc").placeholder, Placeholder::File);
        // A secret file's name counts wherever it is: `.cargo/credentials` names `credentials`.
        assert_eq!(rule(RuleKind::DenyRead, "/h/tool/credentials").placeholder, Placeholder::File);
        assert_eq!(rule(RuleKind::DenyRead, "/h/.ssh").placeholder, Placeholder::Dir);
        assert_eq!(rule(RuleKind::DenyRead, r"C:\Users\me\.netrc").placeholder, Placeholder::File);
        assert_eq!(rule(RuleKind::Write, "/h/.bashrc").placeholder, Placeholder::None);
        let present = rule(RuleKind::DenyWrite, "/h/proj/.husky").while_present();
        assert_eq!((present.presence, present.placeholder), (Presence::WhilePresent, Placeholder::None));
        let include = rule(RuleKind::DenyWrite, "/h/extra.inc").with_placeholder(Placeholder::File);
        assert_eq!((include.presence, include.placeholder), (Presence::Always, Placeholder::File));
    }

    #[test]
    fn rules_at_a_path_are_found_indexed_or_not() {
        let mut fs =
            rules(&[(RuleKind::Read, "/", Origin::flag("a")), (RuleKind::DenyWrite, "/w/x", Origin::flag("b"))]);
        assert_eq!(fs.at(Path::new("/w/x")).count(), 1);
        assert_eq!(fs.at(Path::new("/w")).count(), 0);
        fs.rules.push(FsRule::new(RuleKind::DenyRead, "/w/x".into(), Origin::flag("c")));
        assert_eq!(fs.at(Path::new("/w/x")).count(), 2);
    }
}
