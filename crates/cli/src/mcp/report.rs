//! The result of `run_command`: structured content, and the same as text for clients that show
//! only text. Everything the sandbox chose (output, names in refusals) is escaped first.

use super::capture::{Captured, OUTPUT_CAP};
use super::denials::{denials, Denial};
use super::job::Job;
use super::runner::Ran;
use ringfence_audit::untrusted::{for_terminal, lines_for_terminal};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::json;
use std::fmt::Write;

/// How the command ended, in one word, as `reason` says it.
fn outcome(ran: &Ran) -> String {
    match (&ran.status, ran.cancelled) {
        (_, true) => "cancelled".into(),
        (Some(status), _) => status.reason.clone(),
        (None, _) => "not-started".into(),
    }
}

/// The tool result for a command that ran (or could not start).
pub fn result(job: &Job, ran: &Ran) -> CallToolResult {
    let found = denials(&ran.events);
    let exit_code = ran.status.as_ref().and_then(|s| s.exit_code);
    let signal = ran.status.as_ref().and_then(|s| s.signal);
    let status = ran.status.as_ref().map(|s| s.status).or(ran.code);
    let reason = outcome(ran);
    let value = json!({
        "exit_code": exit_code,
        "signal": signal,
        "status": status,
        "reason": reason,
        "duration_ms": ran.duration.as_millis() as u64,
        "timeout_s": job.timeout.as_secs_f64(),
        "timeout_capped": job.timeout_capped,
        "stdout": shown(&ran.stdout),
        "stderr": shown(&ran.stderr),
        "stdout_bytes": ran.stdout.total,
        "stderr_bytes": ran.stderr.total,
        "stdout_truncated": ran.stdout.truncated(),
        "stderr_truncated": ran.stderr.truncated(),
        "output_cap_bytes": OUTPUT_CAP,
        "denials": found,
    });
    let text = text(job, ran, &reason, status, &found);
    let ok = reason == "exited" && exit_code == Some(0);
    let mut out = if ok {
        CallToolResult::success(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::error(vec![ContentBlock::text(text)])
    };
    out.structured_content = Some(value);
    out
}

/// The text form: the end, the refusals, then both streams.
fn text(job: &Job, ran: &Ran, reason: &str, status: Option<i32>, found: &[Denial]) -> String {
    let seconds = ran.duration.as_secs_f64();
    let mut out = match (reason, &ran.status) {
        ("exited", Some(s)) => format!("exit code {} after {seconds:.2}s\n", s.exit_code.unwrap_or_default()),
        ("signaled", Some(s)) => format!("killed by signal {} after {seconds:.2}s\n", s.signal.unwrap_or_default()),
        ("timeout", _) => {
            format!("timed out after {seconds:.2}s (timeout_s {}) and was killed\n", job.timeout.as_secs_f64())
        }
        ("cancelled", _) => {
            format!("cancelled after {seconds:.2}s; the command and everything it started were killed\n")
        }
        ("not-started", _) => {
            format!("ringfence could not run the command (exit {}): see stderr\n", status.unwrap_or(-1))
        }
        (other, _) => format!("ended ({other}, ringfence exit {}) after {seconds:.2}s\n", status.unwrap_or(-1)),
    };
    if job.timeout_capped {
        let _ = writeln!(out, "note: the timeout was cut to the server's limit, {}s", job.timeout.as_secs_f64());
    }
    for d in found {
        let times = if d.count > 1 { format!(" ({} times)", d.count) } else { String::new() };
        let _ = writeln!(out, "denied{times}: {}", for_terminal(&d.detail));
        if let (Some(flag), Some(config)) = (&d.allow_flag, &d.allow_config) {
            let _ = writeln!(
                out,
                "  to allow: the person restarts `ringfence mcp` with {} (or adds {config} to its config)",
                for_terminal(flag)
            );
        }
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "  {hint}");
        }
    }
    section(&mut out, "stdout", &ran.stdout);
    section(&mut out, "stderr", &ran.stderr);
    out
}

fn section(out: &mut String, name: &str, captured: &Captured) {
    let size = if captured.truncated() {
        format!("{} bytes; the first and last {} shown", captured.total, OUTPUT_CAP / 2)
    } else {
        format!("{} bytes", captured.total)
    };
    let _ = writeln!(out, "--- {name} ({size})");
    let body = shown(captured);
    out.push_str(&body);
    if !body.is_empty() && !body.ends_with('\n') {
        out.push('\n');
    }
}

/// A stream's text with control and format characters made visible (a terminal may show it),
/// line breaks kept.
fn shown(captured: &Captured) -> String {
    lines_for_terminal(&captured.text(), OUTPUT_CAP)
}
