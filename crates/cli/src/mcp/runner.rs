//! How one command is run for the agent. Today each command is a `ringfence run` of its own, a
//! child process of the server: the library may start a sandbox only from a process with one
//! thread, and a child also keeps any failure of a run away from the server. Warm sessions can
//! take this place behind the same [`Runner`].

use super::capture::{capture, Captured};
use super::job::Job;
use ringfence_audit::Event;
use serde::Deserialize;
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Runs commands in the sandbox.
pub trait Runner: Send + Sync {
    /// Runs `job` to its end, or until `watch.cancel` fires: then the command and everything it
    /// started are killed before this returns.
    fn run<'a>(&'a self, job: Job, watch: Watch) -> Pin<Box<dyn Future<Output = Result<Ran, String>> + Send + 'a>>;
}

/// What the caller follows while a command runs.
#[derive(Clone, Default)]
pub struct Watch {
    /// The client cancelled the request.
    pub cancel: CancellationToken,
    /// The server is stopping: its client went away.
    pub shutdown: CancellationToken,
    /// Output bytes seen so far, both streams together.
    pub output: Arc<AtomicU64>,
}

/// What `--json-status` says about a run.
#[derive(Clone, Debug, Deserialize)]
pub struct RunStatus {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// ringfence's exit code for the run.
    pub status: i32,
    pub reason: String,
}

/// A command that ran (or could not start).
#[derive(Debug)]
pub struct Ran {
    /// How the run ended; None when ringfence stopped before the command started (its message
    /// is on stderr).
    pub status: Option<RunStatus>,
    /// ringfence's own exit code.
    pub code: Option<i32>,
    pub events: Vec<Event>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
    pub cancelled: bool,
}

/// Each command a child `ringfence run` of this binary, with the server's policy flags.
pub struct Subprocess {
    /// This program.
    pub exe: PathBuf,
    /// The policy flags the server was started with, for every run.
    pub policy_args: Vec<OsString>,
    /// Where each run's event log and status go, a folder per run.
    pub scratch: PathBuf,
    pub runs: AtomicU64,
}

/// How long a cancelled or overdue run gets to end by itself once its lifeline is cut, before
/// its `ringfence run` is killed (its sandbox then dies with it).
const GRACE: Duration = Duration::from_secs(10);

impl Runner for Subprocess {
    fn run<'a>(&'a self, job: Job, watch: Watch) -> Pin<Box<dyn Future<Output = Result<Ran, String>> + Send + 'a>> {
        Box::pin(self.run_job(job, watch))
    }
}

impl Subprocess {
    async fn run_job(&self, job: Job, watch: Watch) -> Result<Ran, String> {
        let dir = self.run_dir()?;
        let _remove = RemoveOnDrop(dir.clone());
        let started = Instant::now();
        let mut child =
            self.command(&job, &dir).spawn().map_err(|e| format!("starting {}: {e}", self.exe.display()))?;
        let mut lifeline = child.stdin.take();
        if let Some(pipe) = lifeline.as_mut() {
            // A run that stopped early (a policy error) reads none of it: nothing to report.
            let _ = pipe.write_all(format!("{}\n", job.stdin.len()).as_bytes()).await;
            let _ = pipe.write_all(&job.stdin).await;
        }
        let stdout = tokio::spawn(capture(child.stdout.take(), watch.output.clone()));
        let stderr = tokio::spawn(capture(child.stderr.take(), watch.output.clone()));
        // ringfence enforces the timeout itself; this bound only keeps a stuck run from
        // holding the request forever.
        let overdue = tokio::time::sleep(job.timeout + GRACE + GRACE);
        let cancelled = tokio::select! {
            _ = child.wait() => false,
            _ = watch.cancel.cancelled() => true,
            _ = watch.shutdown.cancelled() => true,
            _ = overdue => true,
        };
        drop(lifeline);
        let code = match tokio::time::timeout(GRACE, child.wait()).await {
            Ok(status) => status.ok().and_then(|s| s.code()),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        let (stdout, stderr) = (stdout.await.unwrap_or_default(), stderr.await.unwrap_or_default());
        Ok(Ran {
            status: read_status(&dir.join("status.json")),
            code,
            events: ringfence_audit::read_events(&dir.join("events.jsonl")).unwrap_or_default(),
            stdout,
            stderr,
            duration: started.elapsed(),
            cancelled,
        })
    }

    /// `ringfence run` with the server's policy, this command's own settings, and its input
    /// and lifeline on stdin.
    fn command(&self, job: &Job, dir: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("run").args(&self.policy_args).args(["--no-pty", "--stdin-lifeline"]);
        cmd.arg("--events").arg(dir.join("events.jsonl"));
        cmd.arg("--json-status").arg(dir.join("status.json"));
        cmd.arg("--timeout").arg(format!("{}ms", job.timeout.as_millis().max(1)));
        if let Some(cwd) = &job.cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        cmd.arg("--").args(&job.argv);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd
    }

    /// A new folder for one run's records.
    fn run_dir(&self) -> Result<PathBuf, String> {
        loop {
            let n = self.runs.fetch_add(1, Ordering::Relaxed);
            let dir = self.scratch.join(format!("run-{n}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("making {}: {e}", dir.display())),
            }
        }
    }
}

fn read_status(path: &Path) -> Option<RunStatus> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Removes a run's records once they were read (or the request was dropped).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
