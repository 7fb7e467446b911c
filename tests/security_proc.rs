//! Threat 4, touching host processes (signals, /proc, ptrace, terminal injection), and threat 5,
//! outliving the run or exhausting the host (daemons, a killed supervisor, fork bombs, memory,
//! time, /tmp). Every test runs as root and as nobody, attacks from inside, and checks the host:
//! the victim process is alive, no process of the run is left, no cgroup or placeholder remains.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A host process of the run's identity (so only the sandbox protects it), killed on drop.
struct Victim {
    child: Child,
    arg: String,
}

impl Victim {
    /// `sleep <unique>` with a secret in its environment.
    fn spawn(env: &Env, secret: &str) -> Victim {
        let arg = sleep_marker();
        let mut cmd = env.host_command(&["sleep", &arg]);
        cmd.env("SECRET", secret).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        let v = Victim { child, arg };
        assert!(poll_until(Duration::from_secs(5), || !pids_with_arg(&v.arg).is_empty()), "the victim did not start");
        v
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&self) -> bool {
        is_alive(self.pid())
    }

    /// The process state letter from /proc/PID/stat (S, T, t, ...).
    fn state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()).unwrap_or('?')
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host process can't be signalled (kill, kill -0, python os.kill, kill -9 -1), seen in /proc
/// or ps, nor can its environ or cmdline be read; it is still alive afterwards. Killing the
/// sandbox's own child works (control). (The script spells its success words split, so that
/// `ps` listing the script itself can't fake a hit.)
#[test]
fn host_processes_are_invisible_and_unkillable() {
    for who in identities() {
        let env = Env::new(who);
        let secret = marker("environ");
        let victim = Victim::spawn(&env, &secret);
        let pid = victim.pid();
        let script = format!(
            "kill -9 {pid} && echo KIL''LED; kill -0 {pid} && echo SIG''NALLED; \
             python3 -c 'import os; os.kill({pid}, 9); print(\"KIL\" \"LED\")' 2>/dev/null; \
             [ -e /proc/{pid} ] && echo VIS''IBLE; cat /proc/{pid}/environ /proc/{pid}/cmdline 2>&1; \
             echo BEGIN''PS; ps -eo args; echo END''PS; \
             for p in /proc/[0-9]*; do cat $p/environ 2>/dev/null | tr '\\0' '\\n'; done; \
             sleep 100 & c=$!; kill -9 $c && wait $c; echo CONTROL-KILL=$?"
        );
        let out = env.run_sh(&[], &script);
        let text = both(&out);
        assert!(text.contains("CONTROL-KILL=137"), "{who:?}: killing its own child failed (control):\n{text}");
        for bad in ["KILLED", "SIGNALLED", "VISIBLE", &secret] {
            assert!(!text.contains(bad), "{who:?}: {bad}:\n{text}");
        }
        let ps = text.split("BEGINPS").nth(1).and_then(|t| t.split("ENDPS").next()).unwrap_or_default();
        assert!(ps.contains("ps -eo args"), "{who:?}: ps did not run (control):\n{text}");
        assert!(
            !ps.lines().any(|l| l.trim() == format!("sleep {}", victim.arg)),
            "{who:?}: ps shows the victim:\n{ps}"
        );
        assert!(victim.alive(), "{who:?}: the host process died");

        let out = env.run_sh(&[], "kill -KILL -1; sleep 0.2; echo after");
        assert!(victim.alive(), "{who:?}: kill -1 reached the host process:\n{}", both(&out));
    }
}

/// x86_64 system call numbers.
const SYS_PTRACE: u32 = 101;
const SYS_PROCESS_VM_READV: u32 = 310;

/// ptrace is refused (PTRACE_TRACEME, PTRACE_ATTACH/SEIZE to the host victim, and
/// process_vm_readv), `strace` can't trace, and the victim is not stopped. With
/// `--allow-ptrace`, PTRACE_TRACEME and strace inside the sandbox work (control).
#[test]
fn ptrace_is_refused() {
    let have_strace = Path::new("/usr/bin/strace").exists();
    for who in identities() {
        let env = Env::new(who);
        let victim = Victim::spawn(&env, "x");
        let pid = victim.pid();
        let probe = format!(
            "{PY_SYSCALL}\n\
             probe('attach', {SYS_PTRACE}, 16, {pid}, 0, 0)\n\
             probe('seize', {SYS_PTRACE}, 0x4206, {pid}, 0, 0)\n\
             probe('vm_readv', {SYS_PROCESS_VM_READV}, os.getppid(), 0, 0, 0, 0, 0)\n\
             probe('traceme', {SYS_PTRACE}, 0, 0, 0, 0)\n\
             probe('getpid', 39)"
        );
        let out = env.run_py(&[], &probe);
        let got = probe_results(&stdout(&out));
        let text = both(&out);
        assert_eq!(got.get("getpid").map(String::as_str), Some("OK"), "{who:?}: probe failed:\n{text}");
        assert_eq!(got.get("traceme").map(String::as_str), Some("EPERM"), "{who:?}:\n{text}");
        assert_eq!(got.get("vm_readv").map(String::as_str), Some("EPERM"), "{who:?}:\n{text}");
        assert_ne!(got.get("attach").map(String::as_str), Some("OK"), "{who:?}:\n{text}");
        assert_ne!(got.get("seize").map(String::as_str), Some("OK"), "{who:?}:\n{text}");
        assert!(victim.alive() && !matches!(victim.state(), 't' | 'T'), "{who:?}: the victim was stopped or killed");

        let out = env.run_py(&["--allow-ptrace"], &probe);
        let got = probe_results(&stdout(&out));
        assert_eq!(
            got.get("traceme").map(String::as_str),
            Some("OK"),
            "{who:?}: --allow-ptrace (control):\n{}",
            both(&out)
        );

        if have_strace {
            let out = env.run_sh(&[], "strace -f true 2>&1; echo rc=$?");
            assert!(!stdout(&out).contains("execve("), "{who:?}: strace traced:\n{}", both(&out));
            let out = env.run_sh(&["--allow-ptrace"], "strace -f true 2>&1; echo rc=$?");
            assert!(stdout(&out).contains("execve("), "{who:?}: strace with --allow-ptrace (control):\n{}", both(&out));
        }
    }
}

/// A pseudo-terminal owned by the test: the "user's terminal" the sandbox is started from.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    /// A new pty in raw mode, so injected bytes are readable from the slave at once.
    fn open() -> Pty {
        use nix::sys::termios;
        let pair = nix::pty::openpty(None, None).unwrap();
        let mut t = termios::tcgetattr(&pair.slave).unwrap();
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&pair.slave, termios::SetArg::TCSANOW, &t).unwrap();
        Pty { master: pair.master, slave: pair.slave }
    }

    /// Everything currently readable from `fd`, without blocking.
    fn drain(fd: &OwnedFd) -> String {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let mut file = std::fs::File::from(fd.try_clone().unwrap());
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// What is waiting in the terminal's input queue: what the user's shell would read next.
    fn pending_input(&self) -> String {
        Pty::drain(&self.slave)
    }

    fn output(&self) -> String {
        Pty::drain(&self.master)
    }
}

/// Python that pushes a command into its stdin's terminal with TIOCSTI, byte by byte.
const PY_TIOCSTI: &str = r#"
import fcntl, termios, sys, os
try:
    for c in b'echo INJECTED\n':
        fcntl.ioctl(0, termios.TIOCSTI, bytes([c]))
    print('TIOCSTI-OK', os.isatty(0))
except OSError as e:
    print('TIOCSTI-ERR', e.errno, os.isatty(0))
"#;

/// TIOCSTI on the terminal the sandbox was started from fails: with EPERM on its own relayed
/// terminal (the default on a tty), and with `--no-pty` the command gets no terminal at all
/// (its streams are relayed through pipes). Nothing lands in the user terminal's input queue. Control: TIOCSTI from the test itself
/// (root) does land there, so the check can see an injection.
#[test]
fn terminal_injection_is_refused() {
    for who in identities() {
        let env = Env::new(who);
        for args in [&[][..], &["--no-pty"][..]] {
            let pty = Pty::open();
            let mut cmd = env.run_command(args, &["python3", "-c", PY_TIOCSTI]);
            cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
                .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
                .stderr(Stdio::piped());
            let out = collect_within(cmd.spawn().unwrap(), RUN_LIMIT);
            let shown = pty.output();
            let expected = if args.is_empty() { "TIOCSTI-ERR 1 True" } else { "TIOCSTI-ERR 1 False" };
            assert!(shown.contains(expected), "{who:?} {args:?}: expected {expected:?}:\n{shown}\n{}", stderr(&out));
            let pending = pty.pending_input();
            assert!(
                !pending.contains("INJECTED"),
                "{who:?} {args:?}: input was injected into the user's terminal: {pending:?}"
            );
        }
    }
    if is_root() {
        let pty = Pty::open();
        for c in b"CONTROL" {
            // SAFETY: TIOCSTI reads one byte from the pointer, which is valid.
            let rc = unsafe { nix::libc::ioctl(pty.slave.as_raw_fd(), nix::libc::TIOCSTI, c as *const u8) };
            assert_eq!(rc, 0, "TIOCSTI from the test failed (control)");
        }
        assert!(pty.pending_input().contains("CONTROL"), "an injection is not visible in the input queue (control)");
    }
}

/// Background processes started with setsid, nohup, a double fork, or a python daemon exist
/// while the run lasts (control) and are all gone once ringfence returns.
#[test]
fn daemons_do_not_outlive_the_run() {
    for who in identities() {
        let env = Env::new(who);
        let m: Vec<String> = (0..4).map(|_| sleep_marker()).collect();
        let script = format!(
            "setsid sleep {a} & nohup sleep {b} >/dev/null 2>&1 & (sleep {c} &) ; \
             python3 -c 'import os,sys\nif os.fork(): sys.exit()\nos.setsid()\nif os.fork(): sys.exit()\nos.execvp(\"sleep\", [\"sleep\", \"{d}\"])' </dev/null >/dev/null 2>&1; \
             echo started; sleep 1",
            a = m[0],
            b = m[1],
            c = m[2],
            d = m[3]
        );
        let mut cmd = env.run_command(&[], &["sh", "-c", &script]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let all_up = poll_until(Duration::from_secs(5), || m.iter().all(|a| !pids_with_arg(a).is_empty()));
        let out = collect_within(child, RUN_LIMIT);
        assert!(all_up, "{who:?}: the daemons never started (control):\n{}", both(&out));
        assert_code(&out, 0);
        let gone = poll_until(Duration::from_secs(3), || m.iter().all(|a| pids_with_arg(a).is_empty()));
        assert!(
            gone,
            "{who:?}: processes outlived the run: {:?}",
            m.iter().map(|a| pids_with_arg(a)).collect::<Vec<_>>()
        );
    }
}

/// SIGKILL to ringfence itself mid-run takes everything inside with it (setsid'd children
/// included), and the run's cgroups (as root, with --memory) and placeholders (.envrc, .vscode)
/// are removed, all of which existed while it ran (control).
#[test]
fn killing_ringfence_kills_everything_inside() {
    for who in identities() {
        let env = Env::new(who);
        let m: Vec<String> = (0..2).map(|_| sleep_marker()).collect();
        let script = format!("setsid sleep {} & sleep {} & echo started; sleep 60", m[0], m[1]);
        let mut cmd = env.run_command(&["--allow-degraded", "--memory", "256M"], &["sh", "-c", &script]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let up = poll_until(Duration::from_secs(5), || m.iter().all(|a| !pids_with_arg(a).is_empty()));
        let placeholder = env.ws.join(".envrc").is_dir() && env.ws.join(".vscode").is_dir();
        let cgroups = cgroups_of(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(up, "{who:?}: the processes inside never started (control)");
        assert!(placeholder, "{who:?}: no placeholders while running (control)");
        if who == Who::Me && is_root() {
            assert!(!cgroups.is_empty(), "{who:?}: no cgroup while running (control)");
        }
        let clean = poll_until(Duration::from_secs(5), || {
            m.iter().all(|a| pids_with_arg(a).is_empty()) && cgroups_of(pid).is_empty() && names(&env.ws).is_empty()
        });
        assert!(
            clean,
            "{who:?}: left behind: processes {:?}, cgroups {:?}, workspace entries {:?}",
            m.iter().map(|a| pids_with_arg(a)).collect::<Vec<_>>(),
            cgroups_of(pid),
            names(&env.ws)
        );
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A fork bomb under `--pids 50` never has more than about 50 processes at once, ends with
/// exit 123 (limit) or the command's own failure, leaves nothing behind, and the host can still
/// start processes. Control: the bomb did multiply (the host saw many of its processes; the
/// count includes ringfence and the sandbox's init, whose argv also holds the tag).
#[test]
fn fork_bomb_is_contained() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("bomb");
        // The sleep starts first: once the bomb fills the cap, nothing else can fork.
        let script = "sleep 3 & s=$!; bomb() { while :; do bomb | bomb; done; }; bomb 2>/dev/null & wait $s; exit 7";
        let mut cmd = env.run_command(&["--pids", "50", "--timeout", "20s"], &["sh", "-c", script, &tag]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let child = cmd.spawn().unwrap();
        let mut most = 0;
        let sampler = std::thread::spawn({
            let tag = tag.clone();
            move || {
                let mut most = 0;
                while started.elapsed() < Duration::from_secs(4) {
                    most = most.max(pids_with_arg(&tag).len());
                    std::thread::sleep(Duration::from_millis(15));
                }
                most
            }
        });
        let out = collect_within(child, RUN_LIMIT);
        most = most.max(sampler.join().unwrap());
        let code = out.status.code();
        assert!(matches!(code, Some(123) | Some(7)), "{who:?}: exit {code:?}:\n{}", stderr(&out));
        assert!(most > 10, "{who:?}: the bomb never multiplied (control): at most {most}");
        assert!(most <= 55, "{who:?}: {most} processes at once under --pids 50");
        assert!(
            poll_until(Duration::from_secs(3), || pids_with_arg(&tag).is_empty()),
            "{who:?}: bomb processes remain"
        );
        assert!(std::process::Command::new("true").status().unwrap().success(), "the host can't fork");
    }
}

/// `--memory 64M` stops a 512 MB allocation: killed with exit 123 where a cgroup carries the
/// limit (root on cgroup v1). Without a cgroup (nobody) the limit is refused as not enforced
/// (exit 122), and with --allow-degraded RLIMIT_AS still stops the allocation. The same limit
/// lets a 16 MB allocation through (control).
#[test]
fn memory_limit_stops_large_allocations() {
    for who in identities() {
        let env = Env::new(who);
        let cgroup = who == Who::Me && is_root() && Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
        if !cgroup {
            let out = env.run_py(&["--memory", "64M"], "print('RAN')");
            assert_code(&out, 122);
            assert!(stderr(&out).contains("memory limit"), "{who:?}: {}", stderr(&out));
        }
        let flags: &[&str] = if cgroup { &["--memory", "64M"] } else { &["--allow-degraded", "--memory", "64M"] };
        let out = env.run_py(flags, "b = b'x' * (512 << 20); print('ALLOCATED', len(b))");
        let text = both(&out);
        assert!(!text.contains("ALLOCATED"), "{who:?}: 512 MB allocated under --memory 64M:\n{text}");
        let code = out.status.code();
        let ok = code == Some(123) || (code.is_some_and(|c| c != 0) && text.contains("MemoryError"));
        assert!(ok, "{who:?}: expected exit 123 or a MemoryError, got {code:?}:\n{text}");
        if cgroup {
            assert_eq!(code, Some(123), "{who:?}: root has the cgroup v1 memory controller here:\n{text}");
        }
        let out = env.run_py(flags, "b = b'x' * (16 << 20); print('ALLOCATED', len(b))");
        assert!(
            stdout(&out).contains("ALLOCATED"),
            "{who:?}: 16 MB failed under --memory 64M (control):\n{}",
            both(&out)
        );
    }
}

/// `--timeout 1s` ends a long command with exit 124 within a few seconds, including one that
/// ignores SIGTERM, and leaves no process; a short command under a timeout finishes normally
/// (control).
#[test]
fn timeout_ends_the_run() {
    for who in identities() {
        let env = Env::new(who);
        for script in ["exec sleep {m}", "trap '' TERM; sleep {m}; sleep {m}"] {
            let m = sleep_marker();
            let started = Instant::now();
            let out = env.run_sh(&["--timeout", "1s"], &script.replace("{m}", &m));
            let took = started.elapsed();
            assert_code(&out, 124);
            assert!(took < Duration::from_secs(6), "{who:?}: {script}: took {took:?}");
            assert!(poll_until(Duration::from_secs(2), || pids_with_arg(&m).is_empty()), "{who:?}: sleep survived");
        }
        let out = env.run_sh(&["--timeout", "10s"], "sleep 0.1; echo done");
        assert_code(&out, 0);
    }
}

/// The private /tmp (and /dev/shm) honour `--tmp-size 8M`: 32 MB fails with ENOSPC while 4 MB
/// fits, the host's /tmp gets nothing, and 32 MB in the workspace still works (controls).
#[test]
fn tmp_is_size_capped() {
    for who in identities() {
        let env = Env::new(who);
        let name = marker("big");
        let script = format!(
            "dd if=/dev/zero of=/tmp/{name} bs=1M count=32 2>&1; echo tmp=$?; \
             dd if=/dev/zero of=/dev/shm/{name} bs=1M count=32 2>&1; echo shm=$?; \
             rm -f /tmp/{name} /dev/shm/{name}; \
             dd if=/dev/zero of=/tmp/{name} bs=1M count=4 2>/dev/null; echo small=$?; \
             dd if=/dev/zero of=ws.bin bs=1M count=32 2>/dev/null; echo ws=$?"
        );
        let out = env.run_sh(&["--tmp-size", "8M"], &script);
        let text = both(&out);
        assert!(text.contains("tmp=1") && text.contains("shm=1"), "{who:?}: 32 MB fit in an 8M /tmp:\n{text}");
        assert!(text.contains("No space left on device"), "{who:?}: expected ENOSPC:\n{text}");
        assert!(
            text.contains("small=0") && text.contains("ws=0"),
            "{who:?}: small /tmp or workspace write failed (control):\n{text}"
        );
        assert_eq!(std::fs::metadata(env.ws.join("ws.bin")).unwrap().len(), 32 << 20, "{who:?}");
        assert!(!Path::new("/tmp").join(&name).exists(), "{who:?}: the host's /tmp got the file");
    }
}

/// Run from a terminal without one of its own (input redirected, or --no-pty), the command gets
/// pipes, never the user's terminal: its ioctls (line discipline, modes, window size) can't
/// reach the user's session. Control: the output still arrives.
#[test]
fn terminal_is_never_handed_to_the_command() {
    for who in identities() {
        let env = Env::new(who);
        for extra in ["", "--no-pty "] {
            let inner = format!(
                "{} run {extra}-- sh -c 'for fd in 0 1 2; do test -t \\$fd && echo TTY-\\$fd; done; echo CONTROL-OK' < /dev/null",
                binary().display()
            );
            let script = format!("script -qec \"{inner}\" /dev/null");
            let out = output_within(&mut env.host_sh(&script), None, Duration::from_secs(30));
            let text = both(&out);
            assert!(text.contains("CONTROL-OK"), "{who:?}: no output (control):\n{text}");
            assert!(!text.contains("TTY-"), "{who:?} {extra}: the command got the user's terminal:\n{text}");
        }
    }
}

/// A command that never reads its terminal while input keeps coming can't stall ringfence:
/// the relay holds the input back, and the timeout still ends the run (exit 124).
#[test]
fn unread_terminal_input_does_not_stall_the_timeout() {
    for who in identities() {
        let env = Env::new(who);
        let inner = format!("{} run --timeout 2s -- sleep 30; echo RF=\\$?", binary().display());
        let script = format!("head -c 600000 /dev/zero | tr '\\\\0' a | script -qec \"{inner}\" /dev/null");
        let started = std::time::Instant::now();
        let out = output_within(&mut env.host_sh(&script), None, Duration::from_secs(40));
        let text = String::from_utf8_lossy(&out.stdout).replace('\0', "");
        assert!(
            text.contains("RF=124"),
            "{who:?}: no timeout exit:\n{}",
            text.chars().rev().take(300).collect::<String>()
        );
        assert!(started.elapsed() < Duration::from_secs(30), "{who:?}: took {:?}", started.elapsed());
    }
}
