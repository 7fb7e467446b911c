//! Git state the mount view can't protect in advance: a repository the command creates during
//! the run (`git init` must work, so an absent `.git` can't be made read-only), `commondir`
//! files (an empty placeholder would break git), and submodule and worktree git directories
//! (`git submodule update` must be able to write them). What they contain can make the user's
//! git run programs later, so after the run anything the command added or changed there that
//! could is moved aside and reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// What a file looked like: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::symlink_metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
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
        if let Ok(entries) = std::fs::read_dir(gitdir.join(nested)) {
            dirs.extend(entries.flatten().map(|e| e.path()));
        }
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
#[derive(Debug, Default)]
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
                    Kind::Config => match risky_keys(&file).first() {
                        Some(key) => format!("the command set `{key}` here, which makes git run a program"),
                        None => continue,
                    },
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

/// The keys (`section.key`) in a git config file that make git run programs.
fn risky_keys(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_ascii_lowercase();
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
        let alias_runs = section == "alias" && line.split_once('=').is_some_and(|(_, v)| v.trim().starts_with('!'));
        if RISKY_KEYS.contains(&key.as_str()) || alias_runs {
            out.push(format!("{section}.{key}"));
        }
    }
    out
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
        std::fs::write(root.join(".git/config"), "[core]\n\tfsmonitor = evil\n").unwrap();
        let findings = snap.review();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(!root.join(".git/hooks/pre-commit").exists());
        assert!(root.join(format!(".git/hooks/pre-commit{QUARANTINE_SUFFIX}")).exists());
        assert!(root.join(".git/hooks/pre-commit.sample").exists());
        assert!(!root.join(".git/config").exists());
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
    fn alias_with_a_shell_command_is_risky() {
        let root = scratch("alias");
        std::fs::write(root.join("config"), "[alias]\n\tst = status\n\tx = !sh -c evil\n").unwrap();
        assert_eq!(risky_keys(&root.join("config")), vec!["alias.x".to_string()]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
