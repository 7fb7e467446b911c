//! Threat 1, reading secrets: credential files under $HOME (also ones created mid-run), host-wide
//! secrets, tokens in the environment, and the kernel keyring. Every test runs as root and as
//! nobody, attacks from inside with real programs, then checks what actually came out.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Credential files from the built-in secret list, relative to $HOME.
const SECRET_FILES: &[&str] = &[
    ".ssh/id_rsa",
    ".ssh/config",
    ".aws/credentials",
    ".config/gcloud/application_default_credentials.json",
    ".netrc",
    ".git-credentials",
    ".docker/config.json",
    ".kube/config",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials.toml",
    ".gnupg/private-keys-v1.d/key.key",
    ".password-store/email.gpg",
    ".config/gh/hosts.yml",
    ".vault-token",
    ".bash_history",
];

/// Writes each secret with a content that names it, so a leak is unmistakable in any output.
fn plant_secrets(env: &Env, tag: &str, files: &[&str]) {
    for f in files {
        env.write(&env.home.join(f), &format!("SECRET-{tag}-{f}\n"));
    }
}

/// Every secret file is unreadable by every means tried (cat, find+cat, cp, tar, a symlink
/// from the workspace, python) and survives a deletion attempt, while an ordinary file next to
/// the secrets is readable (positive control).
#[test]
fn secret_files_are_unreadable() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("sec");
        plant_secrets(&env, &tag, SECRET_FILES);
        env.write(&env.home.join("notes.txt"), &format!("VISIBLE-{tag}\n"));
        std::os::unix::fs::symlink(env.home.join(".ssh/id_rsa"), env.ws.join("key-link")).unwrap();
        env.give(&env.ws.join("key-link"));
        let list = SECRET_FILES.iter().map(|f| format!("~/{f}")).collect::<Vec<_>>().join(" ");
        let script = format!(
            r#"
            for f in {list}; do cat "$f"; done
            cat ~/notes.txt
            cat key-link
            find ~ -type f -not -path '*/project/*' -exec cat {{}} + 2>&1
            cp -r ~/.ssh ~/.aws stolen/ 2>&1; cat stolen/*/* 2>&1
            tar cf - -C ~ . 2>/dev/null | tr -c '[:print:]\n' ' '
            python3 -c 'import glob,os; [print(open(p).read()) for p in glob.glob(os.path.expanduser("~/.*/**"), recursive=True) if os.path.isfile(p)]' 2>&1
            rm -rf ~/.ssh ~/.aws ~/.netrc 2>&1
            true"#
        );
        std::fs::create_dir_all(env.ws.join("stolen")).unwrap();
        env.chown_all();
        let out = env.run_sh(&[], &script);
        let text = both(&out);
        assert!(text.contains(&format!("VISIBLE-{tag}")), "{who:?}: the control file was not readable:\n{text}");
        assert!(!text.contains(&format!("SECRET-{tag}")), "{who:?}: a secret leaked:\n{text}");
        for f in SECRET_FILES {
            let content = std::fs::read_to_string(env.home.join(f)).unwrap_or_default();
            assert_eq!(content, format!("SECRET-{tag}-{f}\n"), "{who:?}: {f} was changed or removed on the host");
        }
        let copied = walk_contents(&env.ws.join("stolen"));
        assert!(!copied.contains("SECRET-"), "{who:?}: a secret was copied into the workspace");
    }
}

/// Concatenated contents of every file below `dir`.
fn walk_contents(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out += &walk_contents(&p);
        } else {
            out += &std::fs::read_to_string(&p).unwrap_or_default();
        }
    }
    out
}

/// A secret that does not exist when the run starts, and is created on the host while it
/// runs, stays unreadable; an ordinary file created at the same moment in an ordinary directory
/// is readable (control).
#[test]
fn secret_created_during_run_stays_hidden() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("late");
        // Parents that exist (so only the leaf is new) and ones that don't.
        env.write(&env.home.join(".config/other.txt"), "x\n");
        env.write(&env.home.join(".ssh/known_hosts"), "x\n");
        env.write(&env.home.join("docs/old.txt"), "x\n");
        let late =
            [".aws/credentials", ".netrc", ".config/gcloud/credentials.db", ".ssh/id_ed25519", ".git-credentials"];
        let script = r#"
            touch started
            i=0; while [ ! -e go ] && [ $i -lt 300 ]; do sleep 0.02; i=$((i+1)); done
            [ -e go ] || echo "NO-GO"
            for f in ~/.aws/credentials ~/.netrc ~/.config/gcloud/credentials.db ~/.ssh/id_ed25519 ~/.git-credentials ~/docs/later.txt; do
                cat "$f" 2>&1
            done
            ls -la ~/.aws ~/.config/gcloud ~/.ssh 2>&1
            true"#;
        let mut cmd = env.run_command(&[], &["sh", "-c", script]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let started = poll_until(Duration::from_secs(10), || env.ws.join("started").exists());
        assert!(started, "{who:?}: the sandbox never started");
        plant_secrets(&env, &tag, &late);
        env.write(&env.home.join("docs/later.txt"), &format!("VISIBLE-{tag}\n"));
        env.write(&env.ws.join("go"), "");
        let out = collect_within(child, RUN_LIMIT);
        let text = both(&out);
        assert!(!text.contains("NO-GO"), "{who:?}: the sandbox never saw the go file:\n{text}");
        assert!(text.contains(&format!("VISIBLE-{tag}")), "{who:?}: a file created mid-run was not readable:\n{text}");
        assert!(!text.contains(&format!("SECRET-{tag}")), "{who:?}: a secret created mid-run leaked:\n{text}");
    }
}

/// Host-wide secrets (/etc/shadow, sudoers, ssh host keys) are unreadable, even as root;
/// /etc/passwd stays readable (control).
#[test]
fn system_secrets_are_unreadable_even_as_root() {
    // The first line of the real shadow file, which only root can read on the host.
    let shadow_line = std::fs::read_to_string("/etc/shadow").ok().and_then(|s| s.lines().next().map(String::from));
    let passwd_line = std::fs::read_to_string("/etc/passwd").unwrap().lines().next().unwrap().to_string();
    for who in identities() {
        let env = Env::new(who);
        let out = env.run_sh(
            &[],
            "cat /etc/shadow /etc/gshadow /etc/shadow- 2>&1; cat /etc/sudoers 2>&1; \
             cat /etc/ssh/ssh_host_*_key 2>&1; ls /etc/ssl/private 2>&1; \
             python3 -c 'print(open(\"/etc/shadow\").read())' 2>&1; cat /etc/passwd",
        );
        let text = both(&out);
        assert!(text.contains(&passwd_line), "{who:?}: /etc/passwd was not readable (control):\n{text}");
        if let Some(line) = &shadow_line {
            assert!(!text.contains(line.as_str()), "{who:?}: /etc/shadow leaked:\n{text}");
        }
        assert!(!text.contains("PRIVATE KEY"), "{who:?}: an ssh host key leaked:\n{text}");
    }
}

/// Parses `env -0` output.
fn parse_env(out: &[u8]) -> BTreeMap<String, String> {
    out.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Secret-looking variables on ringfence's own environment.
const TOKENS: &[(&str, &str)] = &[
    ("GITHUB_TOKEN", "ghp_secret1"),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret2"),
    ("AWS_SESSION_TOKEN", "aws_secret3"),
    ("OPENAI_API_KEY", "sk-secret4"),
    ("ANTHROPIC_API_KEY", "sk-ant-secret5"),
    ("NPM_TOKEN", "npm_secret6"),
    ("DATABASE_PASSWORD", "db_secret7"),
    ("SSH_AUTH_SOCK", "/nonexistent/agent.sock"),
];

/// Runs `env -0` inside with the tokens set on ringfence, and returns the command's environment
/// and everything else it could see (its own and init's /proc environ).
fn inside_env(env: &Env, args: &[&str]) -> (BTreeMap<String, String>, String) {
    let mut cmd = env.run_command(
        args,
        &[
            "sh",
            "-c",
            "env -0; printf '\\n--\\n'; cat /proc/self/environ /proc/1/environ /proc/2/environ 2>&1 | tr '\\0' '\\n'",
        ],
    );
    for (k, v) in TOKENS {
        cmd.env(k, v);
    }
    cmd.env("AWS_REGION", "eu-west-9").env("MY_SETTING", "plain");
    let out = bounded_output(cmd, RUN_LIMIT);
    assert_code(&out, 0);
    let (vars, rest) = out.stdout.split_at(out.stdout.windows(4).position(|w| w == b"\n--\n").unwrap());
    (parse_env(vars), format!("{}{}", String::from_utf8_lossy(rest), stderr(&out)))
}

/// Tokens in ringfence's environment don't reach the command (nor init's /proc environ, which
/// holds the supervisor's copy); PATH, HOME and LANG do (control); `--env-keep NAME` keeps a
/// secret by exact name, and a glob keeps only the non-secret names it matches.
#[test]
fn secret_env_vars_are_dropped() {
    for who in identities() {
        let env = Env::new(who);
        let home = env.home.to_str().unwrap().to_string();

        let (vars, rest) = inside_env(&env, &[]);
        assert_eq!(vars.get("HOME"), Some(&home), "{who:?}: HOME did not pass: {vars:?}");
        assert_eq!(vars.get("LANG").map(String::as_str), Some("C.UTF-8"), "{who:?}: LANG did not pass");
        assert!(vars.get("PATH").is_some_and(|p| p.contains("/usr/bin")), "{who:?}: PATH did not pass");
        for (k, v) in TOKENS {
            assert!(!vars.contains_key(*k), "{who:?}: {k} reached the command");
            assert!(!rest.contains(v), "{who:?}: the value of {k} was readable through /proc:\n{rest}");
        }
        assert!(!vars.contains_key("AWS_REGION") && !vars.contains_key("MY_SETTING"), "{who:?}: not allow-listed");

        let (vars, _) = inside_env(&env, &["--env-keep", "GITHUB_TOKEN"]);
        assert_eq!(
            vars.get("GITHUB_TOKEN").map(String::as_str),
            Some("ghp_secret1"),
            "{who:?}: --env-keep GITHUB_TOKEN"
        );
        assert!(!vars.contains_key("OPENAI_API_KEY"), "{who:?}: keeping one token kept another");

        let (vars, _) = inside_env(&env, &["--env-keep", "AWS_*"]);
        assert_eq!(
            vars.get("AWS_REGION").map(String::as_str),
            Some("eu-west-9"),
            "{who:?}: AWS_* should keep AWS_REGION"
        );
        assert!(!vars.contains_key("AWS_SECRET_ACCESS_KEY"), "{who:?}: AWS_* kept AWS_SECRET_ACCESS_KEY");
        assert!(!vars.contains_key("AWS_SESSION_TOKEN"), "{who:?}: AWS_* kept AWS_SESSION_TOKEN");
    }
}

/// x86_64 system call numbers of the keyring interface.
const SYS_ADD_KEY: u32 = 248;
const SYS_REQUEST_KEY: u32 = 249;
const SYS_KEYCTL: u32 = 250;

/// A key in the identity's user keyring (-4), added on the host and invalidated on drop.
struct HostKey<'a> {
    env: &'a Env,
    id: i64,
    desc: String,
    payload: String,
}

impl<'a> HostKey<'a> {
    /// Adds the key and reads it back on the host: the control that the key is really there.
    fn add(env: &'a Env) -> HostKey<'a> {
        let desc = marker("key");
        let payload = marker("keypayload");
        let add = format!(
            "{PY_SYSCALL}\nkid = probe('add_key', {SYS_ADD_KEY}, b'user', b'{desc}', b'{payload}', {}, -4)\n\
             buf = ctypes.create_string_buffer(256)\n\
             n = probe('read', {SYS_KEYCTL}, 11, kid, buf, 256)\nprint('PAYLOAD', buf.value.decode())\nprint('ID', kid)",
            payload.len()
        );
        let host = env.host(&["python3", "-c", &add]);
        let text = both(&host);
        assert!(text.contains(&format!("PAYLOAD {payload}")), "{:?}: host control failed:\n{text}", env.who);
        let id = text.lines().find_map(|l| l.strip_prefix("ID ")).unwrap().trim().parse().unwrap();
        HostKey { env, id, desc, payload }
    }
}

impl Drop for HostKey<'_> {
    fn drop(&mut self) {
        let _ = self.env.host(&[
            "python3",
            "-c",
            &format!("{PY_SYSCALL}\nprobe('invalidate', {SYS_KEYCTL}, 21, {})", self.id),
        ]);
    }
}

/// The kernel keyring is off limits: a key the host put in the identity's user keyring can't
/// be read or found, and add_key, request_key and keyctl fail with EPERM. The host reads the
/// same key unconfined (control), and getpid through the same probe works (control).
#[test]
fn kernel_keyring_is_off_limits() {
    for who in identities() {
        let env = Env::new(who);
        let key = HostKey::add(&env);
        let (kid, desc) = (key.id, &key.desc);
        let probe = format!(
            "{PY_SYSCALL}\n\
             buf = ctypes.create_string_buffer(256)\n\
             probe('read_host_key', {SYS_KEYCTL}, 11, {kid}, buf, 256)\nprint('GOT', buf.value)\n\
             probe('search', {SYS_KEYCTL}, 10, -4, b'user', b'{desc}', 0)\n\
             probe('get_user_keyring', {SYS_KEYCTL}, 0, -4, 0)\n\
             probe('get_session_keyring', {SYS_KEYCTL}, 0, -3, 1)\n\
             probe('join_session', {SYS_KEYCTL}, 1, 0)\n\
             probe('add_key', {SYS_ADD_KEY}, b'user', b'x', b'y', 1, -2)\n\
             probe('request_key', {SYS_REQUEST_KEY}, b'user', b'{desc}', 0, -4)\n\
             probe('getpid', 39)"
        );
        let out = env.run_py(&[], &probe);
        let text = both(&out);
        let got = probe_results(&stdout(&out));
        assert_eq!(got.get("getpid").map(String::as_str), Some("OK"), "{who:?}: the probe itself failed:\n{text}");
        for call in [
            "read_host_key",
            "search",
            "get_user_keyring",
            "get_session_keyring",
            "join_session",
            "add_key",
            "request_key",
        ] {
            assert_eq!(got.get(call).map(String::as_str), Some("EPERM"), "{who:?}: {call}:\n{text}");
        }
        assert!(!text.contains(&key.payload), "{who:?}: the key's payload leaked:\n{text}");
    }
}

/// The host's keys are not even listed: /proc/keys and /proc/key-users inside don't show the
/// description of a key the host put in the identity's user keyring.
#[test]
fn kernel_keyring_is_not_listed() {
    for who in identities() {
        let env = Env::new(who);
        let key = HostKey::add(&env);
        let out = env.run_sh(&[], "cat /proc/keys /proc/key-users 2>&1; echo done");
        let text = both(&out);
        assert!(text.contains("done"), "{who:?}: the probe did not run:\n{text}");
        assert!(!text.contains(&key.desc), "{who:?}: the host key is listed in /proc/keys:\n{text}");
    }
}
