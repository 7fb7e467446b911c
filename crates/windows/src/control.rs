//! The supervisor's end of the control pipes to the runner: waiting for it to connect, its
//! first message, its replies (each within a deadline), and what its failures mean.

use crate::error::LaunchError;
use crate::protocol::{self, FromRunner, ToRunner, PROTOCOL_VERSION};
use crate::sid::Sid;
use crate::sys::pipe::{self, ControlServer};
use crate::sys::process::{self, Started};
use std::fs::File;
use std::io::Write;
use std::os::windows::io::AsHandle;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the runner may take to connect and to answer.
const RUNNER_TIMEOUT: Duration = Duration::from_secs(30);

/// The control pipe to the runner: frames go out on `write`; a thread reads the replies.
pub struct Control {
    pub write: Arc<Mutex<File>>,
    replies: mpsc::Receiver<Result<FromRunner, String>>,
}

impl Control {
    pub fn new((write, mut read): (File, File)) -> Result<Control, LaunchError> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let msg = match protocol::read_frame(&mut read) {
                Ok(Some(frame)) => FromRunner::decode(&frame),
                Ok(None) => Err("the runner closed the control pipe".into()),
                Err(e) => Err(format!("reading from the runner: {e}")),
            };
            let end = msg.is_err();
            if tx.send(msg).is_err() || end {
                break;
            }
        });
        Ok(Control { write: Arc::new(Mutex::new(write)), replies: rx })
    }

    pub fn send(&self, msg: &ToRunner) -> Result<(), LaunchError> {
        let mut w = self.write.lock().map_err(|_| LaunchError::internal("the control pipe's lock"))?;
        w.write_all(&msg.encode()).map_err(|e| LaunchError::internal(format!("writing to the runner: {e}")))
    }

    /// The runner's next reply; its report of a failure, its death or its silence for
    /// [`RUNNER_TIMEOUT`] is an error.
    pub fn recv(&self, runner: &Started) -> Result<FromRunner, LaunchError> {
        let deadline = Instant::now() + RUNNER_TIMEOUT;
        loop {
            match self.replies.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(FromRunner::Failed { stage, code, message })) => {
                    return Err(runner_failed(&stage, code, &message))
                }
                Ok(Ok(msg)) => return Ok(msg),
                Ok(Err(e)) => return Err(runner_gone(runner, &e)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(runner_gone(runner, "no reply")),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    return Err(LaunchError::internal("the runner did not answer within 30 seconds"))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// What the runner's report that `stage` failed with Win32 error `code` means for the user.
fn runner_failed(stage: &str, code: u32, message: &str) -> LaunchError {
    let text = format!("starting the command: {stage} failed: {message}");
    match code {
        2 | 3 => LaunchError::policy(text, "check that the program exists"),
        5 => LaunchError::policy(
            text,
            "the sandbox account may not run this program or enter the working folder; make them readable \
             (a `read` rule) or move them",
        ),
        193 | 216 => LaunchError::policy(text, "the program is not a Windows executable for this machine"),
        _ => LaunchError::internal(text),
    }
}

/// The error for a runner that stopped answering, with what its exit code tells.
fn runner_gone(runner: &Started, why: &str) -> LaunchError {
    let code = process::exit_code(&runner.process).unwrap_or(0);
    let hint = match code {
        259 => String::new(),
        0xC000_0142 => " (it could not initialize: the sandbox account may lack access to this window station)".into(),
        0xC000_0022 => " (access denied while loading)".into(),
        c => format!(" (exit code {c:#x})"),
    };
    LaunchError::internal(format!("the runner stopped during set-up: {why}{hint}"))
}

/// Waits for the runner to connect to the control pipe, or to die.
pub fn accept(server: ControlServer, name: &str, runner: &Started) -> Result<(File, File), LaunchError> {
    let (tx, rx) = mpsc::channel();
    let pid = runner.pid;
    let t = std::thread::spawn(move || {
        let _ = tx.send(server.accept(pid));
    });
    let deadline = Instant::now() + RUNNER_TIMEOUT;
    loop {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(50)) {
            let _ = t.join();
            return r;
        }
        let exited = process::wait_any(&[runner.process.as_handle()], Some(Duration::ZERO))?.is_some();
        if exited || Instant::now() > deadline {
            // Connect ourselves to end the blocking accept; it then refuses us by pid.
            pipe::poke(name);
            let _ = rx.recv();
            let _ = t.join();
            return Err(runner_gone(runner, if exited { "it exited before connecting" } else { "it never connected" }));
        }
    }
}

/// The runner's first message: its protocol and who it runs as; returns its logon SID.
pub fn hello(control: &Control, runner: &Started, account: &Sid) -> Result<Sid, LaunchError> {
    match control.recv(runner)? {
        FromRunner::Hello { version, user, logon, .. } => {
            if version != PROTOCOL_VERSION {
                return Err(crate::error::needs_setup(format!(
                    "the installed runner speaks protocol {version}, this ringfence {PROTOCOL_VERSION}"
                )));
            }
            if Sid::parse(&user).ok().as_ref() != Some(account) {
                return Err(LaunchError::internal(format!("the runner runs as {user}, not as {account}")));
            }
            Sid::parse(&logon).map_err(LaunchError::internal)
        }
        other => Err(LaunchError::internal(format!("unexpected first message from the runner: {other:?}"))),
    }
}
