//! `ringfence log FILE`: a run's summary, then its timeline with the process tree indented.
//! The file is untrusted input (hand-edited, cut short, or not an event log at all): a line
//! that is not an event object is skipped and counted, unknown types and fields are shown
//! plainly, and every string is escaped before it is printed.

use crate::args::LogArgs;
use crate::summary::{command_line, number, text, Summary};
use ringfence::exit_code;
use ringfence_audit::untrusted::{for_terminal, to_json_line, EVENT_CAP};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read as _};

/// The longest line read as an event; longer ones are skipped (the writer caps each string,
/// so a real event is far shorter).
const LINE_LIMIT: usize = 8 << 20;

/// The events of a file, and what could not be read as events.
struct Read {
    events: Vec<Value>,
    /// Line numbers of the lines skipped.
    skipped: Vec<usize>,
}

pub fn log(args: LogArgs) -> i32 {
    let read = match read(&args.file) {
        Ok(r) => r,
        Err(e) => {
            crate::report(&format!("{}: {e}", args.file.display()));
            return exit_code::POLICY;
        }
    };
    let mut out = String::new();
    if args.json {
        for event in read.events.iter().filter(|e| args.selects(e)) {
            if let Ok(line) = to_json_line(event, EVENT_CAP) {
                out.push_str(&String::from_utf8_lossy(&line));
                out.push('\n');
            }
        }
    } else {
        out = render(&read.events, &args);
    }
    if let Some(first) = read.skipped.first() {
        let lines = if read.skipped.len() == 1 { "line that is not an event" } else { "lines that are not events" };
        out.push_str(&format!("skipped {} {lines} (first: line {first})\n", read.skipped.len()));
    }
    crate::emit(&out);
    0
}

impl LogArgs {
    /// Whether `event` belongs to the run asked for (any, without --run).
    fn in_run(&self, event: &Value) -> bool {
        self.run.as_deref().is_none_or(|id| text(event, "run") == id)
    }

    /// Whether the filters let `event` through.
    fn selects(&self, event: &Value) -> bool {
        let kind = text(event, "type");
        let run = self.in_run(event);
        let types = self.types.is_empty() || self.types.iter().any(|t| t == kind);
        let denied = !self.denied || is_denial(event);
        run && types && denied
    }
}

/// A refusal: an exec or a connection denied, or a policy.deny.
fn is_denial(event: &Value) -> bool {
    match text(event, "type") {
        "policy.deny" | "net.deny" => true,
        "proc.exec" => text(event, "decision") == "deny",
        _ => false,
    }
}

fn read(path: &std::path::Path) -> std::io::Result<Read> {
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    let mut out = Read { events: Vec::new(), skipped: Vec::new() };
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let n = (&mut reader).take(LINE_LIMIT as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let event = (line.len() <= LINE_LIMIT)
            .then(|| serde_json::from_slice::<Value>(&line).ok())
            .flatten()
            .filter(|v| v.is_object() && v.get("type").is_some_and(Value::is_string));
        match event {
            Some(event) => out.events.push(event),
            None if line.iter().all(u8::is_ascii_whitespace) => {}
            None => out.skipped.push(number),
        }
        if line.len() > LINE_LIMIT {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
        }
    }
    Ok(out)
}

/// Each run's summary, then the selected events of all runs as a timeline. The timeline reads
/// every event of those runs (for their start times and process tree) but shows only the
/// selected ones.
fn render(all: &[Value], args: &LogArgs) -> String {
    let mut runs: Vec<Summary> = Vec::new();
    for event in all.iter().filter(|e| args.in_run(e)) {
        let id = text(event, "run");
        if runs.last().is_none_or(|s| s.run != id) {
            runs.push(Summary::new(id));
        }
        if let Some(summary) = runs.last_mut() {
            summary.add(event);
        }
    }
    let mut out: String = runs.iter().map(Summary::render).collect();
    out.push_str("timeline:\n");
    let mut timeline = Timeline::default();
    for event in all.iter().filter(|e| args.in_run(e)) {
        let line = timeline.line(event);
        if args.selects(event) {
            out.push_str(&line);
        }
    }
    out
}

/// Turns events into timeline lines: time since the run started, the process tree's depth
/// as indentation, one line each.
#[derive(Default)]
struct Timeline {
    /// Each run's start.
    starts: HashMap<String, std::time::SystemTime>,
    /// host pid → (depth in the tree, program name), for the processes seen so far.
    processes: HashMap<u64, (usize, String)>,
}

impl Timeline {
    fn line(&mut self, event: &Value) -> String {
        let kind = text(event, "type");
        let when = ringfence_audit::parse_timestamp(if text(event, "time").is_empty() {
            text(event, "ts")
        } else {
            text(event, "time")
        });
        if kind == "run.start" {
            if let Some(t) = when {
                self.starts.insert(text(event, "run").to_string(), t);
            }
        }
        let offset = match (when, self.starts.get(text(event, "run"))) {
            (Some(t), Some(start)) => match t.duration_since(*start) {
                Ok(d) => format!("+{:.3}s", d.as_secs_f64()),
                Err(e) => format!("-{:.3}s", e.duration().as_secs_f64()),
            },
            _ => "       ?".to_string(),
        };
        let (depth, what) = self.describe(kind, event);
        format!("  {offset:>9}  {}{what}\n", "  ".repeat(depth.min(32)))
    }

    /// The event's indentation and text.
    fn describe(&mut self, kind: &str, event: &Value) -> (usize, String) {
        let pid = number(event, "pid").unwrap_or(0);
        match kind {
            "proc.exec" => {
                let depth = self.depth(event);
                let name = command_line(event, "argv");
                // A refused exec leaves the process running what it ran before.
                if text(event, "decision") != "deny" || !self.processes.contains_key(&pid) {
                    self.processes.insert(pid, (depth, name.split(' ').next().unwrap_or("").to_string()));
                }
                let decision = match text(event, "decision") {
                    "deny" => format!("  DENIED by {}", for_terminal(text(event, "rule"))),
                    "log" => format!("  (logged by {})", for_terminal(text(event, "rule"))),
                    _ => String::new(),
                };
                (depth, format!("exec {name}  [pid {pid}]{decision}"))
            }
            "proc.exit" => {
                let (depth, name) = self.processes.get(&pid).cloned().unwrap_or_default();
                let how = match (number(event, "exit_code"), number(event, "signal")) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(sig)) => format!("signal {sig}"),
                    _ => "exit status unknown".into(),
                };
                (depth, format!("exit {name}  [pid {pid}] {how} after {}ms", number(event, "duration_ms").unwrap_or(0)))
            }
            _ => (0, other(kind, event)),
        }
    }

    /// A process's depth: from its chain of sandbox pids, else one below its parent's.
    fn depth(&self, event: &Value) -> usize {
        if let Some(chain) = event.get("chain").and_then(Value::as_array).filter(|c| c.len() >= 2) {
            return chain.len() - 2;
        }
        let parent = number(event, "ppid").unwrap_or(0);
        self.processes.get(&parent).map_or(0, |(d, _)| d + 1)
    }
}

/// The text of an event other than a process's.
fn other(kind: &str, event: &Value) -> String {
    let field = |k: &str| for_terminal(text(event, k));
    match kind {
        "run.start" => format!("run.start  {}  (profile {})", command_line(event, "argv"), field("profile")),
        "run.end" => {
            format!("run.end  {} status {}", field("reason"), event.get("status").and_then(Value::as_i64).unwrap_or(-1))
        }
        "policy.deny" => format!("policy.deny  {}: {}", field("rule"), field("detail")),
        "net.connect" => {
            format!("net.connect  {}:{} ({})", field("host"), number(event, "port").unwrap_or(0), field("addr"))
        }
        "net.deny" => format!("net.deny  {}:{} {}", field("host"), number(event, "port").unwrap_or(0), field("reason")),
        "net.dns" => format!("net.dns  {}", field("name")),
        "limit.hit" => format!("limit.hit  {} {}", field("limit"), field("value")),
        "events.dropped" => format!("events.dropped  {} events not written", number(event, "count").unwrap_or(0)),
        _ => for_terminal(kind),
    }
}
