//! Threat 5, exhausting the host: the default memory cap (installed where a cgroup can carry
//! it, reported plainly where none can), memory the kernel allocates for the sandbox outside
//! its processes (socket buffers) held within the cap, and ringfence's own placeholders removed
//! from the host even when the run takes write or search permission away from their folders.
//! Every test runs as root and as nobody and checks the host side: the run's cgroup and its
//! counters, /proc/meminfo and /proc/net/sockstat, the workspace's entries and modes.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A field of /proc/meminfo, in bytes.
fn meminfo(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The default cap: half of MemTotal, in whole MiB.
fn default_cap() -> u64 {
    (meminfo("MemTotal") / 2) >> 20 << 20
}

/// Whether this identity has a cgroup that can carry a memory cap here (root on cgroup v1).
fn has_memory_cgroup(who: Who) -> bool {
    who == Who::Me && is_root() && Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

/// The run's own memory cgroup directory, for supervisor `pid`.
fn memory_cgroup(pid: u32) -> Option<PathBuf> {
    cgroups_of(pid).into_iter().find(|d| d.join("memory.limit_in_bytes").exists())
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path).map(|t| t.trim().parse().unwrap_or(0)).unwrap_or(0)
}

/// The run.start event of an events file.
fn run_start(events: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(events).unwrap();
    assert_events_match_schema(&text);
    let line = text.lines().find(|l| l.contains("\"run.start\"")).unwrap();
    serde_json::from_str(line).unwrap()
}

/// The layer named `name` in run.start's `list` ("enforced" or "not_enforced").
fn layer(start: &serde_json::Value, list: &str, name: &str) -> Option<String> {
    let layers = start[list].as_array().unwrap();
    layers.iter().find(|l| l["name"] == name).map(|l| l["detail"].as_str().unwrap().to_string())
}

/// Starts `ringfence run ARGS -- sleep <marker>` and waits until the sleep runs; returns the
/// supervisor, the sleep's host pid and the marker.
fn start_sleeper(env: &Env, args: &[&str]) -> (Child, u32, String) {
    let m = sleep_marker();
    let mut cmd = env.run_command(args, &["sleep", &m]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let mut pid = 0;
    assert!(
        poll_until(Duration::from_secs(10), || {
            pid = pids_with_arg(&m)
                .into_iter()
                .find(|p| std::fs::read(format!("/proc/{p}/comm")).is_ok_and(|c| c == b"sleep\n"))
                .unwrap_or(0);
            pid != 0
        }),
        "{:?}: the command never started",
        env.who
    );
    (child, pid, m)
}

/// Ends a sleeper started by [`start_sleeper`] and returns its output.
fn stop_sleeper(child: Child, pid: u32) -> std::process::Output {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    collect_within(child, RUN_LIMIT)
}

/// The default cap is in the run's cgroup as root (the command runs inside it, with the limit,
/// the socket-buffer share and the supervisor's report), and `--memory none` removes it
/// (control: no cgroup, the command in the supervisor's own). As nobody, without a cgroup,
/// run.start, `explain` and `check` say plainly there is no memory cap and how to get one.
#[test]
fn the_default_memory_cap_is_installed_or_reported_missing() {
    let cap = default_cap();
    let share = (cap / 8).min(256 << 20);
    for who in identities() {
        let env = Env::new(who);
        let events = env.outside.join("events.jsonl");
        env.give(&env.outside);
        let (child, pid, _) = start_sleeper(&env, &["--events", path_str(&events)]);
        let supervisor = child.id();
        let dir = memory_cgroup(supervisor);
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let pids = cgroups_of(supervisor).into_iter().find(|d| d.join("pids.max").exists()).map(|d| {
            let listed = std::fs::read_to_string(d.join("tasks")).unwrap().lines().any(|t| t == pid.to_string());
            (std::fs::read_to_string(d.join("pids.max")).unwrap(), listed)
        });
        let limits = dir.as_ref().map(|d| {
            let tasks = std::fs::read_to_string(d.join("tasks")).unwrap();
            let listed = tasks.lines().any(|t| t == pid.to_string());
            (read_u64(&d.join("memory.limit_in_bytes")), read_u64(&d.join("memory.kmem.tcp.limit_in_bytes")), listed)
        });
        let out = stop_sleeper(child, pid);
        assert_code(&out, 137);
        let start = run_start(&events);
        let explain = stdout(&env.ringfence_within(&["explain"]));
        let check = stdout(&env.ringfence_within(&["check"]));
        if has_memory_cgroup(who) {
            let (limit, tcp, listed) =
                limits.unwrap_or_else(|| panic!("{who:?}: no memory cgroup; the command is in {own}"));
            assert_eq!((limit, tcp), (cap - share, share / 2), "{who:?}: cap, then the socket buffers' throttle");
            assert!(listed, "{who:?}: the command is not in its cgroup: {own}");
            // The default process cap rides along in the same cgroup, exactly.
            assert_eq!(pids, Some(("4096\n".to_string(), true)), "{who:?}: {own}");
            let detail = layer(&start, "enforced", "memory limit").unwrap_or_default();
            let expected = format!("{}M (default: half of physical memory): cgroup v1", cap >> 20);
            assert!(detail.starts_with(&expected), "{who:?}: run.start says {detail:?}");
            let line = format!("  memory: {}M (default: half of physical memory)  [cgroup v1,", cap >> 20);
            assert!(explain.contains(&line), "{who:?}: explain:\n{explain}");
            assert!(check.contains(&format!("default cap {}M (half of physical memory)", cap >> 20)), "{check}");

            // Control: without the cap there is no cgroup, and the command stays in ours.
            let none = Env::new(who);
            let (child, pid, _) = start_sleeper(&none, &["--memory", "none"]);
            let (dir, theirs) =
                (memory_cgroup(child.id()), std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());
            stop_sleeper(child, pid);
            assert_eq!(dir, None, "{who:?}: --memory none still made a memory cgroup");
            let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            let memory_line = |t: &str| t.lines().find(|l| l.contains(":memory:")).map(String::from);
            assert_eq!(memory_line(&theirs), memory_line(&mine), "{who:?}");
            let explain = stdout(&none.ringfence_within(&["explain", "--memory", "none"]));
            assert!(explain.contains("  memory: none (removed by a flag or config file)\n"), "{explain}");
        } else {
            assert_eq!((limits, pids), (None, None), "{who:?}: a cgroup without a usable one?");
            let detail = layer(&start, "not_enforced", "memory limit").unwrap_or_default();
            assert!(
                detail.starts_with("no memory cap: the default cap (half of physical memory")
                    && detail.contains("systemd-run"),
                "{who:?}: run.start says {detail:?}"
            );
            assert!(
                explain.contains("  memory: none  [the default cap (half of physical memory"),
                "{who:?}:\n{explain}"
            );
            assert!(check.contains("NO MEMORY CAP by default"), "{who:?}:\n{check}");
            // Not an error, and nothing on stderr for it: the run went ahead.
            assert!(!stderr(&out).contains("memory"), "{who:?}: {}", stderr(&out));
        }
        assert!(cgroups_of(supervisor).is_empty(), "{who:?}: cgroups left: {:?}", cgroups_of(supervisor));
    }
}

/// An allocation beyond an explicit cap ends the run with exit 123 and a limit.hit event where
/// a cgroup carries it; an explicit cap without one is refused (exit 122) unless
/// --allow-degraded. Control: the same allocation within the cap succeeds.
#[test]
fn an_allocation_beyond_the_cap_ends_the_run() {
    for who in identities() {
        let env = Env::new(who);
        let events = env.outside.join("events.jsonl");
        env.give(&env.outside);
        let grab = |mib: u32| format!("b = bytearray({mib} << 20); print('ALLOCATED', len(b))");
        let out = env.run_py(&["--memory", "64M", "--events", path_str(&events)], &grab(512));
        if !has_memory_cgroup(who) {
            assert_code(&out, 122);
            assert!(stderr(&out).contains("memory limit: no writable cgroup"), "{who:?}: {}", stderr(&out));
            continue;
        }
        assert_code(&out, 123);
        assert!(!stdout(&out).contains("ALLOCATED"), "{who:?}: {}", both(&out));
        let text = std::fs::read_to_string(&events).unwrap();
        assert!(text.contains(r#""type":"limit.hit","limit":"memory","value":"64M""#), "{who:?}: {text}");
        let out = env.run_py(&["--memory", "64M"], &grab(16));
        assert_code(&out, 0);
        assert!(stdout(&out).contains("ALLOCATED"), "{who:?}: 16M under a 64M cap (control):\n{}", both(&out));
    }
}

/// Python that holds `argv[1]` MiB of ordinary memory, then opens `argv[3]` socket pairs of
/// kind `argv[2]` (loopback TCP, or Unix socketpairs) and fills their buffers without reading:
/// first all connections, then one large non-blocking write on each end (the pattern that gets
/// the most past a socket-buffer limit, since the kernel forces each socket's first buffers
/// through). Prints how much the kernel took, as it goes.
const STUFF: &str = r#"
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
kind, count = sys.argv[2], min(int(sys.argv[3]), (hard - 64) // 2)
pairs = []
if kind == 'tcp':
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(4096)
    for _ in range(count):
        c = socket.create_connection(listener.getsockname())
        pairs.append((c, listener.accept()[0]))
else:
    pairs = [socket.socketpair() for _ in range(count)]
taken = 0
for n, pair in enumerate(pairs):
    for s in pair:
        s.setblocking(False)
        try:
            taken += s.send(b'x' * (1 << 20))
        except OSError:
            pass
    if n % 250 == 0:
        print('TAKEN', taken >> 20, flush=True)
print('HELD', taken >> 20, 'MiB in', 2 * len(pairs), 'sockets', flush=True)
time.sleep(1)
"#;

/// What the host saw of a run: the peak of its cgroup's memory and socket-buffer counters
/// together, and the peak growth of the host's TCP and UDP buffer memory (/proc/net/sockstat)
/// and of used memory (MemTotal - MemAvailable) over the run.
#[derive(Debug, Default)]
struct Seen {
    cgroup_peak: u64,
    sockets_growth: u64,
    used_growth: u64,
}

/// Pages of TCP and UDP buffer memory the host holds (all network namespaces).
fn socket_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap();
    let pages: u64 = text
        .lines()
        .filter(|l| l.starts_with("TCP:") || l.starts_with("UDP:"))
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1)?.parse::<u64>().ok())
        .sum();
    pages * 4096
}

/// Runs `args` to its end while sampling the host every millisecond.
fn watch_run(env: &Env, args: &[&str], argv: &[&str]) -> (std::process::Output, Seen) {
    let (sockets0, used0) = (socket_memory(), meminfo("MemTotal") - meminfo("MemAvailable"));
    let mut cmd = env.run_command(args, argv);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let supervisor = child.id();
    let mut seen = Seen::default();
    let deadline = Instant::now() + RUN_LIMIT;
    let mut dir = None;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        if dir.is_none() {
            dir = memory_cgroup(supervisor);
        }
        if let Some(dir) = &dir {
            let total =
                read_u64(&dir.join("memory.usage_in_bytes")) + read_u64(&dir.join("memory.kmem.tcp.usage_in_bytes"));
            seen.cgroup_peak = seen.cgroup_peak.max(total);
        }
        seen.sockets_growth = seen.sockets_growth.max(socket_memory().saturating_sub(sockets0));
        let used = meminfo("MemTotal") - meminfo("MemAvailable");
        seen.used_growth = seen.used_growth.max(used.saturating_sub(used0));
        std::thread::sleep(Duration::from_millis(1));
    }
    (collect_within(child, RUN_LIMIT), seen)
}

/// How far past its cap a run's memory may get: what socket buffers gain in the guard's
/// 20 ms between looks, and the counters' own batching. docs/linux.md documents it.
const MARGIN: u64 = 32 << 20;

/// A sandbox that opens thousands of loopback TCP connections or Unix socketpairs and fills
/// their buffers without reading stays within its cap, as the host sees it: the run's cgroup
/// (memory plus socket buffers) peaks below cap + MARGIN, and so does the host's own TCP/UDP
/// buffer memory; the run ends with 123 when it gets there. Control: with `--memory none`
/// the same TCP stuffing takes more than the cap from the host, and the Unix stuffing reached
/// the cap (the buffers were really filled). As nobody, with no cap at all, run.start says so.
#[test]
fn socket_buffers_are_held_within_the_cap() {
    const CAP: u64 = 256 << 20;
    for who in identities() {
        let env = Env::new(who);
        if !has_memory_cgroup(who) {
            let events = env.outside.join("events.jsonl");
            env.give(&env.outside);
            let out = env.run_argv(&["--events", path_str(&events)], &["true"]);
            assert_code(&out, 0);
            let detail = layer(&run_start(&events), "not_enforced", "memory limit").unwrap_or_default();
            assert!(detail.starts_with("no memory cap:"), "{who:?}: {detail}");
            continue;
        }
        for (kind, count) in [("tcp", "3000"), ("unix", "3000")] {
            let (out, seen) = watch_run(&env, &["--memory", "256M"], &["python3", "-c", STUFF, "100", kind, count]);
            let text = both(&out);
            assert!(matches!(out.status.code(), Some(123) | Some(0)), "{who:?} {kind}: {text}");
            assert!(seen.cgroup_peak <= CAP + MARGIN, "{who:?} {kind}: {seen:?}\n{text}");
            assert!(seen.sockets_growth <= (CAP / 8) + MARGIN, "{who:?} {kind}: {seen:?}\n{text}");
            if out.status.code() == Some(123) {
                assert!(text.contains("the memory limit was reached"), "{who:?} {kind}: {text}");
            }
            if kind == "unix" {
                // Control: Unix socket buffers are charged to the cgroup, which they filled.
                assert!(
                    seen.cgroup_peak >= CAP * 3 / 4,
                    "{who:?}: the stuffing never filled the cap: {seen:?}\n{text}"
                );
            }
            eprintln!("{who:?} {kind}: {seen:?}, exit {:?}", out.status.code());
        }
        // Control: without the cap, the same TCP stuffing takes more than the cap from the host.
        let (out, seen) = watch_run(&env, &["--memory", "none"], &["python3", "-c", STUFF, "100", "tcp", "3000"]);
        assert_code(&out, 0);
        assert!(
            seen.sockets_growth > CAP,
            "{who:?}: the stuffing is too weak to test anything: {seen:?}\n{}",
            both(&out)
        );
    }
}

/// The names of PROTECTED_IN_WRITE_ROOTS that get a placeholder when absent.
const PLACEHOLDERS: &[&str] = &[".envrc", ".gitmodules", ".vscode", ".idea", ".zed", ".ringfence.toml"];

/// Entries in `dir` named like a placeholder (`.git/config`, `.git/hooks` inside `.git`).
fn placeholders_in(dir: &Path) -> Vec<String> {
    let names: &[&str] = if dir.ends_with(".git") { &["config", "hooks"] } else { PLACEHOLDERS };
    names.iter().filter(|n| std::fs::symlink_metadata(dir.join(n)).is_ok()).map(|n| n.to_string()).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The folders the run takes permission from, and the script that does it; the workspace and
/// `sub` are writable roots (each with its own placeholders), `.git` holds `.git/config` and
/// `.git/hooks` placeholders.
fn chmod_workspace(env: &Env) -> (Vec<PathBuf>, String) {
    for dir in [env.ws.join(".git"), env.ws.join("sub")] {
        std::fs::create_dir_all(&dir).unwrap();
        env.give(&dir);
    }
    let folders = vec![env.ws.clone(), env.ws.join(".git"), env.ws.join("sub")];
    let script =
        "ls -a . .git sub | tr '\\n' ' '; echo; chmod 0555 . && chmod 0555 .git && chmod 0 sub && echo CHMODDED";
    (folders, script.to_string())
}

/// The folders' modes after the run: as the run left them, except that `sub`, which it made
/// unreadable, is given back to its owner by the post-run review when the caller is not root
/// (root reads it anyway).
fn modes_after(who: Who) -> [u32; 3] {
    [0o555, 0o555, if who == Who::Nobody { 0o700 } else { 0 }]
}

/// Puts the modes back so the scratch tree can be removed.
fn restore_modes(folders: &[PathBuf]) {
    for f in folders {
        let _ = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755));
    }
}

/// A run that takes write or search permission from the folders holding its placeholders
/// (`chmod 0555 .`, `chmod 0555 .git`, `chmod 0 sub`) leaves no placeholder on the host, and
/// the folders keep the modes the run gave them. Control: the placeholders were there during
/// the run (listed from inside), and the chmods took effect.
#[test]
fn placeholders_are_removed_after_the_run_took_permission_away() {
    for who in identities() {
        let env = Env::new(who);
        let (folders, script) = chmod_workspace(&env);
        let out = env.run_sh(&["--write", "sub"], &script);
        let text = both(&out);
        restore_modes_after(&folders, || {
            assert_code(&out, 0);
            assert!(text.contains(".envrc") && text.contains("config") && text.contains("CHMODDED"), "{who:?}: {text}");
            assert_eq!(folders.iter().map(|f| mode(f)).collect::<Vec<_>>(), modes_after(who), "{who:?}");
            let lifted = stderr(&out).contains("took away permissions the review needs");
            assert_eq!(lifted, who == Who::Nobody, "{who:?}: {text}");
            assert!(!stderr(&out).contains("could not be removed"), "{who:?}: {text}");
        });
        for f in &folders {
            assert_eq!(placeholders_in(f), Vec::<String>::new(), "{who:?}: left in {}", f.display());
        }
    }
}

/// Runs `check`, then puts the folders' modes back whatever happened.
fn restore_modes_after(folders: &[PathBuf], check: impl FnOnce()) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    restore_modes(folders);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The same after ringfence is killed mid-run: the cleaner removes the placeholders behind the
/// folders the run made unwritable and unsearchable, and puts their modes back.
#[test]
fn placeholders_are_removed_after_a_killed_supervisor() {
    for who in identities() {
        let env = Env::new(who);
        let (folders, script) = chmod_workspace(&env);
        let mut cmd = env.run_command(&["--write", "sub"], &["sh", "-c", &format!("{script}; exec sleep 60")]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let chmodded = poll_until(Duration::from_secs(10), || mode(&env.ws.join("sub")) == 0);
        let during = env.ws.join(".envrc").is_dir();
        child.kill().unwrap();
        let out = collect_within(child, RUN_LIMIT);
        // The cleaner lifts the modes while it removes, then puts them back; its review gives
        // the unreadable `sub` back to its owner, as the supervisor's does.
        let expected = modes_after(who);
        let clean = poll_until(Duration::from_secs(5), || {
            folders.iter().all(|f| placeholders_in(f).is_empty()) && folders.iter().map(|f| mode(f)).eq(expected)
        });
        let modes: Vec<u32> = folders.iter().map(|f| mode(f)).collect();
        restore_modes(&folders);
        assert!(chmodded && during, "{who:?}: the run never chmodded (control): {}", both(&out));
        assert!(clean, "{who:?}: placeholders left behind a killed supervisor");
        for f in &folders {
            assert_eq!(placeholders_in(f), Vec::<String>::new(), "{who:?}: left in {}", f.display());
        }
        assert_eq!(modes, expected, "{who:?}: the cleaner did not put the modes back");
        assert!(!stderr(&out).contains("could not be removed"), "{who:?}: {}", both(&out));
    }
}

/// A placeholder that truly can't be removed (its folder made immutable on the host during the
/// run) is named on stderr, by the supervisor and by the cleaner after a SIGKILL. Control: the
/// folder is writable again afterwards and the placeholder is still there to remove.
#[test]
fn a_placeholder_that_cannot_be_removed_is_reported() {
    if !is_root() || std::process::Command::new("chattr").arg("--help").output().is_err() {
        return eprintln!("needs root and chattr");
    }
    for who in identities() {
        for kill in [false, true] {
            let env = Env::new(who);
            let (mut child, sleep, _) = start_sleeper(&env, &[]);
            assert!(env.ws.join(".envrc").is_dir(), "{who:?}: no placeholder");
            let chattr = |flag: &str| std::process::Command::new("chattr").arg(flag).arg(&env.ws).status().unwrap();
            assert!(chattr("+i").success());
            if kill {
                child.kill().unwrap();
            } else {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleep as i32), nix::sys::signal::Signal::SIGKILL);
            }
            let out = collect_within(child, RUN_LIMIT);
            let left = env.ws.join(".envrc").is_dir();
            chattr("-i");
            let expected = format!(
                "ringfence: warning: {}: this placeholder could not be removed",
                env.ws.join(".envrc").display()
            );
            assert!(left, "{who:?} kill={kill}: the placeholder went anyway (control)");
            assert!(stderr(&out).contains(&expected), "{who:?} kill={kill}: {}", stderr(&out));
        }
    }
}
