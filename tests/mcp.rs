//! `ringfence mcp` end to end: a real MCP client this project did not write (the official
//! Python SDK, `mcp`, in a venv built on first use) drives the real binary over stdio, as root
//! and as uid 65534; what the sandbox refused and what it killed is checked from the host.
//! Protocol robustness and the `ringfence run` lifeline are driven by hand.

#![cfg(target_os = "linux")]

mod common;
mod netlab;

use common::*;
use netlab::lab;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// The client script, run by the SDK's Python.
const CLIENT: &str = include_str!("mcp_client.py");

/// The Python of a venv holding the official MCP SDK: `RINGFENCE_MCP_PYTHON` when set, else a
/// venv this suite builds once under the target folder (`pip install mcp`).
fn sdk_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(python) = std::env::var_os("RINGFENCE_MCP_PYTHON") {
            return PathBuf::from(python);
        }
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv");
        let python = venv.join("bin/python");
        let has_sdk = |p: &PathBuf| Command::new(p).args(["-c", "import mcp"]).status().is_ok_and(|s| s.success());
        if !has_sdk(&python) {
            let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().unwrap();
            assert!(made.success(), "python3 -m venv {} failed", venv.display());
            let pip = Command::new(&python).args(["-m", "pip", "install", "-q", "mcp"]).status().unwrap();
            assert!(pip.success(), "pip install mcp failed\nhelp: set RINGFENCE_MCP_PYTHON to a Python with `mcp`");
        }
        python
    })
}

/// The client's `@@name JSON` lines.
type Report = BTreeMap<String, Value>;

/// Runs the client's `scenario` against `server` (an argv), on the host as the test's own
/// identity, in `env`'s workspace.
fn client(env: &Env, scenario: &str, server: Vec<String>, extra: Value) -> (Report, String) {
    let script = env.root.join("mcp_client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let mut cfg = json!({
        "server": server,
        "server_log": path_str(&env.root.join("server.log")),
        "env": {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": path_str(&env.home), "LANG": "C.UTF-8"},
    });
    cfg.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let mut cmd = Command::new(sdk_python());
    cmd.arg(&script).arg(scenario).arg(cfg.to_string()).current_dir(&env.ws).env_clear().env("PATH", "/usr/bin:/bin");
    let out = bounded_output(cmd, Duration::from_secs(120));
    let report = stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("@@"))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), serde_json::from_str(v).unwrap()))
        .collect();
    let server_log = std::fs::read_to_string(env.root.join("server.log")).unwrap_or_default();
    let log = format!(
        "--- client stdout\n{}\n--- client stderr\n{}\n--- server stderr\n{server_log}",
        stdout(&out),
        stderr(&out)
    );
    (report, log)
}

/// `ringfence mcp ARGS` as `env`'s identity, as an argv.
fn server(env: &Env, args: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    if env.who == Who::Nobody {
        argv.extend(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"].map(String::from));
    }
    argv.push(path_str(binary()).into());
    argv.extend(["mcp", "-C", path_str(&env.ws)].map(String::from));
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// The structured result of a `run_command` entry of the report.
fn result<'a>(report: &'a Report, name: &str, log: &str) -> &'a Value {
    let entry = report.get(name).unwrap_or_else(|| panic!("no `{name}` in the report\n{log}"));
    &entry["result"]
}

#[test]
fn the_tools_run_commands_and_report_how_they_ended() {
    for who in identities() {
        let env = Env::new(who);
        std::fs::create_dir_all(env.ws.join("sub")).unwrap();
        env.chown_all();
        let (report, log) = client(&env, "tour", server(&env, &[]), json!({}));
        assert_eq!(report["init"]["name"], "ringfence", "{log}");
        assert!(report["init"]["instructions"].as_str().unwrap().contains("widen"), "{log}");
        let tools: Vec<&str> =
            report["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(tools, ["run_command", "sandbox_policy"], "{log}");
        // The arguments are these and no others: nothing that names a policy.
        let schema = &report["tools"][0]["schema"];
        let mut props: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        props.sort();
        assert_eq!(props, ["argv", "command", "cwd", "stdin", "timeout_s"], "{log}");
        assert_eq!(schema["additionalProperties"], false, "{log}");

        let ok = result(&report, "ok", &log);
        assert_eq!((ok["exit_code"].as_i64(), report["ok"]["is_error"].as_bool()), (Some(0), Some(false)), "{log}");
        assert_eq!((ok["stdout"].as_str(), ok["stderr"].as_str()), (Some("hello\n"), Some("oops\n")), "{log}");
        assert_eq!(ok["denials"], json!([]), "{log}");
        let failed = result(&report, "exit3", &log);
        assert_eq!((failed["exit_code"].as_i64(), report["exit3"]["is_error"].as_bool()), (Some(3), Some(true)));
        assert_eq!(result(&report, "stdin", &log)["stdout"], "PIPED INPUT", "{log}");
        assert_eq!(result(&report, "cwd", &log)["stdout"], format!("{}/sub\n", env.ws.display()), "{log}");
        // A folder outside the workspace is refused before anything runs.
        assert_eq!(report["cwd_escape"]["is_error"], true, "{log}");
        assert!(report["cwd_escape"]["text"].as_str().unwrap().contains("inside the workspace"), "{log}");

        let timed = result(&report, "timeout", &log);
        assert_eq!(timed["reason"], "timeout", "{log}");
        assert!(report["timeout"]["client_seconds"].as_f64().unwrap() < 15.0, "{log}");
        assert_eq!(timed["denials"][0]["limit"], "timeout", "{log}");

        let big = result(&report, "big", &log);
        assert_eq!((big["stdout_bytes"].as_u64(), big["stdout_truncated"].as_bool()), (Some(200_004), Some(true)));
        let text = big["stdout"].as_str().unwrap();
        assert!(text.ends_with("xEND\n") && text.starts_with("xxx") && text.len() < 40_000, "{}", text.len());

        let policy = report["policy"].as_str().unwrap();
        assert!(policy.contains(&format!("Workspace: {}", env.ws.display())), "{policy}");
        assert!(policy.contains("Profile: workspace") && policy.contains("Network:"), "{policy}");
    }
}

#[test]
fn a_refused_host_is_reported_with_its_flag_and_tool_arguments_cannot_widen_the_policy() {
    let Some(lab) = lab() else { return };
    for who in identities() {
        let env = Env::new(who);
        let m = marker("mcpnet");
        let enter = lab.ringfence(&env, &["mcp", "-C", path_str(&env.ws), "--allow-host", "allowed.test"]);
        let argv: Vec<String> = std::iter::once(enter.get_program())
            .chain(enter.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let cfg = json!({"allowed": "allowed.test", "denied": "other.test", "marker": m});
        let (report, log) = client(&env, "network", argv, cfg);

        // The positive control: the host the server allows is reached.
        assert_eq!(result(&report, "allowed", &log)["exit_code"], 0, "{log}");
        let hosts: Vec<String> = lab.requests_with(&m).iter().map(|r| r.host.clone()).collect();
        assert!(hosts.iter().any(|h| h == "allowed.test"), "{hosts:?}\n{log}");

        let denied = result(&report, "denied", &log);
        assert_ne!(denied["exit_code"], 0, "{log}");
        let denial = &denied["denials"][0];
        assert_eq!((denial["kind"].as_str(), denial["host"].as_str()), (Some("network"), Some("other.test")), "{log}");
        assert_eq!(denial["allow_flag"], "--allow-host other.test", "{log}");
        assert_eq!(denial["allow_config"], "[network] allow = [\"other.test\"]", "{log}");
        assert!(report["denied"]["text"].as_str().unwrap().contains("--allow-host other.test"), "{log}");

        // Arguments that would name more are refused before anything runs.
        let widen = report["widen_args"].as_object().unwrap();
        assert_eq!(widen.len(), 6, "{log}");
        for (arg, outcome) in widen {
            assert_eq!(
                (outcome["is_error"].as_bool(), &outcome["result"]),
                (Some(true), &Value::Null),
                "{arg}: {outcome}"
            );
            assert!(outcome["text"].as_str().unwrap().contains(&format!("unknown field `{arg}`")), "{outcome}");
        }
        // Configs the agent writes: the project's is protected (and could only narrow), the
        // user's is outside every writable root.
        assert_ne!(result(&report, "widen_project", &log)["exit_code"], 0, "{log}");
        assert_ne!(result(&report, "widen_user", &log)["exit_code"], 0, "{log}");
        assert!(!env.user_config_path().exists() && !env.project_config_path().exists());
        assert_eq!(result(&report, "denied_again", &log)["denials"][0]["host"], "other.test", "{log}");
        // The far side never saw the refused host.
        let hosts: Vec<String> = lab.requests_with(&m).iter().map(|r| r.host.clone()).collect();
        assert!(hosts.iter().all(|h| h == "allowed.test"), "{hosts:?}");
        assert_eq!(hosts.len(), 1, "{hosts:?}");
    }
}

#[test]
fn a_limit_hit_and_a_file_moved_aside_are_denials() {
    for who in identities() {
        let env = Env::new(who);
        // A memory cap needs a cgroup: root's on cgroup v1 here (see tests/security_limits.rs).
        let memory = who == Who::Me && is_root() && Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
        let args: &[&str] = if memory { &["--memory", "64M"] } else { &[] };
        let (report, log) = client(&env, "refusals", server(&env, args), json!({"memory": memory}));
        if memory {
            let hit = result(&report, "memory", &log);
            assert_eq!(hit["status"], 123, "{log}");
            let denial = &hit["denials"][0];
            assert_eq!((denial["kind"].as_str(), denial["limit"].as_str()), (Some("limit"), Some("memory")), "{log}");
            assert_eq!(denial["allow_flag"], "--memory 128M", "{log}");
            // The control: the same program under the limit runs.
            assert_eq!(result(&report, "small", &log)["stdout"], "8388608\n", "{log}");
        }

        let envrc = result(&report, "envrc", &log);
        let denial = &envrc["denials"][0];
        assert_eq!(denial["kind"], "policy", "{log}");
        assert_eq!(denial["path"], path_str(&env.ws.join("sub/.envrc")), "{log}");
        assert_eq!(denial["allow_flag"], Value::Null, "{log}");
        // Host side: the file is not where direnv would run it.
        assert!(!env.ws.join("sub/.envrc").exists());
        assert!(env.ws.join("sub/.envrc.ringfence-quarantined").exists());
    }
}

#[test]
fn cancelling_a_command_kills_its_whole_process_tree() {
    for who in identities() {
        let env = Env::new(who);
        let m = sleep_marker();
        let (report, log) = client(&env, "cancel", server(&env, &[]), json!({"marker": m}));
        // Progress came while the command ran (the positive control: it was running).
        let progress = report["progress"].as_array().unwrap_or_else(|| panic!("{log}"));
        assert_eq!(progress.len(), 1, "{log}");
        assert!(!progress[0]["running"].as_array().unwrap().is_empty(), "{log}");
        assert!(progress[0]["message"].as_str().unwrap().contains("running for"), "{log}");
        let gone = report["gone_after"].as_f64().unwrap_or_else(|| panic!("the command outlived its cancel\n{log}"));
        assert!(gone < 15.0, "{gone}");
        assert!(pids_with_arg(&m).is_empty());
        assert_eq!(result(&report, "still_serving", &log)["stdout"], "alive\n", "{log}");
    }
}

#[test]
fn a_client_that_disconnects_mid_command_leaves_no_process() {
    for who in identities() {
        let env = Env::new(who);
        let m = sleep_marker();
        let tag = format!("RF_MCP_SERVER={}", marker("srv"));
        let (report, log) = client(&env, "disconnect", server(&env, &["--env", &tag]), json!({"marker": m}));
        assert!(!report["running"].as_array().unwrap_or_else(|| panic!("{log}")).is_empty(), "{log}");
        wait_until("the command to die with its client", Duration::from_secs(30), || pids_with_arg(&m).is_empty());
        wait_until("the server and its runs to end", Duration::from_secs(30), || pids_with_arg(&tag).is_empty());
    }
}

/// A server on raw pipes, for what no well-behaved client sends.
struct RawServer {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl RawServer {
    fn start(env: &Env) -> RawServer {
        let mut cmd = env.command();
        cmd.args(["mcp", "-C", path_str(&env.ws)]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = RawServer { child, lines };
        server.send(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#);
        assert_eq!(server.reply()["id"], 1);
        server.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        server
    }

    fn send(&mut self, line: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next message from the server, within a bound.
    fn reply(&self) -> Value {
        let line = self.lines.recv_timeout(Duration::from_secs(30)).expect("no reply from the server within 30s");
        serde_json::from_str(&line).unwrap()
    }
}

#[test]
fn hostile_protocol_input_gets_errors_and_never_a_hang() {
    for who in identities() {
        let env = Env::new(who);
        let mut server = RawServer::start(&env);
        // Not JSON at all: skipped, as the official SDKs do (a reply could start an error
        // storm with a peer that echoes), and the connection goes on.
        server.send(b"{this is not json");
        server.send(b"\xff\xfe garbage");
        // JSON that is no JSON-RPC message: Invalid Request.
        server.send(br#"{"hello":"world"}"#);
        assert_eq!(server.reply()["error"]["code"], -32600);
        server.send(br#"{"jsonrpc":"2.0","id":5,"method":"no/such/method"}"#);
        let unknown = server.reply();
        assert_eq!((unknown["id"].as_i64(), unknown["error"]["code"].as_i64()), (Some(5), Some(-32601)));
        // A message past the 16 MiB line cap is dropped without being held.
        let mut huge = br#"{"jsonrpc":"2.0","id":6,"method":"ping","params":{"pad":""#.to_vec();
        huge.extend(std::iter::repeat_n(b'x', 17 << 20));
        huge.extend(br#""}}"#);
        server.send(&huge);
        server.send(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"echo still here"}}}"#);
        let call = server.reply();
        assert_eq!(call["id"], 7, "{call}");
        assert_eq!(call["result"]["structuredContent"]["stdout"], "still here\n", "{call}");
        // A tool call with arguments of the wrong shape is refused, and runs nothing.
        server.send(br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"run_command","arguments":{"command":["x"]}}}"#);
        let wrong = server.reply();
        assert_eq!((&wrong["result"]["isError"], &wrong["result"]["structuredContent"]), (&json!(true), &Value::Null));
        // Closing the input ends the server cleanly.
        drop(server.child.stdin.take());
        let status = wait_within(&mut server.child, Duration::from_secs(30));
        assert_eq!(status.code(), Some(0));
    }
}

/// `ringfence run --stdin-lifeline -- sleep MARKER`, with its input (none) sent.
fn lifeline_run(env: &Env, m: &str) -> std::process::Child {
    let mut cmd = env.command();
    cmd.args(["run", "--no-pty", "--stdin-lifeline", "--", "sleep", m]).stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"0\n").unwrap();
    wait_until("the command to start", Duration::from_secs(30), || !pids_with_arg(m).is_empty());
    child
}

#[test]
fn a_run_dies_with_its_lifeline_and_with_its_ringfence() {
    for who in identities() {
        let env = Env::new(who);
        // Killing `ringfence run` (what the server does to a run that won't end) ends its
        // sandbox: nothing of it is left on the host.
        let m = sleep_marker();
        let mut run = lifeline_run(&env, &m);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.id() as i32), nix::sys::signal::SIGKILL).unwrap();
        let _ = wait_within(&mut run, Duration::from_secs(10));
        wait_until("the sandbox to die with its ringfence", Duration::from_secs(10), || pids_with_arg(&m).is_empty());

        // Closing the lifeline kills the run, which ringfence reports as killed.
        let m = sleep_marker();
        let mut run = lifeline_run(&env, &m);
        drop(run.stdin.take());
        let status = wait_within(&mut run, Duration::from_secs(20));
        assert_ne!(status.code(), Some(0));
        assert!(pids_with_arg(&m).is_empty());
    }
}

#[test]
fn the_lifeline_carries_the_input_and_refuses_bad_framing() {
    for who in identities() {
        let env = Env::new(who);
        // The input, then the lifeline held open until the command has ended.
        let mut cmd = env.command();
        cmd.args(["run", "--no-pty", "--stdin-lifeline", "--", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut run = cmd.spawn().unwrap();
        let mut lifeline = run.stdin.take().unwrap();
        lifeline.write_all(b"5\nhello and not this").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut run.stdout.take().unwrap(), &mut out).unwrap();
        assert_eq!(wait_within(&mut run, DEADLINE).code(), Some(0));
        assert_eq!(out, "hello");
        drop(lifeline);
        for bad in [&b"five\nhello"[..], b"99999999999\n", b"10\nshort"] {
            let mut cmd = env.command();
            cmd.args(["run", "--no-pty", "--stdin-lifeline", "--", "cat"]);
            let out = output_within(&mut cmd, Some(bad.to_vec()), DEADLINE);
            assert_code(&out, 125);
            assert!(stderr(&out).contains("--stdin-lifeline"), "{}", stderr(&out));
        }
    }
}

#[test]
fn a_server_killed_mid_command_leaves_no_process() {
    for who in identities() {
        let env = Env::new(who);
        let m = sleep_marker();
        let mut server = RawServer::start(&env);
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"run_command","arguments":{{"argv":["sleep","{m}"]}}}}}}"#
        );
        server.send(call.as_bytes());
        // The control: the command runs.
        wait_until("the command to start", Duration::from_secs(30), || !pids_with_arg(&m).is_empty());
        let records = PathBuf::from(format!("/tmp/ringfence-mcp-{}-0", server.child.id()));
        server.child.kill().unwrap();
        let _ = server.child.wait();
        wait_until("the command to die with the server", Duration::from_secs(20), || pids_with_arg(&m).is_empty());
        // A server killed so can't remove its records folder (said in the docs): the test does.
        let _ = std::fs::remove_dir_all(records);
    }
}

#[test]
fn a_server_told_to_stop_ends_its_commands_and_cleans_up() {
    for who in identities() {
        let env = Env::new(who);
        let m = sleep_marker();
        let mut server = RawServer::start(&env);
        let records = PathBuf::from(format!("/tmp/ringfence-mcp-{}-0", server.child.id()));
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"run_command","arguments":{{"argv":["sleep","{m}"]}}}}}}"#
        );
        server.send(call.as_bytes());
        wait_until("the command to start", Duration::from_secs(30), || !pids_with_arg(&m).is_empty());
        // The control: the server's records folder exists while it runs.
        assert!(records.is_dir(), "{}", records.display());
        let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
        // The call still in flight gets its answer: the command was ended.
        let reply = server.reply();
        assert_eq!(reply["result"]["structuredContent"]["reason"], "cancelled", "{reply}");
        let status = wait_within(&mut server.child, Duration::from_secs(30));
        assert_eq!(status.code(), Some(0));
        assert!(pids_with_arg(&m).is_empty());
        assert!(!records.exists());
    }
}
