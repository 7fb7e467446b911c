//! End to end on a real Mac (.github/workflows/macos.yml): the `ringfence` binary under
//! Seatbelt. Every test tries the attack from inside the sandbox, checks the host side
//! afterwards, and proves its program ran (a marker it prints or a file it wrote where that is
//! allowed), so a sandbox that runs nothing fails it. Run as a normal user the suite runs as
//! that user; run as root (sudo) it runs every test as root and again as `nobody`.
#![cfg(target_os = "macos")]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Me,
    /// `nobody`, through sudo; only when the suite runs as root.
    Nobody,
}

fn identities() -> Vec<Who> {
    if nix::unistd::geteuid().is_root() {
        vec![Who::Me, Who::Nobody]
    } else {
        vec![Who::Me]
    }
}

/// This process's scratch folder, outside every home folder (nobody can't enter /Users/x) and
/// not under the temporary folder ringfence makes the run's own folder in.
fn scratch() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = PathBuf::from("/private/var/tmp").join(format!("ringfence-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// A copy of the binary that every identity can run.
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dst = scratch().join("ringfence");
        std::fs::copy(env!("CARGO_BIN_EXE_ringfence"), &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        dst
    })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A home folder with secrets in it and a workspace with a git repository, owned by `who`.
struct Env {
    who: Who,
    root: PathBuf,
    home: PathBuf,
    ws: PathBuf,
}

impl Env {
    fn new(who: Who) -> Env {
        let root = scratch().join(format!("t{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        let (home, ws) = (root.join("home"), root.join("home/proj"));
        for dir in [home.join(".ssh"), home.join("Library/Keychains"), ws.join(".git/hooks")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(home.join(".ssh/id_ed25519"), "SECRET-SSH-KEY\n").unwrap();
        std::fs::write(home.join("Library/Keychains/login.keychain-db"), "SECRET-KEYCHAIN\n").unwrap();
        std::fs::write(home.join("notes.txt"), "PUBLIC-NOTES\n").unwrap();
        std::fs::write(ws.join(".git/config"), "[core]\n\tbare = false\n").unwrap();
        std::fs::write(ws.join(".git/description"), "repo\n").unwrap();
        std::fs::write(ws.join(".git/hooks/pre-commit.sample"), "#!/bin/sh\n").unwrap();
        if who == Who::Nobody {
            let status = Command::new("chown").args(["-R", "nobody"]).arg(&root).status().unwrap();
            assert!(status.success());
        }
        let home = home.canonicalize().unwrap();
        let ws = ws.canonicalize().unwrap();
        Env { who, root, home, ws }
    }

    /// `ringfence run ARGS -- /bin/sh -c SCRIPT` in the workspace, with `extra` variables.
    fn run_with(&self, args: &[&str], script: &str, extra: &[(&str, &str)]) -> Output {
        let mut vars = vec![
            format!("HOME={}", self.home.display()),
            "PATH=/usr/bin:/bin:/usr/sbin:/sbin".to_string(),
            "LANG=en_US.UTF-8".to_string(),
        ];
        vars.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        let mut cmd = match self.who {
            Who::Me => Command::new("/usr/bin/env"),
            Who::Nobody => {
                let mut c = Command::new("/usr/bin/sudo");
                c.args(["-n", "-u", "nobody", "--", "/usr/bin/env"]);
                c
            }
        };
        cmd.arg("-i").args(&vars).arg(binary()).arg("run").args(args).args(["--", "/bin/sh", "-c", script]);
        cmd.current_dir(&self.ws).stdin(Stdio::null()).output().unwrap()
    }

    fn run(&self, args: &[&str], script: &str) -> Output {
        self.run_with(args, script, &[])
    }

    /// Runs `script` and insists it exited 0 after printing `marker` (it really ran).
    fn ok(&self, args: &[&str], script: &str, marker: &str) -> String {
        let out = self.run(args, script);
        let text = both(&out);
        assert_eq!(out.status.code(), Some(0), "{:?}: {text}", self.who);
        assert!(text.contains(marker), "{:?}: the command did not run to its end: {text}", self.who);
        text
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn runs_the_command_and_passes_its_exit_code() {
    for who in identities() {
        let env = Env::new(who);
        let out = env.run(&[], "echo ran-inside; exit 7");
        assert_eq!(out.status.code(), Some(7), "{who:?}: {}", both(&out));
        assert!(both(&out).contains("ran-inside"));
        let out = env.run(&[], "exec /no/such/program");
        assert_eq!(out.status.code(), Some(127), "{who:?}: {}", both(&out));
        let missing = Command::new(binary()).args(["run", "--", "no-such-program-anywhere"]).output().unwrap();
        assert_eq!(missing.status.code(), Some(127), "{}", both(&missing));
    }
}

#[test]
fn secrets_are_hidden_in_any_letter_case_and_when_created_later() {
    for who in identities() {
        let env = Env::new(who);
        let script = "cat ~/notes.txt; cat ~/.ssh/id_ed25519; cat ~/.SSH/ID_ED25519; \
                      cat ~/Library/Keychains/login.keychain-db; ls ~/.ssh; \
                      while [ ! -e ready ]; do sleep 0.05; done; cat ~/.aws/credentials; echo done-reading";
        let home = env.home.clone();
        let ws = env.ws.clone();
        let planter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            std::fs::create_dir_all(home.join(".aws")).unwrap();
            std::fs::write(home.join(".aws/credentials"), "SECRET-AWS\n").unwrap();
            std::fs::write(ws.join("ready"), "").unwrap();
        });
        let text = env.ok(&["--timeout", "60s"], &format!("{script}; true"), "done-reading");
        planter.join().unwrap();
        assert!(text.contains("PUBLIC-NOTES"), "{who:?}: the control file was not readable: {text}");
        for secret in ["SECRET-SSH-KEY", "SECRET-KEYCHAIN", "SECRET-AWS", "id_ed25519\n"] {
            assert!(!text.contains(secret), "{who:?}: {secret} leaked: {text}");
        }
        // The host still reads them: the rules hid them from the run only.
        assert_eq!(read(&env.home.join(".ssh/id_ed25519")), "SECRET-SSH-KEY\n");
    }
}

#[test]
fn writes_reach_the_workspace_and_tmpdir_only() {
    for who in identities() {
        let env = Env::new(who);
        let script = "echo in-ws > out.txt; echo x > ~/outside.txt; echo x > /private/var/tmp/rf-escape-$$; \
                      echo t > \"$TMPDIR/t\" && cat \"$TMPDIR/t\" && echo \"tmpdir=$TMPDIR\"; \
                      mv ../proj ../moved; echo end";
        let text = env.ok(&[], &format!("{script}; true"), "end");
        assert_eq!(read(&env.ws.join("out.txt")), "in-ws\n", "{who:?}: {text}");
        assert!(!env.home.join("outside.txt").exists(), "{who:?}: wrote outside the workspace");
        assert!(!env.home.join("moved").exists() && env.ws.is_dir(), "{who:?}: the workspace was moved");
        let tmp = text.lines().find_map(|l| l.strip_prefix("tmpdir=")).expect("TMPDIR printed");
        assert!(text.contains("t\ntmpdir="), "{who:?}: TMPDIR was not writable: {text}");
        assert!(!Path::new(tmp).exists(), "{who:?}: the run's TMPDIR {tmp} outlived it");
        let escaped = std::fs::read_dir("/private/var/tmp")
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("rf-escape-"));
        assert!(!escaped, "{who:?}: wrote to /private/var/tmp");
    }
}

#[test]
fn protected_paths_stay_read_only_present_or_absent() {
    for who in identities() {
        let env = Env::new(who);
        let script = "echo evil > .git/hooks/pre-commit; echo evil > .GIT/HOOKS/post-checkout; \
                      echo '[core] hooksPath=/x' >> .git/config; echo x > .envrc; mkdir .vscode; \
                      mkdir -p .VSCODE && echo x > .VSCODE/tasks.json; \
                      mv .git .git-aside; mv .git/hooks .git/hooks-aside; ln .git/config cfg && echo x >> cfg; \
                      echo ok >> .git/description; echo marker-reached";
        let text = env.ok(&[], &format!("{script}; true"), "marker-reached");
        assert_eq!(read(&env.ws.join(".git/description")), "repo\nok\n", "{who:?}: the control write failed: {text}");
        assert_eq!(read(&env.ws.join(".git/config")), "[core]\n\tbare = false\n", "{who:?}");
        for planted in [
            ".git/hooks/pre-commit",
            ".git/hooks/post-checkout",
            ".envrc",
            ".vscode",
            ".git-aside",
            ".git/hooks-aside",
            "cfg",
        ] {
            assert!(!env.ws.join(planted).exists(), "{who:?}: {planted} was created: {text}");
        }
        assert!(env.ws.join(".git/hooks/pre-commit.sample").exists());
    }
}

/// A loopback listener that counts the connections it gets.
fn listener() -> (u16, Arc<Mutex<u32>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            *count.lock().unwrap() += 1;
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nHOST-SERVICE");
            let _ = s.shutdown(Shutdown::Both);
        }
    });
    (port, seen)
}

#[test]
fn no_network_reaches_the_hosts_loopback_or_its_unix_sockets() {
    let (port, seen) = listener();
    // Control: the listener works for the host.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("HOST-SERVICE"));
    let before = *seen.lock().unwrap();
    let socket = scratch().join(format!("host-{}.sock", std::process::id()));
    let unix = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Control: the socket takes the host's connections.
    let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    unix.accept().unwrap();
    unix.set_nonblocking(true).unwrap();
    for who in identities() {
        let env = Env::new(who);
        let script = format!(
            "curl -s --max-time 5 http://127.0.0.1:{port}/; curl -s --max-time 5 'http://[::1]:{port}/'; \
             curl -s --max-time 5 http://example.com/; nc -U -w 2 {} < /dev/null; echo probes-done",
            socket.display()
        );
        let text = env.ok(&[], &format!("{script}; true"), "probes-done");
        assert!(!text.contains("HOST-SERVICE") && !text.contains("Example Domain"), "{who:?}: {text}");
    }
    assert_eq!(*seen.lock().unwrap(), before, "the host's listener saw a connection from the sandbox");
    assert!(unix.accept().is_err(), "the host's Unix socket got a connection from the sandbox");
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn the_allow_list_goes_through_the_gateway_only() {
    // The gateway refuses the host's own addresses by design, so the allowed destination is a
    // public one; the runner must reach it without ringfence (the control).
    let direct = Command::new("curl").args(["-s", "--max-time", "20", "https://example.com/"]).output().unwrap();
    assert!(String::from_utf8_lossy(&direct.stdout).contains("Example Domain"), "the runner has no internet access");
    let (port, seen) = listener();
    for who in identities() {
        let env = Env::new(who);
        let events = env.root.join("events.jsonl");
        let script = format!(
            "curl -s --max-time 20 https://example.com/ | grep -o 'Example Domain' | head -1; \
             curl -s --max-time 10 https://example.org/; echo; \
             curl -s --max-time 5 --noproxy '*' https://example.com/; \
             curl -s --max-time 5 --proxy \"$HTTP_PROXY\" --noproxy '' http://127.0.0.1:{port}/; \
             curl -s --max-time 5 --noproxy '*' http://127.0.0.1:{port}/; \
             echo proxied-done"
        );
        let events_arg = events.display().to_string();
        let args = ["--allow-host", "example.com", "--allow-host", "127.0.0.1", "--events", &events_arg];
        let text = env.ok(&args, &format!("{script}; true"), "proxied-done");
        assert_eq!(text.matches("Example Domain").count(), 1, "{who:?}: allowed once, through the proxy: {text}");
        let log = read(&events);
        assert!(log.contains("\"type\":\"net.connect\"") && log.contains("\"host\":\"example.com\""), "{who:?}: {log}");
        assert!(log.contains("\"reason\":\"not-allowed\"") && log.contains("example.org"), "{who:?}: {log}");
        assert!(log.contains("\"reason\":\"address-guard\""), "{who:?}: the loopback request was not refused: {log}");
    }
    assert_eq!(*seen.lock().unwrap(), 0, "the host's listener saw a connection from the sandbox");
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn nothing_the_command_starts_outlives_the_run() {
    for who in identities() {
        let env = Env::new(who);
        // A background child, and a daemon that left the process group and session (setsid,
        // double fork) so that only the process-table watch can find it.
        let script = "sleep 300 & echo $! > bg.pid; \
                      perl -MPOSIX -e 'exit if fork; POSIX::setsid(); exit if fork; open(F, \">daemon.pid\"); print F $$; close F; sleep 300'; \
                      while [ ! -s daemon.pid ]; do sleep 0.05; done; \
                      kill -0 $(cat bg.pid) && kill -0 $(cat daemon.pid) && echo both-alive";
        env.ok(&[], script, "both-alive");
        let pids: Vec<i32> =
            ["bg.pid", "daemon.pid"].iter().map(|f| read(&env.ws.join(f)).trim().parse().unwrap()).collect();
        let deadline = Instant::now() + Duration::from_secs(2);
        while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in pids {
            assert!(!alive(pid), "{who:?}: process {pid} outlived the run");
        }
    }
}

#[test]
fn timeout_and_memory_limit_end_the_run_with_their_codes() {
    for who in identities() {
        let env = Env::new(who);
        let started = Instant::now();
        let out = env.run(&["--timeout", "2s"], "echo started; sleep 60");
        assert_eq!(out.status.code(), Some(124), "{who:?}: {}", both(&out));
        assert!(both(&out).contains("started") && started.elapsed() < Duration::from_secs(15));
        let hog = "perl -e '$x = \"a\" x (400*1024*1024); print \"allocated\\n\"; sleep 10'";
        let out = env.run(&["--memory", "100M"], hog);
        assert_eq!(out.status.code(), Some(123), "{who:?}: {}", both(&out));
        // Control: the same program fits under a larger limit.
        let fits = "perl -e '$x = \"a\" x (20*1024*1024); print \"allocated\\n\"'";
        env.ok(&["--memory", "400M"], fits, "allocated");
    }
}

#[test]
fn the_environment_is_scrubbed_and_tmpdir_is_private() {
    for who in identities() {
        let env = Env::new(who);
        let extra = [("GITHUB_TOKEN", "ghp_leaked"), ("AWS_SECRET_ACCESS_KEY", "aws-leaked"), ("CI_COLOR", "x")];
        let out = env.run_with(&[], "env; echo env-done", &extra);
        let text = both(&out);
        assert!(text.contains("env-done") && text.contains("RINGFENCE=1") && text.contains("PATH="), "{who:?}: {text}");
        for leaked in ["ghp_leaked", "aws-leaked", "CI_COLOR"] {
            assert!(!text.contains(leaked), "{who:?}: {leaked} passed through: {text}");
        }
        let tmpdir = text.lines().find_map(|l| l.strip_prefix("TMPDIR=")).unwrap_or_default();
        assert!(tmpdir.contains("/ringfence-"), "{who:?}: TMPDIR={tmpdir}");
    }
}

#[test]
fn host_processes_cant_be_signalled_or_inspected() {
    for who in identities() {
        let env = Env::new(who);
        let mut victim = match who {
            Who::Me => Command::new("sleep").arg("60").spawn().unwrap(),
            Who::Nobody => Command::new("sudo").args(["-n", "-u", "nobody", "sleep", "60"]).spawn().unwrap(),
        };
        std::thread::sleep(Duration::from_millis(300));
        let pid = match who {
            Who::Me => victim.id().to_string(),
            Who::Nobody => {
                let out = Command::new("pgrep").args(["-u", "nobody", "-n", "sleep"]).output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
        };
        let script = format!("kill -TERM {pid}; echo kill=$?; ps -p {pid} -o command=; echo tried");
        let text = env.ok(&[], &format!("{script}; true"), "tried");
        assert!(!text.contains("kill=0"), "{who:?}: the signal reached the host process: {text}");
        assert!(!text.contains("sleep 60"), "{who:?}: the host process was visible: {text}");
        assert!(victim.try_wait().unwrap().is_none(), "{who:?}: the host process died");
        let _ = victim.kill();
        let _ = victim.wait();
    }
}

#[test]
fn check_explain_and_events_tell_what_seatbelt_enforces() {
    let check = Command::new(binary()).arg("check").output().unwrap();
    let text = both(&check);
    assert_eq!(check.status.code(), Some(0), "{text}");
    assert!(text.contains("[ok  ] seatbelt") && text.contains("[MISS] private /tmp"), "{text}");
    let env = Env::new(Who::Me);
    let explain = Command::new(binary()).arg("explain").current_dir(&env.ws).env("HOME", &env.home).output().unwrap();
    let text = both(&explain);
    assert!(text.contains(".ssh") && text.contains("[seatbelt: taken out of the readable region"), "{text}");
    let events = env.root.join("events.jsonl");
    env.ok(&["--events", &events.display().to_string()], "echo evented", "evented");
    let log = read(&events);
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let start = lines.iter().find(|e| e["type"] == "run.start").expect("run.start");
    assert!(start["enforced"].as_array().unwrap().iter().any(|l| l["name"] == "seatbelt"), "{log}");
    assert_eq!(start["kernel"]["os"], "macos");
    let end = lines.iter().find(|e| e["type"] == "run.end").expect("run.end");
    assert_eq!(end["status"], 0);
    assert_eq!(end["reason"], "exited");
}

#[test]
fn cpu_limits_are_refused_unless_degraded() {
    let env = Env::new(Who::Me);
    let out = env.run(&["--cpus", "1"], "echo should-not-run");
    assert_eq!(out.status.code(), Some(122), "{}", both(&out));
    assert!(!both(&out).contains("should-not-run"));
    let text = env.ok(&["--cpus", "1", "--allow-degraded"], "echo degraded-ran", "degraded-ran");
    assert!(text.contains("not enforced"), "{text}");
}
