//! Cache overlays. A tool's cache (`~/.cargo/registry`, `~/.npm`, ...) shows inside the sandbox
//! as an overlay: the host's cache is the read-only lower layer, and what the run adds or changes
//! goes to an upper layer in ringfence's own folder, which the host's tools never read. So a
//! `build.rs` planted in an extracted crate, or a poisoned wheel, never reaches the host.
//!
//! Upper layers persist per workspace and tool folder, under
//! `$XDG_CACHE_HOME/ringfence/caches/<workspace>-<hash>/<tool>-<folder>-<hash>/`, so the next
//! run of the same workspace finds what this one downloaded. Two runs can't share an upper
//! layer (overlayfs forbids it), so each run locks its layers; a run that finds one locked
//! gets a private layer for the run instead, removed when it ends.

use crate::error::{ErrorKind, LaunchError};
use crate::mount_plan::{MountOp, MountPlan};
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where ringfence keeps its cache layers: `$XDG_CACHE_HOME/ringfence/caches`, else
/// `~/.cache/ringfence/caches`.
pub fn layers_root(home: &Path) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    base.unwrap_or_else(|| home.join(".cache")).join("ringfence/caches")
}

/// Makes ringfence's cache folder before the plan is made, so a run that shares caches finds
/// it present and, in a writable root, read-only (see `cache_plan::protected_root`).
pub fn make_root(home: &Path) -> Result<(), LaunchError> {
    let root = layers_root(home);
    let base = root.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
    std::fs::create_dir_all(base).map_err(|e| LaunchError::internal(format!("creating {}: {e}", base.display())))?;
    make_below(base, &root).map(drop)
}

/// The layers of one overlay, open: the host's cache folder, the upper and the work folder,
/// each checked (no links, the caller's own). overlayfs takes only layers of the mounting
/// namespace, so the child opens them again by path, following no link, and mounts only if it
/// finds these very folders (device and inode): nothing swapped in after the checks (a link, a
/// concurrent run with a writable ~/.cache) is used. Holding them open keeps their inode
/// numbers from being reused meanwhile.
#[derive(Debug)]
pub struct OpenLayers {
    pub path: PathBuf,
    pub lower: OwnedFd,
    pub upper: OwnedFd,
    pub work: OwnedFd,
}

/// The cache layers one run uses: the locks on its persistent layers, the private layers it
/// uses because a concurrent run held the persistent one (removed when the run ends), and
/// every overlay's layers, open.
#[derive(Debug, Default)]
pub struct HeldLayers {
    locks: Vec<Flock<OwnedFd>>,
    pub private: Vec<PathBuf>,
    /// Overlays waiting for their private layer: the mount path, and the lower layer, open.
    pending: Vec<(PathBuf, OwnedFd)>,
    pub open: Vec<OpenLayers>,
}

/// A folder's identity: device and inode.
pub type FolderId = (u64, u64);

impl HeldLayers {
    /// For the child: each overlay's path and the identities of its lower, upper and work folders.
    pub fn ids(&self) -> Result<Vec<(PathBuf, [FolderId; 3])>, LaunchError> {
        let id = |fd: &OwnedFd| {
            nix::sys::stat::fstat(fd)
                .map(|st| (st.st_dev, st.st_ino))
                .map_err(|e| LaunchError::internal(format!("a cache layer: {e}")))
        };
        self.open.iter().map(|l| Ok((l.path.clone(), [id(&l.lower)?, id(&l.upper)?, id(&l.work)?]))).collect()
    }
}

fn refused(message: String) -> LaunchError {
    LaunchError::new(
        ErrorKind::Policy,
        message,
        Some("remove what stands there; ringfence makes its cache layers itself and follows no links there".into()),
    )
}

/// Opens folder `name` in `parent`, making it (with `mode`) if missing, without following a
/// link; it must belong to the caller, since another user's folder there could swap layers.
fn open_or_make(parent: &OwnedFd, parent_path: &Path, name: &str, mode: u32) -> Result<OwnedFd, LaunchError> {
    let path = parent_path.join(name);
    match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
        Ok(()) | Err(nix::Error::EEXIST) => {}
        Err(e) => return Err(LaunchError::internal(format!("creating {}: {e}", path.display()))),
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(parent, name, flags, Mode::empty()).map_err(|e| match e {
        nix::Error::ELOOP | nix::Error::ENOTDIR => refused(format!("{} is a link or not a folder", path.display())),
        e => LaunchError::internal(format!("opening {}: {e}", path.display())),
    })?;
    let owner =
        nix::sys::stat::fstat(&fd).map_err(|e| LaunchError::internal(format!("{}: {e}", path.display())))?.st_uid;
    if owner != nix::unistd::geteuid().as_raw() {
        return Err(refused(format!("{} belongs to another user (uid {owner})", path.display())));
    }
    Ok(fd)
}

/// Makes the folders of `path` below `base` (which exists), one by one, following no link.
fn make_below(base: &Path, path: &Path) -> Result<OwnedFd, LaunchError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(base, flags, Mode::empty())
        .map_err(|e| LaunchError::internal(format!("opening {}: {e}", base.display())))?;
    let mut at = base.to_path_buf();
    for part in path.strip_prefix(base).unwrap_or(path).iter() {
        let name = part.to_string_lossy();
        fd = open_or_make(&fd, &at, &name, 0o700)?;
        at.push(part);
    }
    Ok(fd)
}

/// Makes a layer's folder and its `upper` and `work` folders; returns the three, open.
fn make_layer(base: &Path, layer: &Path) -> Result<[OwnedFd; 3], LaunchError> {
    let fd = make_below(base, layer)?;
    let upper = open_or_make(&fd, layer, "upper", 0o755)?;
    let work = open_or_make(&fd, layer, "work", 0o755)?;
    Ok([fd, upper, work])
}

/// Opens the host's cache folder `lower` (canonical, made if missing, as its tool would), and
/// checks that the descriptor is that folder: a link swapped in since planning is refused.
fn open_lower(lower: &Path) -> Result<OwnedFd, LaunchError> {
    std::fs::create_dir_all(lower)
        .map_err(|e| LaunchError::internal(format!("creating the cache folder {}: {e}", lower.display())))?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(lower, flags, Mode::empty())
        .map_err(|e| refused(format!("the cache folder {} can't be opened as a folder: {e}", lower.display())))?;
    let shown = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
    if shown != lower {
        return Err(refused(format!("the cache folder {} changed while the run started", lower.display())));
    }
    Ok(fd)
}

static PRIVATE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Prepares the plan's cache overlays: opens each host cache folder (made if missing), makes
/// the layers (following no links), and locks each persistent one. A layer a concurrent run
/// holds is replaced in `plan` by a private one for this run, named in `private` but not made
/// yet: the caller registers it for removal first, then calls `make_private`.
pub fn hold(plan: &mut MountPlan, home: &Path) -> Result<HeldLayers, LaunchError> {
    let mut held = HeldLayers::default();
    let root = layers_root(home);
    let base = root.parent().and_then(Path::parent).unwrap_or(Path::new("/")).to_path_buf();
    for op in &mut plan.ops {
        let MountOp::Overlay { path, upper, work } = op else { continue };
        let lower = open_lower(path)?;
        let layer = upper.parent().unwrap_or(Path::new("/")).to_path_buf();
        std::fs::create_dir_all(&base)
            .map_err(|e| LaunchError::internal(format!("creating {}: {e}", base.display())))?;
        let [layer_fd, upper_fd, work_fd] = make_layer(&base, &layer)?;
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let lock = nix::fcntl::openat(&layer_fd, "lock", flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| LaunchError::internal(format!("{}/lock: {e}", layer.display())))?;
        match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                held.locks.push(lock);
                held.open.push(OpenLayers { path: path.clone(), lower, upper: upper_fd, work: work_fd });
            }
            Err((_, nix::Error::EWOULDBLOCK)) => {
                let n = PRIVATE_COUNTER.fetch_add(1, Ordering::Relaxed);
                let name = layer.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let private = root.join("runs").join(format!("{}-{n}-{name}", std::process::id()));
                plan.review_roots.retain(|u| u != &*upper);
                (*upper, *work) = (private.join("upper"), private.join("work"));
                plan.review_roots.push(upper.clone());
                held.private.push(private);
                held.pending.push((path.clone(), lower));
            }
            Err((_, e)) => return Err(LaunchError::internal(format!("locking {}/lock: {e}", layer.display()))),
        }
    }
    Ok(held)
}

/// Whether this kernel can mount overlayfs in a user namespace (Linux 5.11+, and overlay
/// known to the kernel or loadable). The rest (user extended attributes on the layers'
/// filesystem) shows only when the child mounts; then the run fails with exit 122.
pub fn supported(kernel: &str) -> Result<(), String> {
    if !crate::host::kernel_at_least(kernel, 5, 11) {
        return Err(format!("Linux {kernel} can't mount overlayfs in a user namespace (5.11+ can)"));
    }
    let known =
        std::fs::read_to_string("/proc/filesystems").unwrap_or_default().lines().any(|l| l.ends_with("\toverlay"));
    if !known && !Path::new("/sys/module/overlay").exists() && !modules_has_overlay(kernel) {
        return Err("the kernel has no overlayfs (load it with `modprobe overlay`)".into());
    }
    Ok(())
}

fn modules_has_overlay(kernel: &str) -> bool {
    let list = std::fs::read_to_string(format!("/lib/modules/{kernel}/modules.dep")).unwrap_or_default();
    list.lines().any(|l| l.split(':').next().is_some_and(|m| m.ends_with("/overlay.ko") || m.contains("/overlay.ko.")))
}

/// What the run.start event says about the plan's cache overlays: `Ok` with what is shown,
/// or `Err` with why this kernel can't (the overlays are then dropped from the plan, which only
/// a run with --allow-degraded goes on with: the host's caches are then read-only inside).
pub fn assess(plan: &mut MountPlan, kernel: &str) -> Option<Result<String, String>> {
    let shown: Vec<String> = plan
        .ops
        .iter()
        .filter(|op| matches!(op, MountOp::Overlay { .. }))
        .map(|op| op.path().display().to_string())
        .collect();
    if shown.is_empty() {
        return None;
    }
    if let Err(why) = supported(kernel) {
        plan.ops.retain(|op| !matches!(op, MountOp::Overlay { .. }));
        plan.review_roots.clear();
        return Some(Err(format!("{why}; the caches {} stay read-only", shown.join(", "))));
    }
    Some(Ok(format!("{}: the host's read-only below, the run's changes in ringfence's own layers", shown.join(", "))))
}

/// Makes the private layers `hold` chose.
pub fn make_private(held: &mut HeldLayers, home: &Path) -> Result<(), LaunchError> {
    let base = layers_root(home);
    let base = base.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
    for (layer, (path, lower)) in held.private.iter().zip(std::mem::take(&mut held.pending)) {
        let [_, upper, work] = make_layer(base, layer)?;
        held.open.push(OpenLayers { path, lower, upper, work });
    }
    Ok(())
}

/// Removes a private layer. overlayfs leaves its work folder with mode 000, and the run may
/// have left folders without permissions: those are opened up (never through a link) and the
/// removal tried again.
pub fn remove_layer(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    open_up(path);
    let _ = std::fs::remove_dir_all(path);
}

fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_made_without_following_links() {
        let base = Path::new("/var/tmp").join(format!("rf-layers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let layer = base.join("ringfence/caches/ws-1/npm-cache-2");
        make_layer(&base, &layer).unwrap();
        assert!(layer.join("upper").is_dir() && layer.join("work").is_dir());
        make_layer(&base, &layer).unwrap();
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join("ringfence/caches/ws-2")).unwrap();
        let err = make_layer(&base, &base.join("ringfence/caches/ws-2/npm")).unwrap_err();
        assert!(err.message.contains("is a link"), "{}", err.message);
        assert!(!base.join("elsewhere/npm").exists());
        std::fs::create_dir_all(layer.join("work/work")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(layer.join("work/work"), std::fs::Permissions::from_mode(0o000)).unwrap();
        remove_layer(&base);
        assert!(!base.exists());
    }
}
