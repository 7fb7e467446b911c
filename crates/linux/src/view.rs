//! Builds the sandbox's filesystem view inside the new mount namespace, then pivots into it.
//!
//! The host tree is bound read-only (and nosuid, nodev) at /newroot, the plan's operations are
//! applied on top, fresh /dev, /proc and /tmp are mounted, and pivot_root detaches the host.

use crate::error::ChildError;
use crate::plan::{MountOp, MountPlan};
use crate::sys;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

const BASE: &str = "/tmp";
const NEW: &str = "/newroot";
const OLD: &str = "/oldroot";

fn at(prefix: &str, path: &Path) -> PathBuf {
    Path::new(prefix).join(path.strip_prefix("/").unwrap_or(path))
}

fn mount_err(what: &str, path: &Path, err: nix::Error) -> ChildError {
    ChildError::mount(format!("{what} {}: {err}", path.display()), err)
}

fn tmpfs(dst: &Path, mode: u32, size: u64, extra: MsFlags) -> Result<(), ChildError> {
    // Inodes cost kernel memory that `size` doesn't count: cap them too (one per 16 KiB).
    let inodes = (size / (16 << 10)).clamp(1024, 1 << 20);
    let data = format!("mode={mode:o},size={size},nr_inodes={inodes}");
    mount(Some("tmpfs"), dst, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | extra, Some(data.as_str()))
        .map_err(|e| mount_err("mounting a tmpfs on", dst, e))
}

fn bind(src: &Path, dst: &Path) -> Result<(), ChildError> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| mount_err("binding", src, e))
}

/// Sets per-mount flags on a whole subtree, falling back to one remount per mount on kernels
/// without mount_setattr (before 5.12).
fn set_flags(dst: &Path, read_only: bool) -> Result<(), ChildError> {
    let (set, clear) = if read_only {
        (sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV, 0)
    } else {
        (sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV, sys::MOUNT_ATTR_RDONLY)
    };
    match sys::mount_setattr_recursive(dst, set, clear, 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => remount_each(dst, read_only),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !read_only => Err(ChildError::policy(
            format!(
                "{} is on a read-only filesystem and can't be made writable",
                dst.strip_prefix(NEW).unwrap_or(dst).display()
            ),
            "remove it from the writable roots".into(),
        )),
        Err(e) => Err(ChildError::internal(format!("setting mount flags on {}: {e}", dst.display()))),
    }
}

fn remount_each(dst: &Path, read_only: bool) -> Result<(), ChildError> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let Some(point) = line.split(' ').nth(4) else { continue };
        let point = Path::new(point);
        if !point.starts_with(dst) {
            continue;
        }
        let current =
            nix::sys::statvfs::statvfs(point).map(|s| s.flags()).unwrap_or(nix::sys::statvfs::FsFlags::empty());
        let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        for (fs_flag, ms_flag) in [
            (nix::sys::statvfs::FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (nix::sys::statvfs::FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (nix::sys::statvfs::FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (nix::sys::statvfs::FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if current.contains(fs_flag) {
                flags |= ms_flag;
            }
        }
        if current.contains(nix::sys::statvfs::FsFlags::ST_RDONLY) && !read_only {
            return Err(ChildError::policy(
                format!("{} is on a read-only filesystem and can't be made writable", point.display()),
                "remove it from the writable roots".into(),
            ));
        }
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(None::<&str>, point, None::<&str>, flags, None::<&str>).map_err(|e| mount_err("remounting", point, e))?;
    }
    Ok(())
}

/// Creates a mount point inside a tmpfs of ours. On the read-only host mirror this fails,
/// which is what we want: the sandbox never creates files on the host.
fn ensure_mountpoint(dst: &Path, dir: bool) -> Result<(), ChildError> {
    if fs::symlink_metadata(dst).is_ok() {
        return Ok(());
    }
    let made = if dir {
        fs::create_dir_all(dst)
    } else {
        dst.parent().map_or(Ok(()), fs::create_dir_all).and_then(|_| fs::write(dst, b""))
    };
    made.map_err(|e| ChildError::internal(format!("creating mount point {}: {e}", dst.display())))
}

/// Each cache overlay's path and the identities its lower, upper and work folders must have.
pub type OverlayIds = [(PathBuf, [crate::caches::FolderId; 3])];

fn apply(op: &MountOp, read_only_tmpfs: &mut Vec<PathBuf>, overlays: &OverlayIds) -> Result<(), ChildError> {
    let dst = at(NEW, op.path());
    match op {
        MountOp::Tmpfs { writable, size, .. } => {
            ensure_mountpoint(&dst, true)?;
            tmpfs(&dst, if *writable { 0o1777 } else { 0o755 }, *size, MsFlags::empty())?;
            if !writable {
                read_only_tmpfs.push(dst);
            }
        }
        MountOp::Bind { path, writable } => {
            let src = at(OLD, path);
            ensure_mountpoint(&dst, src.is_dir())?;
            bind(&src, &dst)?;
            set_flags(&dst, !writable)?;
        }
        MountOp::MaskFile { .. } => mask_file(&dst)?,
        MountOp::ReadOnly { .. } => {
            bind(&dst, &dst)?;
            set_flags(&dst, true)?;
        }
        MountOp::Overlay { path, upper, work } => {
            let ids = overlays.iter().find(|(p, _)| p == path).map(|(_, ids)| *ids).ok_or_else(|| {
                ChildError::internal(format!("the layers of the cache overlay on {} were not checked", path.display()))
            })?;
            overlay([path, upper, work], ids, &dst)?
        }
    }
    Ok(())
}

/// How often a file mask is tried on a path whose file keeps being replaced.
const MASK_TRIES: usize = 5;

/// Covers a file with the empty, unreadable one. Host processes remove their sockets, and bind
/// them again, at any moment: what stood at the path when the plan was made may be gone by the
/// mount, or replaced by another file. Nothing there needs no mask (were it created again,
/// Landlock still denies reading it); a file there gets the mask, tried again if it was
/// replaced while the mask went on.
fn mask_file(dst: &Path) -> Result<(), ChildError> {
    let mut tries = 1;
    loop {
        let masked = bind(Path::new("/empty"), dst).and_then(|()| set_flags(dst, true));
        if masked.is_ok() || fs::symlink_metadata(dst).is_err() {
            return Ok(());
        }
        if tries == MASK_TRIES {
            return masked;
        }
        tries += 1;
    }
}

/// Opens a layer of a cache overlay in this mount namespace, following no link, and checks it
/// is the folder the supervisor checked.
fn open_layer(path: &Path, id: crate::caches::FolderId) -> Result<std::os::fd::OwnedFd, ChildError> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let swapped = || {
        ChildError::policy(
            format!("the cache layer {} changed while the run started", path.display()),
            "run again; if it keeps happening, something else is changing ringfence's cache folders".into(),
        )
    };
    let fd = openat2(nix::fcntl::AT_FDCWD, &at(OLD, path), how).map_err(|_| swapped())?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| ChildError::internal(format!("{}: {e}", path.display())))?;
    if (st.st_dev, st.st_ino) != id {
        return Err(swapped());
    }
    Ok(fd)
}

/// Mounts a cache overlay at `dst` from its layers `[lower, upper, work]`: the host's cache
/// folder below (read-only to it), ringfence's folders on top, each named through the
/// descriptor `open_layer` checked. In a user namespace overlayfs needs Linux 5.11+ and
/// `userxattr`, which keeps its bookkeeping in `user.*` extended attributes of the upper
/// layer's filesystem.
fn overlay(layers: [&PathBuf; 3], ids: [crate::caches::FolderId; 3], dst: &Path) -> Result<(), ChildError> {
    ensure_mountpoint(dst, true)?;
    let [lower, upper, work] = [0, 1, 2].map(|i| open_layer(layers[i], ids[i]));
    let (lower, upper, work) = (lower?, upper?, work?);
    let name = |fd: &std::os::fd::OwnedFd| {
        use std::os::fd::AsRawFd;
        at(OLD, Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd()))).display().to_string()
    };
    let data = format!("lowerdir={},upperdir={},workdir={},userxattr", name(&lower), name(&upper), name(&work));
    mount(Some("overlay"), dst, Some("overlay"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data.as_str())).map_err(
        |e| {
            ChildError::unsupported(
                format!(
                    "mounting the cache overlay on {} (changes kept in {}) failed: {e}",
                    layers[0].display(),
                    layers[1].display()
                ),
                "cache overlays need overlayfs in a user namespace: Linux 5.11+ with the overlay module (`modprobe \
             overlay`), and ringfence's cache folder ($XDG_CACHE_HOME/ringfence) on a filesystem with user extended \
             attributes (ext4, xfs, btrfs; tmpfs from Linux 6.6); or drop --cache and the registry presets"
                    .into(),
            )
        },
    )
}

/// A minimal /dev: the harmless character devices, a private devpts, and a private /dev/shm.
fn build_dev(shm_size: u64) -> Result<(), ChildError> {
    let dev = at(NEW, Path::new("/dev"));
    tmpfs(&dev, 0o755, 1 << 20, MsFlags::MS_NOEXEC)?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let dst = dev.join(name);
        ensure_mountpoint(&dst, false)?;
        let src = at(OLD, &Path::new("/dev").join(name));
        mount(Some(&src), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| mount_err("binding", &src, e))?;
    }
    let pts = dev.join("pts");
    ensure_mountpoint(&pts, true)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(|e| mount_err("mounting devpts on", &pts, e))?;
    let shm = dev.join("shm");
    ensure_mountpoint(&shm, true)?;
    // /dev/shm shares the /tmp budget: a quarter of it.
    tmpfs(&shm, 0o1777, (shm_size / 4).max(16 << 20), MsFlags::empty())?;
    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, target) in links {
        symlink(target, dev.join(name)).map_err(|e| ChildError::internal(format!("/dev/{name}: {e}")))?;
    }
    mount(
        None::<&str>,
        &dev,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| mount_err("remounting", &dev, e))
}

/// A /proc for the sandbox's pid namespace, with the kernel's global knobs read-only: a
/// sandbox running as the host's root would otherwise own /proc/sys (core_pattern!).
fn build_proc(pid_max: Option<u64>) -> Result<(), ChildError> {
    let proc = at(NEW, Path::new("/proc"));
    mount(Some("proc"), &proc, Some("proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None::<&str>)
        .map_err(|e| match e {
            // The kernel refuses a new procfs while the host's /proc is partly covered (as in
            // containers that mask /proc/kcore and friends).
            nix::Error::EPERM => ChildError::unsupported(
                format!("mounting a fresh /proc was refused: {e}"),
                "if this runs in a container, give it an unmasked /proc (docker: \
             --security-opt systempaths=unconfined); otherwise see `ringfence check`"
                    .into(),
            ),
            _ => mount_err("mounting a fresh /proc on", &proc, e),
        })?;
    if let Some(max) = pid_max {
        fs::write(proc.join("sys/kernel/pid_max"), max.to_string()).map_err(|e| {
            ChildError::unsupported(
                format!("setting the pid namespace's pid_max for the process cap: {e}"),
                "pass --pids N to use a cgroup or rlimit instead".into(),
            )
        })?;
    }
    for sub in ["sys", "sysrq-trigger", "irq", "bus", "pressure"] {
        let p = proc.join(sub);
        if p.exists() {
            bind(&p, &p)?;
            set_flags(&p, true)?;
        }
    }
    // The key lists show the keys of the sandbox's uid, which is the caller's: hide them.
    for sub in ["keys", "key-users"] {
        let p = proc.join(sub);
        if p.exists() {
            bind(Path::new("/empty"), &p)?;
            set_flags(&p, true)?;
        }
    }
    Ok(())
}

/// Builds the view described by `plan` and makes it the root. Afterwards the host's tree is
/// no longer reachable from the sandbox's mount namespace.
pub fn enter(plan: &MountPlan, pid_max: Option<u64>, overlays: &OverlayIds) -> Result<(), ChildError> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| mount_err("making mounts private at", Path::new("/"), e))?;
    tmpfs(Path::new(BASE), 0o755, 1 << 20, MsFlags::empty())?;
    for dir in [NEW, OLD] {
        fs::create_dir(at(BASE, Path::new(dir))).map_err(|e| ChildError::internal(format!("{dir}: {e}")))?;
    }
    let empty = at(BASE, Path::new("/empty"));
    fs::write(&empty, b"").map_err(|e| ChildError::internal(format!("/empty: {e}")))?;
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o000)).map_err(|e| ChildError::internal(e.to_string()))?;
    nix::unistd::pivot_root(BASE, &at(BASE, Path::new(OLD)))
        .map_err(|e| mount_err("pivot_root to", Path::new(BASE), e))?;
    nix::unistd::chdir("/").map_err(|e| ChildError::internal(e.to_string()))?;

    bind(Path::new(OLD), Path::new(NEW))?;
    set_flags(Path::new(NEW), true)?;
    let mut read_only_tmpfs = Vec::new();
    for op in &plan.ops {
        apply(op, &mut read_only_tmpfs, overlays)?;
    }
    build_dev(plan_tmp_size(plan))?;
    build_proc(pid_max)?;
    for dst in read_only_tmpfs.iter().rev() {
        mount(
            None::<&str>,
            dst,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| mount_err("remounting", dst, e))?;
    }

    nix::unistd::chdir(NEW).map_err(|e| ChildError::internal(e.to_string()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| mount_err("pivot_root to", Path::new(NEW), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| mount_err("detaching the host tree at", Path::new("/"), e))?;
    nix::unistd::chdir("/").map_err(|e| ChildError::internal(e.to_string()))?;
    Ok(())
}

fn plan_tmp_size(plan: &MountPlan) -> u64 {
    plan.ops
        .iter()
        .find_map(|op| match op {
            MountOp::Tmpfs { path, size, .. } if path == Path::new("/tmp") => Some(*size),
            _ => None,
        })
        .unwrap_or(64 << 20)
}
