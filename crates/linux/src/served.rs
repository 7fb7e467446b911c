//! Init of a session: instead of one command, it runs each command its supervisor orders
//! (`protocol::Order`), for as long as the supervisor keeps the control socket open. Init is
//! already confined (seccomp, Landlock, no capabilities) when it gets here, and so is all it
//! forks.
//!
//! Each command gets a **shepherd**: a child of init that is the child subreaper of everything
//! the command starts, so nothing of it can leave its tree. When the command exits, the
//! shepherd kills and reaps the whole tree (unless the command was started in the background)
//! and only then reports the exit: the next command never meets what the previous one left.
//! A shepherd that dies unexpectedly (a command of the sandbox may kill it: same uid) leaves
//! its tree to init, which kills every child of its own that is not a shepherd.

use crate::protocol::{ExecOrder, Order, Status, FORWARDED_SIGNALS, MAX_ORDER};
use crate::sys;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use ringfence_backend::Exit;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// Execs the program with its arguments and environment through the sandbox's `PATH`;
/// returns only with the error.
pub(crate) type ExecFn =
    fn(&std::ffi::OsStr, &[std::ffi::OsString], &[(std::ffi::OsString, std::ffi::OsString)]) -> nix::Error;

/// Serves orders until the supervisor closes the control socket, then exits (and the kernel
/// kills everything left in the namespace).
pub(crate) fn serve(control: BorrowedFd, status: BorrowedFd, exec: ExecFn) -> ! {
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let _ = chld.thread_block();
    let Ok(reaped) = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) else {
        sys::exit_now(125)
    };
    let _ = sys::write_fd(status.as_raw_fd(), &Status::Started.encode());
    let mut shepherds: HashMap<i32, u64> = HashMap::new();
    let mut buf = vec![0u8; MAX_ORDER];
    loop {
        let mut fds = [PollFd::new(control, PollFlags::POLLIN), PollFd::new(reaped.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        let (orders, children) = (ready(0), ready(1));
        if children {
            while let Ok(Some(_)) = reaped.read_signal() {}
            reap_shepherds(&mut shepherds, status);
        }
        if orders {
            match sys::recv_with_fds(control, &mut buf) {
                Ok((0, _)) | Err(_) => sys::exit_now(0),
                Ok((n, streams)) => {
                    obey(Order::decode(&buf[..n]), streams, &mut shepherds, [control, status, reaped.as_fd()], exec)
                }
            }
        }
    }
}

/// Carries out one order.
fn obey(
    order: Option<Order>,
    streams: Vec<OwnedFd>,
    shepherds: &mut HashMap<i32, u64>,
    own: [BorrowedFd; 3],
    exec: ExecFn,
) {
    match order {
        Some(Order::Exec(order)) => {
            let Ok(streams) = <[OwnedFd; 3]>::try_from(streams) else { return };
            let id = order.id;
            // SAFETY: init is single-threaded (a clone of the single-threaded supervisor that
            // started no thread), so no lock is held in the copy.
            match unsafe { sys::fork_process() } {
                Ok(0) => sys::child_life(125, || shepherd(&order, &streams, own, exec)),
                Ok(pid) => {
                    shepherds.insert(pid, id);
                }
                Err(_) => report(own[1], id, Exit::Code(125)),
            }
        }
        Some(Order::Signal { id, signal }) => {
            if let Some((&pid, _)) = shepherds.iter().find(|(_, &i)| i == id) {
                if let Ok(signal) = Signal::try_from(signal) {
                    let _ = kill(Pid::from_raw(pid), signal);
                }
            }
        }
        None => {}
    }
}

fn report(status: BorrowedFd, id: u64, exit: Exit) {
    let _ = sys::write_fd(status.as_raw_fd(), &Status::ExecEnded { id, exit }.encode());
}

/// Reaps the shepherds that ended. One that did not end by itself may not have reported: its
/// command is reported killed (the supervisor keeps the first report of each command), and
/// whatever it left, now init's children, is killed.
fn reap_shepherds(shepherds: &mut HashMap<i32, u64>, status: BorrowedFd) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                if let (Some(id), true) = (shepherds.remove(&pid.as_raw()), code != 0) {
                    report(status, id, Exit::Signal(libc::SIGKILL));
                }
            }
            Ok(WaitStatus::Signaled(pid, _, _)) => {
                if let Some(id) = shepherds.remove(&pid.as_raw()) {
                    report(status, id, Exit::Signal(libc::SIGKILL));
                }
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
    for child in children() {
        if !shepherds.contains_key(&child) {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
    }
}

/// The calling process's children (in the sandbox's own /proc).
fn children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The shepherd of one command: starts it, passes signals on to its process group, and when
/// it exits ends its tree (unless in the background) before reporting. Never returns.
fn shepherd(order: &ExecOrder, streams: &[OwnedFd; 3], own: [BorrowedFd; 3], exec: ExecFn) -> std::convert::Infallible {
    let [control, status, reaped] = own;
    // SAFETY: the shepherd is a fork of init and never returns to its frames; it uses neither
    // descriptor again.
    unsafe {
        sys::close_fd(control.as_raw_fd());
    }
    // SAFETY: as above.
    unsafe { sys::close_fd(reaped.as_raw_fd()) };
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for sig in FORWARDED_SIGNALS {
        mask.add(*sig);
    }
    let _ = mask.thread_block();
    if nix::sys::prctl::set_child_subreaper(true).is_err() {
        sys::exit_now(125);
    }
    // SAFETY: the shepherd is single-threaded (a fork of single-threaded init).
    let command = match unsafe { sys::fork_process() } {
        Ok(0) => start(order, streams, status, exec),
        Ok(pid) => {
            // The command's streams are its own: a shepherd holding them would keep the
            // caller's pipes open as long as a background job runs.
            for stream in streams {
                // SAFETY: init's frame owns these and the shepherd never returns there.
                unsafe { sys::close_fd(stream.as_raw_fd()) };
            }
            Pid::from_raw(pid)
        }
        Err(_) => {
            report(status, order.id, Exit::Code(125));
            sys::exit_now(0)
        }
    };
    let exit = watch(command, &mask);
    if !order.background {
        end_tree();
    }
    report(status, order.id, exit);
    while waitpid(None, None).is_ok() {}
    sys::exit_now(0)
}

/// Waits for the command, passing the forwarded signals on to its process group; how it
/// ended.
fn watch(command: Pid, mask: &SigSet) -> Exit {
    loop {
        let Ok(sig) = mask.wait() else { continue };
        if sig != Signal::SIGCHLD {
            if killpg(command, sig).is_err() {
                let _ = kill(command, sig);
            }
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => return Exit::Code(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => return Exit::Signal(sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Kills and reaps everything the command left: as the subreaper, the shepherd inherits each
/// orphan before its parent can be reaped, so the loop ends only when the tree is empty.
fn end_tree() {
    loop {
        for child in children() {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
        if waitpid(None, None).is_err() {
            return;
        }
    }
}

/// In the command's process: its own process group, its streams, nothing else open but what
/// it needs to report, default signals, its folder, then the program. Never returns.
fn start(order: &ExecOrder, streams: &[OwnedFd; 3], status: BorrowedFd, exec: ExecFn) -> ! {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // Above the standard numbers first, so that none is overwritten before it is copied.
    let high: Vec<RawFd> =
        streams.iter().map(|s| nix::fcntl::fcntl(s, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)).unwrap_or(-1)).collect();
    for (target, fd) in high.iter().enumerate() {
        // SAFETY: the process execs or exits next; nothing of Rust's uses these numbers.
        let _ = unsafe { sys::dup_onto(*fd, target as RawFd) };
    }
    let _ = status;
    // SAFETY: as above; the status pipe is not the command's.
    unsafe { sys::close_fds_from(3) };
    sys::reset_signals();
    use ringfence_audit::untrusted::for_terminal as shown;
    let fail = |code: i32, message: String| -> ! {
        let _ = sys::write_fd(2, format!("ringfence: {message}\n").as_bytes());
        sys::exit_now(code)
    };
    if let Err(e) = nix::unistd::chdir(order.cwd.as_path()) {
        fail(126, format!("can't enter {}: {e}", shown(&order.cwd)));
    }
    // As for a run's command: the exec monitor must read this exec's arguments from our memory,
    // which an unprivileged supervisor can't while we are not dumpable (exec resets it anyway).
    if sys::set_dumpable().is_err() {
        fail(126, "can't let the exec monitor read the command's exec".into());
    }
    let (code, why) = match exec(&order.program, &order.args, &order.env) {
        nix::Error::ENOENT | nix::Error::ENOTDIR => (127, "command not found".to_string()),
        other => (126, format!("can't execute: {}", other.desc())),
    };
    fail(code, format!("{}: {why}", shown(&order.program)))
}
