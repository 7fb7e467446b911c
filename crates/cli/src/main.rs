//! The `ringfence` command.

mod args;
mod check;
mod explain;
mod record;
mod run;
mod setup;

use clap::Parser;
use ringfence::exit_code;

/// Whether the caller passed descriptor `fd` open.
#[cfg(target_os = "linux")]
fn fd_is_open(fd: i32) -> bool {
    ringfence::linux::inherited_fd_is_open(fd)
}

#[cfg(target_os = "macos")]
fn fd_is_open(fd: i32) -> bool {
    ringfence::macos::inherited_fd_is_open(fd)
}

/// Opens /dev/null on any of the standard descriptors the caller left closed, so that no pipe
/// or socket of ringfence's own lands on 0, 1 or 2 and is taken for the command's stdio.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn fill_closed_stdio() {
    use std::os::fd::IntoRawFd;
    for fd in 0..3 {
        if !fd_is_open(fd) {
            // The lowest free number is the one just found closed.
            if let Ok(null) = std::fs::File::options().read(true).write(true).open("/dev/null") {
                let _ = null.into_raw_fd();
            }
        }
    }
}

fn main() {
    // On Windows this binary is also the runner that starts commands as the sandbox account.
    #[cfg(windows)]
    if let Some(code) = ringfence::windows::runner_entry() {
        std::process::exit(code);
    }
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    fill_closed_stdio();
    // Signals the supervisor forwards are blocked before anything else, so none is lost
    // between now and the moment the sandbox's init can take them.
    #[cfg(target_os = "linux")]
    let signals = run::block_forwarded_signals();
    #[cfg(not(target_os = "linux"))]
    let signals: run::Blocked = None;
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
        args::Command::Explain(a) => explain::explain(a),
        args::Command::Check => check::check(),
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
