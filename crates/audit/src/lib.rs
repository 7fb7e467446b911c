//! ringfence's event stream: one JSON object per line, schema in docs/events.md. Also the
//! outcome types every backend shares: why a run ended ([`EndReason`]), what the post-run
//! review found ([`ReviewFinding`]) and why a launch failed ([`LaunchError`]).

#![forbid(unsafe_code)]
#![deny(clippy::too_many_lines)]

mod launch_error;
pub mod untrusted;
pub use launch_error::{ErrorKind, LaunchError};

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bumped when a field changes meaning or disappears; new fields don't bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// One event as written to the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version.
    pub v: u32,
    /// RFC 3339 UTC time with milliseconds.
    pub ts: String,
    /// The run's id, shared by every event of one run.
    pub run: String,
    #[serde(flatten)]
    pub body: EventBody,
}

/// A protection layer and how it was enforced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    pub detail: String,
}

impl Layer {
    pub fn new(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Layer { name: name.into(), detail: detail.into() }
    }
}

/// Why a run ended; `name` is its `reason` in the run.end event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    Exited,
    Signaled,
    Timeout,
    MemoryLimit,
    PidsLimit,
    /// The command could not be started (not found, not executable), with the message.
    ExecFailed(String),
    /// The post-run review could not make sure the run left nothing that runs code later.
    ReviewFailed,
}

impl EndReason {
    pub fn name(&self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::Signaled => "signaled",
            EndReason::Timeout => "timeout",
            EndReason::MemoryLimit | EndReason::PidsLimit => "limit",
            EndReason::ExecFailed(_) => "exec-failed",
            EndReason::ReviewFailed => "review-failed",
        }
    }
}

/// One thing the post-run review of the writable roots dealt with, or could not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewFinding {
    /// The host path it concerns.
    pub path: PathBuf,
    /// The `policy.deny` rule it is reported under: `git`, `protected-file`, `special-file`,
    /// `permissions`, or `review-failed` for what could not be reviewed.
    pub rule: &'static str,
    /// What was found and what was done, without the path.
    pub detail: String,
}

/// Resource usage of the whole sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rusage {
    pub user_ms: u64,
    pub system_ms: u64,
    pub max_rss_kb: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "run.start")]
    RunStart {
        argv: Vec<String>,
        cwd: String,
        profile: String,
        policy_digest: String,
        /// Layers in force for this run.
        enforced: Vec<Layer>,
        /// Requested protections that could not be enforced (only with --allow-degraded).
        not_enforced: Vec<Layer>,
        kernel: serde_json::Value,
    },
    /// A program started in the sandbox (every exec with the exec monitor; without it, the
    /// top-level command only).
    #[serde(rename = "proc.exec")]
    ProcExec {
        /// The process's host pid; 0 when it ended before ringfence could read it.
        pid: u32,
        /// The host pid of its parent.
        ppid: u32,
        /// Its pid inside the sandbox; null without the exec monitor.
        #[serde(default)]
        ns_pid: Option<u32>,
        /// The sandbox pids from the sandbox's init (1) down to the process itself; empty
        /// without the exec monitor.
        #[serde(default)]
        chain: Vec<u32>,
        /// The program's path as the exec named it; null without the exec monitor.
        #[serde(default)]
        path: Option<String>,
        argv: Vec<String>,
        cwd: String,
        /// The exec rule that matched (its pattern and source); null when none did.
        #[serde(default)]
        rule: Option<String>,
        /// `allow`, `deny` or `log`; null without the exec monitor.
        #[serde(default)]
        decision: Option<String>,
        /// When the exec was decided (`ts` is when the line was written).
        #[serde(default)]
        time: Option<String>,
    },
    /// A process that ran a program ended (exec monitor only).
    #[serde(rename = "proc.exit")]
    ProcExit {
        pid: u32,
        ns_pid: Option<u32>,
        /// Its exit code, when it exited and the kernel told it.
        exit_code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
        /// From its first recorded exec to its end.
        duration_ms: u64,
        /// When it ended.
        time: String,
    },
    /// Events that were not written because the writer fell behind.
    #[serde(rename = "events.dropped")]
    EventsDropped { count: u64 },
    /// A name the gateway looked up (allowed names only: others are never resolved).
    #[serde(rename = "net.dns")]
    NetDns {
        name: String,
        /// `system`, or the configured server as `ip:port`.
        resolver: String,
        answers: Vec<String>,
        duration_ms: u64,
        error: Option<String>,
    },
    /// A connection the gateway made for the sandbox, written when it ends.
    #[serde(rename = "net.connect")]
    NetConnect {
        /// `http-connect`, `http` or `socks5`.
        proto: String,
        host: String,
        port: u16,
        /// The address dialled, `ip:port`.
        addr: String,
        /// The allow rule that matched.
        rule: String,
        /// Bytes from the sandbox to the destination, and back.
        bytes_up: u64,
        bytes_down: u64,
        duration_ms: u64,
        /// Why the connection could not be made or ended abnormally; null when it went well.
        error: Option<String>,
    },
    /// A connection or request the gateway refused.
    #[serde(rename = "net.deny")]
    NetDeny {
        proto: String,
        host: String,
        port: u16,
        /// `not-allowed`, `denied`, `address-guard`, `sni-mismatch`, `no-sni`, `not-tls`,
        /// `host-mismatch` or `bad-request`.
        reason: String,
        detail: String,
        /// The rule that decided, when one did.
        rule: Option<String>,
        /// The address that was refused, for `address-guard`.
        addr: Option<String>,
    },
    #[serde(rename = "policy.deny")]
    PolicyDeny { rule: String, detail: String },
    #[serde(rename = "limit.hit")]
    LimitHit { limit: String, value: String, detail: String },
    #[serde(rename = "run.end")]
    RunEnd {
        /// The command's exit code, when it exited.
        exit_code: Option<i32>,
        /// The signal that ended the command, when one did.
        signal: Option<i32>,
        /// ringfence's own exit code for the run.
        status: i32,
        /// `exited`, `signaled`, `timeout`, `limit` or `exec-failed`.
        reason: String,
        duration_ms: u64,
        rusage: Rusage,
        /// Programs started (execs allowed); null without the exec monitor.
        #[serde(default)]
        processes: Option<u64>,
        /// Execs refused by an exec rule; null without the exec monitor.
        #[serde(default)]
        execs_denied: Option<u64>,
        /// Connections the gateway made, and requests it refused.
        #[serde(default)]
        connections_allowed: u64,
        #[serde(default)]
        connections_denied: u64,
        /// The sandbox's peak memory use, from its memory cgroup; null without one.
        #[serde(default)]
        peak_memory_kb: Option<u64>,
    },
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Reads a time as [`timestamp`] writes it (any RFC 3339 form); None if it is not one.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// Appends events to a JSON Lines file, flushing each one so nothing is lost on a crash. It
/// writes through the descriptor it was given and never reopens the file by name (the CLI opens
/// it once, safely, before the sandbox starts). Every string is written as
/// [`untrusted::escape`] renders it, cut at [`untrusted::EVENT_CAP`] bytes.
pub struct EventWriter {
    file: Box<dyn Write + Send>,
    run: String,
}

impl EventWriter {
    /// A writer appending to `file` (a file open for appending, a pipe, stderr), one
    /// `write_all` per event.
    pub fn new(file: impl Write + Send + 'static, run: String) -> Self {
        EventWriter { file: Box::new(file), run }
    }

    pub fn emit(&mut self, body: EventBody) -> std::io::Result<()> {
        let event = Event { v: SCHEMA_VERSION, ts: timestamp(SystemTime::now()), run: self.run.clone(), body };
        let mut line = untrusted::to_json_line(&event, untrusted::EVENT_CAP).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// Reads every event of a JSON Lines file; a malformed line is an error naming its number.
pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    let reader = BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), n + 1))
        })?;
        out.push(event);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("rf-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut w = EventWriter::new(file, "r1".into());
        w.emit(EventBody::LimitHit { limit: "pids".into(), value: "10".into(), detail: "x".into() }).unwrap();
        w.emit(EventBody::RunEnd {
            exit_code: Some(0),
            signal: None,
            status: 0,
            reason: "exited".into(),
            duration_ms: 3,
            rusage: Rusage::default(),
            processes: Some(1),
            execs_denied: Some(0),
            connections_allowed: 0,
            connections_denied: 0,
            peak_memory_kb: None,
        })
        .unwrap();
        // Windows can't remove a directory while a file in it is open.
        drop(w);
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].run, "r1");
        assert!(matches!(events[1].body, EventBody::RunEnd { status: 0, .. }));
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.lines().next().unwrap().contains("\"type\":\"limit.hit\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strings_are_escaped_and_capped() {
        let dir = std::env::temp_dir().join(format!("rf-audit-esc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut w = EventWriter::new(file, "r\x1b".into());
        let detail = format!("\x1b]52;c;SGk=\x07\u{9b}2J\u{202e}{}", "y".repeat(1 << 20));
        w.emit(EventBody::PolicyDeny { rule: "git".into(), detail }).unwrap();
        drop(w);
        let raw = std::fs::read(&path).unwrap();
        assert!(raw.len() < untrusted::EVENT_CAP + 200, "{} bytes", raw.len());
        let text = String::from_utf8(raw).unwrap();
        for hazard in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(!text.contains(hazard), "{hazard:?} in {text:.200}");
        }
        let events = read_events(&path).unwrap();
        assert_eq!(events[0].run, "r\\x1b");
        let EventBody::PolicyDeny { detail, .. } = &events[0].body else { panic!("{:?}", events[0]) };
        assert!(detail.starts_with("\\x1b]52;c;SGk=\\x07\\u{9b}2J\\u{202e}yyy"), "{detail:.80}");
        assert!(detail.contains(" bytes]…yyy") && detail.ends_with("yyy"), "{}", &detail[detail.len() - 40..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123Z");
    }
}
