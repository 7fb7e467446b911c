//! The policy compiled to a Seatbelt profile. Platform-neutral: it runs and is tested on any
//! host; only applying the result needs macOS.
//!
//! The profile denies by default. Files: one `allow` per access for the regions of the tree
//! that have it ([`crate::regions`]), so no rule depends on the order of another; the only
//! `deny` (last, taking away) keeps each writable root from being renamed or removed. Network:
//! nothing, or only the gateway's two loopback ports, or everything with `--network host`.
//! Processes: fork and exec, signals and process information only within this sandbox, a
//! short list of system services ([`crate::services`]).

use crate::platform;
use crate::regions::{self, Region, Regions};
use crate::resolve::{self, Resolver};
use crate::sbpl::{self, Params, Profile};
use crate::services;
use ringfence_policy::{is_within, FsAccess, FsRules, Policy, ProfileName, RuleKind};
use std::path::{Path, PathBuf};

/// Network access compiled into the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// No network: no socket may reach anything outside the run's temporary folder.
    None,
    /// Only the gateway's HTTP and SOCKS5 proxies on these loopback ports.
    Gateway { http: u16, socks: u16 },
    /// The host's network, unfiltered (`--network host`).
    Host,
}

/// What one run's profile is made from.
pub struct Request<'a> {
    pub policy: &'a Policy,
    /// The run's private temporary folder (TMPDIR).
    pub tmp: &'a Path,
    pub net: Net,
    /// The terminal the command gets, when it gets one (the pseudo-terminal's device).
    pub terminal: Option<&'a Path>,
}

/// A compiled profile, with the rules and regions it enforces (for `explain` and tests).
#[derive(Clone, Debug)]
pub struct Compiled {
    pub profile: Profile,
    /// The policy's rules with macOS's additions, every path resolved as Seatbelt sees it.
    pub rules: FsRules,
    pub regions: Regions,
}

/// A policy the profile can't express as asked, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    pub remedy: String,
}

impl From<(String, String)> for CompileError {
    fn from((message, remedy): (String, String)) -> Self {
        CompileError { message, remedy }
    }
}

/// Compiles `request`, resolving links with `resolver`.
pub fn compile<F: Fn(&Path) -> Option<PathBuf>>(
    request: &Request,
    resolver: &Resolver<F>,
) -> Result<Compiled, CompileError> {
    let policy = request.policy;
    let tmp = resolver.resolve(request.tmp).target;
    let rules = resolve_rules(&platform::effective_rules(policy, &tmp)?, resolver);
    let home = resolver.resolve(&policy.home).target;
    check_home(&rules, &home, policy.allow_writable_home)?;
    let regions = regions::regions(&rules);
    let mut w = Writer::default();
    w.header(policy);
    w.processes(policy.allow_ptrace);
    w.files(&regions);
    w.devices(request.terminal);
    w.services(request.net);
    w.sockets(&tmp, request.net);
    w.keep_roots(&regions);
    Ok(Compiled { profile: Profile { text: w.text, params: w.params.into_list() }, rules, regions })
}

/// The rules with every path as Seatbelt matches it. A rule that takes access away covers both
/// the link itself and where it leads; a rule that grants access grants only where it leads
/// (granting writes to the link itself would let the command re-point it).
fn resolve_rules<F: Fn(&Path) -> Option<PathBuf>>(rules: &FsRules, resolver: &Resolver<F>) -> FsRules {
    let mut out = FsRules::default();
    for rule in &rules.rules {
        let resolved = resolver.resolve(&rule.path);
        if rule.kind != RuleKind::Write && resolved.at != resolved.target {
            out.push(rule.kind, resolved.at, rule.origin.clone());
        }
        out.push(rule.kind, resolved.target, rule.origin.clone());
    }
    out
}

/// The policy refuses a writable $HOME without `--allow-writable-home`; once links are
/// resolved a write rule may turn out to cover it after all.
fn check_home(rules: &FsRules, home: &Path, allowed: bool) -> Result<(), CompileError> {
    if allowed || home == Path::new("/") || rules.access(home).access != FsAccess::Write {
        return Ok(());
    }
    let by = rules.of_kind(RuleKind::Write).filter(|r| is_within(home, &r.path)).last();
    Err(CompileError {
        message: format!(
            "{} would make your home folder {} writable (after resolving links)",
            by.map(|r| format!("{}: {}", r.origin, r.path.display())).unwrap_or_else(|| "a write rule".into()),
            home.display()
        ),
        remedy: "name only the folders the command needs, or pass --allow-writable-home".into(),
    })
}

#[derive(Default)]
struct Writer {
    text: String,
    params: Params,
}

/// A fixed string as an SBPL literal (the names in this crate are printable ASCII).
fn lit(s: &str) -> String {
    sbpl::quote(s).unwrap_or_else(|e| unreachable!("{e}"))
}

impl Writer {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// `(action ops filter…)`, one filter a line; nothing at all without filters (a rule
    /// without a filter would match every path).
    fn rule(&mut self, action: &str, ops: &str, filters: &[String]) {
        if filters.is_empty() {
            return;
        }
        self.line(&format!("({action} {ops}"));
        let last = filters.len() - 1;
        for (i, f) in filters.iter().enumerate() {
            self.line(&format!("  {f}{}", if i == last { ")" } else { "" }));
        }
    }

    fn header(&mut self, policy: &Policy) {
        self.line("(version 1)");
        self.line(&format!(
            ";; ringfence: the {} profile for Seatbelt. Paths are parameters (P*, R*), never text.",
            match policy.profile {
                ProfileName::Workspace => "workspace",
                ProfileName::ReadOnly => "read-only",
                ProfileName::Strict => "strict",
            }
        ));
        self.line("(deny default)");
    }

    fn processes(&mut self, allow_ptrace: bool) {
        self.line("\n;; processes: fork and exec; signals and process information only within this sandbox");
        self.line("(allow process-fork)");
        self.line("(allow signal (target same-sandbox))");
        self.line("(allow process-info* (target same-sandbox))");
        if allow_ptrace {
            self.line("(allow mach-priv-task-port (target same-sandbox))");
        }
    }

    /// A region as one filter: the root's subtree minus each exception's, in any letter case.
    fn region(&mut self, region: &Region, pins: &[PathBuf]) -> String {
        let root = self.params.path(&region.root);
        let mut parts = vec![format!("(subpath {root})")];
        // A path below a firmlink has a second spelling below /System/Volumes/Data; a region
        // that holds that spelling too (only `/` does) must leave out both.
        let twins =
            region.except.iter().filter_map(|e| resolve::firmlink_twin(e)).filter(|t| is_within(t, &region.root));
        let excepts: Vec<PathBuf> = region.except.iter().cloned().chain(twins).collect();
        for except in &excepts {
            let p = self.params.path(except);
            parts.push(format!("(require-not (literal {p}))"));
            parts.push(format!("(require-not (subpath {p}))"));
            if sbpl::has_letters(except) {
                let r = self.params.regex(sbpl::any_case(except, true));
                parts.push(format!("(require-not (regex {r}))"));
            }
        }
        for pin in pins.iter().filter(|p| is_within(p, &region.root) && **p != region.root) {
            let p = self.params.path(pin);
            parts.push(format!("(require-not (literal {p}))"));
            if sbpl::has_letters(pin) {
                let r = self.params.regex(sbpl::any_case(pin, false));
                parts.push(format!("(require-not (regex {r}))"));
            }
        }
        if parts.len() == 1 {
            return parts.remove(0);
        }
        format!("(require-all {})", parts.join("\n    "))
    }

    fn files(&mut self, regions: &Regions) {
        self.line("\n;; files: read, map and execute the readable regions");
        let read: Vec<String> = regions.read.iter().map(|r| self.region(r, &[])).collect();
        self.rule("allow", "file-read* file-map-executable process-exec", &read);
        let traverse: Vec<String> =
            regions.traverse.iter().map(|p| format!("(literal {})", self.params.path(p))).collect();
        if !traverse.is_empty() {
            self.line(";; the folders above them: metadata only, for realpath(3) and getcwd(3)");
        }
        self.rule("allow", "file-read-metadata", &traverse);
        self.line("\n;; files: write the writable regions; the folders on the way to a protected path stay");
        self.line(";; (pinned), and hard links, clones and set-id bits are never allowed");
        let write: Vec<String> = regions.write.iter().map(|r| self.region(r, &regions.pins)).collect();
        self.rule("allow", "file-write*", &write);
    }

    fn devices(&mut self, terminal: Option<&Path>) {
        self.line("\n;; devices: a fixed set; the rest of /dev (disks, other terminals) is hidden");
        self.line(&format!("(allow file-read-metadata (literal {}) (literal {}))", lit("/dev"), lit("/dev/fd")));
        let null = [lit("/dev/null"), lit("/dev/zero")].map(|p| format!("(literal {p})"));
        self.rule("allow", "file-read* file-write-data file-ioctl", &null);
        let random = [lit("/dev/random"), lit("/dev/urandom")].map(|p| format!("(literal {p})"));
        self.rule("allow", "file-read*", &random);
        let fds = ["/dev/stdin", "/dev/stdout", "/dev/stderr"].map(|p| format!("(literal {})", lit(p)));
        let mut fds = fds.to_vec();
        fds.push("(regex #\"^/dev/fd/[0-9]+$\")".into());
        self.rule("allow", "file-read* file-write-data", &fds);
        self.line(";; pseudo-terminals the command opens itself");
        self.line("(allow pseudo-tty)");
        self.line(&format!("(allow file-read* file-write* file-ioctl (literal {}))", lit("/dev/ptmx")));
        self.line("(allow file-read* file-write* file-ioctl");
        self.line("  (require-all (regex #\"^/dev/ttys[0-9]+$\") (extension \"com.apple.sandbox.pty\")))");
        if let Some(tty) = terminal {
            self.line(";; the run's own terminal");
            let p = self.params.path(tty);
            self.line(&format!(
                "(allow file-read* file-write* file-ioctl (literal {p}) (literal {}))",
                lit("/dev/tty")
            ));
        }
    }

    fn services(&mut self, net: Net) {
        self.line("\n;; system services: see services.rs for why each one");
        let mut names: Vec<&(&str, &str)> = services::MACH_SERVICES.iter().collect();
        if net == Net::Host {
            names.extend(services::HOST_NETWORK_SERVICES);
        }
        let lookups: Vec<String> = names.iter().map(|(name, _)| format!("(global-name {})", lit(name))).collect();
        self.rule("allow", "mach-lookup", &lookups);
        let mut sysctls: Vec<String> = services::SYSCTLS.iter().map(|n| format!("(sysctl-name {})", lit(n))).collect();
        sysctls.extend(services::SYSCTL_PREFIXES.iter().map(|n| format!("(sysctl-name-prefix {})", lit(n))));
        self.rule("allow", "sysctl-read", &sysctls);
        let writes: Vec<String> = services::SYSCTL_WRITES.iter().map(|n| format!("(sysctl-name {})", lit(n))).collect();
        self.rule("allow", "sysctl-write", &writes);
        self.line(";; POSIX semaphores (Python's multiprocessing locks)");
        self.line("(allow ipc-posix-sem)");
    }

    fn sockets(&mut self, tmp: &Path, net: Net) {
        self.line("\n;; Unix sockets: only in the run's own temporary folder");
        self.line("(allow system-socket (socket-domain AF_UNIX))");
        let t = self.params.path(tmp);
        self.line(&format!("(allow network-bind (local unix-socket (subpath {t})))"));
        self.line(&format!("(allow network-outbound (remote unix-socket (subpath {t})))"));
        match net {
            Net::None => self.line("\n;; network: none"),
            Net::Gateway { http, socks } => {
                self.line("\n;; network: only the gateway's proxies on loopback (127.0.0.1 and ::1, TCP and UDP;");
                self.line(";; ringfence holds every one of these for the run)");
                self.line(&format!(
                    "(allow network-outbound (remote ip {}) (remote ip {}))",
                    lit(&format!("localhost:{http}")),
                    lit(&format!("localhost:{socks}"))
                ));
            }
            Net::Host => {
                self.line("\n;; network: the host's, unfiltered (--network host)");
                self.line("(allow network*)");
                self.line("(allow system-socket)");
            }
        }
    }

    /// Last, and only taking away: the roots of the writable regions can't be renamed or
    /// removed (moving the workspace aside would carry its protected paths out of their rules).
    fn keep_roots(&mut self, regions: &Regions) {
        self.line("\n;; the writable roots themselves stay where they are");
        let mut filters = Vec::new();
        for region in &regions.write {
            filters.push(format!("(literal {})", self.params.path(&region.root)));
            if sbpl::has_letters(&region.root) {
                filters.push(format!("(regex {})", self.params.regex(sbpl::any_case(&region.root, false))));
            }
        }
        self.rule("deny", "file-write-unlink file-write-create", &filters);
    }
}
