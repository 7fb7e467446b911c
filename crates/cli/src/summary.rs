//! What one run did, in a few lines: the command, how it ended, the programs it started and
//! the execs refused, the connections by host, the limits hit. Built from events as JSON
//! values, one at a time, so `ringfence log` (reading a file a user may have edited or cut
//! short) and `ringfence run --report` (as the events happen) share it. Every string it shows
//! came from the record and is escaped.

use ringfence_audit::untrusted::for_terminal;
use serde_json::Value;
use std::collections::BTreeMap;

/// How many hosts the summary lists; the rest are counted.
const HOSTS_SHOWN: usize = 20;

/// A run's summary, added to event by event.
#[derive(Debug, Default)]
pub struct Summary {
    pub run: String,
    command: Option<Vec<String>>,
    end: Option<Value>,
    started: u64,
    denied: u64,
    dropped: u64,
    /// `host:port` → (connections made, refused).
    hosts: BTreeMap<String, (u64, u64)>,
    limits: Vec<String>,
}

/// A string field of an event, or "".
pub fn text<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number field of an event.
pub fn number(event: &Value, key: &str) -> Option<u64> {
    event.get(key).and_then(Value::as_u64)
}

/// An array of strings (argv), shown as one escaped command line.
pub fn command_line(event: &Value, key: &str) -> String {
    let words: Vec<String> = event
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|w| for_terminal(w.as_str().unwrap_or("?"))).collect())
        .unwrap_or_default();
    words.join(" ")
}

impl Summary {
    pub fn new(run: &str) -> Summary {
        Summary { run: run.to_string(), ..Default::default() }
    }

    /// Takes one event into account.
    pub fn add(&mut self, event: &Value) {
        match text(event, "type") {
            "run.start" => self.command = Some(vec![command_line(event, "argv")]),
            "run.end" => self.end = Some(event.clone()),
            "proc.exec" if text(event, "decision") == "deny" => self.denied += 1,
            "proc.exec" => self.started += 1,
            "events.dropped" => self.dropped += number(event, "count").unwrap_or(0),
            "limit.hit" => self.limits.push(format!(
                "{} {}",
                for_terminal(text(event, "limit")),
                for_terminal(text(event, "value"))
            )),
            kind @ ("net.connect" | "net.deny") => {
                let host = format!("{}:{}", for_terminal(text(event, "host")), number(event, "port").unwrap_or(0));
                let counts = self.hosts.entry(host).or_default();
                if kind == "net.connect" {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
            _ => {}
        }
    }

    /// The summary's lines, each ending in a newline.
    pub fn render(&self) -> String {
        let mut out = format!(
            "run {}: {}\n",
            for_terminal(&self.run),
            self.command.as_ref().map_or("(no run.start)".into(), |c| c.join(" "))
        );
        out.push_str(&format!("  {}\n", self.ending()));
        let (started, denied) = self.exec_counts();
        out.push_str(&format!("  processes started: {started}, execs denied: {denied}\n"));
        let (allowed, refused) = self.hosts.values().fold((0, 0), |(a, r), (x, y)| (a + x, r + y));
        out.push_str(&format!("  connections: {allowed} allowed, {refused} denied\n"));
        for (host, (a, r)) in self.hosts.iter().take(HOSTS_SHOWN) {
            out.push_str(&format!("    {host}  {a} allowed, {r} denied\n"));
        }
        if self.hosts.len() > HOSTS_SHOWN {
            out.push_str(&format!("    … and {} more hosts\n", self.hosts.len() - HOSTS_SHOWN));
        }
        let limits = if self.limits.is_empty() { "none".to_string() } else { self.limits.join(", ") };
        out.push_str(&format!("  limits hit: {limits}\n"));
        if self.dropped > 0 {
            out.push_str(&format!("  events dropped by the writer: {}\n", self.dropped));
        }
        out
    }

    /// Programs started and execs denied: run.end's exact counts when it has them (they hold
    /// even when events were dropped), else the records counted.
    fn exec_counts(&self) -> (u64, u64) {
        let end = self.end.as_ref();
        let started = end.and_then(|e| number(e, "processes")).unwrap_or(self.started);
        let denied = end.and_then(|e| number(e, "execs_denied")).unwrap_or(self.denied);
        (started, denied)
    }

    /// How the run ended: its status, the command's exit, the duration.
    fn ending(&self) -> String {
        let Some(end) = &self.end else { return "no run.end: the run did not finish, or the record was cut".into() };
        let how = match (number(end, "exit_code"), number(end, "signal")) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "no exit code".into(),
        };
        let status = end.get("status").and_then(Value::as_i64).unwrap_or(-1);
        let secs = number(end, "duration_ms").unwrap_or(0) as f64 / 1000.0;
        format!("ended: {} ({how}), status {status}, after {secs:.3}s", for_terminal(text(end, "reason")))
    }
}
