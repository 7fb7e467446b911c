//! Threat 2, planting code that runs later outside the sandbox, through git and the tools that
//! read files in a workspace: what the post-run review of the writable roots moves aside or
//! rebuilds, what the plan keeps read-only in advance (files git configs include, the folders
//! `core.hooksPath` names), and what Landlock refuses (FIFOs). Every test plants from inside
//! the sandbox, then uses the REAL git on the host as the same identity, and checks that the
//! planted program did not run (it would create a marker file outside the writable roots).
//! The control: the same plant made without ringfence does run it.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// Commits need an identity; the system config is not the test's business.
const PRELUDE: &str = "export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t \
                       GIT_COMMITTER_EMAIL=t@example.invalid GIT_CONFIG_NOSYSTEM=1; ";

fn p(path: &Path) -> &str {
    path_str(path)
}

/// Where a planted program leaves its mark: outside every writable root, so only a program
/// run on the host can create it.
fn marker(env: &Env) -> PathBuf {
    env.outside.join("pwned")
}

/// A script that plants; `M` in it stands for the marker's path.
fn script(env: &Env, text: &str) -> String {
    format!("{PRELUDE}{}", text.replace(" M", &format!(" {}", p(&marker(env)))))
}

/// `git ARGS` on the host, as the run's identity, in the workspace.
fn host_git(env: &Env, args: &[&str]) -> Output {
    let mut argv = vec!["git", "-c", "safe.directory=*", "-c", "user.name=t", "-c", "user.email=t@example.invalid"];
    argv.extend_from_slice(args);
    let mut cmd = env.host_command(&argv);
    cmd.env("GIT_CONFIG_NOSYSTEM", "1");
    bounded_output(cmd, RUN_LIMIT)
}

/// A shell on the host, as the run's identity, in the workspace.
fn host_sh(env: &Env, text: &str) -> Output {
    env.host(&["sh", "-c", &script(env, text)])
}

/// One attack: `prepare` on the host, `plant` in the workspace, then `use_it` on the host.
struct Attack<'a> {
    name: &'a str,
    prepare: &'a str,
    plant: &'a str,
    use_it: &'a dyn Fn(&Env) -> Output,
}

impl Attack<'_> {
    /// Runs the attack for every identity: without ringfence (the control: the planted
    /// program runs) and with it (it must not). Returns the sandboxed runs.
    fn check(&self) -> Vec<(Env, Output)> {
        let mut runs = Vec::new();
        for who in identities() {
            let control = Env::new(who);
            self.setup(&control);
            let planted = host_sh(&control, self.plant);
            let used = (self.use_it)(&control);
            assert!(
                marker(&control).exists(),
                "{who:?} {}: control: the plant did not run without ringfence\n{}{}",
                self.name,
                both(&planted),
                both(&used)
            );
            let env = Env::new(who);
            self.setup(&env);
            let out = env.run_sh(&[], &script(&env, self.plant));
            let used = (self.use_it)(&env);
            assert!(
                !marker(&env).exists(),
                "{who:?} {}: the host's git ran what the command planted\n--- run\n{}--- host\n{}",
                self.name,
                both(&out),
                both(&used)
            );
            runs.push((env, out));
        }
        runs
    }

    fn setup(&self, env: &Env) {
        let out = host_sh(env, self.prepare);
        assert!(out.status.success(), "{} setup: {}", self.name, both(&out));
    }
}

/// A repository with one commit, made on the host before the run.
const REPO: &str = "git init -q . && git commit -q --allow-empty -m a";
const HOOK: &str = "printf '#!/bin/sh\\ntouch M\\n'";

/// A name the review moves things aside to, taken in advance by a folder, can't keep a hook or
/// a `commondir` in place: the review takes the next free name.
#[test]
fn a_taken_quarantine_name_does_not_keep_a_plant_in_place() {
    let new_repo = format!(
        "git init -q . && mkdir .git/hooks/pre-commit.ringfence-quarantined && {HOOK} > .git/hooks/pre-commit && \
         chmod +x .git/hooks/pre-commit"
    );
    let runs = Attack {
        name: "new repository",
        prepare: "true",
        plant: &new_repo,
        use_it: &|env| host_git(env, &["commit", "-q", "--allow-empty", "-m", "x"]),
    }
    .check();
    for (env, out) in runs {
        assert_code(&out, 0);
        assert!(env.ws.join(".git/hooks/pre-commit.ringfence-quarantined.1").exists(), "{}", both(&out));
    }
    let commondir = "mkdir -p evil && cp -r .git/objects .git/refs evil/ && \
                     printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch M\\n' > evil/config && \
                     mkdir .git/commondir.ringfence-quarantined && echo \"$PWD/evil\" > .git/commondir";
    Attack { name: "existing repository", prepare: REPO, plant: commondir, use_it: &|env| host_git(env, &["status"]) }
        .check();
}

/// A command that takes away the permissions the review needs (a `.git` it can't list, a
/// hooks folder or config it can't read) doesn't blind it: as the folder's owner the review
/// gives them back, reviews, and says so. The host user restoring the permissions later
/// (chmod) finds nothing planted.
#[test]
fn removing_permissions_does_not_blind_the_review() {
    let cases = [
        ("0311 .git", format!("git init -q . && {HOOK} > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && chmod 0311 .git"), "true"),
        ("000 hooks", format!("git init -q . && {HOOK} > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && chmod 000 .git/hooks"), "true"),
        ("000 config", "git init -q . && git config core.fsmonitor 'touch M' && chmod 000 .git/config".to_string(), "true"),
        ("0311 existing .git", "mkdir -p evil && cp -r .git/objects .git/refs evil/ && printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch M\\n' > evil/config && echo \"$PWD/evil\" > .git/commondir && chmod 0311 .git".to_string(), REPO),
    ];
    for (name, plant, prepare) in cases {
        let use_it = |env: &Env| {
            let fixed = host_sh(env, "chmod -R u+rwX .git");
            assert!(fixed.status.success(), "{}", both(&fixed));
            host_git(env, &["commit", "-q", "--allow-empty", "-m", "x"]);
            host_git(env, &["status"])
        };
        let runs = Attack { name, prepare, plant: &plant, use_it: &use_it }.check();
        for (env, out) in runs {
            assert_code(&out, 0);
            if env.who == Who::Nobody {
                assert!(stderr(&out).contains("given back"), "{name}: the review did not say so:\n{}", both(&out));
            }
        }
    }
}

/// A gitlink added to the index for a nested repository whose own config runs a program: the
/// user's top-level `git status` recurses into it.
#[test]
fn a_nested_repository_behind_a_gitlink_runs_nothing() {
    let plant = "git init -q sub && echo x > sub/a && git -C sub add a && git -C sub commit -q -m s && \
                 git -C sub config core.fsmonitor 'touch M' && git add sub";
    Attack { name: "gitlink", prepare: REPO, plant, use_it: &|env| host_git(env, &["status"]) }.check();
}

/// A repository anywhere in the tree (under node_modules here) is reviewed like the top one:
/// `git -C node_modules/pkg status` on the host runs nothing the command configured.
#[test]
fn a_nested_repository_anywhere_runs_nothing() {
    let plant = "mkdir -p node_modules/pkg && git init -q node_modules/pkg && echo x > node_modules/pkg/a && \
                 git -C node_modules/pkg add a && git -C node_modules/pkg commit -q -m p && \
                 git -C node_modules/pkg config core.fsmonitor 'touch M'";
    Attack {
        name: "nested",
        prepare: "true",
        plant,
        use_it: &|env| host_git(env, &["-C", "node_modules/pkg", "status"]),
    }
    .check();
}

/// A folder made to look like a bare repository (HEAD, objects, refs) is one for git: its
/// config is reviewed too.
#[test]
fn a_bare_repository_lookalike_runs_nothing() {
    let plant = "mkdir -p tools/evil/objects tools/evil/refs && echo 'ref: refs/heads/main' > tools/evil/HEAD && \
                 printf '[alias]\\n\\tst = !touch M\\n' > tools/evil/config";
    Attack {
        name: "bare lookalike",
        prepare: "true",
        plant,
        use_it: &|env| host_git(env, &["-C", "tools/evil", "st"]),
    }
    .check();
}

/// A local repository the command made as a remote: its hooks would run on the user's push.
/// The review moves them aside, and drops the remote URL that points into a writable root.
#[test]
fn a_local_remote_made_by_the_command_runs_nothing_on_push() {
    let plant = format!(
        "git init -q --bare remote.git && {HOOK} > remote.git/hooks/post-receive && \
         chmod +x remote.git/hooks/post-receive && git init -q work && git -C work commit -q --allow-empty -m w && \
         git -C work remote add origin \"$PWD/remote.git\""
    );
    let runs = Attack {
        name: "local remote",
        prepare: "true",
        plant: &plant,
        use_it: &|env| host_git(env, &["-C", "work", "push", "-q", "origin", "HEAD:refs/heads/main"]),
    }
    .check();
    for (env, out) in runs {
        let url = host_git(&env, &["-C", "work", "config", "--get", "remote.origin.url"]);
        assert!(stdout(&url).trim().is_empty(), "the remote URL into the workspace was kept:\n{}", both(&out));
    }
}

/// `ext::` remotes run any command on fetch where the user allows the protocol (here in the
/// host's global config): one in a config the command wrote, or in a legacy `.git/remotes`
/// file, is dropped.
#[test]
fn ext_remotes_run_nothing_on_fetch() {
    let prepare_global = "printf '[protocol \"ext\"]\\n\\tallow = always\\n' > \"$HOME/.gitconfig\"";
    let cases = [
        ("config", "true", "git init -q work && git -C work remote add origin 'ext::sh -c touch% M'", "work", "origin"),
        (
            "remotes file",
            REPO,
            "mkdir -p .git/remotes && echo 'URL: ext::sh -c touch% M' > .git/remotes/evil",
            ".",
            "evil",
        ),
    ];
    for (name, repo, plant, dir, remote) in cases {
        let prepare = format!("{prepare_global} && {repo}");
        let use_it = |env: &Env| host_git(env, &["-C", dir, "fetch", remote]);
        Attack { name, prepare: &prepare, plant, use_it: &use_it }.check();
    }
}

/// A file the repository's config includes (`include.path`) stays read-only during the run,
/// tracked or absent: a `core.fsmonitor` added there would run on the user's `git status`.
#[test]
fn files_a_config_includes_stay_read_only() {
    let prepare = format!(
        "{REPO} && printf '[user]\\n\\tname = me\\n' > shared.gitconfig && git add shared.gitconfig && \
         git commit -q -m s && git config include.path ../shared.gitconfig && \
         git config --add include.path ../absent.gitconfig"
    );
    let plant = "printf '[core]\\n\\tfsmonitor = touch M\\n' >> shared.gitconfig; \
                 printf '[core]\\n\\tfsmonitor = touch M\\n' > absent.gitconfig; true";
    let runs = Attack { name: "include", prepare: &prepare, plant, use_it: &|env| host_git(env, &["status"]) }.check();
    for (env, out) in runs {
        assert_eq!(std::fs::read_to_string(env.ws.join("shared.gitconfig")).unwrap(), "[user]\n\tname = me\n");
        assert!(!env.ws.join("absent.gitconfig").exists(), "the placeholder was left:\n{}", both(&out));
    }
    // The included file is reached through a link in the workspace, which the run points
    // elsewhere: the file it now reaches is reviewed after the run.
    let prepare = format!(
        "{REPO} && mkdir real && printf '[user]\\n\\tname = me\\n' > real/team.cfg && ln -s real conf && \
         git config include.path ../conf/team.cfg"
    );
    let plant =
        "mkdir evil && printf '[core]\\n\\tfsmonitor = touch M\\n' > evil/team.cfg && rm conf && ln -s evil conf";
    let use_it = |env: &Env| host_git(env, &["status"]);
    Attack { name: "include through a link", prepare: &prepare, plant, use_it: &use_it }.check();
}

/// `core.hooksPath` set in an included file (through `includeIf`, in the repository's config
/// or in the user's global one) names a folder that stays read-only like `.git/hooks`.
#[test]
fn hooks_paths_set_in_included_files_stay_read_only() {
    let repo_include = format!(
        "{REPO} && mkdir -p tools/hooks && printf '[core]\\n\\thooksPath = tools/hooks\\n' > tools/git.cfg && \
         git config includeIf.gitdir:/.path ../tools/git.cfg"
    );
    let global_include = format!(
        "{REPO} && printf '[includeIf \"gitdir:/\"]\\n\\tpath = ~/team.gitconfig\\n' > \"$HOME/.gitconfig\" && \
         printf '[core]\\n\\thooksPath = .githooks\\n' > \"$HOME/team.gitconfig\""
    );
    let plant = format!(
        "for d in tools/hooks .githooks; do mkdir -p $d; {HOOK} > $d/pre-commit; chmod +x $d/pre-commit; done; true"
    );
    for (name, prepare) in [("repository includeIf", &repo_include), ("global includeIf", &global_include)] {
        let use_it = |env: &Env| host_git(env, &["commit", "-q", "--allow-empty", "-m", "x"]);
        Attack { name, prepare, plant: &plant, use_it: &use_it }.check();
    }
    // A relative hooks folder in the global config is one in every repository, a nested one
    // the command creates included.
    let nested = format!(
        "git init -q sub && git -C sub commit -q --allow-empty -m s && mkdir -p sub/.githooks && \
         {HOOK} > sub/.githooks/pre-commit && chmod +x sub/.githooks/pre-commit"
    );
    let prepare = "printf '[core]\\n\\thooksPath = .githooks\\n' > \"$HOME/.gitconfig\"";
    let use_it = |env: &Env| host_git(env, &["-C", "sub", "commit", "-q", "--allow-empty", "-m", "x"]);
    Attack { name: "global relative hooksPath", prepare, plant: &nested, use_it: &use_it }.check();
}

/// An interactive rebase the command left stopped, with an `exec` line it added: the user's
/// `git rebase --continue` would run it. The rebase state is moved aside.
#[test]
fn rebase_exec_lines_left_by_the_command_do_not_run() {
    let prepare = "git init -q . && for i in 1 2 3; do echo $i > f$i && git add f$i && git commit -q -m c$i; done";
    let plant =
        "printf '#!/bin/sh\\nsed -i -e 1s/^pick/edit/ \"$1\"\\necho \"exec touch M\" >> \"$1\"\\n' > .git/ed && \
                 chmod +x .git/ed && GIT_SEQUENCE_EDITOR=.git/ed git rebase -q -i HEAD~2; test -d .git/rebase-merge";
    let runs =
        Attack { name: "rebase exec", prepare, plant, use_it: &|env| host_git(env, &["rebase", "--continue"]) }.check();
    for (_, out) in runs {
        assert_code(&out, 0);
        assert!(stderr(&out).contains("rebase-merge"), "{}", both(&out));
    }
}

/// A cherry-pick the command left stopped, with its options changed to a merge strategy that
/// is a program in the workspace (on the user's PATH): `git cherry-pick --continue` would run
/// it. The sequencer state is moved aside.
#[test]
fn sequencer_options_left_by_the_command_do_not_run() {
    let prepare = "git init -q . && echo base > f && git add f && git commit -q -m base && git checkout -q -b side && \
                   echo side > f && git commit -q -am side && echo g > g && git add g && git commit -q -m g && \
                   git checkout -q - && echo main > f && git commit -q -am main";
    let plant = "git cherry-pick side~1 side >/dev/null 2>&1; \
                 printf '[options]\\n\\tstrategy = pwn\\n' > .git/sequencer/opts && mkdir -p bin && \
                 printf '#!/bin/sh\\ntouch M\\nexit 0\\n' > bin/git-merge-pwn && chmod +x bin/git-merge-pwn";
    let use_it = |env: &Env| {
        host_sh(env, "echo resolved > f && git add f");
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", p(&env.ws.join("bin")));
        let identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"];
        let mut argv = vec!["git", "-c", "safe.directory=*"];
        argv.extend(identity);
        argv.extend(["cherry-pick", "--continue"]);
        let mut cmd = env.host_command(&argv);
        cmd.env("PATH", path).env("GIT_EDITOR", "true");
        bounded_output(cmd, RUN_LIMIT)
    };
    Attack { name: "sequencer", prepare, plant, use_it: &use_it }.check();
}

/// Files that tools run wherever they are (`.envrc`, `.vscode/tasks.json`), made in nested
/// folders, are moved aside and reported as `protected-file`; other files stay.
#[test]
fn nested_protected_files_are_moved_aside() {
    let plant =
        "mkdir -p sub pkg/.vscode && echo 'touch M' > sub/.envrc && echo '{\"tasks\": []}' > pkg/.vscode/tasks.json \
                 && echo keep > sub/notes.txt";
    // What direnv does on `cd sub`.
    let use_it = |env: &Env| host_sh(env, "test ! -f sub/.envrc || . ./sub/.envrc");
    for who in identities() {
        let env = Env::new(who);
        let events = env.root.join("events.jsonl");
        let out = env.run_sh(&["--events", p(&events)], &script(&env, plant));
        use_it(&env);
        assert_code(&out, 0);
        assert!(!marker(&env).exists(), "{who:?}: the nested .envrc ran:\n{}", both(&out));
        assert!(!env.ws.join("pkg/.vscode/tasks.json").exists(), "{who:?}:\n{}", both(&out));
        assert!(env.ws.join("sub/.envrc.ringfence-quarantined").exists() && env.ws.join("sub/notes.txt").exists());
        let log = std::fs::read_to_string(&events).unwrap();
        assert!(log.contains("\"rule\":\"protected-file\""), "{who:?}: no policy.deny event:\n{log}");
    }
    let control = Env::new(identities()[0]);
    host_sh(&control, plant);
    use_it(&control);
    assert!(marker(&control).exists(), "control: the nested .envrc did not run without ringfence");
}

/// No FIFO can be made in a writable root (Landlock), where one at `.gitignore` or in `.git`
/// would hang the user's `git status`; /tmp still allows them. In a writable root that lies in
/// the sandbox's /tmp (which keeps every right), the review moves a new FIFO aside.
#[test]
fn fifos_cannot_hang_host_git() {
    for who in identities() {
        let env = Env::new(who);
        host_sh(&env, REPO);
        let out = env.run_sh(&[], "mkfifo .gitignore; mkfifo .git/index.lock; mkfifo /tmp/f && echo TMP-FIFO-OK");
        assert!(stdout(&out).contains("TMP-FIFO-OK"), "{who:?}: no FIFO in /tmp (control):\n{}", both(&out));
        assert_eq!(stderr(&out).matches("Permission denied").count(), 2, "{who:?}:\n{}", both(&out));
        let status = host_sh(&env, "timeout 10 git -c safe.directory='*' status >/dev/null; echo rc=$?");
        assert!(stdout(&status).contains("rc=0"), "{who:?}: host git status: {}", both(&status));

        let tmp_root = PathBuf::from(format!("/tmp/{}", marker_name("fifo")));
        std::fs::create_dir_all(&tmp_root).unwrap();
        env.give(&tmp_root);
        let out = env.run_sh(&["--write", p(&tmp_root)], &format!("mkfifo {}/.gitignore && echo MADE", p(&tmp_root)));
        let made = stdout(&out).contains("MADE");
        let left = std::fs::symlink_metadata(tmp_root.join(".gitignore"));
        let _ = std::fs::remove_dir_all(&tmp_root);
        assert!(made && left.is_err(), "{who:?}: the FIFO in a /tmp root stayed:\n{}", both(&out));
        assert!(stderr(&out).contains(".gitignore"), "{who:?}: not reported:\n{}", both(&out));
    }
    // Control: a FIFO at .gitignore hangs git.
    let env = Env::new(identities()[0]);
    let hang = host_sh(&env, &format!("{REPO} && mkfifo .gitignore && timeout 2 git status >/dev/null; echo rc=$?"));
    assert!(stdout(&hang).contains("rc=124"), "control: git did not hang: {}", both(&hang));
}

fn marker_name(tag: &str) -> String {
    common::marker(tag)
}

/// 1,000 hard links to one 1 MiB config, as the configs of 1,000 submodule git directories:
/// the review reads the file once, so the run that makes them and the next one stay small and
/// quick.
#[test]
fn hard_linked_configs_cost_once() {
    let plant = concat!(
        "import os, subprocess\n",
        "subprocess.run(['git', 'init', '-q', '.'], check=True)\n",
        "open('big.cfg', 'w').write('[core]\\n\\tbare = false\\n' + '#' * 1040000 + '\\n')\n",
        "def plant(m): os.makedirs(m + '/objects'); os.makedirs(m + '/refs'); ",
        "open(m + '/HEAD', 'w').write('ref: refs/heads/main\\n'); os.link('big.cfg', m + '/config')\n",
        "for i in range(1000): plant(f'.git/modules/m{i}')\n",
    );
    for who in identities() {
        let env = Env::new(who);
        let measure = |argv: &str| {
            let out = bounded_output(env.host_sh(&format!("/usr/bin/time -v \"$RF\" run -- {argv}")), RUN_LIMIT);
            let text = stderr(&out);
            let field = |name: &str| {
                text.lines().find_map(|l| l.trim().strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
            };
            let rss_kb: u64 = field("Maximum resident set size (kbytes):").parse().unwrap_or(u64::MAX);
            let wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss):");
            let secs: f64 = wall.rsplit(':').next().unwrap_or("").parse().unwrap_or(f64::MAX);
            (out, rss_kb, secs)
        };
        let (out, rss, secs) = measure(&format!("python3 -c \"{plant}\""));
        assert!(out.status.success() && env.ws.join(".git/modules/m999/config").exists(), "{who:?}: {}", both(&out));
        assert!(rss < 64 * 1024 && secs < 10.0, "{who:?}: the planting run took {rss} KiB, {secs} s");
        let (out, rss, secs) = measure("true");
        assert!(out.status.success(), "{who:?}: {}", both(&out));
        assert!(rss < 64 * 1024 && secs < 5.0, "{who:?}: the next run took {rss} KiB, {secs} s:\n{}", both(&out));
        eprintln!("{who:?}: the run after 1,000 linked configs: {rss} KiB, {secs} s");
    }
}

/// What the review can't review ends the run with exit 120, a message naming the path, and a
/// `run.end` event with reason `review-failed`: here a hook the caller can't move aside or
/// remove (its folder made immutable on the host during the run), and a tree deeper than the
/// review goes. Control: the same run without the obstacle exits 0.
#[test]
fn what_the_review_cannot_review_fails_the_run() {
    for who in identities() {
        let env = Env::new(who);
        let events = env.root.join("events.jsonl");
        let plant = "mkdir -p sub && echo evil > sub/.envrc && touch ready && while [ ! -e go ]; do sleep 0.05; done";
        let mut cmd = env.run_command(&["--events", p(&events)], &["sh", "-c", plant]);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        wait_until("the plant", Duration::from_secs(10), || env.ws.join("ready").exists());
        let chattr = std::process::Command::new("chattr").arg("+i").arg(env.ws.join("sub")).status().unwrap();
        std::fs::write(env.ws.join("go"), "").unwrap();
        let out = collect_within(child, RUN_LIMIT);
        let _ = std::process::Command::new("chattr").arg("-i").arg(env.ws.join("sub")).status();
        let _ = std::fs::remove_dir_all(env.ws.join("sub"));
        assert!(chattr.success(), "chattr failed");
        assert_code(&out, 120);
        assert!(stderr(&out).contains(p(&env.ws.join("sub/.envrc"))), "{who:?}:\n{}", both(&out));
        assert!(stderr(&out).contains("help:"), "{who:?}: no remedy:\n{}", both(&out));
        let log = std::fs::read_to_string(&events).unwrap();
        let end = log.lines().last().unwrap_or("");
        assert!(end.contains("\"reason\":\"review-failed\"") && end.contains("\"status\":120"), "{who:?}: {end}");

        let deep = |n: usize| (1..=n).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/");
        let out = env.run_sh(&[], &format!("mkdir -p {}", deep(100)));
        assert_code(&out, 0);
        let out = env.run_sh(&[], &format!("mkdir -p x/{}", deep(140)));
        assert_code(&out, 120);
        assert!(stderr(&out).contains("folders deep"), "{who:?}:\n{}", both(&out));
    }
}

/// As an unprivileged caller: a folder owned by root that the caller may write into but not
/// list can't be reviewed, so the run fails (exit 120). Control: without it, exit 0.
#[test]
fn a_folder_the_caller_cannot_list_fails_the_run() {
    if !is_root() {
        return;
    }
    let env = Env::new(Who::Nobody);
    let out = env.run_sh(&[], "mkdir -p open && echo ok > open/.envrc.txt");
    assert_code(&out, 0);
    let bin = env.ws.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o333)).unwrap();
    let out = env.run_sh(&[], "echo evil > bin/.envrc && echo PLANTED");
    assert!(stdout(&out).contains("PLANTED"), "the plant failed (control):\n{}", both(&out));
    assert_code(&out, 120);
    assert!(stderr(&out).contains("another user owns this folder"), "{}", both(&out));
}

/// After a killed supervisor the cleaner runs the same review: a hook planted in a new
/// repository is moved aside all the same. Control: the hook existed while the run lasted.
#[test]
fn the_cleaner_reviews_after_a_killed_supervisor() {
    for who in identities() {
        let env = Env::new(who);
        let plant = format!(
            "{PRELUDE}git init -q . && printf '#!/bin/sh\\ntouch {}\\n' > .git/hooks/pre-commit && \
             chmod +x .git/hooks/pre-commit && touch ready && sleep 60",
            p(&marker(&env))
        );
        let mut cmd = env.run_command(&[], &["sh", "-c", &plant]);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        wait_until("the plant", Duration::from_secs(10), || env.ws.join("ready").exists());
        assert!(env.ws.join(".git/hooks/pre-commit").exists(), "{who:?}: no hook while running (control)");
        child.kill().unwrap();
        child.wait().unwrap();
        let hook = env.ws.join(".git/hooks/pre-commit");
        assert!(poll_until(Duration::from_secs(5), || !hook.exists()), "{who:?}: the hook stayed");
        host_git(&env, &["commit", "-q", "--allow-empty", "-m", "x"]);
        assert!(!marker(&env).exists(), "{who:?}: the host's git ran the hook");
    }
}

/// Ordinary git work inside the sandbox keeps working and survives the review untouched: a
/// commit, `git init`, a local `git clone`, `git submodule update`, `git worktree add`, and an
/// interactive rebase without exec lines. No warning is printed.
#[test]
fn ordinary_git_work_survives_the_review() {
    for who in identities() {
        let env = Env::new(who);
        let (upstream, lib) = (env.outside.join("upstream"), env.outside.join("lib"));
        let prepare = format!(
            "printf '[protocol \"file\"]\\n\\tallow = always\\n' > \"$HOME/.gitconfig\" && \
             for r in {up} {lib}; do git init -q $r && git -C $r commit -q --allow-empty -m r; done && \
             {REPO} && git commit -q --allow-empty -m b && git submodule -q add {lib} lib && git commit -q -m sub && \
             git submodule -q deinit -f lib && rm -rf .git/modules/lib && git submodule -q init",
            up = p(&upstream),
            lib = p(&lib)
        );
        let out = host_sh(&env, &prepare);
        assert!(out.status.success(), "{who:?} setup: {}", both(&out));
        let work = format!(
            "git submodule -q update && git worktree add -q wt -b wtb HEAD~2 && git init -q fresh && \
             git -C fresh commit -q --allow-empty -m f && git clone -q {up} clone && \
             GIT_SEQUENCE_EDITOR=true git rebase -q -i HEAD~1 && git commit -q --allow-empty -m in-sandbox && echo DONE",
            up = p(&upstream)
        );
        let out = env.run_sh(&[], &script(&env, &work));
        assert!(stdout(&out).contains("DONE"), "{who:?}: git work failed inside:\n{}", both(&out));
        assert_code(&out, 0);
        assert!(!stderr(&out).contains("warning"), "{who:?}: the review complained:\n{}", both(&out));
        for (dir, args) in [
            (".", vec!["log", "-1", "--format=%s"]),
            ("wt", vec!["status", "--short"]),
            ("lib", vec!["log", "-1"]),
            ("fresh", vec!["log", "-1"]),
        ] {
            let mut argv = vec!["-C", dir];
            argv.extend(args);
            let o = host_git(&env, &argv);
            assert!(o.status.success(), "{who:?}: host git in {dir}: {}", both(&o));
        }
        let url = host_git(&env, &["-C", "clone", "config", "--get", "remote.origin.url"]);
        assert_eq!(stdout(&url).trim(), p(&upstream), "{who:?}");
    }
}
