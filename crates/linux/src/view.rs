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

fn apply(op: &MountOp, read_only_tmpfs: &mut Vec<PathBuf>) -> Result<(), ChildError> {
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
        MountOp::MaskFile { .. } => {
            // A file that vanished since planning (a socket whose server exited) needs no mask;
            // were it created again, Landlock still denies reading it.
            if fs::symlink_metadata(&dst).is_err() {
                return Ok(());
            }
            bind(Path::new("/empty"), &dst)?;
            set_flags(&dst, true)?;
        }
        MountOp::ReadOnly { .. } => {
            bind(&dst, &dst)?;
            set_flags(&dst, true)?;
        }
    }
    Ok(())
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
pub fn enter(plan: &MountPlan, pid_max: Option<u64>) -> Result<(), ChildError> {
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
        apply(op, &mut read_only_tmpfs)?;
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
