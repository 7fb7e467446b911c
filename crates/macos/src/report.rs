//! What a run on macOS enforces and what it does not, for run.start and `check`.
//! Platform-neutral, so the texts are tested everywhere.

use ringfence_audit::Layer;
use ringfence_policy::{NetworkMode, Policy};

/// How often the supervisor samples the process tree (memory, process count, escapees).
pub const WATCH_INTERVAL_MS: u64 = 100;

/// What one run enforces, and what it could not (only with `allow_degraded`).
#[derive(Clone, Debug, Default)]
pub struct Enforcement {
    pub enforced: Vec<Layer>,
    pub not_enforced: Vec<Layer>,
}

/// The layers of a run under `policy` with the gateway on `ports` in allow mode.
pub fn enforcement(policy: &Policy, ports: Option<(u16, u16)>, root: bool) -> Enforcement {
    let mut e = Enforcement::default();
    e.enforced.push(Layer::new(
        "seatbelt",
        "deny-by-default profile: reads outside hidden paths, writes only to the writable regions, \
         protected paths read-only even when absent, processes and services limited",
    ));
    match (policy.network, ports) {
        (NetworkMode::None, _) => e.enforced.push(Layer::new("network", "none: no socket may connect outside the run")),
        (NetworkMode::Allow, Some((http, socks))) => e.enforced.push(Layer::new(
            "network gateway",
            format!(
                "{} allow rules, {} deny rules; HTTP proxy 127.0.0.1:{http} and SOCKS5 127.0.0.1:{socks} served by \
                 the supervisor; Seatbelt lets the command connect to these two loopback ports only",
                policy.net.allow.len(),
                policy.net.deny.len()
            ),
        )),
        _ => {}
    }
    e.enforced.push(Layer::new("session", "own session and process group; no controlling terminal but its own"));
    let pids = policy.limits.pids.map(|n| {
        let mechanism = if root { "" } else { "RLIMIT_NPROC (counts all of the user's processes) and " };
        format!("pids {n}: {mechanism}the supervisor's count of the process tree")
    });
    let memory =
        policy.limits.memory.map(|m| format!("memory {m}: the supervisor's sum of the tree's resident memory"));
    let limits: Vec<String> = pids.into_iter().chain(memory).collect();
    if !limits.is_empty() {
        e.enforced.push(Layer::new("limits", format!("{} (sampled every {WATCH_INTERVAL_MS} ms)", limits.join("; "))));
    }
    if let Some(cpus) = policy.limits.cpus {
        e.not_enforced.push(Layer::new(
            "cpu limit",
            format!("cpus {cpus}: macOS offers no way to cap a process tree's share of the processors"),
        ));
    }
    e.not_enforced.extend(ringfence_backend::exec_rules_not_enforced(policy));
    e
}

/// The error when a run needs layers this machine can't give, as `(message, remedy)`.
pub fn refusal(e: &Enforcement, allow_degraded: bool) -> Option<(String, String)> {
    if e.not_enforced.is_empty() || allow_degraded {
        return None;
    }
    let what: Vec<String> = e.not_enforced.iter().map(|l| format!("{}: {}", l.name, l.detail)).collect();
    Some((
        format!("this machine can't enforce the requested policy ({})", what.join("; ")),
        "remove the setting, or pass --allow-degraded to run with less".into(),
    ))
}

/// One line of `ringfence check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckItem {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

/// What macOS enforces and what it does not. `seatbelt` is the result of applying a profile
/// in a child process.
pub fn check_items(seatbelt: &Result<(), String>) -> Vec<CheckItem> {
    let item = |name, available, detail: &str| CheckItem { name, available, detail: detail.to_string() };
    vec![
        match seatbelt {
            Ok(()) => item("seatbelt", true, "sandbox_init_with_parameters applies a generated profile"),
            Err(e) => CheckItem { name: "seatbelt", available: false, detail: e.clone() },
        },
        item("files", true, "secrets hidden, writes only to the workspace, TMPDIR and --write roots, protected paths read-only even when absent (Seatbelt path rules)"),
        item("network", true, "none, or only the gateway's two loopback ports (Seatbelt network rules); the gateway is the same as on Linux"),
        item("processes", true, "own session; signals and process information only within the sandbox; keychain, pasteboard, Apple Events, launchd jobs refused"),
        item("run lifetime", true, "the process group is killed at the end, escapees (setsid) are tracked by polling the process table; NOT if ringfence itself is SIGKILLed"),
        item("memory limit", true, "the supervisor sums the tree's resident memory and kills it above the limit (sampled, not a kernel cap)"),
        item("pids limit", true, "RLIMIT_NPROC counts all of the user's processes, not the sandbox's; the supervisor also counts the tree"),
        item("cpu limit", false, "no per-sandbox CPU cap on macOS: --cpus needs --allow-degraded"),
        item("private /tmp", false, "none: /tmp is the host's and read-only; TMPDIR points to a private folder, removed after the run, whose size is not capped"),
        item("own loopback", false, "none: the host's loopback is shared, so the command can't listen or connect there except to the gateway"),
        item("git review", false, "not on macOS: a run can't create .git at a writable root's top (git init), and .git/hooks and .git/config stay read-only"),
        item("exec monitor", false, "no proc.exec event for the programs the command starts, only for the command itself"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::{Overrides, PolicyBuilder};
    use std::path::Path;

    fn policy(flags: Overrides) -> Policy {
        PolicyBuilder::new(Path::new("/Users/u/proj"), Path::new("/Users/u")).overrides(flags).build().unwrap()
    }

    #[test]
    fn layers_name_the_gateway_ports_and_refuse_a_cpu_cap() {
        let p = policy(Overrides { allow_hosts: vec!["example.com".into()], ..Default::default() });
        let e = enforcement(&p, Some((61000, 61001)), false);
        let gateway = e.enforced.iter().find(|l| l.name == "network gateway").unwrap();
        assert!(gateway.detail.contains("127.0.0.1:61000") && gateway.detail.contains("127.0.0.1:61001"));
        assert!(e.enforced.iter().any(|l| l.name == "seatbelt"));
        assert!(refusal(&e, false).is_none());
        let p = policy(Overrides { cpus: Some(2.0), ..Default::default() });
        let e = enforcement(&p, None, false);
        let (message, remedy) = refusal(&e, false).expect("a cpu cap can't be enforced");
        assert!(message.contains("cpu limit") && remedy.contains("--allow-degraded"));
        assert!(refusal(&e, true).is_none());
    }

    #[test]
    fn limits_say_rlimit_nproc_is_per_user_except_for_root() {
        let p = policy(Overrides::default());
        let user = enforcement(&p, None, false);
        assert!(user.enforced.iter().any(|l| l.detail.contains("RLIMIT_NPROC (counts all of the user's processes)")));
        let root = enforcement(&p, None, true);
        assert!(!root.enforced.iter().any(|l| l.detail.contains("RLIMIT_NPROC")));
    }

    #[test]
    fn check_says_what_macos_lacks() {
        let items = check_items(&Ok(()));
        let missing: Vec<&str> = items.iter().filter(|i| !i.available).map(|i| i.name).collect();
        assert_eq!(missing, ["cpu limit", "private /tmp", "own loopback", "git review", "exec monitor"]);
        let refused = check_items(&Err("bad profile".into()));
        assert!(!refused[0].available && refused[0].detail == "bad profile");
    }
}
