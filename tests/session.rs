//! Sessions end to end: one sandbox kept for many commands. The policy holds for every command
//! (the same attacks as a run's, tried from inside), nothing a command leaves survives into the
//! next unless it ran in the background, nothing survives `stop` or the owner's death, only the
//! user who started a session can use it, a dead session's socket is cleaned away, and
//! concurrent commands keep their outputs apart. Every test runs as root and as nobody.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// Starts a session as `env`'s identity; its id.
fn start(env: &Env, args: &[&str]) -> String {
    let mut cmd = env.command();
    cmd.args(["session", "start"]).args(args);
    let out = bounded_output(cmd, RUN_LIMIT);
    assert_code(&out, 0);
    stdout(&out).trim().to_string()
}

fn exec(env: &Env, id: &str, args: &[&str], script: &str) -> Output {
    let mut cmd = env.command();
    cmd.args(["session", "exec", id]).args(args).args(["--", "sh", "-c", script]);
    bounded_output(cmd, RUN_LIMIT)
}

fn stop(env: &Env, id: &str) {
    assert_code(&env.ringfence(&["session", "stop", id]), 0);
}

/// Whether a host process's command line contains `needle`.
fn host_runs(needle: &str) -> bool {
    let out = std::process::Command::new("pgrep").args(["-f", needle]).output().unwrap();
    out.status.success()
}

/// Waits up to five seconds for `done`.
fn eventually(done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// The policy holds in a session: a write outside the workspace fails and the host file stays
/// as it was, a hidden secret can't be read; the control writes in the workspace land on the
/// host. Exit codes, a missing program and the environment's scrubbing are each command's own.
#[test]
fn a_session_keeps_the_policy_for_every_command() {
    for who in identities() {
        let env = Env::new(who);
        let victim = env.outside.join("victim");
        env.write(&victim, "original");
        env.write(&env.home.join(".ssh/id_rsa"), "SECRET-KEY");
        let id = start(&env, &[]);
        for round in 0..2 {
            let script = format!(
                "echo changed > {v}; cat ~/.ssh/id_rsa; echo round{round} > ok.txt; echo \"K=$AWS_SECRET_ACCESS_KEY\"; exit 7",
                v = victim.display()
            );
            let mut cmd = env.command();
            cmd.env("AWS_SECRET_ACCESS_KEY", "leaked-value").args(["session", "exec", &id, "--", "sh", "-c", &script]);
            let out = bounded_output(cmd, RUN_LIMIT);
            assert_code(&out, 7);
            let text = both(&out);
            assert!(!text.contains("SECRET-KEY") && !text.contains("leaked-value"), "{who:?}: leaked:\n{text}");
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original", "{who:?}: the host file changed");
            assert_eq!(std::fs::read_to_string(env.ws.join("ok.txt")).unwrap(), format!("round{round}\n"));
        }
        assert_code(&exec(&env, &id, &[], "exec no-such-program-here"), 127);
        stop(&env, &id);
        // Control: the same write works on the host.
        assert!(env.host(&["sh", "-c", &format!("echo changed > {}", victim.display())]).status.success());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "changed\n");
    }
}

/// The exec monitor watches every command of a session: an exec rule given at start refuses
/// the program however it is started, in every command; the control runs it unrefused.
#[test]
fn exec_rules_hold_for_every_command() {
    for who in identities() {
        let env = Env::new(who);
        // In the workspace, where the command may write: only the exec rule stops it.
        let marker = env.ws.join("touched");
        let m = marker.display();
        let id = start(&env, &["--deny-exec", "touch"]);
        for script in [format!("touch {m}"), format!("sh -c 'touch {m}'"), format!("env touch {m}")] {
            let out = exec(&env, &id, &[], &script);
            assert_ne!(out.status.code(), Some(0), "{who:?}: {script}: {}", both(&out));
            assert!(!marker.exists(), "{who:?}: {script}: touch ran");
        }
        assert_code(&exec(&env, &id, &[], "echo still-serving"), 0);
        stop(&env, &id);
        // Control: without the rule, the same command runs (and writes in the workspace).
        let id = start(&env, &[]);
        assert_code(&exec(&env, &id, &[], "touch ws-touched"), 0);
        stop(&env, &id);
        assert!(env.ws.join("ws-touched").exists(), "{who:?}: control: touch did not run");
    }
}

/// A daemon a command leaves (even one that left its session with setsid) is gone before the
/// next command starts; one started with --background lives on, until `stop`.
#[test]
fn what_a_command_leaves_dies_unless_it_ran_in_the_background() {
    for who in identities() {
        let env = Env::new(who);
        let id = start(&env, &[]);
        let (left, kept) = (format!("sleep 4{}1", who as u8), format!("sleep 4{}2", who as u8));
        assert_code(&exec(&env, &id, &[], &format!("{left} & setsid {left} & echo started")), 0);
        assert_code(&exec(&env, &id, &["--background"], &format!("setsid {kept} >/dev/null 2>&1 & echo started")), 0);
        let seen = exec(&env, &id, &[], "ps -e -o args");
        let seen = stdout(&seen);
        assert!(!seen.contains(&left), "{who:?}: a left process survived:\n{seen}");
        assert!(seen.contains(&kept), "{who:?}: the background process is gone (control):\n{seen}");
        assert!(!host_runs(&left) && host_runs(&kept), "{who:?}: the host sees otherwise");
        stop(&env, &id);
        assert!(eventually(|| !host_runs(&kept)), "{who:?}: the background process outlived stop");
        let list = env.ringfence(&["session", "list"]);
        assert!(!stdout(&list).contains(&id), "{who:?}: the stopped session is listed");
    }
}

/// The session ends, with everything in it, when its owner (the process that ran `session
/// start`) is SIGKILLed.
#[test]
fn the_owners_death_ends_the_session() {
    for who in identities() {
        let env = Env::new(who);
        let id_file = env.ws.join("id");
        let mut owner = env
            .command_via(
                &["sh", "-c", "\"$@\" > id; exec sleep 300", "sh"],
                &[binary().as_os_str(), "session".as_ref(), "start".as_ref()],
            )
            .spawn()
            .unwrap();
        assert!(eventually(|| std::fs::read_to_string(&id_file).is_ok_and(|s| s.ends_with('\n'))));
        let id = std::fs::read_to_string(&id_file).unwrap().trim().to_string();
        let daemon = format!("sleep 5{}3", who as u8);
        assert_code(&exec(&env, &id, &["--background"], &format!("{daemon} >/dev/null 2>&1 & echo started")), 0);
        assert!(host_runs(&daemon), "{who:?}: the background process never ran (control)");
        owner.kill().unwrap();
        owner.wait().unwrap();
        assert!(eventually(|| !host_runs(&daemon)), "{who:?}: the session outlived its owner");
        assert!(eventually(|| !stdout(&env.ringfence(&["session", "list"])).contains(&id)));
    }
}

/// An exec order for the session's socket, as the ringfence client sends it (see
/// crates/linux/src/protocol.rs, `Order::Exec`), sent by Python with /dev/null as stdio.
const RAW_CLIENT: &str = r#"
import os, socket, struct, sys
path, script = sys.argv[1], sys.argv[2]
def field(b): return struct.pack('<I', len(b)) + b
order = b'x\0' + struct.pack('<QII', 0, 2, 0) + field(b'sh') + field(b'') + field(b'-c') + field(script.encode())
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    s.connect(path)
except OSError as e:
    print('connect:', e.strerror); sys.exit(3)
null = os.open('/dev/null', os.O_RDWR)
s.sendmsg([order], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack('3i', null, null, null))])
print('answer:', s.recv(4096))
"#;

/// Only the user who started a session can use it: another uid is refused by the folder's mode
/// (nobody reaching root's socket) or by the server's uid check (root, who passes any mode,
/// reaching nobody's): the command never runs. Control: the owner's own raw client runs it.
#[test]
fn another_user_cannot_use_a_session() {
    if !is_root() {
        return;
    }
    let root = Env::new(Who::Me);
    let nobody = Env::new(Who::Nobody);
    for (owner, other) in [(&root, &nobody), (&nobody, &root)] {
        let id = start(owner, &[]);
        let uid = if owner.who == Who::Me { 0 } else { NOBODY };
        let socket = format!("/tmp/ringfence-sessions-{uid}/{id}.sock");
        assert!(Path::new(&socket).exists(), "no socket at {socket}");
        let marker = owner.ws.join(format!("ran-{:?}", other.who));
        let script = format!("touch {}", marker.display());
        let attempt = other.host(&["python3", "-c", RAW_CLIENT, &socket, &script]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!marker.exists(), "{:?} ran a command in {:?}'s session:\n{}", other.who, owner.who, both(&attempt));
        let control = owner.host(&["python3", "-c", RAW_CLIENT, &socket, &script]);
        assert!(eventually(|| marker.exists()), "the owner's raw client failed (control):\n{}", both(&control));
        stop(owner, &id);
    }
}

/// A session whose server was SIGKILLed leaves its socket; `list` finds it dead and removes
/// the socket and its record, and the sandbox died with the server.
#[test]
fn a_stale_socket_is_detected_and_cleaned() {
    for who in identities() {
        let env = Env::new(who);
        // A runtime folder of this test's own: no other test's `list` cleans the socket first.
        let runtime = env.root.join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        env.chown_all();
        let ringfence = |args: &[&str]| {
            let mut cmd = env.command();
            cmd.env("XDG_RUNTIME_DIR", &runtime).args(args);
            bounded_output(cmd, RUN_LIMIT)
        };
        let out = ringfence(&["session", "start", "--json"]);
        assert_code(&out, 0);
        let info: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let (id, pid) = (info["id"].as_str().unwrap().to_string(), info["pid"].as_i64().unwrap() as i32);
        let socket = runtime.join(format!("ringfence-sessions/{id}.sock"));
        let daemon = format!("sleep 6{}4", who as u8);
        let script = format!("{daemon} >/dev/null 2>&1 & echo started");
        assert_code(&ringfence(&["session", "exec", &id, "--background", "--", "sh", "-c", &script]), 0);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(eventually(|| !host_runs(&daemon)), "{who:?}: the sandbox outlived its server");
        assert!(socket.exists(), "{who:?}: no stale socket to clean (control)");
        let list = ringfence(&["session", "list"]);
        assert!(!stdout(&list).contains(&id), "{who:?}: the dead session is listed");
        assert!(!socket.exists(), "{who:?}: the stale socket was left");
        assert_code(&ringfence(&["session", "exec", &id, "--", "true"]), 121);
    }
}

/// Commands running at the same time in one session keep their outputs and exit codes apart.
#[test]
fn concurrent_commands_keep_their_outputs_apart() {
    for who in identities() {
        let env = Env::new(who);
        let id = start(&env, &[]);
        let runs: Vec<_> = (0..4)
            .map(|n| {
                let mut cmd = env.command();
                let script =
                    format!("for i in 1 2 3 4 5; do echo out{n}-$i; echo err{n}-$i >&2; sleep 0.05; done; exit {n}");
                cmd.args(["session", "exec", &id, "--", "sh", "-c", &script]);
                cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
                cmd.spawn().unwrap()
            })
            .collect();
        for (n, run) in runs.into_iter().enumerate() {
            let out = collect_within(run, RUN_LIMIT);
            assert_code(&out, n as i32);
            let expect = |s: &str| (1..=5).map(|i| format!("{s}{n}-{i}\n")).collect::<String>();
            assert_eq!(stdout(&out), expect("out"), "{who:?}");
            assert_eq!(stderr(&out), expect("err"), "{who:?}");
        }
        stop(&env, &id);
    }
}

/// A command's timeout and signals are its own: the timed-out command exits 124 and the next
/// one runs normally.
#[test]
fn a_timeout_ends_only_its_command() {
    for who in identities() {
        let env = Env::new(who);
        let id = start(&env, &[]);
        let begun = Instant::now();
        assert_code(&exec(&env, &id, &["--timeout", "1s"], "sleep 30"), 124);
        assert!(begun.elapsed() < Duration::from_secs(10));
        assert_code(&exec(&env, &id, &[], "exit 0"), 0);
        stop(&env, &id);
    }
}

/// A session left idle ends by itself, with everything in it. Control: the background process
/// ran until then.
#[test]
fn an_idle_session_ends_with_everything_in_it() {
    for who in identities() {
        let env = Env::new(who);
        let id = start(&env, &["--idle-timeout", "2s"]);
        let daemon = format!("sleep 7{}5", who as u8);
        assert_code(&exec(&env, &id, &["--background"], &format!("{daemon} >/dev/null 2>&1 & echo started")), 0);
        assert!(host_runs(&daemon), "{who:?}: the background process never ran (control)");
        assert!(eventually(|| !host_runs(&daemon)), "{who:?}: the idle session did not end");
        assert!(!stdout(&env.ringfence(&["session", "list"])).contains(&id), "{who:?}: still listed");
    }
}
