//! Threat 2, through shared caches: a package tool's cache holds code the host runs later (an
//! extracted crate's build.rs, a wheel, an npm tarball). `--cache NAME` shows the cache as an
//! overlay: reads see the host's cache, writes land in ringfence's own per-workspace layer, and
//! the host's cache stays byte for byte as it was. Every test runs as root and as nobody and
//! checks the host side; real npm and cargo run where they are installed.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const CRATE_DIR: &str = ".cargo/registry/src/index.crates.io-1949cf8c6b5b557f/foo-1.0.0";

/// A cargo registry as cargo leaves it after a build: a downloaded crate and its sources, and
/// a git checkout folder.
fn fill_cargo_registry(env: &Env, tag: &str) {
    env.write(&env.home.join(".cargo/git/db/.keep"), "");
    env.write(&env.home.join(CRATE_DIR).join("src/lib.rs"), &format!("pub fn host_{tag}() {{}}\n"));
    env.write(&env.home.join(CRATE_DIR).join("Cargo.toml"), "[package]\nname = \"foo\"\n");
    env.write(&env.home.join(".cargo/registry/cache/index.crates.io-1949cf8c6b5b557f/foo-1.0.0.crate"), tag);
}

/// Where this workspace's layers live on the host.
fn layers(env: &Env) -> PathBuf {
    env.home.join(".cache/ringfence/caches")
}

/// With `--cache cargo` the run reads the host's registry, and can add a build.rs to an
/// extracted crate, change and delete files and add a crate, all visible inside. Afterwards the
/// host's registry is unchanged byte for byte, while ~/.cargo outside the cache stays
/// read-only. A second run of the same workspace sees the first run's changes (they persist
/// in ringfence's own layer). Control: the reads and writes inside really happened.
#[test]
fn a_cache_overlay_keeps_the_host_cache_unchanged() {
    for who in identities() {
        let env = Env::new(who);
        let tag = marker("cache");
        fill_cargo_registry(&env, &tag);
        let before = snapshot(&env.home.join(".cargo"));
        let script = format!(
            "cd ~/{CRATE_DIR} && cat src/lib.rs && printf 'fn main() {{ planted() }}\\n' > build.rs && \
             echo 'pub fn sandbox() {{}}' > src/lib.rs && rm Cargo.toml && mkdir -p ../bar-2.0.0 && \
             echo new > ../bar-2.0.0/lib.rs && echo WRITES-OK; ls; echo evil > ~/.cargo/config.toml || echo CONFIG-REFUSED"
        );
        let out = env.run_sh(&["--cache", "cargo"], &script);
        let text = both(&out);
        assert!(text.contains(&format!("pub fn host_{tag}")), "{who:?}: the host's cache was not readable:\n{text}");
        assert!(text.contains("WRITES-OK") && text.contains("build.rs"), "{who:?}: writes failed inside:\n{text}");
        assert!(text.contains("CONFIG-REFUSED"), "{who:?}: ~/.cargo outside the cache was writable:\n{text}");
        assert_eq!(snapshot(&env.home.join(".cargo")), before, "{who:?}: the host's cache changed");
        let again = env.run_sh(
            &["--cache", "cargo"],
            &format!(
                "cd ~/{CRATE_DIR} && cat build.rs src/lib.rs && ls ../bar-2.0.0 && test ! -e Cargo.toml && echo SEEN"
            ),
        );
        let text = both(&again);
        assert!(
            text.contains("planted()") && text.contains("pub fn sandbox") && text.contains("SEEN"),
            "{who:?}:\n{text}"
        );
        assert_eq!(snapshot(&env.home.join(".cargo")), before, "{who:?}: the host's cache changed on the second run");
        // Without the overlay the registry is read-only, as any folder outside the workspace.
        let out = env.run_sh(&[], &format!("echo evil > ~/{CRATE_DIR}/build.rs || echo REFUSED"));
        assert!(stdout(&out).contains("REFUSED"), "{who:?}: {}", both(&out));
        assert_eq!(snapshot(&env.home.join(".cargo")), before, "{who:?}");
    }
}

/// The npm preset brings npm's cache, and real npm adds a package to it offline; `npm cache ls`
/// lists it in the next run. The host's ~/.npm is unchanged, and the preset shows in explain.
#[test]
fn npm_adds_to_its_cache_through_the_overlay() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.home.join(".npm/_cacache/host-entry"), "HOST\n");
        env.write(&env.ws.join("pkg/package/package.json"), "{\"name\":\"rf-local-pkg\",\"version\":\"1.0.0\"}\n");
        let tar = std::process::Command::new("tar")
            .args(["czf", path_str(&env.ws.join("pkg.tgz")), "-C", path_str(&env.ws.join("pkg")), "package"])
            .status()
            .unwrap();
        assert!(tar.success());
        env.chown_all();
        let before = snapshot(&env.home.join(".npm"));
        let npm =
            "export npm_config_update_notifier=false; npm cache add ./pkg.tgz --offline >/dev/null && npm cache ls";
        let out = env.run_sh(&["--allow-preset", "npm"], npm);
        assert!(stdout(&out).contains("rf-local-pkg") || stdout(&out).contains("pkg.tgz"), "{who:?}: {}", both(&out));
        assert_eq!(snapshot(&env.home.join(".npm")), before, "{who:?}: the host's npm cache changed");
        let out = env.run_sh(&["--cache", "npm"], "npm cache ls");
        assert!(stdout(&out).contains("pkg.tgz"), "{who:?}: the first run's addition is gone:\n{}", both(&out));
        let explain = env.ringfence(&["explain", "--allow-preset", "npm"]);
        assert!(stdout(&explain).contains("cache overlay"), "{who:?}: {}", stdout(&explain));
        assert!(stdout(&explain).contains("cache implied by --allow-preset npm"), "{who:?}: {}", stdout(&explain));
    }
}

/// Two runs of one workspace can't share a layer (overlayfs forbids it): while one holds it, a
/// concurrent run gets a private layer, whose changes go when it ends (its folder is removed).
/// The first run's changes persist; the host's cache is unchanged throughout.
#[test]
fn a_concurrent_run_gets_a_private_layer() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.home.join(".npm/host"), "HOST\n");
        let before = snapshot(&env.home.join(".npm"));
        let first = "echo first > ~/.npm/first; touch started; i=0; while [ ! -e go ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done";
        let mut cmd = env.run_command(&["--cache", "npm"], &["sh", "-c", first]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let holder = cmd.spawn().unwrap();
        wait_until("the first run to start", Duration::from_secs(20), || env.ws.join("started").exists());
        let out = env.run_sh(&["--cache", "npm"], "echo second > ~/.npm/second && cat ~/.npm/host && echo SECOND-OK");
        assert!(stdout(&out).contains("HOST") && stdout(&out).contains("SECOND-OK"), "{who:?}: {}", both(&out));
        env.write(&env.ws.join("go"), "");
        let held = collect_within(holder, RUN_LIMIT);
        assert_code(&held, 0);
        let out = env.run_sh(&["--cache", "npm"], "ls ~/.npm");
        assert!(stdout(&out).contains("first") && !stdout(&out).contains("second"), "{who:?}: {}", both(&out));
        let runs = layers(&env).join("runs");
        let left: Vec<_> = std::fs::read_dir(&runs).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "{who:?}: private layers left behind: {left:?}");
        assert_eq!(snapshot(&env.home.join(".npm")), before, "{who:?}");
    }
}

/// Where overlayfs can't take the upper layer (here ringfence's cache folder is on an overlayfs
/// itself, which can't be an upper layer), the run stops with exit 122 naming overlayfs and
/// what to do, and the command never runs; the host cache is unchanged. The mount namespace
/// is the test's own, so the host's mounts are untouched.
#[test]
fn an_unusable_overlay_stops_the_run() {
    if !is_root() {
        return;
    }
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.home.join(".npm/host"), "HOST\n");
        let stack = env.root.join("stack");
        for d in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir_all(stack.join(d)).unwrap();
        }
        env.chown_all();
        let before = snapshot(&env.home.join(".npm"));
        let s = |d: &str| path_str(&stack.join(d)).to_string();
        let setup = format!(
            "mount -t overlay stack -o lowerdir={},upperdir={},workdir={} {} && chown {} {} && exec \"$@\"",
            s("lower"),
            s("upper"),
            s("work"),
            s("merged"),
            if who == Who::Nobody { NOBODY } else { 0 },
            s("merged"),
        );
        let argv = [binary().as_os_str(), "run".as_ref(), "--cache".as_ref(), "npm".as_ref(), "--".as_ref()];
        let argv: Vec<&std::ffi::OsStr> =
            argv.into_iter().chain(["sh", "-c", "echo RAN"].map(std::ffi::OsStr::new)).collect();
        let mut cmd = env.command_via(&["unshare", "-m", "--propagation", "private", "sh", "-c", &setup, "sh"], &argv);
        cmd.env("XDG_CACHE_HOME", stack.join("merged"));
        let out = bounded_output(cmd, RUN_LIMIT);
        assert_code(&out, 122);
        assert!(stderr(&out).contains("overlay"), "{who:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("RAN"), "{who:?}");
        assert_eq!(snapshot(&env.home.join(".npm")), before, "{who:?}");
    }
}

/// The one upper layer below ringfence's cache folder.
fn upper_layer(env: &Env) -> PathBuf {
    let mut found = Vec::new();
    for ws in std::fs::read_dir(layers(env)).unwrap().flatten().filter(|e| e.file_name() != "runs") {
        found.extend(std::fs::read_dir(ws.path()).unwrap().flatten().map(|l| l.path().join("upper")));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// The layers are reached following no link: a run that may write ~/.cache (by explicit flag)
/// still finds ringfence's folder there read-only and can't swap a layer for a link (control:
/// it writes elsewhere in ~/.cache); and a link planted in place of a layer by other means
/// makes the next cache run stop with exit 121, leaving what it points to untouched.
#[test]
fn cache_layers_are_never_reached_through_links() {
    for who in identities() {
        let env = Env::new(who);
        env.write(&env.home.join(".npm/host"), "HOST\n");
        let out = env.run_sh(&["--cache", "npm"], "echo one > ~/.npm/one");
        assert_code(&out, 0);
        let upper = upper_layer(&env);
        let swap = format!(
            "rm -rf {0}; ln -s {1} {0}; echo x > ~/.cache/other && echo CONTROL-OK",
            path_str(&upper),
            path_str(&env.outside)
        );
        let out = env.run_sh(&["--write", "~/.cache", "--allow-writable-home-config"], &swap);
        assert!(stdout(&out).contains("CONTROL-OK"), "{who:?}: {}", both(&out));
        assert!(upper.join("one").is_file() && !upper.is_symlink(), "{who:?}: the run changed its layer");
        std::fs::remove_dir_all(&upper).unwrap();
        std::os::unix::fs::symlink(&env.outside, &upper).unwrap();
        env.give(&upper);
        let out = env.run_sh(&["--cache", "npm"], "echo two > ~/.npm/two; echo RAN");
        assert_code(&out, 121);
        assert!(stderr(&out).contains("is a link"), "{who:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("RAN"));
        assert_eq!(std::fs::read_dir(&env.outside).unwrap().count(), 0, "{who:?}: the link's target was written");
    }
}

/// Real cargo builds offline against a registry that holds a downloaded crate but not its
/// sources: with `--cache cargo` it extracts the crate (into the overlay) and builds; the
/// host's registry gets nothing. Control: without the cache, extracting fails. cargo is
/// installed for root only here, so this runs as root.
#[test]
fn cargo_builds_offline_through_the_overlay() {
    let toolchain = Path::new("/root/.cargo/bin/cargo");
    let registry = Path::new("/root/.cargo/registry");
    let index = registry.join("index/index.crates.io-1949cf8c6b5b557f");
    let Some(index_entry) = find(&index.join(".cache"), "cfg-if") else { return };
    let Some(crate_file) = find(&registry.join("cache"), "cfg-if-1.0.5.crate") else { return };
    if !is_root() || !toolchain.exists() {
        return;
    }
    let env = Env::new(Who::Me);
    let own = env.home.join(".cargo/registry/index/index.crates.io-1949cf8c6b5b557f");
    std::fs::create_dir_all(own.join(".cache/cf/g-")).unwrap();
    std::fs::copy(index.join("config.json"), own.join("config.json")).unwrap();
    std::fs::copy(&index_entry, own.join(".cache/cf/g-/cfg-if")).unwrap();
    let cached = env.home.join(".cargo/registry/cache/index.crates.io-1949cf8c6b5b557f");
    std::fs::create_dir_all(&cached).unwrap();
    std::fs::copy(&crate_file, cached.join("cfg-if-1.0.5.crate")).unwrap();
    env.write(
        &env.ws.join("Cargo.toml"),
        "[package]\nname = \"p\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\ncfg-if = \"=1.0.5\"\n",
    );
    env.write(&env.ws.join("src/main.rs"), "fn main() {}\n");
    std::fs::create_dir_all(env.home.join(".cargo/git")).unwrap();
    let before = snapshot(&env.home.join(".cargo"));
    let cargo = |args: &[&str]| {
        let mut cmd = env.run_command(args, &["/root/.cargo/bin/cargo", "build", "--offline"]);
        cmd.env("CARGO_HOME", env.home.join(".cargo"));
        bounded_output(cmd, Duration::from_secs(120))
    };
    let rustup = ["--env", "RUSTUP_HOME=/root/.rustup", "--env", "PATH=/root/.cargo/bin:/usr/bin:/bin"];
    let without = cargo(&rustup);
    assert_ne!(without.status.code(), Some(0), "extracting into the read-only registry worked:\n{}", both(&without));
    let with: Vec<&str> = rustup.iter().copied().chain(["--cache", "cargo"]).collect();
    let out = cargo(&with);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("Compiling cfg-if"), "{}", both(&out));
    assert_eq!(snapshot(&env.home.join(".cargo")), before, "the host's registry changed");
    assert!(!env.home.join(".cargo/registry/src").exists());
    let out = cargo(&with);
    assert_code(&out, 0);
}

/// The first file called `name` below `dir`.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            return Some(path);
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        }
    }
    None
}
