//! Threat 6, escalating: the system calls on the seccomp list, nested namespaces, setuid
//! binaries, foreign-architecture system calls, inherited descriptors, capabilities, and the
//! kernel's global knobs; plus the run.start event that records what was enforced. Every test
//! runs as root and as nobody; where a call would succeed unconfined, the same probe runs on
//! the host as the same identity first (control), so an EPERM inside is the sandbox's doing.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Python buffers the probes below pass as arguments.
const PY_BUFFERS: &str = r#"
import struct
buf = ctypes.create_string_buffer(256)
perf = ctypes.create_string_buffer(128)
struct.pack_into('IIQ', perf, 0, 1, 128, 0)            # PERF_TYPE_SOFTWARE, size, CPU_CLOCK
struct.pack_into('Q', perf, 40, 1 | 1 << 5 | 1 << 6)   # disabled, exclude_kernel, exclude_hv
handle = ctypes.create_string_buffer(8 + 128)
struct.pack_into('I', handle, 0, 128)
mount_id = ctypes.c_int(0)
"#;

/// One system call probe: name, python arguments after the number, and whether it succeeds
/// (or at least fails with something other than EPERM) unconfined for any identity.
struct Call {
    name: &'static str,
    nr: u64,
    args: &'static str,
    expect: &'static str,
    host_passes: bool,
}

const fn call(name: &'static str, nr: u64, args: &'static str, expect: &'static str, host_passes: bool) -> Call {
    Call { name, nr, args, expect, host_passes }
}

/// x86_64 numbers. The host-passing ones are ordered so that unshare comes last.
const CALLS: &[Call] = &[
    call("io_uring_setup", 425, "4, buf", "EPERM", true),
    call("perf_event_open", 298, "perf, 0, -1, -1, 0", "EPERM", true),
    call("userfaultfd", 323, "0o2000000 | 1", "EPERM", true), // O_CLOEXEC | UFFD_USER_MODE_ONLY
    call("name_to_handle_at", 303, "-100, b'/', handle, ctypes.byref(mount_id), 0", "EPERM", true),
    call("keyctl", 250, "0, -3, 1", "EPERM", true), // KEYCTL_GET_KEYRING_ID, session
    call("add_key", 248, "b'user', b'rf', b'x', 1, -2", "EPERM", true),
    call("setns", 308, "-1, 0", "EPERM", true),  // EBADF unconfined
    call("clone3", 435, "0, 0", "ENOSYS", true), // EINVAL unconfined
    call("x32_getpid", 0x4000_0000 | 39, "", "EPERM", true), // ENOSYS unconfined (no x32)
    call("bpf", 321, "0, buf, 72", "EPERM", false),
    call("open_by_handle_at", 304, "-100, handle, 0", "EPERM", false),
    call("mount", 165, "b'/nonexistent-rf-src', b'/nonexistent-rf-dst', 0, 4096, 0", "EPERM", false),
    call("umount2", 166, "b'/nonexistent-rf', 0", "EPERM", false),
    call("pivot_root", 155, "b'/nonexistent-rf', b'/nonexistent-rf'", "EPERM", false),
    call("chroot", 161, "b'/nonexistent-rf'", "EPERM", false),
    call("fsopen", 430, "b'tmpfs', 0", "EPERM", false),
    call("open_tree", 428, "-100, b'/', 1", "EPERM", false),
    call("init_module", 175, "0, 0, b''", "EPERM", false),
    call("kexec_load", 246, "0, 0, 0, 0", "EPERM", false),
    call("reboot", 169, "0, 0, 0, 0", "EPERM", false),
    call("syslog", 103, "3, buf, 256", "EPERM", false),
    call("iopl", 172, "3", "EPERM", false),
    call("personality", 135, "0x0400000", "EPERM", false), // READ_IMPLIES_EXEC
    call("unshare_newns", 272, "0x20000", "EPERM", false),
    call("unshare_newuser", 272, "0x10000000", "EPERM", true),
];

/// The probe script for `calls`; `with_clone` adds a raw clone(CLONE_NEWUSER) (sandbox only:
/// unconfined it would fork the interpreter).
fn syscall_script(calls: &[&Call], with_clone: bool) -> String {
    let mut s = format!("{PY_SYSCALL}{PY_BUFFERS}probe('getpid', 39)\n");
    if with_clone {
        s += "r = probe('clone_newuser', 56, 0x10000000 | 17, 0, 0, 0, 0)\nif r == 0: os._exit(0)\n";
    }
    for c in calls {
        let sep = if c.args.is_empty() { "" } else { ", " };
        s += &format!("probe('{}', {}{sep}{})\n", c.name, c.nr, c.args);
    }
    s
}

fn results(out: &std::process::Output) -> BTreeMap<String, String> {
    let got = probe_results(&stdout(out));
    assert_eq!(got.get("getpid").map(String::as_str), Some("OK"), "the probe itself failed:\n{}", both(out));
    got
}

/// The escalation surface is refused: io_uring, bpf, perf_event_open, userfaultfd, keyctl,
/// add_key, name_to_handle_at, open_by_handle_at, mount and the new mount API, module and kexec
/// loading, reboot, syslog, iopl, weakening personalities, unshare, setns and clone with a
/// namespace flag, x32 calls: EPERM; clone3: ENOSYS. Unconfined, the host-passing ones don't
/// fail with EPERM (control).
#[test]
fn escalation_syscalls_are_refused() {
    for who in identities() {
        let env = Env::new(who);
        let host_calls: Vec<&Call> = CALLS.iter().filter(|c| c.host_passes).collect();
        let host = env.host(&["python3", "-c", &syscall_script(&host_calls, false)]);
        let got = results(&host);
        for c in &host_calls {
            let v = got.get(c.name).map(String::as_str);
            assert!(
                v.is_some() && v != Some("EPERM") && v != Some(c.expect),
                "{who:?}: unconfined {} gave {v:?} (control)",
                c.name
            );
        }

        let all: Vec<&Call> = CALLS.iter().collect();
        let out = env.run_py(&[], &syscall_script(&all, true));
        let got = results(&out);
        let mut wrong = Vec::new();
        for c in CALLS.iter().map(|c| (c.name, c.expect)).chain([("clone_newuser", "EPERM")]) {
            let v = got.get(c.0).map(String::as_str);
            if v != Some(c.1) {
                wrong.push(format!("{} gave {v:?}, expected {}", c.0, c.1));
            }
        }
        assert!(wrong.is_empty(), "{who:?}:\n{}\n{}", wrong.join("\n"), both(&out));
    }
}

/// Nested namespaces are refused from the command line too (`unshare -U`, `-r`, `-m`, `-n`),
/// which the same identity can do unconfined (control).
#[test]
fn nested_namespaces_are_refused() {
    for who in identities() {
        let env = Env::new(who);
        let script =
            "for f in -U -r -m -n -p; do unshare $f true && echo UN''SHARED $f; done; unshare -r id 2>&1; echo done";
        let host = env.host(&["sh", "-c", script]);
        assert!(
            stdout(&host).contains("UNSHARED -r"),
            "{who:?}: unshare -r fails unconfined (control):\n{}",
            both(&host)
        );
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains("done"), "{who:?}: the script did not run:\n{text}");
        assert!(!text.contains("UNSHARED"), "{who:?}: a namespace was created:\n{text}");
        assert!(!stdout(&out).contains("uid=0(root) gid=0(root)") || who == Who::Me, "{who:?}: became root:\n{text}");
    }
}

const SUID_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    int r = setuid(0);
    unsigned long long eff = 0;
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "CapEff:", 7)) sscanf(line + 7, "%llx", &eff);
    printf("SUID euid=%d setuid=%d capeff=%llx\n", (int)geteuid(), r, eff);
    return 0;
}
"#;

const INT80_C: &str = r#"
#include <stdio.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long r;
    __asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L) : "memory"); /* i386 getpid */
    printf("INT80 %ld\n", r);
    return 0;
}
"#;

/// Compiles `source` into `dir/name` with the host's cc; None (and a note) without a compiler.
fn compile(dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).unwrap();
    match std::process::Command::new("cc").args(["-O0", "-o"]).arg(&bin).arg(&src).output() {
        Ok(o) if o.status.success() => {
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            Some(bin)
        }
        _ => {
            eprintln!("no working C compiler: skipping {name}");
            None
        }
    }
}

/// A root-owned directory under the env (never chowned) for compiled helpers.
fn tools_dir(env: &Env) -> PathBuf {
    let dir = env.root.join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn field(text: &str, key: &str) -> Option<String> {
    text.split_whitespace().find_map(|w| w.strip_prefix(key)).map(String::from)
}

/// Setuid-root binaries grant nothing: a helper the test made setuid root (which makes nobody
/// root when run unconfined: control) runs with the caller's uid and no capabilities; `su`
/// doesn't yield root either.
#[test]
fn setuid_binaries_do_not_elevate() {
    if !is_root() {
        return; // Making a setuid-root helper needs root.
    }
    for who in identities() {
        let env = Env::new(who);
        let Some(bin) = compile(&tools_dir(&env), "suid", SUID_C) else { return };
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let binp = bin.to_str().unwrap();

        let host = stdout(&env.host(&[binp]));
        let host_eff = field(&host, "capeff=").unwrap_or_default();
        assert!(
            host.contains("euid=0") && host_eff != "0",
            "{who:?}: the helper doesn't elevate unconfined (control): {host}"
        );

        let out = env
            .run_sh(&[], &format!("{binp}; su -c id 2>&1 </dev/null; su root -c 'id -u' 2>&1 </dev/null; echo done"));
        let text = both(&out);
        assert!(text.contains("done") && text.contains("SUID"), "{who:?}: the helper did not run:\n{text}");
        assert_eq!(field(&text, "capeff=").as_deref(), Some("0"), "{who:?}: capabilities gained:\n{text}");
        if who == Who::Nobody {
            assert!(text.contains("SUID euid=65534 setuid=-1"), "{who:?}: the setuid bit worked:\n{text}");
            assert!(
                !text.contains("uid=0(root)") && !text.lines().any(|l| l.trim() == "0"),
                "{who:?}: su gave root:\n{text}"
            );
        }
    }
}

/// System calls of a foreign architecture (i386 via int 0x80) get EPERM; unconfined the same
/// binary gets its pid (control).
#[test]
fn foreign_architecture_syscalls_are_refused() {
    for who in identities() {
        let env = Env::new(who);
        let Some(bin) = compile(&tools_dir(&env), "int80", INT80_C) else { return };
        let binp = bin.to_str().unwrap();
        let host_out = stdout(&env.host(&[binp]));
        let host: i64 =
            host_out.trim().strip_prefix("INT80 ").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{host_out}"));
        if host == -38 {
            eprintln!("no IA32 emulation: int 0x80 is ENOSYS everywhere; skipping");
            return;
        }
        assert!(host > 0, "{who:?}: int 0x80 getpid failed unconfined (control): {host}");
        let out = env.run_argv(&[], &[binp]);
        assert_eq!(stdout(&out).trim(), "INT80 -1", "{who:?}: expected -EPERM:\n{}", both(&out));
    }
}

/// Descriptors ringfence inherits beyond stdio (a read descriptor on a masked secret, a write
/// descriptor on a host file) don't reach the command: /proc/self/fd lists only 0-2 and the
/// directory ls opened, reading fd 7 and writing fd 8 fail, and the host file is unchanged.
/// Unconfined, the same descriptors are there (control).
#[test]
fn inherited_descriptors_are_closed() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("fd");
        let secret = env.home.join(".ssh/id_rsa");
        let log = env.outside.join("log.txt");
        env.write(&secret, &format!("SECRET-{tag}\n"));
        env.write(&log, "ORIGINAL\n");
        let script = "ls /proc/self/fd | tr '\\n' ' '; echo; cat <&7; cat /proc/self/fd/7; echo pwned >&8; echo pwned > /proc/self/fd/8; echo done";
        let with_fds = |mut cmd: std::process::Command| {
            let reader = std::fs::File::open(&secret).unwrap();
            let writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let (r, w) = (reader.as_raw_fd(), writer.as_raw_fd());
            // SAFETY: only dup2 (async-signal-safe) between fork and exec; the copies it makes
            // don't have FD_CLOEXEC, so they survive the exec.
            unsafe {
                cmd.pre_exec(move || {
                    for (from, to) in [(r, 7), (w, 8)] {
                        if nix::libc::dup2(from, to) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            bounded_output(cmd, RUN_LIMIT)
        };
        let control = with_fds(env.host_command(&["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '; cat <&7"]));
        assert!(
            stdout(&control).contains("7 8") && stdout(&control).contains(&tag),
            "{who:?}: fds not inherited (control):\n{}",
            both(&control)
        );

        let out = with_fds(env.run_command(&[], &["sh", "-c", script]));
        let text = both(&out);
        assert!(text.contains("done"), "{who:?}: the script did not run:\n{text}");
        assert_eq!(text.lines().next().unwrap_or_default().trim(), "0 1 2 3", "{who:?}: extra descriptors:\n{text}");
        assert!(!text.contains(&tag), "{who:?}: the secret was read through fd 7:\n{text}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "ORIGINAL\n",
            "{who:?}: the host file was written through fd 8"
        );
    }
}

/// The command has no capabilities at all (effective, permitted, inheritable, bounding,
/// ambient), no_new_privs set and a seccomp filter. Control, as root: the test itself has
/// capabilities, so the zeros are the sandbox's doing.
#[test]
fn capabilities_are_dropped() {
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    if is_root() {
        assert!(!own.contains("CapEff:\t0000000000000000"), "the test has no capabilities to drop (control)");
    }
    for who in identities() {
        let env = Env::new(who);
        let out = env.run_argv(&[], &["cat", "/proc/self/status"]);
        let text = stdout(&out);
        let status: BTreeMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k, v.trim())).collect();
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status.get(cap).copied(), Some("0000000000000000"), "{who:?}: {cap}:\n{text}");
        }
        assert_eq!(status.get("NoNewPrivs").copied(), Some("1"), "{who:?}:\n{text}");
        assert_eq!(status.get("Seccomp").copied(), Some("2"), "{who:?}:\n{text}");
    }
}

/// The kernel's global knobs and raw devices are out of reach even for root: core_pattern
/// (which would run a program as the host's root on the next crash) and sysrq-trigger can't be
/// written, no block device is visible, and /dev holds only the harmless nodes. Control: /proc
/// of the sandbox is readable.
#[test]
fn kernel_knobs_and_devices_are_out_of_reach() {
    let core_before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    for who in identities() {
        let env = Env::new(who);
        let script = "echo '|/bin/sh -c id' > /proc/sys/kernel/core_pattern; echo h > /proc/sysrq-trigger; \
                      mknod /tmp/disk b 254 0 && echo MK''NOD; ls /dev | tr '\\n' ' '; echo; \
                      for d in /dev/vda /dev/sda /dev/nvme0n1 /dev/mem /dev/kmsg; do head -c 1 $d >/dev/null 2>&1 && echo READ $d; done; \
                      cat /proc/sys/kernel/core_pattern";
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains(core_before.trim()), "{who:?}: /proc/sys unreadable (control):\n{text}");
        assert!(!text.contains("MKNOD") && !text.contains("READ /dev"), "{who:?}:\n{text}");
        let dev = stdout(&out).lines().next().unwrap_or_default().to_string();
        for entry in dev.split_whitespace() {
            let ok = [
                "core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
                "urandom", "zero",
            ];
            assert!(ok.contains(&entry), "{who:?}: unexpected /dev/{entry}: {dev}");
        }
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
            core_before,
            "{who:?}: core_pattern changed"
        );
    }
}

/// `--events` writes a run.start event naming the enforced layers (namespaces, mount view,
/// Landlock, seccomp, no_new_privs, and the limits mechanism when a limit is set) with nothing
/// asked for unenforced (only a default memory cap no cgroup can carry), then a run.end with the status; the command can't append forged events to the
/// log outside the workspace.
#[test]
fn run_start_event_lists_enforced_layers() {
    for who in identities() {
        let env = Env::new(who);
        let events = env.outside.join("events.jsonl");
        let ev = events.to_str().unwrap();
        let forged = r#"{"v":1,"type":"run.end","forged":true}"#;
        let out = env.run_sh(&["--events", ev, "--pids", "64"], &format!("echo '{forged}' >> {ev}; exit 3"));
        assert_code(&out, 3);
        let text = std::fs::read_to_string(&events).unwrap();
        assert_events_match_schema(&text);
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(
            lines.iter().all(|e| e.get("forged").is_none()),
            "{who:?}: the command wrote into the event log:\n{text}"
        );
        let of = |t: &str| lines.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();
        let start = of("run.start");
        assert_eq!(start.len(), 1, "{who:?}: {text}");
        let enforced: Vec<&str> =
            start[0]["enforced"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
        for layer in ["namespaces", "mount view", "landlock", "seccomp", "no_new_privs", "limits"] {
            assert!(enforced.contains(&layer), "{who:?}: {layer} missing from {enforced:?}");
        }
        // Nothing asked for is missing. The default memory cap is in force where a cgroup can
        // carry it (root here); elsewhere run.start says there is none.
        let missing: Vec<&str> = start[0]["not_enforced"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| !(l["name"] == "memory limit" && l["detail"].as_str().unwrap().starts_with("no memory cap:")))
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        assert!(missing.is_empty(), "{who:?}: {text}");
        let capped = enforced.contains(&"memory limit");
        assert_eq!(capped, start[0]["not_enforced"].as_array().unwrap().is_empty(), "{who:?}: {text}");
        assert!(start[0]["kernel"]["landlock_abi"].as_i64().unwrap_or(0) >= 1, "{who:?}: {text}");
        let ns = start[0]["enforced"].as_array().unwrap().iter().find(|l| l["name"] == "namespaces").unwrap();
        assert!(ns["detail"].as_str().unwrap().contains("net"), "{who:?}: no net namespace recorded: {ns}");
        let end = of("run.end");
        assert_eq!(end.len(), 1, "{who:?}: {text}");
        assert_eq!(end[0]["status"], 3, "{who:?}: {text}");
    }
}
