//! The post-run review of the writable roots. Some state can't be made read-only in advance
//! without breaking the tools that write it: a repository the command creates (`git init`
//! must work), submodule and worktree git directories, rebase state, nested repositories and
//! nested `.envrc` or `.vscode` folders anywhere in the tree. What they hold can make the
//! user's git or editor run programs later, so after the run a walk over every writable root
//! moves aside what the run created or changed there that would (configs are rebuilt from the
//! settings known to be harmless), and reports it. What the walk can't review fails the run.
//!
//! "Changed during the run" is judged by each entry's change time (`ctime`), which no
//! unprivileged process can set back: writing, renaming, linking and chmod all set it to now.
//! So nothing is recorded before the run, and nothing of any file is held.
//!
//! The sandbox, or a concurrent run in the same folder, controls these trees: every lookup is
//! one name relative to an open folder, never following a link (see `fsops`).

mod config;
mod fsops;

pub use config::planned_paths;
use config::{Judged, Links};
use fsops::{file_type, lstat_at, open_beneath};

use crate::mount_plan::{MountOp, MountPlan, PlaceholderKind};
use nix::dir::Type;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use nix::time::{clock_gettime, ClockId};
use ringfence_audit::ReviewFinding;
use ringfence_policy::RuleKind;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Entries the review visits at most in one run, over all writable roots.
pub const MAX_ENTRIES: u64 = 2_000_000;
/// Bytes of configs, gitfiles and `commondir` files it reads at most in one run.
pub const MAX_BYTES: u64 = 64 << 20;
/// How many folders deep below a writable root it goes (one open descriptor per level).
pub const MAX_DEPTH: usize = 128;
/// Git directories it reviews at most in one run.
const MAX_GIT_DIRS: usize = 100_000;
/// Included files and hooks folders it follows at most in one run.
const MAX_FOLLOWED: usize = 1024;
/// Findings listed one by one; the rest are counted.
const LISTED: usize = 500;
/// `.git` files and `commondir` files are a line; larger ones are not read.
const POINTER_CAP: u64 = 4096;
/// Change times this long before the run's start still count as the run's. Filesystems stamp
/// with the kernel's coarse clock, which the start is read from too; the slack covers
/// filesystems that round to 10 ms (FAT's `ctime`) and a few jiffies (10 ms at HZ=100) of
/// clock reads racing a tick. Filesystems that keep whole seconds are recognised per entry.
const SLACK_NS: i128 = 30_000_000;
const NS: i128 = 1_000_000_000;
/// Bytes of directory entries read per `getdents64` call.
const DIRENT_BUFFER: usize = 16 * 1024;

/// `policy.deny` rules of the findings.
const GIT: &str = "git";
const PROTECTED: &str = "protected-file";
const SPECIAL: &str = "special-file";
const PERMISSIONS: &str = "permissions";
const FAILED: &str = "review-failed";

/// Git's in-progress state, carried out by `git rebase --continue` or `git cherry-pick
/// --continue`: todo lists with `exec` lines, option files naming strategies (programs).
const STATE_FOLDERS: &[&str] = &["rebase-merge", "rebase-apply", "sequencer"];
/// Legacy remote definitions git still reads (`URL: ext::…`).
const REMOTE_FOLDERS: &[&str] = &["remotes", "branches"];
const GIT_DIR_CONFIGS: &[&str] = &["config", "config.worktree"];
/// Folders of a git directory that git fills itself (other than hooks and state).
const GIT_FOLDERS: &[&str] = &["refs", "logs", "info", "modules", "worktrees", "lfs", "rr-cache", "reftable"];
const HOOK_WHY: &str = "the command added or changed this git hook";
const REMOTE_WHY: &str = "the command added or changed this remote definition, which git fetch and push read";

/// The wall clock and the monotonic clock at the start of the run, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
struct RunClock {
    real: i128,
    mono: i128,
}

fn now_ns(clock: ClockId) -> i128 {
    clock_gettime(clock).map_or(0, |t| t.tv_sec() as i128 * NS + t.tv_nsec() as i128)
}

impl RunClock {
    fn now() -> Self {
        RunClock { real: now_ns(ClockId::CLOCK_REALTIME_COARSE), mono: now_ns(ClockId::CLOCK_MONOTONIC) }
    }

    /// The earliest change time that counts as the run's: the start, less the slack, less any
    /// step back of the wall clock since (the monotonic clock never steps).
    fn since(&self) -> i128 {
        let now = RunClock::now();
        let stepped_back = ((now.mono - self.mono) - (now.real - self.real)).max(0);
        self.real - SLACK_NS - stepped_back
    }
}

/// What one run's review walks, and from when a change counts as the run's.
#[derive(Clone, Debug, Default)]
pub struct Review {
    /// Host folders the run could write: the plan's write rules and review roots.
    roots: Vec<PathBuf>,
    /// Existing paths the view kept read-only or hidden: the run could not change them.
    skip: Vec<PathBuf>,
    /// Paths of the plan's placeholders: one still standing there, untouched, is ringfence's.
    placeholders: Vec<PathBuf>,
    /// The protected names of the plan, relative, outside `.git`.
    protected: Vec<PathBuf>,
    home: PathBuf,
    start: RunClock,
}

/// What the review did, and what it could not review.
#[derive(Clone, Debug, Default)]
pub struct ReviewReport {
    pub findings: Vec<ReviewFinding>,
    pub failures: Vec<ReviewFinding>,
}

impl Review {
    /// A review of the plan's writable roots, starting the clock: call it before the clone.
    pub fn new(plan: &MountPlan, home: &Path) -> Review {
        let mut roots: Vec<PathBuf> = plan.rules.of_kind(RuleKind::Write).map(|r| r.path.clone()).collect();
        roots.extend(plan.review_roots.iter().filter(|r| !roots.contains(r)).cloned().collect::<Vec<_>>());
        // A placeholder stands for a path the run may still have created.
        let placeholders: HashSet<&Path> =
            plan.placeholders.iter().filter(|p| p.kind != PlaceholderKind::Folder).map(|p| p.path.as_path()).collect();
        let mut skip: Vec<PathBuf> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                MountOp::ReadOnly { path }
                | MountOp::MaskFile { path }
                | MountOp::Tmpfs { path, writable: false, .. }
                | MountOp::Bind { path, writable: false } => Some(path),
                _ => None,
            })
            .filter(|p| !placeholders.contains(p.as_path()) && roots.iter().any(|r| p.starts_with(r)))
            .cloned()
            .collect();
        skip.sort();
        skip.dedup();
        let profile = ringfence_policy::profile::PROTECTED_IN_WRITE_ROOTS.iter();
        let protected = profile
            .chain(ringfence_policy::profile::PROTECTED_WHILE_PRESENT)
            .filter(|name| !name.starts_with(".git/"))
            .map(PathBuf::from)
            .collect();
        let placeholders = placeholders.into_iter().map(Path::to_path_buf).collect();
        Review { roots, skip, placeholders, protected, home: home.to_path_buf(), start: RunClock::now() }
    }

    /// Reviews as [`Review::run`], then restarts the clock at this review's start: a session
    /// reviews after each command, each time what changed since the review before (so what a
    /// background job changes between commands is not missed either).
    pub fn run_again(&mut self) -> ReviewReport {
        let start = RunClock::now();
        let report = self.run();
        self.start = start;
        report
    }

    /// Walks every writable root once nothing of the sandbox runs; moves aside what the run
    /// left that would run code later, and reports it.
    pub fn run(&self) -> ReviewReport {
        let mut walk = Walk::new(self);
        walk.global_configs();
        for root in self.roots.iter().filter(|r| !self.roots.iter().any(|o| o != *r && r.starts_with(o))) {
            walk.root(root);
        }
        walk.common_dirs();
        walk.finish()
    }
}

/// Where a folder sits, which decides what its entries mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// A worktree or any other folder.
    Tree,
    /// A git directory: `.git`, a submodule's or worktree's, a bare repository.
    GitDir,
    /// Below a git directory (`refs`, `logs`, `modules`, ...).
    InGitDir,
    /// Below `objects`: only folders that changed are listed.
    Objects,
}

/// An open folder under review.
#[derive(Clone, Copy)]
struct At<'a> {
    fd: BorrowedFd<'a>,
    path: &'a Path,
    depth: usize,
    place: Place,
}

/// A config read once per file (by device and inode, so hard links cost nothing more).
struct Facts {
    judged: Judged,
    links: Links,
}

/// One review in progress.
struct Walk<'a> {
    review: &'a Review,
    since: i128,
    entries_left: u64,
    bytes_left: u64,
    /// A bound was hit: the walk stops.
    stopped: bool,
    report: ReviewReport,
    unlisted: usize,
    /// First components of the protected names, in lower case.
    protected_starts: HashSet<String>,
    configs: HashMap<(u64, u64), Rc<Facts>>,
    git_dirs: HashSet<(u64, u64)>,
    /// Common directories `commondir` files point at, reviewed as git directories at the end.
    common: Vec<PathBuf>,
    followed: HashSet<PathBuf>,
    /// Relative `core.hooksPath` values of the global configs, taken in every repository.
    relative_hooks: Vec<String>,
    /// Listing buffers, one per folder level in use.
    buffers: Vec<Vec<u8>>,
}

impl<'a> Walk<'a> {
    fn new(review: &'a Review) -> Self {
        Walk {
            review,
            since: review.start.since(),
            entries_left: MAX_ENTRIES,
            bytes_left: MAX_BYTES,
            stopped: false,
            report: ReviewReport::default(),
            unlisted: 0,
            protected_starts: review
                .protected
                .iter()
                .filter_map(|p| p.iter().next())
                .map(|first| first.to_string_lossy().to_ascii_lowercase())
                .collect(),
            configs: HashMap::new(),
            git_dirs: HashSet::new(),
            common: Vec::new(),
            followed: HashSet::new(),
            relative_hooks: Vec::new(),
            buffers: Vec::new(),
        }
    }

    fn finish(mut self) -> ReviewReport {
        if self.unlisted > 0 {
            let path = self.review.roots.first().cloned().unwrap_or_default();
            let detail = format!("{} more findings, each handled the same way, are not listed", self.unlisted);
            self.report.findings.push(ReviewFinding { path, rule: GIT, detail });
        }
        self.report
    }

    fn found(&mut self, rule: &'static str, path: PathBuf, detail: String) {
        if self.report.findings.len() < LISTED {
            self.report.findings.push(ReviewFinding { path, rule, detail });
        } else {
            self.unlisted += 1;
        }
    }

    fn fail(&mut self, path: &Path, detail: String) {
        if self.report.failures.len() < LISTED {
            self.report.failures.push(ReviewFinding { path: path.to_path_buf(), rule: FAILED, detail });
        }
    }

    /// A bound was hit: what is left is not reviewed.
    fn bound(&mut self, path: &Path, detail: String) {
        self.fail(path, format!("{detail}; the review stopped there, so the rest was not reviewed"));
        self.stopped = true;
    }

    fn spend_entry(&mut self, path: &Path) -> bool {
        if self.entries_left == 0 {
            let detail = format!(
                "the writable roots hold more than {MAX_ENTRIES} entries, the most the review visits; make fewer \
                 or smaller folders writable"
            );
            self.bound(path, detail);
            return false;
        }
        self.entries_left -= 1;
        true
    }

    fn spend_bytes(&mut self, path: &Path, n: u64) -> bool {
        if n > self.bytes_left {
            self.bound(path, format!("reading it would pass {} MiB of git config read in one review", MAX_BYTES >> 20));
            return false;
        }
        self.bytes_left -= n;
        true
    }

    fn is_new(&self, st: &FileStat) -> bool {
        if st.st_ctime_nsec == 0 {
            // A filesystem that keeps whole seconds (two, for FAT).
            return st.st_ctime as i128 >= self.since.div_euclid(NS) - 1;
        }
        st.st_ctime as i128 * NS + st.st_ctime_nsec as i128 >= self.since
    }

    fn skipped(&self, path: &Path) -> bool {
        self.review.skip.binary_search_by(|p| p.as_path().cmp(path)).is_ok()
    }

    fn root(&mut self, root: &Path) {
        // Never through a link: a concurrent run with wider rights could have put one there.
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut opened = nix::fcntl::open(root, flags, Mode::empty());
        if matches!(opened, Err(Errno::EACCES)) {
            let granted = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                .and_then(|fd| fsops::grant_fd(fd.as_fd(), 0o700));
            if self.restored(root, granted, 0o700) {
                opened = nix::fcntl::open(root, flags, Mode::empty());
            }
        }
        match opened {
            Ok(fd) => self.visit(fd, root, 0, Place::Tree),
            // A writable root that is a file holds nothing to review; one that is now a link
            // was replaced after the run, and is the replacer's to review.
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {}
            Err(e) => self.fail(root, format!("opening this writable root failed ({e})")),
        }
    }

    /// Reports permissions given back; whether they were.
    fn restored(&mut self, path: &Path, granted: nix::Result<Option<u32>>, bits: u32) -> bool {
        let Ok(Some(before)) = granted else { return false };
        if before | bits == before {
            return false;
        }
        let detail = format!(
            "the command took away permissions the review needs (mode {before:04o}); they were given back (mode {:04o})",
            before | bits
        );
        self.found(PERMISSIONS, path.to_path_buf(), detail);
        true
    }

    /// Gives the folder `at` back the permissions to list and change it, if the caller owns it.
    fn repair_folder(&mut self, at: &At) -> bool {
        let lacking = nix::sys::stat::fstat(at.fd).is_ok_and(|st| st.st_mode & 0o700 != 0o700);
        lacking && self.restored(at.path, fsops::grant_fd(at.fd, 0o700), 0o700)
    }

    /// Runs `op` on the entry `name` of `at`; on `EACCES`, gives the entry (`bits`; none for a
    /// lookup), then the folder, back the permissions it needs if the caller owns them, and tries
    /// again. The entry comes first, so a folder that was not in the way keeps its mode.
    fn with_access<T>(
        &mut self,
        at: &At,
        name: &OsStr,
        bits: u32,
        op: impl Fn(BorrowedFd) -> nix::Result<T>,
    ) -> nix::Result<T> {
        let denied = |r: &nix::Result<T>| matches!(r, Err(Errno::EACCES));
        let mut result = op(at.fd);
        if denied(&result) && bits != 0 && self.grant_entry(at, name, bits) {
            result = op(at.fd);
        }
        if denied(&result) && self.repair_folder(at) {
            result = op(at.fd);
            if denied(&result) && bits != 0 && self.grant_entry(at, name, bits) {
                result = op(at.fd);
            }
        }
        result
    }

    /// Gives the entry `name` of `at` the permission `bits` if the caller owns it; whether it did.
    fn grant_entry(&mut self, at: &At, name: &OsStr, bits: u32) -> bool {
        let granted = fsops::grant(at.fd, name, bits);
        self.restored(&at.path.join(name), granted, bits)
    }

    fn lstat(&mut self, at: &At, name: &OsStr) -> Option<FileStat> {
        match self.with_access(at, name, 0, |fd| lstat_at(fd, name)) {
            Ok(st) => Some(st),
            Err(Errno::ENOENT) => None,
            Err(e) => {
                self.fail(&at.path.join(name), format!("looking at it failed ({e})"));
                None
            }
        }
    }

    /// Opens a folder below `at`. None when it is gone or was replaced meanwhile (a concurrent
    /// run's doing, which its own review covers), or is closed to the caller altogether.
    fn open_dir(&mut self, at: &At, name: &OsStr) -> Option<OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        match self.with_access(at, name, 0o700, |fd| open_beneath(fd, Path::new(name), flags)) {
            Ok(fd) => Some(fd),
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => None,
            Err(Errno::EACCES) if inert(at, name) => None,
            Err(Errno::EACCES) => {
                let detail = "another user owns this folder and the caller can enter it but not list it, so the \
                              review can't see what the run put there; make it readable or remove it";
                self.fail(&at.path.join(name), detail.into());
                None
            }
            Err(e) => {
                self.fail(&at.path.join(name), format!("opening it failed ({e})"));
                None
            }
        }
    }

    fn visit(&mut self, fd: OwnedFd, path: &Path, depth: usize, place: Place) {
        if self.stopped {
            return;
        }
        if depth > MAX_DEPTH {
            return self.bound(path, format!("it lies more than {MAX_DEPTH} folders deep"));
        }
        if place == Place::GitDir && !self.enter_git_dir(fd.as_fd(), path, depth) {
            return;
        }
        // Whether a folder is a git directory is asked once one of git's names shows up in it
        // (a git directory lists `HEAD`): the entries before that are handled alike either way.
        let mut place = place;
        let mut decided = matches!(place, Place::GitDir | Place::Objects);
        let mut reviewed_already = false;
        let at = At { fd: fd.as_fd(), path, depth, place };
        let listed = self.list(&at, |walk, name, kind| {
            if !decided && is_git_name(name) {
                decided = true;
                if is_git_dir(at.fd) {
                    reviewed_already = !walk.enter_git_dir(at.fd, path, depth);
                    place = Place::GitDir;
                }
            }
            if !reviewed_already {
                walk.entry(&At { place, ..at }, name, kind);
            }
        });
        if let Err(e) = listed {
            self.fail(path, e);
        }
    }

    /// Calls `each` for every entry of the folder `at` (not `.` and `..`), each costing one of
    /// the entries budget, until a bound is hit.
    fn list(&mut self, at: &At, mut each: impl FnMut(&mut Self, &OsStr, Option<Type>)) -> Result<(), String> {
        let mut buf = self.buffers.pop().unwrap_or_else(|| vec![0; DIRENT_BUFFER]);
        let result = loop {
            let n = match crate::sys::getdents64(at.fd, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(format!("listing it failed ({e})")),
            };
            for (name, kind) in dirents(&buf[..n]).filter(|(name, _)| *name != "." && *name != "..") {
                if !self.spend_entry(at.path) {
                    break;
                }
                each(self, name, kind);
                if self.stopped {
                    break;
                }
            }
            if self.stopped {
                break Ok(());
            }
        };
        self.buffers.push(buf);
        result
    }

    fn entry(&mut self, at: &At, name: &OsStr, kind: Option<Type>) {
        let Some(kind) = kind.or_else(|| self.lstat(at, name).map(|st| type_of(&st))) else { return };
        if at.place == Place::GitDir && (GIT_DIR_CONFIGS.iter().any(|c| same(name, c)) || same(name, "commondir")) {
            return; // reviewed on entering the git directory
        }
        match (kind, at.place) {
            (Type::Fifo | Type::CharacterDevice | Type::BlockDevice, _) => self.special(at, name),
            (Type::Socket, _) => {}
            (_, Place::Tree) => self.tree_entry(at, name, kind),
            (_, Place::GitDir) => self.git_dir_entry(at, name, kind),
            (Type::Symlink, _) => self.changed(at, name, GIT, IN_GIT_DIR_LINK),
            // A folder below `objects` whose entries did not change holds no new FIFO.
            (Type::Directory, Place::Objects) if self.lstat(at, name).is_some_and(|st| self.is_new(&st)) => {
                self.descend(at, name, Place::Objects)
            }
            (Type::Directory, Place::Objects) => {}
            (Type::Directory, _) => self.descend(at, name, Place::InGitDir),
            _ => {}
        }
    }

    fn descend(&mut self, at: &At, name: &OsStr, place: Place) {
        let path = at.path.join(name);
        if self.skipped(&path) {
            return;
        }
        if let Some(fd) = self.open_dir(at, name) {
            self.visit(fd, &path, at.depth + 1, place);
        }
    }

    fn tree_entry(&mut self, at: &At, name: &OsStr, kind: Type) {
        if same(name, ".git") {
            return match kind {
                Type::Directory => self.descend(at, name, Place::GitDir),
                Type::Symlink => {
                    self.changed(at, name, GIT, "the command made .git a link, which points git elsewhere")
                }
                Type::File => self.gitfile(at, name),
                _ => {}
            };
        }
        let mut covered = false;
        let mut buf = [0u8; 32];
        if lower(name, &mut buf).is_some_and(|low| self.protected_starts.contains(low)) {
            let review = self.review;
            for protected in review.protected.iter().filter(|p| p.iter().next().is_some_and(|first| same(name, first)))
            {
                covered |= same(name, protected.as_os_str());
                let rest: Vec<&OsStr> = protected.iter().skip(1).collect();
                self.protected(at, name, &rest, false);
            }
        }
        if kind == Type::Directory && !covered {
            self.descend(at, name, Place::Tree);
        }
    }

    /// An entry of a git directory: git's own folders by their meaning, anything else as in
    /// any folder (a folder made to look like a bare repository is still a worktree folder).
    fn git_dir_entry(&mut self, at: &At, name: &OsStr, kind: Type) {
        let is_dir = kind == Type::Directory;
        let text = &name.to_str().unwrap_or("").to_ascii_lowercase()[..];
        let special_folder = text == "hooks" || STATE_FOLDERS.contains(&text) || REMOTE_FOLDERS.contains(&text);
        match text {
            _ if special_folder && !is_dir => {
                self.changed(at, name, GIT, "the command put something other than a folder where git expects one")
            }
            "hooks" => self.folder(at, name, (GIT, HOOK_WHY), true, false),
            _ if STATE_FOLDERS.contains(&text) => self.state_folder(at, name),
            _ if REMOTE_FOLDERS.contains(&text) => self.folder(at, name, (GIT, REMOTE_WHY), false, false),
            "objects" => self.descend(at, name, Place::Objects),
            _ if kind == Type::Symlink && is_git_name(name) => self.changed(at, name, GIT, IN_GIT_DIR_LINK),
            _ if is_dir && GIT_FOLDERS.contains(&text) => self.descend(at, name, Place::InGitDir),
            _ => self.tree_entry(at, name, kind),
        }
    }

    /// Moves `name` aside if the run created or changed it. A file already under a name the
    /// review gives is left alone: nothing uses it by that name, and giving it a usable name
    /// again changes it.
    fn changed(&mut self, at: &At, name: &OsStr, rule: &'static str, why: &str) {
        if fsops::is_quarantined(name) || self.skipped(&at.path.join(name)) {
            return;
        }
        if self.lstat(at, name).is_some_and(|st| self.is_new(&st)) {
            self.quarantine(at, name, rule, why.to_string());
        }
    }

    fn special(&mut self, at: &At, name: &OsStr) {
        // A 0:0 character device is an overlayfs whiteout (how a cache layer records a
        // deletion): opening it fails at once, so nothing hangs on it.
        let whiteout =
            lstat_at(at.fd, name).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0);
        if whiteout {
            return;
        }
        let why = "the command made a FIFO or device file here; a program that opens it, such as git, would hang \
                   or reach the device";
        self.changed(at, name, SPECIAL, why);
    }

    /// Moves `name` aside, or removes it when it can't be moved; says what became of it.
    fn set_aside(&mut self, at: &At, name: &OsStr) -> Result<String, String> {
        let mut moved = fsops::move_aside(at.fd, name);
        if matches!(moved, Err(Errno::EACCES | Errno::EPERM)) && self.repair_folder(at) {
            moved = fsops::move_aside(at.fd, name);
        }
        let moving = match moved {
            Ok(aside) => {
                let shown = at.path.join(&aside);
                return match self.disarm(at, &aside) {
                    Ok(()) => Ok(format!("moved aside to {}", shown.display())),
                    Err(e) => Err(format!("it was moved aside to {}, but {e}", shown.display())),
                };
            }
            Err(e) => e,
        };
        let mut budget = self.entries_left;
        let removed = fsops::remove(at.fd, name, &mut budget, at.depth);
        self.entries_left = budget;
        match removed {
            Ok(()) => Ok(format!("moving it aside failed ({moving}), so it was removed")),
            Err(removing) => Err(format!("neither moving it aside ({moving}) nor removing it ({removing}) worked")),
        }
    }

    fn quarantine(&mut self, at: &At, name: &OsStr, rule: &'static str, why: String) {
        let path = at.path.join(name);
        match self.set_aside(at, name) {
            Ok(done) => self.found(rule, path, format!("{why}; {done}")),
            Err(failed) => self.fail(&path, format!("{why}, and {failed}")),
        }
    }
}

const IN_GIT_DIR_LINK: &str = "the command put a symbolic link inside a git directory, where git would follow it";

/// Whether the caller can't even enter an entry (so neither could the run, which ran as the
/// caller without capabilities, nor can the caller's git).
fn inert(at: &At, name: &OsStr) -> bool {
    use nix::unistd::{faccessat, AccessFlags};
    let flags = nix::fcntl::AtFlags::AT_EACCESS | nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
    faccessat(at.fd, name, AccessFlags::X_OK, flags) == Err(Errno::EACCES)
}

fn type_of(st: &FileStat) -> Type {
    match file_type(st) {
        libc::S_IFDIR => Type::Directory,
        libc::S_IFLNK => Type::Symlink,
        libc::S_IFIFO => Type::Fifo,
        libc::S_IFCHR => Type::CharacterDevice,
        libc::S_IFBLK => Type::BlockDevice,
        libc::S_IFSOCK => Type::Socket,
        _ => Type::File,
    }
}

/// The entries of one `getdents64` batch (`linux_dirent64` records): name and type, when the
/// filesystem tells it.
fn dirents(batch: &[u8]) -> impl Iterator<Item = (&OsStr, Option<Type>)> {
    const NAME: usize = 19;
    let mut pos = 0;
    std::iter::from_fn(move || {
        let header = batch.get(pos..pos + NAME)?;
        let len = u16::from_ne_bytes([header[16], header[17]]) as usize;
        let record = batch.get(pos + NAME..pos + len.max(NAME + 1))?;
        pos += len.max(NAME + 1);
        let name = &record[..record.iter().position(|b| *b == 0).unwrap_or(record.len())];
        let kind = match header[18] {
            libc::DT_DIR => Some(Type::Directory),
            libc::DT_REG => Some(Type::File),
            libc::DT_LNK => Some(Type::Symlink),
            libc::DT_FIFO => Some(Type::Fifo),
            libc::DT_CHR => Some(Type::CharacterDevice),
            libc::DT_BLK => Some(Type::BlockDevice),
            libc::DT_SOCK => Some(Type::Socket),
            _ => None,
        };
        Some((OsStr::from_bytes(name), kind))
    })
}

/// Compares a file name with one git or a tool looks up, ignoring ASCII case: in a
/// case-insensitive folder (ext4 or tmpfs casefolding) `HOOKS` is what git opens as `hooks`.
fn same(name: &OsStr, wanted: impl AsRef<OsStr>) -> bool {
    name.as_bytes().eq_ignore_ascii_case(wanted.as_ref().as_bytes())
}

/// A short name in lower case, in a buffer on the stack (no allocation: this runs for every
/// entry of the tree); None when longer than any name looked for.
fn lower<'b>(name: &OsStr, buf: &'b mut [u8; 32]) -> Option<&'b str> {
    let bytes = name.as_bytes();
    let out = buf.get_mut(..bytes.len())?;
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// Names git reads or writes directly in a git directory (in any case). Any other entry there
/// means to git what it means in any folder.
fn is_git_name(name: &OsStr) -> bool {
    const FILES: &[&str] = &[
        "head",
        "config",
        "config.worktree",
        "commondir",
        "index",
        "packed-refs",
        "shallow",
        "description",
        "gitdir",
        "orig_head",
        "fetch_head",
        "merge_head",
        "merge_msg",
        "merge_mode",
        "merge_autostash",
        "squash_msg",
        "cherry_pick_head",
        "revert_head",
        "rebase_head",
        "auto_merge",
        "commit_editmsg",
        "tag_editmsg",
        "bisect_log",
        "bisect_start",
        "bisect_terms",
        "bisect_expected_rev",
        "bisect_ancestors_ok",
        "bisect_names",
        "bisect_run",
    ];
    if name.as_bytes().len() > 32 {
        // `sharedindex.<hash>` and `*.lock` files can be longer.
        let bytes = name.as_bytes();
        return bytes.ends_with(b".lock") || bytes.len() >= 12 && bytes[..12].eq_ignore_ascii_case(b"sharedindex.");
    }
    let mut buf = [0u8; 32];
    let Some(name) = lower(name, &mut buf) else { return false };
    FILES.contains(&name)
        || name == "hooks"
        || name == "objects"
        || name.starts_with("sharedindex.")
        || name.ends_with(".lock")
        || GIT_FOLDERS.contains(&name)
        || STATE_FOLDERS.contains(&name)
        || REMOTE_FOLDERS.contains(&name)
}

/// Whether git would take a folder for a git directory: a `HEAD`, and `objects` and `refs`
/// folders or a `commondir` file.
fn is_git_dir(fd: BorrowedFd) -> bool {
    let kind = |name: &str| lstat_at(fd, OsStr::new(name)).ok().map(|st| file_type(&st));
    matches!(kind("HEAD"), Some(libc::S_IFREG | libc::S_IFLNK))
        && (kind("commondir") == Some(libc::S_IFREG)
            || (kind("objects") == Some(libc::S_IFDIR) && kind("refs") == Some(libc::S_IFDIR)))
}

/// The worktree whose relative paths a git directory's config is read against.
fn worktree_of(git_dir: &Path) -> &Path {
    match (git_dir.file_name(), git_dir.parent()) {
        (Some(name), Some(parent)) if same(name, ".git") => parent,
        _ => git_dir,
    }
}

mod folders;
mod pointers;

#[cfg(test)]
mod tests;
