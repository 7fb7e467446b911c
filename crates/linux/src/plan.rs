//! Turns the policy's filesystem rules into the mount operations that build the sandbox's view.
//! Runs in the supervisor before the clone, so the child only executes a finished list.

use ringfence_policy::{FsAccess, FsRules, Origin, Policy, RuleKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Origin of the rules over the folders `core.hooksPath` names.
pub const GIT_HOOKS_PATH: &str = "git core.hooksPath";
/// Origin of the rules over the files git configs include; their placeholders are files.
pub const GIT_INCLUDE: &str = "git include";

/// Origin of the masks over host services' sockets. They need no Landlock carve-out: below ABI
/// 9 Landlock can't stop connect(2) anyway, and from ABI 9 read-only regions lack the right.
pub const HOST_SOCKET: &str = "host service socket";

/// Filesystems the sandbox gets fresh instead of the host's.
pub const FRESH_DIRS: &[&str] = &["/tmp", "/dev", "/proc", "/run", "/var/run"];

/// One step of the mount view, applied in order. Paths are host paths; the child prefixes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOp {
    /// An empty tmpfs: a private /tmp (writable) or a mask over a hidden directory.
    Tmpfs { path: PathBuf, writable: bool, size: u64 },
    /// The host's `path` bound at the same place, read-only or writable.
    Bind { path: PathBuf, writable: bool },
    /// An empty read-only file over a hidden file.
    MaskFile { path: PathBuf },
    /// Makes what is already visible at `path` read-only (protected paths in writable roots).
    ReadOnly { path: PathBuf },
    /// A cache shown as an overlay at `path`: the host's folder there read-only below, the
    /// host folders `upper` (the run's changes) and `work` (overlayfs' own) of ringfence's.
    Overlay { path: PathBuf, upper: PathBuf, work: PathBuf },
}

impl MountOp {
    pub fn path(&self) -> &Path {
        match self {
            MountOp::Tmpfs { path, .. }
            | MountOp::Bind { path, .. }
            | MountOp::MaskFile { path }
            | MountOp::ReadOnly { path }
            | MountOp::Overlay { path, .. } => path,
        }
    }
}

/// Something created on the host for a missing protected or hidden path, so it can be mounted
/// over for the run; removed after the run if still empty and no concurrent run uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    pub path: PathBuf,
    pub kind: PlaceholderKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceholderKind {
    /// An empty read-only directory. Used even for names that are files (.envrc, .gitmodules):
    /// git ignores empty directories, so the sandbox's `git add -A` can't commit one.
    Dir,
    /// An empty read-only file, for names tools read wherever they are ($HOME's rc files,
    /// .gitconfig, .netrc), where a directory would break the tools inside.
    File,
    /// A missing folder on the way to a placeholder; writable, like the tree it is in.
    Folder,
}

fn basename(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

impl Placeholder {
    /// Files for names tools read wherever they are, and for included git configs (git reads
    /// them, and fails on a directory).
    fn protected(path: &Path, rules: &FsRules) -> Self {
        let include = Origin::builtin(GIT_INCLUDE);
        let file = ringfence_policy::profile::HOME_FILES.contains(&basename(path))
            || rules.of_kind(RuleKind::DenyWrite).any(|r| r.path == path && r.origin == include);
        Placeholder { path: path.to_path_buf(), kind: if file { PlaceholderKind::File } else { PlaceholderKind::Dir } }
    }

    fn hidden(path: &Path) -> Self {
        let file =
            ringfence_policy::profile::HOME_SECRET_FILES.iter().any(|f| basename(Path::new(f)) == basename(path));
        Placeholder { path: path.to_path_buf(), kind: if file { PlaceholderKind::File } else { PlaceholderKind::Dir } }
    }
}

#[derive(Clone, Debug, Default)]
pub struct MountPlan {
    pub ops: Vec<MountOp>,
    pub placeholders: Vec<Placeholder>,
    /// Canonical rules, for Landlock and for `explain`.
    pub rules: FsRules,
    /// The workspace, canonical.
    pub workspace: PathBuf,
    /// Host folders the run can write besides the write rules (the upper layers of cache
    /// overlays): the post-run review walks them like writable roots.
    pub review_roots: Vec<PathBuf>,
}

/// A planning error: the policy names something the view can't be built from.
#[derive(Debug)]
pub struct PlanError(pub String, pub String);

/// Resolves symlinks with one `lstat` per new path component, remembering every directory it
/// has seen: the rules share most of their ancestors ($HOME, ~/.config), and planning runs on
/// every launch. A missing component ends resolution; the rest is appended as written.
#[derive(Default)]
pub struct Canonicalizer {
    seen: std::collections::HashMap<PathBuf, (PathBuf, bool)>,
    /// Whether each existing canonical path seen is a directory.
    dirs: std::collections::HashMap<PathBuf, bool>,
}

impl Canonicalizer {
    pub fn resolve(&mut self, path: &Path) -> PathBuf {
        self.resolve_inner(path, 0).0
    }

    /// For a canonical path already resolved: None if absent, else whether it is a directory.
    pub fn kind(&mut self, canonical: &Path) -> Option<bool> {
        let (_, exists) = self.resolve_inner(canonical, 0);
        exists.then(|| self.dirs.get(canonical).copied().unwrap_or(canonical == Path::new("/")))
    }

    /// The canonical path and whether it exists.
    fn resolve_inner(&mut self, path: &Path, depth: u32) -> (PathBuf, bool) {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return (PathBuf::from("/"), true);
        };
        if let Some(hit) = self.seen.get(path) {
            return hit.clone();
        }
        let (parent, parent_exists) = self.resolve_inner(parent, depth);
        let candidate = parent.join(name);
        let result = if !parent_exists {
            (candidate, false)
        } else {
            match std::fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() && depth < 40 => match std::fs::read_link(&candidate) {
                    Ok(target) => self.resolve_inner(&ringfence_policy::normalize(&parent.join(target)), depth + 1),
                    Err(_) => (candidate, true),
                },
                Ok(m) => {
                    self.dirs.insert(candidate.clone(), m.is_dir());
                    (candidate, true)
                }
                Err(_) => (candidate, false),
            }
        };
        self.seen.insert(path.to_path_buf(), result.clone());
        result
    }
}

/// Resolves symlinks in the longest existing prefix of `path` and re-appends the missing tail.
pub fn canonicalize_lenient(path: &Path) -> PathBuf {
    Canonicalizer::default().resolve(path)
}

/// Policy access as the sandbox sees it: fresh filesystems are writable and never host-backed.
pub fn view_access(rules: &FsRules, path: &Path) -> FsAccess {
    rules.access(path).access
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
/// (~/.config when ~/.config/autostart is protected and $HOME is writable). They are created for the run and
/// pinned, so the protected path can get its placeholder. Never inside `.git`: an absent `.git`
/// must stay creatable by `git init`; the post-run git check covers new repositories.
fn missing_parents(rules: &FsRules, canon: &mut Canonicalizer) -> BTreeSet<PathBuf> {
    let while_present = Origin::builtin(ringfence_policy::profile::WHILE_PRESENT);
    let mut out = BTreeSet::new();
    let candidates = rules.rules.iter().filter(|r| matches!(r.kind, RuleKind::DenyWrite | RuleKind::DenyRead));
    for rule in candidates.filter(|r| r.origin != while_present && r.origin != Origin::builtin(HOST_SOCKET)) {
        let Some(root) = writable_root(rules, &rule.path) else { continue };
        let chain: Vec<PathBuf> = rule
            .path
            .ancestors()
            .skip(1)
            .take_while(|a| *a != root && canon.kind(a).is_none())
            .map(Path::to_path_buf)
            .collect();
        let top_exists = chain.last().and_then(|top| top.parent()).is_some_and(|p| canon.kind(p) == Some(true));
        if top_exists && !chain.iter().any(|d| d.file_name() == Some(std::ffi::OsStr::new(".git"))) {
            out.extend(chain);
        }
    }
    out
}

/// Rules of the user's under /dev or /proc: those are the sandbox's own and can't be re-bound.
fn check_fresh_kernel_dirs(rules: &FsRules) -> Result<(), PlanError> {
    for rule in &rules.rules {
        if matches!(fresh_root(&rule.path), Some("/dev" | "/proc")) && !matches!(rule.origin, Origin::Builtin { .. }) {
            return Err(PlanError(
                format!("{}: {} is the sandbox's own and can't be changed by a rule", rule.origin, rule.path.display()),
                "remove the rule; the sandbox gets a minimal /dev and its own /proc".into(),
            ));
        }
    }
    Ok(())
}

/// Unix sockets of host services the sandbox could otherwise connect to: those named in the
/// environment (ssh-agent, D-Bus, docker) and every path-bound socket the host's network
/// namespace has open (/proc/net/unix). A read-only mount doesn't stop connect(2), so each is
/// masked. Sockets bound after the launch are not covered; Landlock ABI 9 covers them.
pub fn host_sockets() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter(|path| path.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
    if let Some(p) = var("SSH_AUTH_SOCK") {
        out.push(p);
    }
    for key in ["DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "DOCKER_HOST"] {
        if let Ok(v) = std::env::var(key) {
            for part in v.split([';', ',']) {
                let path = part
                    .strip_prefix("unix:path=")
                    .or_else(|| part.strip_prefix("unix://"))
                    .map(|p| p.split(',').next().unwrap_or(p));
                if let Some(p) = path.filter(|p| p.starts_with('/')) {
                    out.push(PathBuf::from(p));
                }
            }
        }
    }
    out
}

/// Folders under /run (otherwise an empty tmpfs) the sandbox still needs: NixOS keeps its
/// system there, and with the host's network, the resolver's files.
pub fn kept_runtime_dirs(network: ringfence_policy::NetworkMode) -> &'static [&'static str] {
    match network {
        ringfence_policy::NetworkMode::Host => &["/run/systemd/resolve", "/run/current-system", "/run/wrappers"],
        ringfence_policy::NetworkMode::None | ringfence_policy::NetworkMode::Allow => {
            &["/run/current-system", "/run/wrappers"]
        }
    }
}

/// Builds the plan. `extra_masks` are socket paths found in the environment (ssh-agent, D-Bus).
#[allow(clippy::too_many_lines)] // split in the planner restructuring
pub fn build(policy: &Policy, extra_masks: &[PathBuf], keep_run: &[&str]) -> Result<MountPlan, PlanError> {
    crate::roots::check_links(policy)?;
    let mut canon = Canonicalizer::default();
    let mut rules = FsRules::default();
    for rule in &policy.fs.rules {
        rules.push(rule.kind, canon.resolve(&rule.path), rule.origin.clone());
    }
    for mask in extra_masks {
        rules.push(RuleKind::DenyRead, canon.resolve(mask), Origin::builtin(HOST_SOCKET));
    }
    for dir in keep_run {
        if Path::new(dir).exists() {
            rules.push(RuleKind::Read, PathBuf::from(dir), Origin::builtin("system runtime"));
        }
    }
    let roots: Vec<PathBuf> = rules.of_kind(RuleKind::Write).map(|r| r.path.clone()).collect();
    let git = crate::gitcheck::planned_paths(&roots, &policy.home);
    let git_rules =
        git.hook_dirs.iter().map(|d| (d, GIT_HOOKS_PATH)).chain(git.includes.iter().map(|f| (f, GIT_INCLUDE)));
    for (path, origin) in git_rules {
        let path = canon.resolve(path);
        if roots.iter().any(|r| path.starts_with(r)) {
            rules.push(RuleKind::DenyWrite, path, Origin::builtin(origin));
        }
    }
    check_fresh_kernel_dirs(&rules)?;
    let home = canon.resolve(&policy.home);
    let workspace = canon.resolve(&policy.workspace);
    let mounts = crate::mounts::MountTable::read();
    crate::roots::check_resolved(&rules, &home, policy, &mounts)?;
    crate::secrets::extend(&mut rules, &home, &workspace, &mounts);
    let caches = crate::caches::plan(policy, &rules, &mut canon)?;
    if let Some(folder) = crate::caches::protected_root(&policy.home, &rules, &mut canon) {
        rules.push(RuleKind::DenyWrite, folder, Origin::builtin(ringfence_policy::profile::WHILE_PRESENT));
    }
    let mut plan = MountPlan { rules, workspace, ..Default::default() };
    plan.review_roots = caches.iter().map(|c| c.layer.join("upper")).collect();

    // What each op'd path shows: `true` when the view there is fresh (tmpfs), else the access
    // the host mirror has.
    let mut shown: BTreeMap<PathBuf, (bool, FsAccess)> = BTreeMap::new();
    shown.insert("/".into(), (false, FsAccess::Read));
    plan.ops.push(MountOp::Tmpfs { path: "/tmp".into(), writable: true, size: policy.limits.tmp_size.0 });
    shown.insert("/tmp".into(), (true, FsAccess::Write));
    for run in ["/run", "/var/run"] {
        let p = Path::new(run);
        if p.is_dir() && !p.is_symlink() {
            plan.ops.push(MountOp::Tmpfs { path: p.into(), writable: false, size: 1 << 20 });
            shown.insert(p.into(), (true, FsAccess::Read));
        }
    }

    let pins = pins(&plan.rules);
    let missing_dirs = missing_parents(&plan.rules, &mut canon);
    let mut overlays: BTreeSet<PathBuf> = BTreeSet::new();
    let mut paths: Vec<PathBuf> = plan.rules.rules.iter().map(|r| r.path.clone()).chain(pins.iter().cloned()).collect();
    paths.extend(caches.iter().map(|c| c.lower.clone()));
    paths.sort_by_cached_key(|p| (p.components().count(), p.clone()));
    paths.dedup();
    for path in paths {
        if matches!(fresh_root(&path), Some("/dev" | "/proc")) || path == Path::new("/") {
            continue;
        }
        let want = view_access(&plan.rules, &path);
        let (nearest, &(fresh, above)) = shown
            .range::<PathBuf, _>(..=path.clone())
            .rev()
            .find(|(p, _)| path.starts_with(p))
            .expect("/ is always shown");
        let in_overlay = overlays.contains(nearest) && *nearest != path;
        let will_create = missing_dirs.contains(&path);
        let kind = if will_create { Some(true) } else { canon.kind(&path) };
        let parent_is_dir = path.parent().is_some_and(|p| missing_dirs.contains(p) || canon.kind(p) == Some(true));
        let op = match (fresh, above, want, kind) {
            _ if in_overlay => {
                let protected = plan.rules.of_kind(RuleKind::DenyWrite).any(|r| r.path == path);
                crate::caches::op_inside(&path, want, kind, protected)
            }
            (true, _, FsAccess::Deny, _) => None,
            (true, _, access, None) | (false, FsAccess::Deny, access @ (FsAccess::Read | FsAccess::Write), None) => {
                if access == FsAccess::Write && policy_names_write_root(&plan.rules, &path) {
                    return Err(missing_write_root(&path));
                }
                None
            }
            (true, _, access, Some(_))
            | (false, FsAccess::Deny, access @ (FsAccess::Read | FsAccess::Write), Some(_)) => {
                Some(MountOp::Bind { path: path.clone(), writable: access == FsAccess::Write })
            }
            (false, a, b, Some(true)) if a == b && a == FsAccess::Write && pins.contains(&path) => {
                let folder = Placeholder { path: path.clone(), kind: PlaceholderKind::Folder };
                if will_create {
                    plan.placeholders.push(folder);
                } else {
                    adopt_folder(&mut plan.placeholders, folder);
                }
                Some(MountOp::Bind { path: path.clone(), writable: true })
            }
            (false, a, b, _) if a == b => None,
            (false, above, FsAccess::Deny, Some(is_dir)) => {
                if above == FsAccess::Write {
                    adopt(&mut plan.placeholders, Placeholder::hidden(&path));
                }
                Some(if is_dir {
                    MountOp::Tmpfs { path: path.clone(), writable: false, size: 4096 }
                } else {
                    MountOp::MaskFile { path: path.clone() }
                })
            }
            // Hidden but absent inside a writable tree: the sandbox could create it, so an empty
            // read-only mask takes the name for the run.
            (false, FsAccess::Write, FsAccess::Deny, None) if parent_is_dir => {
                let placeholder = Placeholder::hidden(&path);
                let op = match placeholder.kind {
                    PlaceholderKind::File => MountOp::MaskFile { path: path.clone() },
                    _ => MountOp::Tmpfs { path: path.clone(), writable: false, size: 4096 },
                };
                plan.placeholders.push(placeholder);
                Some(op)
            }
            (false, _, FsAccess::Deny, None) => None,
            (false, FsAccess::Read, FsAccess::Write, None) => return Err(missing_write_root(&path)),
            (false, FsAccess::Read, FsAccess::Write, Some(_)) => {
                Some(MountOp::Bind { path: path.clone(), writable: true })
            }
            (false, FsAccess::Write, FsAccess::Read, Some(_)) => {
                adopt(&mut plan.placeholders, Placeholder::protected(&path, &plan.rules));
                Some(MountOp::ReadOnly { path: path.clone() })
            }
            (false, FsAccess::Write, FsAccess::Read, None) => {
                let while_present_origin = Origin::builtin(ringfence_policy::profile::WHILE_PRESENT);
                let while_present = plan
                    .rules
                    .of_kind(RuleKind::DenyWrite)
                    .filter(|r| r.path == path)
                    .all(|r| r.origin == while_present_origin);
                if !parent_is_dir || while_present {
                    None
                } else {
                    plan.placeholders.push(Placeholder::protected(&path, &plan.rules));
                    Some(MountOp::ReadOnly { path: path.clone() })
                }
            }
            (false, _, _, _) => None,
        };
        if let Some(op) = op {
            let now_fresh = matches!(op, MountOp::Tmpfs { .. });
            shown.insert(path.clone(), (now_fresh, if now_fresh { FsAccess::Read } else { want }));
            plan.ops.push(op);
        }
        // A cache's overlay goes over whatever the rules put at its path.
        if let Some(cache) = caches.iter().find(|c| c.lower == path) {
            plan.ops.push(cache.op());
            shown.insert(path.clone(), (false, FsAccess::Write));
            overlays.insert(path.clone());
        }
    }
    Ok(plan)
}

/// A concurrent run's placeholder found in place is shared: this run holds it too, so the other
/// run's end can't remove it from under this run's mount.
fn adopt(list: &mut Vec<Placeholder>, candidate: Placeholder) {
    if crate::placeholder::is_placeholder(&candidate) {
        list.push(candidate);
    }
}

/// A concurrent run's folder (marked by its mode) is shared like a placeholder, even though
/// it holds things: it is removed only once empty and unused.
fn adopt_folder(list: &mut Vec<Placeholder>, candidate: Placeholder) {
    use std::os::unix::fs::PermissionsExt;
    let ours = std::fs::symlink_metadata(&candidate.path)
        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o7777 == crate::placeholder::FOLDER_MODE);
    if ours {
        list.push(candidate);
    }
}

fn missing_write_root(path: &Path) -> PlanError {
    PlanError(
        format!("the writable root {} does not exist", path.display()),
        "create it first, or remove the --write rule".into(),
    )
}

fn policy_names_write_root(rules: &FsRules, path: &Path) -> bool {
    rules.of_kind(RuleKind::Write).any(|r| r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::{Overrides, PolicyBuilder, ProfileName};

    fn tempdir(tag: &str) -> PathBuf {
        // Not under /tmp (where a checkout may live): the sandbox's /tmp is fresh, which would
        // change the plan.
        let dir = Path::new("/var/tmp").join(format!("rf-plan-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn plan_for_workspace_profile() {
        let home = tempdir("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".netrc"), "x").unwrap();
        let ws = home.join("proj");
        std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
        let policy = PolicyBuilder::new(&ws, &home).build().unwrap();
        let plan = build(&policy, &[], &[]).unwrap();
        let has = |op: MountOp| plan.ops.contains(&op);
        assert!(has(MountOp::Tmpfs { path: home.join(".ssh"), writable: false, size: 4096 }));
        assert!(has(MountOp::MaskFile { path: home.join(".netrc") }));
        assert!(has(MountOp::Bind { path: ws.clone(), writable: true }));
        assert!(has(MountOp::ReadOnly { path: ws.join(".git/hooks") }));
        // Missing .git/config inside an existing .git gets a placeholder; .envrc too.
        assert!(plan.placeholders.contains(&Placeholder { path: ws.join(".git/config"), kind: PlaceholderKind::Dir }));
        assert!(plan.placeholders.contains(&Placeholder { path: ws.join(".envrc"), kind: PlaceholderKind::Dir }));
        // The directory leading to protected paths is pinned, so it can't be renamed away.
        let pin = plan.ops.iter().position(|o| *o == MountOp::Bind { path: ws.join(".git"), writable: true });
        let hooks = plan.ops.iter().position(|o| *o == MountOp::ReadOnly { path: ws.join(".git/hooks") });
        assert!(pin.unwrap() < hooks.unwrap());
        // A missing secret needs no mount (Landlock covers it).
        assert!(!plan.ops.iter().any(|o| o.path() == home.join(".aws")));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn strict_profile_reallows_inside_masked_home() {
        let home = tempdir("strict");
        std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
        let ws = home.join("proj");
        std::fs::create_dir_all(&ws).unwrap();
        let flags = Overrides { profile: Some(ProfileName::Strict), ..Default::default() };
        let policy = PolicyBuilder::new(&ws, &home).overrides(flags).build().unwrap();
        let plan = build(&policy, &[], &[]).unwrap();
        let pos = |p: &Path| plan.ops.iter().position(|o| o.path() == p).unwrap();
        assert!(pos(&home) < pos(&home.join(".cargo")));
        assert!(plan.ops.contains(&MountOp::Bind { path: home.join(".cargo"), writable: false }));
        assert!(plan.ops.contains(&MountOp::Bind { path: ws.clone(), writable: true }));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn canonicalizer_follows_links_and_keeps_missing_tails() {
        let dir = tempdir("canon");
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("real", dir.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.join("real/sub"), dir.join("abs")).unwrap();
        let mut c = Canonicalizer::default();
        assert_eq!(c.resolve(&dir.join("link/sub/x/y")), dir.join("real/sub/x/y"));
        assert_eq!(c.resolve(&dir.join("abs/z")), dir.join("real/sub/z"));
        assert_eq!(c.resolve(&dir.join("missing/x")), dir.join("missing/x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_to_home_does_not_make_home_writable() {
        let root = tempdir("homelink");
        let home = root.join("home");
        let ws = home.join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::os::unix::fs::symlink(&home, root.join("alias")).unwrap();
        let flags = Overrides { write: vec![root.join("alias").display().to_string()], ..Default::default() };
        let policy = PolicyBuilder::new(&ws, &home).overrides(flags).build().unwrap();
        let err = build(&policy, &[], &[]).unwrap_err();
        assert!(err.0.contains("home folder"), "{}", err.0);
        let flags = Overrides {
            write: vec![root.join("alias").display().to_string()],
            allow_writable_home: true,
            ..Default::default()
        };
        let policy = PolicyBuilder::new(&ws, &home).overrides(flags).build().unwrap();
        assert!(build(&policy, &[], &[]).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_cache_overlay_goes_over_the_rules_and_under_masks_inside_it() {
        let home = tempdir("overlay");
        std::fs::create_dir_all(home.join(".npm")).unwrap();
        std::fs::write(home.join(".npm/secret"), "x").unwrap();
        let ws = home.join("proj");
        std::fs::create_dir_all(&ws).unwrap();
        let flags = Overrides {
            profile: Some(ProfileName::Strict),
            caches: vec!["npm".into()],
            deny_read: vec!["~/.npm/secret".into(), "~/.npm/absent".into()],
            ..Default::default()
        };
        let policy = PolicyBuilder::new(&ws, &home).overrides(flags).build().unwrap();
        let plan = build(&policy, &[], &[]).unwrap();
        let npm = home.join(".npm");
        let pos = |f: &dyn Fn(&MountOp) -> bool| plan.ops.iter().position(f).unwrap();
        let bind = pos(&|o| *o == MountOp::Bind { path: npm.clone(), writable: false });
        let overlay = pos(&|o| matches!(o, MountOp::Overlay { path, .. } if *path == npm));
        let mask = pos(&|o| *o == MountOp::MaskFile { path: npm.join("secret") });
        assert!(bind < overlay && overlay < mask, "{:?}", plan.ops);
        assert!(!plan.ops.iter().any(|o| o.path() == npm.join("absent")));
        assert!(plan.placeholders.is_empty() || !plan.placeholders.iter().any(|p| p.path.starts_with(&npm)));
        assert_eq!(plan.review_roots.len(), 1);
        assert!(plan.review_roots[0].ends_with("upper"));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn missing_write_root_is_an_error() {
        let home = tempdir("missing");
        let ws = home.join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let flags = Overrides { write: vec!["/nonexistent/rf".into()], ..Default::default() };
        let policy = PolicyBuilder::new(&ws, &home).overrides(flags).build().unwrap();
        let err = build(&policy, &[], &[]).unwrap_err();
        assert!(err.0.contains("does not exist"), "{}", err.0);
        std::fs::remove_dir_all(&home).unwrap();
    }
}
