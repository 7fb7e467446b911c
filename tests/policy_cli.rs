//! Policy at the binary level: config-file errors, the narrow-only rule for project configs and
//! how trust lifts it, precedence of the layers, `explain`, `check`, `schema`, and the CLI's own
//! errors and help.
#![cfg(target_os = "linux")]

mod common;
use common::*;

use serde_json::Value;
use std::path::PathBuf;

/// The project config's path as ringfence prints it (the workspace is canonicalized).
fn project_path(env: &Env) -> PathBuf {
    env.ws.canonicalize().unwrap().join(".ringfence.toml")
}

/// `ringfence explain --json [args]`, which must succeed.
#[track_caller]
fn explain_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["explain", "--json"];
    all.extend(args);
    let out = env.ringfence_within(&all);
    assert_code(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("explain --json is not JSON: {e}\n{}", stdout(&out)))
}

/// Asserts that both `explain` and `run` refuse the policy with exit 121 and exactly `message`,
/// and that the command did not run.
#[track_caller]
fn assert_policy_error(env: &Env, args: &[&str], message: &str) {
    let mut explain = vec!["explain"];
    explain.extend(args);
    let out = env.ringfence_within(&explain);
    assert_code(&out, 121);
    assert_eq!(stderr(&out), message, "explain {args:?}");
    assert_eq!(stdout(&out), "");
    let out = env.sh_within(args, "touch ran");
    assert_code(&out, 121);
    assert_eq!(stderr(&out), message, "run {args:?}");
    assert!(!env.ws.join("ran").exists(), "the command ran despite the policy error");
}

/// Config-file mistakes, each with its `file:line:col` and wording, in both the project and the
/// user config: unknown keys (with a suggestion), bad durations, sizes and enum values, and
/// values of the wrong type.
#[test]
fn golden_config_errors() {
    let cases: &[(&str, &str)] = &[
        ("# my policy\n[filesystem]\nwirte = [\"x\"]\n", "3:1: unknown key `wirte`\n  help: did you mean `write`?"),
        ("[limits]\npid = 10\n", "2:1: unknown key `pid`\n  help: did you mean `pids`?"),
        (
            "[fs]\n",
            "1:2: unknown key `fs`\n  help: known keys here: profile, filesystem, environment, limits, process, network, exec, trusted_projects",
        ),
        (
            "[limits]\ntimeout = \"10 minutes\"\n",
            "2:11: unknown duration unit `minutes` in `10 minutes`; write a duration like `30s`, `10m`, `1h30m` or `500ms`",
        ),
        (
            "[limits]\nmemory = \"lots\"\n",
            "2:10: `lots` is not a size; write a size like `512M`, `2G` or `1048576`, or `none` for no limit",
        ),
        ("[limits]\ntmp_size = \"3X\"\n", "2:12: unknown size unit `x` in `3X`; write a size like `512M`, `2G` or `1048576`"),
        ("profile = \"paranoid\"\n", "1:11: unknown value `paranoid`\n  help: use one of: workspace, read-only, strict"),
        ("[network]\nmode = \"proxy\"\n", "2:8: unknown value `proxy`\n  help: use one of: none, allow, host"),
        (
            "[network]\nallow = [\n  \"api.openai.com\",\n  \"foo.*.com\",\n]\n",
            "4:3: `foo.*.com`: a wildcard may only start a pattern, as in `*.example.com`",
        ),
        ("[network]\ndeny = [\"example.com:0\"]\n", "2:9: `example.com:0`: port must be 1-65535, not `0`"),
        (
            "[network]\nallow = [\"2001:db8:0:0:0:0:0:1:443\"]\n",
            "2:10: `2001:db8:0:0:0:0:0:1:443`: write an IPv6 address in brackets to give a port: `[2001:db8::1]:443`",
        ),
        (
            "[network]\nallow = [\"127.1\"]\n",
            "2:10: `127.1` is a numeric address in an unusual form; write IPv4 addresses as four decimal numbers, like `192.0.2.7`",
        ),
        (
            "[network]\npresets = [\"npm\", \"pip\"]\n",
            "2:19: unknown value `pip`\n  help: use one of: npm, pypi, crates, github, openai, anthropic",
        ),
        (
            "[network]\nallow_private = [\"8.8.8.0/24\"]\n",
            "2:18: `8.8.8.0/24` is not a private range; `allow_private` takes ranges within 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7",
        ),
        (
            "[network]\nresolver = \"dns.google\"\n",
            "2:12: `dns.google` is not an IP address; the resolver is given by address, like `192.0.2.53`, `192.0.2.53:5353` or `[2001:db8::53]:53`",
        ),
        (
            "[network]\nmode = \"none\"\nallow = [\"example.com\"]\n",
            "2:8: the `none` mode contradicts this file's allow rules\n  help: set `mode = \"allow\"` to let only the listed hosts through, or remove `allow` and `presets`",
        ),
        (
            "[network]\nmode = \"host\"\npresets = [\"npm\"]\n",
            "2:8: host mode doesn't filter, so this file's allow rules would not be enforced\n  help: set `mode = \"allow\"` to let only the listed hosts through, or remove `allow` and `presets`",
        ),
        (
            "[filesystem]\nwrite = \"~/x\"\n",
            "2:9: invalid type: string \"~/x\", expected a sequence\n  help: write a list, for example `write = [\"~/build\"]`",
        ),
        (
            "[limits]\npids = \"many\"\n",
            "2:8: invalid type: string \"many\", expected u64\n  help: write a plain number, for example `pids = 512`",
        ),
        (
            "[process]\nallow_ptrace = \"yes\"\n",
            "2:16: invalid type: string \"yes\", expected a boolean\n  help: write `true` or `false`",
        ),
        ("[limits]\ncpus = 0\n", "2:8: `limits.cpus` must be a positive number of cores\n  help: for example `cpus = 2` or `cpus = 0.5`"),
    ];
    for who in identities() {
        for (text, expected) in cases {
            let env = Env::new(who);
            env.project_config(text);
            let message = format!("ringfence: error: {}:{expected}\n", project_path(&env).display());
            assert_policy_error(&env, &[], &message);

            let env = Env::new(who);
            env.user_config(text);
            let message = format!("ringfence: error: {}:{expected}\n", env.user_config_path().display());
            assert_policy_error(&env, &[], &message);
        }
    }
}

/// A TOML syntax error points at its line and column too.
#[test]
fn syntax_error_points_at_the_line() {
    let env = Env::new(Who::Me);
    env.project_config("[limits]\npids = 10\n[network\n");
    let out = env.ringfence_within(&["explain"]);
    assert_code(&out, 121);
    let prefix = format!("ringfence: error: {}:3:", project_path(&env).display());
    assert!(stderr(&out).starts_with(&prefix), "{}", stderr(&out));
}

/// The help line of a widening error; it names the user config that would trust the project.
fn widen_help(env: &Env) -> String {
    format!(
        "  help: remove it, pass it as a flag, or trust this project from outside the sandbox: \
         add its folder to `trusted_projects` in {}, or run with --trust-project\n",
        env.user_config_path().display()
    )
}

/// Project configs that would widen the policy, each with the line:col of the offending value.
/// The user config (when given) starts from the `strict` profile and sets `limits.pids = 100`,
/// so the project may not go back to `workspace` nor raise the limit.
const USER_CONFIG: &str = "profile = \"strict\"\n[limits]\npids = 100\n";

const WIDENING: &[(&str, &str)] = &[
    ("# cache\n[filesystem]\nwrite = [\"~/cache\"]\n", "3:9: `filesystem.write` would widen"),
    ("[filesystem]\n\nread = [\"~/.ssh\"]\n", "3:8: `filesystem.read` would widen"),
    ("[network]\nmode = \"host\"\n", "2:8: `network.mode` would widen"),
    ("[network]\nmode = \"allow\"\n", "2:8: `network.mode` would widen"),
    ("[network]\n\nallow = [\"example.com\"]\n", "3:9: `network.allow` would widen"),
    ("[network]\npresets = [\"npm\"]\n", "2:11: `network.presets` would widen"),
    ("[network]\nallow_private = [\"10.0.0.0/8\"]\n", "2:17: `network.allow_private` would widen"),
    ("[network]\nresolver = \"192.0.2.53\"\n", "2:12: `network.resolver` would widen"),
    ("[environment]\nkeep = [\"MY_VAR\"]\n", "2:8: `environment.keep` would widen"),
    ("[limits]\npids = 200\n", "2:8: raising `limits.pids` would widen"),
    // Above the default cap (half of physical memory), or none at all.
    ("[limits]\nmemory = \"1T\"\n", "2:10: raising `limits.memory` would widen"),
    ("[limits]\nmemory = \"none\"\n", "2:10: removing `limits.memory` would widen"),
    ("[process]\nallow_ptrace = true\n", "2:16: `process.allow_ptrace` would widen"),
    ("profile = \"workspace\"\n", "1:11: `profile` would widen"),
];

/// A project config that widens the policy is refused with exit 121, pointing at the line.
#[test]
fn project_config_cannot_widen() {
    for who in identities() {
        for (text, expected) in WIDENING {
            let env = Env::new(who);
            env.user_config(USER_CONFIG);
            env.write(&env.home.join("cache/.keep"), "");
            env.project_config(text);
            let message = format!(
                "ringfence: error: {}:{expected} the policy, and a project config can only narrow it\n{}",
                project_path(&env).display(),
                widen_help(&env)
            );
            assert_policy_error(&env, &[], &message);
        }
    }
}

/// The same widening files are accepted with `--trust-project`, or when the user config lists
/// the project in `trusted_projects` (as `~/…` or as an absolute path).
#[test]
fn trusted_project_may_widen() {
    for who in identities() {
        for (text, _) in WIDENING {
            for how in ["flag", "tilde", "absolute"] {
                let env = Env::new(who);
                let trusted = match how {
                    "tilde" => "trusted_projects = [\"~/project\"]\n".to_string(),
                    "absolute" => format!("trusted_projects = [\"{}\"]\n", env.ws.display()),
                    _ => String::new(),
                };
                env.user_config(&format!("{trusted}{USER_CONFIG}"));
                env.write(&env.home.join("cache/.keep"), "");
                env.project_config(text);
                let args: &[&str] = if how == "flag" { &["--trust-project"] } else { &[] };
                let policy = explain_json(&env, args);
                assert_eq!(policy["sources"].as_array().map(Vec::len), Some(2), "{who:?} {how} {text:?}");
            }
        }
        // And the widening takes effect in a real run.
        let env = Env::new(who);
        env.user_config("trusted_projects = [\"~/project\"]\n");
        env.write(&env.home.join("cache/.keep"), "");
        env.project_config("[filesystem]\nwrite = [\"~/cache\"]\n");
        let out = env.sh_within(&[], "echo made > ~/cache/by-sandbox");
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(env.home.join("cache/by-sandbox")).unwrap(), "made\n");
    }
}

/// Without any trust, a project config may narrow: a stricter profile, a lower limit, more
/// denied and protected paths; and the narrowing takes effect.
#[test]
fn project_config_may_narrow() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("notes.txt"), "n\n");
        env.project_config(
            "profile = \"read-only\"\n[limits]\npids = 64\ntimeout = \"5m\"\n\
             [filesystem]\ndeny_read = [\"private\"]\ndeny_write = [\"vendor\"]\n",
        );
        let policy = explain_json(&env, &[]);
        assert_eq!(policy["profile"], "read-only", "{who:?}");
        assert_eq!(policy["limits"]["pids"], 64, "{who:?}");
        let out = env.sh_within(&[], "cat notes.txt; echo x > new.txt");
        assert_ne!(out.status.code(), Some(0), "{who:?}: the read-only profile let the write through");
        assert_eq!(stdout(&out), "n\n", "{who:?}");
        assert!(!env.ws.join("new.txt").exists(), "{who:?}");
    }
}

/// A project can't trust itself: `trusted_projects` belongs in the user config only.
#[test]
fn project_cannot_trust_itself() {
    let env = Env::new(Who::Me);
    env.project_config("trusted_projects = [\".\"]\n[filesystem]\nwrite = [\"/opt\"]\n");
    let message = format!(
        "ringfence: error: {}:1:20: `trusted_projects` belongs in the user config only\n  help: move it to {}\n",
        project_path(&env).display(),
        env.user_config_path().display()
    );
    assert_policy_error(&env, &[], &message);
    assert_policy_error(&env, &["--trust-project"], &message);
}

/// Precedence, lowest first: profile, user config, project config, flags, as `explain --json`
/// reports it.
#[test]
fn precedence_of_layers() {
    let env = Env::new(Who::Me);
    let policy = explain_json(&env, &[]);
    assert_eq!(policy["profile"], "workspace");
    assert_eq!(policy["limits"]["pids"], 4096);
    assert_eq!(policy["sources"], serde_json::json!([]));

    env.user_config("profile = \"strict\"\n[limits]\npids = 100\ntimeout = \"10m\"\n[environment.set]\nA = \"user\"\nB = \"user\"\n");
    let policy = explain_json(&env, &[]);
    assert_eq!(policy["profile"], "strict");
    assert_eq!((policy["limits"]["pids"].as_u64(), policy["limits"]["timeout"].as_str()), (Some(100), Some("10m")));

    env.project_config("[limits]\npids = 50\ntimeout = \"5m\"\n[environment.set]\nB = \"project\"\n");
    let policy = explain_json(&env, &[]);
    assert_eq!(policy["profile"], "strict");
    assert_eq!((policy["limits"]["pids"].as_u64(), policy["limits"]["timeout"].as_str()), (Some(50), Some("5m")));
    assert_eq!(policy["env"]["set"], serde_json::json!({"A": "user", "B": "project"}));
    assert_eq!(
        policy["sources"],
        serde_json::json!([path_str(&env.user_config_path()), path_str(&project_path(&env))])
    );

    // Flags are the user's own word: they may also raise what the configs set.
    let policy = explain_json(&env, &["--profile", "read-only", "--pids", "500", "--timeout", "1m", "--env", "B=flag"]);
    assert_eq!(policy["profile"], "read-only");
    assert_eq!((policy["limits"]["pids"].as_u64(), policy["limits"]["timeout"].as_str()), (Some(500), Some("1m")));
    assert_eq!(policy["env"]["set"], serde_json::json!({"A": "user", "B": "flag"}));

    // The layers reach the command.
    let out = env.sh_within(&["--profile", "workspace", "--env", "B=flag"], "echo $A $B");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "user flag\n");
}

/// A user config `write = ["~/cache"]` makes ~/cache writable in a run; without it, it isn't.
#[test]
fn user_config_write_takes_effect() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.home.join("cache/.keep"), "");
        env.user_config("[filesystem]\nwrite = [\"~/cache\"]\n");
        let out = env.sh_within(&[], "echo cached > ~/cache/item");
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(env.home.join("cache/item")).unwrap(), "cached\n", "{who:?}");

        let out = env.sh_within(&["--no-config"], "echo cached > ~/cache/other");
        assert_ne!(out.status.code(), Some(0), "{who:?}");
        assert!(!env.home.join("cache/other").exists(), "{who:?}");
    }
}

/// A project config `deny_read = ["secret.txt"]` hides that workspace file (the rest of the
/// workspace stays readable); a `--read` flag, the stronger layer, shows it again.
#[test]
fn project_deny_read_hides_a_file() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("secret.txt"), "hunter2\n");
        env.write(&env.ws.join("public.txt"), "hello\n");
        env.project_config("[filesystem]\ndeny_read = [\"secret.txt\"]\n");
        let out = env.sh_within(&[], "cat public.txt; cat secret.txt; echo status=$?");
        assert_code(&out, 0);
        assert!(
            stdout(&out).starts_with("hello\n") && stdout(&out).ends_with("status=1\n"),
            "{who:?}: {}",
            stdout(&out)
        );
        assert!(!stdout(&out).contains("hunter2"), "{who:?}");

        let out = env.sh_within(&["--read", "secret.txt"], "cat secret.txt");
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "hunter2\n", "{who:?}");
        assert_eq!(std::fs::read_to_string(env.ws.join("secret.txt")).unwrap(), "hunter2\n");
    }
}

/// `--config FILE` replaces the user config (the project config still applies); a missing
/// FILE is an error.
#[test]
fn config_flag_replaces_user_config() {
    let env = Env::new(Who::Me);
    env.write(&env.home.join("cache/.keep"), "");
    env.user_config("[filesystem]\nwrite = [\"~/cache\"]\n[limits]\npids = 100\n");
    env.project_config("[environment.set]\nFROM = \"project\"\n");
    let alt = env.outside.join("alt.toml");
    env.write(&alt, "[limits]\npids = 33\n");
    let policy = explain_json(&env, &["--config", path_str(&alt)]);
    assert_eq!(policy["limits"]["pids"], 33);
    assert_eq!(policy["sources"], serde_json::json!([path_str(&alt), path_str(&project_path(&env))]));
    let out = env.sh_within(&["--config", path_str(&alt)], "echo $FROM; echo x > ~/cache/item");
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "project\n");
    assert!(!env.home.join("cache/item").exists());

    let missing = env.outside.join("missing.toml");
    let message = format!("ringfence: error: --config {}: no such file\n", missing.display());
    assert_policy_error(&env, &["--config", path_str(&missing)], &message);
}

/// The user config is read from $XDG_CONFIG_HOME/ringfence/config.toml when that is set, and
/// it must be protected there too: a run must not edit the file that decides the next run's
/// policy (and its `trusted_projects`). Fails today: only ~/.config/ringfence is protected, so
/// with XDG_CONFIG_HOME inside a writable root the sandbox can rewrite its own user config.
#[test]
fn xdg_user_config_is_protected() {
    for who in identities() {
        let env = Env::new(who);
        let xdg = env.ws.join(".xdg");
        let config = xdg.join("ringfence/config.toml");
        env.write(&config, "[limits]\npids = 100\n");
        let run = |args: &[&str]| {
            let mut cmd = env.command();
            cmd.env("XDG_CONFIG_HOME", &xdg).args(args);
            output_within(&mut cmd, None, DEADLINE)
        };
        let out = run(&["explain", "--json"]);
        assert_code(&out, 0);
        let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(policy["sources"], serde_json::json!([path_str(&config)]), "{who:?}: the XDG config is read");
        let out = run(&["run", "--", "sh", "-c", "echo 'trusted_projects = [\"/\"]' >> .xdg/ringfence/config.toml"]);
        assert_ne!(out.status.code(), Some(0), "{who:?}: the sandbox edited its user config");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "[limits]\npids = 100\n", "{who:?}");
    }
}

/// `--no-config` ignores both config files, even broken ones.
#[test]
fn no_config_ignores_both() {
    let env = Env::new(Who::Me);
    env.user_config("[limits]\npids = 100\n");
    env.project_config("this is not toml\n");
    assert_eq!(env.ringfence_within(&["explain"]).status.code(), Some(121));
    let policy = explain_json(&env, &["--no-config"]);
    assert_eq!(policy["sources"], serde_json::json!([]));
    assert_eq!(policy["limits"]["pids"], 4096);
    let out = env.sh_within(&["--no-config"], "echo ran");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "ran\n");
}

/// `explain` prints the profile, workspace, config files, the filesystem rules with where they
/// come from and which layers enforce them, the environment, network and limits.
#[test]
fn explain_shows_the_policy_and_its_layers() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.home.join("cache/.keep"), "");
        env.write(&env.ws.join("secret.txt"), "x");
        env.user_config("# mine\n[filesystem]\nwrite = [\"~/cache\"]\n");
        env.project_config("[filesystem]\ndeny_read = [\"secret.txt\"]\n");
        let out = env.ringfence_within(&["explain", "--timeout", "90s", "--memory", "512M"]);
        assert_code(&out, 0);
        let text = stdout(&out);
        let ws = env.ws.canonicalize().unwrap();
        let user = env.user_config_path();
        let project = project_path(&env);
        let expected = [
            format!("Profile: workspace    Workspace: {}\n", ws.display()),
            format!("Config files: {}, {}\n", user.display(), project.display()),
            "Filesystem (the most specific rule wins):\n".into(),
            "/tmp                                         writable   private tmpfs, 1G  [mount view]\n".into(),
            format!("{}", env.home.join("cache").display()),
            "writable   bind  [mount view, landlock (ABI".into(),
            format!("      from {}:3\n", user.display()),
            format!("{}", ws.join("secret.txt").display()),
            // Inside the writable workspace only the mount layer can hide it.
            "hidden     masked  [mount view]\n".into(),
            format!("      from {}:2\n", project.display()),
            "/ (everything else)                          read-only  host tree, nosuid, nodev  [mount view, landlock"
                .into(),
            format!("hidden if created later (landlock): {}", env.home.join(".ssh").display()),
            "  workspace is writable\n".into(),
            "Environment [scrubbed before exec]:\n  passed through: PATH, HOME,".into(),
            "  set by ringfence: PWD, TMPDIR=/tmp, RINGFENCE=1\n".into(),
            "Network:\n  none: own loopback only  [net namespace]\n".into(),
            "Limits:\n  pids: 4096  [".into(),
            "  memory: 512M  [".into(),
            "  timeout: 1m30s  [supervisor]\n".into(),
            "  /tmp size: 1G  [tmpfs]\n".into(),
        ];
        let mut rest = text.as_str();
        for piece in &expected {
            let at = rest
                .find(piece.as_str())
                .unwrap_or_else(|| panic!("{who:?}: {piece:?} missing (or out of order) in:\n{text}"));
            rest = &rest[at + piece.len()..];
        }
        let out = env.ringfence_within(&["explain", "--network", "host"]);
        assert!(stdout(&out).contains("host: the host's network, UNFILTERED (danger)"), "{}", stdout(&out));
    }
}

/// The network flags and `[network]` keys reach the merged policy: rules accumulate across the
/// layers with their origins, allow rules and presets imply the `allow` mode, and an untrusted
/// project may add deny rules and turn the network off.
#[test]
fn network_rules_merge_across_layers() {
    let env = Env::new(Who::Me);
    let policy = explain_json(&env, &[]);
    assert_eq!(policy["network"], "none");
    assert_eq!(policy["net"]["allow"], serde_json::json!([]));

    env.user_config("[network]\npresets = [\"npm\"]\nallow = [\"*.example.com\"]\nresolver = \"192.0.2.53:5353\"\n");
    env.project_config("# narrower\n[network]\ndeny = [\"admin.example.com\"]\n");
    let policy = explain_json(&env, &["--allow-host", "api.openai.com:443", "--allow-private", "10.1.0.0/16"]);
    assert_eq!(policy["network"], "allow", "allow rules imply the allow mode");
    let allow: Vec<&str> =
        policy["net"]["allow"].as_array().unwrap().iter().map(|r| r["pattern"].as_str().unwrap()).collect();
    assert_eq!(
        allow,
        [
            "*.example.com",
            "registry.npmjs.org:443",
            "registry.yarnpkg.com:443",
            "repo.yarnpkg.com:443",
            "api.openai.com:443"
        ]
    );
    let user = path_str(&env.user_config_path()).to_string();
    assert_eq!(policy["net"]["allow"][0]["origin"], serde_json::json!({"kind": "file", "path": user, "line": 3}));
    assert_eq!(policy["net"]["presets"][0]["name"], "npm");
    assert_eq!(policy["net"]["presets"][0]["origin"]["line"], 2);
    assert_eq!(
        policy["net"]["allow"][4]["origin"],
        serde_json::json!({"kind": "flag", "flag": "--allow-host api.openai.com:443"})
    );
    let project = path_str(&project_path(&env)).to_string();
    assert_eq!(
        policy["net"]["deny"],
        serde_json::json!([{"pattern": "admin.example.com", "origin": {"kind": "project", "path": project, "line": 3}}])
    );
    assert_eq!(policy["net"]["allow_private"][0]["range"], "10.1.0.0/16");
    assert_eq!(policy["net"]["resolver"]["address"], "192.0.2.53:5353");

    // Flags replace the mode and the resolver; `--network none` wins over the files' allow rules.
    let policy = explain_json(&env, &["--network", "none", "--resolver", "[2001:db8::53]"]);
    assert_eq!(policy["network"], "none");
    assert_eq!(policy["net"]["resolver"]["address"], "[2001:db8::53]:53");

    // An untrusted project may turn the network off.
    env.project_config("[network]\nmode = \"none\"\n");
    assert_eq!(explain_json(&env, &[])["network"], "none");
    // A project can't open hosts, but the user's flags can, also over a file's `mode = "none"`.
    env.user_config("[network]\nmode = \"none\"\n");
    env.project_config("");
    assert_eq!(explain_json(&env, &["--allow-preset", "pypi"])["network"], "allow");
    // `allow` with nothing allowed is valid: everything is refused.
    let policy = explain_json(&env, &["--network", "allow"]);
    assert_eq!((policy["network"].as_str(), policy["net"]["allow"].as_array().map(Vec::len)), (Some("allow"), Some(0)));
}

/// Contradictory network settings are refused (exit 121) before anything runs.
#[test]
fn network_contradictions_fail_closed() {
    let env = Env::new(Who::Me);
    assert_policy_error(
        &env,
        &["--network", "none", "--allow-host", "example.com"],
        "ringfence: error: --network none: the `none` mode contradicts --allow-host example.com\n  \
         help: pass --network allow (or leave --network out) to let only the listed hosts through\n",
    );
    assert_policy_error(
        &env,
        &["--network", "host", "--allow-preset", "github"],
        "ringfence: error: --network host: host mode doesn't filter, so --allow-preset github would not be \
         enforced\n  help: pass --network allow (or leave --network out) to let only the listed hosts through\n",
    );
    // Host mode from a flag can't carry the user config's rules either.
    env.user_config("# mine\n[network]\nallow = [\"example.com\"]\n");
    let message = format!(
        "ringfence: error: {}:3: `example.com` can't be enforced: the network mode is `host`, and host mode \
         doesn't filter\n  help: use the allow mode (`--network allow`, or `mode = \"allow\"` in [network]) to \
         enforce the host rules, or remove them\n",
        env.user_config_path().display()
    );
    assert_policy_error(&env, &["--network", "host"], &message);
}

/// `explain` shows the allow mode's rules with their origins, presets by name with their
/// hosts, the private ranges, the resolver and where it is all enforced.
#[test]
fn explain_shows_the_network_rules() {
    let env = Env::new(Who::Me);
    env.user_config("[network]\nallow = [\"*.example.com:443\"]\npresets = [\"crates\"]\n");
    env.project_config("[network]\ndeny = [\"admin.example.com\"]\n");
    let out = env.ringfence_within(&["explain", "--allow-host", "192.0.2.7", "--allow-private", "fd00::/8"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let user = env.user_config_path();
    let project = project_path(&env);
    let expected = [
        "Network:\n  allow: only the hosts allowed below; every attempt is checked and recorded\n".to_string(),
        "    [gateway in the supervisor (HTTP proxy 127.0.0.1:3128, SOCKS5 127.0.0.1:1080, and every other TCP \
         connection and DNS question, captured); the sandbox's own network namespace has only loopback, and \
         every address is routed to it]\n"
            .into(),
        "  allowed:\n".into(),
        format!("    *.example.com:443                          from {}:2\n", user.display()),
        "    192.0.2.7                                  from --allow-host 192.0.2.7\n".into(),
        format!("    preset crates                              from {}:3\n", user.display()),
        "      crates.io:443, index.crates.io:443, static.crates.io:443\n".into(),
        "  denied (beats any allow rule):\n".into(),
        format!("    admin.example.com                          from {}:2\n", project.display()),
        "  private ranges the gateway may dial:\n    fd00::/8 ".into(),
        "from --allow-private fd00::/8\n".into(),
        "  resolver: system resolver".into(),
        "Processes:\n".into(),
    ];
    let mut rest = text.as_str();
    for piece in &expected {
        let at = rest.find(piece.as_str()).unwrap_or_else(|| panic!("{piece:?} missing (or out of order) in:\n{text}"));
        rest = &rest[at + piece.len()..];
    }

    let out = env.ringfence_within(&["explain", "--no-config", "--network", "allow", "--resolver", "192.0.2.53"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("  allowed:\n    nothing: every connection is refused\n"), "{text}");
    assert!(text.contains("  private ranges: none (RFC 1918, ULA and CGNAT addresses are refused)\n"), "{text}");
    assert!(text.contains("  resolver: 192.0.2.53:53  from --resolver 192.0.2.53"), "{text}");
}

/// `check` exits 0 on this machine and reports user namespaces and Landlock.
#[test]
fn check_reports_the_kernel() {
    for who in identities() {
        let env = Env::new(who);
        let out = env.ringfence_within(&["check"]);
        assert_code(&out, 0);
        let text = stdout(&out);
        assert!(text.starts_with("ringfence 0.1.0 on Linux "), "{text}");
        assert!(text.contains("[ok  ] user namespaces"), "{who:?}: {text}");
        assert!(text.contains("[ok  ] Landlock         ABI "), "{who:?}: {text}");
        assert!(text.contains("[ok  ] seccomp"), "{who:?}: {text}");
        assert!(text.contains("ringfence runs here"), "{who:?}: {text}");
    }
}

/// `schema` prints the committed docs/policy.schema.json, which is valid JSON.
#[test]
fn schema_matches_docs() {
    let env = Env::new(Who::Me);
    let out = env.ringfence_within(&["schema"]);
    assert_code(&out, 0);
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.schema.json");
    let committed = std::fs::read_to_string(&docs).unwrap();
    assert!(stdout(&out) == committed, "`ringfence schema` differs from {}", docs.display());
    let schema: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["title"], "ringfence policy file");
    assert!(schema["properties"]["filesystem"].is_object());
}

/// Command-line mistakes exit 121 with clap's message, and nothing runs.
#[test]
fn cli_errors_exit_121() {
    let env = Env::new(Who::Me);
    let cases: &[(&[&str], &str)] = &[
        (&["--frobnicate", "run", "--", "touch", "ran"], "unexpected argument '--frobnicate'"),
        (&["check", "--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["run"], "the following required arguments were not provided"),
        (&["run", "--memory", "lots", "--", "touch", "ran"], "`lots` is not a size"),
        (&["run", "--timeout", "soon", "--", "touch", "ran"], "is not a duration"),
        (&["run", "--network", "wifi", "--", "touch", "ran"], "unknown network mode `wifi`"),
        (&["run", "--profile", "paranoid", "--", "touch", "ran"], "unknown profile `paranoid`"),
        (&["run", "--no-config", "--config", "x.toml", "--", "touch", "ran"], "cannot be used with"),
        (&["run", "--env", "NOEQUALS", "--", "touch", "ran"], "has no `=`"),
        (&["run", "--allow-preset", "pip", "--", "touch", "ran"], "invalid value 'pip' for '--allow-preset <NAME>'"),
        (&["explain", "--allow-preset", "pip"], "[possible values: npm, pypi, crates, github, openai, anthropic]"),
        (&["run", "--network", "proxy", "--", "touch", "ran"], "use `none`, `allow` or `host`"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&[], "Usage: ringfence <COMMAND>"),
    ];
    for (args, needle) in cases {
        let out = env.ringfence_within(args);
        assert_code(&out, 121);
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(!env.ws.join("ran").exists(), "{args:?} ran the command");
    }
    // Policy mistakes in flags are 121 too, with ringfence's own wording.
    for (args, needle) in [
        (["--write", "/"], "can't be a writable root"),
        (["--deny-read", "."], "is hidden by"),
        (["--pids", "0"], "--pids must be at least 1"),
        (["--env", "1BAD=x"], "is not a valid variable name"),
        (["--allow-host", "foo.*.com"], "--allow-host foo.*.com: a wildcard may only start a pattern"),
        (["--allow-host", "*"], "--allow-host *: `*` alone would allow everything"),
        (["--deny-host", "example.com:99999"], "--deny-host example.com:99999: port must be 1-65535"),
        (["--allow-host", "0x7f.1"], "--allow-host 0x7f.1: `0x7f.1` is a numeric address"),
        (["--allow-private", "8.8.8.0/24"], "--allow-private 8.8.8.0/24: `8.8.8.0/24` is not a private range"),
        (["--resolver", "dns.google"], "--resolver dns.google: `dns.google` is not an IP address"),
    ] {
        let out = env.sh_within(&args, "touch ran");
        assert_code(&out, 121);
        assert!(
            stderr(&out).starts_with("ringfence: error: ") && stderr(&out).contains(needle),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!env.ws.join("ran").exists(), "{args:?} ran the command");
    }
}

/// A mistyped flag of `run` or `explain` is a usage error (121, with a suggestion), not the
/// command to run (127) nor silently ignored.
#[test]
fn unknown_run_flag_is_a_usage_error() {
    let env = Env::new(Who::Me);
    for sub in ["run", "explain"] {
        let out = env.ringfence_within(&[sub, "--tmeout", "5s", "--", "touch", "ran"]);
        assert_code(&out, 121);
        assert!(stderr(&out).contains("unexpected argument '--tmeout'"), "{sub}: {}", stderr(&out));
        assert!(stderr(&out).contains("--timeout"), "{sub}: no suggestion: {}", stderr(&out));
        assert!(!env.ws.join("ran").exists());
    }
}

/// `--help` exits 0; `run --help` (and `help run`) show examples; `--version` exits 0.
#[test]
fn help_and_version() {
    let env = Env::new(Who::Me);
    let out = env.ringfence_within(&["--help"]);
    assert_code(&out, 0);
    for word in ["Usage: ringfence <COMMAND>", "run", "explain", "check", "schema", "ringfence explain"] {
        assert!(stdout(&out).contains(word), "{word:?} missing:\n{}", stdout(&out));
    }
    for args in [&["run", "--help"][..], &["help", "run"], &["run", "-h"]] {
        let out = env.ringfence_within(args);
        assert_code(&out, 0);
        let text = stdout(&out);
        assert!(text.contains("Examples:\n  ringfence run -- npm test\n"), "{args:?}:\n{text}");
        assert!(text.contains("--json-status <FD|PATH>") && text.contains("--timeout <DURATION>"), "{args:?}:\n{text}");
    }
    let out = env.ringfence_within(&["--version"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "ringfence 0.1.0\n");
}

/// A zero timeout is refused like `0s` is. Today a bare `0` (flag or config) slips past the
/// zero check (it parses as plain seconds), and the run is killed at once with exit 124.
#[test]
fn zero_timeout_is_refused() {
    let env = Env::new(Who::Me);
    let out = env.sh_within(&["--timeout", "0"], "echo ran");
    assert_code(&out, 121);
    env.project_config("[limits]\ntimeout = 0\n");
    let out = env.ringfence_within(&["explain"]);
    assert_code(&out, 121);
}
