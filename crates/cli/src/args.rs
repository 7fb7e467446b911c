//! Command-line arguments.

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use ringfence_policy::{
    Agent, ByteSize, CacheTool, HumanDuration, MemoryLimit, NetworkMode, Overrides, Preset, ProfileChoice,
};
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
  ringfence run --events run.jsonl --json-status 3 -- pytest 3>status.json
  ringfence run --exec-preset guardrails --deny-exec 'make deploy' --report -- make
  ringfence run --profile agent:claude -- claude";

const MCP_EXAMPLES: &str = "\
Examples (the client starts the server; these are the commands to give it):
  ringfence mcp -C /path/to/project
  ringfence mcp -C /path/to/project --allow-preset npm --timeout 10m
The tools: run_command (runs one command in the sandbox) and sandbox_policy (what the sandbox
allows). The policy is fixed when the server starts: nothing a tool call says can widen it.";

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
    /// Serve the Model Context Protocol over stdio: agents run each command in the sandbox
    /// through its `run_command` tool.
    #[command(after_help = MCP_EXAMPLES)]
    Mcp(McpArgs),
    /// Show the built-in agent profiles, in the config file format.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Summarize a run's event file (--events): the command, how it ended, the programs it
    /// started and the execs denied, its connections, then a timeline with the process tree.
    Log(LogArgs),
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
    /// Append the run's events (JSON Lines) to this file (the sandbox can't change it), to an
    /// open descriptor (fd:3), or to stderr (-).
    #[arg(long, value_name = "PATH|fd:N|-", value_parser = crate::record::parse_events_arg)]
    pub events: Option<crate::record::EventsArg>,
    /// Print a summary of the run on stderr when it ends (programs started, execs denied,
    /// connections, limits hit).
    #[arg(long)]
    pub report: bool,
    /// Never give the command its own terminal, even when run from one.
    #[arg(long)]
    pub no_pty: bool,
    /// The command's directory, inside the workspace (default: the workspace).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// For `ringfence mcp`, which runs each command this way: ringfence's stdin starts with
    /// the command's input (its length in bytes on a line of its own, then the bytes), and
    /// then stays open while the run may go on; when it closes, the run is killed.
    #[arg(long, hide = true)]
    pub stdin_lifeline: bool,
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
pub struct LogArgs {
    /// The event file a run wrote (--events).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the selected events as JSON Lines instead of the summary and timeline.
    #[arg(long)]
    pub json: bool,
    /// Only events of this type, like proc.exec or net.deny (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only refusals: denied execs and connections, and policy.deny.
    #[arg(long)]
    pub denied: bool,
    /// Only the run with this id (a file may hold several runs).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
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
pub struct McpArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// List the built-in agent profiles.
    List,
    /// Print an agent profile (agent:NAME), to read or to copy into a config file.
    Show {
        #[arg(value_name = "agent:NAME", value_parser = parse_agent)]
        name: Agent,
    },
}

fn parse_agent(s: &str) -> Result<Agent, String> {
    match s.parse::<ProfileChoice>()? {
        ProfileChoice::Agent(agent) => Ok(agent),
        ProfileChoice::Base(p) => Err(format!("`{p}` is built into ringfence's code, not a file; name an agent:NAME")),
    }
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Profile: workspace (default), read-only, strict, or an agent's profile over workspace
    /// (agent:claude, agent:codex, agent:gemini, agent:aider, agent:opencode).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<ProfileChoice>,
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
    /// Allow connections to hosts matching PATTERN: example.com (ports 80 and 443),
    /// *.example.com (names below it), github.com:22, 192.0.2.7, [2001:db8::1]:443,
    /// 10.1.0.0/16:5432 (repeatable).
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
    /// Refuse execs matching PATTERN, a program and argument patterns like 'git push' or
    /// 'rm -r /*' (repeatable; the first matching rule decides).
    #[arg(long, value_name = "PATTERN")]
    pub deny_exec: Vec<String>,
    /// Let execs matching PATTERN run, and mark their record with the rule (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub log_exec: Vec<String>,
    /// A built-in set of exec rules: guardrails (denies git push, publishing, sudo, rm -rf /,
    /// …) (repeatable).
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(["guardrails"]))]
    pub exec_preset: Vec<String>,
    /// Don't watch the command's execs: only the command itself is recorded, and exec rules
    /// refuse to start (saves the exec monitor's cost on exec-heavy runs).
    #[arg(long)]
    pub no_exec_monitor: bool,
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
        let (profile, agent) = self.profile.map(ProfileChoice::parts).unzip();
        Overrides {
            profile,
            agent: agent.flatten(),
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
            deny_exec: self.deny_exec.clone(),
            log_exec: self.log_exec.clone(),
            exec_presets: self.exec_preset.clone(),
            no_exec_monitor: self.no_exec_monitor,
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
