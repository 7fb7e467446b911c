//! The Rust library API, in process: `ringfence::Command` built like `std::process::Command`,
//! with piped, null and inherited streams, exit statuses, timeouts, kill and drop.
//!
//! `Command::spawn` must be called while the process has a single thread, so this suite has its
//! own `main` (the target sets `harness = false`) and runs its cases one after another on the
//! main thread. A hang fails the suite: every case runs under `alarm`, whose SIGALRM ends the
//! process.

fn main() {
    #[cfg(target_os = "linux")]
    cases::main();
}

#[cfg(target_os = "linux")]
mod common;

/// The cases, on the Linux backend; other platforms have their own tests.
#[cfg(target_os = "linux")]
mod cases {
    use super::common::{Env, Who};

    use ringfence::policy::{HumanDuration, Overrides, PolicyBuilder};
    use ringfence::{Command, EndReason, Policy, Stdio};
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    /// Seconds one case may take before SIGALRM ends the suite.
    const CASE_LIMIT: u32 = 60;

    /// The default policy for `env`'s workspace and home, with `flags` on top.
    fn policy(env: &Env, flags: Overrides) -> Policy {
        PolicyBuilder::new(&env.ws.canonicalize().unwrap(), &env.home).overrides(flags).build().unwrap()
    }

    fn sh(script: &str) -> Command {
        Command::new("sh").args(["-c", script])
    }

    fn read_all(stream: Option<std::fs::File>) -> String {
        let mut text = String::new();
        stream.expect("the stream was piped").read_to_string(&mut text).unwrap();
        text
    }

    /// Piped stdout and stderr carry the command's output; `wait` returns its exit code.
    fn piped_output_and_exit_code() {
        let env = Env::new(Who::Me);
        let mut child = sh("echo out; echo err >&2; exit 3")
            .policy(policy(&env, Overrides::default()))
            .stdout(Stdio::Piped)
            .stderr(Stdio::Piped)
            .spawn()
            .unwrap();
        assert_eq!(read_all(child.stdout.take()), "out\n");
        assert_eq!(read_all(child.stderr.take()), "err\n");
        let status = child.wait().unwrap();
        assert_eq!((status.code(), status.signal(), status.exit_code()), (Some(3), None, 3));
        assert_eq!(status.reason, EndReason::Exited);
        assert!(!status.success());
    }

    /// Piped stdin reaches the command; closing it gives the command EOF.
    fn piped_stdin() {
        let env = Env::new(Who::Me);
        let mut child = Command::new("wc")
            .arg("-c")
            .policy(policy(&env, Overrides::default()))
            .stdin(Stdio::Piped)
            .stdout(Stdio::Piped)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&[b'x'; 100_000]).unwrap();
        drop(stdin);
        assert_eq!(read_all(child.stdout.take()).trim(), "100000");
        assert!(child.wait().unwrap().success());
    }

    /// 10 MB through a pipe arrive intact.
    fn large_piped_output() {
        let env = Env::new(Who::Me);
        let mut child = sh("awk 'BEGIN { for (i = 0; i < 1000000; i++) printf \"%09d\\n\", i }'")
            .policy(policy(&env, Overrides::default()))
            .stdout(Stdio::Piped)
            .spawn()
            .unwrap();
        let out = read_all(child.stdout.take());
        let expected: String = (0..1_000_000).map(|i| format!("{i:09}\n")).collect();
        assert!(out == expected, "{} bytes, not the expected 10 MB", out.len());
        assert!(child.wait().unwrap().success());
    }

    /// `env` sets a variable on top of the policy's; `current_dir` picks the directory; the
    /// scrubbed environment still has TMPDIR and RINGFENCE.
    fn env_and_current_dir() {
        let env = Env::new(Who::Me);
        std::fs::create_dir(env.ws.join("sub")).unwrap();
        let ws = env.ws.canonicalize().unwrap();
        let mut child = sh("echo $GREETING; pwd; echo $TMPDIR $RINGFENCE")
            .policy(policy(&env, Overrides::default()))
            .env("GREETING", "hello")
            .current_dir(ws.join("sub"))
            .stdout(Stdio::Piped)
            .spawn()
            .unwrap();
        assert_eq!(read_all(child.stdout.take()), format!("hello\n{}/sub\n/tmp 1\n", ws.display()));
        assert!(child.wait().unwrap().success());
    }

    /// The policy is enforced: the workspace is writable, a host folder outside it is not.
    fn policy_is_enforced() {
        let env = Env::new(Who::Me);
        let outside = env.outside.join("escape");
        let script = format!("echo in > inside.txt; {{ echo out > {}; }} 2>/dev/null; echo $?", outside.display());
        let mut child = sh(&script).policy(policy(&env, Overrides::default())).stdout(Stdio::Piped).spawn().unwrap();
        assert_ne!(read_all(child.stdout.take()).trim(), "0");
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(env.ws.join("inside.txt")).unwrap(), "in\n");
        assert!(!outside.exists());
    }

    /// `enforcement` says what the run enforces.
    fn enforcement_is_reported() {
        let env = Env::new(Who::Me);
        let child =
            Command::new("true").policy(policy(&env, Overrides::default())).stdout(Stdio::Null).spawn().unwrap();
        let names: Vec<String> = child.enforcement().enforced.iter().map(|l| l.name.clone()).collect();
        for layer in ["namespaces", "mount view", "landlock", "seccomp"] {
            assert!(names.iter().any(|n| n == layer), "{layer} missing from {names:?}");
        }
        assert!(child.enforcement().not_enforced.is_empty());
        assert!(child.wait().unwrap().success());
    }

    /// `status` runs to completion with null streams.
    fn status_with_null_streams() {
        let env = Env::new(Who::Me);
        let status = sh("echo discarded; exit 0")
            .policy(policy(&env, Overrides::default()))
            .stdout(Stdio::Null)
            .stderr(Stdio::Null)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A command killed by a signal: no code, the signal, and 128+N.
    fn signal_status() {
        let env = Env::new(Who::Me);
        let status = sh("kill -TERM $$").policy(policy(&env, Overrides::default())).status().unwrap();
        assert_eq!((status.code(), status.signal(), status.exit_code()), (None, Some(15), 143));
        assert_eq!(status.reason, EndReason::Signaled);
    }

    /// A missing program: `spawn` succeeds, `wait` reports the exec failure and 127.
    fn missing_program() {
        let env = Env::new(Who::Me);
        let status = Command::new("nonexistent-cmd")
            .policy(policy(&env, Overrides::default()))
            .stderr(Stdio::Null)
            .status()
            .unwrap();
        assert_eq!(status.exit_code(), 127);
        assert!(
            matches!(&status.reason, EndReason::ExecFailed(m) if m.contains("nonexistent-cmd: command not found")),
            "{:?}",
            status.reason
        );
    }

    /// The policy's timeout ends the run with reason Timeout and exit code 124.
    fn timeout() {
        let env = Env::new(Who::Me);
        let flags = Overrides { timeout: Some(HumanDuration(Duration::from_millis(300))), ..Default::default() };
        let started = Instant::now();
        let status = Command::new("sleep").arg("30").policy(policy(&env, flags)).status().unwrap();
        assert_eq!((status.reason.clone(), status.exit_code()), (EndReason::Timeout, 124));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    /// Spawns `script`, which prints "started" first, and waits for that line.
    fn started(env: &Env, script: &str) -> (ringfence::Child, std::fs::File) {
        let mut child = sh(script).policy(policy(env, Overrides::default())).stdout(Stdio::Piped).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 8];
        stdout.read_exact(&mut first).unwrap();
        (child, stdout)
    }

    /// `kill` ends every process of the run at once.
    fn kill() {
        let env = Env::new(Who::Me);
        let (child, mut stdout) = started(&env, "echo started; sleep 100");
        let started = Instant::now();
        child.kill();
        let status = child.wait().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(status.signal(), Some(9), "{status:?}");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "", "the pipe closes: nothing outlived the kill");
    }

    /// Dropping a `Child` without waiting kills the sandbox.
    fn drop_kills() {
        let env = Env::new(Who::Me);
        let (child, mut stdout) = started(&env, "echo started; exec sleep 100");
        let pid = child.id();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the sandbox's init {pid} survived the drop");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "");
    }

    /// `load_policy` reports a bad project config with its position and exit code 121.
    fn policy_errors() {
        let env = Env::new(Who::Me);
        env.project_config("[limits]\nmemroy = \"1G\"\n");
        let sources = ringfence::PolicySources { workspace: Some(env.ws.clone()), ..Default::default() };
        let err = ringfence::load_policy(&sources, Overrides::default()).unwrap_err();
        let path = env.ws.canonicalize().unwrap().join(".ringfence.toml");
        assert_eq!(
            err.to_string(),
            format!("{}:2:1: unknown key `memroy`\n  help: did you mean `memory`?", path.display())
        );
        assert_eq!(ringfence::Error::from(err).exit_code(), 121);
        let sources = ringfence::PolicySources { no_config: true, ..sources };
        let policy = ringfence::load_policy(&sources, Overrides::default()).unwrap();
        assert_eq!(policy.workspace, env.ws.canonicalize().unwrap());
    }

    /// In allow mode the command gets the proxy variables, and the gateway's decisions reach the
    /// caller's `on_event` as they happen; the gateway's threads end with the run, so the next
    /// spawn again starts from a single thread.
    fn network_events_reach_the_caller() {
        let env = Env::new(Who::Me);
        let flags = Overrides { allow_hosts: vec!["allowed.invalid".into()], ..Default::default() };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let script = "echo $HTTPS_PROXY $ALL_PROXY; \
                      printf 'CONNECT refused.invalid:443 HTTP/1.1\\r\\n\\r\\n' | python3 -c '\
    import socket,sys; s=socket.create_connection((\"127.0.0.1\",3128)); s.sendall(sys.stdin.buffer.read()); \
    print(s.recv(100).split(b\"\\r\\n\")[0].decode())'";
        let mut child = sh(script)
            .policy(policy(&env, flags))
            .stdout(Stdio::Piped)
            .on_event(move |e| sink.lock().unwrap().push(e))
            .spawn()
            .unwrap();
        let out = read_all(child.stdout.take());
        assert!(child.wait().unwrap().success());
        assert_eq!(out, "http://127.0.0.1:3128 socks5h://127.0.0.1:1080\nHTTP/1.1 403 Forbidden\n");
        let seen = seen.lock().unwrap();
        // The exec monitor's proc.exec and proc.exit events come too; the gateway's are these.
        let network: Vec<_> = seen
            .iter()
            .filter(|e| !matches!(e, ringfence::EventBody::ProcExec { .. } | ringfence::EventBody::ProcExit { .. }))
            .collect();
        assert!(
            matches!(network.as_slice(), [ringfence::EventBody::NetDeny { host, port: 443, reason, .. }]
                if host == "refused.invalid" && reason == "not-allowed"),
            "{seen:?}"
        );
        assert!(seen.iter().any(|e| matches!(e, ringfence::EventBody::ProcExec { .. })), "{seen:?}");
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
        assert_eq!(threads, 1, "the gateway's threads outlived the run");
    }

    /// `Session::start` keeps one sandbox for several commands: each has its own exit code, the
    /// policy holds for each (a write outside fails; control: the write inside lands), the
    /// session is listed until stopped, and starting it left no thread in the caller.
    fn session_runs_commands() {
        let env = Env::new(Who::Me);
        let session = ringfence::Session::start(policy(&env, Overrides::default())).unwrap();
        assert_eq!(std::fs::read_dir("/proc/self/task").unwrap().count(), 1, "Session::start left a thread");
        let outside = env.outside.join("escape");
        for round in 0..2 {
            let script = format!("echo {round} > inside.txt; echo out > {} 2>/dev/null; exit 4", outside.display());
            let end = session.command("sh").args(["-c", &script]).stderr(Stdio::Null).status().unwrap();
            assert_eq!(end.exit, ringfence::session::Exit::Code(4));
            assert_eq!(std::fs::read_to_string(env.ws.join("inside.txt")).unwrap(), format!("{round}\n"));
            assert!(!outside.exists(), "a session's command wrote outside the workspace");
        }
        assert!(ringfence::Session::list().unwrap().iter().any(|s| s.id == session.id()));
        session.stop().unwrap();
        assert!(!ringfence::Session::list().unwrap().iter().any(|s| s.id == session.id()));
    }

    pub fn main() {
        let cases: &[(&str, fn())] = &[
            ("session_runs_commands", session_runs_commands),
            ("piped_output_and_exit_code", piped_output_and_exit_code),
            ("piped_stdin", piped_stdin),
            ("large_piped_output", large_piped_output),
            ("env_and_current_dir", env_and_current_dir),
            ("policy_is_enforced", policy_is_enforced),
            ("enforcement_is_reported", enforcement_is_reported),
            ("status_with_null_streams", status_with_null_streams),
            ("signal_status", signal_status),
            ("missing_program", missing_program),
            ("timeout", timeout),
            ("kill", kill),
            ("drop_kills", drop_kills),
            ("policy_errors", policy_errors),
            ("network_events_reach_the_caller", network_events_reach_the_caller),
        ];
        // Like libtest: arguments that aren't options filter by name; `--list` lists.
        let args: Vec<String> = std::env::args().skip(1).collect();
        let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        let selected: Vec<_> = cases
            .iter()
            .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
            .collect();
        if args.iter().any(|a| a == "--list") {
            for (name, _) in &selected {
                println!("{name}: test");
            }
            return;
        }
        println!("\nrunning {} tests", selected.len());
        let mut failed = Vec::new();
        for (name, case) in &selected {
            nix::unistd::alarm::set(CASE_LIMIT);
            let ok = std::panic::catch_unwind(case).is_ok();
            nix::unistd::alarm::cancel();
            println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
            if !ok {
                failed.push(*name);
            }
        }
        println!(
            "\ntest result: {}. {} passed; {} failed\n",
            if failed.is_empty() { "ok" } else { "FAILED" },
            selected.len() - failed.len(),
            failed.len()
        );
        if !failed.is_empty() {
            println!("failures: {failed:?}");
            std::process::exit(101);
        }
    }
}
