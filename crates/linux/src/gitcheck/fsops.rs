//! The review's file operations. The sandbox, or a concurrent run in the same folder, controls
//! the trees the review works in, so nothing is looked up by path: every lookup is one name
//! relative to an open folder that never follows a link, and every change is made through a
//! descriptor or within an open folder.

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Suffix given to what is moved aside.
pub const QUARANTINE_SUFFIX: &str = ".ringfence-quarantined";

/// Numbered names tried after the plain one, before a random one.
const NUMBERED_NAMES: u32 = 9;

/// Opens `rel` below `dir` without following any link and without leaving `dir`.
pub fn open_beneath(dir: BorrowedFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(dir, rel, how)
}

/// What stands at `name` in `dir`, not following a link.
pub fn lstat_at(dir: BorrowedFd, name: &OsStr) -> nix::Result<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// The file type bits of a mode.
pub fn file_type(st: &FileStat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// Adds `bits` to the mode of `fd`'s file if the caller owns it. Works on an `O_PATH`
/// descriptor too (through its `/proc/self/fd` link, which names the open file, not a path
/// the sandbox could swap). Returns the mode before, or None when another user owns it.
pub fn grant_fd(fd: BorrowedFd, bits: u32) -> nix::Result<Option<u32>> {
    let st = fstat(fd)?;
    if st.st_uid != nix::unistd::geteuid().as_raw() {
        return Ok(None);
    }
    if file_type(&st) == libc::S_IFLNK {
        return Err(Errno::ELOOP);
    }
    let before = st.st_mode & 0o7777;
    let mode = Mode::from_bits_truncate(before | bits);
    let proc_link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::sys::stat::fchmodat(fd, proc_link.as_str(), mode, nix::sys::stat::FchmodatFlags::FollowSymlink)?;
    Ok(Some(before))
}

/// [`grant_fd`] for the entry `name` of `dir`.
pub fn grant(dir: BorrowedFd, name: &OsStr, bits: u32) -> nix::Result<Option<u32>> {
    let fd = open_beneath(dir, Path::new(name), OFlag::O_PATH)?;
    grant_fd(fd.as_fd(), bits)
}

/// A name nobody can guess ahead of time, for when the usual ones are taken.
fn random_suffix() -> String {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let bits = std::collections::hash_map::RandomState::new().hash_one((now.as_nanos(), std::process::id()));
    format!("{bits:016x}")
}

fn with_suffix(name: &OsStr, extra: &str) -> OsString {
    let mut out = name.to_os_string();
    out.push(QUARANTINE_SUFFIX);
    out.push(extra);
    out
}

/// Whether a name is one the review gave to something it moved aside.
pub fn is_quarantined(name: &OsStr) -> bool {
    name.as_bytes().windows(QUARANTINE_SUFFIX.len()).any(|w| w == QUARANTINE_SUFFIX.as_bytes())
}

/// Renames `name` within `dir` without replacing anything: `NAME.ringfence-quarantined`, then
/// `.1` to `.9`, then a random suffix (a hidden random name when the name is too long for
/// one). A regular file moved aside loses its execute and group/other permissions.
pub fn move_aside(dir: BorrowedFd, name: &OsStr) -> nix::Result<OsString> {
    let numbered = (0..=NUMBERED_NAMES).map(|n| if n == 0 { String::new() } else { format!(".{n}") });
    let candidates = numbered.chain(std::iter::once(format!(".{}", random_suffix())));
    let mut last = Errno::EEXIST;
    for extra in candidates {
        let mut aside = with_suffix(name, &extra);
        let mut result = rename_no_replace(dir, name, &aside);
        if result == Err(Errno::ENAMETOOLONG) {
            aside = OsString::from(format!("{QUARANTINE_SUFFIX}.{}", random_suffix()));
            result = rename_no_replace(dir, name, &aside);
        }
        match result {
            Ok(()) => {
                restrict_moved_file(dir, &aside);
                return Ok(aside);
            }
            Err(Errno::EEXIST) => last = Errno::EEXIST,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// `renameat2(RENAME_NOREPLACE)`, or a plain rename to a random name on filesystems without it.
fn rename_no_replace(dir: BorrowedFd, from: &OsStr, to: &OsStr) -> nix::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE) {
        Err(Errno::EINVAL) if lstat_at(dir, to) == Err(Errno::ENOENT) => nix::fcntl::renameat(dir, from, dir, to),
        other => other,
    }
}

/// Takes execute and group/other permissions from a regular file moved aside, unless other
/// names link to it (they keep their mode).
fn restrict_moved_file(dir: BorrowedFd, aside: &OsStr) {
    if let Ok(fd) = open_beneath(dir, Path::new(aside), OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
        if fstat(fd.as_fd()).is_ok_and(|st| file_type(&st) == libc::S_IFREG && st.st_nlink == 1) {
            let _ = nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(0o600));
        }
    }
}

/// Removes `name` from `dir`, and everything in it if it is a folder, through descriptors.
/// Each entry costs one of `budget`; running out fails with `E2BIG`.
pub fn remove(dir: BorrowedFd, name: &OsStr, budget: &mut u64, depth: usize) -> nix::Result<()> {
    use nix::unistd::{unlinkat, UnlinkatFlags};
    *budget = budget.checked_sub(1).ok_or(Errno::E2BIG)?;
    if file_type(&lstat_at(dir, name)?) != libc::S_IFDIR {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    if depth > super::MAX_DEPTH {
        return Err(Errno::E2BIG);
    }
    let folder = open_beneath(dir, Path::new(name), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    // The listing reads through a copy of the descriptor (the same open folder), while the
    // entries are removed through the original.
    let mut listing = nix::dir::Dir::from_fd(
        folder.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EMFILE)))?,
    )?;
    for entry in listing.iter() {
        let entry = entry?;
        let child = OsStr::from_bytes(entry.file_name().to_bytes());
        if child != "." && child != ".." {
            remove(folder.as_fd(), child, budget, depth + 1)?;
        }
    }
    drop(listing);
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// Reads `name` in `dir` if it is a regular file of at most `cap` bytes: opened without
/// blocking and checked once open, since a FIFO swapped in would block the open or the read.
/// `EINVAL` for another kind of file, `EFBIG` for a larger one.
pub fn read_file(dir: BorrowedFd, name: &OsStr, cap: u64) -> nix::Result<Vec<u8>> {
    let fd = open_beneath(dir, Path::new(name), OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let st = fstat(fd.as_fd())?;
    if file_type(&st) != libc::S_IFREG {
        return Err(Errno::EINVAL);
    }
    if st.st_size as u64 > cap {
        return Err(Errno::EFBIG);
    }
    let mut text = Vec::new();
    std::fs::File::from(fd).take(cap + 1).read_to_end(&mut text).map_err(|_| Errno::EIO)?;
    if text.len() as u64 > cap {
        return Err(Errno::EFBIG);
    }
    Ok(text)
}

/// Creates `name` in `dir` with `content`, only if nothing stands there: a link placed there
/// meanwhile wins nothing.
pub fn create_new(dir: BorrowedFd, name: &OsStr, content: &[u8]) -> nix::Result<()> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(0o644))?;
    std::fs::File::from(fd).write_all(content).map_err(|_| Errno::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_aside_never_replaces() {
        let dir = std::env::temp_dir().join(format!("rf-fsops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("hook.ringfence-quarantined")).unwrap();
        std::fs::write(dir.join("hook"), "x").unwrap();
        let fd = nix::fcntl::open(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let aside = move_aside(fd.as_fd(), OsStr::new("hook")).unwrap();
        assert_eq!(aside, "hook.ringfence-quarantined.1");
        assert!(is_quarantined(&aside) && !is_quarantined(OsStr::new("hook")));
        let long = "x".repeat(250);
        std::fs::write(dir.join(&long), "x").unwrap();
        let aside = move_aside(fd.as_fd(), OsStr::new(&long)).unwrap();
        assert!(aside.to_string_lossy().starts_with(".ringfence-quarantined."), "{aside:?}");
        let mut budget = 10;
        std::fs::create_dir_all(dir.join("tree/a/b")).unwrap();
        remove(fd.as_fd(), OsStr::new("tree"), &mut budget, 0).unwrap();
        assert!(!dir.join("tree").exists());
        assert_eq!(budget, 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
