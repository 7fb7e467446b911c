//! The `ringfence` command. It asks the library for everything and prints what it gets: no
//! platform code lives here.

#![forbid(unsafe_code)]
#![deny(clippy::too_many_lines)]

mod args;
mod check;
mod explain;
mod log;
mod mcp;
mod profile;
mod record;
mod run;
mod session;
mod setup;
mod summary;

use clap::Parser;
use ringfence::exit_code;

fn main() {
    // First of all: the signals the supervisor forwards are blocked, so none is lost before a
    // sandbox can take them (and on Windows this binary may be the backend's runner).
    let signals = match ringfence::start_process() {
        Ok(signals) => signals,
        Err(code) => std::process::exit(code),
    };
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit_code::POLICY } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        args::Command::Run(a) => run::run(a, signals),
        args::Command::Session(c) => session::session(c, signals),
        args::Command::Explain(a) => explain::explain(a),
        args::Command::Check => check::check(),
        args::Command::Mcp(a) => mcp::serve(a, signals),
        args::Command::Profile(c) => profile::profile(c),
        args::Command::Log(a) => log::log(a),
        args::Command::Setup => setup::setup(),
        args::Command::Uninstall => setup::uninstall(),
        args::Command::Schema => {
            emit(&ringfence_policy::config::json_schema());
            0
        }
    };
    std::process::exit(code);
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Prints an error the way every ringfence error looks. Errors quote paths, names and config
/// content a sandbox may have chosen: every line is shown escaped and bounded.
pub fn report(err: &dyn std::fmt::Display) {
    use ringfence_audit::untrusted::{lines_for_terminal, LINE_CAP};
    eprintln!("ringfence: error: {}", lines_for_terminal(&err.to_string(), LINE_CAP));
}
