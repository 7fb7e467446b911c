//! What `ringfence explain` prints: the effective policy and, for each rule, the layers that
//! enforce it on this machine. Backends build it (with the portable parts below); the CLI only
//! renders it.

use ringfence_policy::env::{EnvVerdict, DEFAULT_KEEP};
use ringfence_policy::{FsAccess, NetworkMode, Policy};

/// One line of a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A path and what the sandbox sees there: `  PATH  VERDICT  [LAYERS]`, then the rule's
    /// origin on a line of its own.
    Path { path: String, verdict: String, layers: Vec<String>, origin: Option<String> },
    /// A statement and the layers that enforce it: `  TEXT  [LAYERS]`.
    Fact { text: String, layers: Vec<String> },
    /// Text as it is, indented like the other lines.
    Text(String),
}

impl Line {
    pub fn fact(text: impl Into<String>, layers: &[&str]) -> Self {
        Line::Fact { text: text.into(), layers: layers.iter().map(|l| l.to_string()).collect() }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Line::Text(text.into())
    }

    /// The line as printed, ending in a newline.
    pub fn render(&self) -> String {
        let layers = |l: &[String]| if l.is_empty() { String::new() } else { format!("  [{}]", l.join(", ")) };
        match self {
            Line::Path { path, verdict, layers: l, origin } => {
                let from = origin.as_ref().map(|o| format!("\n      from {o}")).unwrap_or_default();
                format!("  {path:<44} {verdict}{}{from}\n", layers(l))
            }
            Line::Fact { text, layers: l } => format!("  {text}{}\n", layers(l)),
            Line::Text(text) => format!("  {text}\n"),
        }
    }
}

/// A titled group of lines (`Filesystem`, `Network`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub lines: Vec<Line>,
}

impl Section {
    pub fn new(title: impl Into<String>) -> Self {
        Section { title: title.into(), lines: Vec::new() }
    }

    pub fn push(&mut self, line: Line) {
        self.lines.push(line);
    }

    pub fn render(&self) -> String {
        let mut out = format!("{}:\n", self.title);
        for line in &self.lines {
            out.push_str(&line.render());
        }
        out
    }
}

/// Everything `ringfence explain` says about one policy on this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explanation {
    /// Lines before the sections (the profile, the config files).
    pub header: Vec<String>,
    pub sections: Vec<Section>,
    /// Lines after the sections.
    pub footer: Vec<String>,
}

impl Explanation {
    /// The whole text, sections separated by empty lines.
    pub fn render(&self) -> String {
        let mut out: String = self.header.iter().map(|l| format!("{l}\n")).collect();
        let sections: Vec<String> = self.sections.iter().map(Section::render).collect();
        out.push('\n');
        out.push_str(&sections.join("\n"));
        for line in &self.footer {
            out.push('\n');
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// How an access is named in `explain`.
pub fn access_name(a: FsAccess) -> &'static str {
    match a {
        FsAccess::Deny => "hidden",
        FsAccess::Read => "read-only",
        FsAccess::Write => "writable",
    }
}

/// The profile, the workspace and the config files that shaped `policy`.
pub fn header(policy: &Policy) -> Vec<String> {
    let files = if policy.sources.is_empty() {
        "none".to_string()
    } else {
        policy.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    };
    vec![
        format!("Profile: {}    Workspace: {}", policy.profile_label(), policy.workspace.display()),
        format!("Config files: {files}"),
    ]
}

/// The last line of every backend's filesystem section.
pub fn workspace_line(policy: &Policy) -> Line {
    Line::text(format!("workspace is {}", access_name(policy.fs.access(&policy.workspace).access)))
}

/// What reaches the command's environment: the policy's rules applied to this process's
/// variables. `set_by_backend` names what the backend itself sets (TMPDIR, ...).
pub fn environment(policy: &Policy, set_by_backend: &str) -> Section {
    let mut section = Section::new("Environment [scrubbed before exec]");
    let mut kept = DEFAULT_KEEP.join(", ");
    if !policy.env.keep.is_empty() {
        kept.push_str(&format!(", {}", policy.env.keep.join(", ")));
    }
    section.push(Line::text(format!("passed through: {kept}")));
    let (mut secret, mut other) = (Vec::new(), Vec::new());
    for (k, _) in std::env::vars_os() {
        let Ok(k) = k.into_string() else { continue };
        match policy.env.verdict(&k) {
            EnvVerdict::DroppedSecret => secret.push(k),
            EnvVerdict::DroppedNotAllowed => other.push(k),
            _ => {}
        }
    }
    secret.sort();
    let secret = if secret.is_empty() { "none".into() } else { secret.join(", ") };
    section.push(Line::text(format!("dropped as secret-looking: {secret}")));
    section.push(Line::text(format!("dropped, not allowed: {} variable(s)", other.len())));
    for (k, v) in &policy.env.set {
        section.push(Line::text(format!("set: {k}={v}")));
    }
    section.push(Line::text(format!("set by ringfence: {set_by_backend}")));
    section
}

/// The network section's portable part: the mode, and in `allow` mode every rule with where it
/// came from. `none` and `allow` name the layers the backend enforces them with; `extra` are
/// the backend's own lines (Unix sockets, say).
pub fn network(policy: &Policy, none: Line, allow_layer: &str, extra: Vec<Line>) -> Section {
    let mut section = Section::new("Network");
    match policy.network {
        NetworkMode::None => section.push(none),
        NetworkMode::Host => {
            section.push(Line::fact("host: the host's network, UNFILTERED (danger)", &["no isolation"]))
        }
        NetworkMode::Allow => {
            section.push(Line::text("allow: only the hosts allowed below; every attempt is checked and recorded"));
            section.push(Line::text(format!("  [{allow_layer}]")));
            section.lines.extend(allow_rules(policy));
        }
    }
    section.lines.extend(extra);
    section
}

/// The allow mode's rules, presets, denials, private ranges and resolver.
fn allow_rules(policy: &Policy) -> Vec<Line> {
    let net = &policy.net;
    let mut lines = vec![Line::text("allowed:")];
    let own: Vec<_> = net.allow.iter().filter(|r| net.preset_of(r).is_none()).collect();
    if own.is_empty() && net.presets.is_empty() {
        lines.push(Line::text("  nothing: every connection is refused"));
    }
    for rule in own {
        lines.push(Line::text(format!("  {:<42} from {}", rule.pattern.to_string(), rule.origin)));
    }
    for (preset, origin) in &net.presets {
        lines.push(Line::text(format!("  {:<42} from {origin}", format!("preset {preset}"))));
        lines.push(Line::text(format!("    {}", preset.hosts().join(", "))));
    }
    if !net.deny.is_empty() {
        lines.push(Line::text("denied (beats any allow rule):"));
        for rule in &net.deny {
            lines.push(Line::text(format!("  {:<42} from {}", rule.pattern.to_string(), rule.origin)));
        }
    }
    lines.push(Line::text("IP addresses: only those listed by address"));
    if net.allow_private.is_empty() {
        lines.push(Line::text("private ranges: none (RFC 1918, ULA and CGNAT addresses are refused)"));
    } else {
        lines.push(Line::text("private ranges the gateway may dial:"));
        for (range, origin) in &net.allow_private {
            lines.push(Line::text(format!("  {:<42} from {origin}", range.to_string())));
        }
    }
    lines.push(Line::text(
        "always refused: loopback, link-local, cloud metadata, this host's addresses, unspecified, multicast",
    ));
    lines.push(match &net.resolver {
        Some((addr, origin)) => Line::fact(format!("resolver: {addr}  from {origin}"), &["gateway only"]),
        None => Line::fact("resolver: system resolver", &["gateway only"]),
    });
    lines
}

/// The exec rules, in the order they are checked, each with the layers `layers` says enforce
/// it (none on a backend without an exec monitor, which `unenforced` then explains).
pub fn exec_rules(
    policy: &Policy,
    layers: &dyn Fn(&ringfence_policy::ExecRule) -> Vec<String>,
    unenforced: Option<&str>,
) -> Section {
    let mut section = Section::new("Exec rules (checked in order; the first match decides)");
    let exec = &policy.exec;
    if let Some(why) = unenforced {
        section.push(Line::text(why));
    } else if !exec.monitor {
        section.push(Line::text("exec monitor: off (--no-exec-monitor): only the top-level command is recorded"));
    } else {
        section.push(Line::fact("every exec is checked and recorded before it runs", &["seccomp user notification"]));
    }
    for rule in &exec.rules {
        let verdict = match &rule.reason {
            Some(reason) => format!("{}: {reason}", rule.decision),
            None => rule.decision.to_string(),
        };
        let path = rule.pattern();
        section.push(Line::Path { path, verdict, layers: layers(rule), origin: Some(rule.origin.to_string()) });
    }
    if exec.rules.is_empty() {
        section.push(Line::text("no exec rules (add some with --deny-exec, or `[exec] presets = [\"guardrails\"]`)"));
    }
    section
}

/// The exec section of a backend that has no exec monitor.
pub fn exec_rules_unenforced(policy: &Policy) -> Section {
    let why = "this platform has no exec monitor: exec rules are not enforced (a policy with exec rules is refused \
               unless --allow-degraded), and only the top-level command is recorded";
    exec_rules(policy, &|_| Vec::new(), Some(why))
}
