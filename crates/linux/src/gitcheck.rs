//! Git state the mount view can't protect in advance: a repository the command creates during
//! the run (`git init` must work, so an absent `.git` can't be made read-only), `commondir`
//! files (an empty placeholder would break git), submodule and worktree git directories
//! (`git submodule update` must write them), a `.git` swapped for a link or a gitfile, and a
//! writable root turned into a bare repository. What they contain can make the user's git run
//! programs later, so after the run anything the command added or changed there is moved aside
//! (configs are rebuilt from the keys known to be harmless) and reported.
//!
//! The sandbox, or a concurrent run in the same folder, controls these trees: every lookup is
//! relative to the writable root and never follows a symbolic link (openat2), and nothing is
//! opened, written or changed by path.

use nix::fcntl::{openat2, renameat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Files larger than this are not read: a change to one is moved aside whole.
const READ_CAP: u64 = 1 << 20;

/// Suffix given to a file moved aside.
pub const QUARANTINE_SUFFIX: &str = ".ringfence-quarantined";

/// Something the run left that would run code on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitFinding {
    pub path: PathBuf,
    pub detail: String,
}

/// What stood at a path: nothing, a link (its target), a file (its content), or a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Missing,
    Link(OsString),
    File(Vec<u8>),
    /// A file over the read cap: its size and change time (which the command can't set back)
    /// stand for its content.
    Large(u64, i64, i64),
    Dir,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hook,
    CommonDir,
    Config,
    /// The worktree's `.git` itself, when it is not a directory.
    DotGit,
    /// A folder git follows (`hooks`, a submodule's git directory), when it is not a folder.
    Folder,
}

fn open_beneath(root: &OwnedFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_fd(), rel, how)
}

/// Opens `rel` for reading only if it is a regular file. Non-blocking, and checked once open:
/// the sandbox or a concurrent run may have swapped in a FIFO, which would block the open or
/// the read.
fn open_regular(root: &OwnedFd, rel: &Path) -> Option<OwnedFd> {
    let fd = open_beneath(root, rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK).ok()?;
    nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(fd)
}

/// The folder holding `rel` (opened without following links), and `rel`'s last name.
fn parent_of<'a>(root: &OwnedFd, rel: &'a Path) -> nix::Result<(OwnedFd, &'a std::ffi::OsStr)> {
    let name = rel.file_name().ok_or(nix::Error::EINVAL)?;
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((open_beneath(root, parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?, name))
}

fn entry(root: &OwnedFd, rel: &Path) -> Entry {
    let Ok((dir, name)) = parent_of(root, rel) else { return Entry::Missing };
    let Ok(st) = fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else { return Entry::Missing };
    match SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) {
        SFlag::S_IFLNK => Entry::Link(nix::fcntl::readlinkat(dir.as_fd(), name).unwrap_or_default()),
        SFlag::S_IFDIR => Entry::Dir,
        SFlag::S_IFREG if st.st_size as u64 > READ_CAP => {
            Entry::Large(st.st_size as u64, st.st_ctime, st.st_ctime_nsec)
        }
        SFlag::S_IFREG => {
            let Some(fd) = open_regular(root, rel) else { return Entry::Other };
            let mut content = Vec::new();
            let read = std::fs::File::from(fd).take(READ_CAP + 1).read_to_end(&mut content);
            if read.is_err() || content.len() as u64 > READ_CAP {
                return Entry::Other;
            }
            Entry::File(content)
        }
        _ => Entry::Other,
    }
}

/// Names in a folder (not following links), or none.
fn names(root: &OwnedFd, rel: &Path) -> Vec<OsString> {
    let Ok(fd) = open_beneath(root, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY) else { return Vec::new() };
    let Ok(mut dir) = nix::dir::Dir::from_fd(fd) else { return Vec::new() };
    dir.iter()
        .flatten()
        .map(|e| OsString::from(std::ffi::OsStr::from_bytes(e.file_name().to_bytes())))
        .filter(|n| n != "." && n != "..")
        .collect()
}

use std::os::unix::ffi::OsStrExt;

/// Git directories below `rel` (`.git/modules/vendor/lib`, submodules of submodules).
fn nested_gitdirs(root: &OwnedFd, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    for name in names(root, rel) {
        let path = rel.join(&name);
        if ["objects", "refs", "logs"].iter().any(|n| name == *n) {
            continue;
        }
        match entry(root, &path) {
            Entry::Dir => {}
            // A link here would make git use a git directory the command chose.
            Entry::Link(_) => {
                out.push(path);
                continue;
            }
            _ => continue,
        }
        if ["HEAD", "config", "commondir"].iter().any(|f| !matches!(entry(root, &path.join(f)), Entry::Missing)) {
            out.push(path.clone());
        }
        nested_gitdirs(root, &path, depth + 1, out);
    }
}

/// The files of git directory `dir` (relative to the root) that can make git run programs or
/// read another directory. `own` includes its hooks and config: not for a repository that
/// existed before the run (those are read-only in the sandbox).
fn sensitive(root: &OwnedFd, dir: &Path, own: bool, out: &mut Vec<(PathBuf, Kind)>) {
    out.push((dir.join("commondir"), Kind::CommonDir));
    out.push((dir.join("config.worktree"), Kind::Config));
    if own {
        out.push((dir.join("config"), Kind::Config));
        out.push((dir.join("hooks"), Kind::Folder));
        for hook in names(root, &dir.join("hooks")) {
            let name = hook.to_string_lossy();
            if !name.ends_with(".sample") && !name.ends_with(QUARANTINE_SUFFIX) {
                out.push((dir.join("hooks").join(&hook), Kind::Hook));
            }
        }
    }
}

/// Whether a folder looks like a git directory (as git would take the worktree for a bare
/// repository).
fn looks_like_gitdir(root: &OwnedFd, dir: &Path) -> bool {
    matches!(entry(root, &dir.join("HEAD")), Entry::File(_) | Entry::Link(_))
        && entry(root, &dir.join("objects")) == Entry::Dir
        && entry(root, &dir.join("refs")) == Entry::Dir
}

/// Everything to watch in one writable root.
fn watched(root: &OwnedFd, repo_existed: bool) -> Vec<(PathBuf, Kind)> {
    let mut out = vec![(PathBuf::from(".git"), Kind::DotGit)];
    if entry(root, Path::new(".git")) == Entry::Dir {
        let mut dirs = Vec::new();
        nested_gitdirs(root, Path::new(".git/modules"), 0, &mut dirs);
        nested_gitdirs(root, Path::new(".git/worktrees"), 0, &mut dirs);
        sensitive(root, Path::new(".git"), !repo_existed, &mut out);
        for dir in dirs {
            if entry(root, &dir) == Entry::Dir {
                sensitive(root, &dir, true, &mut out);
            } else {
                out.push((dir, Kind::Folder));
            }
        }
    }
    if looks_like_gitdir(root, Path::new(".")) {
        sensitive(root, Path::new(""), true, &mut out);
    }
    out
}

/// What was there before the run, per writable root.
#[derive(Clone, Debug, Default)]
pub struct GitSnapshot {
    roots: Vec<(PathBuf, bool, BTreeMap<PathBuf, Entry>)>,
}

fn open_root(root: &Path) -> Option<OwnedFd> {
    nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok()
}

impl GitSnapshot {
    pub fn take(write_roots: &[PathBuf]) -> Self {
        let mut snap = GitSnapshot::default();
        for root in write_roots {
            let Some(fd) = open_root(root) else { continue };
            let existed = entry(&fd, Path::new(".git")) == Entry::Dir;
            let mut seen = BTreeMap::new();
            // Watch as if the repository were new, so files it had are known when compared.
            for (rel, _) in watched(&fd, false) {
                let e = entry(&fd, &rel);
                seen.insert(rel, e);
            }
            snap.roots.push((root.clone(), existed, seen));
        }
        snap
    }

    /// Moves aside what the run added or changed that could run code, and says so.
    pub fn review(&self) -> Vec<GitFinding> {
        let mut findings = Vec::new();
        for (root, existed, before) in &self.roots {
            let Some(fd) = open_root(root) else { continue };
            let dot_git_same = before.get(Path::new(".git")) == Some(&entry(&fd, Path::new(".git")));
            for (rel, kind) in watched(&fd, *existed && dot_git_same) {
                let now = entry(&fd, &rel);
                let was = before.get(&rel).cloned().unwrap_or(Entry::Missing);
                let folder_kind = matches!(kind, Kind::DotGit | Kind::Folder);
                if now == was || now == Entry::Missing || (folder_kind && now == Entry::Dir) {
                    continue;
                }
                let path = root.join(&rel);
                let finding = match (kind, &now) {
                    (Kind::Config, Entry::File(text)) if allowed_config(text).is_none() => continue,
                    (Kind::Config, Entry::Large(..)) => {
                        quarantine(&fd, &rel, &path, "the command wrote a git config too large to check".into())
                    }
                    (Kind::Config, Entry::File(text)) => defuse_config(&fd, &rel, text, &path),
                    (Kind::Hook, _) => quarantine(&fd, &rel, &path, "the command added this git hook".into()),
                    (Kind::CommonDir, _) => quarantine(
                        &fd,
                        &rel,
                        &path,
                        "the command wrote this commondir, which points git at another directory".into(),
                    ),
                    (Kind::DotGit, _) => quarantine(
                        &fd,
                        &rel,
                        &path,
                        "the command made .git a link or a gitfile, which points git at a repository it chose".into(),
                    ),
                    (Kind::Folder, _) => quarantine(
                        &fd,
                        &rel,
                        &path,
                        "the command put a link where git expects a folder, to run or read what it chose".into(),
                    ),
                    (Kind::Config, _) => {
                        quarantine(&fd, &rel, &path, "the command put a link or special file here as git config".into())
                    }
                };
                findings.push(finding);
            }
        }
        findings
    }
}

/// Renames `rel` aside within its folder (never following links) and takes execute permission
/// from a regular file.
fn quarantine(root: &OwnedFd, rel: &Path, path: &Path, why: String) -> GitFinding {
    let moved = parent_of(root, rel).and_then(|(dir, name)| {
        let mut aside = name.to_os_string();
        aside.push(QUARANTINE_SUFFIX);
        renameat(dir.as_fd(), name, dir.as_fd(), aside.as_os_str())?;
        if let Some(fd) = open_regular(&dir, Path::new(&aside)) {
            let _ = nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o600));
        }
        Ok(())
    });
    let mut aside = path.as_os_str().to_owned();
    aside.push(QUARANTINE_SUFFIX);
    let detail = match moved {
        Ok(()) => format!("{why}; moved aside to {}", Path::new(&aside).display()),
        Err(e) => format!("{why}, and moving it aside failed ({e}): review it before using git here"),
    };
    GitFinding { path: path.to_path_buf(), detail }
}

/// Moves a config aside and writes back a copy with only the settings known to be harmless,
/// so the repository keeps working but runs nothing the command chose.
fn defuse_config(root: &OwnedFd, rel: &Path, text: &[u8], path: &Path) -> GitFinding {
    let dropped = allowed_config(text).unwrap_or_default();
    let why = format!("the command set {} here, which git would act on", dropped.join(", "));
    let kept = rebuild_config(text);
    let mut finding = quarantine(root, rel, path, why);
    // Created exclusively and without following links: a link placed here meanwhile wins nothing.
    let written = parent_of(root, rel).and_then(|(dir, name)| {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(dir.as_fd(), name, flags, Mode::from_bits_truncate(0o644))?;
        std::fs::File::from(fd).write_all(kept.as_bytes()).map_err(|_| nix::Error::EIO)
    });
    if written.is_err() {
        finding.detail.push_str("; no cleaned copy was written back");
    }
    finding
}

/// Settings a git config may keep after the run: repository format, identity, remotes and
/// branches by URL and refspec, display, git-lfs's own filter. Anything else (hooks, other
/// filters, helpers, editors, pagers, fsmonitor, includes, aliases, ssh commands, upload-pack
/// paths) is dropped.
fn harmless(section: &str, key: &str, body: &str) -> bool {
    let (name, sub) = section.split_once(' ').map_or((section, None), |(n, s)| (n, Some(s)));
    // git-lfs's own filter, exactly as `git lfs install` writes it: a program name the command
    // chose would be something else.
    let value = body.split_once('=').map_or("", |(_, v)| v.trim());
    if section == "filter \"lfs\"" {
        return matches!(
            (key, value),
            ("clean", "git-lfs clean -- %f")
                | ("smudge", "git-lfs smudge -- %f")
                | ("process", "git-lfs filter-process")
                | ("required", "true")
        );
    }
    match (name, sub.is_some(), key) {
        ("core", false, k) => [
            "repositoryformatversion",
            "filemode",
            "bare",
            "logallrefupdates",
            "ignorecase",
            "precomposeunicode",
            "symlinks",
            "autocrlf",
            "eol",
            "safecrlf",
            "quotepath",
            "abbrev",
            "compression",
        ]
        .contains(&k),
        ("extensions", false, k) => ["objectformat", "worktreeconfig", "refstorage"].contains(&k),
        ("remote", true, k) => {
            ["url", "pushurl", "fetch", "push", "tagopt", "prune", "mirror", "promisor", "partialclonefilter"]
                .contains(&k)
        }
        ("branch", true, k) => ["remote", "merge", "rebase", "pushremote"].contains(&k),
        ("submodule", true, k) => ["url", "active", "branch"].contains(&k),
        ("user", false, k) => ["name", "email"].contains(&k),
        ("init", false, "defaultbranch") | ("pull", false, "rebase") | ("push", false, "default") => true,
        ("fetch", false, "prune") | ("gc", false, "auto") => true,
        ("color", _, _) | ("advice", _, _) => true,
        _ => false,
    }
}

/// One parsed line: the section it is in, the key it sets (lower case), and its raw text.
struct ConfigLine {
    section: String,
    /// The line's setting, after any section headers on it.
    body: String,
    /// The setting's lower-cased name, if the line holds one.
    key: Option<String>,
    /// A line git would read differently than this parser might (a continuation, a header it
    /// can't parse): never kept.
    doubtful: bool,
}

/// Parses a git config the way git reads it: a leading byte-order mark, several headers on a
/// line, quoted subsections (which may contain `]`), comments, continuations.
fn parse_config(text: &[u8]) -> Vec<(String, ConfigLine)> {
    let text = String::from_utf8_lossy(text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text)).into_owned();
    let mut section = String::new();
    let mut continued = false;
    let mut out = Vec::new();
    for raw in text.lines() {
        let mut line = raw.trim();
        let mut doubtful = continued;
        continued = line.ends_with('\\');
        while let Some(rest) = line.strip_prefix('[') {
            match split_header(rest) {
                Some((name, after)) => {
                    section = name;
                    line = after.trim_start();
                }
                None => {
                    doubtful = true;
                    line = "";
                }
            }
        }
        let setting = line.split(['#', ';']).next().unwrap_or("").trim();
        let key = (!setting.is_empty()).then(|| setting.split('=').next().unwrap_or("").trim().to_ascii_lowercase());
        doubtful |= continued;
        let line = ConfigLine { section: section.clone(), body: line.to_string(), key, doubtful };
        out.push((raw.to_string(), line));
    }
    out
}

/// A section header's name (`remote "origin"` → `remote "origin"`, lower-cased name) and the
/// text after its closing bracket.
fn split_header(rest: &str) -> Option<(String, &str)> {
    let name_end = rest.find(|c: char| c == ']' || c == '"' || c.is_whitespace()).unwrap_or(rest.len());
    let name = rest[..name_end].to_ascii_lowercase();
    let after_name = rest[name_end..].trim_start();
    if let Some(after) = after_name.strip_prefix(']') {
        return Some((name, after));
    }
    let quoted = after_name.strip_prefix('"')?;
    let mut sub = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => sub.push(chars.next()?.1),
            '"' => {
                let after = quoted[i + 1..].trim_start().strip_prefix(']')?;
                return Some((format!("{name} \"{sub}\""), after));
            }
            c => sub.push(c),
        }
    }
    None
}

/// The settings of a config that are not known to be harmless (`section.key`), or None when
/// all of them are.
fn allowed_config(text: &[u8]) -> Option<Vec<String>> {
    let bad: Vec<String> = parse_config(text)
        .into_iter()
        .filter_map(|(_, l)| {
            let key = l.key.as_deref().unwrap_or("");
            let shown = format!("{}.{key}", l.section);
            (l.doubtful || (l.key.is_some() && !harmless(&l.section, key, &l.body))).then_some(shown)
        })
        .collect();
    (!bad.is_empty()).then_some(bad)
}

/// The config with only its harmless settings, under their section headers.
fn rebuild_config(text: &[u8]) -> String {
    let mut out = String::new();
    let mut current = None;
    for (_, line) in parse_config(text) {
        let Some(key) = &line.key else { continue };
        if line.doubtful || !harmless(&line.section, key, &line.body) {
            continue;
        }
        let header = format!("[{}]", line.section);
        if current.as_ref() != Some(&header) {
            out.push_str(&header);
            out.push('\n');
            current = Some(header);
        }
        out.push('\t');
        out.push_str(&line.body);
        out.push('\n');
    }
    out
}

/// Where git looks for the hooks of the worktree `root`: every `core.hooksPath` its repository
/// or the user's global config sets. Hooks there run on the host at the next commit, so the
/// plan keeps them read-only like `.git/hooks`.
pub fn hook_dirs(root: &Path, home: &Path) -> Vec<PathBuf> {
    let mut configs = vec![home.join(".gitconfig"), home.join(".config/git/config"), PathBuf::from("/etc/gitconfig")];
    configs.push(root.join(".git/config"));
    let mut out = Vec::new();
    for config in configs {
        let Ok(text) = std::fs::read(&config) else { continue };
        for (_, line) in parse_config(&text) {
            if line.section != "core" || line.key.as_deref() != Some("hookspath") {
                continue;
            }
            let value = line.body.split_once('=').map(|(_, v)| v.trim().trim_matches('"')).unwrap_or("");
            if value.is_empty() {
                continue;
            }
            let dir = match value.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => root.join(value),
            };
            out.push(ringfence_policy::normalize(&dir));
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
        root.canonicalize().unwrap()
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
        // The config stays, with only its harmless settings; the original is kept aside.
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
    fn links_are_moved_never_followed() {
        let root = scratch("links");
        let outside = scratch("links-outside");
        std::fs::write(outside.join("tool"), "keep").unwrap();
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        std::fs::create_dir_all(root.join(".git/modules/x")).unwrap();
        std::fs::write(root.join(".git/modules/x/HEAD"), "ref: refs/heads/x\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join(".git/modules/x/hooks")).unwrap();
        std::os::unix::fs::symlink(outside.join("tool"), root.join(".git/commondir")).unwrap();
        let findings = snap.review();
        // The linked hooks folder and the linked commondir, each moved aside, the target untouched.
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(std::fs::symlink_metadata(root.join(".git/modules/x/hooks")).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(outside.join("tool")).unwrap().permissions().mode() & 0o777;
        assert_eq!((std::fs::read_to_string(outside.join("tool")).unwrap().as_str(), mode), ("keep", 0o644));
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_linked_dot_git_and_a_bare_root_are_caught() {
        let root = scratch("bare");
        std::fs::create_dir_all(root.join("real")).unwrap();
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        std::os::unix::fs::symlink("real", root.join(".git")).unwrap();
        for dir in ["objects", "refs"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(root.join("config"), "\u{feff}[core] pager = evil\n").unwrap();
        let findings = snap.review();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(!root.join(".git").exists());
        assert_eq!(std::fs::read_to_string(root.join("config")).unwrap(), "");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn config_parsing_matches_git() {
        let text = "[alias]\n\tst = status\n\tx = !sh -c evil\n[core] fsmonitor = evil\n\
                    [include]\n\tpath = ../evil.cfg\n[includeIf \"onbranch:a]b\"] path = x\n# pager = no\n\
                    [user] [core] sshCommand = evil\n[remote \"origin\"]\n\turl = https://example.invalid/x\n";
        let bad = allowed_config(text.as_bytes()).unwrap();
        assert_eq!(
            bad,
            vec![
                "alias.st",
                "alias.x",
                "core.fsmonitor",
                "include.path",
                "includeif \"onbranch:a]b\".path",
                "core.sshcommand"
            ]
        );
        assert_eq!(rebuild_config(text.as_bytes()), "[remote \"origin\"]\n\turl = https://example.invalid/x\n");
        // A kept key on a header line keeps its own text, not what follows a later `]`.
        let tricky = "[core] bare = x] fsmonitor = evil\n[alias]\n\ty = log\n";
        assert_eq!(rebuild_config(tricky.as_bytes()), "[core]\n\tbare = x] fsmonitor = evil\n");
        let lfs = "[filter \"lfs\"]\n\tprocess = git-lfs filter-process\n\tsmudge = evil\n";
        assert_eq!(allowed_config(lfs.as_bytes()).unwrap(), vec!["filter \"lfs\".smudge"]);
        assert!(allowed_config(b"[core]\n\tbare = false\n[user]\n\tname = x\n").is_none());
    }

    #[test]
    fn oversized_configs_and_fifos_are_moved_aside() {
        let root = scratch("odd");
        std::fs::create_dir_all(root.join(".git/modules/a")).unwrap();
        std::fs::create_dir_all(root.join(".git/modules/b")).unwrap();
        let snap = GitSnapshot::take(std::slice::from_ref(&root));
        let mut big = b"[core]\n\tbare = false\n".to_vec();
        big.resize(READ_CAP as usize + 10, b'#');
        std::fs::write(root.join(".git/config.worktree"), &big).unwrap();
        nix::unistd::mkfifo(&root.join(".git/modules/a/config"), Mode::from_bits_truncate(0o644)).unwrap();
        // A review that opened the FIFO for reading would block here forever.
        let findings = snap.review();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings.iter().any(|f| f.detail.contains("too large")));
        assert!(!root.join(".git/config.worktree").exists());
        assert!(!root.join(".git/modules/a/config").exists());
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
        assert_eq!(hook_dirs(&root, &home), vec![home.join("hooks"), root.join(".githooks")]);
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
