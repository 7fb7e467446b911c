//! The TOML policy file: ~/.config/ringfence/config.toml and .ringfence.toml.

use crate::caches::CacheTool;
use crate::error::PolicyError;
use crate::exec::{ExecDecision, ExecPreset};
use crate::modes::{NetworkMode, ProfileName};
use crate::presets::Preset;
use crate::units::{ByteSize, HumanDuration, MemoryLimit};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A ringfence policy file.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ringfence policy file")]
pub struct ConfigFile {
    /// Built-in profile to start from: "workspace" (default), "read-only" or "strict".
    #[schemars(with = "Option<ProfileName>")]
    pub profile: Option<Spanned<ProfileName>>,
    #[serde(default)]
    pub filesystem: Filesystem,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub process: Process,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub exec: ExecSection,
    /// User config only: projects whose .ringfence.toml may widen the policy, not just narrow it.
    #[schemars(with = "Option<Vec<String>>")]
    pub trusted_projects: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Filesystem rules. Paths may start with `~`; relative paths are relative to the file's folder.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// Readable paths; inside a denied region this re-allows reading.
    #[schemars(with = "Option<Vec<String>>")]
    pub read: Option<Spanned<Vec<Spanned<String>>>>,
    /// Extra writable roots.
    #[schemars(with = "Option<Vec<String>>")]
    pub write: Option<Spanned<Vec<Spanned<String>>>>,
    /// Paths hidden from the sandbox, whether or not they exist yet.
    #[schemars(with = "Option<Vec<String>>")]
    pub deny_read: Option<Spanned<Vec<Spanned<String>>>>,
    /// Paths kept read-only inside writable roots, whether or not they exist yet.
    #[schemars(with = "Option<Vec<String>>")]
    pub deny_write: Option<Spanned<Vec<Spanned<String>>>>,
    /// Tools whose caches the command may add to, as an overlay: it sees the host's cache, and
    /// what it adds or changes is kept in ringfence's own per-workspace layer, never in the
    /// host's cache.
    #[schemars(with = "Option<Vec<CacheTool>>")]
    pub caches: Option<Spanned<Vec<Spanned<CacheTool>>>>,
}

/// Environment of the sandboxed command.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Names or globs (`AWS_*`) to pass through; secret-looking names need their exact name.
    #[schemars(with = "Option<Vec<String>>")]
    pub keep: Option<Spanned<Vec<Spanned<String>>>>,
    /// Variables to set inside the sandbox.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub set: Option<Spanned<BTreeMap<String, String>>>,
}

/// Resource limits.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Wall-clock limit for the whole run.
    #[schemars(with = "Option<HumanDuration>")]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Memory limit for all processes together, or "none". Default: half of physical memory
    /// where a cgroup can carry it.
    #[schemars(with = "Option<MemoryLimit>")]
    pub memory: Option<Spanned<MemoryLimit>>,
    /// Most processes and threads at once.
    #[schemars(with = "Option<u64>")]
    pub pids: Option<Spanned<u64>>,
    /// CPU share, in cores (may be fractional).
    #[schemars(with = "Option<f64>")]
    pub cpus: Option<Spanned<f64>>,
    /// Size cap of the private /tmp.
    #[schemars(with = "Option<ByteSize>")]
    pub tmp_size: Option<Spanned<ByteSize>>,
}

/// Process rules.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// Allow ptrace and process_vm_* between processes inside the sandbox (for debuggers).
    #[schemars(with = "Option<bool>")]
    pub allow_ptrace: Option<Spanned<bool>>,
}

/// Network access.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// "none" (default): loopback only. "allow": only the allowed hosts, through ringfence's
    /// gateway (implied by `allow` or `presets`). "host": the host's network, unfiltered.
    #[schemars(with = "Option<NetworkMode>")]
    pub mode: Option<Spanned<NetworkMode>>,
    /// Host patterns the `allow` mode lets through: `example.com`, `*.example.com` (names
    /// strictly below example.com), `example.com:443`, `192.0.2.7`, `[2001:db8::1]:443`,
    /// `10.1.0.0/16:5432`. Without a port, ports 80 and 443.
    #[schemars(with = "Option<Vec<String>>")]
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Host patterns always refused; a deny rule beats any allow rule. Without a port, every
    /// port.
    #[schemars(with = "Option<Vec<String>>")]
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// Built-in allow lists, each a documented set of hosts on port 443.
    #[schemars(with = "Option<Vec<Preset>>")]
    pub presets: Option<Spanned<Vec<Spanned<Preset>>>>,
    /// Private ranges the gateway may dial (within 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
    /// 100.64.0.0/10 or fc00::/7), like "10.0.0.0/8"; all others stay refused.
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_private: Option<Spanned<Vec<Spanned<String>>>>,
    /// DNS server the gateway asks, by address: "192.0.2.53", "192.0.2.53:5353" or
    /// "[2001:db8::53]:53" (port 53 by default). Without it, the system resolver.
    #[schemars(with = "Option<String>")]
    pub resolver: Option<Spanned<String>>,
}

/// Exec monitoring and exec rules.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    /// Every exec in the sandbox traps to ringfence, which checks it against the rules and
    /// records it (default true). Off: only the top-level command is recorded, and exec rules
    /// refuse to start.
    #[schemars(with = "Option<bool>")]
    pub monitor: Option<Spanned<bool>>,
    /// Built-in rule sets, checked after this policy's own rules.
    #[schemars(with = "Option<Vec<ExecPreset>>")]
    pub presets: Option<Spanned<Vec<Spanned<ExecPreset>>>>,
    /// Rules, checked in order; the first that matches decides.
    #[schemars(with = "Option<Vec<ExecRuleEntry>>")]
    pub rule: Option<Vec<Spanned<ExecRuleEntry>>>,
}

/// One exec rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRuleEntry {
    /// A program's name (`git`), an absolute path (`/usr/bin/git`), or a glob of either.
    pub program: String,
    /// Argument patterns: operands matched in order from the first (`push`), `a|b`
    /// alternatives, `*` and `?` globs, `**` for any number of operands, and options that must
    /// be present anywhere (`-r|--recursive`). Paths (`/`, `~/*`) are compared made absolute.
    #[serde(default)]
    pub args: Vec<String>,
    pub decision: ExecDecision,
    /// One line the command is told when the rule denies it, and the record keeps.
    pub reason: Option<String>,
}

/// A config file that was read, with its text kept for error positions.
#[derive(Debug)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub text: String,
    pub config: ConfigFile,
}

impl LoadedConfig {
    /// Parses `text` as the config file at `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, PolicyError> {
        let config = toml::from_str::<ConfigFile>(&text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let (message, help) = explain_toml_error(e.message());
            let err = PolicyError::new(message);
            let err = match help {
                Some(h) => err.with_help(h),
                None => err,
            };
            err.at(path, &text, offset)
        })?;
        Ok(LoadedConfig { path: path.to_path_buf(), text, config })
    }

    /// An error located at `span` in this file.
    pub fn error_at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> PolicyError {
        PolicyError::new(message).at(&self.path, &self.text, Some(span.start))
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        crate::error::line_col(&self.text, offset).0
    }
}

/// Turns serde's wording into ours and suggests the closest known key.
fn explain_toml_error(raw: &str) -> (String, Option<String>) {
    let raw = raw.trim().to_string();
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (name, rest) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let best = expected.iter().min_by_key(|k| edit_distance(name, k)).copied();
        let help = match best {
            Some(k) if edit_distance(name, k) <= 3 => format!("did you mean `{k}`?"),
            _ => format!("known keys here: {}", expected.join(", ")),
        };
        return (format!("unknown key `{name}`"), Some(help));
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (name, rest) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        return (format!("unknown value `{name}`"), Some(format!("use one of: {}", expected.join(", "))));
    }
    if raw.starts_with("invalid type") {
        return (raw.clone(), Some(type_hint(&raw)));
    }
    (raw, None)
}

fn type_hint(raw: &str) -> String {
    if raw.contains("expected a sequence") {
        "write a list, for example `write = [\"~/build\"]`".into()
    } else if raw.contains("expected a boolean") {
        "write `true` or `false`".into()
    } else if raw.contains("expected u64") || raw.contains("expected f64") {
        "write a plain number, for example `pids = 512`".into()
    } else {
        "check the value's type against docs/policy.md".into()
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The JSON Schema of the policy file.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ConfigFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
