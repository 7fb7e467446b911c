//! Enforcement on a real Windows host: what the sandbox must prevent, tried from inside it.
//! They need `ringfence setup` done (elevated) and RINGFENCE_WINDOWS_ENFORCEMENT=1; without
//! the variable every test returns at once. Never run under Wine: Wine enforces none of the
//! restricted token, the ACL entries or the WFP filters, so a pass there would prove nothing.

#![cfg(windows)]

mod common;

use common::no_limits;
use ringfence_policy::{FsRules, Limits, Origin, Policy, RuleKind};
use ringfence_windows::{spawn, LaunchSpec, Outcome, StdioSpec};
use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn enabled() -> bool {
    if std::env::var_os("RINGFENCE_WINDOWS_ENFORCEMENT").as_deref() != Some("1".as_ref()) {
        eprintln!("skipped: set RINGFENCE_WINDOWS_ENFORCEMENT=1 after `ringfence setup` to run");
        return false;
    }
    true
}

/// A fresh workspace and an outside folder, both in the caller's profile.
struct Scene {
    root: PathBuf,
    ws: PathBuf,
    outside: PathBuf,
}

impl Scene {
    /// The scene for test `name`, or None when the enforcement tests are not enabled.
    fn new(name: &str) -> Option<Scene> {
        if !enabled() {
            return None;
        }
        let home = PathBuf::from(std::env::var_os("USERPROFILE").expect("USERPROFILE"));
        let root = home.join(format!("rf-enforce-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ws = root.join("ws");
        let outside = root.join("outside");
        std::fs::create_dir_all(ws.join(".git").join("hooks")).unwrap();
        std::fs::write(ws.join(".git").join("config"), "[core]\n").unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("private.txt"), "outside secret").unwrap();
        std::fs::write(ws.join("secret.txt"), "hidden").unwrap();
        std::fs::write(ws.join("readme.txt"), "visible").unwrap();
        Some(Scene { root, ws, outside })
    }

    /// The workspace profile's rules for this workspace, no network, and `limits`.
    fn policy(&self, limits: Limits) -> Policy {
        let mut fs = FsRules::default();
        fs.push(RuleKind::Read, PathBuf::from(r"C:\"), Origin::builtin("read root"));
        fs.push(RuleKind::Write, self.ws.clone(), Origin::builtin("workspace"));
        for p in [".git/hooks", ".git/config", ".gitmodules", ".envrc", ".vscode"] {
            fs.push(RuleKind::DenyWrite, self.ws.join(p), Origin::builtin("protected path"));
        }
        fs.push(RuleKind::DenyRead, self.ws.join("secret.txt"), Origin::flag("--deny-read"));
        let home = PathBuf::from(std::env::var_os("USERPROFILE").unwrap());
        Policy { limits, ..common::policy(self.ws.clone(), home, fs) }
    }

    /// Runs `program args` in the sandbox, in the workspace; returns the outcome and what it
    /// printed.
    fn run(&self, limits: Limits, program: &str, args: &[&str], extra_env: &[(&str, &str)]) -> (Outcome, String) {
        let (reader, writer) = std::io::pipe().unwrap();
        let writer2 = writer.try_clone().unwrap();
        let mut env = env();
        env.extend(extra_env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
        let spec = LaunchSpec {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env,
            cwd: self.ws.clone(),
            policy: self.policy(limits),
            stdio: [StdioSpec::Null, StdioSpec::Handle(writer.into()), StdioSpec::Handle(writer2.into())],
            terminal: false,
        };
        let sandbox = spawn(spec).unwrap_or_else(|e| panic!("spawn: {e}"));
        let out = common::read_in_background(reader);
        let outcome = sandbox.wait().unwrap();
        (outcome, out.join().unwrap())
    }

    /// Runs a `cmd` line with the usual limits.
    fn cmd(&self, line: &str) -> (Outcome, String) {
        self.cmd_with(limits(), line)
    }

    fn cmd_with(&self, limits: Limits, line: &str) -> (Outcome, String) {
        self.run(limits, "cmd.exe", &["/d", "/c", line], &[])
    }

    fn powershell(&self, limits: Limits, script: &str) -> (Outcome, String) {
        self.run(limits, "powershell.exe", &["-NoProfile", "-NonInteractive", "-Command", script], &[])
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Two minutes and 64 processes.
fn limits() -> Limits {
    Limits {
        timeout: Some(ringfence_policy::HumanDuration(Duration::from_secs(120))),
        pids: Some(64),
        pids_explicit: true,
        ..no_limits()
    }
}

fn env() -> Vec<(OsString, OsString)> {
    ["SystemRoot", "windir", "PATH", "PATHEXT", "ComSpec", "SystemDrive", "USERPROFILE", "PSModulePath"]
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect()
}

#[test]
fn setup_is_complete() {
    if !enabled() {
        return;
    }
    let state = ringfence_windows::state();
    assert!(state.ready(), "{state}");
}

#[test]
fn runs_as_the_sandbox_account_with_its_exit_code() {
    let Some(s) = Scene::new("exit") else { return };
    let (o, out) = s.cmd("whoami & exit 3");
    assert_eq!(o.exit_code, 3, "{out}");
    assert!(out.to_lowercase().contains(ringfence_windows::ACCOUNT_NAME), "{out}");
    assert!(o.cleanup_warnings.is_empty(), "{:?}", o.cleanup_warnings);
}

#[test]
fn writes_inside_the_workspace_and_nowhere_else() {
    let Some(s) = Scene::new("write") else { return };
    let target = s.outside.join("planted.txt");
    let line = format!("echo ok> inside.txt & echo x> \"{}\"", target.display());
    let (_, out) = s.cmd(&line);
    assert!(s.ws.join("inside.txt").is_file(), "{out}");
    assert!(!target.exists(), "wrote outside the workspace: {out}");
    // Public, world-writable places are not writable either.
    let public = PathBuf::from(std::env::var_os("PUBLIC").unwrap_or_else(|| r"C:\Users\Public".into()))
        .join(format!("rf-{}.txt", std::process::id()));
    let (_, out) = s.cmd(&format!("echo x> \"{}\"", public.display()));
    let planted = public.exists();
    let _ = std::fs::remove_file(&public);
    assert!(!planted, "wrote to {}: {out}", public.display());
}

#[test]
fn protected_paths_stay_read_only_and_pinned() {
    let Some(s) = Scene::new("protected") else { return };
    let (_, out) = s.cmd(
        r"echo evil> .git\hooks\pre-commit & echo [x]>> .git\config & move .git moved & mkdir .vscode\x & echo x> .envrc\y",
    );
    assert!(!s.ws.join(".git").join("hooks").join("pre-commit").exists(), "{out}");
    assert_eq!(std::fs::read_to_string(s.ws.join(".git").join("config")).unwrap(), "[core]\n", "{out}");
    assert!(s.ws.join(".git").is_dir() && !s.ws.join("moved").exists(), "{out}");
    assert!(!s.ws.join(".vscode").exists(), "the placeholder is removed after the run");
    assert!(!s.ws.join(".envrc").exists());
}

#[test]
fn hidden_and_other_users_files_are_unreadable() {
    let Some(s) = Scene::new("read") else { return };
    let private = s.outside.join("private.txt");
    let line = format!("type readme.txt & type secret.txt & type \"{}\"", private.display());
    let (_, out) = s.cmd(&line);
    assert!(out.contains("visible"), "{out}");
    assert!(!out.contains("hidden"), "read a denied file: {out}");
    assert!(!out.contains("outside secret"), "read the caller's profile: {out}");
}

#[test]
fn the_network_is_closed_except_the_gateway_range() {
    let Some(s) = Scene::new("net") else { return };
    let inside = TcpListener::bind((Ipv4Addr::LOCALHOST, *ringfence_windows::GATEWAY_PORT_RANGE.end())).unwrap();
    let outside = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port_out = outside.local_addr().unwrap().port();
    let port_in = inside.local_addr().unwrap().port();
    let script = format!(
        "$r = @(); foreach ($t in @(@('1.1.1.1',443), @('127.0.0.1',{port_out}), @('127.0.0.1',{port_in}))) {{ \
           try {{ $c = New-Object Net.Sockets.TcpClient; $c.Connect($t[0], $t[1]); $r += \"open:$($t[1])\"; $c.Close() }} \
           catch {{ $r += \"closed:$($t[1])\" }} }}; \
         try {{ $u = New-Object Net.Sockets.UdpClient; $u.Connect('8.8.8.8',53); [void]$u.Send([byte[]](1,2,3),3); \
           $u.Client.ReceiveTimeout = 2000; $e = $null; [void]$u.Receive([ref]$e); $r += 'udp:open' }} catch {{ $r += 'udp:closed' }}; \
         $r -join ' '"
    );
    let (_, out) = s.powershell(limits(), &script);
    assert!(out.contains("closed:443"), "reached the internet directly: {out}");
    assert!(out.contains(&format!("closed:{port_out}")), "reached a host service on loopback: {out}");
    assert!(out.contains(&format!("open:{port_in}")), "the gateway range must be reachable: {out}");
    assert!(out.contains("udp:closed"), "sent DNS directly: {out}");
}

#[test]
fn nothing_outlives_the_run() {
    let Some(s) = Scene::new("outlive") else { return };
    let late = s.ws.join("late.txt");
    let line = "start /b powershell -NoProfile -Command \"Start-Sleep 4; Set-Content late.txt x\" & exit 0";
    let (o, out) = s.cmd(line);
    assert_eq!(o.exit_code, 0, "{out}");
    std::thread::sleep(Duration::from_secs(8));
    assert!(!late.exists(), "a background process outlived the run");
}

#[test]
fn the_timeout_kills_the_job() {
    let Some(s) = Scene::new("timeout") else { return };
    let mut l = limits();
    l.timeout = Some(ringfence_policy::HumanDuration(Duration::from_secs(2)));
    let start = Instant::now();
    let (o, _) = s.powershell(l, "Start-Sleep 60");
    assert!(o.timed_out);
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_process_limit_holds() {
    let Some(s) = Scene::new("pids") else { return };
    let mut l = limits();
    l.pids = Some(2);
    let (o, out) = s.cmd_with(l, "cmd /d /c cmd /d /c echo deep");
    assert!(!out.contains("deep") || o.exit_code != 0, "a third process started: {out}");
}

#[test]
fn the_memory_limit_holds() {
    let Some(s) = Scene::new("memory") else { return };
    let mut l = limits();
    l.memory = Some(ringfence_policy::ByteSize(256 << 20));
    let (o, out) = s.powershell(l, "$a = New-Object byte[] (1GB); 'allocated'");
    assert!(!out.contains("allocated"), "{out}");
    assert!(o.memory_limit_hit || o.exit_code != 0, "{o:?}");
}

#[test]
fn environment_and_temp_are_as_given() {
    let Some(s) = Scene::new("env") else { return };
    let (_, out) = s.run(limits(), "cmd.exe", &["/d", "/c", "echo %RF_X% %TEMP%"], &[("RF_X", "v a l")]);
    assert!(out.contains("v a l"), "{out}");
    assert!(out.contains("ringfence-"), "TEMP is the run's own folder: {out}");
}

#[test]
fn the_runs_acl_entries_are_removed() {
    let Some(s) = Scene::new("acl") else { return };
    let _ = s.cmd("echo x> f.txt");
    let out = std::process::Command::new("icacls").arg(&s.ws).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("S-1-5-5-"), "an entry for a logon SID was left: {text}");
}
