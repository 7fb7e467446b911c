use super::*;
use std::path::Path;

const WS: &str = "/home/u/proj";
const HOME: &str = "/home/u";

fn load(path: &str, text: &str) -> Result<LoadedConfig, PolicyError> {
    LoadedConfig::parse(Path::new(path), text.to_string())
}

fn user(text: &str) -> LoadedConfig {
    load("/home/u/.config/ringfence/config.toml", text).unwrap()
}

fn project(text: &str) -> LoadedConfig {
    load("/home/u/proj/.ringfence.toml", text).unwrap()
}

fn builder() -> PolicyBuilder {
    PolicyBuilder::new(Path::new(WS), Path::new(HOME))
}

fn access(p: &Policy, path: &str) -> FsAccess {
    p.fs.access(Path::new(path)).access
}

fn err(text: &str) -> String {
    load("/p/.ringfence.toml", text).unwrap_err().to_string()
}

#[test]
fn default_profile() {
    let p = builder().build().unwrap();
    assert_eq!(p.profile, ProfileName::Workspace);
    assert_eq!(access(&p, "/usr/bin/git"), FsAccess::Read);
    assert_eq!(access(&p, "/home/u/.ssh/id_ed25519"), FsAccess::Deny);
    assert_eq!(access(&p, "/home/u/.aws"), FsAccess::Deny);
    assert_eq!(access(&p, "/etc/shadow"), FsAccess::Deny);
    assert_eq!(access(&p, "/home/u/proj/src/lib.rs"), FsAccess::Write);
    assert_eq!(access(&p, "/home/u/proj/.git/hooks/pre-commit"), FsAccess::Read);
    assert_eq!(access(&p, "/home/u/proj/.git/config"), FsAccess::Read);
    assert_eq!(access(&p, "/home/u/proj/.envrc"), FsAccess::Read);
    assert_eq!(access(&p, "/home/u/proj/.git/index"), FsAccess::Write);
    assert_eq!(access(&p, "/home/u/.bashrc"), FsAccess::Read);
    assert_eq!(p.limits.pids, Some(DEFAULT_PIDS));
    assert_eq!(p.network, NetworkMode::None);
}

#[test]
fn strict_and_read_only_profiles() {
    let flags = Overrides { profile: Some(ProfileName::Strict), ..Default::default() };
    let p = builder().overrides(flags).build().unwrap();
    assert_eq!(access(&p, "/home/u/Documents/tax.pdf"), FsAccess::Deny);
    assert_eq!(access(&p, "/home/other/x"), FsAccess::Deny);
    assert_eq!(access(&p, "/home/u/.cargo/bin/cargo"), FsAccess::Read);
    assert_eq!(access(&p, "/home/u/.cargo/credentials.toml"), FsAccess::Deny);
    assert_eq!(access(&p, "/home/u/proj/main.c"), FsAccess::Write);

    let flags = Overrides { profile: Some(ProfileName::ReadOnly), ..Default::default() };
    let p = builder().overrides(flags).build().unwrap();
    assert_eq!(access(&p, "/home/u/proj/main.c"), FsAccess::Read);
}

#[test]
fn precedence_profile_user_project_flags() {
    let u = user(
        "profile = \"strict\"\n[limits]\npids = 100\ntimeout = \"10m\"\n[filesystem]\nwrite = [\"~/.cache/pip\"]\n",
    );
    let pr = project("[limits]\npids = 50\ntimeout = \"5m\"\n[filesystem]\ndeny_read = [\"secrets\"]\n");
    let p = builder().user_config(u).project_config(pr).build().unwrap();
    assert_eq!(p.profile, ProfileName::Strict);
    assert_eq!(p.limits.pids, Some(50));
    assert_eq!(p.limits.timeout.unwrap().0.as_secs(), 300);
    assert_eq!(access(&p, "/home/u/.cache/pip/x"), FsAccess::Write);
    assert_eq!(access(&p, "/home/u/proj/secrets/k"), FsAccess::Deny);
    assert_eq!(p.sources.len(), 2);

    let u = user("[limits]\npids = 100\n");
    let flags = Overrides { pids: Some(7), profile: Some(ProfileName::ReadOnly), ..Default::default() };
    let p = builder().user_config(u).overrides(flags).build().unwrap();
    assert_eq!(p.limits.pids, Some(7));
    assert_eq!(p.profile, ProfileName::ReadOnly);
}

#[test]
fn project_config_can_only_narrow() {
    let cases = [
        ("[filesystem]\nwrite = [\"/etc\"]\n", "`filesystem.write` would widen"),
        ("[filesystem]\nread = [\"~/.ssh\"]\n", "`filesystem.read` would widen"),
        ("[environment]\nkeep = [\"GITHUB_TOKEN\"]\n", "`environment.keep` would widen"),
        ("[limits]\npids = 100000\n", "raising `limits.pids`"),
        ("[process]\nallow_ptrace = true\n", "`process.allow_ptrace`"),
        ("[network]\nmode = \"host\"\n", "`network.mode`"),
    ];
    for (text, expected) in cases {
        let e = builder().project_config(project(text)).build().unwrap_err().to_string();
        assert!(e.contains(expected), "{text:?} gave {e}");
        assert!(e.starts_with("/home/u/proj/.ringfence.toml:"), "{e}");
        assert!(e.contains("trusted_projects"), "{e}");
    }
    // Trusted from outside, the same file may widen.
    let u = user("trusted_projects = [\"~/proj\"]\n");
    let p =
        builder().user_config(u).project_config(project("[filesystem]\nwrite = [\"/opt/cache\"]\n")).build().unwrap();
    assert_eq!(access(&p, "/opt/cache/x"), FsAccess::Write);
    let flags = Overrides { trust_project: true, ..Default::default() };
    let p = builder().project_config(project("[network]\nmode = \"host\"\n")).overrides(flags).build();
    assert_eq!(p.unwrap().network, NetworkMode::Host);
}

#[test]
fn project_may_only_choose_a_narrower_profile() {
    let p = builder().project_config(project("profile = \"strict\"\n")).build().unwrap();
    assert_eq!(p.profile, ProfileName::Strict);
    let e = builder()
        .user_config(user("profile = \"strict\"\n"))
        .project_config(project("profile = \"read-only\"\n"))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`profile` would widen"), "{e}");
}

#[test]
fn trusted_project_rules_outrank_user_rules() {
    let u = user("trusted_projects = [\"~/proj\"]\n[filesystem]\ndeny_read = [\"~/data\"]\n");
    let p = builder().user_config(u).project_config(project("[filesystem]\nread = [\"~/data\"]\n")).build().unwrap();
    assert_eq!(access(&p, "/home/u/data/x"), FsAccess::Read);
}

#[test]
fn project_cannot_trust_itself() {
    let e = builder().project_config(project("trusted_projects = [\".\"]\n")).build().unwrap_err().to_string();
    assert_eq!(
        e,
        "/home/u/proj/.ringfence.toml:1:20: `trusted_projects` belongs in the user config only\n  \
         help: move it to /home/u/.config/ringfence/config.toml"
    );
}

#[test]
fn golden_parse_errors() {
    assert_eq!(
        err("[filesystem]\nwirte = [\"x\"]\n"),
        "/p/.ringfence.toml:2:1: unknown key `wirte`\n  help: did you mean `write`?"
    );
    assert_eq!(
        err("profile = \"paranoid\"\n"),
        "/p/.ringfence.toml:1:11: unknown value `paranoid`\n  help: use one of: workspace, read-only, strict"
    );
    assert_eq!(
        err("[limits]\ntimeout = \"10 minutes\"\n"),
        "/p/.ringfence.toml:2:11: unknown duration unit `minutes` in `10 minutes`; write a duration like `30s`, `10m`, `1h30m` or `500ms`"
    );
    assert_eq!(
        err("[limits]\nmemory = \"lots\"\n"),
        "/p/.ringfence.toml:2:10: `lots` is not a size; write a size like `512M`, `2G` or `1048576`"
    );
    assert_eq!(
        err("[filesystem]\nwrite = \"~/x\"\n"),
        "/p/.ringfence.toml:2:9: invalid type: string \"~/x\", expected a sequence\n  help: write a list, for example `write = [\"~/.cache/pip\"]`"
    );
    assert_eq!(
        err("[fs]\n"),
        "/p/.ringfence.toml:1:2: unknown key `fs`\n  help: known keys here: profile, filesystem, environment, limits, process, network, trusted_projects"
    );
    let syntax = err("[limits\n");
    assert!(syntax.starts_with("/p/.ringfence.toml:1:"), "{syntax}");
}

#[test]
fn flag_errors() {
    let flags = Overrides { env_set: vec![("1BAD".into(), "x".into())], ..Default::default() };
    let e = builder().overrides(flags).build().unwrap_err().to_string();
    assert!(e.contains("not a valid variable name"), "{e}");
    let flags = Overrides { write: vec!["/".into()], ..Default::default() };
    assert!(builder().overrides(flags).build().unwrap_err().to_string().contains("can't be a writable root"));
    let flags = Overrides { deny_read: vec![".".into()], ..Default::default() };
    assert!(builder().overrides(flags).build().unwrap_err().to_string().contains("workspace"));
}

#[test]
fn schema_is_current() {
    let committed = include_str!("../../../docs/policy.schema.json");
    assert_eq!(
        committed,
        config::json_schema(),
        "docs/policy.schema.json is stale: regenerate it with `ringfence schema > docs/policy.schema.json`"
    );
}

#[test]
fn digest_is_stable_and_sensitive() {
    let a = builder().build().unwrap();
    let b = builder().build().unwrap();
    assert_eq!(a.digest(), b.digest());
    let flags = Overrides { pids: Some(3), ..Default::default() };
    assert_ne!(a.digest(), builder().overrides(flags).build().unwrap().digest());
}
