//! The built-in agent profiles (`--profile agent:NAME`), end to end, as root and as uid 65534:
//! each loads and `explain` shows what it opens; each shows the sandbox its own agent's login
//! and no other agent's; and a stand-in agent (a script that calls its API over HTTPS on the
//! test internet, keeps state and starts child commands) runs confined whole.

#![cfg(target_os = "linux")]

mod common;
mod netlab;

use common::*;
use netlab::lab;
use std::path::{Path, PathBuf};

/// Each agent, the API hosts its profile must allow, and its state folders.
const AGENTS: &[(&str, &[&str], &[&str])] = &[
    ("claude", &["api.anthropic.com", "platform.claude.com", "claude.ai"], &[".claude"]),
    ("codex", &["api.openai.com", "chatgpt.com", "auth.openai.com"], &[".codex"]),
    (
        "gemini",
        &["generativelanguage.googleapis.com", "cloudcode-pa.googleapis.com", "oauth2.googleapis.com"],
        &[".gemini"],
    ),
    ("aider", &["api.openai.com", "api.anthropic.com", "openrouter.ai"], &[".aider"]),
    ("opencode", &["models.dev", "api.anthropic.com"], &[".local/share/opencode", ".local/state/opencode"]),
];

/// Each agent's login file, below $HOME.
const LOGINS: &[(&str, &str)] = &[
    ("claude", ".claude/.credentials.json"),
    ("codex", ".codex/auth.json"),
    ("gemini", ".gemini/oauth_creds.json"),
    ("aider", ".aider/oauth-keys.env"),
    ("opencode", ".local/share/opencode/auth.json"),
];

#[test]
fn every_agent_profile_loads_and_explain_shows_what_it_opens() {
    for who in identities() {
        let env = Env::new(who);
        let list = env.ringfence_within(&["profile", "list"]);
        assert_code(&list, 0);
        let names: Vec<String> = AGENTS.iter().map(|(name, ..)| format!("agent:{name}")).collect();
        assert_eq!(stdout(&list).lines().collect::<Vec<_>>(), names);
        for (name, hosts, folders) in AGENTS {
            let profile = format!("agent:{name}");
            let out = env.ringfence_within(&["explain", "--profile", &profile]);
            assert_code(&out, 0);
            let text = stdout(&out);
            assert!(text.starts_with(&format!("Profile: {profile} ")), "{text}");
            for host in *hosts {
                let row = text.lines().find(|l| l.trim_start().starts_with(&format!("{host} "))).unwrap_or("");
                assert!(row.contains(&format!("from built-in {profile} profile, line")), "{host}: {text}");
            }
            let created = text.lines().find(|l| l.contains("the agent's state, writable, created before")).unwrap();
            for folder in *folders {
                assert!(created.contains(path_str(&env.home.join(folder))), "{folder}: {created}");
            }
            // Everything else stays at the workspace profile's defaults.
            let base = stdout(&env.ringfence_within(&["explain"]));
            assert!(!base.contains(hosts[0]) && !base.contains("the agent's state"), "{base}");
            // The profile is data: `profile show` prints it, and it loads as a user config.
            let shown = env.ringfence_within(&["profile", "show", &profile]);
            assert_code(&shown, 0);
            assert!(stdout(&shown).contains("[network]") && stdout(&shown).contains(hosts[0]));
        }
        let unknown = env.ringfence_within(&["explain", "--profile", "agent:nope"]);
        assert_ne!(unknown.status.code(), Some(0));
        assert!(stderr(&unknown).contains("agent:claude"), "{}", stderr(&unknown));
    }
}

/// Plants every agent's login file in `env`'s home, each with its own secret.
fn plant_logins(env: &Env) -> Vec<(&'static str, PathBuf, String)> {
    let planted: Vec<_> =
        LOGINS.iter().map(|(agent, file)| (*agent, env.home.join(file), marker(&format!("secret{agent}")))).collect();
    for (_, path, secret) in &planted {
        env.write(path, secret);
    }
    planted
}

#[test]
fn an_agent_profile_shows_its_own_login_and_no_other_agents() {
    for who in identities() {
        let env = Env::new(who);
        let planted = plant_logins(&env);
        let script: String =
            planted.iter().map(|(agent, path, _)| format!("echo @@{agent} $(cat {});", path.display())).collect();
        // The control: on the host, as the same identity, every login is readable.
        let host = output_within(&mut env.host_sh(&script), None, DEADLINE);
        for (_, _, secret) in &planted {
            assert!(stdout(&host).contains(secret.as_str()), "{}", stdout(&host));
        }
        // The workspace profile shows none; each agent's profile shows its own alone.
        let profiles = std::iter::once(None).chain(LOGINS.iter().map(|(agent, _)| Some(*agent)));
        for profile in profiles {
            let flag = profile.map(|agent| format!("agent:{agent}")).unwrap_or_else(|| "workspace".into());
            let out = env.sh_within(&["--profile", &flag], &script);
            assert_code(&out, 0);
            for (agent, _, secret) in &planted {
                let shown = stdout(&out).contains(secret.as_str());
                assert_eq!(shown, profile == Some(*agent), "{flag} and {agent}'s login:\n{}", stdout(&out));
            }
        }
    }
}

#[test]
fn an_agent_refreshes_its_own_login_and_cannot_touch_another() {
    for who in identities() {
        let env = Env::new(who);
        let planted = plant_logins(&env);
        let own = &planted[0].1;
        let other = &planted[1];
        let script = format!("echo refreshed > {} && echo stolen > {}", own.display(), other.1.display());
        let out = env.sh_within(&["--profile", "agent:claude"], &script);
        assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(own).unwrap(), "refreshed\n");
        assert_eq!(std::fs::read_to_string(&other.1).unwrap(), other.2);
    }
}

/// The stand-in agent: what a coding agent does, in Python. argv: the lab's CA, a marker, the
/// state folder, its API host, and a host its profile does not allow.
const STAND_IN: &str = r#"
import json, os, ssl, subprocess, sys, urllib.request
ca, marker, state, api, other = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
def get(host):
    try:
        with urllib.request.urlopen(f"https://{host}/v1/{marker}", context=ctx, timeout=10) as r:
            return r.read().decode()
    except Exception as e:
        return "ERR " + repr(e)
print("@@api", get(api))
print("@@other", get(other))
path = os.path.join(state, "sessions.json")
runs = json.load(open(path))["runs"] if os.path.exists(path) else 0
json.dump({"runs": runs + 1}, open(path, "w"))
child = subprocess.run(["sh", "-c", f"echo started-by-agent > {state}/child.txt && echo ok"], capture_output=True, text=True)
print("@@child", child.stdout.strip())
try:
    open(os.path.join(state, "settings.json"), "w").write('{"hooks": "planted"}')
    print("@@settings written")
except OSError as e:
    print("@@settings refused", e.errno)
"#;

#[test]
fn a_stand_in_agent_runs_confined_whole() {
    let Some(lab) = lab() else { return };
    for who in identities() {
        let env = Env::new(who);
        let state = env.home.join(".claude");
        let planted = plant_logins(&env);
        let m = marker("agent");
        let argv = [path_str(&lab.ca_pem), m.as_str(), path_str(&state), "api.anthropic.com", "api.openai.com"];
        for run in 1..=2 {
            let out = lab.run_py(&env, &[], &["--profile", "agent:claude"], STAND_IN, &argv);
            assert_code(&out, 0);
            let text = stdout(&out);
            assert!(
                text.contains(&format!("@@api hello from 192.0.2.13 host=api.anthropic.com tls=true path=/v1/{m}")),
                "{text}"
            );
            assert!(text.contains("@@other ERR"), "{text}");
            assert!(text.contains("@@child ok") && text.contains("@@settings refused"), "{text}\n{}", stderr(&out));
            // Host side: its state persists from run to run; its settings were not written.
            let sessions = std::fs::read_to_string(state.join("sessions.json")).unwrap();
            assert_eq!(sessions, format!("{{\"runs\": {run}}}"));
            assert_eq!(std::fs::read_to_string(state.join("child.txt")).unwrap(), "started-by-agent\n");
            assert!(!state.join("settings.json").exists());
            // The secret list still holds for what it and its children read.
            for (agent, _, secret) in &planted[1..] {
                assert!(!text.contains(secret.as_str()), "{agent}'s login leaked: {text}");
            }
        }
        // The far side saw the API host alone.
        let hosts: Vec<String> = lab.requests_with(&m).iter().map(|r| r.host.clone()).collect();
        assert_eq!(hosts, ["api.anthropic.com", "api.anthropic.com"]);
        assert!(!lab.hellos_with("api.anthropic.com").is_empty());
        assert!(lab.hellos_with("api.openai.com").is_empty());
    }
}

/// The state folders are created before the first run, owned by whoever runs ringfence.
#[test]
fn an_agent_state_folder_is_created_at_the_first_run() {
    for who in identities() {
        let env = Env::new(who);
        let folder: &Path = &env.home.join(".local/share/opencode");
        assert!(!folder.exists());
        let out = env.sh_within(&["--profile", "agent:opencode"], "echo kept > ~/.local/share/opencode/session");
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(folder.join("session")).unwrap(), "kept\n");
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(folder).unwrap());
        assert_eq!(owner, if who == Who::Nobody { NOBODY } else { nix::unistd::geteuid().as_raw() });
    }
}

/// A confined agent that swaps its login file for a link to another agent's login does not get
/// that login on its next run: the run stops, naming the link.
#[test]
fn a_login_swapped_for_a_link_stops_the_next_run() {
    for who in identities() {
        let env = Env::new(who);
        let planted = plant_logins(&env);
        let (own, other) = (&planted[0].1, &planted[1]);
        let plant = format!("rm -f {own} && ln -s {} {own}", other.1.display(), own = own.display());
        assert_code(&env.sh_within(&["--profile", "agent:claude"], &plant), 0);
        // The control: the link is there on the host, and leads to the other login.
        assert_eq!(std::fs::read_to_string(own).unwrap(), other.2);
        let out = env.sh_within(&["--profile", "agent:claude"], &format!("cat {}", own.display()));
        assert_code(&out, 121);
        assert!(stderr(&out).contains("is reached through the link"), "{}", stderr(&out));
        assert!(!stdout(&out).contains(other.2.as_str()));
    }
}

/// The host side of a terminal: runs argv on a new pseudo-terminal, resizes it once the program
/// says READY, types one key once it says RESIZED, and prints all it read and the exit code.
const TERMINAL: &str = r#"
import fcntl, os, pty, select, struct, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
def size(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
out = b""
def wait_for(token):
    global out
    end = time.time() + 20
    while token not in out and time.time() < end:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
size(30, 100)
wait_for(b"READY")
size(40, 120)
wait_for(b"RESIZED")
os.write(fd, b"k")
wait_for(b"DONE")
status = os.waitpid(pid, 0)[1]
print(out.decode(errors="replace"))
print("EXIT", os.waitstatus_to_exitcode(status))
"#;

/// A terminal UI inside the sandbox: it reads its size, switches to raw mode, and follows a
/// resize.
const TUI: &str = r#"
import os, signal, sys, tty
sizes = []
signal.signal(signal.SIGWINCH, lambda *_: sizes.append(os.get_terminal_size()))
first = os.get_terminal_size()
tty.setraw(0)
print("SIZE", first.columns, first.lines, "READY", end="\r\n", flush=True)
while not sizes:
    signal.pause()
print("RESIZED", sizes[-1].columns, sizes[-1].lines, end="\r\n", flush=True)
print("KEY", os.read(0, 1).decode(), "DONE", end="\r\n", flush=True)
"#;

#[test]
fn a_terminal_ui_gets_raw_mode_and_resizes_inside_an_agent_profile() {
    for who in identities() {
        let env = Env::new(who);
        let mut argv: Vec<&str> = Vec::new();
        if who == Who::Nobody {
            argv.extend(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        }
        argv.extend([path_str(binary()), "run", "--profile", "agent:claude", "--", "python3", "-c", TUI]);
        // The host driver runs as the test's own identity; the switch happens in argv.
        let mut driver = std::process::Command::new("python3");
        driver
            .arg("-c")
            .arg(TERMINAL)
            .args(&argv)
            .current_dir(&env.ws)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &env.home)
            .env("TERM", "xterm");
        let out = bounded_output(driver, DEADLINE);
        let text = stdout(&out);
        assert!(text.contains("SIZE 100 30 READY"), "{text}\n{}", stderr(&out));
        assert!(text.contains("RESIZED 120 40"), "{text}");
        assert!(text.contains("KEY k DONE") && text.contains("EXIT 0"), "{text}");
    }
}

/// A profile copied into a config file works as the built-in one, with the flag every config
/// file needs for writable folders in $HOME's dot folders.
#[test]
fn a_copied_profile_works_as_a_config_file() {
    for who in identities() {
        let env = Env::new(who);
        let shown = env.ringfence_within(&["profile", "show", "agent:aider"]);
        assert_code(&shown, 0);
        let config = env.root.join("aider.toml");
        env.write(&config, &stdout(&shown));
        std::fs::create_dir_all(env.home.join(".aider")).unwrap();
        env.chown_all();
        let write = "echo kept > ~/.aider/state";
        let refused = env.sh_within(&["--config", path_str(&config)], write);
        assert_code(&refused, 121);
        assert!(stderr(&refused).contains("--allow-writable-home-config"), "{}", stderr(&refused));
        let out = env.sh_within(&["--config", path_str(&config), "--allow-writable-home-config"], write);
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(env.home.join(".aider/state")).unwrap(), "kept\n");
    }
}

/// opencode's provider packages, which it loads, are an overlay: a confined run's install stays
/// in ringfence's layer (the next confined run sees it), and the host's folder, which an
/// unconfined opencode loads, is unchanged. The programs it downloads stay read-only.
#[test]
fn opencode_packages_stay_out_of_the_host_cache() {
    for who in identities() {
        let env = Env::new(who);
        let cache = env.home.join(".cache/opencode");
        env.write(&cache.join("node_modules/provider/index.js"), "original");
        let plant = "echo planted > ~/.cache/opencode/node_modules/provider/index.js && echo ok";
        let out = env.sh_within(&["--profile", "agent:opencode"], plant);
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "ok\n");
        assert_eq!(std::fs::read_to_string(cache.join("node_modules/provider/index.js")).unwrap(), "original");
        let again =
            env.sh_within(&["--profile", "agent:opencode"], "cat ~/.cache/opencode/node_modules/provider/index.js");
        assert_eq!(stdout(&again), "planted\n");
        let bin = env.sh_within(&["--profile", "agent:opencode"], "mkdir -p ~/.local/share/opencode/bin/x");
        assert_ne!(bin.status.code(), Some(0));
        assert!(!env.home.join(".local/share/opencode/bin/x").exists());
        // The control: the rest of its data folder is writable.
        let data = env.sh_within(&["--profile", "agent:opencode"], "echo s > ~/.local/share/opencode/session");
        assert_code(&data, 0);
        assert!(env.home.join(".local/share/opencode/session").exists());
    }
}
