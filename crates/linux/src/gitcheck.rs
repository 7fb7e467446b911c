//! Git state the mount view can't protect in advance: a repository the command creates during
//! the run (`git init` must work, so an absent `.git` can't be made read-only), `commondir`
//! files (an empty placeholder would break git), and submodule and worktree git directories
//! (`git submodule update` must be able to write them). What they contain can make the user's
//! git run programs later, so after the run anything the command added or changed there that
//! could is moved aside and reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Suffix given to a file moved aside.
pub const QUARANTINE_SUFFIX: &str = ".ringfence-quarantined";

/// Config keys that make git run a program.
const RISKY_KEYS: &[&str] = &[
    "hookspath",
    "fsmonitor",
    "sshcommand",
    "pager",
    "editor",
    "askpass",
    "gitproxy",
    "textconv",
    "clean",
    "smudge",
    "process",
    "driver",
    "helper",
    "command",
    "worktree",
];

/// Something the run left that would run code on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitFinding {
    pub path: PathBuf,
    pub detail: String,
}

/// What a file held (these files are small); compared by content, since a command can restore
/// a modification time.
type Stamp = Option<Vec<u8>>;

fn stamp(path: &Path) -> Stamp {
    std::fs::read(path).ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hook,
    CommonDir,
    Config,
}

/// The files of a git directory that can make git run programs or read another directory.
/// `top` includes the repository's own hooks and config (read-only in the sandbox when the
/// repository existed before the run).
fn sensitive_files(gitdir: &Path, top: bool) -> Vec<(PathBuf, Kind)> {
    let mut dirs = vec![gitdir.to_path_buf()];
    for nested in ["modules", "worktrees"] {
        nested_gitdirs(&gitdir.join(nested), 0, &mut dirs);
    }
    let mut out = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let own = i == 0;
        out.push((dir.join("commondir"), Kind::CommonDir));
        out.push((dir.join("config.worktree"), Kind::Config));
        if !own || top {
            out.push((dir.join("config"), Kind::Config));
            if let Ok(hooks) = std::fs::read_dir(dir.join("hooks")) {
                for hook in hooks.flatten().map(|e| e.path()) {
                    let name = hook.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if !name.ends_with(".sample") && !name.ends_with(QUARANTINE_SUFFIX) {
                        out.push((hook, Kind::Hook));
                    }
                }
            }
        }
    }
    out.retain(|(p, _)| p.is_file());
    out
}

/// Git directories below `dir`: submodule names may contain slashes (`modules/vendor/lib`), and
/// submodules have their own `modules`.
fn nested_gitdirs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || depth > 8 {
            continue;
        }
        if path.join("HEAD").is_file() || path.join("config").is_file() || path.join("commondir").is_file() {
            out.push(path.clone());
        }
        if path.file_name().is_some_and(|n| n != "objects" && n != "refs" && n != "logs") {
            nested_gitdirs(&path, depth + 1, out);
        }
    }
}

/// The git directory of a worktree: `.git` itself, or where a `.git` file points.
fn gitdir(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    Some(root.join(target))
}

/// What was there before the run, per writable root.
#[derive(Clone, Debug, Default)]
pub struct GitSnapshot {
    roots: Vec<(PathBuf, bool)>,
    files: BTreeMap<PathBuf, Stamp>,
}

impl GitSnapshot {
    pub fn take(write_roots: &[PathBuf]) -> Self {
        let mut snap = GitSnapshot::default();
        for root in write_roots {
            let dir = gitdir(root);
            if let Some(dir) = &dir {
                for (file, _) in sensitive_files(dir, false) {
                    let s = stamp(&file);
                    snap.files.insert(file, s);
                }
            }
            snap.roots.push((root.clone(), dir.is_some()));
        }
        snap
    }

    /// Moves aside what the run added or changed that could run code, and says so.
    pub fn review(&self) -> Vec<GitFinding> {
        let mut findings = Vec::new();
        for (root, existed) in &self.roots {
            let Some(dir) = gitdir(root) else { continue };
            for (file, kind) in sensitive_files(&dir, !existed) {
                if self.files.get(&file) == Some(&stamp(&file)) {
                    continue;
                }
                let why = match kind {
                    Kind::Hook => "the command added this git hook".to_string(),
                    Kind::CommonDir => "the command wrote this commondir, which points git at another directory".into(),
                    Kind::Config => {
                        let keys = risky_keys(&file);
                        if keys.is_empty() {
                            continue;
                        }
                        findings.push(defuse_config(&file, &keys));
                        continue;
                    }
                };
                findings.push(quarantine(&file, why));
            }
        }
        findings
    }
}

/// Moves a file aside (without execute permission) and describes what happened.
fn quarantine(file: &Path, why: String) -> GitFinding {
    let mut aside = file.as_os_str().to_owned();
    aside.push(QUARANTINE_SUFFIX);
    let aside = PathBuf::from(aside);
    let detail = match std::fs::rename(file, &aside) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600));
            format!("{why}; moved aside to {}", aside.display())
        }
        Err(e) => format!("{why}, and moving it aside failed ({e}): review it before using git here"),
    };
    GitFinding { path: file.to_path_buf(), detail }
}

/// Keeps a config file's harmless lines and moves the original aside, so the repository still
/// works but runs nothing the command chose.
fn defuse_config(file: &Path, keys: &[String]) -> GitFinding {
    let what = format!("the command set {} here, which makes git run a program or read another file", keys.join(", "));
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let kept: String = classify(&text).into_iter().filter_map(|line| line.keep).map(|l| l + "\n").collect();
    let finding = quarantine(file, what);
    if !file.exists() {
        let _ = std::fs::write(file, kept);
    }
    finding
}

/// One line of a git config file: the setting (`section.key`, value) it makes, if any, whether
/// that setting is risky, and what of the line to keep (a risky line keeps just its section
/// header, if it opened one).
struct ConfigLine {
    setting: Option<(String, String)>,
    risky: Option<String>,
    keep: Option<String>,
}

/// Classifies each line of a git config file. A key may follow its section header on the same
/// line.
fn classify(text: &str) -> Vec<ConfigLine> {
    let mut section = String::new();
    text.lines()
        .map(|raw| {
            let mut line = raw.trim();
            let mut header_text = None;
            // Several headers may share a line (`[user] [core] fsmonitor = x`): the last counts.
            while let Some(rest) = line.strip_prefix('[') {
                let (header, after) = rest.split_once(']').unwrap_or((rest, ""));
                section = header.trim().to_ascii_lowercase();
                header_text = Some(format!("[{header}]"));
                line = after.trim();
            }
            let setting = (!line.is_empty() && !line.starts_with('#') && !line.starts_with(';')).then(|| {
                let (key, value) = line.split_once('=').unwrap_or((line, ""));
                (format!("{section}.{}", key.trim().to_ascii_lowercase()), value.trim().trim_matches('"').to_string())
            });
            let risky = setting.as_ref().and_then(|(name, value)| {
                let key = name.rsplit('.').next().unwrap_or("");
                let include = section.starts_with("include") && key == "path";
                let alias_runs = section == "alias" && value.starts_with('!');
                (RISKY_KEYS.contains(&key) || include || alias_runs).then(|| name.clone())
            });
            let keep = if risky.is_some() { header_text } else { Some(raw.to_string()) };
            ConfigLine { setting, risky, keep }
        })
        .collect()
}

/// Where git looks for the hooks of the worktree `root`: every `core.hooksPath` its repository
/// or the user's global config sets. Hooks there run on the host at the next commit, so the
/// plan keeps them read-only like `.git/hooks`.
pub fn hook_dirs(root: &Path, home: &Path) -> Vec<PathBuf> {
    let mut configs = vec![home.join(".gitconfig"), home.join(".config/git/config"), PathBuf::from("/etc/gitconfig")];
    configs.extend(gitdir(root).map(|d| d.join("config")));
    let mut out = Vec::new();
    for config in configs {
        let text = std::fs::read_to_string(&config).unwrap_or_default();
        for (name, value) in classify(&text).into_iter().filter_map(|l| l.setting) {
            if name != "core.hookspath" || value.is_empty() {
                continue;
            }
            let dir = match value.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => root.join(&value),
            };
            out.push(ringfence_policy::normalize(&dir));
        }
    }
    out
}

/// The keys (`section.key`) in a git config file that make git run programs.
fn risky_keys(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    classify(&text).into_iter().filter_map(|line| line.risky).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/gitcheck-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn a_new_repository_loses_its_hooks_and_risky_config() {
        let root = scratch("new");
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        std::fs::write(root.join(".git/hooks/pre-commit"), "#!/bin/sh\nevil\n").unwrap();
        std::fs::write(root.join(".git/hooks/pre-commit.sample"), "ok").unwrap();
        std::fs::write(root.join(".git/config"), "[core] fsmonitor = evil\n\tbare = false\n").unwrap();
        let findings = snap.review();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(!root.join(".git/hooks/pre-commit").exists());
        assert!(root.join(format!(".git/hooks/pre-commit{QUARANTINE_SUFFIX}")).exists());
        assert!(root.join(".git/hooks/pre-commit.sample").exists());
        // The config stays, without the risky line; the original is kept aside.
        assert_eq!(std::fs::read_to_string(root.join(".git/config")).unwrap(), "[core]\n\tbare = false\n");
        assert!(root.join(format!(".git/config{QUARANTINE_SUFFIX}")).exists());
        assert!(findings.iter().any(|f| f.detail.contains("core.fsmonitor")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_existing_repository_keeps_what_was_there() {
        let root = scratch("old");
        std::fs::create_dir_all(root.join(".git/modules/sub/hooks")).unwrap();
        std::fs::write(root.join(".git/modules/sub/hooks/post-checkout"), "x").unwrap();
        std::fs::write(root.join(".git/modules/sub/config"), "[core]\n\tbare = false\n").unwrap();
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        assert!(snap.review().is_empty());
        std::fs::write(root.join(".git/modules/sub/hooks/pre-push"), "x").unwrap();
        std::fs::write(root.join(".git/modules/sub/config"), "[core]\n\tbare = false\n\tfsmonitor = x\n").unwrap();
        std::fs::write(root.join(".git/commondir"), "../elsewhere").unwrap();
        std::fs::write(root.join(".git/config"), "[alias]\n\tx = !sh\n").unwrap();
        let findings = snap.review();
        // The top-level config is read-only in the sandbox; a change there came from the host.
        assert_eq!(findings.len(), 3, "{findings:?}");
        assert!(!root.join(".git/commondir").exists());
        assert!(root.join(".git/config").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn risky_keys_are_found_in_every_spelling() {
        let root = scratch("alias");
        let text = "[alias]\n\tst = status\n\tx = !sh -c evil\n[core] fsmonitor = evil\n\
                    [include]\n\tpath = ../evil.cfg\n[includeIf \"gitdir:/\"]\n\tpath = x\n# pager = no\n\
                    [user] [core] sshCommand = evil\n";
        std::fs::write(root.join("config"), text).unwrap();
        let keys = risky_keys(&root.join("config"));
        assert_eq!(
            keys,
            vec!["alias.x", "core.fsmonitor", "include.path", "includeif \"gitdir:/\".path", "core.sshcommand"]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn hooks_paths_are_found() {
        let root = scratch("hookspath");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "[core]\n\thooksPath = .githooks\n").unwrap();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".gitconfig"), "[core] hooksPath = \"~/hooks\"\n").unwrap();
        let n = |p: PathBuf| ringfence_policy::normalize(&p);
        assert_eq!(hook_dirs(&root, &home), vec![n(home.join("hooks")), n(root.join(".githooks"))]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn submodules_with_slashes_are_reviewed() {
        let root = scratch("nested");
        std::fs::create_dir_all(root.join(".git/modules/vendor/lib/hooks")).unwrap();
        std::fs::write(root.join(".git/modules/vendor/lib/HEAD"), "ref: refs/heads/main\n").unwrap();
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        std::fs::write(root.join(".git/modules/vendor/lib/hooks/post-checkout"), "evil").unwrap();
        assert_eq!(snap.review().len(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
