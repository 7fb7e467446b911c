//! Carrying out an ACL plan, journaled, and undoing it: at the end of the run, or at a later
//! `spawn` for a run that died.

use crate::acl::Acl;
use crate::error::LaunchError;
use crate::journal::{self, Entry, Journal};
use crate::plan::{AclPlan, Kind, Op};
use crate::sid::{self, Sid};
use crate::sys::fs::{self as sfs, JournalFile};
use crate::sys::{os_string, security, units};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The changes one run made, journaled as they were made.
pub struct RunChanges {
    journal: JournalFile,
    path: PathBuf,
    logon: Sid,
    entries: Vec<Entry>,
    /// Placeholders this run holds open (no delete sharing) until it ends.
    held: Vec<File>,
}

/// Edits `path`'s DACL with `edit` (which says whether it changed anything) and writes it back
/// if so, keeping its inheritance as it is; Windows propagates inheritable entries below.
pub(crate) fn edit_dacl(path: &str, edit: impl FnOnce(&mut Acl) -> bool) -> Result<(), LaunchError> {
    let (dacl, protected) = security::file_dacl(path)?;
    let mut acl = dacl.unwrap_or_else(|| {
        // A NULL DACL grants everyone everything; adding a deny to it must keep that for
        // everyone else.
        Acl::new(vec![crate::acl::Ace::Allow {
            flags: crate::acl::flags::TREE,
            mask: crate::acl::mask::FILE_ALL,
            sid: sid::well_known::everyone(),
        }])
    });
    if !edit(&mut acl) {
        return Ok(());
    }
    let to_write = if protected { acl } else { acl.explicit() };
    security::set_file_dacl(path, &to_write, protected).map_err(|code| {
        let mut e = crate::sys::os_error(format!("changing the ACL of {path}"), "SetNamedSecurityInfoW", code);
        if code == 5 {
            e.kind = crate::error::ErrorKind::Policy;
            e.remedy = Some(format!(
                "{path} must be a file or folder you may change permissions of; remove the rule or fix its owner"
            ));
        }
        e
    })
}

/// Adds `aces` to `path`'s DACL.
fn add_aces(path: &str, aces: &[crate::acl::Ace]) -> Result<(), LaunchError> {
    edit_dacl(path, |acl| aces.iter().fold(false, |changed, ace| acl.add_explicit(ace.clone()) | changed))
}

/// Removes every explicit entry naming `logon` from `path`'s DACL. A path that no longer
/// exists has nothing to remove; a DACL that can't be read or written is an error (its
/// entries may still be there).
fn strip(path: &[u16], logon: &Sid) -> Result<(), String> {
    let shown = os_string(path).to_string_lossy().into_owned();
    if std::fs::symlink_metadata(Path::new(&os_string(path))).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(());
    }
    edit_dacl(&shown, |acl| acl.remove_explicit_for(logon) > 0)
        .map_err(|e| format!("removing the entries of {logon} from {shown}: {}", e.message))
}

impl RunChanges {
    /// Starts the run's journal in `runs_dir`.
    pub fn begin(runs_dir: &Path, logon: &Sid) -> Result<RunChanges, LaunchError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = runs_dir.join(journal::file_name(crate::sys::current_pid(), n));
        let mut file = JournalFile::create(&path)
            .map_err(|e| crate::error::needs_setup(format!("creating the run journal {}: {e}", path.display())))?;
        file.append(&format!("{}\n{}", journal::HEADER, journal::logon_line(logon)))
            .map_err(|e| LaunchError::internal(format!("writing the run journal: {e}")))?;
        Ok(RunChanges { journal: file, path, logon: logon.clone(), entries: vec![], held: vec![] })
    }

    fn record(&mut self, entry: Entry) -> Result<(), LaunchError> {
        if self.entries.contains(&entry) {
            return Ok(());
        }
        self.journal
            .append(&journal::entry_line(&entry))
            .map_err(|e| LaunchError::internal(format!("writing the run journal: {e}")))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Creates the run's private temporary folder.
    pub fn temp_dir(&mut self, path: &Path) -> Result<(), LaunchError> {
        self.record(Entry::TempDir(units(path)))?;
        std::fs::create_dir(path)
            .map_err(|e| LaunchError::internal(format!("creating the run's temporary folder {}: {e}", path.display())))
    }

    /// Carries out the plan for the sandbox `account`.
    pub fn apply(&mut self, plan: &AclPlan, account: &Sid) -> Result<(), LaunchError> {
        let readers = sid::sandbox_token_sids(account, &self.logon);
        for op in &plan.ops {
            let path = op.path();
            let w: Vec<u16> = path.encode_utf16().collect();
            match op {
                Op::Folder { .. } => {
                    self.record(Entry::Folder(w))?;
                    if let Err(e) = std::fs::create_dir(path) {
                        if e.kind() != std::io::ErrorKind::AlreadyExists {
                            return Err(LaunchError::internal(format!("creating the folder {path}: {e}")));
                        }
                    }
                }
                Op::Placeholder { kind, .. } => {
                    self.record(Entry::Placeholder(*kind, w))?;
                    match sfs::create_placeholder(Path::new(path), *kind) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(LaunchError::internal(format!("creating the placeholder {path}: {e}"))),
                    }
                    let held = sfs::hold(Path::new(path))
                        .map_err(|e| LaunchError::internal(format!("holding the placeholder {path}: {e}")))?;
                    self.held.push(held);
                }
                Op::Grant { .. } => {
                    self.record(Entry::Ace(w))?;
                    add_aces(path, &op.aces(&self.logon))?;
                }
                Op::Deny { mask, tree, .. } => {
                    self.record(Entry::Ace(w))?;
                    add_aces(path, &op.aces(&self.logon))?;
                    // An empty protected path may be a concurrent run's placeholder: hold it so
                    // that run's clean-up can't remove it while this run relies on it.
                    let p = Path::new(path);
                    let kind = if *tree { Kind::Dir } else { Kind::File };
                    if *mask != crate::acl::mask::DELETE && sfs::is_placeholder(p, kind) {
                        if let Ok(f) = sfs::hold(p) {
                            self.held.push(f);
                        }
                    }
                }
                Op::DenyIfReadable { .. } => {
                    let (dacl, _) = security::file_dacl(path)?;
                    let readable = dacl.map(|acl| acl.may_read(&readers)).unwrap_or(true);
                    if readable {
                        self.record(Entry::Ace(w))?;
                        add_aces(path, &op.aces(&self.logon))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Undoes everything; returns what could not be undone.
    pub fn undo(self) -> Vec<String> {
        let RunChanges { journal: file, path, logon, entries, held } = self;
        drop(held);
        let warnings = undo_journal(&Journal { logon: Some(logon), entries });
        drop(file);
        if warnings.is_empty() {
            let _ = std::fs::remove_file(&path);
        }
        warnings
    }
}

/// Undoes a journal's changes, in [`journal::undo_order`].
pub fn undo_journal(journal: &Journal) -> Vec<String> {
    let mut warnings = Vec::new();
    for entry in journal::undo_order(journal) {
        match entry {
            Entry::Ace(p) => {
                if let Some(logon) = &journal.logon {
                    if let Err(e) = strip(p, logon) {
                        warnings.push(e);
                    }
                }
            }
            Entry::Placeholder(kind, p) => sfs::remove_placeholder(Path::new(&os_string(p)), *kind),
            Entry::Folder(p) => {
                let path = PathBuf::from(os_string(p));
                if sfs::is_empty_dir(&path) {
                    let _ = std::fs::remove_dir(&path);
                }
            }
            Entry::TempDir(p) => {
                let path = PathBuf::from(os_string(p));
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warnings.push(format!("removing the run's temporary folder {}: {e}", path.display()));
                    }
                }
            }
        }
    }
    warnings
}

/// Undoes the journals in `runs_dir` whose runs died, and removes them. A journal its run
/// still holds is skipped; a journal with something left undone is kept, so the next attempt
/// tries again. Returns what could not be undone (the caller must not run while anything is:
/// a logon SID's entries left behind could match a later logon after a restart).
pub fn recover(runs_dir: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    let Ok(dir) = std::fs::read_dir(runs_dir) else { return warnings };
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("journal") {
            continue;
        }
        let Some(mut file) = sfs::claim_stale(&path) else { continue };
        let mut text = String::new();
        let parsed = std::io::Read::read_to_string(&mut file, &mut text)
            .map_err(|e| e.to_string())
            .and_then(|_| journal::parse(&text));
        drop(file);
        match parsed {
            Ok(j) => {
                let left = undo_journal(&j);
                if left.is_empty() {
                    let _ = std::fs::remove_file(&path);
                }
                warnings.extend(left);
            }
            Err(e) => warnings.push(format!("the journal {} is unreadable: {e}", path.display())),
        }
    }
    warnings
}
