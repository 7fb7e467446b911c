//! The parts of a git directory that make git read elsewhere or run programs: its configs
//! (and what they include, and the hooks folders they name), its `commondir`, and the `.git`
//! files that point a worktree at a git directory.

use super::config::{self, Context, INCLUDE_DEPTH, READ_CAP};
use super::fsops::{self, file_type, open_beneath};
use super::{
    worktree_of, At, Facts, Place, Walk, GIT, GIT_DIR_CONFIGS, HOOK_WHY, MAX_FOLLOWED, MAX_GIT_DIRS, POINTER_CAP,
};
use crate::canon::canonicalize_lenient;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use ringfence_policy::normalize;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

impl Walk<'_> {
    /// Reviews a git directory's configs and `commondir` once; false if it was reviewed already
    /// (reached again through a `commondir`).
    pub(super) fn enter_git_dir(&mut self, fd: BorrowedFd, path: &Path, depth: usize) -> bool {
        if let Ok(st) = nix::sys::stat::fstat(fd) {
            if !self.git_dirs.insert((st.st_dev, st.st_ino)) {
                return false;
            }
            if self.git_dirs.len() > MAX_GIT_DIRS {
                self.bound(path, format!("the writable roots hold more than {MAX_GIT_DIRS} git directories"));
                return false;
            }
        }
        let at = At { fd, path, depth, place: Place::GitDir };
        for name in GIT_DIR_CONFIGS {
            self.config_file(&at, OsStr::new(name), Some(worktree_of(path)), 0);
        }
        self.commondir(&at);
        // A relative hooks folder the user's global config names is one in every repository.
        for value in self.relative_hooks.clone() {
            if let Some(dir) = config::resolve(&value, worktree_of(path), &self.review.home) {
                self.hooks_path(&dir);
            }
        }
        true
    }

    /// Follows the user's global configs like any config the run did not write: the files
    /// they include and the hooks folders they name may lie in a writable root, reached
    /// through a link the run changed.
    pub(super) fn global_configs(&mut self) {
        for file in config::global_configs(&self.review.home) {
            self.included(&file, None, 0);
        }
    }

    /// A git config: one the run wrote is rebuilt unless every setting in it is harmless; one
    /// it didn't (or couldn't: read-only in the view) is followed to the files it includes and
    /// the hooks folders it names, which the run may have changed or reached through a link.
    /// `worktree` is what relative hooks folders start from; none for a global config.
    fn config_file(&mut self, at: &At, name: &OsStr, worktree: Option<&Path>, depth: usize) {
        let Some(st) = self.lstat(at, name) else { return };
        let regular = file_type(&st) == libc::S_IFREG;
        if self.is_placeholder(at, name, &st) {
            return;
        }
        if self.skipped(&at.path.join(name)) || !self.is_new(&st) {
            if regular && st.st_size as u64 <= READ_CAP {
                if let Ok(facts) = self.facts(at, name, &st, false) {
                    self.follow(at.path, worktree, &facts.links, depth);
                }
            }
            return;
        }
        if !regular {
            let why = "the command put a link or special file where git reads its config";
            return self.quarantine(at, name, GIT, why.into());
        }
        if st.st_size as u64 > READ_CAP {
            let why = "the command wrote a git config too large to check (over 1 MiB)";
            return self.quarantine(at, name, GIT, why.into());
        }
        match self.facts(at, name, &st, true) {
            Ok(facts) if !facts.judged.dropped.is_empty() => self.rebuild(at, name, &facts.judged),
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => self
                .fail(&at.path.join(name), format!("the command wrote this git config, and reading it failed ({e})")),
        }
    }

    /// Whether the entry is one of the plan's placeholders, as ringfence made it: an empty
    /// folder of mode 0555 (or an empty file of mode 0444) at a placeholder's path.
    fn is_placeholder(&mut self, at: &At, name: &OsStr, st: &FileStat) -> bool {
        let path = at.path.join(name);
        if !self.review.placeholders.contains(&path) {
            return false;
        }
        match (file_type(st), st.st_mode & 0o7777) {
            (libc::S_IFREG, 0o444) => st.st_size == 0,
            (libc::S_IFDIR, 0o555) => self.open_dir(at, name).is_some_and(|fd| {
                let mut buf = [0u8; 256];
                let inner = At { fd: fd.as_fd(), path: &path, depth: at.depth + 1, place: Place::Tree };
                crate::sys::getdents64(inner.fd, &mut buf)
                    .is_ok_and(|n| super::dirents(&buf[..n]).all(|(entry, _)| entry == "." || entry == ".."))
            }),
            _ => false,
        }
    }

    /// A config's facts, read once per file. Permissions are given back only to read a file
    /// the run wrote.
    fn facts(&mut self, at: &At, name: &OsStr, st: &FileStat, new: bool) -> nix::Result<Rc<Facts>> {
        let key = (st.st_dev, st.st_ino);
        if let Some(facts) = self.configs.get(&key).filter(|f| !f.judged.folder_dependent) {
            return Ok(facts.clone());
        }
        if !self.spend_bytes(&at.path.join(name), st.st_size as u64) {
            return Err(Errno::E2BIG);
        }
        let text = if new {
            self.with_access(at, name, 0o400, |fd| fsops::read_file(fd, name, READ_CAP))?
        } else {
            fsops::read_file(at.fd, name, READ_CAP)?
        };
        let own_worktree = |worktree: &Path| self.points_back(worktree, at.path);
        let cx = Context { roots: &self.review.roots, dir: at.path, own_worktree: &own_worktree };
        let facts = Rc::new(Facts { judged: config::judge(&text, &cx), links: config::links(&text) });
        self.configs.insert(key, facts.clone());
        Ok(facts)
    }

    /// Moves a config aside and writes back a copy with only its harmless settings, so the
    /// repository keeps working but runs nothing the command chose.
    fn rebuild(&mut self, at: &At, name: &OsStr, judged: &config::Judged) {
        let path = at.path.join(name);
        let why = format!("the command set {} here, which git would act on", judged.dropped.join(", "));
        match self.set_aside(at, name) {
            Err(failed) => self.fail(&path, format!("{why}, and {failed}")),
            Ok(done) => {
                let kept = match fsops::create_new(at.fd, name, judged.rebuilt.as_bytes()) {
                    Ok(()) => "a copy with only the harmless settings is in its place".to_string(),
                    Err(e) => format!("no cleaned copy could be written back ({e})"),
                };
                self.found(GIT, path, format!("{why}; {done}; {kept}"));
            }
        }
    }

    /// Follows what a config the run did not write points at.
    fn follow(&mut self, config_dir: &Path, worktree: Option<&Path>, links: &config::Links, depth: usize) {
        for value in &links.hooks_paths {
            let relative = !Path::new(value).is_absolute() && !value.starts_with('~');
            match worktree {
                None if relative => {
                    if !self.relative_hooks.contains(value) && self.first_follow(Path::new(value)) {
                        self.relative_hooks.push(value.clone());
                    }
                }
                _ => {
                    let base = worktree.unwrap_or(config_dir);
                    if let Some(dir) = config::resolve(value, base, &self.review.home) {
                        self.hooks_path(&dir);
                    }
                }
            }
        }
        if depth >= INCLUDE_DEPTH {
            return;
        }
        for value in &links.includes {
            if let Some(file) = config::resolve(value, config_dir, &self.review.home) {
                self.included(&file, worktree, depth + 1);
            }
        }
    }

    /// Whether `path` is new to the followed set; false (and a bound hit) past the limit.
    fn first_follow(&mut self, path: &Path) -> bool {
        if self.followed.len() >= MAX_FOLLOWED {
            self.bound(path, format!("the git configs include or name more than {MAX_FOLLOWED} files and folders"));
            return false;
        }
        self.followed.insert(path.to_path_buf())
    }

    /// A file a config includes: in a writable root it is reviewed like a git config, else
    /// (read-only for the run) only followed further.
    fn included(&mut self, file: &Path, worktree: Option<&Path>, depth: usize) {
        let file = canonicalize_lenient(file);
        if self.stopped || !self.first_follow(&file) {
            return;
        }
        let (Some(folder), Some(name)) = (file.parent(), file.file_name()) else { return };
        if self.review.roots.iter().any(|r| file.starts_with(r)) {
            if let Some(fd) = self.open_in_roots(folder) {
                let at = At { fd: fd.as_fd(), path: folder, depth: 0, place: Place::Tree };
                self.config_file(&at, name, worktree, depth);
            }
            return;
        }
        let Ok(fd) = nix::fcntl::open(folder, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        else {
            return;
        };
        let Ok(st) = fsops::lstat_at(fd.as_fd(), name) else { return };
        if file_type(&st) != libc::S_IFREG
            || st.st_size as u64 > READ_CAP
            || !self.spend_bytes(&file, st.st_size as u64)
        {
            return;
        }
        if let Ok(text) = fsops::read_file(fd.as_fd(), name, READ_CAP) {
            self.follow(folder, worktree, &config::links(&text), depth);
        }
    }

    /// A `core.hooksPath` folder a config the run didn't write names: new hooks there are moved
    /// aside like those in `.git/hooks`.
    fn hooks_path(&mut self, dir: &Path) {
        let dir = canonicalize_lenient(dir);
        if self.stopped || !self.review.roots.iter().any(|r| dir.starts_with(r)) || !self.first_follow(&dir) {
            return;
        }
        let (Some(folder), Some(name)) = (dir.parent(), dir.file_name()) else { return };
        if let Some(fd) = self.open_in_roots(folder) {
            let at = At { fd: fd.as_fd(), path: folder, depth: 0, place: Place::Tree };
            self.folder(&at, name, (GIT, HOOK_WHY), true, false);
        }
    }

    /// Whether `worktree` is a folder in a writable root whose `.git` file points at the git
    /// directory `git_dir`: a submodule's worktree, as `core.worktree` names it.
    fn points_back(&self, worktree: &Path, git_dir: &Path) -> bool {
        let Some(fd) = self.open_in_roots(worktree) else { return false };
        let Ok(text) = fsops::read_file(fd.as_fd(), OsStr::new(".git"), POINTER_CAP) else { return false };
        let text = String::from_utf8_lossy(&text);
        let target = text.strip_prefix("gitdir: ").map(|t| normalize(&worktree.join(t.trim_end())));
        target.as_deref() == Some(git_dir)
    }

    /// Opens a folder inside a writable root from the root, through no link.
    pub(super) fn open_in_roots(&self, folder: &Path) -> Option<OwnedFd> {
        // From the outermost root holding it, whose own folder no run could write.
        let root = self.review.roots.iter().filter(|r| folder.starts_with(r)).min_by_key(|r| r.as_os_str().len())?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let root_fd = nix::fcntl::open(root.as_path(), flags, Mode::empty()).ok()?;
        match folder.strip_prefix(root).ok().filter(|rel| !rel.as_os_str().is_empty()) {
            None => Some(root_fd),
            Some(rel) => open_beneath(root_fd.as_fd(), rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY).ok(),
        }
    }

    /// Whether `target` is a folder inside a writable root, reached from the root through no
    /// link.
    fn in_roots_without_links(&mut self, target: &Path) -> bool {
        self.open_in_roots(target).is_some()
    }

    /// The content of a `.git` file or `commondir`: a path, on one line.
    fn pointer(&mut self, at: &At, name: &OsStr) -> nix::Result<String> {
        let text = self.with_access(at, name, 0o400, |fd| fsops::read_file(fd, name, POINTER_CAP))?;
        if !self.spend_bytes(&at.path.join(name), text.len() as u64) {
            return Err(Errno::E2BIG);
        }
        Ok(String::from_utf8_lossy(&text).trim_end_matches(['\n', '\r', ' ', '\t']).to_string())
    }

    /// A `commondir` makes git take its config, hooks and objects from another folder. The run
    /// may write one only where `git worktree add` does (`worktrees/NAME/commondir`), pointing
    /// inside the writable roots; the folder it points at is reviewed as a git directory.
    fn commondir(&mut self, at: &At) {
        let name = OsStr::new("commondir");
        let path = at.path.join(name);
        if self.skipped(&path) {
            return;
        }
        let Some(st) = self.lstat(at, name) else { return };
        let new = self.is_new(&st);
        let target = match self.pointer(at, name) {
            Ok(text) if !text.is_empty() => Some(normalize(&at.path.join(text))),
            _ => None,
        };
        if new {
            let in_worktrees = at.path.parent().and_then(|p| p.file_name()) == Some(OsStr::new("worktrees"));
            let valid = target.clone().is_some_and(|t| self.in_roots_without_links(&t));
            if !(in_worktrees && valid) {
                let why = "the command wrote this commondir, which points git at another directory's config and hooks";
                return self.quarantine(at, name, GIT, why.into());
            }
        }
        let target = target.map(|t| canonicalize_lenient(&t));
        if let Some(t) = target.filter(|t| self.review.roots.iter().any(|r| t.starts_with(r))) {
            if !self.common.contains(&t) && self.first_follow(&t) {
                self.common.push(t);
            }
        }
    }

    /// A `.git` file the run wrote may point only at a folder inside the writable roots (a
    /// submodule's or worktree's git directory), where the walk reviews it.
    pub(super) fn gitfile(&mut self, at: &At, name: &OsStr) {
        if self.skipped(&at.path.join(name)) || !self.lstat(at, name).is_some_and(|st| self.is_new(&st)) {
            return;
        }
        let target = match self.pointer(at, name) {
            Ok(text) => text.strip_prefix("gitdir: ").map(|t| normalize(&at.path.join(t))),
            Err(Errno::ENOENT) => return,
            Err(_) => None,
        };
        if !target.is_some_and(|t| self.in_roots_without_links(&t)) {
            let why = "the command made .git a file that points git at a directory outside the writable roots, or \
                       through a link";
            self.quarantine(at, name, GIT, why.into());
        }
    }

    /// Reviews the folders `commondir` files point at as git directories (unless the walk
    /// already did: git takes them for common directories even without a `HEAD`).
    pub(super) fn common_dirs(&mut self) {
        for dir in std::mem::take(&mut self.common) {
            if self.stopped {
                return;
            }
            if let Some(fd) = self.open_in_roots(&dir) {
                let depth = self
                    .review
                    .roots
                    .iter()
                    .find(|r| dir.starts_with(r))
                    .map_or(0, |r| dir.strip_prefix(r).map_or(0, |rel| rel.components().count()));
                self.visit(fd, &dir, depth, Place::GitDir);
            }
        }
    }
}
