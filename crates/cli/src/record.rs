//! What `run` writes for the caller: the event log (`--events`) and the status
//! (`--json-status`). Both are opened (or checked) before the launch, written only through
//! the descriptor, and kept out of the sandbox's reach: where they lie inside a writable root,
//! a `deny_write` rule makes them read-only in the sandbox's view, with their folders pinned.

use ringfence::{Error, OutputFile};
use ringfence_policy::{Builtin, Policy, RuleKind};
use std::fs::File;
use std::path::PathBuf;

/// Sources of the rules that protect ringfence's own output.
const EVENT_LOG: Builtin = Builtin::EventLog;
const STATUS_FILE: Builtin = Builtin::StatusFile;

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

/// Where `--events` goes, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventsArg {
    /// A file ringfence opens itself (appending).
    Path(PathBuf),
    /// A descriptor the caller passes open: `fd:3`.
    Fd(i32),
    /// ringfence's own stderr: `-`.
    Stderr,
}

/// Parses `-`, `fd:N` or a path (`3` is a file called `3`).
pub fn parse_events_arg(s: &str) -> Result<EventsArg, String> {
    if s == "-" {
        return Ok(EventsArg::Stderr);
    }
    if let Some(digits) = s.strip_prefix("fd:") {
        return match digits.parse::<i32>() {
            Ok(fd) if fd >= 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(EventsArg::Fd(fd)),
            _ => Err(format!("`{s}`: write fd: and a descriptor number, like fd:3")),
        };
    }
    if s.is_empty() {
        return Err("write a file path, fd:N or -".into());
    }
    Ok(EventsArg::Path(PathBuf::from(s)))
}

/// Where the event stream goes.
pub type EventOutput = Box<dyn std::io::Write + Send>;

/// The run's outputs, open and protected.
pub struct Outputs {
    pub events: Option<EventOutput>,
    pub status: Option<File>,
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
/// Descriptors are taken over first: any file ringfence opens could take their numbers.
pub fn open(
    events: Option<&EventsArg>,
    status: Option<&StatusArg>,
    policy: &mut Policy,
) -> Result<Outputs, OutputError> {
    let inherited = match status {
        Some(StatusArg::Fd(fd)) => Some(
            ringfence::inherited_output(*fd, policy)
                .map(|out| protect(policy, out, STATUS_FILE))
                .map_err(|e| OutputError::new("--json-status", e))?,
        ),
        _ => None,
    };
    let events: Option<EventOutput> = match events {
        Some(EventsArg::Fd(fd)) => Some(Box::new(
            ringfence::inherited_output(*fd, policy)
                .map(|out| protect(policy, out, EVENT_LOG))
                .map_err(|e| OutputError::new("--events", e))?,
        )),
        Some(EventsArg::Stderr) => Some(Box::new(std::io::stderr())),
        Some(EventsArg::Path(path)) => Some(Box::new(
            ringfence::open_output(path, policy, true)
                .map(|out| protect(policy, out, EVENT_LOG))
                .map_err(|e| OutputError::new("--events", e))?,
        )),
        None => None,
    };
    let opened = match status {
        Some(StatusArg::Path(path)) => Some(
            ringfence::open_output(path, policy, false)
                .map(|out| protect(policy, out, STATUS_FILE))
                .map_err(|e| OutputError::new("--json-status", e))?,
        ),
        _ => None,
    };
    Ok(Outputs { events, status: inherited.or(opened) })
}

/// Makes the output's path read-only in the sandbox's view when a run could write it: a
/// `deny_write` rule, which also pins the folders between it and its writable root so they
/// can't be renamed away.
fn protect(policy: &mut Policy, out: OutputFile, what: Builtin) -> File {
    if let Some(path) = out.protect {
        policy.fs.push(RuleKind::DenyWrite, path, what);
    }
    out.file
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

    #[test]
    fn event_targets_parse() {
        assert_eq!(parse_events_arg("-"), Ok(EventsArg::Stderr));
        assert_eq!(parse_events_arg("fd:7"), Ok(EventsArg::Fd(7)));
        assert_eq!(parse_events_arg("3"), Ok(EventsArg::Path("3".into())));
        assert_eq!(parse_events_arg("run.jsonl"), Ok(EventsArg::Path("run.jsonl".into())));
        assert!(parse_events_arg("fd:").is_err());
        assert!(parse_events_arg("fd:-1").is_err());
        assert!(parse_events_arg("").is_err());
    }
}
