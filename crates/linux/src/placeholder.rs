//! Placeholders on the host: empty entries that give a missing protected path something to be
//! mounted read-only over. Several runs in one workspace share them, so each run holds a shared
//! lock on every placeholder it uses, and the last one out removes it: removing a placeholder
//! another run still uses would detach that run's read-only mount.

use crate::mount_plan::{Placeholder, PlaceholderKind};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstatat, FchmodatFlags, FileStat, Mode};
use nix::unistd::UnlinkatFlags;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Modes that mark an entry as ours: read-only placeholders are read-only on the host too;
/// folders stay writable (the sandbox writes into them) and carry the sticky bit as the mark.
const DIR_MODE: u32 = 0o555;
const FILE_MODE: u32 = 0o444;
const FOLDER_MODE: u32 = 0o1755;

/// A placeholder this run uses, locked shared for as long as the run lasts.
#[derive(Debug)]
pub struct Held {
    pub placeholder: Placeholder,
    lock: Flock<OwnedFd>,
}

/// The kind of placeholder an entry's type and mode mark it as ours: read-only placeholders by
/// their read-only modes (a file also by being empty), folders by the sticky bit. Whether a
/// directory is empty is for the caller to check.
pub fn marked_kind(is_dir: bool, is_file: bool, mode: u32, len: u64) -> Option<PlaceholderKind> {
    match mode & 0o7777 {
        DIR_MODE if is_dir => Some(PlaceholderKind::Dir),
        FOLDER_MODE if is_dir => Some(PlaceholderKind::Folder),
        FILE_MODE if is_file && len == 0 => Some(PlaceholderKind::File),
        _ => None,
    }
}

/// Whether `path` is an empty entry of ours (made by this run or a concurrent one).
fn is_placeholder(p: &Placeholder) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(&p.path) else { return false };
    marked_kind(meta.is_dir(), meta.is_file(), meta.permissions().mode(), meta.len()) == Some(p.kind)
        && (p.kind == PlaceholderKind::File || is_empty_dir(&p.path))
}

/// Whether the folder at `path` holds nothing.
pub fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
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

/// Whether `st` has the kind and mode of a placeholder like `p` (an empty file for files;
/// emptiness of directories is left to rmdir, which removes only empty ones).
fn looks_like(p: &Placeholder, st: &FileStat) -> bool {
    let kind = st.st_mode & libc::S_IFMT;
    let len = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    marked_kind(kind == libc::S_IFDIR, kind == libc::S_IFREG, st.st_mode, len) == Some(p.kind)
}

impl Held {
    /// Ends this run's use; the last user removes it. Returns what could not be removed.
    #[must_use]
    pub fn release(self) -> Option<String> {
        // Unless another run holds it too.
        self.lock.relock(FlockArg::LockExclusiveNonblock).ok()?;
        remove(&self.placeholder, Some(&self.lock))
    }
}

/// For the cleaner, after the supervisor died (and its locks with it). Returns what could not
/// be removed.
#[must_use]
pub fn remove_orphan(p: &Placeholder) -> Option<String> {
    remove(p, None)
}

/// Removes `p` unless it is no longer ours (a different entry, or no longer empty) or another
/// run holds it: `held` is this run's lock, already exclusive; without one (the cleaner), an
/// exclusive lock is taken here. Works through descriptors that never follow a link. A run may
/// take write or search permission away from folders it can write (`chmod 0555 .`, `chmod 0
/// sub`): on folders the caller owns that is lifted for the removal and put back after, so
/// they end with the modes the run left. Returns a message naming the path if removal failed.
#[must_use]
fn remove(p: &Placeholder, held: Option<&Flock<OwnedFd>>) -> Option<String> {
    let mut lifted = Vec::new();
    let result = remove_lifting(p, held, &mut lifted);
    for (dir, mode) in lifted.into_iter().rev() {
        let _ = chmod_fd(&dir, mode);
    }
    match result {
        Ok(()) => None,
        Err(e) => Some(format!("{}: this placeholder could not be removed ({e}); remove it by hand", p.path.display())),
    }
}

fn remove_lifting(p: &Placeholder, held: Option<&Flock<OwnedFd>>, lifted: &mut Lifted) -> nix::Result<()> {
    let (Some(folder), Some(name)) = (p.path.parent(), p.path.file_name()) else { return Err(Errno::EINVAL) };
    let mut dir = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    for step in folder.components().skip(1) {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        dir = match lifting(&dir, libc::S_IXUSR, lifted, |d| {
            nix::fcntl::openat(d, step.as_os_str(), flags, Mode::empty())
        }) {
            // Its folder is gone (a folder made for the run, removed already): so is it.
            Err(Errno::ENOENT) => return Ok(()),
            other => other?,
        };
    }
    let st = match lifting(&dir, libc::S_IXUSR, lifted, |d| fstatat(d, name, AtFlags::AT_SYMLINK_NOFOLLOW)) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other?,
    };
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let same = |fd: &OwnedFd| nix::sys::stat::fstat(fd).is_ok_and(|l| l.st_ino == st.st_ino && l.st_dev == st.st_dev);
    // This run's own folder may have had its mode changed inside; only its identity counts.
    let ours = match held {
        Some(lock) => same(lock) && (looks_like(p, &st) || (p.kind == PlaceholderKind::Folder && is_dir)),
        None => looks_like(p, &st),
    };
    if !ours {
        return Ok(());
    }
    // Without this run's lock (the cleaner), none of another run's either.
    let _exclusive = match held {
        Some(_) => None,
        None => {
            let fd =
                nix::fcntl::openat(&dir, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
            match Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
                Ok(lock) if same(&lock) => Some(lock),
                _ => return Ok(()),
            }
        }
    };
    let how = if is_dir { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
    match lifting(&dir, libc::S_IWUSR | libc::S_IXUSR, lifted, |d| nix::unistd::unlinkat(d, name, how)) {
        // No longer empty, or gone: not ours any more.
        Err(Errno::ENOTEMPTY | Errno::EEXIST | Errno::ENOENT) => Ok(()),
        other => other,
    }
}

/// Folders whose mode was lifted, with the mode to put back.
type Lifted = Vec<(OwnedFd, libc::mode_t)>;

/// Runs `op` in `dir`; if the caller lacks permission there and owns `dir`, grants itself
/// `bits` on it (remembered in `lifted`) and tries again.
fn lifting<T>(
    dir: &OwnedFd,
    bits: libc::mode_t,
    lifted: &mut Lifted,
    op: impl Fn(BorrowedFd) -> nix::Result<T>,
) -> nix::Result<T> {
    match op(dir.as_fd()) {
        Err(Errno::EACCES) => {}
        other => return other,
    }
    let st = nix::sys::stat::fstat(dir)?;
    let mode = st.st_mode & 0o7777;
    if st.st_uid != nix::unistd::geteuid().as_raw() || mode & bits == bits {
        return Err(Errno::EACCES);
    }
    if !lifted
        .iter()
        .any(|(d, _)| nix::sys::stat::fstat(d).is_ok_and(|l| l.st_ino == st.st_ino && l.st_dev == st.st_dev))
    {
        lifted.push((dir.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?, mode));
    }
    chmod_fd(dir, mode | bits)?;
    op(dir.as_fd())
}

/// Changes the mode of the directory `fd` refers to (an O_PATH descriptor, which fchmod
/// refuses), through its /proc/self/fd link: that names exactly this inode.
fn chmod_fd(fd: &OwnedFd, mode: libc::mode_t) -> nix::Result<()> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        link.as_str(),
        Mode::from_bits_truncate(mode),
        FchmodatFlags::FollowSymlink,
    )
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
        assert_eq!(first.release(), None);
        assert!(p.path.is_dir(), "the second run still uses it");
        assert_eq!(second.release(), None);
        assert!(!p.path.exists());
        // A user's own empty folder is not a placeholder and is never touched.
        std::fs::create_dir(&p.path).unwrap();
        assert!(hold(&p).unwrap().is_none());
        assert_eq!(remove_orphan(&p), None);
        assert!(p.path.is_dir());
        let f = Placeholder { path: dir.join(".bashrc"), kind: PlaceholderKind::File };
        let held = hold(&f).unwrap().unwrap();
        assert!(is_placeholder(&f));
        assert_eq!(held.release(), None);
        assert!(!f.path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A folder made for the run is removed even after the run changed its mode (the sandbox
    /// can: it is writable inside), by identity; the cleaner leaves one another run holds.
    #[test]
    fn folders_go_by_identity_and_orphans_respect_other_runs() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let folder = Placeholder { path: dir.join(".config"), kind: PlaceholderKind::Folder };
        let inside = Placeholder { path: folder.path.join("autostart"), kind: PlaceholderKind::Dir };
        let held = [hold(&folder).unwrap().unwrap(), hold(&inside).unwrap().unwrap()];
        std::fs::set_permissions(&folder.path, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!is_placeholder(&folder));
        for h in held.into_iter().rev() {
            assert_eq!(h.release(), None);
        }
        assert!(!folder.path.exists(), "the run's own folder stayed");
        // What the supervisor removed is no concern of the clean-up that follows.
        assert_eq!((remove_orphan(&inside), remove_orphan(&folder)), (None, None));

        let p = Placeholder { path: dir.join(".envrc"), kind: PlaceholderKind::Dir };
        let other_run = hold(&p).unwrap().unwrap();
        assert_eq!(remove_orphan(&p), None);
        assert!(p.path.is_dir(), "removed while another run holds it");
        drop(other_run);
        assert_eq!(remove_orphan(&p), None);
        assert!(!p.path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
