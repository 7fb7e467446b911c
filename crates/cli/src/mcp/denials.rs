//! What the sandbox refused during one command, from the run's events: each refusal with what
//! it concerned, why, and the flag (or config line) the person would restart the server with to
//! allow it. The agent can't act on these itself: they are for it to relay.

use ringfence_audit::{Event, EventBody};
use ringfence_policy::{ByteSize, HumanDuration};
use serde::Serialize;
use std::net::IpAddr;

/// One kind of refusal, with how often it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// `network`, `exec` (an exec rule), `policy` (the review after the run) or `limit`.
    pub kind: &'static str,
    /// The program an exec rule refused, with its arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// The event's reason: `not-allowed`, `address-guard`, `git`, `timeout`, ...
    pub reason: String,
    /// ringfence's own sentence about it.
    pub detail: String,
    /// The flag that allows it, for the server's command line; null when no flag does.
    pub allow_flag: Option<String>,
    /// The same as a config file line, with its section.
    pub allow_config: Option<String>,
    /// What the agent itself can do instead, when anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub count: u32,
}

impl Denial {
    fn new(kind: &'static str, reason: &str, detail: &str) -> Self {
        Denial {
            kind,
            program: None,
            host: None,
            port: None,
            path: None,
            limit: None,
            reason: reason.to_string(),
            detail: detail.to_string(),
            allow_flag: None,
            allow_config: None,
            hint: None,
            count: 1,
        }
    }

    fn allowed_by(self, flag: String, config: String) -> Self {
        Denial { allow_flag: Some(flag), allow_config: Some(config), ..self }
    }

    /// Two refusals of the same thing for the same reason are one, counted.
    fn same_as(&self, other: &Denial) -> bool {
        (self.kind, &self.program, &self.host, self.port, &self.path, &self.limit, &self.reason)
            == (other.kind, &other.program, &other.host, other.port, &other.path, &other.limit, &other.reason)
    }
}

/// The refusals among `events`, in the order they first happened.
pub fn denials(events: &[Event]) -> Vec<Denial> {
    let mut out: Vec<Denial> = Vec::new();
    for event in events {
        let denial = match &event.body {
            EventBody::NetDeny { host, port, reason, detail, addr, .. } => network(host, *port, reason, detail, addr),
            // A denied exec is told by its proc.exec record, which names the program.
            EventBody::PolicyDeny { rule, .. } if rule == "exec" => continue,
            EventBody::PolicyDeny { rule, detail } => review(rule, detail),
            EventBody::LimitHit { limit, value, detail } => limit_hit(limit, value, detail),
            EventBody::ProcExec { argv, rule, decision: Some(decision), .. } if decision == "deny" => {
                exec_denied(argv, rule.as_deref())
            }
            _ => continue,
        };
        match out.iter_mut().find(|d| d.same_as(&denial)) {
            Some(seen) => seen.count += 1,
            None => out.push(denial),
        }
    }
    out
}

/// A connection the gateway refused.
fn network(host: &str, port: u16, reason: &str, detail: &str, addr: &Option<String>) -> Denial {
    let mut d = Denial { host: Some(host.to_string()), port: Some(port), ..Denial::new("network", reason, detail) };
    match reason {
        // A bare host means ports 80 and 443; any other port is named in the rule.
        "not-allowed" | "port-not-named" | "unknown-address" => {
            let pattern = match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                Ok(ip) => format!("{ip}:{port}"),
                Err(_) if port == 80 || port == 443 => host.to_string(),
                Err(_) => format!("{host}:{port}"),
            };
            let quoted = if pattern.starts_with('[') { format!("'{pattern}'") } else { pattern.clone() };
            d = d.allowed_by(format!("--allow-host {quoted}"), format!("[network] allow = [\"{pattern}\"]"));
        }
        "address-guard" => {
            let ip = addr.as_deref().and_then(|a| a.parse::<std::net::SocketAddr>().ok()).map(|a| a.ip());
            match ip.and_then(|ip| ringfence_policy::parse_private_range(&ip.to_string()).ok()) {
                Some(range) => {
                    d = d.allowed_by(
                        format!("--allow-private {range}"),
                        format!("[network] allow_private = [\"{range}\"]"),
                    )
                }
                None => {
                    d.hint =
                        Some("loopback, link-local, metadata and this machine's own addresses are never allowed".into())
                }
            }
        }
        "udp" => {
            d.hint =
                Some("only DNS is carried over UDP; programs that fall back to TCP (HTTP/3 clients do) work".into())
        }
        "denied" => {
            d.hint = Some("a deny rule of the server's policy refuses it; only the person can remove it".into())
        }
        _ => d.hint = Some("a protocol check refused it; no flag allows it".into()),
    }
    d
}

/// An exec an exec rule refused. Exec rules only narrow what the person chose: the rule can be
/// dropped only by restarting the server without it.
fn exec_denied(argv: &[String], rule: Option<&str>) -> Denial {
    let program = argv.join(" ");
    let rule = rule.unwrap_or("an exec rule");
    Denial {
        program: Some(program.clone()),
        hint: Some(format!(
            "the server's exec rules refuse it ({rule}); no flag of the agent's allows it: the person can restart \
             the server without that rule"
        )),
        ..Denial::new("exec", "exec-rule", &format!("{program}: refused by {rule}"))
    }
}

/// What the review after the run moved aside, or could not check. The detail starts with the
/// path.
fn review(rule: &str, detail: &str) -> Denial {
    let path = detail.split_once(": ").map(|(path, _)| path.to_string());
    Denial {
        path,
        hint: Some(
            "ringfence moves aside what a run leaves where git, direnv, editors or agents would run it later; \
             no flag allows it: make such a change outside the sandbox"
                .into(),
        ),
        ..Denial::new("policy", rule, detail)
    }
}

/// A limit that ended the run; the flag raises it (to twice the value, as a start).
fn limit_hit(limit: &str, value: &str, detail: &str) -> Denial {
    let d = Denial { limit: Some(limit.to_string()), ..Denial::new("limit", limit, detail) };
    match limit {
        "timeout" => {
            let d = Denial { hint: Some("ask for more with `timeout_s`, up to the server's limit".into()), ..d };
            match value.parse::<HumanDuration>() {
                Ok(t) => {
                    let more = HumanDuration(t.0.saturating_mul(2));
                    d.allowed_by(format!("--timeout {more}"), format!("[limits] timeout = \"{more}\""))
                }
                Err(_) => d,
            }
        }
        "memory" => match value.parse::<ByteSize>() {
            Ok(size) => {
                let more = ByteSize(size.0.saturating_mul(2));
                d.allowed_by(format!("--memory {more}"), format!("[limits] memory = \"{more}\""))
            }
            Err(_) => d,
        },
        "pids" => match value.parse::<u64>() {
            Ok(n) => d.allowed_by(format!("--pids {}", n * 2), format!("[limits] pids = {}", n * 2)),
            Err(_) => d,
        },
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: EventBody) -> Event {
        Event { v: 1, ts: String::new(), run: "r".into(), body }
    }

    fn deny(host: &str, port: u16, reason: &str, addr: Option<&str>) -> Event {
        event(EventBody::NetDeny {
            proto: "http-connect".into(),
            host: host.into(),
            port,
            reason: reason.into(),
            detail: format!("{host}:{port} is refused"),
            rule: None,
            addr: addr.map(String::from),
        })
    }

    #[test]
    fn network_refusals_name_the_flag() {
        let found = denials(&[
            deny("api.example.com", 443, "not-allowed", None),
            deny("api.example.com", 443, "not-allowed", None),
            deny("192.0.2.7", 80, "not-allowed", None),
            deny("2001:db8::1", 443, "not-allowed", None),
            deny("lan.test", 80, "address-guard", Some("10.0.0.1:80")),
            deny("loop.test", 80, "address-guard", Some("127.0.0.1:80")),
            deny("github.com", 22, "port-not-named", None),
            deny("198.51.100.9", 5432, "unknown-address", None),
            deny("quic.test", 443, "udp", None),
        ]);
        let flags: Vec<_> = found.iter().map(|d| d.allow_flag.as_deref()).collect();
        assert_eq!(
            flags,
            [
                Some("--allow-host api.example.com"),
                Some("--allow-host 192.0.2.7:80"),
                Some("--allow-host '[2001:db8::1]:443'"),
                Some("--allow-private 10.0.0.1/32"),
                None,
                Some("--allow-host github.com:22"),
                Some("--allow-host 198.51.100.9:5432"),
                None,
            ]
        );
        assert!(found[7].hint.as_deref().is_some_and(|h| h.contains("DNS")));
        assert_eq!(found[0].count, 2);
        assert_eq!(found[0].allow_config.as_deref(), Some("[network] allow = [\"api.example.com\"]"));
        assert!(found[4].hint.is_some());
    }

    #[test]
    fn limits_and_review_findings() {
        let found = denials(&[
            event(EventBody::LimitHit { limit: "memory".into(), value: "64M".into(), detail: "oom".into() }),
            event(EventBody::LimitHit { limit: "pids".into(), value: "32".into(), detail: "fork".into() }),
            event(EventBody::PolicyDeny { rule: "git".into(), detail: "/w/.git/hooks/pre-commit: moved aside".into() }),
            event(EventBody::ProcExec {
                pid: 1,
                ppid: 0,
                ns_pid: None,
                chain: vec![],
                path: None,
                argv: vec![],
                cwd: String::new(),
                rule: None,
                decision: Some("allow".into()),
                time: None,
            }),
            event(EventBody::ProcExec {
                pid: 2,
                ppid: 1,
                ns_pid: Some(3),
                chain: vec![1, 3],
                path: Some("/usr/bin/git".into()),
                argv: vec!["git".into(), "push".into()],
                cwd: "/w".into(),
                rule: Some("git push (--exec-preset guardrails)".into()),
                decision: Some("deny".into()),
                time: None,
            }),
            event(EventBody::PolicyDeny { rule: "exec".into(), detail: "exec of `git push` denied by ...".into() }),
        ]);
        assert_eq!(found.len(), 4);
        assert_eq!(found[3].program.as_deref(), Some("git push"));
        assert!(found[3].hint.as_deref().is_some_and(|h| h.contains("guardrails")));
        assert_eq!(found[0].allow_flag.as_deref(), Some("--memory 128M"));
        assert_eq!(found[1].allow_config.as_deref(), Some("[limits] pids = 64"));
        assert_eq!(found[2].path.as_deref(), Some("/w/.git/hooks/pre-commit"));
        assert_eq!(found[2].allow_flag, None);
    }
}
