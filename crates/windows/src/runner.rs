//! The runner: this same program, started as the sandbox account by the supervisor (through
//! the secondary logon service). Only a process of the account itself may start a child from a
//! restricted copy of its own token without holding privileges, so the runner makes the
//! command's token, starts the command suspended, puts it in the supervisor's job, and hands
//! the supervisor the command's handles. Without a terminal it then exits, before the command
//! runs a single instruction; with one it stays to own the pseudoconsole, with its process and
//! threads closed to the command.

use crate::acl::{mask, Ace, Acl};
use crate::protocol::{read_frame, FromRunner, ToRunner, PROTOCOL_VERSION};
use crate::sid::{capability, well_known, Sid};
use crate::sys::console::PseudoConsole;
use crate::sys::process::{self, adopt, Launch};
use crate::sys::{job, message, pipe, security};
use std::fs::File;
use std::io::Write;
use std::os::windows::io::{AsHandle, AsRawHandle, OwnedHandle};
use std::sync::Arc;
use std::time::Duration;
use windows_sys::Win32::Security::TOKEN_QUERY;

/// PROCESS_QUERY_LIMITED_INFORMATION.
const QUERY_LIMITED: u32 = 0x1000;

/// The command's default DACL: its processes, threads and unnamed objects are open to SYSTEM
/// and to this run's logon SID; the owner (the sandbox account, shared by every run) gets
/// no implicit rights, so one run's command can't open another's.
pub fn command_default_dacl(logon: &Sid) -> Acl {
    Acl::new(vec![
        Ace::Allow { flags: 0, mask: mask::GENERIC_ALL, sid: well_known::local_system() },
        Ace::Allow { flags: 0, mask: mask::GENERIC_ALL, sid: logon.clone() },
        Ace::Allow { flags: 0, mask: mask::READ_CONTROL, sid: well_known::owner_rights() },
    ])
}

/// The runner's own DACL (and default DACL, for its threads and the console host it starts):
/// the command runs as the same account with the same logon SID, so it is granted nothing
/// but waiting and querying.
pub fn runner_dacl(account: &Sid, extra: u32) -> Acl {
    Acl::new(vec![
        Ace::Allow { flags: 0, mask: mask::GENERIC_ALL, sid: well_known::local_system() },
        Ace::Allow { flags: 0, mask: mask::SYNCHRONIZE | extra, sid: account.clone() },
        Ace::Allow { flags: 0, mask: mask::READ_CONTROL, sid: well_known::owner_rights() },
    ])
}

/// The command token's restricting SIDs (the run's logon SID, the capability SID, and the
/// slots of its writable roots) and its deny-only groups (every other slot), from the request.
pub fn token_sids(logon: &Sid, restricting: &[String], deny_only: &[String]) -> Result<(Vec<Sid>, Vec<Sid>), String> {
    let parse = |list: &[String]| list.iter().map(|s| Sid::parse(s)).collect::<Result<Vec<Sid>, String>>();
    let mut all = vec![logon.clone(), capability()];
    all.extend(parse(restricting)?);
    Ok((all, parse(deny_only)?))
}

struct Channel {
    /// From the supervisor.
    down: File,
    /// To the supervisor.
    up: File,
}

impl Channel {
    fn send(&mut self, msg: FromRunner) -> Result<(), ()> {
        self.up.write_all(&msg.encode()).map_err(|_| ())
    }

    fn fail<T>(&mut self, stage: &str, code: u32, message: String) -> Result<T, ()> {
        let _ = self.send(FromRunner::Failed { stage: stage.into(), code, message });
        Err(())
    }

    fn recv(&mut self) -> Option<ToRunner> {
        let frame = read_frame(&mut self.down).ok()??;
        ToRunner::decode(&frame).ok()
    }
}

/// Runs the runner on control pipe `name`; returns the process exit code.
pub fn main(name: &str) -> i32 {
    let mut pipe = None;
    for _ in 0..50 {
        match pipe::connect(name) {
            Ok(p) => {
                pipe = Some(p);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let Some((down, up)) = pipe else { return 2 };
    match run(Channel { down, up }) {
        Ok(()) => 0,
        Err(()) => 3,
    }
}

fn harden(account: &Sid) -> Result<(), String> {
    let token =
        security::own_token(TOKEN_QUERY | windows_sys::Win32::Security::TOKEN_ADJUST_DEFAULT).map_err(|e| e.message)?;
    security::set_default_dacl(&token, &runner_dacl(account, 0)).map_err(|e| e.message)?;
    let me = process::current_process();
    security::set_handle_dacl(me, false, &runner_dacl(account, QUERY_LIMITED), false).map_err(|e| e.message)?;
    security::set_handle_dacl(process::current_thread(), false, &runner_dacl(account, 0), false)
        .map_err(|e| e.message)?;
    Ok(())
}

fn run(mut ch: Channel) -> Result<(), ()> {
    let token = match security::own_token(TOKEN_QUERY) {
        Ok(t) => t,
        Err(e) => return ch.fail("OpenProcessToken", 0, e.message),
    };
    let user = security::token_user(&token).map_err(|_| ())?;
    let logon = match security::token_logon_sid(&token) {
        Ok(Some(s)) => s,
        Ok(None) => return ch.fail("logon SID", 0, "the runner's token has no logon SID".into()),
        Err(e) => return ch.fail("logon SID", 0, e.message),
    };
    drop(token);
    if let Err(e) = harden(&user) {
        return ch.fail("protecting the runner", 0, e);
    }
    ch.send(FromRunner::Hello {
        version: PROTOCOL_VERSION,
        pid: crate::sys::current_pid(),
        user: user.to_string(),
        logon: logon.to_string(),
    })?;
    let Some(ToRunner::Launch(req)) = ch.recv() else { return Err(()) };
    // SAFETY: the supervisor duplicated these handles into this process for it alone.
    let adopt_opt = |v: u64| (v != 0).then(|| unsafe { adopt(v) });
    let job_handle = adopt_opt(req.job).ok_or(())?;
    let stdio: [Option<OwnedHandle>; 3] = req.stdio.map(adopt_opt);
    let console = match &req.console {
        Some(c) => {
            let (input, output) = (adopt_opt(c.input).ok_or(())?, adopt_opt(c.output).ok_or(())?);
            match PseudoConsole::create(input.as_handle(), output.as_handle(), c.cols, c.rows) {
                Ok(pc) => Some(Arc::new(pc)),
                Err(e) => return ch.fail("CreatePseudoConsole", 0, e.message),
            }
        }
        None => None,
    };
    let restricted = command_token(&mut ch, &logon, &req)?;
    let launch = Launch {
        application: &req.application,
        command_line: &req.command_line,
        env_block: &req.env_block,
        cwd: &req.cwd,
        desktop: Some(&req.desktop),
        stdio: console.is_none().then(|| stdio.each_ref().map(|h| h.as_ref().map(OwnedHandle::as_handle))),
        pseudoconsole: console.as_deref(),
    };
    let child = match process::create_suspended(Some(&restricted), &launch) {
        Ok(c) => c,
        Err(code) => return ch.fail("CreateProcessAsUserW", code, message(code)),
    };
    drop(restricted);
    if let Err(e) = job::assign(job_handle.as_handle(), child.process.as_handle()) {
        process::terminate(&child.process, 1);
        return ch.fail("AssignProcessToJobObject", 0, e.message);
    }
    drop(job_handle);
    drop(stdio);
    ch.send(FromRunner::Started {
        pid: child.pid,
        process: child.process.as_raw_handle() as u64,
        thread: child.thread.as_raw_handle() as u64,
    })?;
    match ch.recv() {
        Some(ToRunner::Go) => {}
        _ => {
            process::terminate(&child.process, 1);
            return Err(());
        }
    }
    match console {
        Some(console) => serve_terminal(ch, console, child),
        None => Ok(()),
    }
}

/// The command's restricted token, as the request describes it.
fn command_token(ch: &mut Channel, logon: &Sid, req: &crate::protocol::LaunchRequest) -> Result<OwnedHandle, ()> {
    let (restricting, deny_only) = match token_sids(logon, &req.restricting, &req.deny_only) {
        Ok(v) => v,
        Err(e) => return ch.fail("the command's token", 0, e),
    };
    security::restricted_token(&restricting, &deny_only, &command_default_dacl(logon))
        .or_else(|e| ch.fail("CreateRestrictedToken", 0, e.message))
}

/// A terminal run: keeps the pseudoconsole until the command ends, resizing it on request.
fn serve_terminal(ch: Channel, console: Arc<PseudoConsole>, child: process::Started) -> Result<(), ()> {
    let resize_console = Arc::clone(&console);
    let Channel { down: mut reader, up } = ch;
    let resizer = std::thread::spawn(move || {
        while let Ok(Some(frame)) = read_frame(&mut reader) {
            if let Ok(ToRunner::Resize { cols, rows }) = ToRunner::decode(&frame) {
                resize_console.resize(cols, rows);
            }
        }
    });
    let _ = process::wait_any(&[child.process.as_handle()], None);
    drop(child);
    drop(console);
    // The supervisor closes the control pipe once the command has ended; the resizer's
    // reference to the console goes with it, which closes the console and ends its output.
    let _ = resizer.join();
    drop(up);
    Ok(())
}
