//! The macOS backend's part of `ringfence explain`: each rule as Seatbelt matches it, and the
//! layers behind processes and limits. Platform-neutral, so it is tested everywhere.

use crate::profile::{compile, Compiled, Net, Request};
use crate::report::WATCH_INTERVAL_MS;
use ringfence_backend::explain::{self, Line, Section};
use ringfence_backend::{Explanation, LaunchError};
use ringfence_policy::{FsAccess, NetworkMode, Policy, RuleKind};
use std::collections::BTreeSet;
use std::path::Path;

/// Everything `explain` says about `policy` on macOS (`root`: RLIMIT_NPROC does not apply);
/// an error where Seatbelt's profile for it could not be compiled.
pub fn explain(policy: &Policy, root: bool) -> Result<Explanation, LaunchError> {
    // A stand-in for the run's temporary folder, made per run.
    let tmp = std::env::temp_dir().join("ringfence-RUN");
    let net = match policy.network {
        NetworkMode::None => Net::None,
        NetworkMode::Allow => Net::Gateway { http: 0, socks: 0 },
        NetworkMode::Host => Net::Host,
    };
    let request = Request { policy, tmp: &tmp, net, terminal: None };
    let compiled = compile(&request, &crate::resolve::host()).map_err(|e| LaunchError::policy(e.message, e.remedy))?;
    let mut footer = Vec::new();
    if policy.allow_degraded {
        footer.push("--allow-degraded: protections this machine lacks are skipped (see `ringfence check`)".into());
    }
    let none =
        Line::fact("none", &["seatbelt: no network-outbound rule; Unix sockets only in the run's TMPDIR; no loopback"]);
    let allow = "gateway in the supervisor on two free loopback ports chosen per run; Seatbelt lets the command \
                 connect to those two ports only; nothing else on the host's loopback";
    Ok(Explanation {
        header: explain::header(policy),
        sections: vec![
            files(policy, &compiled),
            explain::environment(policy, "PWD, TMPDIR=(the run's private folder), RINGFENCE=1"),
            explain::network(policy, none, allow, Vec::new()),
            processes(policy),
            ringfence_backend::explain::exec_rules_unenforced(policy),
            limits(policy, root),
        ],
        footer,
    })
}

/// Each rule path as Seatbelt matches it, what it gets and the rule that decides.
pub fn files(policy: &Policy, compiled: &Compiled) -> Section {
    let mut section =
        Section::new("Filesystem (the most specific rule wins; paths as Seatbelt matches them, links resolved)");
    let rules = &compiled.rules;
    let paths: BTreeSet<&Path> = rules.rules.iter().map(|r| r.path.as_path()).collect();
    for path in paths {
        let d = rules.access(path);
        let rule = match d.access {
            FsAccess::Write => d.write_rule,
            FsAccess::Read => d.write_rule.filter(|r| r.kind == RuleKind::DenyWrite).or(d.read_rule),
            FsAccess::Deny => d.read_rule,
        };
        let how = match (d.access, rule.map(|r| r.kind)) {
            (FsAccess::Deny, _) => {
                "seatbelt: taken out of the readable region in any letter case, also if created later"
            }
            (FsAccess::Read, Some(RuleKind::DenyWrite)) => {
                "seatbelt: taken out of the writable region, also while absent: no placeholder"
            }
            (FsAccess::Read, _) => "seatbelt: file-read*, process-exec",
            (FsAccess::Write, _) => "seatbelt: file-write*; the root itself can't be renamed or removed",
        };
        section.push(Line::Path {
            path: path.display().to_string(),
            verdict: explain::access_name(d.access).into(),
            layers: vec![how.into()],
            origin: Some(rule.map(|r| r.origin.to_string()).unwrap_or_else(|| "built-in".into())),
        });
    }
    let pins = &compiled.regions.pins;
    if !pins.is_empty() {
        let list: Vec<String> = pins.iter().map(|p| p.display().to_string()).collect();
        section.push(Line::text(format!(
            "pinned (can't be renamed, removed or created, so the paths inside stay protected): {}",
            list.join(", ")
        )));
    }
    section
        .push(Line::fact(format!("{:<44} null, zero, random, urandom, fd, ptmx, own terminal", "/dev"), &["seatbelt"]));
    section.push(Line::fact(
        format!("{:<44} refused everywhere", "hard links, clones and set-id bits"),
        &["seatbelt: never allowed"],
    ));
    section.push(explain::workspace_line(policy));
    section
}

fn processes(policy: &Policy) -> Section {
    let mut section = Section::new("Processes");
    section.push(Line::fact(
        "signals and process information only within the sandbox",
        &["seatbelt: target same-sandbox"],
    ));
    section.push(Line::fact(
        "own session and process group, no controlling terminal but its own",
        &["setsid before exec"],
    ));
    section.push(Line::fact(
        "the group is killed when the command ends; escapees (setsid) tracked by polling",
        &["supervisor"],
    ));
    section.push(Line::fact(
        "keychain, pasteboard, Apple Events, Launch Services, launchd jobs, DNS: refused",
        &["seatbelt: mach-lookup list"],
    ));
    section
        .push(Line::fact("hard links, set-id bits, kernel extensions, other users' processes: refused", &["seatbelt"]));
    section.push(if policy.allow_ptrace {
        Line::text("task ports of the sandbox's own processes: allowed (--allow-ptrace)")
    } else {
        Line::fact("task ports of the sandbox's own processes: refused", &["seatbelt"])
    });
    section
}

fn limits(policy: &Policy, root: bool) -> Section {
    let mut section = Section::new("Limits");
    let l = &policy.limits;
    let pids_how = if root {
        "supervisor: count of the process tree (RLIMIT_NPROC does not apply to root)"
    } else {
        "RLIMIT_NPROC, per user: the user's other processes count too; supervisor: count of the tree"
    };
    let memory_how = format!("supervisor: sum of the tree's resident memory every {WATCH_INTERVAL_MS} ms");
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    section.push(Line::text(format!("pids: {}  [{pids_how}]", or_none(l.pids.map(|p| p.to_string())))));
    section.push(Line::text(format!("memory: {}", or_none(l.memory.map(|m| format!("{m}  [{memory_how}]"))))));
    section.push(Line::text(format!(
        "cpus: {}",
        or_none(l.cpus.map(|c| format!("{c}  [NOT ENFORCED: macOS can't cap it]")))
    )));
    section.push(Line::fact(format!("timeout: {}", or_none(l.timeout.map(|t| t.to_string()))), &["supervisor"]));
    section.push(Line::text(format!(
        "/tmp size: {}  NOT ENFORCED on macOS: TMPDIR is a folder on the host's disk",
        l.tmp_size
    )));
    section
}
