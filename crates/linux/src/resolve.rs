//! The first step of planning: everything the plan depends on that only the host can say, read
//! once and handed on as plain data. Links are resolved in every rule; the host adds rules of
//! its own (the sockets of its services, the runtime folders kept under /run, git's hook folders
//! and included configs, the secrets found by the scan and their second mounts); and what stands
//! at each path planning looks at is recorded. `plan::plan` then builds the view from this
//! alone, without touching the host.

use crate::canon::Canonicalizer;
use crate::mount_plan::{PlaceholderKind, PlanError};
use crate::mounts::MountTable;
use ringfence_policy::{Builtin, FsRule, FsRules, Placeholder, Policy, RuleKind};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What exists at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// What stands at a path on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Made by ringfence for an earlier or a concurrent run, as its mode shows: an empty 0555
    /// folder (`Dir`), an empty 0444 file (`File`), a 01755 folder (`Folder`, empty or not).
    pub ours: Option<PlaceholderKind>,
}

/// What the host holds for one run's policy.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The policy's rules with links resolved, and the rules the host adds: masks over its
    /// services' sockets, the runtime folders kept under /run, the folders git's
    /// `core.hooksPath` names and the files its configs include, in writable roots.
    pub rules: FsRules,
    /// Hidden paths found on the host: by the secret pattern, in WSL's Windows profiles, and
    /// every hidden path again where a second mount shows it. Planning adds them after its
    /// checks of the writable roots.
    pub secrets: Vec<FsRule>,
    /// $HOME, links resolved.
    pub home: PathBuf,
    /// The workspace, links resolved.
    pub workspace: PathBuf,
    /// The host's mount table.
    pub mounts: MountTable,
    /// What stands at every path of a rule, every folder above one, the cache folders and
    /// ringfence's cache layers; a path missing here is absent.
    pub entries: HashMap<PathBuf, Entry>,
    /// /run and /var/run, where they are folders (not links): each gets an empty tmpfs.
    pub run_dirs: Vec<PathBuf>,
    /// Where ringfence keeps its cache layers, links resolved.
    pub cache_layers: PathBuf,
    /// Each cache folder the policy names, and where it is once links are resolved.
    pub cache_dirs: HashMap<PathBuf, PathBuf>,
}

impl Resolved {
    /// What exists at `path` (canonical), if anything.
    pub fn kind(&self, path: &Path) -> Option<Kind> {
        self.entries.get(path).map(|e| e.kind)
    }

    /// The placeholder kind the entry at `path` bears, if it is ours.
    pub fn ours(&self, path: &Path) -> Option<PlaceholderKind> {
        self.entries.get(path).and_then(|e| e.ours)
    }
}

/// Reads what planning `policy` needs from the host. `sockets` are the host services' sockets
/// to mask (`host_sockets`); `keep_run` the folders under /run to keep where they exist.
pub fn resolve(policy: &Policy, sockets: &[PathBuf], keep_run: &[&str]) -> Result<Resolved, PlanError> {
    crate::roots::check_links(policy)?;
    let mut canon = Canonicalizer::default();
    let mut rules = FsRules::default();
    for rule in &policy.fs.rules {
        rules.add(FsRule { path: canon.resolve(&rule.path), ..rule.clone() });
    }
    for socket in sockets {
        rules.add(FsRule::new(RuleKind::DenyRead, canon.resolve(socket), Builtin::HostSocket).while_present());
    }
    for dir in keep_run.iter().filter(|d| Path::new(d).exists()) {
        rules.push(RuleKind::Read, PathBuf::from(dir), Builtin::SystemRuntime);
    }
    add_git_rules(&mut rules, &policy.home, &mut canon);
    let home = canon.resolve(&policy.home);
    let workspace = canon.resolve(&policy.workspace);
    let mounts = MountTable::read();
    crate::trace::supervisor("resolve the rules");
    let secrets = crate::secrets::found(&rules, &home, &workspace, &mounts);
    crate::trace::supervisor("secret scan");
    let cache_layers = canon.resolve(&crate::caches::layers_root(&policy.home));
    let cache_dirs: HashMap<PathBuf, PathBuf> =
        (policy.caches.iter().flat_map(|c| &c.dirs)).map(|d| (d.path.clone(), canon.resolve(&d.path))).collect();
    let looked_at = rules.rules.iter().chain(&secrets).map(|r| r.path.as_path());
    let looked_at = looked_at.chain(cache_dirs.values().map(PathBuf::as_path)).chain([cache_layers.as_path()]);
    let entries = survey(&mut canon, looked_at);
    let run_dirs = ["/run", "/var/run"].into_iter().map(PathBuf::from).filter(|p| p.is_dir() && !p.is_symlink());
    Ok(Resolved {
        rules,
        secrets,
        home,
        workspace,
        mounts,
        entries,
        run_dirs: run_dirs.collect(),
        cache_layers,
        cache_dirs,
    })
}

/// Keeps git's hook folders and included configs read-only where they lie in writable roots
/// (see `gitcheck::planned_paths`). Included files get file placeholders: git reads them, and
/// fails on a directory.
fn add_git_rules(rules: &mut FsRules, home: &Path, canon: &mut Canonicalizer) {
    let roots: Vec<PathBuf> = rules.of_kind(RuleKind::Write).map(|r| r.path.clone()).collect();
    let git = crate::gitcheck::planned_paths(&roots, home);
    let hooks = git.hook_dirs.iter().map(|d| (d, Builtin::GitHooksPath, None));
    let includes = git.includes.iter().map(|f| (f, Builtin::GitInclude, Some(Placeholder::File)));
    for (path, source, placeholder) in hooks.chain(includes) {
        let rule = FsRule::new(RuleKind::DenyWrite, canon.resolve(path), source);
        if roots.iter().any(|r| rule.path.starts_with(r)) {
            rules.add(match placeholder {
                Some(p) => rule.with_placeholder(p),
                None => rule,
            });
        }
    }
}

/// What stands at each of `paths` and every folder above them.
fn survey<'a>(canon: &mut Canonicalizer, paths: impl Iterator<Item = &'a Path>) -> HashMap<PathBuf, Entry> {
    let mut entries = HashMap::new();
    let mut looked = std::collections::HashSet::new();
    for path in paths {
        for at in path.ancestors() {
            if !looked.insert(at.to_path_buf()) {
                break;
            }
            let Some(is_dir) = canon.kind(at) else { continue };
            let kind = if is_dir { Kind::Dir } else { Kind::File };
            let ours = canon.metadata(at).and_then(|m| {
                let marked = crate::placeholder::marked_kind(m.is_dir(), m.is_file(), m.permissions().mode(), m.len());
                marked.filter(|k| *k != PlaceholderKind::Dir || crate::placeholder::is_empty_dir(at))
            });
            entries.insert(at.to_path_buf(), Entry { kind, ours });
        }
    }
    entries
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

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::{Origin, Overrides, PolicyBuilder, Presence};
    use std::os::unix::fs::symlink;

    fn scratch(tag: &str) -> PathBuf {
        // Not under /tmp: that is fresh in the view.
        let dir = Path::new("/var/tmp").join(format!("rf-resolve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn links_are_resolved_and_what_stands_where_is_recorded() {
        let root = scratch("entries");
        let (home, ws) = (root.join("home"), root.join("home/proj"));
        std::fs::create_dir_all(ws.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("real-build")).unwrap();
        symlink(root.join("real-build"), root.join("build")).unwrap();
        // A placeholder of an earlier run, a user's empty read-only folder that holds something,
        // a folder a run made on the way, and an empty read-only file.
        std::fs::create_dir(ws.join(".envrc")).unwrap();
        std::fs::create_dir_all(ws.join(".vscode/x")).unwrap();
        std::fs::create_dir(home.join(".config")).unwrap();
        std::fs::write(home.join(".bashrc"), "").unwrap();
        let flags = Overrides { write: vec![root.join("build").display().to_string()], ..Default::default() };
        let policy = PolicyBuilder::new(&ws, &home).overrides(flags).build().unwrap();
        mode(&ws.join(".envrc"), 0o555);
        mode(&ws.join(".vscode"), 0o555);
        mode(&home.join(".config"), 0o1755);
        mode(&home.join(".bashrc"), 0o444);
        let host = resolve(&policy, &[], &[]).unwrap();
        assert!(host.rules.at(&root.join("real-build")).any(|r| r.kind == RuleKind::Write));
        assert_eq!((host.home.as_path(), host.workspace.as_path()), (home.as_path(), ws.as_path()));
        let entry = |p: &Path| host.entries.get(p).copied();
        assert_eq!(entry(&ws.join(".git")), Some(Entry { kind: Kind::Dir, ours: None }));
        assert_eq!(entry(&ws.join(".envrc")), Some(Entry { kind: Kind::Dir, ours: Some(PlaceholderKind::Dir) }));
        assert_eq!(entry(&ws.join(".vscode")), Some(Entry { kind: Kind::Dir, ours: None }));
        assert_eq!(entry(&home.join(".config")), Some(Entry { kind: Kind::Dir, ours: Some(PlaceholderKind::Folder) }));
        assert_eq!(entry(&home.join(".bashrc")), Some(Entry { kind: Kind::File, ours: Some(PlaceholderKind::File) }));
        // Absent paths are not recorded; folders above every rule are.
        assert_eq!(entry(&home.join(".ssh")), None);
        assert_eq!(host.kind(Path::new("/")), Some(Kind::Dir));
        mode(&ws.join(".vscode"), 0o755);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_host_adds_its_sockets_runtime_folders_and_git_paths() {
        let root = scratch("added");
        let (home, ws) = (root.join("home"), root.join("home/proj"));
        std::fs::create_dir_all(ws.join(".git")).unwrap();
        std::fs::write(ws.join(".git/config"), "[include]\n\tpath = ../shared.inc\n[core]\n\thooksPath = hooks\n")
            .unwrap();
        let socket = ws.join("agent.sock");
        std::fs::write(&socket, "").unwrap();
        let policy = PolicyBuilder::new(&ws, &home).build().unwrap();
        let host = resolve(&policy, std::slice::from_ref(&socket), &["/", "/nonexistent-runtime"]).unwrap();
        let only = |path: &Path| {
            let mut rules = host.rules.at(path);
            let rule = rules.next().unwrap_or_else(|| panic!("no rule at {}", path.display())).clone();
            assert!(rules.next().is_none());
            rule
        };
        let mask = only(&socket);
        assert_eq!((mask.kind, mask.origin), (RuleKind::DenyRead, Origin::Builtin(Builtin::HostSocket)));
        assert_eq!((mask.presence, mask.placeholder), (Presence::WhilePresent, Placeholder::None));
        let include = only(&ws.join("shared.inc"));
        assert_eq!((include.origin, include.placeholder), (Origin::Builtin(Builtin::GitInclude), Placeholder::File));
        let hooks = only(&ws.join("hooks"));
        assert_eq!((hooks.origin, hooks.placeholder), (Origin::Builtin(Builtin::GitHooksPath), Placeholder::Dir));
        assert!(host.rules.at(Path::new("/")).any(|r| r.origin == Origin::Builtin(Builtin::SystemRuntime)));
        assert_eq!(host.rules.at(Path::new("/nonexistent-runtime")).count(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
