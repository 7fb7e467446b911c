//! Files and folders the run creates and holds: placeholders, the journal, the temporary
//! folder. Plain std calls with Windows share modes; no unsafe code.

use crate::plan::Kind;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::windows::fs::OpenOptionsExt;
use std::path::Path;
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_SHARE_READ, FILE_SHARE_WRITE,
};

/// What exists at `path`, following links (as the access check does).
pub fn kind(path: &Path) -> Option<Kind> {
    let meta = std::fs::metadata(path).ok()?;
    Some(if meta.is_dir() { Kind::Dir } else { Kind::File })
}

/// Opens a file or folder for the run without delete sharing: while the handle is open, no
/// one (the sandbox included) can delete or rename it, and a concurrent run's cleanup leaves
/// it alone.
pub fn hold(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

/// Creates a placeholder: an empty folder or file. (Its deny entry is added by the plan.)
pub fn create_placeholder(path: &Path, kind: Kind) -> std::io::Result<()> {
    match kind {
        Kind::Dir => std::fs::create_dir(path),
        Kind::File => OpenOptions::new().write(true).create_new(true).open(path).map(drop),
    }
}

/// Whether `path` looks like a placeholder: an empty folder or an empty file. Only paths a
/// journal says a run created are ever removed; this only checks nothing was put there since.
pub fn is_placeholder(path: &Path, kind: Kind) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    match kind {
        Kind::Dir => meta.is_dir() && is_empty_dir(path),
        Kind::File => meta.is_file() && meta.len() == 0,
    }
}

/// Whether a folder has no entries.
pub fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// Removes a placeholder if it still is one and nobody holds it. Errors are ignored: a
/// concurrent run holding it (see [`hold`]) removes it when that run ends.
pub fn remove_placeholder(path: &Path, kind: Kind) {
    if !is_placeholder(path, kind) {
        return;
    }
    let _ = match kind {
        Kind::Dir => std::fs::remove_dir(path),
        Kind::File => std::fs::remove_file(path),
    };
}

/// A journal file, open for appending without write or delete sharing: its existence with a
/// sharing violation on open is how other runs know its run is alive.
pub struct JournalFile {
    file: File,
}

impl JournalFile {
    pub fn create(path: &Path) -> std::io::Result<JournalFile> {
        let file = OpenOptions::new().write(true).create_new(true).share_mode(FILE_SHARE_READ).open(path)?;
        Ok(JournalFile { file })
    }

    /// Appends `text` and flushes it to disk before returning.
    pub fn append(&mut self, text: &str) -> std::io::Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }
}

/// Opens a journal for cleanup; None while its run still holds it.
pub fn claim_stale(path: &Path) -> Option<File> {
    OpenOptions::new().read(true).write(true).share_mode(0).open(path).ok()
}
