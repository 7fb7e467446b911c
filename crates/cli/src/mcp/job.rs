//! What `run_command` asks for, checked before anything runs: the agent can name a command, a
//! folder inside the workspace, a shorter timeout and some input, and nothing that would change
//! the policy the server started with.

use rmcp::schemars;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a command may run when the agent does not say (the server's `--timeout` lowers it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest a command may run when the server has no `--timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The arguments of `run_command`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct RunCommandParams {
    /// A shell command line, run with `sh -c` inside the sandbox. Give this or `argv`.
    pub command: Option<String>,
    /// A program and its arguments, run as they are (no shell). Give this or `command`.
    pub argv: Option<Vec<String>>,
    /// The command's directory: relative to the workspace, or an absolute path inside it.
    /// Default: the workspace.
    pub cwd: Option<String>,
    /// Seconds before the command is killed (default 600; the server's own limit caps it).
    pub timeout_s: Option<f64>,
    /// Text for the command's standard input (default: none, the input is empty).
    pub stdin: Option<String>,
}

/// A command to run, checked.
#[derive(Clone, Debug)]
pub struct Job {
    pub argv: Vec<String>,
    /// The command's directory when not the workspace (absolute, resolved, inside it).
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    /// Set when the agent asked for more time than the server allows.
    pub timeout_capped: bool,
    pub stdin: Vec<u8>,
}

impl Job {
    /// Checks the agent's request against the workspace and the server's time limit.
    pub fn new(params: RunCommandParams, workspace: &Path, limit: Option<Duration>) -> Result<Job, String> {
        let argv = match (params.command, params.argv) {
            (Some(command), None) => vec!["sh".to_string(), "-c".to_string(), command],
            (None, Some(argv)) if !argv.is_empty() => argv,
            (None, Some(_)) => return Err("`argv` is empty: name at least the program".into()),
            (Some(_), Some(_)) => return Err("give `command` or `argv`, not both".into()),
            (None, None) => {
                return Err("give `command` (a shell command line) or `argv` (a program and its arguments)".into())
            }
        };
        if argv.iter().any(|a| a.contains('\0')) {
            return Err("an argument holds a NUL byte, which no program can receive".into());
        }
        let cwd = match params.cwd.as_deref().filter(|c| !c.is_empty()) {
            Some(dir) => Some(crate::run::command_dir(workspace, Path::new(dir)).map_err(|e| format!("cwd {e}"))?),
            None => None,
        };
        let (timeout, timeout_capped) = timeout(params.timeout_s, limit)?;
        let stdin = params.stdin.unwrap_or_default().into_bytes();
        Ok(Job { argv, cwd, timeout, timeout_capped, stdin })
    }
}

/// The command's timeout: what the agent asked for (or the default), never more than the
/// server's limit; and whether the limit cut it.
fn timeout(asked: Option<f64>, limit: Option<Duration>) -> Result<(Duration, bool), String> {
    let cap = limit.unwrap_or(MAX_TIMEOUT);
    let wanted = match asked {
        Some(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX),
        Some(s) => return Err(format!("`timeout_s` {s} is not a positive number of seconds")),
        None => DEFAULT_TIMEOUT,
    };
    Ok((wanted.min(cap), asked.is_some() && wanted > cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> Result<RunCommandParams, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn commands_and_argv() {
        let ws = std::env::temp_dir();
        let ws = ws.canonicalize().unwrap();
        let job = Job::new(params(serde_json::json!({"command": "echo hi"})).unwrap(), &ws, None).unwrap();
        assert_eq!(job.argv, ["sh", "-c", "echo hi"]);
        assert_eq!((job.timeout, job.cwd), (DEFAULT_TIMEOUT, None));
        let job = Job::new(params(serde_json::json!({"argv": ["ls", "-l"]})).unwrap(), &ws, None).unwrap();
        assert_eq!(job.argv, ["ls", "-l"]);
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"argv": []}),
            serde_json::json!({"command": "x", "argv": ["x"]}),
            serde_json::json!({"argv": ["a\u{0}b"]}),
            serde_json::json!({"command": "x", "timeout_s": -1}),
            serde_json::json!({"command": "x", "cwd": "/"}),
        ] {
            assert!(Job::new(params(bad.clone()).unwrap(), &ws, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_arguments_are_refused() {
        assert!(params(serde_json::json!({"command": "x", "env": {"A": "1"}})).is_err());
        assert!(params(serde_json::json!({"command": "x", "allow_host": "example.com"})).is_err());
    }

    #[test]
    fn the_server_limit_caps_the_timeout() {
        let ten = Duration::from_secs(10);
        assert_eq!(timeout(Some(5.0), Some(ten)).unwrap(), (Duration::from_secs(5), false));
        assert_eq!(timeout(Some(50.0), Some(ten)).unwrap(), (ten, true));
        assert_eq!(timeout(None, Some(ten)).unwrap(), (ten, false));
        assert_eq!(timeout(Some(1e300), None).unwrap(), (MAX_TIMEOUT, true));
        assert!(timeout(Some(f64::NAN), None).is_err());
    }
}
