//! ringfence's policy model: built-in profiles, config files and flags merged into one
//! [`Policy`]. Pure: no OS calls, so every platform backend compiles the same model.
//!
//! Precedence, lowest first: built-in profile, user config, project config (narrow-only unless
//! trusted), then flags.

#![forbid(unsafe_code)]
#![deny(clippy::too_many_lines)]

pub mod agents;
mod base_rules;
pub mod caches;
pub mod config;
pub mod env;
pub mod error;
pub mod exec;
pub mod model;
pub mod modes;
mod named;
pub mod network;
pub mod origin;
pub mod paths;
pub mod presets;
pub mod profile;
pub mod rules;
pub mod units;

pub use agents::{Agent, ProfileChoice};
pub use caches::{CacheDir, CacheTool};
pub use config::{ConfigFile, LoadedConfig};
pub use env::EnvRules;
pub use error::PolicyError;
pub use exec::{ExecCall, ExecDecision, ExecPreset, ExecRule, ExecRules, Program};
pub use model::*;
pub use modes::{NetworkMode, ProfileName};
pub use network::*;
pub use origin::{Builtin, Origin};
pub use paths::{expand_path, is_within, normalize};
pub use presets::Preset;
pub use rules::{FsAccess, FsDecision, FsRule, FsRules, Placeholder, Presence, RuleKind};
pub use units::{ByteSize, HumanDuration, MemoryLimit};

use std::path::{Path, PathBuf};
use toml::Spanned;

/// Processes and threads allowed at once when nothing else is said.
pub const DEFAULT_PIDS: u64 = 4096;
/// Size of the private /tmp when nothing else is said.
pub const DEFAULT_TMP_SIZE: ByteSize = ByteSize(1 << 30);

/// The memory cap when nothing else is said: half of physical memory (in whole MiB), as WSL2
/// gives its VM by default. Builds and test suites rarely need more, and a runaway allocation
/// is stopped while the other half still holds the user's desktop, editor and browser, before
/// the kernel's own OOM killer would pick a victim among them.
pub fn default_memory_cap(physical: ByteSize) -> ByteSize {
    const MIB: u64 = 1 << 20;
    ByteSize((physical.0 / 2 / MIB * MIB).max(MIB))
}

/// Settings from flags or the library builder: the last and strongest layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub profile: Option<ProfileName>,
    /// An agent's profile, layered over the base profile (`--profile agent:NAME`), below the
    /// config files.
    pub agent: Option<Agent>,
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub deny_read: Vec<String>,
    pub deny_write: Vec<String>,
    pub env_keep: Vec<String>,
    pub env_set: Vec<(String, String)>,
    pub timeout: Option<HumanDuration>,
    pub memory: Option<MemoryLimit>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    pub tmp_size: Option<ByteSize>,
    pub network: Option<NetworkMode>,
    /// Host patterns to allow (`--allow-host`); they imply the `allow` mode.
    pub allow_hosts: Vec<String>,
    /// Host patterns to refuse (`--deny-host`); they beat any allow rule.
    pub deny_hosts: Vec<String>,
    /// Preset names (`--allow-preset`); they imply the `allow` mode.
    pub presets: Vec<String>,
    /// Private ranges the gateway may dial (`--allow-private`).
    pub allow_private: Vec<String>,
    /// The gateway's DNS server (`--resolver`).
    pub resolver: Option<String>,
    pub allow_ptrace: bool,
    pub allow_degraded: bool,
    /// Tools whose caches to share through an overlay (`--cache`).
    pub caches: Vec<String>,
    /// Allow a writable root that holds $HOME (its many startup files can't all be protected).
    pub allow_writable_home: bool,
    /// Allow writable roots inside $HOME's configuration, program and cache areas (its dot
    /// entries, `~/bin`, `~/go`, …), whose contents run later outside the sandbox.
    pub allow_writable_home_config: bool,
    /// Let the project config widen the policy (the user trusts it from outside).
    pub trust_project: bool,
    /// Exec rules that deny (`--deny-exec 'git push'`).
    pub deny_exec: Vec<String>,
    /// Exec rules that log (`--log-exec PATTERN`).
    pub log_exec: Vec<String>,
    /// Exec presets (`--exec-preset`).
    pub exec_presets: Vec<String>,
    /// Don't watch execs (`--no-exec-monitor`).
    pub no_exec_monitor: bool,
}

/// Collects the layers of a policy and merges them.
pub struct PolicyBuilder {
    workspace: PathBuf,
    home: PathBuf,
    /// Where the user config lives, for messages (it may not exist).
    user_config_path: PathBuf,
    user: Option<LoadedConfig>,
    project: Option<LoadedConfig>,
    flags: Overrides,
    /// Host variables that say where tools keep their caches (`CacheTool::variables`).
    tool_env: std::collections::BTreeMap<String, String>,
    /// The machine's physical memory, for the default memory cap.
    physical_memory: Option<ByteSize>,
}

impl PolicyBuilder {
    /// `workspace` and `home` must be absolute.
    pub fn new(workspace: &Path, home: &Path) -> Self {
        PolicyBuilder {
            workspace: paths::normalize(workspace),
            home: paths::normalize(home),
            user_config_path: paths::normalize(&home.join(".config/ringfence/config.toml")),
            user: None,
            project: None,
            flags: Overrides::default(),
            tool_env: Default::default(),
            physical_memory: None,
        }
    }

    /// The host's values of the variables that place tools' caches (`CARGO_HOME`, …); without
    /// them caches are where the tools put them by default.
    pub fn tool_env(mut self, vars: std::collections::BTreeMap<String, String>) -> Self {
        self.tool_env = vars;
        self
    }

    /// The machine's physical memory: the default memory cap is half of it. Without it there
    /// is no default cap (the policy is pure; the caller reads the machine).
    pub fn physical_memory(mut self, total: ByteSize) -> Self {
        self.physical_memory = Some(total);
        self
    }

    /// Where the user config lives ($XDG_CONFIG_HOME aware), named in messages.
    pub fn user_config_path(mut self, path: &Path) -> Self {
        self.user_config_path = path.to_path_buf();
        self
    }

    pub fn user_config(mut self, config: LoadedConfig) -> Self {
        self.user = Some(config);
        self
    }

    pub fn project_config(mut self, config: LoadedConfig) -> Self {
        self.project = Some(config);
        self
    }

    pub fn overrides(mut self, flags: Overrides) -> Self {
        self.flags = flags;
        self
    }

    /// Whether the user trusts the project config to widen the policy.
    fn project_trusted(&self) -> bool {
        if self.flags.trust_project {
            return true;
        }
        let Some(user) = &self.user else { return false };
        let Some(list) = &user.config.trusted_projects else { return false };
        let base = user.path.parent().unwrap_or(Path::new("/"));
        list.get_ref()
            .iter()
            .any(|p| paths::expand_path(p.get_ref(), base, &self.home).is_ok_and(|p| p == self.workspace))
    }

    pub fn build(self) -> Result<Policy, PolicyError> {
        if let Some(project) = &self.project {
            if let Some(list) = &project.config.trusted_projects {
                return Err(project
                    .error_at(list.span(), "`trusted_projects` belongs in the user config only")
                    .with_help(format!("move it to {}", self.user_config_path.display())));
            }
        }
        let trusted = self.project_trusted();
        let profile_from =
            |c: &Option<LoadedConfig>| c.as_ref().and_then(|c| c.config.profile.as_ref().map(|p| *p.get_ref()));
        let user_profile = profile_from(&self.user).unwrap_or_default();
        let profile = match (self.flags.profile, &self.project) {
            (Some(p), _) => p,
            (None, Some(project)) if !trusted => match &project.config.profile {
                // From `workspace`, both other profiles only take away; between them, neither.
                Some(p) if *p.get_ref() != user_profile && user_profile != ProfileName::Workspace => {
                    return Err(narrowing_error(project, p.span(), "`profile`", &self.user_config_path));
                }
                Some(p) => *p.get_ref(),
                None => user_profile,
            },
            _ => profile_from(&self.project).unwrap_or(user_profile),
        };
        let mut state = Merge {
            policy: Policy {
                profile,
                agent: self.flags.agent,
                workspace: self.workspace.clone(),
                home: self.home.clone(),
                fs: base_rules::base_rules(profile, &self.workspace, &self.home),
                env: EnvRules::default(),
                limits: Limits {
                    timeout: None,
                    memory: self.physical_memory.map(default_memory_cap),
                    memory_explicit: false,
                    pids: Some(DEFAULT_PIDS),
                    pids_explicit: false,
                    cpus: None,
                    tmp_size: DEFAULT_TMP_SIZE,
                },
                network: NetworkMode::None,
                net: NetworkRules::default(),
                allow_ptrace: false,
                allow_degraded: false,
                allow_writable_home: false,
                allow_writable_home_config: false,
                caches: Vec::new(),
                exec: ExecRules::default(),
                sources: Vec::new(),
            },
            exec_layers: Vec::new(),
        };
        if let Some(agent) = self.flags.agent {
            state.apply_file(&agent.profile()?, &self.home, Layer::Agent(agent))?;
        }
        if let Some(user) = &self.user {
            state.apply_file(user, &self.home, Layer::User)?;
        }
        if let Some(project) = &self.project {
            let layer = if trusted { Layer::TrustedProject } else { Layer::Project(&self.user_config_path) };
            state.apply_file(project, &self.home, layer)?;
        }
        state.apply_flags(&self.flags)?;
        state.apply_exec_flags(&self.flags)?;
        let layers = std::mem::take(&mut state.exec_layers);
        let mut policy = state.policy;
        policy.exec.assemble(layers, &self.home);
        // The files that shape the next run must not be editable by this one.
        let own = [self.user_config_path.parent().map(Path::to_path_buf), self.user.as_ref().map(|u| u.path.clone())];
        for path in own.into_iter().flatten() {
            policy.fs.push(RuleKind::DenyWrite, paths::normalize(&path), Builtin::RingfenceConfig);
        }
        base_rules::protect_write_roots(&mut policy.fs);
        for cache in &mut policy.caches {
            (cache.dirs, cache.env) = cache.tool.locate(&self.home, &|k| self.tool_env.get(k).cloned());
        }
        validate(&policy)?;
        Ok(policy)
    }
}

fn narrowing_error(file: &LoadedConfig, span: std::ops::Range<usize>, what: &str, user_config: &Path) -> PolicyError {
    file.error_at(span, format!("{what} would widen the policy, and a project config can only narrow it")).with_help(
        format!(
            "remove it, pass it as a flag, or trust this project from outside the sandbox: \
             add its folder to `trusted_projects` in {}, or run with --trust-project",
            user_config.display()
        ),
    )
}

/// Which config file is being applied, and what it may do.
#[derive(Clone, Copy)]
enum Layer<'a> {
    /// A built-in agent profile.
    Agent(Agent),
    User,
    TrustedProject,
    /// An untrusted project config: narrow only; the path is the user config's, for messages.
    Project(&'a Path),
}

impl Layer<'_> {
    /// Where a rule at byte `offset` of `file`, applied as this layer, comes from.
    fn origin(self, file: &LoadedConfig, offset: usize) -> Origin {
        let line = file.line_of(offset);
        match self {
            Layer::Agent(agent) => Origin::Agent { agent, line },
            Layer::User => Origin::File { path: file.path.clone(), line },
            Layer::TrustedProject | Layer::Project(_) => Origin::Project { path: file.path.clone(), line },
        }
    }
}

/// A value of `[environment] set`: one that starts with `~/` is taken below the home folder,
/// as paths are (an agent's folder, say); any other is kept as written.
fn expand_value(value: &str, home: &Path) -> String {
    match value.strip_prefix("~/") {
        Some(rest) => home.join(rest).display().to_string(),
        None => value.to_string(),
    }
}

struct Merge {
    policy: Policy,
    /// Each layer's exec rules, in the order the layers were applied.
    exec_layers: Vec<Vec<ExecRule>>,
}

type SpannedList = Option<Spanned<Vec<Spanned<String>>>>;

/// Refuses a widening setting at a span of an untrusted project config.
type NarrowCheck<'a> = dyn Fn(std::ops::Range<usize>, &str) -> Result<(), PolicyError> + 'a;

impl Merge {
    fn apply_file(&mut self, file: &LoadedConfig, home: &Path, layer: Layer) -> Result<(), PolicyError> {
        let cfg = &file.config;
        let base = file.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let narrow = |span: std::ops::Range<usize>, what: &str| -> Result<(), PolicyError> {
            match layer {
                Layer::Project(user_config) => Err(narrowing_error(file, span, what, user_config)),
                _ => Ok(()),
            }
        };
        let fs = &cfg.filesystem;
        let lists: [(&SpannedList, RuleKind, bool); 4] = [
            (&fs.read, RuleKind::Read, true),
            (&fs.write, RuleKind::Write, true),
            (&fs.deny_read, RuleKind::DenyRead, false),
            (&fs.deny_write, RuleKind::DenyWrite, false),
        ];
        for (list, kind, widens) in lists {
            let Some(list) = list else { continue };
            if widens {
                narrow(list.span(), &format!("`filesystem.{}`", kind_key(kind)))?;
            }
            for entry in list.get_ref() {
                let path =
                    paths::expand_path(entry.get_ref(), &base, home).map_err(|e| file.error_at(entry.span(), e))?;
                let rule = FsRule::new(kind, path, layer.origin(file, entry.span().start));
                // An agent's state folders are created before its first run (the library's
                // spawn does); until then they are planned like the absent paths they are.
                let agent_root = kind == RuleKind::Write && matches!(layer, Layer::Agent(_));
                self.policy.fs.add(if agent_root { rule.while_present() } else { rule });
            }
        }
        self.apply_caches_file(file, layer, &narrow)?;
        if let Some(keep) = &cfg.environment.keep {
            narrow(keep.span(), "`environment.keep`")?;
            for k in keep.get_ref() {
                env::validate_keep(k.get_ref()).map_err(|e| file.error_at(k.span(), e))?;
                self.policy.env.keep.push(k.get_ref().clone());
            }
        }
        if let Some(set) = &cfg.environment.set {
            for (k, v) in set.get_ref() {
                env::validate_name(k).map_err(|e| file.error_at(set.span(), e))?;
                self.policy.env.set.insert(k.clone(), expand_value(v, home));
            }
        }
        self.apply_limits_file(file, &narrow)?;
        if let Some(v) = &cfg.process.allow_ptrace {
            if *v.get_ref() && !self.policy.allow_ptrace {
                narrow(v.span(), "`process.allow_ptrace`")?;
            }
            self.policy.allow_ptrace = *v.get_ref();
        }
        self.apply_network_file(file, layer, &narrow)?;
        self.apply_exec_file(file, layer, &narrow)?;
        if !matches!(layer, Layer::Agent(_)) {
            self.policy.sources.push(file.path.clone());
        }
        Ok(())
    }

    /// The `[limits]` section of a config file: raising a limit widens the policy.
    fn apply_limits_file(&mut self, file: &LoadedConfig, narrow: &NarrowCheck) -> Result<(), PolicyError> {
        let limits = &file.config.limits;
        let l = &mut self.policy.limits;
        if let Some(v) = &limits.timeout {
            if l.timeout.is_some_and(|cur| *v.get_ref() > cur) {
                narrow(v.span(), "raising `limits.timeout`")?;
            }
            l.timeout = Some(*v.get_ref());
        }
        if let Some(v) = &limits.memory {
            match *v.get_ref() {
                MemoryLimit::Size(size) if l.memory.is_some_and(|cur| size > cur) => {
                    narrow(v.span(), "raising `limits.memory`")?
                }
                MemoryLimit::Unlimited if l.memory.is_some() => narrow(v.span(), "removing `limits.memory`")?,
                _ => {}
            }
            l.memory = memory_bytes(*v.get_ref());
            l.memory_explicit = true;
        }
        if let Some(v) = &limits.pids {
            if *v.get_ref() == 0 {
                return Err(file.error_at(v.span(), "`limits.pids` must be at least 1"));
            }
            if l.pids.is_some_and(|cur| *v.get_ref() > cur) {
                narrow(v.span(), "raising `limits.pids`")?;
            }
            l.pids = Some(*v.get_ref());
            l.pids_explicit = true;
        }
        if let Some(v) = &limits.cpus {
            if !(*v.get_ref() > 0.0 && v.get_ref().is_finite()) {
                return Err(file
                    .error_at(v.span(), "`limits.cpus` must be a positive number of cores")
                    .with_help("for example `cpus = 2` or `cpus = 0.5`"));
            }
            if l.cpus.is_some_and(|cur| *v.get_ref() > cur) {
                narrow(v.span(), "raising `limits.cpus`")?;
            }
            l.cpus = Some(*v.get_ref());
        }
        if let Some(v) = &limits.tmp_size {
            if *v.get_ref() > l.tmp_size {
                narrow(v.span(), "raising `limits.tmp_size`")?;
            }
            l.tmp_size = *v.get_ref();
        }
        Ok(())
    }

    /// The `[network]` section of a config file.
    fn apply_network_file(
        &mut self,
        file: &LoadedConfig,
        layer: Layer,
        narrow: &NarrowCheck,
    ) -> Result<(), PolicyError> {
        let net = &file.config.network;
        let origin = |span: std::ops::Range<usize>| layer.origin(file, span.start);
        let non_empty = |list: &SpannedList| list.as_ref().filter(|l| !l.get_ref().is_empty()).map(|l| l.span());
        let presets = net.presets.as_ref().filter(|l| !l.get_ref().is_empty());
        let mut rules = Vec::new();
        for (list, deny) in [(&net.allow, false), (&net.deny, true)] {
            for entry in list.iter().flat_map(|l| l.get_ref()) {
                let pattern =
                    HostPattern::parse(entry.get_ref()).map_err(|e| file.error_at(entry.span(), naming(entry, e)))?;
                rules.push((deny, HostRule { pattern, origin: origin(entry.span()) }));
            }
        }
        let mut private = Vec::new();
        for entry in net.allow_private.iter().flat_map(|l| l.get_ref()) {
            let range = network::parse_private_range(entry.get_ref())
                .map_err(|e| file.error_at(entry.span(), naming(entry, e)))?;
            private.push((range, origin(entry.span())));
        }
        let resolver = match &net.resolver {
            Some(v) => Some((
                network::parse_resolver(v.get_ref()).map_err(|e| file.error_at(v.span(), naming(v, e)))?,
                origin(v.span()),
            )),
            None => None,
        };
        let allows = non_empty(&net.allow).is_some() || presets.is_some();
        if let Some(v) = net.mode.as_ref().filter(|v| allows && *v.get_ref() != NetworkMode::Allow) {
            return Err(file.error_at(v.span(), contradiction(*v.get_ref(), "this file's allow rules")).with_help(
                "set `mode = \"allow\"` to let only the listed hosts through, or remove `allow` and `presets`",
            ));
        }
        if let Some(span) = non_empty(&net.allow) {
            narrow(span, "`network.allow`")?;
        }
        if let Some(list) = presets {
            narrow(list.span(), "`network.presets`")?;
        }
        if let Some(span) = non_empty(&net.allow_private) {
            narrow(span, "`network.allow_private`")?;
        }
        if let Some(v) = &net.resolver {
            narrow(v.span(), "`network.resolver`")?;
        }
        if let Some(v) = &net.mode {
            let mode = *v.get_ref();
            if mode != NetworkMode::None && mode != self.policy.network {
                narrow(v.span(), "`network.mode`")?;
            }
            self.policy.network = mode;
        } else if allows {
            self.policy.network = NetworkMode::Allow;
        }
        for (deny, rule) in rules {
            if deny { &mut self.policy.net.deny } else { &mut self.policy.net.allow }.push(rule);
        }
        for p in presets.iter().flat_map(|l| l.get_ref()) {
            self.add_preset(*p.get_ref(), origin(p.span()));
        }
        self.policy.net.allow_private.extend(private);
        if resolver.is_some() {
            self.policy.net.resolver = resolver;
        }
        Ok(())
    }

    /// The `[exec]` section of a config file: allow and log rules, and turning the monitor
    /// off, widen the policy; deny rules and presets narrow it.
    fn apply_exec_file(&mut self, file: &LoadedConfig, layer: Layer, narrow: &NarrowCheck) -> Result<(), PolicyError> {
        let exec = &file.config.exec;
        let origin = |span: std::ops::Range<usize>| {
            let (path, line) = (file.path.clone(), file.line_of(span.start));
            match layer {
                Layer::User => Origin::File { path, line },
                _ => Origin::Project { path, line },
            }
        };
        if let Some(v) = &exec.monitor {
            if !*v.get_ref() {
                narrow(v.span(), "`exec.monitor = false`")?;
            }
            self.policy.exec.monitor = *v.get_ref();
        }
        let mut rules = Vec::new();
        for entry in exec.rule.iter().flatten() {
            let e = entry.get_ref();
            if e.decision != ExecDecision::Deny {
                narrow(entry.span(), &format!("an exec rule that decides `{}`", e.decision))?;
            }
            let rule = ExecRule::new(
                &e.program,
                e.args.clone(),
                e.decision,
                e.reason.clone(),
                origin(entry.span()),
                &self.policy.home,
            )
            .map_err(|msg| file.error_at(entry.span(), msg))?;
            rules.push(rule);
        }
        self.exec_layers.push(rules);
        for p in exec.presets.iter().flat_map(|l| l.get_ref()) {
            self.policy.exec.add_preset(*p.get_ref(), origin(p.span()));
        }
        Ok(())
    }

    /// The exec flags: `--deny-exec`, `--log-exec`, `--exec-preset`, `--no-exec-monitor`.
    fn apply_exec_flags(&mut self, flags: &Overrides) -> Result<(), PolicyError> {
        let home = self.policy.home.clone();
        let mut rules = Vec::new();
        for (list, flag, decision) in
            [(&flags.deny_exec, "--deny-exec", ExecDecision::Deny), (&flags.log_exec, "--log-exec", ExecDecision::Log)]
        {
            for raw in list {
                rules.push(ExecRule::from_flag(flag, raw, decision, &home).map_err(PolicyError::new)?);
            }
        }
        self.exec_layers.push(rules);
        for raw in &flags.exec_presets {
            let preset: ExecPreset = raw.parse().map_err(|e| PolicyError::new(format!("--exec-preset {raw}: {e}")))?;
            self.policy.exec.add_preset(preset, Origin::flag(format!("--exec-preset {raw}")));
        }
        if flags.no_exec_monitor {
            self.policy.exec.monitor = false;
        }
        Ok(())
    }

    /// `[filesystem] caches` of a config file: widening, like a writable root.
    fn apply_caches_file(
        &mut self,
        file: &LoadedConfig,
        layer: Layer,
        narrow: &NarrowCheck,
    ) -> Result<(), PolicyError> {
        let Some(list) = &file.config.filesystem.caches else { return Ok(()) };
        narrow(list.span(), "`filesystem.caches`")?;
        for tool in list.get_ref() {
            self.add_cache(*tool.get_ref(), layer.origin(file, tool.span().start));
        }
        Ok(())
    }

    /// Shares a tool's cache (once per tool; its folders are located when the policy is built).
    fn add_cache(&mut self, tool: CacheTool, origin: Origin) {
        if !self.policy.caches.iter().any(|c| c.tool == tool) {
            self.policy.caches.push(CacheRule { tool, dirs: Vec::new(), env: Vec::new(), origin });
        }
    }

    /// Puts a preset in force and its hosts in the allow list (once per preset). A package
    /// registry's preset brings its tool's cache: the downloads land there, and with the cache
    /// shared as an overlay they neither fail on a read-only cache nor reach the host's.
    fn add_preset(&mut self, preset: Preset, origin: Origin) {
        if let Some(tool) = preset.cache() {
            self.add_cache(tool, Builtin::PresetCache { preset, by: Box::new(origin.clone()) }.into());
        }
        let net = &mut self.policy.net;
        if net.presets.iter().any(|(p, _)| *p == preset) {
            return;
        }
        for host in preset.hosts() {
            if let Ok(pattern) = HostPattern::parse(host) {
                net.allow.push(HostRule { pattern, origin: origin.clone() });
            }
        }
        net.presets.push((preset, origin));
    }

    /// The network flags: rules accumulate; `--network` and `--resolver` replace.
    fn apply_network_flags(&mut self, flags: &Overrides) -> Result<(), PolicyError> {
        let flag_error = |flag: &str, raw: &str, e: String| PolicyError::new(format!("{flag} {raw}: {e}"));
        for (list, flag, deny) in
            [(&flags.allow_hosts, "--allow-host", false), (&flags.deny_hosts, "--deny-host", true)]
        {
            for raw in list {
                let pattern = HostPattern::parse(raw).map_err(|e| flag_error(flag, raw, e))?;
                let rule = HostRule { pattern, origin: Origin::flag(format!("{flag} {raw}")) };
                if deny { &mut self.policy.net.deny } else { &mut self.policy.net.allow }.push(rule);
            }
        }
        for raw in &flags.presets {
            let preset: Preset = raw.parse().map_err(|e| flag_error("--allow-preset", raw, e))?;
            self.add_preset(preset, Origin::flag(format!("--allow-preset {raw}")));
        }
        for raw in &flags.allow_private {
            let range = network::parse_private_range(raw).map_err(|e| flag_error("--allow-private", raw, e))?;
            self.policy.net.allow_private.push((range, Origin::flag(format!("--allow-private {raw}"))));
        }
        if let Some(raw) = &flags.resolver {
            let addr = network::parse_resolver(raw).map_err(|e| flag_error("--resolver", raw, e))?;
            self.policy.net.resolver = Some((addr, Origin::flag(format!("--resolver {raw}"))));
        }
        let allows = !flags.allow_hosts.is_empty() || !flags.presets.is_empty();
        match flags.network {
            Some(mode) if allows && mode != NetworkMode::Allow => {
                let first = flags.allow_hosts.first().map(|h| format!("--allow-host {h}"));
                let first = first.or_else(|| flags.presets.first().map(|p| format!("--allow-preset {p}")));
                Err(PolicyError::new(format!("--network {mode}: {}", contradiction(mode, &first.unwrap_or_default())))
                    .with_help("pass --network allow (or leave --network out) to let only the listed hosts through"))
            }
            Some(mode) => {
                self.policy.network = mode;
                Ok(())
            }
            None if allows => {
                self.policy.network = NetworkMode::Allow;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn apply_flags(&mut self, flags: &Overrides) -> Result<(), PolicyError> {
        let cwd = self.policy.workspace.clone();
        let home = self.policy.home.clone();
        let lists = [
            (&flags.read, RuleKind::Read, "--read"),
            (&flags.write, RuleKind::Write, "--write"),
            (&flags.deny_read, RuleKind::DenyRead, "--deny-read"),
            (&flags.deny_write, RuleKind::DenyWrite, "--deny-write"),
        ];
        for (list, kind, flag) in lists {
            for raw in list {
                let path =
                    paths::expand_path(raw, &cwd, &home).map_err(|e| PolicyError::new(format!("{flag} {raw}: {e}")))?;
                self.policy.fs.push(kind, path, Origin::flag(format!("{flag} {raw}")));
            }
        }
        for raw in &flags.caches {
            let tool: CacheTool = raw.parse().map_err(|e| PolicyError::new(format!("--cache {raw}: {e}")))?;
            self.add_cache(tool, Origin::flag(format!("--cache {raw}")));
        }
        for k in &flags.env_keep {
            env::validate_keep(k).map_err(|e| PolicyError::new(format!("--env-keep: {e}")))?;
            self.policy.env.keep.push(k.clone());
        }
        for (k, v) in &flags.env_set {
            env::validate_name(k)
                .map_err(|e| PolicyError::new(format!("--env {k}=…: {e}")).with_help("write --env NAME=VALUE"))?;
            self.policy.env.set.insert(k.clone(), v.clone());
        }
        let l = &mut self.policy.limits;
        if flags.timeout.is_some() {
            l.timeout = flags.timeout;
        }
        if let Some(m) = flags.memory {
            l.memory = memory_bytes(m);
            l.memory_explicit = true;
        }
        if let Some(p) = flags.pids {
            if p == 0 {
                return Err(PolicyError::new("--pids must be at least 1"));
            }
            l.pids = Some(p);
            l.pids_explicit = true;
        }
        if let Some(c) = flags.cpus {
            if !(c > 0.0 && c.is_finite()) {
                return Err(PolicyError::new("--cpus must be a positive number of cores")
                    .with_help("for example --cpus 2 or --cpus 0.5"));
            }
            l.cpus = Some(c);
        }
        if let Some(t) = flags.tmp_size {
            l.tmp_size = t;
        }
        self.apply_network_flags(flags)?;
        self.policy.allow_ptrace |= flags.allow_ptrace;
        self.policy.allow_degraded |= flags.allow_degraded;
        self.policy.allow_writable_home = flags.allow_writable_home;
        self.policy.allow_writable_home_config = flags.allow_writable_home_config;
        Ok(())
    }
}

/// Why a network mode can't go with allow rules from the same place.
fn contradiction(mode: NetworkMode, rules: &str) -> String {
    match mode {
        NetworkMode::Host => format!("host mode doesn't filter, so {rules} would not be enforced"),
        _ => format!("the `{mode}` mode contradicts {rules}"),
    }
}

/// A parse error about a config value, naming the value unless the message already does.
fn naming(value: &Spanned<String>, message: String) -> String {
    let quoted = format!("`{}`", value.get_ref());
    if message.contains(&quoted) {
        message
    } else {
        format!("{quoted}: {message}")
    }
}

/// The limit in force for a memory setting.
fn memory_bytes(setting: MemoryLimit) -> Option<ByteSize> {
    match setting {
        MemoryLimit::Size(size) => Some(size),
        MemoryLimit::Unlimited => None,
    }
}

fn kind_key(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Read => "read",
        RuleKind::Write => "write",
        RuleKind::DenyRead => "deny_read",
        RuleKind::DenyWrite => "deny_write",
    }
}

fn validate(policy: &Policy) -> Result<(), PolicyError> {
    if !policy.exec.monitor {
        if let Some(rule) = policy.exec.rules.first() {
            return Err(PolicyError::new(format!(
                "{}: the exec rule `{}` can't be enforced: exec monitoring is off",
                rule.origin,
                rule.pattern()
            ))
            .with_help("drop --no-exec-monitor (or `monitor = false` in [exec]), or remove the exec rules"));
        }
    }
    if policy.network == NetworkMode::Host {
        if let Some(rule) = policy.net.allow.iter().chain(&policy.net.deny).next() {
            return Err(PolicyError::new(format!(
                "{}: `{}` can't be enforced: the network mode is `host`, and host mode doesn't filter",
                rule.origin, rule.pattern
            ))
            .with_help(
                "use the allow mode (`--network allow`, or `mode = \"allow\"` in [network]) to enforce the \
                 host rules, or remove them",
            ));
        }
    }
    let ws = policy.fs.access(&policy.workspace);
    if ws.access == FsAccess::Deny {
        let rule = ws.read_rule.map(|r| format!(" by {} ({})", r.path.display(), r.origin));
        return Err(PolicyError::new(format!(
            "the workspace {} is hidden{}",
            policy.workspace.display(),
            rule.unwrap_or_default()
        ))
        .with_help("run from another folder, or re-allow it with --read"));
    }
    for rule in policy.fs.of_kind(RuleKind::Write) {
        if rule.path == Path::new("/") {
            return Err(PolicyError::new(format!("{}: `/` can't be a writable root", rule.origin))
                .with_help("name the folders the command must write"));
        }
        // $HOME holds more startup files (shell includes, Python .pth files, tool configs)
        // than any list can protect; writing it takes an explicit choice.
        let home_writable = policy.home != Path::new("/") && paths::is_within(&policy.home, &rule.path);
        if home_writable && !policy.allow_writable_home && policy.fs.access(&policy.home).access == FsAccess::Write {
            return Err(PolicyError::new(format!(
                "{}: {} would make your home folder {} writable",
                rule.origin,
                rule.path.display(),
                policy.home.display()
            ))
            .with_help(
                "run from a project folder and add only the folders the command needs (--write ~/build, \
                 --cache pip), or pass --allow-writable-home to accept that startup files there can be changed",
            ));
        }
        if let Some(area) = profile::home_tool_area(&policy.home, &rule.path) {
            if policy.fs.access(&rule.path).access == FsAccess::Write && !home_area_allowed(policy, &rule.origin) {
                let (message, help) = home_area_refusal(&rule.origin.to_string(), &rule.path, &area, &policy.home);
                return Err(PolicyError::new(message).with_help(help));
            }
        }
    }
    Ok(())
}

/// Whether writable roots may lie in $HOME's configuration, program and cache areas: asked for
/// with `--allow-writable-home-config`, or implied by `--allow-writable-home` (a writable $HOME
/// holds them all).
pub fn home_areas_allowed(policy: &Policy) -> bool {
    policy.allow_writable_home || policy.allow_writable_home_config
}

/// Whether a writable root from `origin` may lie in $HOME's configuration, program and cache
/// areas: where [`home_areas_allowed`], and always for an agent profile's own state folders
/// (the profile names them, and keeps what would run later read-only).
pub fn home_area_allowed(policy: &Policy, origin: &Origin) -> bool {
    home_areas_allowed(policy) || matches!(origin, Origin::Agent { .. })
}

/// The refusal of a writable root `root` (from `what`) inside the home area `area`: message and
/// help. Shared by the policy's check and the backends' check of resolved paths.
pub fn home_area_refusal(what: &str, root: &Path, area: &Path, home: &Path) -> (String, String) {
    let message = format!(
        "{what}: {} is inside {}, where tools keep configuration, programs and caches that run \
         later outside the sandbox",
        root.display(),
        area.display()
    );
    let cache = CacheTool::owning(root, home)
        .map(|t| format!("share the cache with --cache {t} (the host's cache stays unchanged), or "))
        .unwrap_or_default();
    let help =
        format!("{cache}pass --allow-writable-home-config to accept that the command can change what runs there later");
    (message, help)
}

#[cfg(test)]
mod tests;
