//! `ringfence mcp`: a Model Context Protocol server over stdio (the official Rust SDK, rmcp),
//! so that any MCP client's agent runs its commands in the sandbox. The policy comes from the
//! server's own flags and config files, fixed when it starts; each command is a `ringfence run`
//! of its own (see `runner`), whose event log gives the agent what was refused and how the
//! person could allow it.

mod capture;
mod denials;
mod job;
mod report;
mod runner;
mod tools;

use crate::args::McpArgs;
use crate::report;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use ringfence::exit_code;
use rmcp::ServiceExt;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// The policy flags a run takes from the server; the timeout is each command's own.
const PER_COMMAND: &[&str] = &["timeout"];

pub fn serve(args: McpArgs, signals: ringfence::Signals) -> i32 {
    // Commands run in child processes that supervise their own sandboxes: the server itself
    // takes SIGTERM and SIGINT as the end of its session (see `run`).
    ringfence::release_signals(signals);
    let policy = match ringfence::load_policy(&args.policy.sources(), args.policy.overrides()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return exit_code::POLICY;
        }
    };
    let policy_text = match crate::explain::text(&policy) {
        Ok(text) => text,
        Err(e) => {
            report(&e);
            return e.exit_code();
        }
    };
    let setup = match setup(&policy, policy_text) {
        Ok(setup) => setup,
        Err(e) => {
            report(&format!("mcp: {e}"));
            return exit_code::INTERNAL;
        }
    };
    if std::io::stdin().is_terminal() {
        eprintln!(
            "ringfence mcp: serving the Model Context Protocol on stdin and stdout, for an MCP client to start \
             (see `ringfence mcp --help`); ctrl-D ends it"
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            report(&format!("mcp: starting the runtime: {e}"));
            return exit_code::INTERNAL;
        }
    };
    let scratch = setup.scratch.clone();
    let code = runtime.block_on(run(setup.into_tools()));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(scratch);
    code
}

/// Serves until the client goes away, then ends the commands still running.
async fn run(setup: tools::Setup) -> i32 {
    let (tracker, shutdown) = (setup.tracker.clone(), setup.shutdown.clone());
    let server = match tools::Sandbox::new(setup).serve(rmcp::transport::stdio()).await {
        Ok(server) => server,
        Err(e) => {
            report(&format!(
                "mcp: no MCP session: {e}\n  help: an MCP client starts `ringfence mcp` and sends `initialize` first; \
                 see docs/agents.md for the clients' settings"
            ));
            return exit_code::INTERNAL;
        }
    };
    tokio::select! {
        _ = server.waiting() => {}
        _ = stop_requested() => {}
    }
    // The client is gone, or the server was told to stop: the commands still running are ended
    // (their lifelines cut), and their requests finish.
    shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(15), tracker.wait()).await;
    0
}

/// Resolves when the server is told to stop: SIGTERM or SIGINT (ctrl-C elsewhere). Where no
/// handler can be installed, never: the server then ends with its client alone.
async fn stop_requested() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => return,
            Ok(()) = tokio::signal::ctrl_c() => return,
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Everything the server keeps from its start.
struct Started {
    runner: runner::Subprocess,
    workspace: PathBuf,
    limit: Option<Duration>,
    policy_text: String,
    scratch: PathBuf,
}

impl Started {
    fn into_tools(self) -> tools::Setup {
        tools::Setup {
            runner: Box::new(self.runner),
            workspace: self.workspace,
            limit: self.limit,
            policy_text: self.policy_text,
            tracker: Default::default(),
            shutdown: Default::default(),
        }
    }
}

fn setup(policy: &ringfence::Policy, policy_text: String) -> Result<Started, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let scratch = scratch_dir()?;
    let policy_args = policy_args()?;
    Ok(Started {
        runner: runner::Subprocess { exe, policy_args, scratch: scratch.clone(), runs: Default::default() },
        workspace: policy.workspace.clone(),
        limit: policy.limits.timeout.map(|t| t.0),
        policy_text,
        scratch,
    })
}

/// A folder of this server's own for the runs' records (command lines, hosts): new, and
/// readable by its owner alone.
fn scratch_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    #[cfg(unix)]
    let builder = {
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
    };
    // Windows: the temporary folder is the user's own.
    #[cfg(not(unix))]
    let builder = std::fs::DirBuilder::new();
    for n in 0..100 {
        let dir = base.join(format!("ringfence-mcp-{}-{n}", std::process::id()));
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("making {}: {e}", dir.display())),
        }
    }
    Err(format!("no free folder name for the runs' records in {}", base.display()))
}

/// The policy flags this server was started with, as `ringfence run` takes them: each one the
/// command line gave, as given.
fn policy_args() -> Result<Vec<OsString>, String> {
    let matches = crate::args::Cli::command().try_get_matches().map_err(|e| e.to_string())?;
    let Some(("mcp", matches)) = matches.subcommand() else {
        return Err("not started as `ringfence mcp`".into());
    };
    // The same parse the server made, so nothing differs from what it checked.
    crate::args::McpArgs::from_arg_matches(matches).map_err(|e| e.to_string())?;
    Ok(flags_given(matches))
}

/// Every flag of `matches` that came from the command line, but those each command sets.
fn flags_given(matches: &ArgMatches) -> Vec<OsString> {
    let command = crate::args::Cli::command();
    let Some(mcp) = command.find_subcommand("mcp") else { return Vec::new() };
    let mut out = Vec::new();
    for arg in mcp.get_arguments() {
        let id = arg.get_id().as_str();
        let from_user = matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let Some(long) = arg.get_long().filter(|_| from_user && !PER_COMMAND.contains(&id)) else { continue };
        if arg.get_action().takes_values() {
            for value in matches.get_raw(id).into_iter().flatten() {
                out.push(format!("--{long}").into());
                out.push(value.to_owned());
            }
        } else {
            out.push(format!("--{long}").into());
        }
    }
    out
}
