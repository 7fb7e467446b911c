//! The exec monitor: every program the sandboxed command starts, at any depth, is seen, checked
//! against the exec rules and recorded before it runs. Each test runs the real binary as root
//! and as uid 65534, tries the route from inside the sandbox, and checks the host side (the
//! bare remote has no new branch, the marker file was not written). Every event written here is
//! validated against docs/events.schema.json.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The events file of a run, outside the workspace.
fn events_path(env: &Env) -> PathBuf {
    env.root.join("events.jsonl")
}

/// Every event in `path`, each checked against the published schema.
fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert_events_match_schema(&text);
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `ringfence run --events FILE [args] -- argv`, and its events.
fn run_recorded(env: &Env, args: &[&str], argv: &[&str]) -> (Output, Vec<Value>) {
    let path = events_path(env);
    let _ = std::fs::remove_file(&path);
    let mut all = vec!["--events", path_str(&path)];
    all.extend_from_slice(args);
    let out = env.run_argv(&all, argv);
    assert!(path.exists(), "{:?}: no events written: {}", env.who, both(&out));
    (out, read_events(&path))
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn argv_of(event: &Value) -> Vec<String> {
    event["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// The first allowed proc.exec whose argv starts with `prefix`.
fn exec_of<'a>(events: &'a [Value], prefix: &[&str]) -> &'a Value {
    of_type(events, "proc.exec")
        .into_iter()
        .find(|e| e["decision"] == "allow" && argv_of(e).iter().zip(prefix).all(|(a, p)| a == p))
        .unwrap_or_else(|| panic!("no proc.exec for {prefix:?} in {events:#?}"))
}

fn pid(event: &Value) -> u64 {
    event["pid"].as_u64().unwrap()
}

#[test]
fn every_program_of_a_nested_chain_is_recorded_with_its_parents_and_its_end() {
    for who in identities() {
        let env = Env::new(who);
        let script = r#"ls >/dev/null; python3 -c 'import os; os.system("/bin/echo hi; true")'"#;
        let (out, events) = run_recorded(&env, &[], &["sh", "-c", script]);
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "hi\n", "{who:?}: {}", both(&out));
        let sh = exec_of(&events, &["sh", "-c", script]);
        let ls = exec_of(&events, &["ls"]);
        let python = exec_of(&events, &["python3", "-c"]);
        let inner = exec_of(&events, &["sh", "-c", "/bin/echo hi; true"]);
        let echo = exec_of(&events, &["/bin/echo", "hi"]);
        for child in [ls, python] {
            assert_eq!(child["ppid"], sh["pid"], "{who:?}: {child}");
        }
        assert_eq!(inner["ppid"], python["pid"], "{who:?}");
        assert_eq!(echo["ppid"], inner["pid"], "{who:?}");
        // The sandbox pid chain runs from init (1) down to the process, through its parents.
        let chain = |e: &Value| e["chain"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect::<Vec<_>>();
        assert_eq!(chain(echo)[..chain(inner).len()], chain(inner)[..], "{who:?}");
        assert_eq!(chain(inner)[..chain(python).len()], chain(python)[..], "{who:?}");
        assert_eq!(chain(python)[..chain(sh).len()], chain(sh)[..], "{who:?}");
        assert_eq!(chain(sh)[0], 1);
        let exits: Vec<u64> = of_type(&events, "proc.exit").iter().map(|e| pid(e)).collect();
        for started in [sh, ls, python, inner, echo] {
            assert!(exits.contains(&pid(started)), "{who:?}: no proc.exit for {started}");
        }
        let end = of_type(&events, "run.end")[0];
        assert_eq!(end["execs_denied"], 0);
        assert!(end["processes"].as_u64().unwrap() >= 5, "{end}");
    }
}

/// A work tree with one commit, a bare remote next to it (inside the workspace, so a push
/// would succeed if it ran), a copy of git named `git` in the work tree, and a Makefile.
fn repository(env: &Env) {
    let git = String::from_utf8(env.host(&["sh", "-c", "command -v git"]).stdout).unwrap();
    let setup = format!(
        "git init -q --bare remote.git && git init -q work && cd work && \
         git -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m one && \
         cp {} ./git && printf 'push:\\n\\tgit push ../remote.git HEAD:refs/heads/make\\n' > Makefile",
        git.trim()
    );
    let out = env.host(&["sh", "-c", &setup]);
    assert!(out.status.success(), "{}", both(&out));
}

/// The branches of the bare remote, read on the host.
fn pushed_branches(env: &Env) -> String {
    let out = env.host(&["git", "-c", "safe.directory=*", "--git-dir", "remote.git", "branch", "--list"]);
    stdout(&out)
}

/// Each route pushes its own branch; a route that got through shows as that branch.
const PUSHES: &str = r#"cd work
git push -q ../remote.git HEAD:refs/heads/direct; echo "direct=$?"
bash -c 'git push -q ../remote.git HEAD:refs/heads/bash'; echo "bash=$?"
make -s push >/dev/null 2>&1; echo "make=$?"
python3 -c 'import os,sys; sys.exit(os.waitstatus_to_exitcode(os.system("git push -q ../remote.git HEAD:refs/heads/python")))'; echo "python=$?"
./git push -q ../remote.git HEAD:refs/heads/copy; echo "copy=$?"
env git push -q ../remote.git HEAD:refs/heads/env; echo "env=$?"
echo ../remote.git | xargs -I R git push -q R HEAD:refs/heads/xargs; echo "xargs=$?"
git status --short >/dev/null; echo "status=$?"
"#;

#[test]
fn a_deny_rule_stops_git_push_by_every_route_and_leaves_other_git_alone() {
    let routes = ["direct", "bash", "make", "python", "copy", "env", "xargs"];
    for who in identities() {
        // Positive control: without the rule every route pushes.
        let env = Env::new(who);
        repository(&env);
        let out = env.run_sh(&[], PUSHES);
        let pushed = pushed_branches(&env);
        for route in routes {
            assert!(stdout(&out).contains(&format!("{route}=0")), "{who:?} control {route}: {}", both(&out));
            assert!(pushed.contains(route), "{who:?} control: {route} not pushed: {pushed}");
        }
        drop(env);

        let env = Env::new(who);
        repository(&env);
        let args = ["--deny-exec", "git push", "--log-exec", "git status"];
        let (out, events) = run_recorded(&env, &args, &["sh", "-c", PUSHES]);
        assert_eq!(pushed_branches(&env), "", "{who:?}: something was pushed: {}", both(&out));
        for route in routes {
            assert!(!stdout(&out).contains(&format!("{route}=0")), "{who:?}: {route} pushed: {}", both(&out));
        }
        assert!(stdout(&out).contains("status=0"), "{who:?}: git status failed: {}", both(&out));
        assert!(stderr(&out).contains("Operation not permitted"), "{who:?}: {}", both(&out));
        assert!(stderr(&out).contains("ringfence: exec: exec of `git push"), "{who:?}: {}", both(&out));
        let denials = of_type(&events, "policy.deny");
        assert!(denials.iter().all(|d| d["rule"] == "exec"), "{denials:?}");
        assert!(denials.len() >= routes.len(), "{who:?}: {denials:?}");
        let end = of_type(&events, "run.end")[0];
        assert_eq!(end["execs_denied"].as_u64().unwrap(), denials.len() as u64, "{end}");
        let logged = of_type(&events, "proc.exec").into_iter().find(|e| e["decision"] == "log");
        let logged = logged.unwrap_or_else(|| panic!("{who:?}: no logged exec: {events:#?}"));
        assert_eq!(argv_of(logged)[..2], ["git", "status"]);
        assert!(logged["rule"].as_str().unwrap().starts_with("git status (--log-exec"), "{logged}");
    }
}

/// A script whose `#!` line names a denied program is denied too, and so is a script whose
/// interpreter is such a script; a script with an allowed interpreter runs.
#[test]
fn a_scripts_interpreter_is_checked_like_the_exec_itself() {
    for who in identities() {
        let env = Env::new(who);
        let setup = "cp /bin/sh forbidden && printf '#!%s/forbidden\\ntouch ran.$#\\n' \"$PWD\" > outer && \
                     printf '#!%s/outer\\n' \"$PWD\" > nested && printf '#!/bin/sh\\necho fine-ran\\n' > fine && \
                     chmod +x outer nested fine";
        let out = env.host(&["sh", "-c", setup]);
        assert!(out.status.success(), "{}", both(&out));
        let script = "./fine; ./outer; echo outer=$?; ./nested; echo nested=$?";
        // Positive control: without the rule both scripts run their interpreter.
        let out = env.run_sh(&[], script);
        assert!(env.ws.join("ran.0").exists() && env.ws.join("ran.1").exists(), "{who:?}: {}", both(&out));
        env.host(&["sh", "-c", "rm ran.0 ran.1"]);

        let out = env.run_sh(&["--deny-exec", "forbidden"], script);
        assert!(stdout(&out).contains("fine-ran"), "{who:?}: {}", both(&out));
        assert!(stdout(&out).contains("outer=126") && stdout(&out).contains("nested=126"), "{who:?}: {}", both(&out));
        assert!(!env.ws.join("ran.0").exists() && !env.ws.join("ran.1").exists(), "{who:?}: an interpreter ran");
    }
}

/// The program run by python's `os.execv` with `args`: it writes `marker` in the workspace.
fn exec_with_args(marker: &str, args: &str) -> String {
    format!(
        "import os,sys\n\
         try:\n    os.execv('/bin/sh', ['sh', '-c', 'echo ran > {marker}', 'x'] + {args})\n\
         except OSError as e:\n    print('errno', e.errno); sys.exit(3)"
    )
}

#[test]
fn an_argv_beyond_the_cap_is_refused_not_waved_through() {
    // 12 arguments of 100 KB: 1.2 MB, over the 1 MiB cap yet well within the kernel's limit.
    let over = "['a' * 100_000] * 12";
    let under = "['a' * 100_000] * 8";
    for who in identities() {
        let env = Env::new(who);
        // Positive controls: the kernel itself runs the long exec, and the sandbox runs one
        // under the cap.
        let out = env.host(&["python3", "-c", &exec_with_args("host-ran", over)]);
        assert!(out.status.success() && env.ws.join("host-ran").exists(), "{who:?}: {}", both(&out));
        let out = env.run_py(&[], &exec_with_args("under-ran", under));
        assert!(env.ws.join("under-ran").exists(), "{who:?}: {}", both(&out));

        let out = env.run_py(&[], &exec_with_args("over-ran", over));
        assert!(!env.ws.join("over-ran").exists(), "{who:?}: the exec over the cap ran");
        assert_eq!(stdout(&out), format!("errno {}\n", nix::errno::Errno::E2BIG as i32), "{who:?}: {}", both(&out));
        assert_code(&out, 3);
    }
}

/// execve through libc with an argv array that ends in unmapped memory: EFAULT, and the
/// program does not run; the same call with a valid array runs it.
const BAD_ARGV: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
path = ctypes.c_char_p(b"/bin/sh")
args = [b"sh", b"-c", b"echo ran > " + sys.argv[1].encode()]
good = sys.argv[2] == "good"
Argv = ctypes.c_char_p * (len(args) + 1)
argv = Argv(*args, None) if good else ctypes.cast(ctypes.c_void_p(0x10), ctypes.POINTER(ctypes.c_char_p))
if not good and sys.argv[2] == "tail":
    # A valid first pointer, then a pointer into unmapped memory.
    arr = (ctypes.c_void_p * 3)(ctypes.cast(ctypes.c_char_p(b"sh"), ctypes.c_void_p), 0x10, None)
    argv = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
rc = libc.syscall(59, path, argv, None)
print("errno", ctypes.get_errno()); sys.exit(3)
"#;

#[test]
fn an_exec_whose_argv_cannot_be_read_is_refused() {
    for who in identities() {
        let env = Env::new(who);
        let out = env.run_argv(&[], &["python3", "-c", BAD_ARGV, "good-ran", "good"]);
        assert!(env.ws.join("good-ran").exists(), "{who:?} control: {}", both(&out));
        for (marker, how) in [("bad-ran", "bad"), ("tail-ran", "tail")] {
            let out = env.run_argv(&[], &["python3", "-c", BAD_ARGV, marker, how]);
            assert_eq!(
                stdout(&out),
                format!("errno {}\n", nix::errno::Errno::EFAULT as i32),
                "{who:?} {how}: {}",
                both(&out)
            );
            assert!(!env.ws.join(marker).exists(), "{who:?} {how}: it ran");
        }
    }
}

/// Each way of naming the program by descriptor, in a forked child: `fexecve` (execveat with
/// AT_EMPTY_PATH), execveat with a directory descriptor and a relative path, and exec of
/// /proc/self/fd/N. Prints `METHOD=ERRNO` (0: it ran).
const BY_DESCRIPTOR: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
touch = os.path.realpath("/usr/bin/touch")
def attempt(name, run):
    pid = os.fork()
    if pid == 0:
        try:
            run(os.path.join(os.getcwd(), name + ".ran"))
        except OSError as e:
            os._exit(e.errno)
        os._exit(200 + ctypes.get_errno())
    print("%s=%d" % (name, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
def fexecve(marker):
    os.execve(os.open(touch, os.O_RDONLY), ["touch", marker], dict(os.environ))
def dirfd(marker):
    d = os.open(os.path.dirname(touch), os.O_PATH | os.O_DIRECTORY)
    Argv = ctypes.c_char_p * 3
    libc.syscall(322, d, os.path.basename(touch).encode(), Argv(b"touch", marker.encode(), None), None, 0)
    raise OSError(ctypes.get_errno(), "execveat")
def procfd(marker):
    os.execv("/proc/self/fd/%d" % os.open(touch, os.O_RDONLY), ["x", marker])
for name, run in [("fexecve", fexecve), ("dirfd", dirfd), ("procfd", procfd)]:
    attempt(name, run)
"#;

#[test]
fn execs_by_descriptor_are_resolved_and_checked() {
    let methods = ["fexecve", "dirfd", "procfd"];
    for who in identities() {
        let env = Env::new(who);
        // Positive control: each method runs touch.
        let out = env.run_py(&[], BY_DESCRIPTOR);
        for m in methods {
            assert!(stdout(&out).contains(&format!("{m}=0")), "{who:?} control {m}: {}", both(&out));
            assert!(env.ws.join(format!("{m}.ran")).exists(), "{who:?} control {m}");
            std::fs::remove_file(env.ws.join(format!("{m}.ran"))).unwrap();
        }
        let (out, events) = run_recorded(&env, &["--deny-exec", "touch"], &["python3", "-c", BY_DESCRIPTOR]);
        for m in methods {
            assert!(
                stdout(&out).contains(&format!("{m}={}", nix::errno::Errno::EPERM as i32)),
                "{who:?} {m}: {}",
                both(&out)
            );
            assert!(!env.ws.join(format!("{m}.ran")).exists(), "{who:?} {m}: touch ran");
        }
        let denied = of_type(&events, "proc.exec").into_iter().filter(|e| e["decision"] == "deny").count();
        assert_eq!(denied, methods.len(), "{who:?}: {events:#?}");
    }
}

/// A thread rewrites the path between the check and the kernel's exec: a rule naming the file
/// by absolute path also withholds Landlock's execute right, which holds whatever the path
/// says when the kernel reads it again.
const REWRITE_RACE: &str = r#"
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
target, marker = sys.argv[1].encode(), sys.argv[2].encode()
benign = b"/bin/true".ljust(len(target), b"\0")
for attempt in range(150):
    pid = os.fork()
    if pid == 0:
        buf = ctypes.create_string_buffer(benign + b"\0")
        def flip():
            while True:
                ctypes.memmove(buf, target + b"\0", len(target) + 1)
                ctypes.memmove(buf, benign + b"\0", len(benign) + 1)
        threading.Thread(target=flip, daemon=True).start()
        Argv = ctypes.c_char_p * 3
        libc.execv(buf, Argv(b"touch", marker, None))
        os._exit(1)
    os.waitpid(pid, 0)
print("done")
"#;

#[test]
fn a_rule_naming_a_file_by_path_holds_when_another_thread_rewrites_the_path() {
    let touch = std::fs::canonicalize("/usr/bin/touch").unwrap();
    let touch = path_str(&touch);
    for who in identities() {
        let env = Env::new(who);
        // Positive control: without the rule the race's target runs.
        env.run_argv(&[], &["python3", "-c", REWRITE_RACE, touch, "control"]);
        assert!(env.ws.join("control").exists(), "{who:?}: the control never ran touch");

        let out = env.run_argv(&["--deny-exec", touch], &["python3", "-c", REWRITE_RACE, touch, "raced"]);
        assert!(stdout(&out).contains("done"), "{who:?}: {}", both(&out));
        assert!(!env.ws.join("raced").exists(), "{who:?}: the rewritten path ran the denied file");
        let explained = env.ringfence(&["explain", "--deny-exec", touch]);
        assert!(stdout(&explained).contains("landlock: no execute right on the file"), "{}", both(&explained));
    }
}

#[test]
fn the_guardrails_preset_denies_privilege_and_removing_home_but_not_ordinary_work() {
    for who in identities() {
        let env = Env::new(who);
        // Programs named like the ones the preset denies (sudo isn't installed everywhere).
        let fake = "for p in sudo su doas notsudo; do printf '#!/bin/sh\\necho %s-ran\\n' $p > $p; chmod +x $p; done; \
                    mkdir -p sub/dir";
        env.host(&["sh", "-c", fake]);
        let script = "./sudo; ./su; ./doas; ./notsudo; rm -rf ~/project; echo rm=$?; rm -rf sub; echo sub=$?; \
                      git init -q g && git -C g remote add o /x; echo remote=$?";
        for args in [&["--exec-preset", "guardrails"][..], &[]] {
            if args.is_empty() {
                env.user_config("[exec]\npresets = [\"guardrails\"]\n");
            }
            let out = env.run_sh(args, script);
            let text = stdout(&out);
            for denied in ["sudo-ran", "su-ran", "doas-ran"] {
                assert!(!text.lines().any(|l| l == denied), "{who:?} {args:?}: {denied}: {}", both(&out));
            }
            assert!(text.contains("notsudo-ran"), "{who:?}: {}", both(&out));
            assert!(text.contains("sub=0") && !env.ws.join("sub").exists(), "{who:?}: {}", both(&out));
            assert!(text.contains("rm=126") && env.ws.exists(), "{who:?}: {}", both(&out));
            assert!(!text.contains("remote=0"), "{who:?}: {}", both(&out));
            assert!(stderr(&out).contains("the sandbox never gains privileges"), "{who:?}: {}", both(&out));
            env.host(&["sh", "-c", "mkdir -p sub/dir; rm -rf g"]);
        }
    }
}

#[test]
fn with_the_monitor_off_rules_refuse_to_start_and_only_the_command_is_recorded() {
    for who in identities() {
        let env = Env::new(who);
        let out = env.run_sh(&["--no-exec-monitor", "--deny-exec", "git push"], "echo ran");
        assert_code(&out, 121);
        assert!(!stdout(&out).contains("ran"), "{}", both(&out));
        assert!(stderr(&out).contains("help:"), "{}", both(&out));
        env.user_config("[exec]\nmonitor = false\n");
        let (out, events) = run_recorded(&env, &[], &["sh", "-c", "ls >/dev/null; echo ran"]);
        assert_code(&out, 0);
        assert_eq!(of_type(&events, "proc.exec").len(), 1, "{events:#?}");
        assert!(of_type(&events, "proc.exit").is_empty());
        // A preset with the monitor off in the config refuses to start as well.
        let out = env.run_sh(&["--exec-preset", "guardrails"], "echo ran");
        assert_code(&out, 121);
        // Positive control: the monitor on records ls too.
        env.user_config("[exec]\nmonitor = true\n");
        let (_, events) = run_recorded(&env, &["--exec-preset", "guardrails"], &["sh", "-c", "ls >/dev/null"]);
        assert_eq!(of_type(&events, "proc.exec").len(), 2, "{events:#?}");
        assert!(stdout(&env.ringfence(&["check"])).contains("[ok  ] exec monitor"), "{who:?}");
    }
}

/// A storm of execs whose events are read only once it is over: the queue overflows, and the
/// dropped records account for every event that was not written.
#[test]
fn a_slow_event_reader_loses_no_event_silently() {
    const STORM: u64 = 5000;
    for who in identities() {
        let env = Env::new(who);
        let out_path = env.root.join("slow.jsonl");
        let pipeline = format!(
            "{rf} run --events fd:3 -- sh -c 'i=0; while [ $i -lt {STORM} ]; do /bin/true; i=$((i+1)); done; : > done' \
             3>&1 >/dev/null 2>&1 | python3 -c 'import os,sys,time\nwhile not os.path.exists(\"done\"): time.sleep(0.05)\n\
             time.sleep(0.5); sys.stdout.write(sys.stdin.read())' > {out}",
            rf = path_str(binary()),
            out = path_str(&out_path)
        );
        let out = bounded_output(env.host_command(&["sh", "-c", &pipeline]), Duration::from_secs(120));
        assert!(out.status.success(), "{who:?}: {}", both(&out));
        let events = read_events(&out_path);
        let count = |kind| of_type(&events, kind).len() as u64;
        let dropped: u64 = of_type(&events, "events.dropped").iter().map(|e| e["count"].as_u64().unwrap()).sum();
        let end = of_type(&events, "run.end")[0];
        let started = end["processes"].as_u64().unwrap();
        assert_eq!(started, STORM + 1, "{who:?}: {end}");
        // Each program has one proc.exec and one proc.exit; none vanished without a count.
        assert_eq!(count("proc.exec") + count("proc.exit") + dropped, 2 * started, "{who:?}: dropped {dropped}");
        assert!(dropped > 0, "{who:?}: the reader was never slow enough to test anything");
    }
}

/// When ringfence itself is killed, the sandbox dies with it: no exec waits forever, and none
/// is let through unchecked.
#[test]
fn killing_the_supervisor_ends_every_exec() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("exec");
        let script = format!("trap '' TERM HUP; while :; do /bin/echo {tag} >> ticks; done");
        let mut child = env.run_command(&["--deny-exec", "git push"], &["sh", "-c", &script]).spawn().unwrap();
        let ticks = env.ws.join("ticks");
        wait_until("the loop ticks", Duration::from_secs(10), || ticks.exists());
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        let _ = child.wait();
        wait_until("the sandbox ends", Duration::from_secs(10), || pids_with_arg(&script).is_empty());
        let before = std::fs::metadata(&ticks).unwrap().len();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(std::fs::metadata(&ticks).unwrap().len(), before, "{who:?}: execs went on");
    }
}

/// `ringfence log` on a stored file of two real runs (one with the exec monitor and a denied
/// `git push`, one without it; an `events.dropped` record and a line that is not an event added
/// by hand): the output is pinned, filters included.
#[test]
fn ringfence_log_output_is_pinned() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/log");
    let cases: [(&[&str], &str); 5] = [
        (&[], "all.txt"),
        (&["--denied"], "denied.txt"),
        (&["--type", "proc.exit", "--type", "run.end"], "types.txt"),
        (&["--run", "1a253937426-457"], "run.txt"),
        (&["--json", "--denied"], "denied.jsonl"),
    ];
    for who in identities() {
        let env = Env::new(who);
        let file = env.root.join("runs.jsonl");
        std::fs::copy(golden.join("runs.jsonl"), &file).unwrap();
        env.chown_all();
        for (args, expected) in cases {
            let mut all = vec!["log"];
            all.extend_from_slice(args);
            all.push(path_str(&file));
            let out = env.ringfence(&all);
            assert_code(&out, 0);
            let want = std::fs::read_to_string(golden.join(expected)).unwrap();
            assert_eq!(stdout(&out), want, "{who:?}: ringfence log {args:?} differs from tests/golden/log/{expected}");
        }
    }
    // A missing file is an error, not an empty log.
    let out = Env::new(Who::Me).ringfence(&["log", "/nonexistent/ringfence-events.jsonl"]);
    assert!(!out.status.success() && stderr(&out).contains("ringfence: error:"), "{}", both(&out));
}
