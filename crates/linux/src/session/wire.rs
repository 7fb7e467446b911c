//! What the session's server and its callers say besides `protocol::Order` and `Status`:
//! one-byte marks and the review's findings.

use ringfence_backend::ReviewFinding;
use std::path::PathBuf;

/// One byte asking the server to end the session.
pub(super) const STOP: u8 = b's';
/// One byte telling the caller, before the command's end, that the policy's timeout ended it.
pub(super) const TIMED_OUT: u8 = b't';
/// One byte telling the caller, before the command's end, that the memory limit was reached.
pub(super) const MEMORY_LIMIT: u8 = b'm';

/// A finding of the review after a command, for its caller (before the command's end): `f`
/// for what was found and dealt with, `F` for what could not be checked; then the rule, the
/// path and the detail, each ended by a NUL.
pub(super) fn encode_finding(failed: bool, finding: &ReviewFinding) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut packet = vec![if failed { b'F' } else { b'f' }];
    for field in [finding.rule.as_bytes(), finding.path.as_os_str().as_bytes(), finding.detail.as_bytes()] {
        packet.extend(field.iter().filter(|b| **b != 0));
        packet.push(0);
    }
    packet
}

/// The finding of a packet, and whether it is a failure; None for another packet.
pub(super) fn decode_finding(packet: &[u8]) -> Option<(bool, ReviewFinding)> {
    use std::os::unix::ffi::OsStrExt;
    let (failed, rest) = match packet.split_first()? {
        (b'f', rest) => (false, rest),
        (b'F', rest) => (true, rest),
        _ => return None,
    };
    let mut fields = rest.split(|b| *b == 0);
    let rule = match fields.next()? {
        b"git" => "git",
        b"protected-file" => "protected-file",
        b"special-file" => "special-file",
        b"permissions" => "permissions",
        _ => "review-failed",
    };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(fields.next()?));
    let detail = String::from_utf8_lossy(fields.next()?).into_owned();
    Some((failed, ReviewFinding { path, rule, detail }))
}
