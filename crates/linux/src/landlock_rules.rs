//! Landlock, the second filesystem layer. Landlock can only grant, so a denied path inside a
//! readable tree is expressed by granting each of its siblings instead of its parent.
//!
//! The supervisor builds the ruleset from the host tree while the child builds its mount view
//! (rules name inodes, and the view's binds are the host's inodes); the child then adds the
//! filesystems that exist only in the view (/tmp, /dev, /proc) and restricts itself.

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    Scope, ABI,
};
use ringfence_policy::{FsAccess, FsRules};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Filesystems that exist only in the sandbox's view, with the rights the child grants them.
pub fn fresh_dir_rights(abi: i32) -> Vec<(&'static str, u64)> {
    let abi = ABI::from(abi);
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let device = (read | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev) & all;
    vec![("/tmp", all.bits()), ("/dev", device.bits()), ("/dev/shm", all.bits()), ("/proc", read.bits())]
}

pub struct LandlockBuilder<'a> {
    rules: &'a FsRules,
    abi: ABI,
    /// Paths with a rule (or a fresh filesystem): where access can change.
    marks: BTreeSet<PathBuf>,
}

impl<'a> LandlockBuilder<'a> {
    pub fn new(rules: &'a FsRules, kernel_abi: i32) -> Self {
        let mut marks: BTreeSet<PathBuf> = rules.rules.iter().map(|r| r.path.clone()).collect();
        marks.extend(["/tmp", "/dev", "/proc", "/dev/shm", "/run", "/var/run"].map(PathBuf::from));
        LandlockBuilder { rules, abi: ABI::from(kernel_abi), marks }
    }

    /// Paths order component by component, so everything below `dir` directly follows it.
    fn has_marks_below(&self, dir: &Path) -> bool {
        use std::ops::Bound::{Excluded, Unbounded};
        self.marks
            .range::<Path, _>((Excluded(dir), Unbounded))
            .next()
            .is_some_and(|m| m.starts_with(dir))
    }

    /// Creates the ruleset and adds a rule for every host path; the child adds its fresh
    /// filesystems and restricts itself.
    pub fn build(&self) -> Result<std::os::fd::OwnedFd, String> {
        let all = AccessFs::from_all(self.abi);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(all)
            .map_err(|e| e.to_string())?;
        if self.abi >= ABI::V6 {
            ruleset = ruleset.scope(Scope::from_all(self.abi)).map_err(|e| e.to_string())?;
        }
        let mut created = ruleset.create().map_err(|e| e.to_string())?;
        let mut grants = Vec::new();
        let root = Path::new("/");
        self.visit(root, self.rules.access(root).access, true, &mut grants);
        for (path, rights, is_dir) in grants {
            let Ok(fd) = PathFd::new(&path) else { continue };
            let rights = if is_dir { rights } else { rights & AccessFs::from_file(self.abi) };
            if rights.is_empty() {
                continue;
            }
            created = created
                .add_rule(PathBeneath::new(fd, rights))
                .map_err(|e| format!("landlock rule for {}: {e}", path.display()))?;
        }
        Option::<std::os::fd::OwnedFd>::from(created).ok_or_else(|| "the kernel offers no Landlock ruleset".to_string())
    }

    fn rights(&self, access: FsAccess) -> BitFlags<AccessFs> {
        match access {
            FsAccess::Deny => BitFlags::EMPTY,
            FsAccess::Read => AccessFs::from_read(self.abi),
            FsAccess::Write => AccessFs::from_all(self.abi),
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
            FsAccess::Write => AccessFs::from_all(self.abi),
        }
    }

    /// Grants rights from `path` down. `inherited` is the parent's access, which is also this
    /// path's unless a rule names it.
    fn visit(&self, path: &Path, inherited: FsAccess, is_dir: bool, grants: &mut Vec<(PathBuf, BitFlags<AccessFs>, bool)>) {
        if crate::plan::FRESH_DIRS.iter().any(|d| path == Path::new(d)) {
            return;
        }
        let access = if self.marks.contains(path) { self.rules.access(path).access } else { inherited };
        // Rights reach the whole subtree, so nothing below a writable directory can be narrowed
        // by Landlock; stop here.
        if access == FsAccess::Write || !is_dir || !self.has_marks_below(path) {
            if access != FsAccess::Deny {
                grants.push((path.into(), self.rights(access), is_dir));
            }
            return;
        }
        grants.push((path.into(), self.passage_rights(access), true));
        let Ok(entries) = std::fs::read_dir(path) else { return };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            // Never follow links: a link to `/` would grant everything.
            if kind.is_symlink() {
                continue;
            }
            self.visit(&entry.path(), access, kind.is_dir(), grants);
        }
    }
}

/// In the child: grants the view's own filesystems, then restricts the calling process (and
/// everything it starts) to the ruleset.
pub fn restrict(ruleset: std::os::fd::RawFd, abi: i32) -> Result<(), String> {
    for (path, rights) in fresh_dir_rights(abi) {
        if let Ok(dir) = std::fs::File::open(path) {
            crate::sys::landlock_add_path_rule(ruleset, std::os::fd::AsRawFd::as_raw_fd(&dir), rights)
                .map_err(|e| format!("landlock rule for {path}: {e}"))?;
        }
    }
    crate::sys::landlock_restrict_self(ruleset).map_err(|e| format!("landlock_restrict_self: {e}"))
}
