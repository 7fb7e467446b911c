//! Placeholders on the host: empty entries that give a missing protected path something to be
//! mounted read-only over. Several runs in one workspace share them, so each run holds a shared
//! lock on every placeholder it uses, and the last one out removes it: removing a placeholder
//! another run still uses would detach that run's read-only mount.

use crate::plan::{Placeholder, PlaceholderKind};
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
#[cfg(test)]
use std::path::Path;

/// Modes that mark an entry as ours: read-only placeholders are read-only on the host too;
/// folders stay writable (the sandbox writes into them) and carry the sticky bit as the mark.
const DIR_MODE: u32 = 0o555;
const FILE_MODE: u32 = 0o444;
pub const FOLDER_MODE: u32 = 0o1755;

/// A placeholder this run uses, locked shared for as long as the run lasts.
#[derive(Debug)]
pub struct Held {
    pub placeholder: Placeholder,
    lock: Flock<OwnedFd>,
}

/// Whether `path` is an empty entry of ours (made by this run or a concurrent one).
pub fn is_placeholder(p: &Placeholder) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(&p.path) else { return false };
    let mode = meta.permissions().mode() & 0o7777;
    let empty_dir = || meta.is_dir() && std::fs::read_dir(&p.path).is_ok_and(|mut d| d.next().is_none());
    match p.kind {
        PlaceholderKind::Dir => mode == DIR_MODE && empty_dir(),
        PlaceholderKind::Folder => mode == FOLDER_MODE && empty_dir(),
        PlaceholderKind::File => meta.is_file() && mode == FILE_MODE && meta.len() == 0,
    }
}

fn create(p: &Placeholder) -> io::Result<()> {
    let mode = match p.kind {
        PlaceholderKind::Dir => DIR_MODE,
        PlaceholderKind::Folder => FOLDER_MODE,
        PlaceholderKind::File => FILE_MODE,
    };
    let bits = Mode::from_bits_truncate(mode);
    // The umask may take bits away, and the mode is what marks it as ours: set it through a
    // descriptor that can't have been swapped for a link (a concurrent sandbox writes here).
    let fd = if p.kind == PlaceholderKind::File {
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        nix::fcntl::open(&p.path, flags, bits)?
    } else {
        nix::unistd::mkdir(&p.path, bits)?;
        open(p)?
    };
    nix::sys::stat::fchmod(&fd, bits)?;
    Ok(())
}

fn open(p: &Placeholder) -> io::Result<OwnedFd> {
    let kind = if p.kind == PlaceholderKind::File { OFlag::empty() } else { OFlag::O_DIRECTORY };
    Ok(nix::fcntl::open(&p.path, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | kind, Mode::empty())?)
}

fn unlink(p: &Placeholder) -> io::Result<()> {
    if p.kind == PlaceholderKind::File {
        std::fs::remove_file(&p.path)
    } else {
        std::fs::remove_dir(&p.path)
    }
}

/// Creates the placeholder, or joins a concurrent run's, and locks it shared. `Ok(None)` when
/// something real now stands at the path (it gets mounted read-only as it is).
pub fn hold(p: &Placeholder) -> io::Result<Option<Held>> {
    for _ in 0..5 {
        match create(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !is_placeholder(p) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
        let fd = match open(p) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let lock = Flock::lock(fd, FlockArg::LockShared).map_err(|(_, e)| io::Error::from(e))?;
        // A concurrent run may have removed it between our open and our lock: try again.
        let ours = nix::sys::stat::fstat(&*lock).map_err(io::Error::from)?;
        let now = std::fs::symlink_metadata(&p.path);
        if ours.st_nlink > 0 && now.is_ok_and(|m| m.ino() == ours.st_ino) {
            return Ok(Some(Held { placeholder: p.clone(), lock }));
        }
    }
    Err(io::Error::other(format!("{} keeps changing under concurrent runs", p.path.display())))
}

/// Removes a placeholder unless another run holds it, or it is no longer empty.
fn remove_if_unused(p: &Placeholder, lock: &Flock<OwnedFd>) {
    if lock.relock(FlockArg::LockExclusiveNonblock).is_ok() && is_placeholder(p) {
        let _ = unlink(p);
    }
}

impl Held {
    /// Ends this run's use; the last user removes it.
    pub fn release(self) {
        remove_if_unused(&self.placeholder, &self.lock);
    }
}

/// For the cleaner, after the supervisor died (and its locks with it).
pub fn remove_orphan(p: &Placeholder) {
    if !is_placeholder(p) {
        return;
    }
    if let Ok(fd) = open(p) {
        if let Ok(lock) = Flock::lock(fd, FlockArg::LockSharedNonblock) {
            remove_if_unused(p, &lock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_holder_removes() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/placeholder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = Placeholder { path: dir.join(".envrc"), kind: PlaceholderKind::Dir };
        let first = hold(&p).unwrap().unwrap();
        let second = hold(&p).unwrap().unwrap();
        first.release();
        assert!(p.path.is_dir(), "the second run still uses it");
        second.release();
        assert!(!p.path.exists());
        // A user's own empty folder is not a placeholder and is never touched.
        std::fs::create_dir(&p.path).unwrap();
        assert!(hold(&p).unwrap().is_none());
        remove_orphan(&p);
        assert!(p.path.is_dir());
        let f = Placeholder { path: dir.join(".bashrc"), kind: PlaceholderKind::File };
        let held = hold(&f).unwrap().unwrap();
        assert!(is_placeholder(&f));
        held.release();
        assert!(!f.path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
