//! Command-line arguments.

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use ringfence_policy::{ByteSize, CacheTool, HumanDuration, MemoryLimit, NetworkMode, Overrides, Preset, ProfileName};
use std::ffi::OsString;
use std::path::PathBuf;

const RUN_EXAMPLES: &str = "\
Examples:
  ringfence run -- npm test
  ringfence run --profile strict -- cargo build --offline
  ringfence run --cache pip --timeout 10m -- pip install -r requirements.txt
  ringfence run --memory 2G --pids 256 -- make -j4
  ringfence run --env-keep 'AWS_REGION' --env CI=1 -- ./scripts/test.sh
  ringfence run --allow-preset npm --allow-host api.openai.com -- npm install
  ringfence run --events run.jsonl --json-status 3 -- pytest 3>status.json";

#[derive(Parser, Debug)]
#[command(
    name = "ringfence",
    version,
    about = "Run AI-generated commands under kernel-enforced limits",
    long_about = "ringfence runs a command so that it reads only what policy allows, writes only the \
                  workspace, reaches no network, can't touch host processes, and can't outlive the \
                  run or exhaust the machine.",
    after_help = "Run `ringfence check` to see what this machine can enforce, and \
                  `ringfence explain` to see the effective policy."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in the sandbox, with the current directory as the workspace.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Keep one sandbox for many commands: start, exec, stop, list.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Print the effective policy and which layer enforces each rule; runs nothing.
    Explain(ExplainArgs),
    /// Report the kernel features found and what each policy feature will be enforced with.
    Check,
    /// Print the JSON Schema of the policy file.
    Schema,
    /// Windows: create the sandbox account and its network filters (elevated, once; safe to
    /// repeat). Other platforms need no set-up.
    Setup,
    /// Windows: remove the sandbox account, its secret and its network filters.
    Uninstall,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Write the exit code, signal, duration and resource usage as JSON, after the run, to this
    /// open file descriptor (3 or fd:3) or to this file (created or emptied; the sandbox can't
    /// change it).
    #[arg(long, value_name = "FD|PATH", value_parser = crate::record::parse_status_arg)]
    pub json_status: Option<crate::record::StatusArg>,
    /// Append the run's events (JSON Lines) to this file (the sandbox can't change it).
    #[arg(long, value_name = "PATH")]
    pub events: Option<PathBuf>,
    /// Never give the command its own terminal, even when run from one.
    #[arg(long)]
    pub no_pty: bool,
    /// Print a timeline of the launch's phases on stderr (as RINGFENCE_TRACE_LAUNCH=1 does).
    #[arg(long)]
    pub trace_launch: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// Build a sandbox and keep it; prints the session's id. It ends when the calling process
    /// (the parent of this command) exits, on `stop`, or when idle too long.
    Start(Box<SessionStartArgs>),
    /// Run a command in a session, with its own stdio, exit code, signals and timeout.
    Exec(SessionExecArgs),
    /// End a session and everything running in it.
    Stop {
        /// The session's id or name.
        session: String,
    },
    /// Show the running sessions.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct SessionStartArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// A name to use instead of the id (unique among your sessions).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// End the session after this long without a command running (default 30m).
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<HumanDuration>,
    /// Print the session as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SessionExecArgs {
    /// The session's id or name.
    pub session: String,
    /// Leave what the command starts in the background running after it exits.
    #[arg(long)]
    pub background: bool,
    /// Kill the command after this long (SIGTERM, then SIGKILL 2s later).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<HumanDuration>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print the policy as JSON.
    #[arg(long)]
    pub json: bool,
    /// Ignored: lets `explain` take the same command line as `run`.
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Built-in profile: workspace (default), read-only, or strict.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<ProfileName>,
    /// Add a writable root (repeatable).
    #[arg(long, value_name = "PATH")]
    pub write: Vec<String>,
    /// Let the command add to a tool's cache through an overlay: it sees the host's cache, and
    /// what it adds or changes is kept apart, never in the host's cache (repeatable).
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(cache_names()))]
    pub cache: Vec<String>,
    /// Allow reading PATH, also inside a denied region (repeatable).
    #[arg(long, value_name = "PATH")]
    pub read: Vec<String>,
    /// Hide PATH, even if it does not exist yet (repeatable).
    #[arg(long, value_name = "PATH")]
    pub deny_read: Vec<String>,
    /// Keep PATH read-only inside writable roots, even if it does not exist yet (repeatable).
    #[arg(long, value_name = "PATH")]
    pub deny_write: Vec<String>,
    /// Use FILE instead of ~/.config/ringfence/config.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ignore the user and project config files.
    #[arg(long, conflicts_with = "config")]
    pub no_config: bool,
    /// Let the workspace's .ringfence.toml widen the policy, not just narrow it.
    #[arg(long)]
    pub trust_project: bool,
    /// Pass this variable (or glob, like 'AWS_*') through; secret-looking names need their exact name.
    #[arg(long, value_name = "NAME|GLOB")]
    pub env_keep: Vec<String>,
    /// Set a variable inside the sandbox.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Kill the run after this long (SIGTERM, then SIGKILL 2s later), e.g. 90s, 10m.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<HumanDuration>,
    /// Memory limit for the whole sandbox, e.g. 512M, 2G, or none (default: half of physical
    /// memory, where a cgroup can carry it).
    #[arg(long, value_name = "SIZE|none")]
    pub memory: Option<MemoryLimit>,
    /// Most processes and threads at once (default 4096).
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// CPU share in cores, e.g. 2 or 0.5.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Size of the private /tmp (default 1G).
    #[arg(long, value_name = "SIZE")]
    pub tmp_size: Option<ByteSize>,
    /// Network: none (default, loopback only), allow (only allowed hosts, through ringfence's
    /// gateway; implied by --allow-host and --allow-preset) or host (unfiltered; dangerous).
    #[arg(long, value_name = "MODE", value_parser = parse_network)]
    pub network: Option<NetworkMode>,
    /// Allow connections to hosts matching PATTERN: example.com, *.example.com (names below
    /// it), example.com:443, 192.0.2.7, [2001:db8::1]:443 (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub allow_host: Vec<String>,
    /// Refuse hosts matching PATTERN, even if allowed (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub deny_host: Vec<String>,
    /// Allow a built-in list of hosts, all on port 443 (repeatable).
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(preset_names()))]
    pub allow_preset: Vec<String>,
    /// Let the gateway dial this private range, e.g. 10.0.0.0/8 (repeatable; RFC 1918, ULA and
    /// CGNAT ranges only).
    #[arg(long, value_name = "CIDR")]
    pub allow_private: Vec<String>,
    /// DNS server the gateway asks, e.g. 192.0.2.53 or [2001:db8::53]:53 (default: the
    /// system resolver).
    #[arg(long, value_name = "ADDR")]
    pub resolver: Option<String>,
    /// Allow ptrace between processes inside the sandbox (for debuggers).
    #[arg(long)]
    pub allow_ptrace: bool,
    /// Run even if a requested protection can't be enforced (warns, and records it).
    #[arg(long)]
    pub allow_degraded: bool,
    /// Allow a writable root that holds your home folder (dangerous: startup files there beyond
    /// the protected list can be changed).
    #[arg(long)]
    pub allow_writable_home: bool,
    /// Allow writable roots in your home folder's configuration, program and cache areas
    /// (~/.config, ~/.local, ~/.cache, any dot entry, ~/bin, ~/go; dangerous: what runs from
    /// there later can be changed).
    #[arg(long)]
    pub allow_writable_home_config: bool,
    /// The workspace directory (default: the current directory).
    #[arg(long, short = 'C', value_name = "DIR")]
    pub workspace: Option<PathBuf>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` has no `=`; write NAME=VALUE"))
}

fn parse_network(s: &str) -> Result<NetworkMode, String> {
    s.parse()
}

fn preset_names() -> Vec<&'static str> {
    Preset::all().iter().map(|p| p.name()).collect()
}

fn cache_names() -> Vec<&'static str> {
    CacheTool::all().iter().map(|t| t.name()).collect()
}

impl PolicyArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            profile: self.profile,
            read: self.read.clone(),
            write: self.write.clone(),
            deny_read: self.deny_read.clone(),
            deny_write: self.deny_write.clone(),
            env_keep: self.env_keep.clone(),
            env_set: self.env.clone(),
            timeout: self.timeout,
            memory: self.memory,
            pids: self.pids,
            cpus: self.cpus,
            tmp_size: self.tmp_size,
            network: self.network,
            allow_hosts: self.allow_host.clone(),
            deny_hosts: self.deny_host.clone(),
            presets: self.allow_preset.clone(),
            allow_private: self.allow_private.clone(),
            resolver: self.resolver.clone(),
            allow_ptrace: self.allow_ptrace,
            allow_degraded: self.allow_degraded,
            caches: self.cache.clone(),
            allow_writable_home: self.allow_writable_home,
            allow_writable_home_config: self.allow_writable_home_config,
            trust_project: self.trust_project,
        }
    }

    pub fn sources(&self) -> ringfence::PolicySources {
        ringfence::PolicySources {
            workspace: self.workspace.clone(),
            config: self.config.clone(),
            no_config: self.no_config,
        }
    }
}
