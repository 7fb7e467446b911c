//! Git config files, read the way git reads them: which settings are harmless enough to keep
//! after a run, and where a config makes git look next (the files it includes and the folders
//! its `core.hooksPath` names). Also the plan's half of the git protection: the hooks folders
//! and included files of the configs git will read for a writable root, kept read-only during
//! the run.

use ringfence_policy::normalize;
use std::path::{Path, PathBuf};

/// Config files larger than this are not read.
pub const READ_CAP: u64 = 1 << 20;

/// How deep git follows `include.path` (its `MAX_INCLUDE_DEPTH`).
pub const INCLUDE_DEPTH: usize = 10;

/// Config files read for one plan at most: a loop of includes ends here.
const PLAN_FILES: usize = 64;

/// URL schemes git handles itself. Any other `scheme://` makes git run `git-remote-<scheme>`,
/// a program found in `PATH`.
const BUILTIN_SCHEMES: &[&str] = &["http", "https", "ftp", "ftps", "git", "ssh", "git+ssh", "ssh+git"];

/// What a setting's value is judged against: the writable roots (a local repository there
/// could be the command's), the folder holding the config (relative paths start there), and
/// whether a folder is this git directory's own worktree (its `.git` file points back here).
pub struct Context<'a> {
    pub roots: &'a [PathBuf],
    pub dir: &'a Path,
    pub own_worktree: &'a dyn Fn(&Path) -> bool,
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
fn parse(text: &[u8]) -> Vec<ConfigLine> {
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
        out.push(ConfigLine { section: section.clone(), body: line.to_string(), key, doubtful });
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

/// A setting's value as git reads it: after `=`, without an inline comment, unquoted, escapes
/// resolved. None for a bare key, or a value this parser can't take apart as git would.
fn value(body: &str) -> Option<String> {
    let (_, raw) = body.split_once('=')?;
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = raw.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                c @ ('\\' | '"') => out.push(c),
                _ => return None,
            },
            '#' | ';' if !quoted => break,
            c => out.push(c),
        }
    }
    (!quoted).then(|| out.trim_end().to_string())
}

/// Whether `path` lies in one of the writable roots, once links on the host are resolved.
fn in_roots(path: &Path, roots: &[PathBuf]) -> bool {
    let path = crate::canon::canonicalize_lenient(&normalize(path));
    roots.iter().any(|r| path.starts_with(r))
}

/// Whether a remote or submodule URL may stay: a URL of a scheme git handles itself, an
/// scp-like `host:path`, or an absolute local path outside every writable root. Not a
/// `<transport>::address` (git runs a helper for it; `ext::` runs any command), another
/// scheme (git runs `git-remote-<scheme>` from `PATH`), a relative path (its base is wherever
/// git runs), or a local repository in a writable root (the command may have made it, and a
/// push or fetch runs its hooks).
fn url_is_safe(url: &str, roots: &[PathBuf]) -> bool {
    if let Some((transport, _)) = url.split_once("::") {
        if !transport.is_empty() && transport.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return false;
        }
    }
    let local = match url.split_once("://") {
        Some(("file", rest)) => rest,
        Some((scheme, _)) => return BUILTIN_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()),
        None => match (url.find(':'), url.find('/')) {
            (Some(colon), slash) if slash.is_none_or(|s| colon < s) => return true,
            _ => url,
        },
    };
    Path::new(local).is_absolute() && !in_roots(Path::new(local), roots)
}

/// Settings a git config may keep after the run: repository format, identity, remotes and
/// branches by URL and refspec, display, git-lfs's own filter, a worktree inside the writable
/// roots. Anything else (hooks, other filters, helpers, editors, pagers, fsmonitor, includes,
/// aliases, ssh commands, upload-pack paths) is dropped.
fn harmless(section: &str, key: &str, body: &str, cx: &Context) -> bool {
    let (name, sub) = section.split_once(' ').map_or((section, None), |(n, s)| (n, Some(s)));
    let value = value(body);
    // git-lfs's own filter, exactly as `git lfs install` writes it: a program name the command
    // chose would be something else.
    if section == "filter \"lfs\"" {
        return matches!(
            (key, value.as_deref().unwrap_or("")),
            ("clean", "git-lfs clean -- %f")
                | ("smudge", "git-lfs smudge -- %f")
                | ("process", "git-lfs filter-process")
                | ("required", "true")
        );
    }
    match (name, sub.is_some(), key) {
        ("remote", true, "url" | "pushurl") | ("submodule", true, "url") => {
            value.is_some_and(|v| url_is_safe(&v, cx.roots))
        }
        // Written by `git submodule update`, pointing at the submodule's folder, whose `.git`
        // file points back; elsewhere a checkout there would write what the command chose.
        ("core", false, "worktree") => {
            value.is_some_and(|v| !v.is_empty() && (cx.own_worktree)(&normalize(&cx.dir.join(v))))
        }
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
            ["fetch", "push", "tagopt", "prune", "mirror", "promisor", "partialclonefilter"].contains(&k)
        }
        ("branch", true, k) => ["remote", "merge", "rebase", "pushremote"].contains(&k),
        ("submodule", true, k) => ["active", "branch"].contains(&k),
        ("user", false, k) => ["name", "email"].contains(&k),
        ("init", false, "defaultbranch") | ("pull", false, "rebase") | ("push", false, "default") => true,
        ("fetch", false, "prune") | ("gc", false, "auto") => true,
        ("color", _, _) | ("advice", _, _) => true,
        _ => false,
    }
}

/// A config judged: the settings it would lose, and the copy it would be rebuilt to.
pub struct Judged {
    /// `section.key` of every setting not known to be harmless; empty when all are.
    pub dropped: Vec<String>,
    /// The config with only its harmless settings, under their section headers.
    pub rebuilt: String,
    /// Whether the judgement depends on the config's folder (a `core.worktree`), so it can't
    /// be reused for another link to the same file.
    pub folder_dependent: bool,
}

/// Judges a config against the allow-list of [`harmless`].
pub fn judge(text: &[u8], cx: &Context) -> Judged {
    let mut judged = Judged { dropped: Vec::new(), rebuilt: String::new(), folder_dependent: false };
    let mut current = None;
    for line in parse(text) {
        let key = line.key.as_deref().unwrap_or("");
        if line.doubtful || (line.key.is_some() && !harmless(&line.section, key, &line.body, cx)) {
            judged.dropped.push(format!("{}.{key}", line.section));
            continue;
        }
        if line.key.is_none() {
            continue;
        }
        judged.folder_dependent |= line.section == "core" && key == "worktree";
        let header = format!("[{}]", line.section);
        if current.as_ref() != Some(&header) {
            judged.rebuilt.push_str(&header);
            judged.rebuilt.push('\n');
            current = Some(header);
        }
        judged.rebuilt.push('\t');
        judged.rebuilt.push_str(&line.body);
        judged.rebuilt.push('\n');
    }
    judged
}

/// Where a config makes git look next, as written: the files it includes (`include.path`,
/// and `includeIf.<condition>.path` whatever the condition, since it may hold) and the
/// folders `core.hooksPath` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    pub includes: Vec<String>,
    pub hooks_paths: Vec<String>,
}

/// The [`Links`] of a config.
pub fn links(text: &[u8]) -> Links {
    let mut out = Links::default();
    for line in parse(text) {
        let is_include = line.section == "include" || line.section.starts_with("includeif ");
        let target = match (line.key.as_deref(), is_include) {
            (Some("path"), true) => &mut out.includes,
            (Some("hookspath"), false) if line.section == "core" => &mut out.hooks_paths,
            _ => continue,
        };
        if let Some(v) = value(&line.body).filter(|v| !v.is_empty()) {
            target.push(v);
        }
    }
    out
}

/// A path from a config as git resolves it: `~/` from the home folder, a relative one from
/// `base`. None for `~user/` forms.
pub fn resolve(value: &str, base: &Path, home: &Path) -> Option<PathBuf> {
    let path = match value.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if value.starts_with('~') => return None,
        None => base.join(value),
    };
    Some(normalize(&path))
}

/// Reads a host config file for the plan: a regular file (opened without blocking, so a FIFO
/// can't stall the launch), at most [`READ_CAP`] bytes.
fn read_host_file(path: &Path) -> Option<Vec<u8>> {
    use nix::fcntl::OFlag;
    use std::io::Read;
    let fd =
        nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .ok()?;
    let st = nix::sys::stat::fstat(&fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 > READ_CAP {
        return None;
    }
    let mut text = Vec::new();
    std::fs::File::from(fd).take(READ_CAP).read_to_end(&mut text).ok()?;
    Some(text)
}

/// The user's and the system's git configs, as git finds them.
pub fn global_configs(home: &Path) -> Vec<PathBuf> {
    let mut out = vec![home.join(".gitconfig"), home.join(".config/git/config"), PathBuf::from("/etc/gitconfig")];
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        out.push(Path::new(&xdg).join("git/config"));
    }
    out
}

/// The config files of the repository at the top of `root`: its `.git` folder's, or those of
/// the git directory a `.git` file names (and of its common directory).
fn repository_configs(root: &Path) -> Vec<PathBuf> {
    let dot_git = root.join(".git");
    let gitdir = match std::fs::symlink_metadata(&dot_git) {
        Ok(m) if m.is_dir() => dot_git,
        Ok(m) if m.is_file() => {
            let Some(text) = read_host_file(&dot_git) else { return Vec::new() };
            let text = String::from_utf8_lossy(&text);
            let Some(target) = text.strip_prefix("gitdir: ") else { return Vec::new() };
            normalize(&root.join(target.trim_end()))
        }
        _ => return Vec::new(),
    };
    let mut out = vec![gitdir.join("config"), gitdir.join("config.worktree")];
    if let Some(common) = read_host_file(&gitdir.join("commondir")) {
        out.push(normalize(&gitdir.join(String::from_utf8_lossy(&common).trim_end())).join("config"));
    }
    out
}

/// Paths git uses for the writable roots that the plan keeps read-only during the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlannedGitPaths {
    /// Every `core.hooksPath` folder: hooks there run on the host at the next commit.
    pub hook_dirs: Vec<PathBuf>,
    /// Every file the configs include, followed as deep as git follows them: a setting the
    /// command adds there (`core.fsmonitor`, `core.hooksPath`) git would act on.
    pub includes: Vec<PathBuf>,
}

/// What the user's global configs and each root's repository config make git use: their
/// include graph (every condition taken as true) and the hooks folders named anywhere in it.
/// A relative hooks folder is relative to the worktree, so it is taken in every root.
pub fn planned_paths(roots: &[PathBuf], home: &Path) -> PlannedGitPaths {
    let mut tops = global_configs(home);
    tops.extend(roots.iter().flat_map(|r| repository_configs(r)));
    let mut out = PlannedGitPaths::default();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut queue: Vec<(PathBuf, usize)> = tops.into_iter().map(|t| (t, 0)).collect();
    while let Some((file, depth)) = queue.pop() {
        if seen.contains(&file) || seen.len() >= PLAN_FILES {
            continue;
        }
        seen.push(file.clone());
        let Some(text) = read_host_file(&file) else { continue };
        let found = links(&text);
        let base = file.parent().unwrap_or(Path::new("/"));
        for include in found.includes.iter().filter_map(|v| resolve(v, base, home)) {
            if depth < INCLUDE_DEPTH {
                queue.push((include.clone(), depth + 1));
            }
            out.includes.push(include);
        }
        for value in &found.hooks_paths {
            let bases: Vec<&Path> = if Path::new(value).is_absolute() {
                vec![Path::new("/")]
            } else {
                roots.iter().map(|r| r.as_path()).collect()
            };
            out.hook_dirs.extend(bases.into_iter().filter_map(|b| resolve(value, b, home)));
        }
    }
    for list in [&mut out.hook_dirs, &mut out.includes] {
        list.sort();
        list.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(roots: &[PathBuf]) -> Context<'_> {
        Context { roots, dir: Path::new("/w/.git"), own_worktree: &|_| false }
    }

    #[test]
    fn parsing_matches_git() {
        let text = "[alias]\n\tst = status\n\tx = !sh -c evil\n[core] fsmonitor = evil\n\
                    [include]\n\tpath = ../evil.cfg\n[includeIf \"onbranch:a]b\"] path = x\n# pager = no\n\
                    [user] [core] sshCommand = evil\n[remote \"origin\"]\n\turl = https://example.invalid/x\n";
        let judged = judge(text.as_bytes(), &cx(&[]));
        assert_eq!(
            judged.dropped,
            vec![
                "alias.st",
                "alias.x",
                "core.fsmonitor",
                "include.path",
                "includeif \"onbranch:a]b\".path",
                "core.sshcommand"
            ]
        );
        assert_eq!(judged.rebuilt, "[remote \"origin\"]\n\turl = https://example.invalid/x\n");
        // A kept key on a header line keeps its own text, not what follows a later `]`.
        let tricky = "[core] bare = x] fsmonitor = evil\n[alias]\n\ty = log\n";
        assert_eq!(judge(tricky.as_bytes(), &cx(&[])).rebuilt, "[core]\n\tbare = x] fsmonitor = evil\n");
        let lfs = "[filter \"lfs\"]\n\tprocess = git-lfs filter-process\n\tsmudge = evil\n";
        assert_eq!(judge(lfs.as_bytes(), &cx(&[])).dropped, vec!["filter \"lfs\".smudge"]);
        assert!(judge(b"[core]\n\tbare = false\n[user]\n\tname = x\n", &cx(&[])).dropped.is_empty());
        assert_eq!(judge(b"[core]\n\tbare = \\\n\tfalse\n", &cx(&[])).dropped, vec!["core.bare", "core.false"]);
    }

    #[test]
    fn urls_that_run_programs_or_reach_writable_roots_are_dropped() {
        let roots = [PathBuf::from("/w")];
        let safe = |url: &str| url_is_safe(url, &roots);
        for ok in
            ["https://example.invalid/x.git", "git@example.invalid:x.git", "ssh://h/x", "/srv/x.git", "file:///srv/x"]
        {
            assert!(safe(ok), "{ok}");
        }
        for bad in [
            "ext::sh -c touch% x",
            "fd::3",
            "pwn://x",
            "/w/remote.git",
            "file:///w/x",
            "../x",
            "x.git",
            "/w/../w/y",
            "~/x",
        ] {
            assert!(!safe(bad), "{bad}");
        }
        let text = "[remote \"o\"]\n\turl = \"ext::sh -c x\"\n\tfetch = +refs/heads/*:refs/remotes/o/*\n\
                    [remote \"p\"]\n\tpushurl = /w/r.git # a comment\n[submodule \"s\"]\n\turl = ../s\n";
        let judged = judge(text.as_bytes(), &cx(&roots));
        assert_eq!(judged.dropped, vec!["remote \"o\".url", "remote \"p\".pushurl", "submodule \"s\".url"]);
    }

    #[test]
    fn a_worktree_is_kept_only_where_it_points_back() {
        let own = |w: &Path| w == Path::new("/w/lib");
        let sub = Context { roots: &[], dir: Path::new("/w/.git/modules/lib"), own_worktree: &own };
        let judged = judge(b"[core]\n\tworktree = ../../../lib\n", &sub);
        assert!(judged.dropped.is_empty() && judged.folder_dependent);
        assert_eq!(judge(b"[core]\n\tworktree = /home/u\n", &sub).dropped, vec!["core.worktree"]);
        assert_eq!(judge(b"[core]\n\tworktree = ../../..\n", &sub).dropped, vec!["core.worktree"]);
    }

    #[test]
    fn links_are_found_in_includes_and_hooks_paths() {
        let text = "[include]\n\tpath = a.cfg\n[includeIf \"gitdir:~/\"]\n\tpath = \"~/b.cfg\" ; why\n\
                    [core]\n\thooksPath = .githooks\n[other]\n\tpath = no\n";
        let found = links(text.as_bytes());
        assert_eq!(found.includes, vec!["a.cfg", "~/b.cfg"]);
        assert_eq!(found.hooks_paths, vec![".githooks"]);
        assert_eq!(resolve("~/b.cfg", Path::new("/x"), Path::new("/h")), Some(PathBuf::from("/h/b.cfg")));
        assert_eq!(resolve("../c", Path::new("/x/y"), Path::new("/h")), Some(PathBuf::from("/x/c")));
        assert_eq!(resolve("~other/c", Path::new("/x"), Path::new("/h")), None);
    }

    #[test]
    fn the_plan_follows_includes_from_global_and_repository_configs() {
        let root = std::env::temp_dir().join(format!("rf-gitcfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (home, ws) = (root.join("home"), root.join("ws"));
        std::fs::create_dir_all(ws.join(".git")).unwrap();
        std::fs::create_dir_all(home.join(".config/git")).unwrap();
        std::fs::write(home.join(".gitconfig"), "[includeIf \"gitdir:~/\"]\n\tpath = .config/git/extra\n").unwrap();
        std::fs::write(home.join(".config/git/extra"), "[core]\n\thooksPath = ~/hooks\n[include]\n\tpath = deeper\n")
            .unwrap();
        std::fs::write(ws.join(".git/config"), "[include]\n\tpath = ../shared.cfg\n").unwrap();
        std::fs::write(ws.join("shared.cfg"), "[core]\n\thooksPath = .githooks\n[include]\n\tpath = absent.cfg\n")
            .unwrap();
        let found = planned_paths(std::slice::from_ref(&ws), &home);
        let mut expected = vec![
            home.join(".config/git/extra"),
            home.join(".config/git/deeper"),
            ws.join("shared.cfg"),
            ws.join("absent.cfg"),
        ];
        expected.sort();
        assert_eq!(found.includes, expected);
        assert_eq!(found.hook_dirs, vec![home.join("hooks"), ws.join(".githooks")]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
