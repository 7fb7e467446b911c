//! Folders whose every entry matters: hooks folders, legacy remote definitions, git's
//! in-progress rebase and cherry-pick state, and the protected names (`.envrc`, `.vscode/`,
//! ...) wherever they occur.

use super::fsops::{file_type, is_quarantined};
use super::{At, Place, Walk, GIT, MAX_DEPTH, PROTECTED};
use nix::sys::stat::FileStat;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

impl Walk<'_> {
    /// One step along a protected name (`.cargo`, then `config.toml`): `name` in `at`, with
    /// `rest` still to go. What lies on the way counts as changed if any folder on the way did
    /// (a folder renamed into place keeps its entries' times).
    pub(super) fn protected(&mut self, at: &At, name: &OsStr, rest: &[&OsStr], inherited: bool) {
        let path = at.path.join(name);
        if self.skipped(&path) {
            return;
        }
        let Some(st) = self.lstat(at, name) else { return };
        let new = inherited || self.is_new(&st);
        let Some((next, rest)) = rest.split_first() else { return self.protected_entry(at, name, &st, new) };
        match file_type(&st) {
            libc::S_IFDIR => {
                if let Some(fd) = self.open_dir(at, name) {
                    let inner = At { fd: fd.as_fd(), path: &path, depth: at.depth + 1, place: Place::Tree };
                    self.protected(&inner, next, rest, new);
                }
            }
            libc::S_IFLNK if new => {
                let why = "the command put a link on the way to a file that tools read and run";
                self.quarantine(at, name, PROTECTED, why.into());
            }
            _ => {}
        }
    }

    /// The protected path itself: a file the run created or changed is moved aside (unless
    /// empty, which runs nothing: the plan's own placeholders are empty); in a folder, each
    /// entry the run created or changed is, and all of them if the folder itself changed.
    fn protected_entry(&mut self, at: &At, name: &OsStr, st: &FileStat, new: bool) {
        if file_type(st) == libc::S_IFDIR {
            self.folder(at, name, (PROTECTED, PROTECTED_WHY), false, new);
        } else if new && !(file_type(st) == libc::S_IFREG && st.st_size == 0) {
            self.quarantine(at, name, PROTECTED, PROTECTED_WHY.into());
        }
    }

    /// A folder whose entries each matter (hooks, remote definitions, a protected folder):
    /// every entry the run created or changed is moved aside, and all of them if the folder
    /// itself changed (or `inherited`, a folder above it on the way did): a folder moved into
    /// place keeps its entries' change times. `samples` skips git's `*.sample` hooks.
    pub(super) fn folder(&mut self, at: &At, name: &OsStr, reason: Reason, samples: bool, inherited: bool) {
        let path = at.path.join(name);
        if self.skipped(&path) {
            return;
        }
        let Some(new) = self.lstat(at, name).map(|st| inherited || self.is_new(&st)) else { return };
        if let Some(fd) = self.open_dir(at, name) {
            self.folder_entries(fd, &path, at.depth + 1, new, reason, samples);
        }
    }

    fn folder_entries(
        &mut self,
        fd: OwnedFd,
        path: &Path,
        depth: usize,
        inherited: bool,
        reason: Reason,
        samples: bool,
    ) {
        if depth > MAX_DEPTH {
            return self.bound(path, format!("it lies more than {MAX_DEPTH} folders deep"));
        }
        let at = At { fd: fd.as_fd(), path, depth, place: Place::Tree };
        let listed = self.list(&at, |walk, name, _| walk.folder_entry(&at, name, inherited, reason, samples));
        if let Err(e) = listed {
            self.fail(path, e);
        }
    }

    fn folder_entry(&mut self, at: &At, name: &OsStr, inherited: bool, (rule, why): Reason, samples: bool) {
        let sample = samples && name.as_bytes().ends_with(b".sample");
        if sample || self.skipped(&at.path.join(name)) {
            return;
        }
        let Some(st) = self.lstat(at, name) else { return };
        let new = inherited || self.is_new(&st);
        let is_dir = file_type(&st) == libc::S_IFDIR;
        if is_quarantined(name) && !is_dir {
            // Unused by that name; a usable name again would be a change.
        } else if new && !is_quarantined(name) {
            self.quarantine(at, name, rule, why.into());
        } else if is_dir {
            // A folder moved aside stays, but what is in it is judged all the same.
            if let Some(inner) = self.open_dir(at, name) {
                self.folder_entries(inner, &at.path.join(name), at.depth + 1, new, (rule, why), false);
            }
        }
    }

    /// git's rebase or cherry-pick state: moved aside whole if the run created it or changed
    /// anything in it, since the user's `--continue` would carry it out.
    pub(super) fn state_folder(&mut self, at: &At, name: &OsStr) {
        let path = at.path.join(name);
        if self.skipped(&path) {
            return;
        }
        let Some(st) = self.lstat(at, name) else { return };
        let changed = self.is_new(&st) || self.open_dir(at, name).is_none_or(|fd| self.subtree_changed(fd, &path, 0));
        if changed {
            let command = if super::same(name, "sequencer") { "cherry-pick or revert" } else { "rebase" };
            let why = format!(
                "the command created or changed git's {command} state, which `git {} --continue` would carry out \
                 (its todo list and options can run programs)",
                command.split(' ').next().unwrap_or(command)
            );
            self.quarantine(at, name, GIT, why);
        }
    }

    /// Gives every entry below a folder that was moved aside a name of the same kind: a
    /// folder moved back into place later keeps its entries' change times, so nothing in it
    /// may be usable without another rename (which the review would see).
    pub(super) fn disarm(&mut self, at: &At, aside: &OsStr) -> Result<(), String> {
        let Some(st) = self.lstat(at, aside) else { return Ok(()) };
        if file_type(&st) != libc::S_IFDIR {
            return Ok(());
        }
        let fd = self.open_dir(at, aside).ok_or("opening it to rename what is in it failed")?;
        self.disarm_entries(fd, &at.path.join(aside), at.depth + 1)
    }

    fn disarm_entries(&mut self, fd: OwnedFd, path: &Path, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("it holds folders more than {MAX_DEPTH} deep"));
        }
        let at = At { fd: fd.as_fd(), path, depth, place: Place::Tree };
        let mut failed = Ok(());
        self.list(&at, |walk, name, kind| {
            if failed.is_ok() {
                failed = walk.disarm_entry(&at, name, kind);
            }
        })?;
        if self.stopped {
            return Err("the review ran out of entries".into());
        }
        failed
    }

    fn disarm_entry(&mut self, at: &At, name: &OsStr, kind: Option<nix::dir::Type>) -> Result<(), String> {
        let is_dir = match kind {
            Some(kind) => kind == nix::dir::Type::Directory,
            None => self.lstat(at, name).is_some_and(|st| file_type(&st) == libc::S_IFDIR),
        };
        if is_dir {
            let inner = self.open_dir(at, name).ok_or("opening a folder in it failed")?;
            self.disarm_entries(inner, &at.path.join(name), at.depth + 1)?;
        }
        if !is_quarantined(name) {
            super::fsops::move_aside(at.fd, name).map_err(|e| format!("renaming what is in it failed ({e})"))?;
        }
        Ok(())
    }

    /// Whether anything below a folder changed during the run (true when that can't be told).
    fn subtree_changed(&mut self, fd: OwnedFd, path: &Path, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        let at = At { fd: fd.as_fd(), path, depth, place: Place::Tree };
        let mut changed = false;
        let listed = self.list(&at, |walk, name, _| changed = changed || walk.entry_changed(&at, name));
        changed || listed.is_err() || self.stopped
    }

    fn entry_changed(&mut self, at: &At, name: &OsStr) -> bool {
        let Some(st) = self.lstat(at, name) else { return false };
        self.is_new(&st)
            || (file_type(&st) == libc::S_IFDIR
                && self
                    .open_dir(at, name)
                    .is_none_or(|inner| self.subtree_changed(inner, &at.path.join(name), at.depth + 1)))
    }
}

/// The rule a finding is reported under, and why.
type Reason = (&'static str, &'static str);

const PROTECTED_WHY: &str =
    "the command created or changed this, and tools (git, direnv, editors, agents) run what such a file says";
