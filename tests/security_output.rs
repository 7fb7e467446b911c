//! The record and ringfence's own output. The event log and the `--json-status` file are
//! evidence: a command must not be able to truncate, rewrite, rename, remove, link or replace
//! them, even in its own workspace, and nothing an earlier run planted at their paths (a link, a
//! FIFO, a second name) may redirect or hang ringfence. And what ringfence prints or records
//! about the sandbox (file names, git config keys, what the gateway refused) must carry no
//! terminal control bytes and have a bounded length. Every test runs as root and as nobody,
//! checks the host side, and has a positive control.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Shell attacks on `$F`, a file the command should not be able to change. Each line is one
/// attempt; failures are expected and ignored.
const SHELL_ATTACKS: &str = r#"
true > "$F"; echo '{"forged":1}' > "$F"; echo '{"forged":2}' >> "$F"; truncate -s 0 "$F"
mv "$F" moved.out; rm -f "$F"; ln "$F" hard.out; chmod 666 "$F"
echo '{"forged":3}' > new.out; mv -f new.out "$F"; cp new.out "$F"; ln -sf new.out "$F"
"#;

/// The same in Python, plus a link made through /proc/self/fd (which needs no name of the
/// file), and writes through every descriptor the sandbox can see that points at the file.
const PY_ATTACKS: &str = r#"
import os, sys
f = os.environ["F"]
def attempt(name, fn):
    try:
        fn()
        print("ATTACK-OK", name, flush=True)
    except OSError as e:
        print("refused", name, e.errno, flush=True)
attempt("open-w", lambda: open(f, "w").write('{"forged":4}\n'))
attempt("open-a", lambda: open(f, "a").write('{"forged":5}\n'))
attempt("truncate", lambda: os.truncate(f, 0))
attempt("rename", lambda: os.rename(f, "renamed.out"))
attempt("unlink", lambda: os.unlink(f))
attempt("link", lambda: os.link(f, "hard2.out"))
attempt("link-fd", lambda: os.link("/proc/self/fd/%d" % os.open(f, os.O_RDONLY), "hard3.out"))
attempt("replace", lambda: (open("new2.out", "w").write("x"), os.replace("new2.out", f)))
attempt("chmod", lambda: os.chmod(f, 0o666))
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        continue
    for fd in fds:
        path = "/proc/%s/fd/%s" % (pid, fd)
        try:
            if os.path.basename(os.readlink(path)) == os.path.basename(f):
                attempt("fd " + path, lambda: open(path, "a").write('{"forged":6}\n'))
        except OSError:
            pass
"#;

/// Writes through /proc/PID/fd/N of a host process whose pid is in the file `hostpid`, for every
/// N below 64: how a command would reach a descriptor ringfence holds, if it could see ringfence.
const PY_HOST_FDS: &str = r#"
import os, time
for _ in range(400):
    if os.path.exists("hostpid") and open("hostpid").read().strip():
        break
    time.sleep(0.05)
pid = open("hostpid").read().strip()
print("HOSTPID-VISIBLE" if os.path.exists("/proc/" + pid) else "hostpid-invisible", flush=True)
for n in range(64):
    try:
        open("/proc/%s/fd/%d" % (pid, n), "a").write('{"forged":7}\n')
        print("ATTACK-OK fd", n, flush=True)
    except OSError:
        pass
"#;

/// Puts the attack programs in the workspace (the command runs them from there) and returns
/// the script that runs them all against `target`, then writes a neighbouring file: the
/// positive control that the workspace is writable to the command.
fn arm(env: &Env, target: &str) -> String {
    env.write(&env.ws.join("attacks.py"), PY_ATTACKS);
    env.write(&env.ws.join("hostfds.py"), PY_HOST_FDS);
    format!("export F={target}\n{SHELL_ATTACKS}\npython3 attacks.py\npython3 hostfds.py\necho ok > neighbour.txt\n")
}

/// Starts `cmd` (a ringfence run), tells the command ringfence's host pid through the file
/// `hostpid` in the workspace, and collects the run.
fn run_telling_pid(env: &Env, mut cmd: std::process::Command) -> std::process::Output {
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid_file = env.ws.join("hostpid");
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    env.give(&pid_file);
    collect_within(child, RUN_LIMIT)
}

/// The lines of a JSON Lines file, parsed.
fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert_events_match_schema(&text);
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// Checks that the command's attacks all failed and its control write worked.
#[track_caller]
fn assert_attacks_failed(who: Who, env: &Env, out: &std::process::Output) {
    let text = stdout(out);
    assert!(!text.contains("ATTACK-OK"), "{who:?}: an attack worked:\n{text}\n{}", stderr(out));
    assert!(text.contains("hostpid-invisible"), "{who:?}: ringfence's pid is visible:\n{text}");
    assert!(text.contains("refused open-w"), "{who:?}: the attacks did not run:\n{text}\n{}", stderr(out));
    assert_eq!(std::fs::read_to_string(env.ws.join("neighbour.txt")).ok().as_deref(), Some("ok\n"), "{who:?}");
    for leftover in ["moved.out", "hard.out", "hard2.out", "hard3.out", "renamed.out"] {
        assert!(!env.ws.join(leftover).exists(), "{who:?}: {leftover} was made");
    }
}

/// The same attacks work on the host against a plain file and against a descriptor another
/// process holds: the test would notice them.
#[test]
fn the_attacks_work_without_ringfence() {
    for who in identities() {
        let env = Env::new(who);
        let target = env.ws.join("plain.jsonl");
        env.write(&target, "{\"original\":1}\n");
        env.host(&["sh", "-c", &format!("export F=plain.jsonl\n{SHELL_ATTACKS}")]);
        let after = std::fs::read_to_string(&target).unwrap_or_default();
        assert!(!after.contains("original"), "{who:?}: the shell attacks changed nothing: {after:?}");

        // A process holding a file open, reached through /proc/PID/fd from the same user.
        let held = env.ws.join("held.jsonl");
        env.write(&held, "");
        let mut holder = env
            .host_command(&["sh", "-c", "exec 7>>held.jsonl; sleep 5"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(env.ws.join("hostpid"), holder.id().to_string()).unwrap();
        env.write(&env.ws.join("hostfds.py"), PY_HOST_FDS);
        let out = env.host(&["python3", path_str(&env.ws.join("hostfds.py"))]);
        let _ = holder.kill();
        let _ = holder.wait();
        assert!(stdout(&out).contains("ATTACK-OK fd 7"), "{who:?}: {}{}", stdout(&out), stderr(&out));
        assert!(std::fs::read_to_string(&held).unwrap().contains("forged"), "{who:?}");
    }
}

/// `--events run.jsonl` in the workspace: the command tries everything against it, and the
/// file on the host holds exactly this run's run.start, proc.exec and run.end, in order.
#[test]
fn the_event_log_in_the_workspace_is_out_of_reach() {
    for who in identities() {
        let env = Env::new(who);
        let script = arm(&env, "run.jsonl");
        let out = run_telling_pid(&env, env.run_command(&["--events", "run.jsonl"], &["sh", "-c", &script]));
        assert_code(&out, 0);
        assert_attacks_failed(who, &env, &out);
        let log = env.ws.join("run.jsonl");
        let meta = std::fs::symlink_metadata(&log).unwrap();
        assert!(meta.is_file() && meta.nlink() == 1, "{who:?}: {meta:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        let list = events(&log);
        // The exec monitor's records of the script's programs come between run.start and run.end.
        let types: Vec<&str> = list
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .filter(|t| *t != "proc.exec" && *t != "proc.exit")
            .collect();
        assert_eq!(types, ["run.start", "run.end"], "{who:?}: not just this run's events:\n{text}");
        assert!(list.iter().all(|e| e["run"] == list[0]["run"] && e.get("forged").is_none()), "{who:?}:\n{text}");
        // Strings in events are display text: the script's line breaks are escaped.
        let shown = ringfence_audit::untrusted::escape(script.as_bytes(), ringfence_audit::untrusted::EVENT_CAP);
        assert_eq!(list[0]["argv"][2], shown, "{who:?}");
        assert_eq!(list.last().unwrap()["status"], 0, "{who:?}");
    }
}

/// The event log in a folder of the workspace: the folder can't be renamed away and replaced
/// by one holding a forged log.
#[test]
fn the_event_log_folder_is_pinned() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("logs/keep"), "");
        let out = env.run_sh(
            &["--events", "logs/run.jsonl"],
            "mv logs logs.old 2>/dev/null; rm -rf logs 2>/dev/null; mkdir -p logs2 && echo '{\"forged\":1}' > logs2/run.jsonl; \
             mv logs2 logs 2>/dev/null; echo ok > logs/neighbour.txt",
        );
        assert_code(&out, 0);
        assert!(!env.ws.join("logs.old").exists(), "{who:?}: the folder was renamed");
        assert_eq!(std::fs::read_to_string(env.ws.join("logs/neighbour.txt")).unwrap(), "ok\n", "{who:?}");
        // The run's own events, and nothing else: the exec monitor's records of its processes
        // come between run.start and run.end.
        let types: Vec<String> = events(&env.ws.join("logs/run.jsonl"))
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .filter(|t| t != "proc.exec" && t != "proc.exit")
            .collect();
        assert_eq!(types, ["run.start", "run.end"], "{who:?}");
    }
}

/// Runs `ringfence run ARGS -- sh -c 'touch ran'` and checks it was refused with exit 121, a
/// message containing `says` and a `fix:`, before the command ran.
#[track_caller]
fn assert_refused(env: &Env, args: &[&str], says: &str) {
    let started = Instant::now();
    let out = env.run_sh(args, "touch ran");
    assert_code(&out, 121);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}: refusing took {:?}", env.who, started.elapsed());
    let err = stderr(&out);
    assert!(err.contains(says) && err.contains("fix:"), "{:?} {args:?}: {err}", env.who);
    assert!(!env.ws.join("ran").exists(), "{:?} {args:?}: the command ran", env.who);
}

/// What an earlier run could have planted at the path: a link to a file outside, a link in a
/// folder on the way, a FIFO (which would block an open for writing), a second name. Each is
/// refused (exit 121) promptly, and nothing outside is written.
#[test]
fn planted_links_fifos_and_second_names_are_refused() {
    for who in identities() {
        let env = Env::new(who);
        let victim = env.outside.join("victim.jsonl");
        env.write(&victim, "victim\n");
        std::os::unix::fs::symlink(&victim, env.ws.join("link.jsonl")).unwrap();
        std::os::unix::fs::symlink(&env.outside, env.ws.join("logs")).unwrap();
        nix::unistd::mkfifo(&env.ws.join("fifo.jsonl"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        env.write(&env.ws.join("two.jsonl"), "");
        std::fs::hard_link(env.ws.join("two.jsonl"), env.ws.join("second-name")).unwrap();
        for path in ["link.jsonl", "logs", "fifo.jsonl", "two.jsonl"] {
            env.give(&env.ws.join(path));
        }
        assert_refused(&env, &["--events", "link.jsonl"], "symbolic link");
        assert_refused(&env, &["--events", "logs/run.jsonl"], "is a link inside the writable root");
        assert_refused(&env, &["--events", "fifo.jsonl"], "FIFO");
        assert_refused(&env, &["--events", "two.jsonl"], "has 2 names");
        assert_refused(&env, &["--json-status", "link.jsonl"], "symbolic link");
        assert_refused(&env, &["--json-status", "fifo.jsonl"], "FIFO");
        assert_refused(&env, &["--json-status", "two.jsonl"], "has 2 names");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n", "{who:?}");
        assert!(!env.outside.join("run.jsonl").exists(), "{who:?}: written through the folder link");

        // Positive controls: a plain path works, and a link outside the writable roots (the
        // user's own) is followed.
        let out = env.run_sh(&["--events", "plain.jsonl"], "true");
        assert_code(&out, 0);
        assert_whole_run(who, &env.ws.join("plain.jsonl"));
        let alias = env.root.join("alias");
        std::os::unix::fs::symlink(&env.outside, &alias).unwrap();
        let out = env.run_sh(&["--events", path_str(&alias.join("e.jsonl"))], "true");
        assert_code(&out, 0);
        assert_whole_run(who, &env.outside.join("e.jsonl"));
    }
}

/// The events of one whole run were written to `log`: from run.start to run.end.
fn assert_whole_run(who: Who, log: &Path) {
    let written = events(log);
    let ends = (written.first().map(|e| e["type"].clone()), written.last().map(|e| e["type"].clone()));
    assert_eq!(ends, (Some("run.start".into()), Some("run.end".into())), "{who:?}: {written:?}");
}

/// Status attacks: the command tries to change the status file, writes a neighbour, exits 7.
fn status_attack(target: &str) -> String {
    format!("export F={target}\n{SHELL_ATTACKS}\npython3 attacks.py\necho ok > neighbour.txt\nexit 7")
}

#[track_caller]
fn assert_status_is_ringfences(who: Who, env: &Env, out: &std::process::Output, form: &str) {
    assert_code(out, 7);
    assert!(stdout(out).contains("refused open-w"), "{who:?} {form}: the attacks did not run: {}", both(out));
    assert!(!stdout(out).contains("ATTACK-OK"), "{who:?} {form}: an attack worked: {}", stdout(out));
    let text = std::fs::read_to_string(env.ws.join("status.json")).unwrap();
    assert_eq!(text.lines().count(), 1, "{who:?} {form}: {text:?}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{who:?} {form}: {e}: {text:?}"));
    assert_eq!((v["exit_code"].as_i64(), v["status"].as_i64()), (Some(7), Some(7)), "{who:?} {form}: {v}");
    assert!(!text.contains("forged"), "{who:?} {form}: {text}");
    assert_eq!(std::fs::read_to_string(env.ws.join("neighbour.txt")).unwrap(), "ok\n", "{who:?} {form}");
    std::fs::remove_file(env.ws.join("neighbour.txt")).unwrap();
}

/// `--json-status` to a file in the workspace, as a path, as `fd:3` and as `3`: the command
/// can't change it, and afterwards it holds ringfence's JSON.
#[test]
fn the_status_file_in_the_workspace_is_out_of_reach() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("attacks.py"), PY_ATTACKS);
        let script = status_attack("status.json");
        env.write(&env.ws.join("status.json"), "{\"stale\":1}\n");
        let out = env.run_sh(&["--json-status", "status.json"], &script);
        assert_status_is_ringfences(who, &env, &out, "path");
        for form in ["fd:3", "3"] {
            let quoted = script.replace('\'', "'\\''");
            let line = format!("\"$RF\" run --json-status {form} -- sh -c '{quoted}' 3>status.json");
            let out = output_within(&mut env.host_sh(&line), None, DEADLINE);
            assert_status_is_ringfences(who, &env, &out, form);
        }
        // A descriptor whose file has a second name can't be protected: refused.
        std::fs::hard_link(env.ws.join("status.json"), env.ws.join("status-alias")).unwrap();
        let out =
            output_within(&mut env.host_sh("\"$RF\" run --json-status 3 -- touch ran 3>>status.json"), None, DEADLINE);
        assert_code(&out, 121);
        assert!(stderr(&out).contains("2 names") && stderr(&out).contains("fix:"), "{who:?}: {}", stderr(&out));
        assert!(!env.ws.join("ran").exists(), "{who:?}");
    }
}

/// Characters that must never reach a terminal from ringfence: C0 controls (but the line
/// break), DEL, C1 controls, and bidi and zero-width format characters.
fn hazard(c: char) -> bool {
    (c < ' ' && c != '\n')
        || ('\x7f'..='\u{9f}').contains(&c)
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `bytes` are valid UTF-8 without hazards, and no line is longer than `max`.
#[track_caller]
fn assert_clean(who: Who, what: &str, bytes: &[u8], max: usize) {
    let text = String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| panic!("{who:?}: {what} is not UTF-8: {e}"));
    if let Some(c) = text.chars().find(|c| hazard(*c)) {
        panic!("{who:?}: {what} carries {c:?}:\n{text:.3000}");
    }
    for line in text.lines() {
        assert!(line.len() <= max, "{who:?}: a line of {} bytes in {what}: {line:.300}", line.len());
    }
}

/// The name the command gives its git hook: OSC 52 (set the clipboard), an erase-screen CSI, a
/// C1 CSI, a bidi override.
const EVIL: &str = "\x1b]52;c;SGVsbG8=\x07\x1b[2J\u{9b}31m\u{202e}";

/// A program that makes findings and refusals with hostile names: a git hook named with
/// escapes, a git config with a 64 KiB key full of them, and a CONNECT to such a host through
/// the gateway (the gateway refuses the name, quoting it).
const PY_HOSTILE: &str = r##"
import os, socket, subprocess
from urllib.parse import urlparse
evil = os.environ["EVIL"]
subprocess.run(["git", "init", "-q", "."], check=True, stderr=subprocess.DEVNULL)
with open(".git/hooks/pre-commit" + evil, "w") as f:
    f.write("#!/bin/sh\n")
with open(".git/config", "a") as f:
    f.write('[filter "%s"]\n\tclean = x\n' % (evil + "k" * (64 << 10)))
u = urlparse(os.environ["http_proxy"])
s = socket.create_connection((u.hostname, u.port))
s.sendall(b"CONNECT " + "\u009b31m\u202e".encode() + b"h" * 5000 + b".example:443 HTTP/1.1\r\n\r\n")
print("gateway answered", len(s.recv(65536)), flush=True)
"##;

/// Findings and refusals that quote what the command chose: on stderr and in the event log
/// they carry no control or format characters and are cut to a bounded length.
#[test]
fn hostile_names_reach_neither_terminal_nor_log_raw() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("hostile.py"), PY_HOSTILE);
        let log = env.outside.join("events.jsonl");
        let evil_env = format!("EVIL={EVIL}");
        let args = ["--events", path_str(&log), "--allow-host", "a.example", "--env", &evil_env];
        let out = env.run_argv(&args, &["sh", "-c", "python3 hostile.py 2>/dev/null"]);
        assert_code(&out, 0);
        assert!(stdout(&out).contains("gateway answered"), "{who:?}: {}", both(&out));
        // Positive controls: each finding and the refusal were reported, escaped.
        let err = stderr(&out);
        assert!(err.contains(r"pre-commit\x1b]52;c;SGVsbG8=\x07\x1b[2J\u{9b}31m\u{202e}"), "{who:?}: {err}");
        assert!(err.contains(r#"filter "\x1b]52"#), "{who:?}: {err:.2000}");
        assert!(err.contains(r"ringfence: network: CONNECT \u{9b}31m\u{202e}hhh"), "{who:?}: {err:.2000}");
        assert!(err.matches("…[cut ").count() >= 2, "{who:?}: nothing was cut:\n{err:.3000}");
        assert_clean(who, "stderr", &out.stderr, ringfence_audit::untrusted::LINE_CAP + 64);
        let raw = std::fs::read(&log).unwrap();
        assert_clean(who, "the event log", &raw, 4 * ringfence_audit::untrusted::EVENT_CAP);
        let list = events(&log);
        let denies: Vec<&str> =
            list.iter().filter(|e| e["type"] == "policy.deny").map(|e| e["detail"].as_str().unwrap()).collect();
        assert!(denies.iter().any(|d| d.contains(r"pre-commit\x1b]52")), "{who:?}: {denies:?}");
        assert!(denies.iter().any(|d| d.contains("…[cut ")), "{who:?}: {denies:.300?}");
        assert!(
            list.iter().any(|e| e["type"] == "net.deny" && e["detail"].as_str().unwrap().contains(r"\u{9b}")),
            "{who:?}"
        );
        // The hostile names are real: the quarantined hook on the host carries them.
        let hooks: Vec<String> = std::fs::read_dir(env.ws.join(".git/hooks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(hooks.iter().any(|h| h.contains(EVIL)), "{who:?}: {hooks:?}");
    }
}

/// A command name with escapes that can't be run: the message names it, escaped.
#[test]
fn exec_failures_are_escaped() {
    for who in identities() {
        let env = Env::new(who);
        let name = format!("nope{EVIL}\nE\tpolicy\tforged");
        let out = env.run_argv(&[], &[&name]);
        assert_code(&out, 127);
        let err = stderr(&out);
        assert!(err.contains(r"nope\x1b]52;c;SGVsbG8=\x07") && err.contains("command not found"), "{who:?}: {err}");
        assert!(!err.contains("forged\n") && !err.contains("error"), "{who:?}: {err}");
        assert_clean(who, "stderr", &out.stderr, 2000);
    }
}

/// A project config (which earlier runs of older versions, or anything else, may have written)
/// with a hostile key, value and path: the error and `explain` quote them escaped and cut.
#[test]
fn config_content_is_escaped_in_errors_and_explain() {
    for who in identities() {
        let env = Env::new(who);
        let key = format!("{}{}", EVIL.replace('\x1b', "\\u001b").replace('\x07', "\\u0007"), "k".repeat(1 << 20));
        env.project_config(&format!("[filesystem]\n\"{}\" = 1\n", key.replace('\u{9b}', "\\u009b")));
        for cmd in [&["run", "--", "true"][..], &["explain"]] {
            let out = env.ringfence_within(cmd);
            assert_code(&out, 121);
            let err = stderr(&out);
            assert!(
                err.contains(r"unknown key `\x1b]52;c;SGVsbG8=\x07\x1b[2J\u{9b}31m"),
                "{who:?} {cmd:?}: {err:.500}"
            );
            assert!(err.contains("…[cut "), "{who:?} {cmd:?}: {err:.500}");
            assert_clean(who, "stderr", &out.stderr, ringfence_audit::untrusted::LINE_CAP + 64);
        }
        let evil_json = EVIL.replace('\x1b', "\\u001b").replace('\x07', "\\u0007").replace('\u{9b}', "\\u009b");
        env.project_config(&format!("[filesystem]\ndeny_write = [\"evil{evil_json}\"]\n"));
        for cmd in [&["explain"][..], &["explain", "--json"]] {
            let out = env.ringfence_within(cmd);
            assert_code(&out, 0);
            let text = stdout(&out);
            assert!(text.contains(r"evil\x1b]52") || text.contains(r"evil\\x1b]52"), "{who:?} {cmd:?}: {text}");
            assert_clean(who, "explain", &out.stdout, 1 << 16);
        }
    }
}
