use super::*;
use crate::mounts::MountTable;
use crate::resolve::Entry;
use ringfence_policy::{Overrides, PolicyBuilder, ProfileName};

const HOME: &str = "/home/u";
const WS: &str = "/home/u/proj";

fn p(path: &str) -> PathBuf {
    PathBuf::from(path)
}

fn policy(flags: Overrides) -> Policy {
    PolicyBuilder::new(Path::new(WS), Path::new(HOME)).overrides(flags).build().unwrap()
}

fn writable_home() -> Overrides {
    Overrides { write: vec![HOME.into()], allow_writable_home: true, ..Default::default() }
}

/// A host as a test describes it, in the form `resolve` hands it to planning. Paths are their
/// own canonical form (no links), and every folder above an entry exists.
struct Host(Resolved);

impl Host {
    fn new(policy: &Policy) -> Self {
        let cache_dirs = policy.caches.iter().flat_map(|c| &c.dirs).map(|d| (d.path.clone(), d.path.clone()));
        Host(Resolved {
            rules: policy.fs.clone(),
            home: policy.home.clone(),
            workspace: policy.workspace.clone(),
            run_dirs: vec![p("/run")],
            cache_layers: p("/home/u/.cache/ringfence/caches"),
            cache_dirs: cache_dirs.collect(),
            ..Default::default()
        })
        .dir(HOME)
        .dir(WS)
    }

    fn entry(mut self, path: &str, kind: Kind, ours: Option<PlaceholderKind>) -> Self {
        for folder in Path::new(path).ancestors().skip(1) {
            self.0.entries.entry(folder.to_path_buf()).or_insert(Entry { kind: Kind::Dir, ours: None });
        }
        self.0.entries.insert(p(path), Entry { kind, ours });
        self
    }

    fn dir(self, path: &str) -> Self {
        self.entry(path, Kind::Dir, None)
    }

    fn file(self, path: &str) -> Self {
        self.entry(path, Kind::File, None)
    }

    /// A placeholder of an earlier or concurrent run.
    fn ours(self, path: &str, kind: PlaceholderKind) -> Self {
        let entry = if kind == PlaceholderKind::File { Kind::File } else { Kind::Dir };
        self.entry(path, entry, Some(kind))
    }

    /// A rule the host adds (a socket, a git path).
    fn rule(mut self, rule: FsRule) -> Self {
        self.0.rules.add(rule);
        self
    }

    fn secret(mut self, rule: FsRule) -> Self {
        self.0.secrets.push(rule);
        self
    }

    fn mounts(mut self, mountinfo: &str) -> Self {
        self.0.mounts = MountTable::parse(mountinfo);
        self
    }

    fn plan(self, policy: &Policy) -> Result<MountPlan, PlanError> {
        plan(policy, self.0)
    }
}

fn position(plan: &MountPlan, op: &MountOp) -> usize {
    plan.ops.iter().position(|o| o == op).unwrap_or_else(|| panic!("{op:?} not in {:#?}", plan.ops))
}

fn ops_at<'a>(plan: &'a MountPlan, path: &str) -> Vec<&'a MountOp> {
    plan.ops.iter().filter(|o| o.path() == Path::new(path)).collect()
}

fn tmpfs(path: &str) -> MountOp {
    MountOp::Tmpfs { path: p(path), writable: false, size: 4096 }
}

fn bind(path: &str, writable: bool) -> MountOp {
    MountOp::Bind { path: p(path), writable }
}

fn read_only(path: &str) -> MountOp {
    MountOp::ReadOnly { path: p(path) }
}

fn mask_file(path: &str) -> MountOp {
    MountOp::MaskFile { path: p(path) }
}

fn placeholder(path: &str, kind: PlaceholderKind) -> Placeholder {
    Placeholder { path: p(path), kind }
}

#[test]
fn the_workspace_profile_masks_secrets_and_protects_the_workspace() {
    let policy = policy(Overrides::default());
    let host = Host::new(&policy).dir("/home/u/.ssh").file("/home/u/.netrc").dir("/home/u/proj/.git/hooks");
    let plan = host.plan(&policy).unwrap();
    assert_eq!(plan.ops[0], MountOp::Tmpfs { path: p("/tmp"), writable: true, size: 1 << 30 });
    assert_eq!(plan.ops[1], MountOp::Tmpfs { path: p("/run"), writable: false, size: 1 << 20 });
    position(&plan, &tmpfs("/home/u/.ssh"));
    position(&plan, &mask_file("/home/u/.netrc"));
    position(&plan, &bind(WS, true));
    // Missing .git/config inside an existing .git gets a placeholder; .envrc too.
    assert!(plan.placeholders.contains(&placeholder("/home/u/proj/.git/config", PlaceholderKind::Dir)));
    assert!(plan.placeholders.contains(&placeholder("/home/u/proj/.envrc", PlaceholderKind::Dir)));
    // The directory leading to protected paths is pinned, so it can't be renamed away.
    assert!(position(&plan, &bind("/home/u/proj/.git", true)) < position(&plan, &read_only("/home/u/proj/.git/hooks")));
    // A missing secret needs no mount (Landlock covers it), nor a missing one outside writable trees.
    assert!(ops_at(&plan, "/home/u/.aws").is_empty());
    assert!(ops_at(&plan, "/etc/shadow").is_empty());
    assert!(plan.review_roots.is_empty());
}

#[test]
fn the_strict_profile_reallows_inside_the_masked_home() {
    let flags = Overrides { profile: Some(ProfileName::Strict), ..Default::default() };
    let policy = policy(flags);
    let plan = Host::new(&policy).dir("/home/u/.cargo/bin").plan(&policy).unwrap();
    // /home is hidden whole; what the profile re-allows in it is bound over the mask.
    assert!(position(&plan, &tmpfs("/home")) < position(&plan, &bind("/home/u/.cargo", false)));
    assert!(position(&plan, &tmpfs("/home")) < position(&plan, &bind(WS, true)));
    // Absent toolchains show nothing: the masked home has nothing there.
    assert!(ops_at(&plan, "/home/u/.rustup").is_empty());
    // Inside the fresh mask, protected paths need nothing more than the workspace's own rules.
    assert!(plan.placeholders.iter().all(|ph| ph.path.starts_with(WS)), "{:?}", plan.placeholders);
}

#[test]
fn a_missing_writable_root_is_an_error_wherever_it_is() {
    let policy = policy(Overrides { write: vec!["/srv/rf".into()], ..Default::default() });
    let err = Host::new(&policy).plan(&policy).unwrap_err();
    assert!(err.0.contains("the writable root /srv/rf does not exist"), "{}", err.0);
    // Inside the strict profile's masked home: revealed from a fresh mask.
    let flags = Overrides { profile: Some(ProfileName::Strict), write: vec!["~/build".into()], ..Default::default() };
    let policy = super::tests::policy(flags);
    let err = Host::new(&policy).plan(&policy).unwrap_err();
    assert!(err.0.contains("the writable root /home/u/build does not exist"), "{}", err.0);
    let plan = Host::new(&policy).dir("/home/u/build").plan(&policy).unwrap();
    position(&plan, &bind("/home/u/build", true));
}

#[test]
fn missing_folders_on_the_way_are_created_and_pinned_but_never_a_git_folder() {
    let policy = policy(writable_home());
    let plan = Host::new(&policy).plan(&policy).unwrap();
    // ~/.config/autostart (protected) in a writable home without ~/.config.
    assert!(plan.placeholders.contains(&placeholder("/home/u/.config", PlaceholderKind::Folder)));
    assert!(plan.placeholders.contains(&placeholder("/home/u/.config/autostart", PlaceholderKind::Dir)));
    assert!(position(&plan, &bind("/home/u/.config", true)) < position(&plan, &read_only("/home/u/.config/autostart")));
    // The workspace, a writable root inside another, is pinned.
    position(&plan, &bind(WS, true));
    // An absent .git stays creatable by `git init`.
    assert!(plan.ops.iter().all(|o| !o.path().starts_with("/home/u/proj/.git")), "{:#?}", plan.ops);
    assert!(plan.placeholders.iter().all(|ph| !ph.path.starts_with("/home/u/proj/.git")));
    // A folder in the way that is a file: nothing is created below it.
    let plan = Host::new(&policy).file("/home/u/.config").plan(&policy).unwrap();
    assert!(!plan.placeholders.iter().any(|ph| ph.path.starts_with("/home/u/.config")), "{:?}", plan.placeholders);
}

#[test]
fn placeholders_are_files_for_names_tools_read_as_files() {
    let policy = policy(writable_home());
    let include = FsRule::new(RuleKind::DenyWrite, p("/home/u/proj/shared.inc"), Builtin::GitInclude)
        .with_placeholder(ringfence_policy::Placeholder::File);
    let plan = Host::new(&policy).rule(include).plan(&policy).unwrap();
    for (path, kind) in [
        ("/home/u/.bashrc", PlaceholderKind::File),
        ("/home/u/.gitconfig", PlaceholderKind::File),
        ("/home/u/proj/shared.inc", PlaceholderKind::File),
        ("/home/u/.netrc", PlaceholderKind::File),
        ("/home/u/.ssh", PlaceholderKind::Dir),
        ("/home/u/proj/.envrc", PlaceholderKind::Dir),
    ] {
        assert!(plan.placeholders.contains(&placeholder(path, kind)), "{path}: {:?}", plan.placeholders);
    }
    position(&plan, &read_only("/home/u/.bashrc"));
    position(&plan, &read_only("/home/u/proj/shared.inc"));
    // Hidden and absent: the mask matches the placeholder.
    position(&plan, &mask_file("/home/u/.netrc"));
    position(&plan, &tmpfs("/home/u/.ssh"));
}

#[test]
fn names_protected_while_present_get_nothing_while_absent() {
    let policy = policy(Overrides::default());
    let plan = Host::new(&policy).plan(&policy).unwrap();
    for name in [".husky", ".mcp.json", ".npmrc", ".cargo/config.toml"] {
        let path = Path::new(WS).join(name);
        assert!(plan.ops.iter().all(|o| o.path() != path), "{name}: {:#?}", plan.ops);
        assert!(plan.placeholders.iter().all(|ph| ph.path != path), "{name}");
    }
    // Nor are the folders on their way made (`.cargo` for `.cargo/config.toml`).
    assert!(ops_at(&plan, "/home/u/proj/.cargo").is_empty());
    // Present, they are read-only.
    let plan = Host::new(&policy).dir("/home/u/proj/.husky").file("/home/u/proj/.cargo/config.toml").plan(&policy);
    let plan = plan.unwrap();
    position(&plan, &read_only("/home/u/proj/.husky"));
    position(&plan, &read_only("/home/u/proj/.cargo/config.toml"));
    assert!(
        position(&plan, &bind("/home/u/proj/.cargo", true))
            < position(&plan, &read_only("/home/u/proj/.cargo/config.toml"))
    );
}

#[test]
fn host_sockets_are_masked_where_they_exist_and_nowhere_else() {
    let policy = policy(Overrides::default());
    let socket = |path: &str| FsRule::new(RuleKind::DenyRead, p(path), Builtin::HostSocket).while_present();
    let host = Host::new(&policy)
        .file("/home/u/proj/dev.sock")
        .file("/var/lib/docker.sock")
        .file("/run/user/1000/bus")
        .rule(socket("/home/u/proj/dev.sock"))
        .rule(socket("/var/lib/docker.sock"))
        .rule(socket("/run/user/1000/bus"))
        .rule(socket("/home/u/proj/gone/agent.sock"))
        .rule(socket("/home/u/proj/gone.sock"));
    let plan = host.plan(&policy).unwrap();
    position(&plan, &mask_file("/home/u/proj/dev.sock"));
    position(&plan, &mask_file("/var/lib/docker.sock"));
    // Under the fresh /run, and where nothing exists, there is nothing to mask or create.
    for path in ["/run/user/1000/bus", "/home/u/proj/gone", "/home/u/proj/gone/agent.sock", "/home/u/proj/gone.sock"] {
        assert!(ops_at(&plan, path).is_empty(), "{path}: {:#?}", plan.ops);
        assert!(plan.placeholders.iter().all(|ph| ph.path != Path::new(path)), "{path}");
    }
}

#[test]
fn placeholders_of_a_concurrent_run_are_shared() {
    let policy = policy(writable_home());
    let host = Host::new(&policy)
        .ours("/home/u/proj/.envrc", PlaceholderKind::Dir)
        .ours("/home/u/.bashrc", PlaceholderKind::File)
        .ours("/home/u/.netrc", PlaceholderKind::File)
        .ours("/home/u/.config", PlaceholderKind::Folder)
        .dir("/home/u/proj/.vscode")
        .ours("/home/u/proj/.idea", PlaceholderKind::Folder);
    let plan = host.plan(&policy).unwrap();
    for (path, kind) in [
        ("/home/u/proj/.envrc", PlaceholderKind::Dir),
        ("/home/u/.bashrc", PlaceholderKind::File),
        ("/home/u/.netrc", PlaceholderKind::File),
        ("/home/u/.config", PlaceholderKind::Folder),
    ] {
        assert!(plan.placeholders.contains(&placeholder(path, kind)), "{path}: {:?}", plan.placeholders);
    }
    position(&plan, &read_only("/home/u/proj/.envrc"));
    position(&plan, &mask_file("/home/u/.netrc"));
    position(&plan, &bind("/home/u/.config", true));
    // The user's own folder is not ours; nor is a folder whose mark is not a placeholder's kind.
    position(&plan, &read_only("/home/u/proj/.vscode"));
    let theirs = [p("/home/u/proj/.vscode"), p("/home/u/proj/.idea")];
    assert!(!plan.placeholders.iter().any(|ph| theirs.contains(&ph.path)), "{:?}", plan.placeholders);
}

#[test]
fn a_cache_overlay_goes_over_the_rules_and_under_masks_inside_it() {
    let flags = Overrides {
        profile: Some(ProfileName::Strict),
        caches: vec!["npm".into()],
        deny_read: vec!["~/.npm/secret".into(), "~/.npm/absent".into()],
        ..Default::default()
    };
    let policy = policy(flags);
    let plan = Host::new(&policy).dir("/home/u/.npm").file("/home/u/.npm/secret").plan(&policy).unwrap();
    let bind = position(&plan, &bind("/home/u/.npm", false));
    let overlay =
        plan.ops.iter().position(|o| matches!(o, MountOp::Overlay { path, .. } if path == Path::new("/home/u/.npm")));
    let mask = position(&plan, &mask_file("/home/u/.npm/secret"));
    assert!(bind < overlay.unwrap() && overlay.unwrap() < mask, "{:#?}", plan.ops);
    assert!(ops_at(&plan, "/home/u/.npm/absent").is_empty());
    assert!(!plan.placeholders.iter().any(|ph| ph.path.starts_with("/home/u/.npm")));
    let MountOp::Overlay { upper, work, .. } = &plan.ops[overlay.unwrap()] else { unreachable!() };
    let layer = upper.to_string_lossy();
    assert!(layer.starts_with("/home/u/.cache/ringfence/caches/proj-") && layer.ends_with("/upper"), "{layer}");
    assert_eq!(upper.parent(), work.parent());
    assert_eq!(plan.review_roots, std::slice::from_ref(upper));
}

#[test]
fn caches_that_cannot_be_overlaid_are_refused_or_written_directly() {
    let with = |flags: Overrides| policy(Overrides { caches: vec!["npm".into()], ..flags });
    let policy = with(Overrides { deny_read: vec!["~/.npm".into()], ..Default::default() });
    let err = Host::new(&policy).dir("/home/u/.npm").plan(&policy).unwrap_err();
    assert!(err.0.contains("the npm cache /home/u/.npm is hidden by /home/u/.npm (--deny-read ~/.npm)"), "{}", err.0);
    let policy = with(Overrides::default());
    let err = Host::new(&policy).file("/home/u/.npm").plan(&policy).unwrap_err();
    assert!(err.0.ends_with("is not a folder"), "{}", err.0);
    // Inside a writable root, the run writes the cache as the user chose: no overlay.
    let policy =
        with(Overrides { allow_writable_home_config: true, write: vec!["~/.npm".into()], ..Default::default() });
    let plan = Host::new(&policy).dir("/home/u/.npm").plan(&policy).unwrap();
    assert!(!plan.ops.iter().any(|o| matches!(o, MountOp::Overlay { .. })), "{:#?}", plan.ops);
    assert!(plan.review_roots.is_empty());
}

#[test]
fn ringfence_s_own_cache_folder_is_read_only_where_the_run_could_write_it() {
    let policy = policy(writable_home());
    let plan = Host::new(&policy).dir("/home/u/.cache/ringfence/caches").plan(&policy).unwrap();
    position(&plan, &read_only("/home/u/.cache/ringfence"));
    let rule = plan.rules.at(Path::new("/home/u/.cache/ringfence")).next().unwrap();
    assert_eq!(rule.presence, ringfence_policy::Presence::WhilePresent);
    // Absent, it gets nothing; outside a writable root it needs nothing.
    let plan = Host::new(&policy).plan(&policy).unwrap();
    assert!(ops_at(&plan, "/home/u/.cache/ringfence").is_empty());
    let default = super::tests::policy(Overrides::default());
    let plan = Host::new(&default).dir("/home/u/.cache/ringfence/caches").plan(&default).unwrap();
    assert!(plan.rules.at(Path::new("/home/u/.cache/ringfence")).next().is_none());
}

#[test]
fn found_secrets_are_hidden_and_named() {
    let policy = policy(Overrides::default());
    let found =
        FsRule::new(RuleKind::DenyRead, p("/home/u/.mytool/api_token"), Builtin::SecretName { matches: "token" });
    let plan = Host::new(&policy).file("/home/u/.mytool/api_token").secret(found).plan(&policy).unwrap();
    position(&plan, &mask_file("/home/u/.mytool/api_token"));
    let rule = plan.rules.at(Path::new("/home/u/.mytool/api_token")).next().unwrap();
    assert_eq!(rule.origin.to_string(), "built-in secret pattern: the name matches `token`");
}

#[test]
fn rules_of_the_user_under_dev_and_proc_are_refused() {
    let policy = policy(Overrides { read: vec!["/dev/sda".into()], ..Default::default() });
    let err = Host::new(&policy).plan(&policy).unwrap_err();
    assert!(err.0.contains("/dev/sda is the sandbox's own"), "{}", err.0);
    // The host's own rules there are fine, and need no op.
    let policy = super::tests::policy(Overrides::default());
    let socket = FsRule::new(RuleKind::DenyRead, p("/dev/log"), Builtin::HostSocket).while_present();
    let plan = Host::new(&policy).file("/dev/log").rule(socket).plan(&policy).unwrap();
    assert!(ops_at(&plan, "/dev/log").is_empty());
}

#[test]
fn a_second_mount_of_home_can_not_make_it_writable() {
    let mounts = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 22 8:2 / /home rw - ext4 /dev/sda2 rw\n\
                  41 22 8:2 / /srv/homes rw - ext4 /dev/sda2 rw\n";
    let policy = policy(Overrides { write: vec!["/srv/homes/u".into()], ..Default::default() });
    let err = Host::new(&policy).dir("/srv/homes/u").mounts(mounts).plan(&policy).unwrap_err();
    assert!(err.0.contains("would make your home folder /home/u writable (through a second mount of it)"), "{}", err.0);
    let policy = super::tests::policy(Overrides {
        write: vec!["/srv/homes/u".into()],
        allow_writable_home: true,
        ..Default::default()
    });
    assert!(Host::new(&policy).dir("/srv/homes/u").mounts(mounts).plan(&policy).is_ok());
}

// The plan built from the host itself: `resolve` reads a scratch tree, `plan` plans it.

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
fn a_cache_overlay_is_planned_from_the_host() {
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
