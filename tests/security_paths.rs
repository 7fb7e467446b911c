//! Threat 2, through the writable roots themselves: a link one run plants to redirect the next
//! run's workspace or `--write` root, writable roots in $HOME's configuration, program and cache
//! areas, and the files that make tools run code when a folder is opened. Every test runs as
//! root and as nobody, attacks from inside, and checks the host side; each has a positive
//! control (the same write where it is allowed, or a link no run can plant).
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::os::unix::fs::symlink;
use std::path::Path;

/// `ringfence run [args] -- sh -c script` started from `dir`, with `$PWD` naming it the way a
/// shell that went there keeps it.
fn run_from(env: &Env, dir: &Path, args: &[&str], script: &str) -> std::process::Output {
    let mut cmd = env.run_command(args, &["sh", "-c", script]);
    cmd.current_dir(dir).env("PWD", dir);
    bounded_output(cmd, RUN_LIMIT)
}

/// A folder owned by the identity that does not run ringfence, mode 0755: the run's identity
/// can't make links in it, so neither can a sandboxed run.
fn folder_of_another_user(env: &Env, name: &str) -> std::path::PathBuf {
    let dir = env.root.join(name);
    std::fs::create_dir(&dir).unwrap();
    let other = if env.who == Who::Nobody { 0 } else { NOBODY };
    std::os::unix::fs::chown(&dir, Some(other), Some(other)).unwrap();
    dir
}

/// Run 1 plants `project/sub -> ~/.config`; the user later runs ringfence from `project/sub`
/// (or with `-C sub`). The run is refused with exit 121, naming the link and the fix, and
/// nothing in ~/.config changes. Control: from the real folder, with the flag that allows it,
/// the same write lands, so the refusal is what stopped it.
#[test]
fn a_workspace_through_a_planted_link_is_refused() {
    for who in identities() {
        let env = Env::new(who);
        let config = env.home.join(".config");
        env.write(&config.join("app/settings"), "ORIGINAL\n");
        let sub = env.ws.join("sub");
        symlink(&config, &sub).unwrap();
        env.give(&sub);
        let before = snapshot(&config);
        let script = "echo evil > app/settings; echo evil > app/autostart.desktop; echo RAN";
        for out in [run_from(&env, &sub, &[], script), env.run_sh(&["-C", "sub"], script)] {
            assert_code(&out, 121);
            let err = stderr(&out);
            let link = format!("the link {} -> {}", sub.display(), config.display());
            assert!(err.contains(&link), "{who:?}: the message doesn't name the link:\n{err}");
            assert!(err.contains(&format!("cd {}", config.display())), "{who:?}: no fix in:\n{err}");
            assert!(!stdout(&out).contains("RAN"), "{who:?}: the command ran");
        }
        assert_eq!(snapshot(&config), before, "{who:?}: ~/.config changed");
        let out = run_from(&env, &config, &["--allow-writable-home-config"], "echo mine > app/other");
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(config.join("app/other")).unwrap(), "mine\n", "{who:?}: control");
    }
}

/// `--write ./cache` where an earlier run planted `cache -> ~/.local` is refused (exit 121,
/// naming the link and the real folder) and ~/.local is unchanged. Control: `--write` of a
/// plain folder in the workspace works.
#[test]
fn a_write_root_through_a_planted_link_is_refused() {
    for who in identities() {
        let env = Env::new(who);
        let local = env.home.join(".local");
        env.write(&local.join("share/app/data"), "ORIGINAL\n");
        env.write(&env.ws.join("build/.keep"), "");
        let cache = env.ws.join("cache");
        symlink(&local, &cache).unwrap();
        env.give(&cache);
        let before = snapshot(&local);
        let out = env.run_sh(&["--write", "./cache"], "echo evil > cache/share/app/data; mkdir -p cache/bin; echo RAN");
        assert_code(&out, 121);
        let err = stderr(&out);
        assert!(err.contains("--write ./cache"), "{who:?}: {err}");
        assert!(err.contains(&format!("the link {} -> {}", cache.display(), local.display())), "{who:?}: {err}");
        assert!(err.contains(&format!("name the real folder instead: {}", local.display())), "{who:?}: {err}");
        assert!(!stdout(&out).contains("RAN"));
        assert_eq!(snapshot(&local), before, "{who:?}: ~/.local changed");
        let out = env.run_sh(&["--write", "./build"], "echo made > build/out");
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(env.ws.join("build/out")).unwrap(), "made\n", "{who:?}: control");
    }
}

/// Links no run can plant keep working: a workspace reached through a link in a folder the
/// caller can't write (like /home -> /var/home), or in $HOME itself, and a `--write` through
/// such a link. The writes land in the real folders.
#[test]
fn links_no_run_can_plant_keep_working() {
    for who in identities() {
        let env = Env::new(who);
        let home_link = env.home.join("project-link");
        symlink(&env.ws, &home_link).unwrap();
        env.give(&home_link);
        let system = folder_of_another_user(&env, "system");
        symlink(&env.ws, system.join("ws")).unwrap();
        symlink(&env.outside, system.join("out")).unwrap();
        let out = run_from(&env, &system.join("ws"), &[], "echo one > via-system");
        assert_code(&out, 0);
        let out = run_from(&env, &home_link, &[], "echo two > via-home");
        assert_code(&out, 0);
        let out_dir = system.join("out");
        let out =
            env.run_sh(&["--write", path_str(&out_dir)], &format!("echo three > {}/via-write", path_str(&out_dir)));
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(env.ws.join("via-system")).unwrap(), "one\n", "{who:?}");
        assert_eq!(std::fs::read_to_string(env.ws.join("via-home")).unwrap(), "two\n", "{who:?}");
        assert_eq!(std::fs::read_to_string(env.outside.join("via-write")).unwrap(), "three\n", "{who:?}");
    }
}

/// Writable roots in $HOME's configuration, program and cache areas need
/// `--allow-writable-home-config`: without it the run is refused (exit 121) and nothing there
/// changes, also when the root is reached through a link (checked after resolving it). With
/// the flag the same write lands (control).
#[test]
fn home_areas_need_their_flag() {
    for who in identities() {
        let env = Env::new(who);
        for area in [".config/x", "go", ".cache/pip", ".local/lib"] {
            env.write(&env.home.join(area).join("keep"), "ORIGINAL\n");
        }
        let link = env.home.join("config-link");
        symlink(env.home.join(".config"), &link).unwrap();
        env.give(&link);
        let before = snapshot(&env.home);
        for (root, target) in [
            ("~/.config/x", ".config/x"),
            ("~/go", "go"),
            ("~/.cache/pip", ".cache/pip"),
            ("~/.local/lib", ".local/lib"),
            ("~/config-link/x", ".config/x"),
        ] {
            let script = format!("echo evil > ~/{target}/planted; echo evil > ~/{target}/keep; echo RAN");
            let out = env.run_sh(&["--write", root], &script);
            assert_code(&out, 121);
            assert!(stderr(&out).contains("--allow-writable-home-config"), "{who:?} {root}: {}", stderr(&out));
            assert!(!stdout(&out).contains("RAN"), "{who:?} {root}");
        }
        assert_eq!(snapshot(&env.home), before, "{who:?}: $HOME changed");
        let out = env.run_sh(&["--write", "~/config-link/x"], "true");
        assert!(stderr(&out).contains("after resolving links"), "{who:?}: {}", stderr(&out));
        let out = env.run_sh(&["--write", "~/.cache/pip"], "true");
        assert!(stderr(&out).contains("--cache pip"), "{who:?}: no pointer to the cache: {}", stderr(&out));
        let out =
            env.run_sh(&["--write", "~/.config/x", "--allow-writable-home-config"], "echo mine > ~/.config/x/new");
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(env.home.join(".config/x/new")).unwrap(), "mine\n", "{who:?}: control");
    }
}

/// Files in a project that tools read (and run code from) when the folder is opened.
const PROTECTED_FILES: &[&str] = &[
    ".mcp.json",
    ".nvim.lua",
    ".exrc",
    ".dir-locals.el",
    ".cargo/config.toml",
    ".cargo/config",
    "rust-toolchain.toml",
    "rust-toolchain",
    ".npmrc",
    ".yarnrc.yml",
    ".pnpmfile.cjs",
    ".claude/settings.json",
    ".cursor/mcp.json",
    ".gemini/settings.json",
    ".codex/config.toml",
    ".helix/config.toml",
    ".devcontainer/devcontainer.json",
];

/// Each of them, present in the workspace, can't be written, replaced or removed from inside,
/// and stays as it was on the host; the agents' and editors' folders can't get new files either.
/// Absent, those folders can't be created (a read-only placeholder holds the name for the run,
/// and is gone afterwards). Control: an ordinary file next to them is written.
#[test]
fn files_that_run_code_when_a_folder_is_opened_stay_read_only() {
    for who in identities() {
        let env = Env::new(who);
        for name in PROTECTED_FILES {
            env.write(&env.ws.join(name), &format!("ORIGINAL {name}\n"));
        }
        env.write(&env.ws.join("notes.txt"), "old\n");
        let before: Vec<_> = PROTECTED_FILES.iter().map(|n| std::fs::read(env.ws.join(n)).unwrap()).collect();
        let attacks: Vec<String> = PROTECTED_FILES
            .iter()
            .map(|n| format!("echo evil > {n}; echo evil >> {n}; rm -f {n}; mv {n} {n}.old; ln -sf /etc/passwd {n}"))
            .collect();
        let script = format!(
            "{} ; echo evil > .claude/hooks.json; mkdir .cursor/rules; echo new > notes.txt; echo CONTROL-OK",
            attacks.join(" ; ")
        );
        let out = env.run_sh(&[], &script);
        assert!(stdout(&out).contains("CONTROL-OK"), "{who:?}: {}", both(&out));
        for (name, content) in PROTECTED_FILES.iter().zip(&before) {
            assert_eq!(&std::fs::read(env.ws.join(name)).unwrap(), content, "{who:?}: {name} changed");
            assert!(!env.ws.join(format!("{name}.old")).exists(), "{who:?}: {name} was moved");
        }
        assert!(!env.ws.join(".claude/hooks.json").exists() && !env.ws.join(".cursor/rules").exists(), "{who:?}");
        assert_eq!(std::fs::read_to_string(env.ws.join("notes.txt")).unwrap(), "new\n", "{who:?}: control");

        let fresh = Env::new(who);
        let script = "mkdir -p .claude .devcontainer; echo '{\"hooks\":1}' > .claude/settings.json; \
                      echo x > .devcontainer/devcontainer.json; echo ok > other; echo CONTROL-OK";
        let out = fresh.run_sh(&[], script);
        assert!(stdout(&out).contains("CONTROL-OK"), "{who:?}: {}", both(&out));
        for dir in [".claude", ".devcontainer", ".cursor", ".gemini", ".codex", ".helix"] {
            assert!(!fresh.ws.join(dir).exists(), "{who:?}: {dir} was created or its placeholder left");
        }
        assert!(fresh.ws.join("other").exists(), "{who:?}: control");
    }
}
