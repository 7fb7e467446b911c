//! The sandbox's init: the cloned child, pid 1 of the new pid namespace. It builds the view,
//! confines itself, starts the command, reaps zombies, forwards signals, and reports the
//! command's exit. When it exits, the kernel kills everything left in the namespace.

use crate::error::ChildError;
use crate::protocol::{ChildSetup, Control, Handover, Status, FORWARDED_SIGNALS};
use crate::trace::init as trace;
use crate::{sys, view};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Entry point of the cloned child; never returns. Unless it was born in the run's cgroup,
/// it joins the cgroup before anything else, so all it does and starts is charged there.
///
/// Init runs on a copy of the supervisor's memory, in which the supervisor's frames still own
/// descriptors (`OwnedFd`s of `spawn`); init closes them by number. That is sound because init
/// never returns to those frames: this function diverges, and everything after it either execs
/// or exits, a panic included.
pub(crate) fn main(setup: &ChildSetup, born_in_cgroup: bool) -> ! {
    sys::child_life(125, || {
        let status = StatusPipe(setup.status);
        let joined = if born_in_cgroup { Ok(()) } else { join_cgroup(setup.cgroup_files) };
        match joined.and_then(|()| run(setup, &status)) {
            Ok(never) => match never {},
            Err(err) => {
                status.send(&Status::SetupFailed(err.into_report()));
                sys::exit_now(125)
            }
        }
    })
}

/// Moves this process, still single-threaded, into the run's cgroup: "0" names the writer
/// itself, which in a cgroup v1 `tasks` file moves just this thread without the global lock
/// whose every write waits for an RCU grace period. The supervisor opened the files (the
/// kernel checks the opener's credentials) and closes its copies.
fn join_cgroup(files: &[(OwnedFd, PathBuf)]) -> Result<(), ChildError> {
    for (fd, path) in files {
        sys::write_fd(fd.as_raw_fd(), b"0")
            .map_err(|e| ChildError::internal(format!("joining the run's cgroup ({}): {e}", path.display())))?;
        // SAFETY: the descriptor belongs to the supervisor's frame, which init never returns to
        // (see `main`); nothing uses it after this.
        unsafe { sys::close_fd(fd.as_raw_fd()) };
    }
    Ok(())
}

/// The status pipe's writing end, shared by init and the command's process.
struct StatusPipe<'a>(BorrowedFd<'a>);

impl StatusPipe<'_> {
    /// Sends one line; if the supervisor is gone, nobody is left to tell.
    fn send(&self, status: &Status) {
        let _ = sys::write_fd(self.0.as_raw_fd(), &status.encode());
    }
}

fn write_id_maps(uid: u32, gid: u32) -> Result<(), ChildError> {
    let write = |file: &str, text: String| {
        std::fs::write(file, text)
            .map_err(|e| ChildError::unsupported(format!("writing {file}: {e}"), crate::host::userns_remedy()))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))
}

/// Waits for the supervisor's "go", which carries the Landlock ruleset when there is one.
fn wait_for_go(control: BorrowedFd) -> Option<OwnedFd> {
    match Control::receive(control) {
        Ok(Some(Control::Go { ruleset })) => ruleset,
        // The supervisor died before letting us start: nothing may run unsupervised.
        _ => sys::exit_now(125),
    }
}

/// Hands a descriptor made inside the sandbox to the supervisor; our copy closes when the
/// caller drops it.
fn hand_over(control: BorrowedFd, what: Handover, fd: BorrowedFd) -> Result<(), ChildError> {
    Control::Handover(what, fd)
        .send(control)
        .map_err(|e| ChildError::internal(format!("handing over the {}: {e}", what.what())))
}

/// Opens the command's terminal in the sandbox's own devpts (so `tty` and `ttyname` name a
/// device that exists inside) and hands the master side to the supervisor for the relay.
fn open_terminal(control: BorrowedFd) -> Result<OwnedFd, ChildError> {
    use nix::fcntl::OFlag;
    let fail = |what: &str, e: nix::Error| ChildError::internal(format!("{what}: {e}"));
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| fail("opening /dev/ptmx", e))?;
    nix::pty::grantpt(&master).map_err(|e| fail("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| fail("unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| fail("ptsname", e))?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, nix::sys::stat::Mode::empty())
        .map_err(|e| fail(&name, e))?;
    hand_over(control, Handover::Terminal, master.as_fd())?;
    Ok(slave)
}

/// The sandbox's network: loopback up in its own namespace; the gateway's listening sockets
/// on the gateway's ports there and the transparent path's (every address routed to
/// loopback), handed to the supervisor, which serves them from outside (connections made
/// before it serves wait in the backlog); and, when connect(2) is supervised there, a netlink
/// socket for Unix socket diagnostics, which answers for this namespace.
fn set_up_network(setup: &ChildSetup) -> Result<(), ChildError> {
    if setup.isolate_network {
        sys::loopback_up().map_err(|e| ChildError::internal(format!("bringing up loopback: {e}")))?;
    }
    if setup.gateway {
        for port in [ringfence_policy::HTTP_PROXY_PORT, ringfence_policy::SOCKS_PROXY_PORT] {
            let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
                .map_err(|e| ChildError::internal(format!("listening on 127.0.0.1:{port} for the gateway: {e}")))?;
            hand_over(setup.control, Handover::GatewaySocket, listener.as_fd())?;
        }
        set_up_capture(setup)?;
    }
    if setup.supervise_connect && setup.isolate_network {
        let diag = crate::notify::open_sock_diag()
            .map_err(|e| ChildError::internal(format!("opening a sock_diag netlink socket: {e}")))?;
        hand_over(setup.control, Handover::SockDiag, diag.as_fd())?;
    }
    Ok(())
}

/// The transparent path: every address local, and its sockets handed over.
fn set_up_capture(setup: &ChildSetup) -> Result<(), ChildError> {
    crate::capture::route_everything_to_loopback()
        .map_err(|e| ChildError::internal(format!("routing every address to the sandbox's loopback: {e}")))?;
    let sockets = crate::capture::open_sockets(setup.captured_ports)
        .map_err(|e| ChildError::internal(format!("opening the transparent path's sockets: {e}")))?;
    for sock in &sockets {
        hand_over(setup.control, Handover::CaptureSocket, sock.as_fd())?;
    }
    Ok(())
}

/// Builds the sandbox and starts the command; returns only with an error. The order matters:
/// the view before anything that opens files in it, the terminal in the view's devpts, the
/// network and limits while still privileged in our namespaces, then the confinement.
fn run(setup: &ChildSetup, status: &StatusPipe) -> Result<std::convert::Infallible, ChildError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| ChildError::internal(format!("pdeathsig: {e}")))?;
    write_id_maps(setup.uid, setup.gid)?;
    // Only stdio, the status pipe, the control socket, and the command's stdio survive.
    close_inherited(setup);
    trace("id maps, descriptors closed");

    view::enter(setup.plan, setup.pid_max, &setup.overlay_ids)?;
    trace("mounts (the view)");
    let tty = if setup.terminal { Some(open_terminal(setup.control)?) } else { None };
    // Built here rather than in the supervisor: the child has time while it waits for "go".
    let options = crate::seccomp::Options {
        allow_ptrace: setup.allow_ptrace,
        pin_cpus: setup.rlimits.cpus.is_some(),
        supervise_connect: setup.supervise_connect,
        supervise_exec: setup.supervise_exec,
    };
    let seccomp = crate::seccomp::build(options).map_err(ChildError::internal)?;
    trace("seccomp filter compiled");
    set_up_network(setup)?;
    let _ = nix::unistd::sethostname("ringfence");
    nix::unistd::setsid().map_err(|e| ChildError::internal(format!("setsid: {e}")))?;
    crate::limits::apply_fallback(&setup.rlimits)?;

    trace("network, hostname, session, rlimits");
    let ruleset = confine_until_go(setup, &seccomp)?;
    trace("confined (seccomp), waited for go");
    restrict_landlock(setup, ruleset)?;
    trace("Landlock");
    if setup.session {
        crate::served::serve(setup.control, setup.status, exec_search);
    }
    start_command(setup, tty, status)
}

/// Confines init but for Landlock while the supervisor builds the Landlock ruleset, then waits
/// for "go" and hands the seccomp listener over (connect is supervised). The control socket
/// closes here; returns the ruleset.
fn confine_until_go(setup: &ChildSetup, seccomp: &[seccompiler::sock_filter]) -> Result<Option<OwnedFd>, ChildError> {
    let listener = confine(seccomp, setup.supervise_connect || setup.supervise_exec)?;
    let ruleset = wait_for_go(setup.control);
    if let Some(listener) = listener {
        // The supervisor waits for it right after "go".
        hand_over(setup.control, Handover::SeccompListener, listener.as_fd())?;
    }
    if !setup.session {
        // SAFETY: the supervisor's frame owns the socket and init never returns there (see
        // `main`); nothing uses `setup.control` after this.
        unsafe { sys::close_fd(setup.control.as_raw_fd()) };
    }
    Ok(ruleset)
}

/// Enforces the supervisor's Landlock ruleset; with Landlock, the ruleset must have come.
fn restrict_landlock(setup: &ChildSetup, ruleset: Option<OwnedFd>) -> Result<(), ChildError> {
    let Some(ruleset) = ruleset else {
        if setup.landlock_abi > 0 {
            return Err(ChildError::internal("the supervisor sent no Landlock ruleset".into()));
        }
        return Ok(());
    };
    let overlays: Vec<&std::path::Path> = setup
        .plan
        .ops
        .iter()
        .filter(|op| matches!(op, crate::plan::MountOp::Overlay { .. }))
        .map(|op| op.path())
        .collect();
    crate::landlock_rules::restrict(ruleset.as_raw_fd(), setup.landlock_abi, &overlays).map_err(|e| {
        ChildError::unsupported(format!("Landlock: {e}"), "pass --allow-degraded to run without it".into())
    })
}

/// Forks the command's process, reports "started", and stays to reap and forward signals.
fn start_command(
    setup: &ChildSetup,
    tty: Option<OwnedFd>,
    status: &StatusPipe,
) -> Result<std::convert::Infallible, ChildError> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for sig in FORWARDED_SIGNALS {
        sys::install_noop_handler(*sig as libc::c_int);
        mask.add(*sig);
    }
    mask.thread_block().map_err(|e| ChildError::internal(format!("sigprocmask: {e}")))?;

    // SAFETY: init has one thread (a clone of the single-threaded supervisor that started
    // none), so no lock is held in the copy.
    let command = unsafe { sys::fork_process() }.map_err(|e| ChildError::internal(format!("fork: {e}")))?;
    if command == 0 {
        exec_command(setup, tty.as_ref().map(|t| t.as_raw_fd()), status);
    }
    drop(tty);
    trace("forked the command");
    status.send(&Status::Started);
    reap(Pid::from_raw(command), &mask, status)
}

/// Everything but Landlock: a cgroup namespace rooted at the run's cgroup (best effort: it only
/// hides the host's cgroup paths), no capabilities, no_new_privs, not dumpable, and the seccomp
/// filter, whose listener is returned when `listener` (connect or exec is supervised).
fn confine(seccomp: &[seccompiler::sock_filter], listener: bool) -> Result<Option<OwnedFd>, ChildError> {
    let _ = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    sys::drop_all_capabilities().map_err(|e| ChildError::internal(format!("dropping capabilities: {e}")))?;
    sys::set_no_new_privs().map_err(|e| ChildError::internal(format!("no_new_privs: {e}")))?;
    sys::set_non_dumpable().map_err(|e| ChildError::internal(format!("dumpable: {e}")))?;
    sys::install_seccomp(seccomp, listener).map_err(|e| {
        ChildError::unsupported(
            format!("installing the seccomp filter: {e}"),
            "use a kernel with CONFIG_SECCOMP_FILTER".into(),
        )
    })
}

fn close_inherited(setup: &ChildSetup) {
    let mut keep: Vec<RawFd> = vec![0, 1, 2, setup.status.as_raw_fd(), setup.control.as_raw_fd()];
    keep.extend(setup.stdio.iter().flatten().map(|fd| fd.as_raw_fd()));
    let max = keep.iter().copied().max().unwrap_or(2);
    for fd in 3..=max {
        if !keep.contains(&fd) {
            // SAFETY: the supervisor's frames own these descriptors and init never returns
            // there (see `main`); init uses only the kept ones and those it opens later.
            unsafe { sys::close_fd(fd) };
        }
    }
    // SAFETY: as above.
    unsafe { sys::close_fds_from(max + 1) };
}

/// In the forked command process: the command's standard streams (its terminal, or the
/// launch's descriptors), and no other descriptor but the status pipe. The process execs or
/// exits right after, and no Rust object of it uses a descriptor again.
fn arrange_descriptors(setup: &ChildSetup, tty: Option<RawFd>) {
    if let Some(tty) = tty {
        let _ = nix::unistd::setsid();
        let _ = sys::set_controlling_tty(tty);
        for target in 0..3 {
            // SAFETY: the process execs or exits next (see above).
            let _ = unsafe { sys::dup_onto(tty, target) };
        }
    } else {
        let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        for (target, fd) in setup.stdio.iter().enumerate() {
            if let Some(fd) = fd {
                // SAFETY: the process execs or exits next (see above).
                let _ = unsafe { sys::dup_onto(fd.as_raw_fd(), target as RawFd) };
            }
        }
    }
    let status = setup.status.as_raw_fd().max(3);
    for fd in 3..status {
        // SAFETY: the process execs or exits next (see above).
        unsafe { sys::close_fd(fd) };
    }
    // SAFETY: the process execs or exits next (see above).
    unsafe { sys::close_fds_from(status + 1) };
}

/// In the forked command process: stdio, terminal, session, then exec. Never returns.
fn exec_command(setup: &ChildSetup, tty: Option<RawFd>, status: &StatusPipe) -> ! {
    arrange_descriptors(setup, tty);
    sys::reset_signals();
    // The exec monitor reads this process's exec arguments from its memory, which an
    // unprivileged supervisor can't do while the process is not dumpable (init's copy is not;
    // exec would reset it). Nothing else of the sandbox runs yet that could read it.
    if setup.supervise_exec && sys::set_dumpable().is_err() {
        status.send(&Status::ExecFailed { message: "can't let the exec monitor read the command's exec".into() });
        sys::exit_now(126);
    }
    // The report ends up on the user's terminal: names in it are escaped (and capped, which
    // keeps the line one atomic write).
    use ringfence_audit::untrusted::for_terminal as shown;
    if let Err(e) = nix::unistd::chdir(setup.cwd) {
        status.send(&Status::ExecFailed { message: format!("can't enter {}: {e}", shown(setup.cwd)) });
        sys::exit_now(126);
    }
    let (code, why) = match exec_search(setup.program, setup.args, setup.env) {
        nix::Error::ENOENT | nix::Error::ENOTDIR => (127, "command not found".to_string()),
        other => (126, format!("can't execute: {}", other.desc())),
    };
    status.send(&Status::ExecFailed { message: format!("{}: {why}", shown(setup.program)) });
    sys::exit_now(code)
}

/// execve through the sandbox's own PATH (libc's execvpe would search ringfence's PATH).
fn exec_search(program: &OsStr, args: &[OsString], env: &[(OsString, OsString)]) -> nix::Error {
    let to_c = |s: &[u8]| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> =
        std::iter::once(program.as_bytes()).chain(args.iter().map(|a| a.as_bytes())).map(to_c).collect();
    let envp: Vec<CString> = env.iter().map(|(k, v)| to_c(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect();
    let program = program.as_bytes();
    if program.contains(&b'/') {
        return nix::unistd::execve(&to_c(program), &argv, &envp).unwrap_err();
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_bytes().to_vec())
        .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
    let mut last = nix::Error::ENOENT;
    for dir in path.split(|b| *b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let candidate = to_c(&[dir, b"/", program].concat());
        // A name that isn't there is skipped without an execve: with the exec monitor, each
        // execve is a round trip to the supervisor.
        let present = nix::unistd::access(candidate.as_c_str(), nix::unistd::AccessFlags::F_OK);
        if matches!(present, Err(nix::Error::ENOENT | nix::Error::ENOTDIR)) {
            continue;
        }
        let err = nix::unistd::execve(&candidate, &argv, &envp).unwrap_err();
        if !matches!(err, nix::Error::ENOENT | nix::Error::ENOTDIR) {
            last = err;
        }
    }
    last
}

/// Waits for signals: forwards the forwarded ones to the command's process group, reaps every
/// child, and reports once the command itself is gone.
fn reap(command: Pid, mask: &SigSet, status: &StatusPipe) -> ! {
    loop {
        let Ok(sig) = mask.wait() else { continue };
        if sig != Signal::SIGCHLD {
            if nix::sys::signal::killpg(command, sig).is_err() {
                let _ = nix::sys::signal::kill(command, sig);
            }
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => end(status, &Status::Exited { code }),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                    end(status, &Status::Signaled { signal: sig as i32 })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// Ends the run: kills and reaps everything left in the namespace, then reports. The report
/// thus promises the supervisor that nothing of the sandbox runs any more, so it may clean up
/// while the kernel tears the namespaces down.
fn end(status: &StatusPipe, report: &Status) -> ! {
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    while waitpid(None, None).is_ok() {}
    status.send(report);
    sys::exit_now(0)
}
