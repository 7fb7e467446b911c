//! Shared harness for the end-to-end tests: runs the real `ringfence` binary against the real
//! kernel, as root and as an unprivileged uid, in a scratch tree outside /tmp (the sandbox gets
//! a private /tmp, so files there would prove nothing about the host).

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The unprivileged identity the suite also runs as.
pub const NOBODY: u32 = 65534;

/// Who runs ringfence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The test process's own identity (root in CI).
    Me,
    /// uid and gid 65534 via setpriv; only when the tests run as root.
    Nobody,
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Every identity available: root and nobody when running as root, else just ourselves.
pub fn identities() -> Vec<Who> {
    if is_root() {
        vec![Who::Me, Who::Nobody]
    } else {
        vec![Who::Me]
    }
}

/// This test process's scratch folder. Test binaries have no teardown, so the first call also
/// removes the folders of test processes that have exited.
pub fn scratch_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base =
            std::env::var_os("RINGFENCE_TEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"));
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("ringfence-e2e-") else { continue };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("ringfence-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
    .clone()
}

/// A copy of the binary that every identity can execute.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_BIN_EXE_ringfence"));
        let dir = scratch_root().join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dst = dir.join("ringfence");
        std::fs::copy(&src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        dst
    })
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A scratch home and workspace owned by `who`, removed on drop.
pub struct Env {
    pub who: Who,
    pub root: PathBuf,
    pub home: PathBuf,
    pub ws: PathBuf,
    /// A host directory outside every writable root, for "the host file is unchanged" checks.
    pub outside: PathBuf,
}

impl Env {
    pub fn new(who: Who) -> Env {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = scratch_root().join(format!("env-{n}-{who:?}"));
        let _ = std::fs::remove_dir_all(&root);
        let home = root.join("home");
        let ws = home.join("project");
        let outside = root.join("outside");
        for d in [&home, &ws, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        let env = Env { who, root, home, ws, outside };
        env.chown_all();
        env
    }

    /// Gives the whole tree to the identity that runs ringfence.
    pub fn chown_all(&self) {
        if self.who == Who::Nobody {
            let status = Command::new("chown").args(["-R", "65534:65534"]).arg(&self.root).status().unwrap();
            assert!(status.success());
        }
    }

    /// Writes a file (and its parents) owned by the run's identity.
    pub fn write(&self, path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self.chown_all();
    }

    /// A `ringfence` command as `who`, in the workspace, with a small clean environment.
    pub fn command(&self) -> Command {
        let mut cmd = if self.who == Who::Nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(binary());
            c
        } else {
            Command::new(binary())
        };
        self.clean_env(&mut cmd);
        cmd
    }

    /// `argv` as `who`, with the environment of [`Env::command`], started through `prefix`: a
    /// program (such as `nsenter ... --`) that runs as the test's own identity and execs the rest
    /// before the switch to `who`.
    pub fn command_via(&self, prefix: &[&str], argv: &[&std::ffi::OsStr]) -> Command {
        let mut cmd = Command::new(prefix[0]);
        cmd.args(&prefix[1..]);
        if self.who == Who::Nobody {
            cmd.args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        }
        cmd.args(argv);
        self.clean_env(&mut cmd);
        cmd
    }

    /// The workspace as the directory, and a small clean environment.
    fn clean_env(&self, cmd: &mut Command) {
        cmd.current_dir(&self.ws)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
    }

    /// `ringfence run [args] -- sh -c script`.
    pub fn sh(&self, args: &[&str], script: &str) -> Output {
        let mut cmd = self.command();
        cmd.arg("run").args(args).args(["--", "sh", "-c", script]);
        cmd.output().unwrap()
    }

    /// `ringfence ARGS...` (any subcommand).
    pub fn ringfence(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics with both streams when the run did not exit with `code`.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers for the compatibility, policy and library suites: deadlines, host-side shells, configs.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// How long one ringfence invocation may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `cmd` to completion with piped stdout and stderr, feeding `input` to its stdin (or
/// /dev/null). Kills it and panics, with what it printed so far, once `limit` has passed.
#[track_caller]
pub fn output_within(cmd: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Output {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let writer = child.stdin.take().zip(input).map(|(mut stdin, data)| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Env {
    /// `ringfence run [args] -- sh -c script`, killed (and failed) after [`DEADLINE`].
    #[track_caller]
    pub fn sh_within(&self, args: &[&str], script: &str) -> Output {
        let mut cmd = self.command();
        cmd.arg("run").args(args).args(["--", "sh", "-c", script]);
        output_within(&mut cmd, None, DEADLINE)
    }

    /// `ringfence ARGS...` (any subcommand), killed (and failed) after [`DEADLINE`].
    #[track_caller]
    pub fn ringfence_within(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        output_within(&mut cmd, None, DEADLINE)
    }

    /// `/bin/sh -c script` on the host, as `who`, in the workspace, with the same small
    /// environment as [`Env::command`] plus `$RF`, the path of the ringfence binary. For what
    /// needs a shell around ringfence: extra descriptors, pipes, `script`.
    pub fn host_sh(&self, script: &str) -> Command {
        let mut cmd = if self.who == Who::Nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", script]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", script]);
            c
        };
        cmd.current_dir(&self.ws)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("RF", binary())
            .stdin(Stdio::null());
        cmd
    }

    /// The user config: ~/.config/ringfence/config.toml under this env's home.
    pub fn user_config_path(&self) -> PathBuf {
        self.home.join(".config/ringfence/config.toml")
    }

    /// The project config: .ringfence.toml in the workspace.
    pub fn project_config_path(&self) -> PathBuf {
        self.ws.join(".ringfence.toml")
    }

    /// Writes the user config.
    pub fn user_config(&self, text: &str) {
        self.write(&self.user_config_path(), text);
    }

    /// Writes the project config.
    pub fn project_config(&self, text: &str) {
        self.write(&self.project_config_path(), text);
    }
}

/// Waits for a spawned process; kills it and panics after `limit`.
#[track_caller]
pub fn wait_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not finish within {limit:?}; killed", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A path as a `&str` (the scratch tree is plain ASCII).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

// ---------------------------------------------------------------------------------------------
// Helpers for the security suite (tests/security_*.rs).
// ---------------------------------------------------------------------------------------------

/// How long one sandboxed run may take before the suite calls the sandbox hung.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A python3 prelude for probing system calls through libc's `syscall()`. `probe(name, nr,
/// *args)` prints `name OK <ret>` or `name ERR <ERRNO>`; read the lines with [`probe_results`].
pub const PY_SYSCALL: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    conv = [a if not isinstance(a, int) else ctypes.c_long(a) for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    return r, ctypes.get_errno()
def probe(name, nr, *args):
    r, e = sc(nr, *args)
    if r == -1:
        print(name, "ERR", errno.errorcode.get(e, str(e)), flush=True)
    else:
        print(name, "OK", r, flush=True)
    return r
"#;

/// Parses `name OK n` / `name ERR ERRNO` lines into name -> "OK" or the errno name.
pub fn probe_results(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            let verdict = match parts.next()? {
                "OK" => "OK".to_string(),
                "ERR" => parts.next()?.to_string(),
                _ => return None,
            };
            Some((name.to_string(), verdict))
        })
        .collect()
}

/// A string no other test (or earlier run) uses, for files, processes and sockets.
pub fn marker(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("rf{tag}{}x{n}", std::process::id())
}

/// A unique `sleep` argument (`300.<digits>`): the host can find such a sleep by its argv.
pub fn sleep_marker() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("300.{}{:03}", std::process::id(), n)
}

/// Host pids of live (non-zombie) processes with an argument exactly equal to `arg`.
pub fn pids_with_arg(arg: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) && is_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` exists on the host and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects a spawned child's piped streams and status; kills it and panics after `limit`, so a
/// hung sandbox fails the test instead of hanging the suite.
pub fn collect_within(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not finish within {limit:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A process that outlived the run would keep the pipes open.
    let grace = Duration::from_secs(5);
    let stdout = out.recv_timeout(grace).expect("stdout still open after the run ended: something outlived it");
    let stderr = err.recv_timeout(grace).expect("stderr still open after the run ended: something outlived it");
    Output { status, stdout, stderr }
}

/// Runs `cmd` with piped output, bounded by `limit` (see [`collect_within`]).
pub fn bounded_output(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    collect_within(cmd.spawn().unwrap(), limit)
}

/// Both streams, for assertion messages and "does the output contain a secret" checks.
pub fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

impl Env {
    /// `ringfence run [args] -- argv...`, not yet started.
    pub fn run_command(&self, args: &[&str], argv: &[&str]) -> Command {
        let mut cmd = self.command();
        cmd.arg("run").args(args).arg("--").args(argv);
        cmd
    }

    /// `ringfence run [args] -- argv...`, bounded by [`RUN_LIMIT`]. With
    /// `RINGFENCE_TEST_SESSION=1`, the same command runs in a session started with the same
    /// options instead (`session start`, `session exec`, `session stop`), so that every attack
    /// of the suite is tried through a session too; runs that write ringfence's own output files
    /// (`--events`, `--json-status`) stay plain runs.
    pub fn run_argv(&self, args: &[&str], argv: &[&str]) -> Output {
        let run_only = args.iter().any(|a| a.starts_with("--events") || a.starts_with("--json-status"));
        if std::env::var_os("RINGFENCE_TEST_SESSION").is_some_and(|v| v == "1") && !run_only {
            return self.in_session(args, argv);
        }
        bounded_output(self.run_command(args, argv), RUN_LIMIT)
    }

    /// Runs `argv` in a session of its own started with the run options `args`; the exec's
    /// output and exit status, or the start's when the session could not start.
    pub fn in_session(&self, args: &[&str], argv: &[&str]) -> Output {
        let (mut start_args, mut exec_args) = (Vec::new(), Vec::new());
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match *arg {
                "--timeout" => exec_args.extend([*arg, rest.next().copied().unwrap_or_default()]),
                "--no-pty" => {}
                _ if arg.starts_with("--timeout=") => exec_args.push(arg),
                _ => start_args.push(*arg),
            }
        }
        let mut start = self.command();
        start.args(["session", "start"]).args(&start_args);
        let started = bounded_output(start, RUN_LIMIT);
        if !started.status.success() {
            return started;
        }
        let id = stdout(&started).trim().to_string();
        let mut exec = self.command();
        exec.args(["session", "exec", &id]).args(&exec_args).arg("--").args(argv);
        let out = bounded_output(exec, RUN_LIMIT);
        let stopped = self.ringfence(&["session", "stop", &id]);
        assert!(stopped.status.success(), "session stop failed: {}", stderr(&stopped));
        out
    }

    /// `ringfence run [args] -- sh -c script`, bounded by [`RUN_LIMIT`].
    pub fn run_sh(&self, args: &[&str], script: &str) -> Output {
        self.run_argv(args, &["sh", "-c", script])
    }

    /// `ringfence run [args] -- python3 -c code`, bounded by [`RUN_LIMIT`].
    pub fn run_py(&self, args: &[&str], code: &str) -> Output {
        self.run_argv(args, &["python3", "-c", code])
    }

    /// The same program run on the host WITHOUT the sandbox, as the same identity and with the
    /// same clean environment: the positive control showing an attack would work unconfined.
    pub fn host_command(&self, argv: &[&str]) -> Command {
        let mut cmd = if self.who == Who::Nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).args(argv);
            c
        } else {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        };
        self.clean_env(&mut cmd);
        cmd
    }

    /// Runs `argv` on the host, unsandboxed, as the run's identity (see [`Env::host_command`]).
    pub fn host(&self, argv: &[&str]) -> Output {
        bounded_output(self.host_command(argv), RUN_LIMIT)
    }

    /// Gives one path (not following a final symlink) to the run's identity.
    pub fn give(&self, path: &Path) {
        if self.who == Who::Nobody {
            std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host-side snapshots, for "nothing there changed" checks.

/// Every path below `root` (inclusive, links not followed) with its mode and its content (a
/// file's bytes, a link's target); any change the sandbox could make shows as a difference.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<PathBuf, (u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let content = if meta.file_type().is_symlink() {
            std::fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes()
        } else if meta.is_file() {
            std::fs::read(&path).unwrap_or_default()
        } else {
            if meta.is_dir() {
                pending.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
            }
            Vec::new()
        };
        out.insert(path, (meta.mode(), content));
    }
    out
}

/// Cgroup directories created for supervisor `pid` (named `ringfence-<pid>-<n>`).
pub fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), prefix, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), &format!("ringfence-{pid}-"), 4, &mut out);
    out
}

/// Fails unless every line of `text` (an event file's content) validates against
/// docs/events.schema.json, checked with Python's jsonschema (missing, the test fails).
pub fn assert_events_match_schema(text: &str) {
    use std::io::Write;
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.schema.json");
    let check = "import json,sys,jsonschema\n\
                 v=jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))\n\
                 bad=[(n,e.message) for n,l in enumerate(sys.stdin,1) if l.strip() for e in v.iter_errors(json.loads(l))]\n\
                 print(bad[:5]); sys.exit(1 if bad else 0)";
    let mut child = Command::new("python3")
        .args(["-c", check])
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "events don't match docs/events.schema.json: {}{}", stdout(&out), stderr(&out));
}
