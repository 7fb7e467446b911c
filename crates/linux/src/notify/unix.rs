//! Which Unix socket a connect may reach: one bound inside the sandbox, whenever and wherever
//! it was bound. A pathname is resolved in the sandbox's own view (its root, or its working
//! directory for a relative name), never following anything out of it, to a descriptor that
//! pins the inode; that inode must be the file of a socket listening in the sandbox's network
//! namespace, which the kernel's sock_diag lists. The connect then goes through that
//! descriptor, so what was checked is what is connected. Abstract names are looked up by the
//! kernel in the socket's own network namespace.
//!
//! With `--network host` the namespace is the host's, so a listener must also be held open by
//! a process of the sandbox (its descriptors, read from the sandbox's own /proc).

use super::sock_diag::{self, Listener};
use super::target::Target;
use super::Fail;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

/// The netlink socket that lists listening Unix sockets.
pub(crate) enum Network {
    /// Created by init inside the sandbox's own network namespace.
    Own(OwnedFd),
    /// Ours: the sandbox shares the supervisor's (the host's) network namespace.
    Shared(OwnedFd),
}

/// Where the caller's socket is connected.
pub(crate) enum Destination {
    /// The address exactly as the caller gave it.
    Address(Vec<u8>),
    /// A verified socket file, opened as a path; `room`: its listener's backlog had room, so a
    /// connect won't wait (unless others fill it meanwhile).
    Verified { file: OwnedFd, room: bool },
}

/// What the checks know about the sandbox.
pub(crate) struct Sandbox {
    init: libc::pid_t,
    /// The sock_diag socket: one dump at a time, or the answers would mix.
    diag: Mutex<OwnedFd>,
    /// The network namespace is the host's (`--network host`).
    shares_host: bool,
    /// Mount ID → superblock device (the kernel's own form), from init's mountinfo. The sandbox
    /// can't mount anything, so entries never change.
    devices: Mutex<HashMap<u64, u32>>,
    /// Socket files found to be bound inside the sandbox, by (device, inode), each held open:
    /// a file is bound by one socket at most, ever, so it stays the sandbox's, and while it is
    /// held its inode number can't go to another file. Spares repeat connects the sock_diag
    /// dump, which walks every bucket of the namespace's socket table.
    verified: Mutex<HashMap<(u32, u32), OwnedFd>>,
}

/// Socket files remembered as verified; beyond this many, each connect asks sock_diag.
const VERIFIED_MAX: usize = 1024;

/// A Unix socket address as the kernel reads it.
enum UnixAddress<'a> {
    Path(&'a [u8]),
    Abstract(&'a [u8]),
    /// Too short, or another family: the kernel's own connect reports the error.
    Other,
}

impl UnixAddress<'_> {
    fn parse(address: &[u8]) -> UnixAddress<'_> {
        let family = address.get(..2).map(|f| u16::from_ne_bytes([f[0], f[1]]));
        match (family, address.get(2..)) {
            (Some(f), Some(name)) if f == libc::AF_UNIX as u16 && !name.is_empty() => {
                if name[0] == 0 {
                    UnixAddress::Abstract(name)
                } else {
                    // The kernel ends the path at the first NUL, if any.
                    UnixAddress::Path(name.split(|b| *b == 0).next().unwrap_or(name))
                }
            }
            _ => UnixAddress::Other,
        }
    }
}

fn refused() -> Fail {
    Fail::Errno(libc::ECONNREFUSED)
}

impl Sandbox {
    pub fn new(init: libc::pid_t, network: Network) -> Self {
        let (diag, shares_host) = match network {
            Network::Own(d) => (d, false),
            Network::Shared(d) => (d, true),
        };
        Sandbox { init, diag: Mutex::new(diag), shares_host, devices: Mutex::default(), verified: Mutex::default() }
    }

    /// Where a connect of the caller's Unix socket to `address` goes, or ECONNREFUSED for a
    /// socket the sandbox did not bind.
    pub fn destination(&self, target: &Target, address: Vec<u8>) -> Result<Destination, Fail> {
        match UnixAddress::parse(&address) {
            UnixAddress::Path(path) => self.verified(target, path),
            UnixAddress::Abstract(name) if self.shares_host => {
                self.listener(target, |l| l.name.as_deref() == Some(name))?;
                Ok(Destination::Address(address))
            }
            UnixAddress::Abstract(_) | UnixAddress::Other => Ok(Destination::Address(address)),
        }
    }

    /// The socket file at `path` in the caller's view, if a socket of the sandbox listens on it.
    fn verified(&self, target: &Target, path: &[u8]) -> Result<Destination, Fail> {
        let file = resolve(target, Path::new(OsStr::from_bytes(path)))?;
        let id = super::kernel::file_id(file.as_fd()).map_err(|e| Fail::Broken(format!("statx of a socket: {e}")))?;
        if id.mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(refused()); // What connect says for a file that is not a socket.
        }
        let device = self.device(id.mount_id)?;
        // sock_diag reports 32 bits of the inode number: a larger one can't be told apart.
        let ino = u32::try_from(id.ino).map_err(|_| refused())?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.contains_key(&(device, ino)) {
            return Ok(Destination::Verified { file, room: false });
        }
        drop(verified);
        let listener = self.listener(target, |l| l.file == Some((device, ino)))?;
        verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() < VERIFIED_MAX {
            if let Ok(held) = file.try_clone() {
                verified.insert((device, ino), held);
            }
        }
        Ok(Destination::Verified { file, room: listener.has_room() })
    }

    /// The listening socket that `matches`, if it belongs to the sandbox.
    fn listener(&self, target: &Target, matches: impl Fn(&Listener) -> bool) -> Result<Listener, Fail> {
        let diag = self.diag.lock().unwrap_or_else(|p| p.into_inner());
        let listeners = sock_diag::listening(diag.as_fd(), self.shares_host)
            .map_err(|e| Fail::Broken(format!("listing Unix sockets (sock_diag): {e}")))?;
        drop(diag);
        let mut matching: Vec<Listener> = listeners.into_iter().filter(|l| matches(l)).collect();
        if self.shares_host {
            let inodes: Vec<u32> = matching.iter().map(|l| l.inode).collect();
            if !held_by_sandbox(target, &inodes)? {
                return Err(refused());
            }
        }
        matching.pop().ok_or_else(refused)
    }

    /// The superblock device of a mount of the sandbox, as sock_diag reports it.
    fn device(&self, mount_id: Option<u64>) -> Result<u32, Fail> {
        let id = mount_id.ok_or_else(|| Fail::Broken("statx reports no mount ID (Linux 5.8+)".into()))?;
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dev) = devices.get(&id) {
            return Ok(*dev);
        }
        let path = format!("/proc/{}/mountinfo", self.init);
        let text = std::fs::read_to_string(&path).map_err(|e| Fail::Broken(format!("reading {path}: {e}")))?;
        devices.extend(text.lines().filter_map(mount_device));
        devices.get(&id).copied().ok_or_else(refused)
    }
}

/// Whether a process of the sandbox holds one of these sockets (`socket:[N]` among its
/// descriptors), read from the sandbox's own /proc, under the caller's root. (init's own
/// entries are closed to an unprivileged supervisor, since init is not dumpable; it holds no
/// sockets.)
fn held_by_sandbox(target: &Target, sockets: &[u32]) -> Result<bool, Fail> {
    let broken = |e: nix::Error| Fail::Broken(format!("listing the sandbox's processes: {e}"));
    let root = target.directory("root")?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let proc = nix::dir::Dir::from_fd(openat2(root.as_fd(), "proc", how).map_err(broken)?).map_err(broken)?;
    let wanted: Vec<String> = sockets.iter().map(|s| format!("socket:[{s}]")).collect();
    for entry in proc.into_iter().flatten() {
        let Some(pid) = entry.file_name().to_str().ok().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        if holds(&root, pid, &wanted) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether process `pid` (of the sandbox's /proc, under `root`) has one of `wanted` open. A
/// process that ends meanwhile holds nothing.
fn holds(root: &OwnedFd, pid: &str, wanted: &[String]) -> bool {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let Ok(fds) = openat2(root.as_fd(), format!("proc/{pid}/fd").as_str(), how) else { return false };
    let Some(listing) = fds.try_clone().ok().and_then(|f| nix::dir::Dir::from_fd(f).ok()) else { return false };
    listing.into_iter().flatten().any(|entry| {
        nix::fcntl::readlinkat(fds.as_fd(), entry.file_name())
            .is_ok_and(|target| wanted.iter().any(|w| OsStr::new(w) == target))
    })
}

/// One mountinfo line's mount ID and superblock device ("major:minor", the third field), in
/// the kernel's internal form (MKDEV: major above bit 20), which sock_diag reports.
fn mount_device(line: &str) -> Option<(u64, u32)> {
    let mut fields = line.split(' ');
    let id = fields.next()?.parse().ok()?;
    let (major, minor) = fields.nth(1)?.split_once(':')?;
    Some((id, kernel_dev(major.parse().ok()?, minor.parse().ok()?)))
}

/// The kernel's internal device number (include/linux/kdev_t.h).
pub(super) fn kernel_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

/// Opens `path` as the caller would find it, without leaving the caller's root: an absolute
/// path from the root; a relative one beneath the working directory, or, if it climbs out of
/// it (`..`, a link to an absolute path), from the root joined to the working directory's
/// path. Magic links (/proc/PID/fd/N) are not followed.
fn resolve(target: &Target, path: &Path) -> Result<OwnedFd, Fail> {
    if path.is_absolute() {
        return open_in(&target.directory("root")?, path, ResolveFlag::RESOLVE_IN_ROOT);
    }
    match open_in(&target.directory("cwd")?, path, ResolveFlag::RESOLVE_BENEATH) {
        Err(Fail::Errno(libc::EXDEV)) => {
            let full = target.working_directory()?.join(path);
            open_in(&target.directory("root")?, &full, ResolveFlag::RESOLVE_IN_ROOT)
        }
        other => other,
    }
}

fn open_in(dir: &OwnedFd, path: &Path, scope: ResolveFlag) -> Result<OwnedFd, Fail> {
    let how =
        OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(scope | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(dir.as_fd(), path, how).map_err(Fail::of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_addresses_parse_like_the_kernel() {
        let family = (libc::AF_UNIX as u16).to_ne_bytes();
        let addr = |rest: &[u8]| [&family[..], rest].concat();
        assert!(matches!(UnixAddress::parse(&addr(b"/run/x.sock\0junk")), UnixAddress::Path(b"/run/x.sock")));
        assert!(matches!(UnixAddress::parse(&addr(b"rel")), UnixAddress::Path(b"rel")));
        assert!(matches!(UnixAddress::parse(&addr(b"\0name")), UnixAddress::Abstract(b"\0name")));
        assert!(matches!(UnixAddress::parse(&addr(b"")), UnixAddress::Other));
        assert!(matches!(UnixAddress::parse(&[2, 0, 1, 2]), UnixAddress::Other));
    }

    #[test]
    fn mountinfo_devices_are_read_in_the_kernels_form() {
        let line = "36 35 254:1 / /home rw,noatime master:1 - ext4 /dev/vda1 rw";
        assert_eq!(mount_device(line), Some((36, (254 << 20) | 1)));
        let big = "7 1 0:300 / /x rw - tmpfs tmpfs rw";
        assert_eq!(mount_device(big), Some((7, 300)));
        assert_eq!(mount_device("garbage"), None);
    }
}
