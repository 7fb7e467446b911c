//! The `ringfence` command end to end on a real Windows host, as a user runs it: files,
//! network (none, and allow through the gateway), processes, limits, `NUL` and `Path`, each
//! checked on the host side afterwards. Like the enforcement tests, every test is `#[ignore]`d,
//! refuses Wine, and needs `ringfence setup` done and RINGFENCE_WINDOWS_ENFORCEMENT=1; it runs
//! the binary named by RINGFENCE_EXE. scripts/test-windows.ps1 sets all of it up:
//!
//! ```text
//! cargo test -p ringfence-windows --test cli -- --ignored --test-threads=1
//! ```

#![cfg(windows)]

mod common;

use common::{home, received, tcp_probe};

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// ringfence's exit codes (crates/ringfence/src/exit_code.rs).
const LIMIT: i32 = 123;
const TIMEOUT: i32 = 124;

fn exe() -> PathBuf {
    let exe = PathBuf::from(std::env::var_os("RINGFENCE_EXE").expect("RINGFENCE_EXE: the ringfence.exe to test"));
    assert!(exe.is_file(), "{}", exe.display());
    exe
}

/// A workspace in the caller's profile, removed with its grant afterwards.
struct Ws {
    root: PathBuf,
    path: PathBuf,
}

impl Ws {
    fn new(name: &str) -> Ws {
        common::require_windows_host("CLI");
        let root = home().join(format!("rf-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let path = root.join("ws");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("readme.txt"), "visible").unwrap();
        Ws { root, path }
    }

    /// `ringfence <flags> run -- <command>` in the workspace; the output with stderr after stdout.
    fn ringfence(&self, flags: &[&str], command: &[&str]) -> (i32, String) {
        let out: Output = Command::new(exe())
            .arg("run")
            .args(flags)
            .arg("--")
            .args(command)
            .current_dir(&self.path)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    fn cmd(&self, flags: &[&str], line: &str) -> (i32, String) {
        self.ringfence(flags, &["cmd.exe", "/d", "/c", line])
    }

    fn powershell(&self, flags: &[&str], script: &str) -> (i32, String) {
        self.ringfence(flags, &["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", script])
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        let _ = ringfence_windows::forget_root(&self.path);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A file planted in the caller's home folder for one test (its folder too, if new).
struct Planted {
    file: PathBuf,
    made_dir: Option<PathBuf>,
}

impl Planted {
    fn new(dir: &str, name: &str, text: &str) -> Planted {
        let dir = home().join(dir);
        let made_dir = (!dir.exists()).then(|| dir.clone());
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        Planted { file, made_dir }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        if let Some(d) = &self.made_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn files_the_workspace_is_writable_secrets_and_protected_paths_are_not() {
    let ws = Ws::new("files");
    std::fs::create_dir_all(ws.path.join(".git").join("hooks")).unwrap();
    std::fs::write(ws.path.join(".git").join("config"), "[core]\n").unwrap();
    std::fs::write(ws.path.join("local.secret"), "workspace secret").unwrap();
    let key = Planted::new(".ssh", &format!("rf-test-{}", std::process::id()), "ssh secret");
    let line = format!(
        "echo ok> made.txt & type readme.txt & type local.secret & type \"{}\" & echo evil> .git\\hooks\\pre-commit \
         & echo x>> .git\\config & echo x> .envrc & echo ran",
        key.file.display()
    );
    let (code, out) = ws.cmd(&["--deny-read", "local.secret"], &line);
    assert!(out.contains("ran") && out.contains("visible"), "exit {code}: {out}");
    assert_eq!(std::fs::read_to_string(ws.path.join("made.txt")).unwrap().trim(), "ok", "{out}");
    assert!(!out.contains("workspace secret"), "read a --deny-read file: {out}");
    assert!(!out.contains("ssh secret"), "read ~/.ssh: {out}");
    assert!(!ws.path.join(".git").join("hooks").join("pre-commit").exists(), "{out}");
    assert_eq!(std::fs::read_to_string(ws.path.join(".git").join("config")).unwrap(), "[core]\n", "{out}");
    assert!(!ws.path.join(".envrc").exists(), "{out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn network_none_reaches_no_local_server() {
    let ws = Ws::new("net-none");
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    server.set_nonblocking(true).unwrap();
    let here = Command::new("powershell.exe")
        .args(["-NoProfile", "-Command", &tcp_probe(server.local_addr().unwrap().port(), "host")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&here.stdout).contains("open:host"), "the control: {here:?}");
    assert_eq!(received(&server), vec!["host".to_string()]);
    let (_, out) = ws.powershell(&[], &tcp_probe(server.local_addr().unwrap().port(), "run"));
    assert!(out.contains("closed:run"), "{out}");
    assert!(received(&server).is_empty(), "the local server saw the sandbox: {out}");
    assert!(out.contains("not enforced") && out.contains("dns"), "the DNS Client's lookups are reported: {out}");
}

/// `allow` through the gateway: an allowed host is fetched through the proxy the CLI sets; the
/// local server the test starts is refused by the gateway even when allowed by name (it is a
/// loopback address), and can't be reached around the gateway either.
#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn network_allow_goes_through_the_gateway_only() {
    let ws = Ws::new("net-allow");
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    let here = Command::new("curl.exe")
        .args(["-sS", "-o", "NUL", "-w", "%{http_code}", "https://example.com/"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&here.stdout), "200", "the control needs the internet: {here:?}");
    let events = ws.root.join("events.jsonl");
    let flags = ["--allow-host", "example.com", "--allow-host", "127.0.0.1", "--events", events.to_str().unwrap()];
    // NO_PROXY names loopback: cleared for the third probe, so it asks the gateway for the
    // local server (allowed by name, refused as a loopback address); the fourth goes direct.
    let script = format!(
        "'allowed:' + (curl.exe -sS -o NUL -w '%{{http_code}}' https://example.com/); \
         'denied:' + (curl.exe -sS -o NUL -w '%{{http_code}}' https://github.com/); \
         $env:NO_PROXY = $null; \
         'gateway:' + (curl.exe -sS -x $env:HTTP_PROXY -o NUL -w '%{{http_code}}' http://127.0.0.1:{port}/); \
         'direct:' + (curl.exe -sS --max-time 10 -o NUL -w '%{{http_code}}' http://127.0.0.1:{port}/); 'ran'"
    );
    let (_, out) = ws.powershell(&flags, &script);
    assert!(out.contains("ran"), "{out}");
    assert!(out.contains("allowed:200"), "the allowed host through the gateway: {out}");
    assert!(!out.contains("denied:200"), "a host the policy does not allow: {out}");
    assert!(!out.contains("gateway:200") && !out.contains("direct:200"), "{out}");
    assert!(received(&server).is_empty(), "the local server saw the sandbox: {out}");
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(log.contains("\"net.connect\"") && log.contains("example.com"), "{log}");
    assert!(log.contains("\"net.deny\"") && log.contains("github.com"), "{log}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn processes_nothing_outlives_the_run() {
    let ws = Ws::new("procs");
    let script = "Start-Process -NoNewWindow powershell -ArgumentList '-NoProfile','-Command',\
                  'Set-Content started.txt x; Start-Sleep 4; Set-Content late.txt x'; \
                  $n = 0; while (-not (Test-Path started.txt) -and $n -lt 300) { Start-Sleep -Milliseconds 100; $n++ }; \
                  'main done'";
    let (code, out) = ws.powershell(&[], script);
    assert_eq!(code, 0, "{out}");
    assert!(ws.path.join("started.txt").exists(), "the background process never ran: {out}");
    std::thread::sleep(Duration::from_secs(8));
    assert!(!ws.path.join("late.txt").exists(), "a background process outlived the run");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn limits_timeout_memory_and_processes() {
    let ws = Ws::new("limits");
    let (code, out) = ws.powershell(&["--timeout", "4s"], "'started'; Start-Sleep 60; 'finished'");
    assert!(out.contains("started") && !out.contains("finished"), "{out}");
    assert_eq!(code, TIMEOUT, "{out}");
    let (code, out) = ws.powershell(
        &["--memory", "256M"],
        "'ran'; $small = New-Object byte[] (16MB); 'small ok'; $a = New-Object byte[] (1GB); 'allocated'",
    );
    assert!(out.contains("small ok") && !out.contains("allocated"), "{out}");
    assert_eq!(code, LIMIT, "{out}");
    std::fs::write(
        ws.path.join("nest.cmd"),
        "@echo off\r\necho level%1\r\nset /a next=%1+1\r\nif %1 LSS 6 cmd /d /c \"%~f0\" %next%\r\n",
    )
    .unwrap();
    let (_, out) = ws.cmd(&["--pids", "4"], "nest.cmd 1");
    assert!(out.contains("level1") && !out.contains("level6"), "{out}");
    let (_, out) = ws.cmd(&[], "nest.cmd 1");
    assert!(out.contains("level6"), "the control: {out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn nul_redirection_works() {
    let ws = Ws::new("nul");
    let (code, out) = ws.cmd(&[], "echo x> NUL && type readme.txt > NUL && echo nul-ok");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nul-ok") && !out.to_lowercase().contains("denied"), "{out}");
}

/// `Path`, as Windows spells it, reaches the command: programs are found by name.
#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn path_finds_programs_and_git_works() {
    let ws = Ws::new("path");
    assert!(std::env::var_os("Path").is_some());
    let (code, out) = ws.ringfence(&[], &["git", "--version"]);
    assert_eq!(code, 0, "git was not found through Path: {out}");
    assert!(out.contains("git version"), "{out}");
    assert!(Command::new("git").arg("-C").arg(&ws.path).args(["init", "-q"]).status().unwrap().success());
    let (code, out) = ws.ringfence(&[], &["git", "status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No commits yet"), "{out}");
    let (_, out) = ws.cmd(&[], "echo %PATHEXT% & echo %SystemRoot% & echo %USERPROFILE%");
    assert!(out.contains(".EXE") && out.to_lowercase().contains("windows"), "{out}");
    assert!(out.contains(ringfence_windows::ACCOUNT_NAME), "the sandbox account's own profile: {out}");
}
