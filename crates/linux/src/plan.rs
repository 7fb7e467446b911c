//! Turns the policy's filesystem rules into the mount operations that build the sandbox's view.
//! Runs in the supervisor before the clone, so the child only executes a finished list.
//!
//! Two steps: `resolve` reads everything the plan depends on from the host (links, what exists
//! where, sockets, git's paths, the secret scan, mounts, placeholders already in place), and
//! `plan` turns the policy and those facts into the plan without touching the host.

use crate::cache_plan::{self, CacheMount};
use crate::resolve::{Kind, Resolved};
use ringfence_policy::{Builtin, FsAccess, FsRule, FsRules, NetworkMode, Origin, Policy, RuleKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use crate::canon::canonicalize_lenient;
pub use crate::mount_plan::{MountOp, MountPlan, Placeholder, PlaceholderKind, PlanError};
pub use crate::resolve::host_sockets;

/// Filesystems the sandbox gets fresh instead of the host's.
pub const FRESH_DIRS: &[&str] = &["/tmp", "/dev", "/proc", "/run", "/var/run"];

/// Folders under /run (otherwise an empty tmpfs) the sandbox still needs: NixOS keeps its
/// system there, and with the host's network, the resolver's files.
pub fn kept_runtime_dirs(network: NetworkMode) -> &'static [&'static str] {
    match network {
        NetworkMode::Host => &["/run/systemd/resolve", "/run/current-system", "/run/wrappers"],
        NetworkMode::None | NetworkMode::Allow => &["/run/current-system", "/run/wrappers"],
    }
}

/// Builds the plan: reads the host (`resolve::resolve`), then plans. `extra_masks` are the
/// sockets of host services (`host_sockets`), `keep_run` the folders under /run to keep.
pub fn build(policy: &Policy, extra_masks: &[PathBuf], keep_run: &[&str]) -> Result<MountPlan, PlanError> {
    plan(policy, crate::resolve::resolve(policy, extra_masks, keep_run)?)
}

/// The plan for `policy` on the host `host` describes. Reads nothing from the host.
pub fn plan(policy: &Policy, mut host: Resolved) -> Result<MountPlan, PlanError> {
    let mut rules = std::mem::take(&mut host.rules);
    check_fresh_kernel_dirs(&rules)?;
    crate::roots::check_resolved(&rules, &host.home, policy, &host.mounts)?;
    for rule in std::mem::take(&mut host.secrets) {
        rules.add(rule);
    }
    let caches = cache_plan::overlays(policy, &rules, &host)?;
    if let Some(folder) = cache_plan::protected_root(&host.cache_layers, &rules) {
        rules.add(FsRule::new(RuleKind::DenyWrite, folder, Builtin::ProtectedWhilePresent).while_present());
    }
    let mut planner = Planner::new(rules, &host, caches);
    planner.fresh_filesystems(policy.limits.tmp_size.0);
    for path in planner.paths() {
        planner.place(&path)?;
    }
    Ok(planner.finish())
}

fn fresh_root(path: &Path) -> Option<&'static str> {
    FRESH_DIRS.iter().copied().find(|d| path.starts_with(d))
}

/// Directories between a writable root and a protected or hidden path inside it. Each is bound
/// onto itself, so it becomes a mount point the sandbox can't rename or remove: otherwise
/// `mv .git .git-old && mkdir -p .git/hooks` would sidestep the protection of `.git/hooks`.
fn pins(rules: &FsRules) -> BTreeSet<PathBuf> {
    let mut pins = BTreeSet::new();
    // A writable root inside another (the workspace under a writable $HOME) must not be
    // renamed away and replaced either.
    for rule in rules.of_kind(RuleKind::Write) {
        if writable_root(rules, &rule.path).is_some() {
            pins.insert(rule.path.clone());
        }
    }
    for rule in rules.rules.iter().filter(|r| matches!(r.kind, RuleKind::DenyWrite | RuleKind::DenyRead)) {
        let Some(root) = writable_root(rules, &rule.path) else { continue };
        pins.extend(rule.path.ancestors().skip(1).take_while(|a| *a != root).map(Path::to_path_buf));
    }
    pins
}

/// The writable root whose tree holds `path`'s folder, if that folder is writable.
fn writable_root<'a>(rules: &'a FsRules, path: &Path) -> Option<&'a Path> {
    let decision = rules.access(path.parent()?);
    let rule = decision.write_rule.filter(|w| w.kind == RuleKind::Write && decision.access == FsAccess::Write)?;
    Some(&rule.path)
}

/// Missing folders on the way to missing protected or hidden paths inside writable roots
/// (~/.config when ~/.config/autostart is protected and $HOME is writable). They are created for
/// the run and pinned, so the protected path can get its placeholder; rules with no placeholder
/// need none. Never inside `.git`: an absent `.git` must stay creatable by `git init`; the
/// post-run git check covers new repositories.
fn missing_parents(rules: &FsRules, host: &Resolved) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let candidates = rules.rules.iter().filter(|r| matches!(r.kind, RuleKind::DenyWrite | RuleKind::DenyRead));
    for rule in candidates.filter(|r| r.placeholder != ringfence_policy::Placeholder::None) {
        let Some(root) = writable_root(rules, &rule.path) else { continue };
        let chain: Vec<PathBuf> = rule
            .path
            .ancestors()
            .skip(1)
            .take_while(|a| *a != root && host.kind(a).is_none())
            .map(Path::to_path_buf)
            .collect();
        let top_exists = chain.last().and_then(|top| top.parent()).is_some_and(|p| host.kind(p) == Some(Kind::Dir));
        if top_exists && !chain.iter().any(|d| d.file_name() == Some(std::ffi::OsStr::new(".git"))) {
            out.extend(chain);
        }
    }
    out
}

/// Rules of the user's under /dev or /proc: those are the sandbox's own and can't be re-bound.
fn check_fresh_kernel_dirs(rules: &FsRules) -> Result<(), PlanError> {
    for rule in &rules.rules {
        if matches!(fresh_root(&rule.path), Some("/dev" | "/proc")) && !matches!(rule.origin, Origin::Builtin(_)) {
            return Err(PlanError(
                format!("{}: {} is the sandbox's own and can't be changed by a rule", rule.origin, rule.path.display()),
                "remove the rule; the sandbox gets a minimal /dev and its own /proc".into(),
            ));
        }
    }
    Ok(())
}

/// The mask over a hidden path: an empty read-only tmpfs over a folder, an empty file over a file.
fn mask(path: &Path, kind: Kind) -> MountOp {
    match kind {
        Kind::Dir => MountOp::Tmpfs { path: path.to_path_buf(), writable: false, size: 4096 },
        Kind::File => MountOp::MaskFile { path: path.to_path_buf() },
    }
}

fn missing_write_root(path: &Path) -> PlanError {
    PlanError(
        format!("the writable root {} does not exist", path.display()),
        "create it first, or remove the --write rule".into(),
    )
}

/// The plan while it is made: the ops so far, and what the view shows where.
struct Planner<'a> {
    host: &'a Resolved,
    rules: FsRules,
    pins: BTreeSet<PathBuf>,
    /// Folders the run creates, on the way to placeholders (`missing_parents`).
    missing_dirs: BTreeSet<PathBuf>,
    caches: Vec<CacheMount>,
    /// What each op'd path shows: `true` when the view there is fresh (tmpfs), else the
    /// access the host mirror has.
    shown: BTreeMap<PathBuf, (bool, FsAccess)>,
    /// Where cache overlays show.
    overlays: BTreeSet<PathBuf>,
    ops: Vec<MountOp>,
    placeholders: Vec<Placeholder>,
}

impl<'a> Planner<'a> {
    fn new(rules: FsRules, host: &'a Resolved, caches: Vec<CacheMount>) -> Self {
        let (pins, missing_dirs) = (pins(&rules), missing_parents(&rules, host));
        let shown = BTreeMap::from([(PathBuf::from("/"), (false, FsAccess::Read))]);
        let (overlays, ops, placeholders) = Default::default();
        Planner { host, rules, pins, missing_dirs, caches, shown, overlays, ops, placeholders }
    }

    /// A private /tmp, and an empty /run (and /var/run) that hides the host's sockets and
    /// runtime state.
    fn fresh_filesystems(&mut self, tmp_size: u64) {
        self.ops.push(MountOp::Tmpfs { path: "/tmp".into(), writable: true, size: tmp_size });
        self.shown.insert("/tmp".into(), (true, FsAccess::Write));
        for run in &self.host.run_dirs {
            self.ops.push(MountOp::Tmpfs { path: run.clone(), writable: false, size: 1 << 20 });
            self.shown.insert(run.clone(), (true, FsAccess::Read));
        }
    }

    /// Every path that may need an op, parents first: those of the rules, the pins and the
    /// caches.
    fn paths(&self) -> Vec<PathBuf> {
        let rules = self.rules.rules.iter().map(|r| r.path.clone());
        let mut paths: Vec<PathBuf> = rules.chain(self.pins.iter().cloned()).collect();
        paths.extend(self.caches.iter().map(|c| c.lower.clone()));
        paths.sort_by_cached_key(|p| (p.components().count(), p.clone()));
        paths.dedup();
        paths
    }

    /// What the view needs at `path`, given what it shows there so far.
    fn place(&mut self, path: &Path) -> Result<(), PlanError> {
        if matches!(fresh_root(path), Some("/dev" | "/proc")) || path == Path::new("/") {
            return Ok(());
        }
        let want = self.rules.access(path).access;
        let (in_overlay, fresh, above) = self.shown_above(path);
        let kind = self.kind(path);
        let op = if in_overlay {
            let protected = self.rules.at(path).any(|r| r.kind == RuleKind::DenyWrite);
            cache_plan::op_inside(path, want, kind, protected)
        } else if fresh || (above == FsAccess::Deny && want != FsAccess::Deny) {
            self.reveal(path, want, kind)?
        } else {
            self.on_host_tree(path, above, want, kind)?
        };
        if let Some(op) = op {
            let now_fresh = matches!(op, MountOp::Tmpfs { .. });
            self.shown.insert(path.to_path_buf(), (now_fresh, if now_fresh { FsAccess::Read } else { want }));
            self.ops.push(op);
        }
        // A cache's overlay goes over whatever the rules put at its path.
        if let Some(cache) = self.caches.iter().find(|c| c.lower == path) {
            self.ops.push(cache.op());
            self.shown.insert(path.to_path_buf(), (false, FsAccess::Write));
            self.overlays.insert(path.to_path_buf());
        }
        Ok(())
    }

    /// What the view shows at the nearest op'd path above `path`: whether that is a cache
    /// overlay, whether it is fresh, and the access there.
    fn shown_above(&self, path: &Path) -> (bool, bool, FsAccess) {
        use std::ops::Bound::{Included, Unbounded};
        let upto = self.shown.range::<Path, _>((Unbounded, Included(path)));
        let nearest = upto.rev().find(|(p, _)| path.starts_with(p));
        // "/" is always shown, as the host's tree, read-only.
        nearest.map_or((false, false, FsAccess::Read), |(p, &(fresh, access))| {
            (self.overlays.contains(p) && p != path, fresh, access)
        })
    }

    /// What stands at `path`, counting the folders the run will create.
    fn kind(&self, path: &Path) -> Option<Kind> {
        if self.missing_dirs.contains(path) {
            Some(Kind::Dir)
        } else {
            self.host.kind(path)
        }
    }

    fn parent_is_dir(&self, path: &Path) -> bool {
        path.parent().is_some_and(|p| self.kind(p) == Some(Kind::Dir))
    }

    /// A path inside a fresh filesystem or a hidden tree, made visible again by its rule: the
    /// host's entry bound there, if it exists.
    fn reveal(&self, path: &Path, want: FsAccess, kind: Option<Kind>) -> Result<Option<MountOp>, PlanError> {
        match (want, kind) {
            (FsAccess::Deny, _) => Ok(None),
            (FsAccess::Write, None) if self.required_root(path) => Err(missing_write_root(path)),
            (_, None) => Ok(None),
            (access, Some(_)) => {
                Ok(Some(MountOp::Bind { path: path.to_path_buf(), writable: access == FsAccess::Write }))
            }
        }
    }

    /// A path in the part of the view that mirrors the host's tree, with access `above` there.
    fn on_host_tree(
        &mut self,
        path: &Path,
        above: FsAccess,
        want: FsAccess,
        kind: Option<Kind>,
    ) -> Result<Option<MountOp>, PlanError> {
        Ok(match (above, want) {
            (FsAccess::Write, FsAccess::Write) if kind == Some(Kind::Dir) && self.pins.contains(path) => {
                Some(self.pin(path))
            }
            (a, b) if a == b => None,
            (_, FsAccess::Deny) => self.hide(path, above == FsAccess::Write, kind),
            (FsAccess::Read, FsAccess::Write) if kind.is_none() && self.required_root(path) => {
                return Err(missing_write_root(path))
            }
            (FsAccess::Read, FsAccess::Write) if kind.is_none() => None,
            (FsAccess::Read, FsAccess::Write) => Some(MountOp::Bind { path: path.to_path_buf(), writable: true }),
            (FsAccess::Write, FsAccess::Read) => self.protect(path, kind),
            _ => None,
        })
    }

    /// Whether a writable root at `path` must exist: all must but those that hold only while
    /// present (an agent's state folder, created before its first run).
    fn required_root(&self, path: &Path) -> bool {
        self.rules.at(path).any(|r| r.kind == RuleKind::Write && r.presence == ringfence_policy::Presence::Always)
    }

    /// A folder bound onto itself so it can't be renamed away. One the run creates is its
    /// folder placeholder; one a concurrent run created is shared.
    fn pin(&mut self, path: &Path) -> MountOp {
        let folder = Placeholder { path: path.to_path_buf(), kind: PlaceholderKind::Folder };
        if self.missing_dirs.contains(path) {
            self.placeholders.push(folder);
        } else {
            self.adopt(Some(folder));
        }
        MountOp::Bind { path: path.to_path_buf(), writable: true }
    }

    /// A hidden path: masked where it exists. Absent inside a writable tree, the run could
    /// create it, so a read-only placeholder takes the name for the run.
    fn hide(&mut self, path: &Path, in_writable_tree: bool, kind: Option<Kind>) -> Option<MountOp> {
        let placeholder = self.placeholder_at(path, RuleKind::DenyRead);
        match kind {
            Some(kind) => {
                if in_writable_tree {
                    self.adopt(placeholder);
                }
                Some(mask(path, kind))
            }
            None if in_writable_tree && self.parent_is_dir(path) => {
                let placeholder = placeholder?;
                let kind = if placeholder.kind == PlaceholderKind::File { Kind::File } else { Kind::Dir };
                self.placeholders.push(placeholder);
                Some(mask(path, kind))
            }
            None => None,
        }
    }

    /// A protected path in a writable tree: bound read-only over itself. An absent one gets a
    /// placeholder to bind, unless its rules hold only while present or its folder is missing.
    fn protect(&mut self, path: &Path, kind: Option<Kind>) -> Option<MountOp> {
        let placeholder = self.placeholder_at(path, RuleKind::DenyWrite);
        match (kind, placeholder) {
            (Some(_), placeholder) => self.adopt(placeholder),
            (None, Some(placeholder)) if self.parent_is_dir(path) => self.placeholders.push(placeholder),
            (None, _) => return None,
        }
        Some(MountOp::ReadOnly { path: path.to_path_buf() })
    }

    /// The placeholder the rules of `kind` at `path` call for: a file if one asks for a file
    /// (tools read that name as a file), else a directory if one asks for one.
    fn placeholder_at(&self, path: &Path, kind: RuleKind) -> Option<Placeholder> {
        use ringfence_policy::Placeholder as Wanted;
        let wanted: Vec<Wanted> = self.rules.at(path).filter(|r| r.kind == kind).map(|r| r.placeholder).collect();
        let kind = if wanted.contains(&Wanted::File) {
            PlaceholderKind::File
        } else if wanted.contains(&Wanted::Dir) {
            PlaceholderKind::Dir
        } else {
            return None;
        };
        Some(Placeholder { path: path.to_path_buf(), kind })
    }

    /// A concurrent run's placeholder found in place is shared: this run holds it too, so the
    /// other run's end can't remove it from under this run's mount.
    fn adopt(&mut self, candidate: Option<Placeholder>) {
        if let Some(candidate) = candidate.filter(|c| self.host.ours(&c.path) == Some(c.kind)) {
            self.placeholders.push(candidate);
        }
    }

    fn finish(self) -> MountPlan {
        MountPlan {
            ops: self.ops,
            placeholders: self.placeholders,
            rules: self.rules,
            review_roots: self.caches.iter().map(|c| c.layer.join("upper")).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
