//! Threat 1, secrets beyond the built-in names: the newer entries of the secret list, stores
//! the launch-time scan finds by their names and browser or Electron profiles by what they
//! hold, and the same home folder under a second mount. Every test runs as root and as nobody,
//! tries to read from inside with real programs, and has a readable neighbour as control.
#![cfg(target_os = "linux")]

mod common;
use common::*;

/// Newer entries of the secret list, relative to $HOME.
const LISTED: &[&str] = &[
    ".yarnrc",
    ".terraformrc",
    ".config/glab-cli/config.yml",
    ".kaggle/kaggle.json",
    ".gemini/oauth_creds.json",
    ".claude.json",
    ".pulumi/credentials.json",
    ".fly/config.yml",
    ".config/configstore/firebase-tools.json",
    ".config/composer/auth.json",
    ".composer/auth.json",
    ".config/pip/pip.conf",
    ".pip/pip.conf",
    ".pki/nssdb/cert9.db",
    ".local/share/kwalletd/kdewallet.kwl",
    ".kde/share/apps/kwallet/kdewallet.kwl",
    ".config/Slack/Cookies",
    ".config/discord/Local Storage/leveldb/000003.log",
    ".config/opera/Login Data",
    ".viminfo",
    ".var/app/com.slack.Slack/config/Slack/Cookies",
    "snap/firefox/common/.mozilla/firefox/x.default/logins.json",
];

/// Found by the scan: by name, and folders holding a browser or Electron profile.
const PATTERN: &[&str] = &[
    ".config/sometool/credentials.json",
    ".config/othertool/api_token",
    ".config/SomeApp/Cookies",
    ".config/SomeApp/Preferences",
    ".config/Chat/Local State",
    ".config/Chat/IndexedDB/data",
    ".local/share/python_keyring/keyring_pass.cfg",
    ".mytool/client-key.pem",
    ".rediscli_history",
    ".librewolf/profiles.ini",
    ".librewolf/abc.default/cookies.sqlite",
];

/// Neighbours that stay readable.
const NEIGHBOURS: &[&str] =
    &[".config/sometool/config.toml", ".config/othertool/settings.json", ".mytool/config", ".local/share/app/data"];

fn plant(env: &Env, files: &[&str], prefix: &str) {
    for f in files {
        env.write(&env.home.join(f), &format!("{prefix}-{f}\n"));
    }
}

/// Reads everything below `dirs` every way a command might (cat of each file, find, tar) and
/// prints it; returns the run's output.
fn read_all(env: &Env, dirs: &str) -> String {
    let script = format!(
        "for d in {dirs}; do find \"$d\" -type f -exec cat {{}} + 2>&1; tar cf - \"$d\" 2>/dev/null | tr -c '[:print:]\\n' ' '; done; true"
    );
    both(&env.run_sh(&[], &script))
}

/// Each newer list entry, and each store the scan finds, is unreadable inside, while its
/// neighbours are readable (control); `ringfence explain` names what the scan hid and why.
#[test]
fn stores_by_name_and_profiles_are_hidden() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("pat");
        plant(&env, LISTED, &format!("SECRET{tag}"));
        plant(&env, PATTERN, &format!("SECRET{tag}"));
        plant(&env, NEIGHBOURS, &format!("VISIBLE{tag}"));
        let text = read_all(&env, "~/.[a-z]* ~/.[A-Z]* ~/snap");
        for n in NEIGHBOURS {
            assert!(text.contains(&format!("VISIBLE{tag}-{n}")), "{who:?}: {n} was not readable (control):\n{text}");
        }
        assert!(!text.contains(&format!("SECRET{tag}")), "{who:?}: a secret leaked:\n{text}");
        for f in LISTED.iter().chain(PATTERN) {
            let out = env.run_argv(&[], &["cat", &format!("{}/{f}", path_str(&env.home))]);
            assert!(!stdout(&out).contains("SECRET"), "{who:?}: {f} was readable");
        }
        let explain = stdout(&env.ringfence(&["explain"]));
        for hidden in [".config/sometool/credentials.json", ".config/SomeApp", ".config/Chat", ".librewolf"] {
            let line = format!("{}/{hidden} ", path_str(&env.home));
            assert!(explain.contains(&line), "{who:?}: explain doesn't list {hidden}:\n{explain}");
        }
        assert!(explain.contains("secret pattern: a browser or Electron profile (holds Cookies)"), "{who:?}");
        assert!(explain.contains("secret pattern: the name matches `credential`"), "{who:?}");
    }
}

/// The same home folder under a second mount (a bind of $HOME elsewhere, as a bind of /home or
/// a WSL drive would show it) gets the same secret rules: the alias's secrets, listed and
/// found by the scan, are unreadable inside, its ordinary files readable. Controls: without
/// ringfence the alias shows the secret; and a writable root on the alias is refused like one
/// on $HOME's areas. The bind lives in the test's own mount namespace.
#[test]
fn a_second_mount_of_home_is_masked_too() {
    if !is_root() {
        return;
    }
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("alias");
        plant(&env, &[".ssh/id_rsa", ".config/sometool/credentials.json"], &format!("SECRET{tag}"));
        plant(&env, &["notes.txt"], &format!("VISIBLE{tag}"));
        let alias = env.root.join("alias");
        std::fs::create_dir_all(&alias).unwrap();
        env.chown_all();
        let bind = format!("mount --bind {} {} && exec \"$@\"", path_str(&env.home), path_str(&alias));
        let prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", bind.as_str(), "sh"];
        let files = ["notes.txt", ".ssh/id_rsa", ".config/sometool/credentials.json"];
        let cats: Vec<String> = files.iter().map(|f| format!("cat {}/{f} 2>&1;", path_str(&alias))).collect();
        let script = format!("{} true", cats.join(" "));
        let run = |args: &[&str]| {
            let mut argv: Vec<&std::ffi::OsStr> = vec![binary().as_os_str(), "run".as_ref()];
            argv.extend(args.iter().map(std::ffi::OsStr::new));
            argv.extend(["--", "sh", "-c", script.as_str()].map(std::ffi::OsStr::new));
            bounded_output(env.command_via(&prefix, &argv), RUN_LIMIT)
        };
        let out = run(&[]);
        let text = both(&out);
        assert!(
            text.contains(&format!("VISIBLE{tag}")),
            "{who:?}: the alias's ordinary file was not readable:\n{text}"
        );
        assert!(!text.contains(&format!("SECRET{tag}")), "{who:?}: a secret leaked through the alias:\n{text}");
        let unsandboxed = ["sh".as_ref(), "-c".as_ref(), std::ffi::OsStr::new(&script)];
        let host = bounded_output(env.command_via(&prefix, &unsandboxed), RUN_LIMIT);
        assert!(
            both(&host).contains(&format!("SECRET{tag}")),
            "{who:?}: the alias shows no secret (control):\n{}",
            both(&host)
        );
        let config = format!("{}/.config/sometool", path_str(&alias));
        let out = run(&["--write", &config]);
        assert_code(&out, 121);
        assert!(stderr(&out).contains("second mount"), "{who:?}: {}", stderr(&out));
    }
}
