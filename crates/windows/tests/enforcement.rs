//! Enforcement on a real Windows host: what the sandbox must prevent, tried from inside it, with
//! the host side checked afterwards. Every test is `#[ignore]`d: it runs only when asked for
//! (`cargo test -p ringfence-windows --test enforcement -- --ignored --test-threads=1`, as
//! scripts/test-windows.ps1 does after `ringfence setup`), and then refuses to run under Wine,
//! which enforces none of the restricted token, the ACL entries or the WFP filters, or without
//! RINGFENCE_WINDOWS_ENFORCEMENT=1. A pass here is evidence; a pass under Wine would be none,
//! so there they are reported as ignored.
//!
//! Each test first proves its command ran (it prints or writes something the test checks), and
//! pairs each refusal with the same action where it is allowed, so a sandbox that blocks
//! everything, or a command that never started, fails. Each one leaves the machine as it found
//! it: its folders and their slot grants are removed.

#![cfg(windows)]

mod common;

use common::{home, no_limits, tcp_probe};
use ringfence_backend::{LaunchRequest, Stdio};
use ringfence_policy::{Builtin, FsRules, Limits, Origin, Policy, ProfileName, RuleKind};
use ringfence_windows::{spawn, LaunchSpec, Outcome};
use std::ffi::OsString;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A fresh workspace and an outside folder, both in the caller's profile.
struct Scene {
    root: PathBuf,
    ws: PathBuf,
    outside: PathBuf,
}

impl Scene {
    fn new(name: &str) -> Scene {
        common::require_windows_host("enforcement");
        let root = home().join(format!("rf-enforce-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ws = root.join("ws");
        let outside = root.join("outside");
        std::fs::create_dir_all(ws.join(".git").join("hooks")).unwrap();
        std::fs::write(ws.join(".git").join("config"), "[core]\n").unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("private.txt"), "outside secret").unwrap();
        std::fs::write(ws.join("secret.txt"), "hidden").unwrap();
        std::fs::write(ws.join("readme.txt"), "visible").unwrap();
        Scene { root, ws, outside }
    }

    /// The workspace profile's rules for this workspace, no network, and `limits`.
    fn policy(&self, limits: Limits) -> Policy {
        let mut fs = FsRules::default();
        fs.push(RuleKind::Read, PathBuf::from(r"C:\"), Builtin::ReadRoot { profile: ProfileName::Workspace });
        fs.push(RuleKind::Write, self.ws.clone(), Builtin::Workspace { profile: ProfileName::Workspace });
        for p in [".git/hooks", ".git/config", ".gitmodules", ".envrc", ".vscode"] {
            fs.push(RuleKind::DenyWrite, self.ws.join(p), Builtin::ProtectedPath);
        }
        fs.push(RuleKind::DenyRead, self.ws.join("secret.txt"), Origin::flag("--deny-read"));
        Policy { limits, ..common::policy(self.ws.clone(), home(), fs) }
    }

    /// Runs `program args` in the sandbox, in the workspace, with the gateway's `ports` open to
    /// it; returns the outcome and what it printed.
    fn run_with(&self, limits: Limits, program: &str, args: &[&str], ports: &[u16]) -> (Outcome, String) {
        let (reader, writer) = std::io::pipe().unwrap();
        let writer2 = writer.try_clone().unwrap();
        let request = LaunchRequest {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env: env(),
            cwd: self.ws.clone(),
            policy: self.policy(limits),
            stdio: [Stdio::Null, Stdio::Stream(writer.into()), Stdio::Stream(writer2.into())],
            terminal: false,
            egress: None,
            events: std::sync::Arc::new(|_| {}),
        };
        let spec = LaunchSpec { request, gateway_ports: ports.to_vec() };
        let sandbox = spawn(spec).unwrap_or_else(|e| panic!("spawn: {e}"));
        let out = common::read_in_background(reader);
        let outcome = sandbox.wait().unwrap();
        (outcome, out.join().unwrap())
    }

    fn cmd(&self, line: &str) -> (Outcome, String) {
        self.cmd_with(limits(), line)
    }

    fn cmd_with(&self, limits: Limits, line: &str) -> (Outcome, String) {
        self.run_with(limits, "cmd.exe", &["/d", "/c", line], &[])
    }

    fn powershell(&self, limits: Limits, script: &str, ports: &[u16]) -> (Outcome, String) {
        self.run_with(limits, "powershell.exe", &["-NoProfile", "-NonInteractive", "-Command", script], ports)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = ringfence_windows::forget_root(&self.ws);
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
    ["SystemRoot", "windir", "Path", "PATHEXT", "ComSpec", "SystemDrive", "PSModulePath"]
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect()
}

/// Runs a PowerShell script unsandboxed: the positive control of a network probe.
fn powershell_here(script: &str) -> String {
    let out = std::process::Command::new("powershell.exe")
        .args(["-NoProfile", "-NonInteractive", "-Command", script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A listener on 127.0.0.1 that this test owns, and what reached it.
struct Listener {
    tcp: TcpListener,
}

impl Listener {
    fn new() -> Listener {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        Listener { tcp }
    }

    /// A listener on the port after `other`'s (or the closest free one above it).
    fn next_to(other: &Listener) -> Listener {
        let start = other.port().saturating_add(1);
        let tcp = (start..start.saturating_add(100))
            .find_map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).ok())
            .unwrap_or_else(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap());
        tcp.set_nonblocking(true).unwrap();
        Listener { tcp }
    }

    fn port(&self) -> u16 {
        self.tcp.local_addr().unwrap().port()
    }

    /// What every connection that reached it sent, read now.
    fn received(&self) -> Vec<String> {
        common::received(&self.tcp)
    }
}

/// A PowerShell probe: a UDP datagram `tag` to `addr`.
fn udp_probe(addr: SocketAddr, tag: &str) -> String {
    format!(
        "try {{ $u = New-Object Net.Sockets.UdpClient; $b = [Text.Encoding]::ASCII.GetBytes('{tag}'); \
           [void]$u.Send($b, $b.Length, '{}', {}); $u.Close(); 'sent:{tag}' }} catch {{ 'closed:{tag}' }}; ",
        addr.ip(),
        addr.port()
    )
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn setup_is_complete() {
    common::require_windows_host("enforcement");
    let state = ringfence_windows::state();
    assert!(state.ready(), "{state}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn runs_as_the_sandbox_account_with_its_exit_code() {
    let s = Scene::new("exit");
    let (o, out) = s.cmd("whoami & exit 3");
    assert_eq!(o.exit_code, 3, "{out}");
    assert!(out.to_lowercase().contains(ringfence_windows::ACCOUNT_NAME), "{out}");
    assert!(o.cleanup_warnings.is_empty(), "{:?}", o.cleanup_warnings);
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn writes_inside_the_workspace_and_nowhere_else() {
    let s = Scene::new("write");
    let target = s.outside.join("planted.txt");
    let public = PathBuf::from(std::env::var_os("PUBLIC").unwrap_or_else(|| r"C:\Users\Public".into()))
        .join(format!("rf-{}.txt", std::process::id()));
    let line =
        format!("echo ok> inside.txt & echo x> \"{}\" & echo x> \"{}\" & echo ran", target.display(), public.display());
    let (_, out) = s.cmd(&line);
    let planted_public = public.exists();
    let _ = std::fs::remove_file(&public);
    assert!(out.contains("ran"), "{out}");
    assert_eq!(std::fs::read_to_string(s.ws.join("inside.txt")).unwrap().trim(), "ok", "{out}");
    assert!(!target.exists(), "wrote outside the workspace: {out}");
    assert!(!planted_public, "wrote to {}: {out}", public.display());
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn another_workspace_is_neither_writable_nor_readable() {
    let a = Scene::new("ws-a");
    let b = Scene::new("ws-b");
    // A run in A gives A its slot; a run in B then tries A.
    let (_, out) = a.cmd("type readme.txt & echo a> from-a.txt");
    assert!(out.contains("visible") && a.ws.join("from-a.txt").is_file(), "the control in A: {out}");
    let other = a.ws.join("readme.txt");
    let line =
        format!("type readme.txt & type \"{}\" & echo x> \"{}\"", other.display(), a.ws.join("from-b.txt").display());
    let (_, out) = b.cmd(&line);
    assert!(out.contains("visible"), "B reads its own workspace: {out}");
    assert_eq!(out.matches("visible").count(), 1, "B read A's workspace: {out}");
    assert!(!a.ws.join("from-b.txt").exists(), "B wrote into A: {out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn protected_paths_stay_read_only_and_pinned() {
    let s = Scene::new("protected");
    let (_, out) = s.cmd(
        r"echo ok> allowed.txt & echo evil> .git\hooks\pre-commit & echo [x]>> .git\config & move .git moved & mkdir .vscode\x & echo x> .envrc\y",
    );
    assert!(s.ws.join("allowed.txt").is_file(), "the control: {out}");
    assert!(!s.ws.join(".git").join("hooks").join("pre-commit").exists(), "{out}");
    assert_eq!(std::fs::read_to_string(s.ws.join(".git").join("config")).unwrap(), "[core]\n", "{out}");
    assert!(s.ws.join(".git").is_dir() && !s.ws.join("moved").exists(), "{out}");
    assert!(!s.ws.join(".vscode").exists(), "the placeholder is removed after the run");
    assert!(!s.ws.join(".envrc").exists());
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn hidden_and_other_users_files_are_unreadable() {
    let s = Scene::new("read");
    let private = s.outside.join("private.txt");
    let line = format!("type readme.txt & type secret.txt & type \"{}\"", private.display());
    let (_, out) = s.cmd(&line);
    assert!(out.contains("visible"), "{out}");
    assert!(!out.contains("hidden"), "read a denied file: {out}");
    assert!(!out.contains("outside secret"), "read the caller's profile: {out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn only_this_runs_gateway_port_is_reachable() {
    let s = Scene::new("net");
    let gateway = Listener::new();
    let neighbour = Listener::next_to(&gateway);
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let script = |tag: &str| {
        format!(
            "{}; {}; {}",
            tcp_probe(gateway.port(), &format!("gw-{tag}")),
            tcp_probe(neighbour.port(), &format!("nb-{tag}")),
            udp_probe(udp_addr, &format!("udp-{tag}"))
        )
    };
    // The control, unsandboxed: the probes reach all three listeners.
    let here = powershell_here(&script("host"));
    assert!(here.contains("open:nb-host") && here.contains("sent:udp-host"), "the probe itself fails: {here}");
    assert_eq!(neighbour.received(), vec!["nb-host".to_string()], "{here}");
    assert_eq!(gateway.received(), vec!["gw-host".to_string()], "{here}");
    let mut buf = [0u8; 64];
    assert_eq!(udp.recv(&mut buf).map(|n| buf[..n].to_vec()).ok(), Some(b"udp-host".to_vec()));

    // Sandboxed, with the gateway's port opened to this run.
    let (_, out) = s.powershell(limits(), &script("run"), &[gateway.port()]);
    assert!(out.contains("open:gw-run"), "this run's gateway port must be reachable: {out}");
    assert_eq!(gateway.received(), vec!["gw-run".to_string()], "{out}");
    assert!(neighbour.received().is_empty(), "a loopback listener next to the gateway was reached: {out}");
    assert!(udp.recv(&mut buf).is_err(), "a loopback UDP listener was reached: {out}");

    // Another run, without a gateway: the same port is closed to it.
    let (_, out) = s.powershell(limits(), &script("other"), &[]);
    assert!(out.contains("closed:gw-other"), "another run reached this gateway's port: {out}");
    assert!(gateway.received().is_empty(), "{out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn direct_connections_out_and_dns_are_blocked() {
    let s = Scene::new("internet");
    // A DNS query for example.com, by hand: a DNS server answers it, so a reply proves a path.
    let query =
        "[byte[]](0x12,0x34,1,0,0,1,0,0,0,0,0,0,7,0x65,0x78,0x61,0x6d,0x70,0x6c,0x65,3,0x63,0x6f,0x6d,0,0,1,0,1)";
    let script = format!(
        "try {{ $c = New-Object Net.Sockets.TcpClient; $c.Connect('1.1.1.1', 443); $c.Close(); 'tcp:open' }} \
         catch {{ 'tcp:closed' }}; \
         try {{ $u = New-Object Net.Sockets.UdpClient; $u.Client.ReceiveTimeout = 3000; $q = {query}; \
           [void]$u.Send($q, $q.Length, '8.8.8.8', 53); $e = $null; [void]$u.Receive([ref]$e); 'dns:open' }} \
         catch {{ 'dns:closed' }}"
    );
    let here = powershell_here(&script);
    assert!(here.contains("tcp:open") && here.contains("dns:open"), "the control needs the internet: {here}");
    let (_, out) = s.powershell(limits(), &script, &[]);
    assert!(out.contains("tcp:closed"), "reached the internet directly: {out}");
    assert!(out.contains("dns:closed"), "sent DNS directly: {out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn nothing_outlives_the_run() {
    let s = Scene::new("outlive");
    // A background process that proves it started, then outlives the command by 4 seconds.
    let script = "Start-Process -NoNewWindow powershell -ArgumentList '-NoProfile','-Command',\
                  'Set-Content started.txt x; Start-Sleep 4; Set-Content late.txt x'; \
                  $n = 0; while (-not (Test-Path started.txt) -and $n -lt 300) { Start-Sleep -Milliseconds 100; $n++ }; \
                  'main done'";
    let (o, out) = s.powershell(limits(), script, &[]);
    assert_eq!(o.exit_code, 0, "{out}");
    assert!(out.contains("main done"), "{out}");
    assert!(s.ws.join("started.txt").exists(), "the background process never ran: {out}");
    std::thread::sleep(Duration::from_secs(8));
    assert!(!s.ws.join("late.txt").exists(), "a background process outlived the run");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn the_timeout_kills_the_job() {
    let s = Scene::new("timeout");
    let mut l = limits();
    l.timeout = Some(ringfence_policy::HumanDuration(Duration::from_secs(5)));
    let start = Instant::now();
    let (o, out) = s.powershell(l, "'started'; Start-Sleep 60; 'finished'", &[]);
    assert!(out.contains("started"), "{out}");
    assert!(!out.contains("finished"), "{out}");
    assert!(o.timed_out, "{o:?}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn the_process_limit_holds() {
    let s = Scene::new("pids");
    // Six nested shells, each printing its level before starting the next.
    std::fs::write(
        s.ws.join("nest.cmd"),
        "@echo off\r\necho level%1\r\nset /a next=%1+1\r\nif %1 LSS 6 cmd /d /c \"%~f0\" %next%\r\n",
    )
    .unwrap();
    let mut l = limits();
    // The job admits four processes (a console host may count as one).
    l.pids = Some(4);
    let (_, out) = s.cmd_with(l, "nest.cmd 1");
    assert!(out.contains("level1"), "the command never ran: {out}");
    assert!(!out.contains("level6"), "a sixth process started under a limit of four: {out}");
    let (_, out) = s.cmd("nest.cmd 1");
    assert!(out.contains("level6"), "the control, without the limit: {out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn the_memory_limit_holds() {
    let s = Scene::new("memory");
    let mut l = limits();
    l.memory = Some(ringfence_policy::ByteSize(256 << 20));
    let script = "'ran'; $small = New-Object byte[] (16MB); 'small ok'; $a = New-Object byte[] (1GB); 'allocated'";
    let (o, out) = s.powershell(l, script, &[]);
    assert!(out.contains("ran") && out.contains("small ok"), "the command never ran: {out}");
    assert!(!out.contains("allocated"), "{out}");
    assert!(o.memory_limit_hit || o.exit_code != 0, "{o:?}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn nul_is_writable() {
    let s = Scene::new("nul");
    let (o, out) = s.cmd("echo x> NUL && copy readme.txt NUL && echo nul-ok");
    assert!(out.contains("nul-ok"), "{out}");
    assert_eq!(o.exit_code, 0, "{out}");
    // From PowerShell too, as build scripts do.
    let (_, out) = s.powershell(limits(), "cmd /d /c 'echo x> NUL'; \"exit:$LASTEXITCODE\"", &[]);
    assert!(out.contains("exit:0") && !out.to_lowercase().contains("denied"), "{out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn the_profile_is_the_sandbox_accounts_own() {
    let s = Scene::new("profile");
    let script = "$env:USERPROFILE; [Environment]::GetFolderPath('LocalApplicationData'); \
                  (Get-Item HKCU:\\Software).Name; 'ran'";
    let (o, out) = s.powershell(limits(), script, &[]);
    assert!(out.contains("ran"), "{out}");
    assert_eq!(o.exit_code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let profile = Path::new(lines[0].trim());
    assert!(profile.is_dir(), "the profile exists: {out}");
    assert!(lines[0].contains(ringfence_windows::ACCOUNT_NAME), "{out}");
    assert!(lines[1].starts_with(lines[0].trim()), "known folders are in it: {out}");
}

/// git in the workspace: the caller's repository works for the sandbox account, and one the
/// command creates is the caller's afterwards (git accepts it outside the sandbox).
#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn git_works_both_ways() {
    let s = Scene::new("git");
    std::fs::remove_dir_all(s.ws.join(".git")).unwrap();
    let git =
        |dir: &Path, args: &[&str]| std::process::Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    let (o, out) = s.cmd("git init -q & git status & echo ran");
    assert!(out.contains("ran"), "{out}");
    assert!(out.contains("No commits yet"), "git init and status in the sandbox: {out}");
    assert_eq!(o.exit_code, 0, "{out}");
    let host = git(&s.ws, &["status"]);
    assert!(host.status.success(), "the user's git refuses the repository: {}", String::from_utf8_lossy(&host.stderr));
    // The caller's own repository, used inside.
    let sub = s.ws.join("mine");
    std::fs::create_dir(&sub).unwrap();
    assert!(git(&sub, &["init", "-q"]).status.success());
    let (_, out) = s.cmd("cd mine & git status & echo ran");
    assert!(out.contains("ran") && out.contains("No commits yet"), "dubious ownership inside: {out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn environment_and_temp_are_as_given() {
    let s = Scene::new("env");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut env = env();
    env.push(("RF_X".into(), "v a l".into()));
    let request = LaunchRequest {
        program: "cmd.exe".into(),
        args: ["/d", "/c", "echo %RF_X% %TEMP%"].iter().map(OsString::from).collect(),
        env,
        cwd: s.ws.clone(),
        policy: s.policy(limits()),
        stdio: [Stdio::Null, Stdio::Stream(writer.into()), Stdio::Null],
        terminal: false,
        egress: None,
        events: std::sync::Arc::new(|_| {}),
    };
    let spec = LaunchSpec { request, gateway_ports: vec![] };
    let out = common::read_in_background(reader);
    spawn(spec).unwrap().wait().unwrap();
    let out = out.join().unwrap();
    assert!(out.contains("v a l"), "{out}");
    assert!(out.contains("ringfence-"), "TEMP is the run's own folder: {out}");
}

#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn the_runs_acl_entries_are_removed() {
    let s = Scene::new("acl");
    let (_, out) = s.cmd("echo x> f.txt & echo ran");
    assert!(out.contains("ran") && s.ws.join("f.txt").is_file(), "{out}");
    for path in [s.ws.clone(), s.ws.join(".git").join("hooks"), s.ws.join(".git").join("config")] {
        let out = std::process::Command::new("icacls").arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("S-1-5-5-"), "an entry for a logon SID was left on {}: {text}", path.display());
    }
}

/// The per-run cost on a big tree: after the first run gives the workspace its slot, a run
/// touches no file in it. Prints what it measured.
#[test]
#[ignore = "needs a real Windows host after `ringfence setup` (scripts/test-windows.ps1)"]
fn a_large_workspace_starts_in_under_a_second_after_the_first_run() {
    let s = Scene::new("large");
    for d in 0..100 {
        let dir = s.ws.join(format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..1000 {
            std::fs::File::create(dir.join(format!("f{f:04}.txt"))).unwrap().write_all(b"x").unwrap();
        }
    }
    let time = || {
        let t = Instant::now();
        let (o, out) = s.cmd("echo ran> d099\\last.txt");
        assert_eq!(o.exit_code, 0, "{out}");
        t.elapsed()
    };
    let first = time();
    let later: Vec<Duration> = (0..5).map(|_| time()).collect();
    assert!(s.ws.join("d099").join("last.txt").is_file(), "the command wrote deep in the tree");
    eprintln!("100,000 files: first run {first:?}; later runs {later:?}");
    let worst = later.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(1), "a run took {worst:?} after the first ({first:?})");
}
