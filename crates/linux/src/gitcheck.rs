//! Git state the mount view can't protect in advance: a repository the command creates during
//! the run (`git init` must work, so an absent `.git` can't be made read-only), and submodule
//! git directories (`.git/modules/*`), which `git submodule update` must be able to write.
//! Their hooks would run on the host later, so after the run new hooks are moved aside, and
//! config keys that run programs are reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Suffix given to a hook moved aside.
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
];

/// What was there before the run, per writable root.
#[derive(Debug, Default)]
pub struct GitSnapshot {
    roots: Vec<(PathBuf, bool)>,
    hooks: BTreeMap<PathBuf, Option<SystemTime>>,
}

/// Something the run left that would run code on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitFinding {
    pub path: PathBuf,
    pub detail: String,
}

/// Hook files of a git directory's submodules, and of the directory itself when `top` (the
/// top-level hooks of a repository that existed before the run are read-only in the sandbox).
fn hook_files(gitdir: &Path, top: bool) -> Vec<PathBuf> {
    let mut dirs = if top { vec![gitdir.join("hooks")] } else { Vec::new() };
    if let Ok(modules) = std::fs::read_dir(gitdir.join("modules")) {
        dirs.extend(modules.flatten().map(|m| m.path().join("hooks")));
    }
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.ends_with(".sample") && !name.ends_with(QUARANTINE_SUFFIX) && p.is_file()
        })
        .collect()
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

impl GitSnapshot {
    pub fn take(write_roots: &[PathBuf]) -> Self {
        let mut snap = GitSnapshot::default();
        for root in write_roots {
            let dir = gitdir(root);
            if let Some(dir) = &dir {
                for hook in hook_files(dir, false) {
                    let mtime = std::fs::metadata(&hook).and_then(|m| m.modified()).ok();
                    snap.hooks.insert(hook, mtime);
                }
            }
            snap.roots.push((root.clone(), dir.is_some()));
        }
        snap
    }

    /// Moves hooks the run added or changed aside and reports risky config in new repositories.
    pub fn review(&self) -> Vec<GitFinding> {
        let mut findings = Vec::new();
        for (root, existed) in &self.roots {
            let Some(dir) = gitdir(root) else { continue };
            for hook in hook_files(&dir, !existed) {
                let mtime = std::fs::metadata(&hook).and_then(|m| m.modified()).ok();
                if self.hooks.get(&hook) == Some(&mtime) {
                    continue;
                }
                let mut aside = hook.clone().into_os_string();
                aside.push(QUARANTINE_SUFFIX);
                let moved = std::fs::rename(&hook, &aside).is_ok();
                if moved {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o644));
                }
                findings.push(GitFinding {
                    path: hook.clone(),
                    detail: if moved {
                        format!("the command added this git hook; moved aside to {}", Path::new(&aside).display())
                    } else {
                        "the command added this git hook, and it could not be moved aside: review it".into()
                    },
                });
            }
            if !existed {
                findings.extend(risky_config(&dir.join("config")));
            }
        }
        findings
    }
}

/// Keys in a git config file that make git run programs.
fn risky_config(path: &Path) -> Vec<GitFinding> {
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
            out.push(GitFinding {
                path: path.to_path_buf(),
                detail: format!("the repository created during the run sets `{section}.{key}`, which runs a program: review it before using git here"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hooks_are_moved_aside_and_config_reported() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/gitcheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        std::fs::write(root.join(".git/hooks/pre-commit"), "#!/bin/sh\nevil\n").unwrap();
        std::fs::write(root.join(".git/hooks/pre-commit.sample"), "ok").unwrap();
        std::fs::write(root.join(".git/config"), "[core]\n\tfsmonitor = evil\n[alias]\n\tx = !sh\n\tst = status\n")
            .unwrap();
        let findings = snap.review();
        assert_eq!(findings.len(), 3, "{findings:?}");
        assert!(!root.join(".git/hooks/pre-commit").exists());
        assert!(root.join(format!(".git/hooks/pre-commit{QUARANTINE_SUFFIX}")).exists());
        assert!(findings[1].detail.contains("core.fsmonitor"));
        assert!(findings[2].detail.contains("alias.x"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn untouched_hooks_stay() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/gitcheck2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(".git/modules/sub/hooks")).unwrap();
        std::fs::write(root.join(".git/modules/sub/hooks/post-checkout"), "x").unwrap();
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        assert!(snap.review().is_empty());
        std::fs::write(root.join(".git/modules/sub/hooks/pre-push"), "x").unwrap();
        assert_eq!(snap.review().len(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
