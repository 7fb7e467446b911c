//! Test fixtures: sample SIDs, UTF-16 text, and (shared with the enforcement tests) policies
//! and limits.

#[path = "../tests/common/mod.rs"]
mod common;

pub use common::*;

use crate::sid::Sid;

/// `s` as UTF-16 units, without a terminator.
pub fn w(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// A user's SID, as the installing user or the caller.
pub fn user() -> Sid {
    Sid::parse("S-1-5-21-1004336348-1177238915-682003330-1001").unwrap()
}

/// Another local account's SID, as the sandbox account.
pub fn account() -> Sid {
    Sid::parse("S-1-5-21-1004336348-1177238915-682003330-1002").unwrap()
}

/// A logon SID, as a run's.
pub fn logon() -> Sid {
    Sid::parse("S-1-5-5-0-4242").unwrap()
}
