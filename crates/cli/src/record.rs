//! What `run` writes for the caller: the event log (`--events`) and the status
//! (`--json-status`). Both are opened (or checked) before the launch, written only through
//! the descriptor, and kept out of the sandbox's reach: where they lie inside a writable root,
//! a `deny_write` rule makes them read-only in the sandbox's view, with their folders pinned.

use ringfence::Error;
use ringfence_policy::{Builtin, Policy, RuleKind};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Sources of the rules that protect ringfence's own output (shown by `explain`-like views and
/// in errors).
pub const EVENT_LOG: Builtin = Builtin::EventLog;
pub const STATUS_FILE: Builtin = Builtin::StatusFile;

/// Where `--json-status` goes, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusArg {
    /// A descriptor the caller passes open: `3` or `fd:3`.
    Fd(i32),
    /// A file ringfence opens itself.
    Path(PathBuf),
}

/// Parses `N`, `fd:N` or a path (`./3` names a file called `3`).
pub fn parse_status_arg(s: &str) -> Result<StatusArg, String> {
    let digits = s.strip_prefix("fd:").unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse().map(StatusArg::Fd).map_err(|_| format!("`{digits}` is not a descriptor number"));
    }
    if s.starts_with("fd:") || s.is_empty() {
        return Err(format!("`{s}`: write a descriptor number (3 or fd:3) or a file path"));
    }
    Ok(StatusArg::Path(PathBuf::from(s)))
}

/// Where the status is written once the run ends.
pub enum StatusTarget {
    /// The caller's descriptor, as it is (its offset and flags; pipes and sockets too).
    #[cfg(target_os = "linux")]
    Fd(i32),
    /// A file ringfence opened and emptied.
    File(File),
}

impl StatusTarget {
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            StatusTarget::Fd(fd) => ringfence::linux::write_inherited_fd(*fd, bytes),
            StatusTarget::File(f) => f.write_all(bytes),
        }
    }
}

/// The run's outputs, open and protected.
pub struct Outputs {
    pub events: Option<File>,
    pub status: Option<StatusTarget>,
}

/// An output that could not be opened safely: the message and ringfence's exit code.
pub struct OutputError {
    pub message: String,
    pub code: i32,
}

impl OutputError {
    fn new(flag: &str, err: Error) -> Self {
        OutputError { message: format!("{flag}: {err}"), code: err.exit_code() }
    }
}

/// Opens `--events` and `--json-status` and adds the rules that protect them to `policy`.
/// The descriptor is checked first: any file ringfence opens could take its number.
pub fn open(events: Option<&Path>, status: Option<&StatusArg>, policy: &mut Policy) -> Result<Outputs, OutputError> {
    let inherited = match status {
        Some(StatusArg::Fd(fd)) => {
            Some(inherited_status(*fd, policy).map_err(|e| OutputError::new("--json-status", e))?)
        }
        _ => None,
    };
    let events = match events {
        Some(path) => Some(open_protected(path, true, EVENT_LOG, policy).map_err(|e| OutputError::new("--events", e))?),
        None => None,
    };
    let opened = match status {
        Some(StatusArg::Path(path)) => Some(StatusTarget::File(
            open_protected(path, false, STATUS_FILE, policy).map_err(|e| OutputError::new("--json-status", e))?,
        )),
        _ => None,
    };
    Ok(Outputs { events, status: inherited.or(opened) })
}

/// Makes `path` read-only in the sandbox's view: a `deny_write` rule, which also pins the
/// folders between it and its writable root so they can't be renamed away.
fn protect(policy: &mut Policy, path: PathBuf, what: Builtin) {
    policy.fs.push(RuleKind::DenyWrite, path, what);
}

/// Opens an output file safely (appending, or emptied) and protects it when it lies inside a
/// writable root.
fn open_protected(path: &Path, append: bool, what: Builtin, policy: &mut Policy) -> Result<File, Error> {
    let (file, inside) = open_file(path, append, policy)?;
    if let Some(path) = inside {
        protect(policy, path, what);
    }
    Ok(file)
}

/// The file, and its path when the sandbox could otherwise write it.
#[cfg(target_os = "linux")]
fn open_file(path: &Path, append: bool, policy: &Policy) -> Result<(File, Option<PathBuf>), Error> {
    use ringfence::linux::{open_output, OutputMode};
    let mode = if append { OutputMode::Append } else { OutputMode::Replace };
    let out = open_output(path, policy, mode).map_err(Error::Launch)?;
    Ok((out.file, out.in_writable_root.then_some(out.path)))
}

/// Elsewhere the file is opened by name; the backend's deny rule keeps the sandbox off it.
#[cfg(not(target_os = "linux"))]
fn open_file(path: &Path, append: bool, policy: &Policy) -> Result<(File, Option<PathBuf>), Error> {
    let policy_error = |e: std::io::Error| Error::Policy(ringfence::PolicyError::new(e.to_string()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(policy_error)?;
    let full = ringfence_policy::normalize(&std::path::absolute(path).map_err(policy_error)?);
    let inside = policy.fs.access(&full).access == ringfence_policy::FsAccess::Write;
    Ok((file, inside.then_some(full)))
}

/// Checks a descriptor the caller passed open, and protects its file when it is a regular file
/// inside a writable root. Descriptors 0 to 2 are the command's own streams too: the command
/// writes there anyway, so nothing is added for them.
#[cfg(target_os = "linux")]
fn inherited_status(fd: i32, policy: &mut Policy) -> Result<StatusTarget, Error> {
    if !ringfence::linux::inherited_fd_is_open(fd) {
        return Err(Error::Policy(
            ringfence::PolicyError::new(format!("descriptor {fd} is not open"))
                .with_help(format!("open it, e.g. `{fd}>status.json`, or pass a file path")),
        ));
    }
    if fd > 2 {
        if let Some(path) = ringfence::linux::inherited_output_path(fd, policy).map_err(Error::Launch)? {
            protect(policy, path, STATUS_FILE);
        }
    }
    Ok(StatusTarget::Fd(fd))
}

#[cfg(not(target_os = "linux"))]
fn inherited_status(_: i32, _: &mut Policy) -> Result<StatusTarget, Error> {
    Err(Error::Unsupported("a descriptor for --json-status is not supported on this platform; pass a file path".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_targets_parse() {
        assert_eq!(parse_status_arg("3"), Ok(StatusArg::Fd(3)));
        assert_eq!(parse_status_arg("fd:12"), Ok(StatusArg::Fd(12)));
        assert_eq!(parse_status_arg("./3"), Ok(StatusArg::Path("./3".into())));
        assert_eq!(parse_status_arg("status.json"), Ok(StatusArg::Path("status.json".into())));
        assert!(parse_status_arg("fd:").is_err());
        assert!(parse_status_arg("fd:x").is_err());
        assert!(parse_status_arg("").is_err());
        assert!(parse_status_arg("99999999999").is_err());
    }
}
