//! Compatibility: everyday developer tools and process plumbing work inside the sandbox, for
//! every identity (root, and nobody when the tests run as root). Nothing here uses the network.
#![cfg(target_os = "linux")]

mod common;
use common::*;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `script` with `sh -c` inside the sandbox and asserts it exits 0.
#[track_caller]
fn ok(env: &Env, args: &[&str], script: &str) -> String {
    let out = env.sh_within(args, script);
    assert_code(&out, 0);
    stdout(&out)
}

/// Runs a shell pipeline on the host as the env's identity, with `$RF` the ringfence binary.
#[track_caller]
fn host(env: &Env, script: &str, input: Option<Vec<u8>>) -> std::process::Output {
    output_within(&mut env.host_sh(script), input, DEADLINE)
}

/// `git init`, `add` and `commit` in the workspace; the commit is in the repository on the host
/// afterwards. The identity comes from `-c` flags: ~/.gitconfig is protected read-only.
#[test]
fn git_commit_is_visible_on_the_host() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("src/lib.rs"), "pub fn answer() -> u32 { 42 }\n");
        let git = "git -c user.name=Sandbox -c user.email=sandbox@example.invalid -c init.defaultBranch=main";
        // The tree is clean after the commit: ringfence's placeholders don't show up in git.
        let status = ok(
            &env,
            &[],
            &format!("set -e; {git} init -q . && {git} add -A && {git} commit -q -m 'made inside' && {git} status --porcelain"),
        );
        assert_eq!(status, "", "{who:?}");
        // Read it back on the host, as the same identity (git refuses other owners' repositories).
        let out = host(&env, "git log --format=%s%n%an && git ls-files && git status --porcelain", None);
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "made inside\nSandbox\nsrc/lib.rs\n", "{who:?}");
        // A second run sees the history and can add to it.
        let log =
            ok(&env, &[], &format!("echo more >> src/lib.rs && {git} commit -q -am second && git log --format=%s"));
        assert_eq!(log, "second\nmade inside\n", "{who:?}");
    }
}

/// `cc` compiles a C file in the workspace, and the program runs and returns its exit code.
#[test]
fn cc_compiles_and_runs() {
    for who in identities() {
        let env = Env::new(who);
        env.write(
            &env.ws.join("hello.c"),
            "#include <stdio.h>\nint main(void) { printf(\"hello from C\\n\"); return 7; }\n",
        );
        let out = env.sh_within(&[], "cc -Wall -o hello hello.c && ./hello");
        assert_code(&out, 7);
        assert_eq!(stdout(&out), "hello from C\n", "{who:?}");
        assert!(env.ws.join("hello").is_file(), "{who:?}: the binary is in the workspace on the host");
    }
}

/// `python3 -m venv` creates a working virtual environment in the workspace, pip included.
/// /usr/bin/python3 is named directly: the harness PATH has no pyenv shims, and root's pyenv
/// lives in /root, which nobody can't enter. Needs Debian's python3-venv.
#[test]
fn python_venv_works() {
    for who in identities() {
        let env = Env::new(who);
        let out = ok(
            &env,
            &[],
            "/usr/bin/python3 -m venv .venv && .venv/bin/python -c 'import sys; print(sys.prefix != sys.base_prefix, sys.prefix)' \
             && .venv/bin/python -m pip --version >/dev/null && echo pip-ok",
        );
        assert_eq!(out, format!("True {}/.venv\npip-ok\n", env.ws.display()), "{who:?}");
        assert!(env.ws.join(".venv/bin/python").exists(), "{who:?}");
    }
}

/// `cargo build --offline` of a crate without dependencies, with CARGO_HOME in the workspace.
/// The toolchain is the one running this test ($CARGO, else the first cargo in PATH; its bin
/// folder goes first in PATH). For nobody it is skipped when that toolchain is unreachable:
/// rustup installs under /root (mode 0700).
#[test]
fn cargo_builds_offline() {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("cargo")).find(|p| p.is_file()))
        .expect("no cargo: neither $CARGO nor PATH has one");
    let bin = cargo.parent().unwrap().to_path_buf();
    // A rustup proxy finds its toolchains through RUSTUP_HOME (default ~/.rustup), and the
    // sandbox's HOME is the scratch home.
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
        .filter(|p| p.is_dir())
        .map(|h| format!("RUSTUP_HOME={}", h.display()));
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok().map(|t| format!("RUSTUP_TOOLCHAIN={t}"));
    for who in identities() {
        let env = Env::new(who);
        let reachable = host(&env, &format!("test -x '{}'", cargo.display()), None).status.success();
        if !reachable {
            eprintln!("cargo_builds_offline: skipped for {who:?}: {} is not reachable", cargo.display());
            continue;
        }
        env.write(
            &env.ws.join("hello/Cargo.toml"),
            "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        );
        env.write(&env.ws.join("hello/src/main.rs"), "fn main() { println!(\"hello from cargo\"); }\n");
        let path = format!("PATH={}:/usr/local/bin:/usr/bin:/bin", bin.display());
        let cargo_home = format!("CARGO_HOME={}/.cargo-home", env.ws.display());
        let mut args = vec!["--env", &path, "--env", &cargo_home];
        for extra in [&rustup_home, &toolchain].into_iter().flatten() {
            args.extend(["--env", extra.as_str()]);
        }
        let script = format!("cd hello && '{}' build --offline -q && ./target/debug/hello", cargo.display());
        let out = ok(&env, &args, &script);
        assert_eq!(out, "hello from cargo\n", "{who:?}");
        assert!(env.ws.join("hello/target/debug/hello").is_file(), "{who:?}");
    }
}

/// `node -e` runs a script that computes and writes a file in the workspace.
#[test]
fn node_runs_a_script() {
    for who in identities() {
        let env = Env::new(who);
        let out = ok(
            &env,
            &[],
            "node -e 'const fs = require(\"fs\"); fs.writeFileSync(\"out.json\", JSON.stringify({n: [1,2,3].map(x => x * 2)})); \
             console.log(process.version.startsWith(\"v\"), require(\"os\").tmpdir())'",
        );
        assert_eq!(out, "true /tmp\n", "{who:?}");
        assert_eq!(std::fs::read_to_string(env.ws.join("out.json")).unwrap(), "{\"n\":[2,4,6]}", "{who:?}");
    }
}

/// Shell pipelines, subshells, here-documents and redirections behave as on the host.
#[test]
fn shell_pipelines() {
    for who in identities() {
        let env = Env::new(who);
        let out = ok(
            &env,
            &[],
            "seq 1 1000 | grep 7 | wc -l; (echo b; echo a) | sort | tr -d '\\n'; echo; \
             cat <<EOF > notes.txt\nline one\nEOF\nwc -l < notes.txt; echo err >&2",
        );
        assert_eq!(out, "271\nab\n1\n", "{who:?}");
        assert_eq!(std::fs::read_to_string(env.ws.join("notes.txt")).unwrap(), "line one\n");
    }
}

/// The command's exit code is ringfence's exit code, over the whole 0..=255 range.
#[test]
fn exit_codes_propagate() {
    for who in identities() {
        let env = Env::new(who);
        for code in [0, 1, 42, 255] {
            let out = env.sh_within(&[], &format!("exit {code}"));
            assert_code(&out, code);
            assert_eq!(stderr(&out), "", "{who:?}: ringfence adds nothing to a plain exit");
        }
    }
}

/// A command killed by a signal inside the sandbox makes ringfence exit 128+N.
#[test]
fn signal_deaths_give_128_plus_n() {
    for who in identities() {
        let env = Env::new(who);
        for (sig, n) in [("TERM", 15), ("KILL", 9), ("SEGV", 11)] {
            let out = env.sh_within(&[], &format!("kill -{sig} $$"));
            assert_code(&out, 128 + n);
        }
    }
}

/// SIGINT and SIGTERM sent to the ringfence process reach the command: its trap runs, writes a
/// marker in the workspace, and its exit code (3) becomes ringfence's.
#[test]
fn signals_to_ringfence_reach_the_command() {
    for who in identities() {
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            let env = Env::new(who);
            let name = &sig.as_str()[3..];
            let script =
                format!("trap 'echo {name} > marker; exit 3' {name}; touch ready; while :; do sleep 0.05; done");
            let mut cmd = env.command();
            cmd.args(["run", "--", "sh", "-c", &script]).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = cmd.spawn().unwrap();
            wait_until("the command's trap", DEADLINE, || env.ws.join("ready").exists());
            kill(Pid::from_raw(child.id() as i32), sig).unwrap();
            let status = wait_within(&mut child, Duration::from_secs(20));
            assert_eq!(status.code(), Some(3), "{who:?} {sig}");
            assert_eq!(std::fs::read_to_string(env.ws.join("marker")).unwrap(), format!("{name}\n"), "{who:?}");
        }
    }
}

/// Data piped into ringfence reaches the command's stdin byte for byte.
#[test]
fn stdin_passes_through() {
    for who in identities() {
        let env = Env::new(who);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut cmd = env.command();
        cmd.args(["run", "--", "wc", "-c"]);
        let out = output_within(&mut cmd, Some(data.clone()), DEADLINE);
        assert_code(&out, 0);
        assert_eq!(stdout(&out).trim(), "1000000", "{who:?}");
        let mut cmd = env.command();
        cmd.args(["run", "--", "cat"]);
        let out = output_within(&mut cmd, Some(data.clone()), DEADLINE);
        assert_code(&out, 0);
        assert!(out.stdout == data, "{who:?}: cat returned {} bytes, not the same data", out.stdout.len());
    }
}

/// 10 MB of output pass through intact and in order.
#[test]
fn large_stdout_is_intact() {
    let expected: String = (0..1_000_000).map(|i| format!("{i:09}\n")).collect();
    for who in identities() {
        let env = Env::new(who);
        let started = Instant::now();
        let out = env.sh_within(&[], "awk 'BEGIN { for (i = 0; i < 1000000; i++) printf \"%09d\\n\", i }'");
        assert_code(&out, 0);
        assert_eq!(out.stdout.len(), 10_000_000, "{who:?}");
        assert!(out.stdout == expected.as_bytes(), "{who:?}: the output differs");
        assert!(started.elapsed() < Duration::from_secs(20), "{who:?}: took {:?}", started.elapsed());
    }
}

/// Under a terminal (util-linux `script`), the command gets a terminal on stdin and stdout,
/// and its exit code still comes through.
#[test]
fn terminal_session_under_script() {
    for who in identities() {
        let env = Env::new(who);
        let out = host(
            &env,
            r#"script -qec '"$RF" run -- sh -c "test -t 0 && test -t 1 && echo TTY; stty size >/dev/null && echo STTY; exit 5"' /dev/null"#,
            None,
        );
        assert_code(&out, 5);
        let text = stdout(&out).replace('\r', "");
        assert!(text.contains("TTY\n") && text.contains("STTY\n"), "{who:?}: {text:?}");
    }
}

/// `tty` names the command's terminal. It fails today: the command's pseudo-terminal comes from
/// the host's devpts, but the sandbox mounts a new devpts instance, so ttyname() (tty, ssh,
/// gpg, python's os.ttyname) can't find /dev/pts/N and reports "not a tty".
#[test]
fn tty_names_the_terminal() {
    for who in identities() {
        let env = Env::new(who);
        let out = host(&env, r#"script -qec '"$RF" run -- sh -c "tty && test -t 0 && echo TTY"' /dev/null"#, None);
        let text = stdout(&out).replace('\r', "");
        assert_code(&out, 0);
        assert!(text.contains("/dev/pts/") && text.contains("TTY\n"), "{who:?}: {text:?}");
    }
}

/// A tmux server on a private socket, removed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts a detached session in the workspace running `command` (a shell command line).
    fn start(env: &Env, command: &str) -> Tmux {
        let tmux = Tmux { socket: env.root.join("tmux.sock") };
        let out =
            tmux.run(&["new-session", "-d", "-s", "t", "-x", "160", "-y", "50", "-c", path_str(&env.ws), command]);
        assert_code(&out, 0);
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]).args(args);
        output_within(&mut cmd, None, Duration::from_secs(10))
    }

    /// Types `keys` (tmux key names, e.g. "Enter" or "C-c"; other words literally).
    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        assert_code(&self.run(&args), 0);
    }

    /// Types a line and presses Enter.
    fn line(&self, text: &str) {
        self.send(&["-l", text]);
        self.send(&["Enter"]);
    }

    fn pane(&self) -> String {
        stdout(&self.run(&["capture-pane", "-p", "-t", "t", "-S", "-200"]))
    }

    /// Waits until a line of the pane equals `line`, and returns the pane.
    #[track_caller]
    fn expect_line(&self, line: &str) -> String {
        let started = Instant::now();
        loop {
            let pane = self.pane();
            if pane.lines().any(|l| l.trim_end() == line) {
                return pane;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "no line {line:?} in the pane:\n{pane}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until, after the last occurrence of `marker`, the pane has a line equal to
    /// `prompt` (trailing spaces trimmed): the REPL printed a new prompt.
    #[track_caller]
    fn expect_prompt_after(&self, marker: &str, prompt: &str) {
        let started = Instant::now();
        loop {
            let pane = self.pane();
            if let Some(pos) = pane.rfind(marker) {
                if pane[pos + marker.len()..].lines().skip(1).any(|l| l.trim_end() == prompt) {
                    return;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(15), "no prompt after {marker:?}:\n{pane}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Not `run`: a panic while a failed test unwinds would abort the whole suite.
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The pane's command line: ringfence as `who`, in a clean environment, then its exit code.
fn pane_command(env: &Env, rf_args: &str) -> String {
    let setpriv = if env.who == Who::Nobody { "setpriv --reuid=65534 --regid=65534 --clear-groups -- " } else { "" };
    format!(
        "env -i PATH=/usr/local/bin:/usr/bin:/bin HOME='{}' LANG=C.UTF-8 TERM=xterm-256color {setpriv}'{}' run {rf_args}; \
         echo RF_EXIT=$?; sleep 600",
        env.home.display(),
        binary().display()
    )
}

/// An interactive `bash` in tmux: a typed command runs and prints, the terminal has the pane's
/// size and follows a resize, Ctrl-D ends a `cat`'s input, Ctrl-C interrupts a `sleep 100`
/// (the shell survives, $? is 130), and `exit 9` ends the run with 9.
#[test]
fn tmux_interactive_bash() {
    for who in identities() {
        let env = Env::new(who);
        let tmux = Tmux::start(&env, &pane_command(&env, "--env 'PS1=rf> ' -- bash --norc --noprofile -i"));
        tmux.expect_line("rf>");
        tmux.line("echo $((6 * 7)) $(pwd)");
        tmux.expect_line(&format!("42 {}", env.ws.display()));

        tmux.line("echo size $(stty size)");
        tmux.expect_line("size 50 160");
        assert_code(&tmux.run(&["resize-window", "-t", "t", "-x", "100", "-y", "40"]), 0);
        tmux.line("echo resized $(stty size)");
        tmux.expect_line("resized 40 100");

        tmux.line("cat > typed.txt; echo cat-done");
        tmux.line("typed in the terminal");
        tmux.send(&["C-d"]);
        tmux.expect_line("cat-done");
        assert_eq!(std::fs::read_to_string(env.ws.join("typed.txt")).unwrap(), "typed in the terminal\n");

        let started = Instant::now();
        tmux.line("echo started; sleep 100; echo not-interrupted");
        tmux.expect_line("started");
        std::thread::sleep(Duration::from_millis(300));
        tmux.send(&["C-c"]);
        tmux.expect_prompt_after("echo started", "rf>");
        tmux.line("echo after=$?");
        let pane = tmux.expect_line("after=130");
        assert!(!pane.contains("\nnot-interrupted"), "{who:?}:\n{pane}");
        assert!(started.elapsed() < Duration::from_secs(30), "{who:?}: Ctrl-C did not interrupt sleep");
        tmux.line("exit 9");
        tmux.expect_line("RF_EXIT=9");
    }
}

/// Host pids of processes with an argument equal to `arg`.
fn processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// Closing the terminal (the tmux server goes away: SIGHUP) ends the run and everything in it.
#[test]
fn closing_the_terminal_ends_the_run() {
    for who in identities() {
        let env = Env::new(who);
        let tag = format!("{}.{}", 200 + who as u32, std::process::id());
        let tmux = Tmux::start(&env, &pane_command(&env, "--env 'PS1=rf> ' -- bash --norc --noprofile -i"));
        tmux.expect_line("rf>");
        tmux.line(&format!("sleep {tag}"));
        wait_until("the sleep inside", Duration::from_secs(15), || !processes_with_arg(&tag).is_empty());
        drop(tmux);
        wait_until("the sleep to end with the terminal", Duration::from_secs(15), || {
            processes_with_arg(&tag).is_empty()
        });
    }
}

/// An interactive python3 REPL in tmux: it evaluates input, Ctrl-C raises KeyboardInterrupt in
/// a long `time.sleep` and the REPL survives, and `raise SystemExit(4)` ends the run with 4.
#[test]
fn tmux_interactive_python() {
    for who in identities() {
        let env = Env::new(who);
        let tmux = Tmux::start(&env, &pane_command(&env, "-- /usr/bin/python3 -q"));
        tmux.expect_line(">>>");
        tmux.line("print(6 * 7)");
        tmux.expect_line("42");
        tmux.line("import time; print('started'); time.sleep(100)");
        tmux.expect_line("started");
        std::thread::sleep(Duration::from_millis(300));
        tmux.send(&["C-c"]);
        tmux.expect_line("KeyboardInterrupt");
        tmux.line("print('alive', 1 + 1)");
        tmux.expect_line("alive 2");
        tmux.line("raise SystemExit(4)");
        tmux.expect_line("RF_EXIT=4");
    }
}

/// Asserts ringfence's message about a failed exec.
#[track_caller]
fn assert_exec_message(out: &std::process::Output, expected: &str) {
    assert_eq!(stderr(out), expected);
    assert_eq!(stdout(out), "");
}

/// A command that doesn't exist: exit 127 and a message naming it.
#[test]
fn missing_command_is_127() {
    for who in identities() {
        let env = Env::new(who);
        for program in ["nonexistent-cmd", "./nonexistent-cmd", "/usr/bin/nonexistent-cmd"] {
            let out = env.ringfence_within(&["run", "--", program]);
            assert_code(&out, 127);
            assert_exec_message(&out, &format!("ringfence: {program}: command not found\n"));
        }
    }
}

/// A file without the execute bit: exit 126 and a message saying why.
#[test]
fn non_executable_is_126() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("script.sh"), "#!/bin/sh\necho never\n");
        let out = env.ringfence_within(&["run", "--", "./script.sh"]);
        assert_code(&out, 126);
        assert_exec_message(&out, "ringfence: ./script.sh: can't execute: Permission denied\n");
    }
}

/// The "command not found" message appears on every run, also under load: the command's
/// failed exec may report before init's "P <pid>" line, and that report must not be lost.
#[test]
fn exec_failure_message_is_never_lost() {
    let threads: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(|| {
                let env = Env::new(Who::Me);
                (0..100)
                    .map(|_| env.ringfence_within(&["run", "--", "./nonexistent-cmd"]))
                    .filter(|out| {
                        out.status.code() != Some(127)
                            || stderr(out) != "ringfence: ./nonexistent-cmd: command not found\n"
                    })
                    .count()
            })
        })
        .collect();
    let bad: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(bad, 0, "{bad} of 600 runs lost the message");
}

/// `--timeout` ends the run with 124 and says so; a command that ignores SIGTERM is killed
/// after the grace period.
#[test]
fn timeout_is_124() {
    for who in identities() {
        let env = Env::new(who);
        let started = Instant::now();
        let out = env.sh_within(&["--timeout", "500ms"], "sleep 30");
        assert_code(&out, 124);
        assert!(stderr(&out).contains("timed out after"), "{}", stderr(&out));
        assert!(started.elapsed() < Duration::from_secs(5), "{who:?}: {:?}", started.elapsed());

        let started = Instant::now();
        let out = env.sh_within(&["--timeout", "300ms"], "trap '' TERM; sleep 30");
        assert_code(&out, 124);
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "{who:?}: {took:?}");
    }
}

/// Inside: the working directory is the workspace, $PWD and $HOME are set, TMPDIR=/tmp, and
/// /tmp is private, empty at start and writable.
#[test]
fn sandbox_basics() {
    let marker = format!("/tmp/ringfence-compat-{}", std::process::id());
    for who in identities() {
        let env = Env::new(who);
        let ws = env.ws.canonicalize().unwrap();
        let out = ok(
            &env,
            &[],
            &format!(
                "pwd; pwd -P; echo \"$PWD\"; echo \"$HOME\"; echo \"$TMPDIR\"; echo \"$RINGFENCE\"; ls -A /tmp | wc -l; \
                 echo x > {marker} && cat {marker}; mkdir -p \"$TMPDIR/d\" && echo tmp-ok"
            ),
        );
        let expected =
            format!("{ws}\n{ws}\n{ws}\n{home}\n/tmp\n1\n0\nx\ntmp-ok\n", ws = ws.display(), home = env.home.display());
        assert_eq!(out, expected, "{who:?}");
        assert!(!Path::new(&marker).exists(), "{who:?}: the sandbox's /tmp is not the host's");
    }
}

/// `--json-status 3` writes one JSON object to descriptor 3, for an exit and for a signal.
#[test]
fn json_status_on_fd_3() {
    for who in identities() {
        let env = Env::new(who);
        let status = env.outside.join("status.json");
        let out = host(&env, &format!("\"$RF\" run --json-status 3 -- sh -c 'exit 5' 3>'{}'", status.display()), None);
        assert_code(&out, 5);
        let text = std::fs::read_to_string(&status).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text:?}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["exit_code"], 5, "{v}");
        assert_eq!(v["status"], 5, "{v}");
        assert_eq!(v["reason"], "exited", "{v}");
        assert!(v["signal"].is_null(), "{v}");
        assert!(v["duration_ms"].as_u64().is_some_and(|d| d < 60_000), "{v}");
        assert!(v["rusage"]["max_rss_kb"].as_u64().is_some(), "{v}");

        let out =
            host(&env, &format!("\"$RF\" run --json-status 3 -- sh -c 'kill -TERM $$' 3>'{}'", status.display()), None);
        assert_code(&out, 143);
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
        assert_eq!((v["signal"].as_i64(), v["status"].as_i64()), (Some(15), Some(143)), "{v}");
        assert!(v["exit_code"].is_null(), "{v}");
        assert_eq!(v["reason"], "signaled", "{v}");

        // Into a pipe: the status comes out of ringfence's fd 3, the command's output elsewhere.
        let out = host(&env, "\"$RF\" run --json-status 3 -- sh -c 'echo out; exit 2' 3>&1 >/dev/null | cat", None);
        assert_code(&out, 0);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{who:?}: {e}: {:?} {:?}", stdout(&out), stderr(&out)));
        assert_eq!(v["exit_code"], 2, "{v}");
    }
}

/// `--json-status` writes through the descriptor it was given: appended to a log opened with
/// `3>>`, into a socket, and into another user's pipe. Fails today: ringfence reopens
/// /proc/self/fd/N, which makes a new open file at offset 0 without O_APPEND (the start of the
/// log is overwritten), can't open a socket at all (ENXIO), and needs permission on the pipe
/// (EACCES); in the last two the status is lost with only a message on stderr.
#[test]
fn json_status_writes_through_the_descriptor() {
    for who in identities() {
        let env = Env::new(who);
        let log = env.outside.join("status.log");
        env.write(&log, "{\"earlier\":1}\n");
        let out = host(&env, &format!("\"$RF\" run --json-status 3 -- true 3>>'{}'", log.display()), None);
        assert_code(&out, 0);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("{\"earlier\":1}\n{\"") && text.lines().count() == 2, "{who:?}: {text:?}");

        let script = r#"/usr/bin/python3 -c '
import os, socket, subprocess
mine, theirs = socket.socketpair()
rc = subprocess.call([os.environ["RF"], "run", "--json-status", str(theirs.fileno()), "--", "true"], pass_fds=[theirs.fileno()])
theirs.close()
print(rc, mine.makefile().readline().startswith("{"))
'"#;
        let out = host(&env, script, None);
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "0 True\n", "{who:?}: {}", stderr(&out));

        // A pipe made by another user (here the test process, root): reopening it needs
        // permission on the pipe, writing to the inherited descriptor doesn't.
        let out = host(&env, "\"$RF\" run --json-status 3 -- true 3>&1 >/dev/null", None);
        assert_code(&out, 0);
        assert!(stdout(&out).starts_with("{\""), "{who:?}: {}", stderr(&out));
    }
}

/// Two runs in the same workspace at once (an agent running tests while it builds). Fails
/// today: the first run creates its protected-path placeholders as directories in the host
/// workspace, including `.ringfence.toml`, and the second run then fails to read that
/// "project config" with "Is a directory" and exits 121.
#[test]
fn concurrent_runs_share_a_workspace() {
    for who in identities() {
        let env = Env::new(who);
        let mut first = env.command();
        first.args(["run", "--", "sh", "-c", "touch first-started; sleep 3"]);
        let mut first = first.spawn().unwrap();
        wait_until("the first run", DEADLINE, || env.ws.join("first-started").exists());
        let out = env.sh_within(&[], "echo second");
        let first = wait_within(&mut first, DEADLINE);
        assert_eq!(first.code(), Some(0), "{who:?}");
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "second\n");
    }
}

/// Started with stdin closed, ringfence gives the command /dev/null there, never one of its own
/// descriptors.
#[test]
fn closed_stdin_becomes_dev_null() {
    for who in identities() {
        let env = Env::new(who);
        let script = format!("exec <&-; {} run -- readlink /proc/self/fd/0", binary().display());
        let out = output_within(&mut env.host_sh(&script), None, DEADLINE);
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "/dev/null\n", "{who:?}: {}", stderr(&out));
    }
}

/// vim in tmux: the full-screen editor draws, takes keys, and saves into the workspace (seen on
/// the host); `:q` ends the run with 0.
#[test]
fn tmux_vim_edits_a_file() {
    for who in identities() {
        let env = Env::new(who);
        let tmux = Tmux::start(&env, &pane_command(&env, "-- /usr/bin/vim -u NONE -N notes.txt"));
        tmux.expect_line("~");
        tmux.send(&["i"]);
        tmux.send(&["-l", "written in vim"]);
        tmux.send(&["Escape"]);
        tmux.line(":wq");
        tmux.expect_line("RF_EXIT=0");
        let saved = std::fs::read_to_string(env.ws.join("notes.txt")).unwrap_or_default();
        assert_eq!(saved, "written in vim\n", "{who:?}");
    }
}

/// npm refuses to install when it can't write its cache, and ~/.npm is outside the workspace:
/// in allow mode it gets a cache in the private /tmp, unless the policy shares its own (an
/// overlay, implied by the npm preset) or lets it write it, or the caller chose one. The cache
/// really is writable there.
#[test]
fn npm_gets_a_writable_cache_in_allow_mode() {
    for who in identities() {
        let env = Env::new(who);
        let probe = "echo \"[$npm_config_cache]\"; mkdir -p \"$npm_config_cache\" && touch \"$npm_config_cache/x\" && echo writable";
        let got = ok(&env, &["--allow-host", "registry.npmjs.org:443"], probe);
        assert_eq!(got, "[/tmp/.npm]\nwritable\n", "{who:?}");
        let npm_home = env.home.join(".npm");
        std::fs::create_dir_all(&npm_home).unwrap();
        env.chown_all();
        let own = ok(
            &env,
            &["--allow-host", "registry.npmjs.org:443", "--write", "~/.npm", "--allow-writable-home-config"],
            "echo \"[$npm_config_cache]\"",
        );
        assert_eq!(own, "[]\n", "{who:?}: with ~/.npm writable npm uses its own cache");
        let shared =
            ok(&env, &["--allow-preset", "npm"], "echo \"[$npm_config_cache]\"; touch ~/.npm/x && echo writable");
        assert_eq!(shared, "[]\nwritable\n", "{who:?}: with the npm preset npm's own cache is an overlay");
        assert!(!npm_home.join("x").exists(), "{who:?}: the host's npm cache is unchanged");
        let chosen = ok(
            &env,
            &["--allow-host", "x.example:443", "--env", "npm_config_cache=/tmp/mine"],
            "echo \"[$npm_config_cache]\"",
        );
        assert_eq!(chosen, "[/tmp/mine]\n", "{who:?}");
        let offline = ok(&env, &[], "echo \"[$npm_config_cache]\"");
        assert_eq!(offline, "[]\n", "{who:?}: without the gateway nothing is set");
    }
}
