//! Files ringfence writes for the caller: the event log and the status.

use crate::LaunchError;
use ringfence_policy::{FsAccess, Policy};
use std::fs::File;
use std::path::{Path, PathBuf};

/// An output file, open for writing, and its path when a run could otherwise write it (the
/// caller then protects it with a rule).
#[derive(Debug)]
pub struct OutputFile {
    pub file: File,
    pub protect: Option<PathBuf>,
}

/// Opens the file by name: for backends whose own rules keep the sandbox off it.
pub(crate) fn open_by_name(path: &Path, policy: &Policy, append: bool) -> Result<OutputFile, LaunchError> {
    let failed =
        |e: std::io::Error| LaunchError::policy(format!("{}: {e}", path.display()), "name a file you can write");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(failed)?;
    let full = ringfence_policy::normalize(&std::path::absolute(path).map_err(failed)?);
    let inside = policy.fs.access(&full).access == FsAccess::Write;
    Ok(OutputFile { file, protect: inside.then_some(full) })
}
