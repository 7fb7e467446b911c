//! Planning of the cache overlays (see `caches` for how they are held and mounted): which of
//! the policy's caches get one, where each one's persistent layer is, and what paths inside an
//! overlay need. Pure: it works on what `resolve` found.

use crate::mount_plan::{MountOp, PlanError};
use crate::resolve::{Kind, Resolved};
use ringfence_policy::{CacheTool, FsAccess, FsRules, Policy};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// One cache folder to show as an overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheMount {
    pub tool: CacheTool,
    /// The host's cache folder (canonical): the lower layer, and where the overlay shows.
    pub lower: PathBuf,
    /// This workspace's persistent layer folder (holds `upper`, `work` and `lock`).
    pub layer: PathBuf,
}

impl CacheMount {
    pub fn op(&self) -> MountOp {
        MountOp::Overlay { path: self.lower.clone(), upper: self.layer.join("upper"), work: self.layer.join("work") }
    }
}

fn short_hash(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A name made of `text` that is safe as one path component.
fn tame(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(40).collect()
}

/// The overlays for the policy's caches, with their persistent layers, in `host.cache_layers`
/// under a folder per workspace. A cache inside a writable root needs none: the run writes it
/// directly, as the user chose.
pub fn overlays(policy: &Policy, rules: &FsRules, host: &Resolved) -> Result<Vec<CacheMount>, PlanError> {
    let root = &host.cache_layers;
    let name = host.workspace.file_name().map(|n| tame(&n.to_string_lossy())).unwrap_or_default();
    let workspace_dir = root.join(format!("{name}-{}", short_hash(&host.workspace)));
    let mut out = Vec::new();
    for rule in &policy.caches {
        for dir in &rule.dirs {
            let lower = host.cache_dirs.get(&dir.path).unwrap_or(&dir.path).clone();
            let what = format!("{}: the {} cache {}", rule.origin, rule.tool, lower.display());
            let decision = rules.access(&lower);
            match decision.access {
                FsAccess::Write => continue,
                FsAccess::Deny => {
                    let by = decision.read_rule.map(|r| format!(" by {} ({})", r.path.display(), r.origin));
                    return Err(PlanError(
                        format!("{what} is hidden{}", by.unwrap_or_default()),
                        format!("make it readable (--read {}), or drop the cache", lower.display()),
                    ));
                }
                FsAccess::Read => {}
            }
            check_overlay_path(&what, &lower, root)?;
            if host.kind(&lower) == Some(Kind::File) {
                return Err(PlanError(
                    format!("{what} is not a folder"),
                    "move the file away, or drop the cache".into(),
                ));
            }
            let layer = workspace_dir.join(format!("{}-{}-{}", rule.tool, dir.label, short_hash(&lower)));
            out.push(CacheMount { tool: rule.tool, lower, layer });
        }
    }
    Ok(out)
}

/// ringfence's own cache folder (the one above `layers`), when this run could otherwise write
/// it (it lies in a writable root: $HOME or ~/.cache writable by an explicit flag): it is then
/// kept read-only, while present, so the run can't rearrange the layers of its own or other
/// workspaces' caches.
pub fn protected_root(layers: &Path, rules: &FsRules) -> Option<PathBuf> {
    let folder = layers.parent()?.to_path_buf();
    (rules.access(&folder).access == FsAccess::Write).then_some(folder)
}

/// overlayfs takes its layers as one option string, so some characters can't be in them; and
/// an upper layer inside its lower one (or the reverse) is refused.
fn check_overlay_path(what: &str, lower: &Path, root: &Path) -> Result<(), PlanError> {
    for path in [lower, root] {
        if path.to_string_lossy().contains([',', ':', '\\', '\n']) {
            return Err(PlanError(
                format!("{what}: overlayfs can't take `,`, `:`, `\\` or a newline in {}", path.display()),
                "move the folder (the tool's variable, such as CARGO_HOME, or XDG_CACHE_HOME), or drop the cache"
                    .into(),
            ));
        }
    }
    if lower.starts_with(root) || root.starts_with(lower) {
        return Err(PlanError(
            format!("{what} and ringfence's cache layers in {} overlap", root.display()),
            "point XDG_CACHE_HOME or the tool's cache variable elsewhere, so they don't".into(),
        ));
    }
    Ok(())
}

/// What a path inside an overlay needs: a mask over an existing hidden path, a read-only bind
/// over an existing protected one. Absent ones need nothing: the host's cache has nothing there
/// to show, and what the run makes there is its own.
pub fn op_inside(path: &Path, want: FsAccess, exists: Option<Kind>, protected: bool) -> Option<MountOp> {
    match (want, exists) {
        (FsAccess::Deny, Some(Kind::Dir)) => {
            Some(MountOp::Tmpfs { path: path.to_path_buf(), writable: false, size: 4096 })
        }
        (FsAccess::Deny, Some(Kind::File)) => Some(MountOp::MaskFile { path: path.to_path_buf() }),
        (FsAccess::Read, Some(_)) if protected => Some(MountOp::ReadOnly { path: path.to_path_buf() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_an_overlay_only_existing_paths_get_mounts() {
        let p = Path::new("/h/.npm/x");
        assert!(matches!(op_inside(p, FsAccess::Deny, Some(Kind::Dir), false), Some(MountOp::Tmpfs { .. })));
        assert!(matches!(op_inside(p, FsAccess::Deny, Some(Kind::File), false), Some(MountOp::MaskFile { .. })));
        assert_eq!(op_inside(p, FsAccess::Deny, None, false), None);
        assert!(matches!(op_inside(p, FsAccess::Read, Some(Kind::Dir), true), Some(MountOp::ReadOnly { .. })));
        assert_eq!(op_inside(p, FsAccess::Read, Some(Kind::Dir), false), None, "a read rule never takes write away");
    }

    #[test]
    fn odd_names_and_overlaps_are_refused() {
        let root = Path::new("/h/.cache/ringfence/caches");
        assert!(check_overlay_path("x", Path::new("/h/.npm"), root).is_ok());
        assert!(check_overlay_path("x", Path::new("/h/a,b"), root).is_err());
        assert!(check_overlay_path("x", Path::new("/h/a:b"), root).is_err());
        assert!(check_overlay_path("x", Path::new("/h/.cache"), root).is_err());
        assert!(check_overlay_path("x", Path::new("/h/.cache/ringfence/caches/x"), root).is_err());
        assert_eq!(tame("my proj/ü"), "my_proj__");
    }
}
