//! Landlock, the second filesystem layer. Landlock can only grant, so a denied path inside a
//! readable tree is expressed by granting each of its siblings instead of its parent. Runs in
//! the sandbox after pivot_root, so rules attach to the view's inodes.

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use ringfence_policy::{FsAccess, FsRules};
use std::path::{Path, PathBuf};

/// Directories whose content is the sandbox's own, with the rights they get.
fn special_rights(path: &Path, abi: ABI) -> Option<BitFlags<AccessFs>> {
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let file_rw = read | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
    match path.to_str()? {
        "/tmp" | "/dev/shm" => Some(all),
        "/dev" => Some(file_rw & all),
        "/proc" => Some((read | AccessFs::WriteFile) & all),
        _ => None,
    }
}

pub struct LandlockBuilder<'a> {
    rules: &'a FsRules,
    abi: ABI,
    /// Paths with a rule, sorted, to find "is there anything below this directory".
    marks: Vec<PathBuf>,
}

impl<'a> LandlockBuilder<'a> {
    pub fn new(rules: &'a FsRules, kernel_abi: i32) -> Self {
        let mut marks: Vec<PathBuf> = rules.rules.iter().map(|r| r.path.clone()).collect();
        marks.extend(["/tmp", "/dev", "/proc", "/dev/shm", "/run", "/var/run"].map(PathBuf::from));
        marks.sort();
        marks.dedup();
        LandlockBuilder { rules, abi: ABI::from(kernel_abi), marks }
    }

    fn has_marks_below(&self, dir: &Path) -> bool {
        self.marks.iter().any(|m| m != dir && m.starts_with(dir))
    }

    fn access(&self, path: &Path) -> FsAccess {
        self.rules.access(path).access
    }

    /// Creates the ruleset and adds every rule; `restrict_self` is applied by the caller.
    pub fn build(&self) -> Result<RulesetCreated, String> {
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
        self.visit(Path::new("/"), &mut grants);
        for (path, rights) in grants {
            let Ok(fd) = PathFd::new(&path) else { continue };
            let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
            let rights = if is_dir { rights } else { rights & AccessFs::from_file(self.abi) };
            if rights.is_empty() {
                continue;
            }
            created = created
                .add_rule(PathBeneath::new(fd, rights))
                .map_err(|e| format!("landlock rule for {}: {e}", path.display()))?;
        }
        Ok(created)
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

    fn visit(&self, path: &Path, grants: &mut Vec<(PathBuf, BitFlags<AccessFs>)>) {
        if let Some(rights) = special_rights(path, self.abi) {
            if path == Path::new("/dev") {
                grants.push((path.into(), rights));
                if let Some(shm) = special_rights(Path::new("/dev/shm"), self.abi) {
                    grants.push(("/dev/shm".into(), shm));
                }
            } else {
                grants.push((path.into(), rights));
            }
            return;
        }
        let access = self.access(path);
        // Rights reach the whole subtree, so nothing below a writable directory can be narrowed
        // by Landlock; stop here.
        if access == FsAccess::Write || !self.has_marks_below(path) {
            if access != FsAccess::Deny {
                grants.push((path.into(), self.rights(access)));
            }
            return;
        }
        grants.push((path.into(), self.passage_rights(access)));
        let Ok(entries) = std::fs::read_dir(path) else { return };
        for entry in entries.flatten() {
            // Never follow links: a link to `/` would grant everything.
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            self.visit(&entry.path(), grants);
        }
    }
}

/// Applies the ruleset to the calling process (and everything it starts).
pub fn restrict(created: RulesetCreated) -> Result<(), String> {
    let status = created.restrict_self().map_err(|e| e.to_string())?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("the kernel accepted the ruleset but does not enforce it".into());
    }
    Ok(())
}
