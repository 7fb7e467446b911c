//! The mount plan: what the supervisor hands the child to build its view, and what the run
//! creates on the host for it. Data only: `plan` makes it, `view` applies it.

use ringfence_policy::FsRules;
use std::path::{Path, PathBuf};

/// One step of the mount view, applied in order. Paths are host paths; the child prefixes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOp {
    /// An empty tmpfs: a private /tmp (writable) or a mask over a hidden directory.
    Tmpfs { path: PathBuf, writable: bool, size: u64 },
    /// The host's `path` bound at the same place, read-only or writable.
    Bind { path: PathBuf, writable: bool },
    /// An empty read-only file over a hidden file.
    MaskFile { path: PathBuf },
    /// Makes what is already visible at `path` read-only (protected paths in writable roots).
    ReadOnly { path: PathBuf },
    /// A cache shown as an overlay at `path`: the host's folder there read-only below, the
    /// host folders `upper` (the run's changes) and `work` (overlayfs' own) of ringfence's.
    Overlay { path: PathBuf, upper: PathBuf, work: PathBuf },
}

impl MountOp {
    pub fn path(&self) -> &Path {
        match self {
            MountOp::Tmpfs { path, .. }
            | MountOp::Bind { path, .. }
            | MountOp::MaskFile { path }
            | MountOp::ReadOnly { path }
            | MountOp::Overlay { path, .. } => path,
        }
    }
}

/// Something created on the host for a missing protected or hidden path, so it can be mounted
/// over for the run; removed after the run if still empty and no concurrent run uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    pub path: PathBuf,
    pub kind: PlaceholderKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceholderKind {
    /// An empty read-only directory (`ringfence_policy::Placeholder::Dir`).
    Dir,
    /// An empty read-only file (`ringfence_policy::Placeholder::File`).
    File,
    /// A missing folder on the way to a placeholder; writable, like the tree it is in.
    Folder,
}

#[derive(Clone, Debug, Default)]
pub struct MountPlan {
    pub ops: Vec<MountOp>,
    pub placeholders: Vec<Placeholder>,
    /// Canonical rules, for Landlock and for `explain`.
    pub rules: FsRules,
    /// Host folders the run can write besides the write rules (the upper layers of cache
    /// overlays): the post-run review walks them like writable roots.
    pub review_roots: Vec<PathBuf>,
}

/// A planning error: the policy names something the view can't be built from. Holds the
/// message and the remedy.
#[derive(Debug)]
pub struct PlanError(pub String, pub String);
