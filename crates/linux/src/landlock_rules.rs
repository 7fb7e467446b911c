//! Landlock, the second filesystem layer. Landlock can only grant, so a denied path inside a
//! readable tree is expressed by granting each of its siblings instead of its parent.
//!
//! The supervisor builds the ruleset from the host tree while the child builds its mount view
//! (rules name inodes, and the view's binds are the host's inodes); the child then adds the
//! filesystems that exist only in the view (/tmp, /dev, /proc) and restricts itself.

use crate::sys;
use landlock::{Access, AccessFs, BitFlags, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope, ABI};
use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use ringfence_policy::{Builtin, FsAccess, FsRules, Origin};
use std::collections::BTreeSet;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Filesystems that exist only in the sandbox's view, with the rights the child grants them.
pub fn fresh_dir_rights(abi: i32) -> Vec<(&'static str, u64)> {
    let abi = ABI::from(abi);
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let device = (read | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev) & all;
    vec![("/tmp", all.bits()), ("/dev", device.bits()), ("/dev/shm", all.bits()), ("/proc", read.bits())]
}

/// Rights in writable roots on the host: everything but making FIFOs and device nodes. A FIFO
/// where git or another tool reads (`.gitignore`, `HEAD`, a config) hangs it on the host; the
/// view's own /tmp and /dev/shm keep the rights. Sockets stay (development servers bind them).
fn host_write_rights(abi: ABI) -> BitFlags<AccessFs> {
    let mut rights = AccessFs::from_all(abi);
    rights.remove(AccessFs::MakeFifo | AccessFs::MakeChar | AccessFs::MakeBlock);
    rights
}

pub struct LandlockBuilder<'a> {
    rules: &'a FsRules,
    abi: ABI,
    /// Paths with a rule (or a fresh filesystem): where access can change.
    marks: BTreeSet<PathBuf>,
    /// Files an exec rule denies whatever the arguments: they get no execute right.
    no_exec: BTreeSet<PathBuf>,
}

/// The files the policy's exec rules deny by absolute path, whatever the arguments, that
/// Landlock can keep from running: each resolved on the host, an existing regular file
/// outside every writable root (Landlock can't narrow anything below a writable grant).
pub fn no_exec_files(policy: &ringfence_policy::Policy) -> Vec<PathBuf> {
    policy.exec.rules.iter().filter_map(|rule| no_exec_file(policy, rule)).collect()
}

/// The file one rule makes unrunnable through Landlock, if it can (see [`no_exec_files`]).
pub fn no_exec_file(policy: &ringfence_policy::Policy, rule: &ringfence_policy::ExecRule) -> Option<PathBuf> {
    if !policy.exec.monitor {
        return None;
    }
    let file = std::fs::canonicalize(rule.whole_program_path()?).ok()?;
    let regular = std::fs::metadata(&file).is_ok_and(|m| m.is_file());
    (regular && policy.fs.access(&file).access == FsAccess::Read).then_some(file)
}

impl<'a> LandlockBuilder<'a> {
    pub fn new(rules: &'a FsRules, kernel_abi: i32) -> Self {
        // A hidden path the caller can't read anyway (/etc/shadow for a normal user) needs no
        // carve-out: the kernel's permission check is its second layer. Skipping it spares
        // enumerating its directory, the bulk of the ruleset's cost.
        let unreadable = |r: &ringfence_policy::FsRule| {
            use nix::unistd::{access, AccessFlags};
            let denied = |flags| access(&r.path, flags) == Err(nix::Error::EACCES);
            // A directory we may enter but not list (mode 0711) still exposes its files.
            r.kind == ringfence_policy::RuleKind::DenyRead
                && denied(AccessFlags::R_OK)
                && (!r.path.is_dir() || denied(AccessFlags::X_OK))
        };
        // Host services' sockets need no carve-out: below ABI 9 Landlock can't stop connect(2)
        // anyway, and from ABI 9 read-only regions lack the right.
        let socket = |r: &ringfence_policy::FsRule| matches!(r.origin, Origin::Builtin(Builtin::HostSocket));
        let mut marks: BTreeSet<PathBuf> =
            rules.rules.iter().filter(|r| !unreadable(r) && !socket(r)).map(|r| r.path.clone()).collect();
        marks.extend(["/tmp", "/dev", "/proc", "/dev/shm", "/run", "/var/run"].map(PathBuf::from));
        LandlockBuilder { rules, abi: ABI::from(kernel_abi), marks, no_exec: BTreeSet::new() }
    }

    /// Withholds the execute right from these files (from [`no_exec_files`]): their folders'
    /// entries are then granted one by one, like a hidden path's siblings.
    pub fn without_execute(mut self, files: &[PathBuf]) -> Self {
        self.marks.extend(files.iter().cloned());
        self.no_exec.extend(files.iter().cloned());
        self
    }

    /// Paths order component by component, so everything below `dir` directly follows it.
    fn has_marks_below(&self, dir: &Path) -> bool {
        use std::ops::Bound::{Excluded, Unbounded};
        self.marks.range::<Path, _>((Excluded(dir), Unbounded)).next().is_some_and(|m| m.starts_with(dir))
    }

    /// Creates the ruleset and adds a rule for every host path; the child adds its fresh
    /// filesystems and restricts itself.
    pub fn build(&self) -> Result<OwnedFd, String> {
        let all = AccessFs::from_all(self.abi);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(all)
            .map_err(|e| e.to_string())?;
        if self.abi >= ABI::V6 {
            ruleset = ruleset.scope(Scope::from_all(self.abi)).map_err(|e| e.to_string())?;
        }
        let created = ruleset.create().map_err(|e| e.to_string())?;
        let fd = Option::<OwnedFd>::from(created).ok_or_else(|| "the kernel offers no Landlock ruleset".to_string())?;
        let root = Path::new("/");
        let dir = Dir::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("opening /: {e}"))?;
        self.visit_dir(fd.as_raw_fd(), dir, root, self.rules.access(root).access)?;
        Ok(fd)
    }

    fn rights(&self, access: FsAccess) -> BitFlags<AccessFs> {
        match access {
            FsAccess::Deny => BitFlags::EMPTY,
            FsAccess::Read => AccessFs::from_read(self.abi),
            FsAccess::Write => host_write_rights(self.abi),
        }
    }

    /// Rights on a directory that merely leads to rules below it. In a read-only tree: list it.
    /// In a writable tree: everything, because a file created there later inherits its rights
    /// from this directory; protected and hidden paths inside writable roots therefore rest on
    /// the mount layer (read-only binds and masks that the sandbox can't unmount).
    fn passage_rights(&self, access: FsAccess) -> BitFlags<AccessFs> {
        match access {
            FsAccess::Deny => BitFlags::EMPTY,
            FsAccess::Read => AccessFs::ReadDir.into(),
            FsAccess::Write => host_write_rights(self.abi),
        }
    }

    /// Grants rights at one entry of `parent`, opened relative to it (one lookup, not a whole
    /// path walk: this runs for a few hundred entries on every launch).
    fn visit(
        &self,
        ruleset: RawFd,
        parent: RawFd,
        name: &CStr,
        path: &Path,
        inherited: FsAccess,
        is_dir: bool,
    ) -> Result<(), String> {
        // The child grants its own /tmp, /dev and /proc; the host's are not in its view. (/run
        // is walked: the binds the view keeps there are host inodes.)
        if ["/tmp", "/dev", "/proc"].iter().any(|d| path == Path::new(d)) {
            return Ok(());
        }
        let access = if self.marks.contains(path) { self.rules.access(path).access } else { inherited };
        // SAFETY: `parent` is the folder `visit_dir` holds open for this whole call.
        let parent = unsafe { sys::borrow_fd(parent) };
        // Rights reach the whole subtree, so nothing below a writable directory can be narrowed
        // by Landlock; stop here.
        if access == FsAccess::Write || !is_dir || !self.has_marks_below(path) {
            if access == FsAccess::Deny {
                return Ok(());
            }
            let mut rights =
                if is_dir { self.rights(access) } else { self.rights(access) & AccessFs::from_file(self.abi) };
            if self.no_exec.contains(path) {
                rights.remove(AccessFs::Execute);
            }
            let Ok(fd) =
                nix::fcntl::openat(parent, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            else {
                return Ok(());
            };
            return self.grant(ruleset, fd.as_raw_fd(), rights, path);
        }
        let Ok(dir) = Dir::openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return Ok(());
        };
        self.visit_dir(ruleset, dir, path, access)
    }

    /// Grants passage through `dir` and visits its entries.
    fn visit_dir(&self, ruleset: RawFd, mut dir: Dir, path: &Path, access: FsAccess) -> Result<(), String> {
        let dir_fd = dir.as_raw_fd();
        // SAFETY: `dir` stays open, and is only read, while the borrow is used (this call).
        let dir_borrowed = unsafe { sys::borrow_fd(dir_fd) };
        self.grant(ruleset, dir_fd, self.passage_rights(access), path)?;
        let mut entries = Vec::new();
        for entry in dir.iter().flatten() {
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            // Never follow links: a link to `/` would grant everything.
            let is_dir = match entry.file_type() {
                Some(Type::Symlink) => continue,
                Some(Type::Directory) => true,
                Some(_) => false,
                None => nix::sys::stat::fstatat(dir_borrowed, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR),
            };
            entries.push((name.to_owned(), is_dir));
        }
        for (name, is_dir) in entries {
            let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            self.visit(ruleset, dir_fd, &name, &child, access, is_dir)?;
        }
        Ok(())
    }

    fn grant(&self, ruleset: RawFd, fd: RawFd, rights: BitFlags<AccessFs>, path: &Path) -> Result<(), String> {
        let rights = rights & AccessFs::from_all(self.abi);
        if rights.is_empty() {
            return Ok(());
        }
        sys::landlock_add_path_rule(ruleset, fd, rights.bits())
            .map_err(|e| format!("landlock rule for {}: {e}", path.display()))
    }
}

/// In the child: grants the view's own filesystems, and every right on the cache overlays
/// (their inodes exist only in the view, like /tmp's), then restricts the calling process (and
/// everything it starts) to the ruleset.
pub fn restrict(ruleset: RawFd, abi: i32, overlays: &[&Path]) -> Result<(), String> {
    let all = AccessFs::from_all(ABI::from(abi)).bits();
    let fresh = fresh_dir_rights(abi).into_iter().map(|(p, r)| (Path::new(p), r));
    for (path, rights) in fresh.chain(overlays.iter().map(|p| (*p, all))) {
        if let Ok(dir) = std::fs::File::open(path) {
            sys::landlock_add_path_rule(ruleset, dir.as_raw_fd(), rights)
                .map_err(|e| format!("landlock rule for {}: {e}", path.display()))?;
        }
    }
    sys::landlock_restrict_self(ruleset).map_err(|e| format!("landlock_restrict_self: {e}"))
}
