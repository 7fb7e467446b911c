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
    let u =
        user("profile = \"strict\"\n[limits]\npids = 100\ntimeout = \"10m\"\n[filesystem]\nwrite = [\"~/build\"]\n");
    let pr = project("[limits]\npids = 50\ntimeout = \"5m\"\n[filesystem]\ndeny_read = [\"secrets\"]\n");
    let p = builder().user_config(u).project_config(pr).build().unwrap();
    assert_eq!(p.profile, ProfileName::Strict);
    assert_eq!(p.limits.pids, Some(50));
    assert_eq!(p.limits.timeout.unwrap().0.as_secs(), 300);
    assert_eq!(access(&p, "/home/u/build/x"), FsAccess::Write);
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
    // Windows joins the user config's path with backslashes.
    assert_eq!(
        e.replace('\\', "/"),
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
        "/p/.ringfence.toml:2:10: `lots` is not a size; write a size like `512M`, `2G` or `1048576`, or `none` for no limit"
    );
    assert_eq!(
        err("[filesystem]\nwrite = \"~/x\"\n"),
        "/p/.ringfence.toml:2:9: invalid type: string \"~/x\", expected a sequence\n  help: write a list, for example `write = [\"~/build\"]`"
    );
    assert_eq!(
        err("[fs]\n"),
        "/p/.ringfence.toml:1:2: unknown key `fs`\n  help: known keys here: profile, filesystem, environment, limits, process, network, exec, trusted_projects"
    );
    let syntax = err("[limits\n");
    assert!(syntax.starts_with("/p/.ringfence.toml:1:"), "{syntax}");
}

/// A config key or value is quoted in the error: its control characters come out escaped, on
/// the error's own line, and a huge one is cut.
#[test]
fn errors_quoting_hostile_config_are_escaped_and_capped() {
    let e = err("[filesystem]\n\"a\\u001b]52;c;SGk=\\u0007\\nhelp: \\u202e\" = 1\n");
    assert_eq!(e, "/p/.ringfence.toml:2:1: unknown key `a\\x1b]52;c;SGk=\\x07\\nhelp: \\u{202e}`\n  help: known keys here: read, write, deny_read, deny_write, caches");
    let huge = format!("[filesystem]\n{} = 1\n", "k".repeat(1 << 20));
    let e = err(&huge);
    assert!(e.len() < 3 * ringfence_audit::untrusted::LINE_CAP, "{} bytes", e.len());
    assert!(e.contains(" bytes]…"), "{e:.200}");
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

/// Half of physical memory is the default cap; flags and the user config may set any value or
/// `none`, an untrusted project may only lower it.
#[test]
fn memory_defaults_to_half_of_physical_memory() {
    let gib = |n: u64| ByteSize(n << 30);
    let machine = || builder().physical_memory(ByteSize((16 << 30) + 12345));
    let p = machine().build().unwrap();
    assert_eq!((p.limits.memory, p.limits.memory_explicit), (Some(gib(8)), false));
    assert_eq!(builder().build().unwrap().limits.memory, None, "no default without the machine's size");

    let none = Overrides { memory: Some(MemoryLimit::Unlimited), ..Default::default() };
    let p = machine().overrides(none).build().unwrap();
    assert_eq!((p.limits.memory, p.limits.memory_explicit), (None, true));
    let p = machine().user_config(user("[limits]\nmemory = \"12G\"\n")).build().unwrap();
    assert_eq!((p.limits.memory, p.limits.memory_explicit), (Some(gib(12)), true));

    let p = machine().project_config(project("[limits]\nmemory = \"2G\"\n")).build().unwrap();
    assert_eq!((p.limits.memory, p.limits.memory_explicit), (Some(gib(2)), true));
    for (text, expected) in [
        ("[limits]\nmemory = \"12G\"\n", "raising `limits.memory`"),
        ("[limits]\nmemory = \"none\"\n", "removing `limits.memory`"),
    ] {
        let e = machine().project_config(project(text)).build().unwrap_err().to_string();
        assert!(e.contains(expected) && e.contains("trusted_projects"), "{text:?} gave {e}");
        let trusted = Overrides { trust_project: true, ..Default::default() };
        assert!(machine().project_config(project(text)).overrides(trusted).build().is_ok(), "{text:?}");
    }
    // Once the user config removed the cap, a project may set one, but not remove it again.
    let u = || user("[limits]\nmemory = \"none\"\n");
    let p = machine().user_config(u()).project_config(project("[limits]\nmemory = \"64G\"\n")).build();
    assert_eq!(p.unwrap().limits.memory, Some(gib(64)));
    assert!(machine().user_config(u()).project_config(project("[limits]\nmemory = \"none\"\n")).build().is_ok());
}

#[test]
fn digest_is_stable_and_sensitive() {
    let a = builder().build().unwrap();
    let b = builder().build().unwrap();
    assert_eq!(a.digest(), b.digest());
    let flags = Overrides { pids: Some(3), ..Default::default() };
    assert_ne!(a.digest(), builder().overrides(flags).build().unwrap().digest());
}

fn hosts(rules: &[HostRule]) -> Vec<String> {
    rules.iter().map(|r| r.pattern.to_string()).collect()
}

fn flags_err(flags: Overrides) -> String {
    builder().overrides(flags).build().unwrap_err().to_string()
}

#[test]
fn network_config_is_parsed_with_origins() {
    let u = user(
        "[network]\nallow = [\"api.openai.com\", \"*.npmjs.org:443\"]\ndeny = [\"evil.npmjs.org\"]\n\
         presets = [\"pypi\"]\nallow_private = [\"10.1.0.0/16\"]\nresolver = \"192.0.2.53\"\n",
    );
    let p = builder().user_config(u).build().unwrap();
    assert_eq!(p.network, NetworkMode::Allow, "allow rules imply the allow mode");
    assert_eq!(
        hosts(&p.net.allow),
        ["api.openai.com", "*.npmjs.org:443", "pypi.org:443", "files.pythonhosted.org:443"]
    );
    assert_eq!(hosts(&p.net.deny), ["evil.npmjs.org"]);
    let file = Path::new("/home/u/.config/ringfence/config.toml").to_path_buf();
    assert_eq!(p.net.allow[0].origin, Origin::File { path: file.clone(), line: 2 });
    assert_eq!(p.net.deny[0].origin, Origin::File { path: file.clone(), line: 3 });
    assert_eq!(p.net.presets, vec![(Preset::Pypi, Origin::File { path: file.clone(), line: 4 })]);
    assert_eq!(p.net.preset_of(&p.net.allow[2]), Some(Preset::Pypi));
    assert_eq!(p.net.preset_of(&p.net.allow[0]), None);
    assert_eq!(p.net.allow_private[0].0.to_string(), "10.1.0.0/16");
    assert_eq!(p.net.resolver.as_ref().map(|r| r.0.to_string()), Some("192.0.2.53:53".into()));
    assert!(matches!(p.net.decide(&Host::parse("evil.npmjs.org").unwrap(), 443), NetVerdict::Denied(_)));
    assert!(matches!(p.net.decide(&Host::parse("www.npmjs.org").unwrap(), 443), NetVerdict::Allowed(_)));
    assert!(matches!(p.net.decide(&Host::parse("www.npmjs.org").unwrap(), 80), NetVerdict::NotAllowed));

    // The JSON form: patterns as strings, presets with their hosts.
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["network"], "allow");
    assert_eq!(json["net"]["allow"][1]["pattern"], "*.npmjs.org:443");
    assert_eq!(json["net"]["presets"][0]["name"], "pypi");
    assert_eq!(json["net"]["presets"][0]["hosts"][0], "pypi.org:443");
    assert_eq!(json["net"]["allow_private"][0]["range"], "10.1.0.0/16");
    assert_eq!(json["net"]["resolver"]["address"], "192.0.2.53:53");
}

#[test]
fn golden_network_config_errors() {
    let cases = [
        (
            "[network]\nallow = [\"ok.example\",\n  \"foo.*.com\"]\n",
            "/p/.ringfence.toml:3:3: `foo.*.com`: a wildcard may only start a pattern, as in `*.example.com`",
        ),
        ("[network]\ndeny = [\"x.com:0\"]\n", "/p/.ringfence.toml:2:9: `x.com:0`: port must be 1-65535, not `0`"),
        (
            "[network]\nallow = [\"*\"]\n",
            "/p/.ringfence.toml:2:10: `*` alone would allow everything: use network.mode = \"host\"",
        ),
        (
            "[network]\nallow = [\"2001:db8:0:0:0:0:0:1:443\"]\n",
            "/p/.ringfence.toml:2:10: `2001:db8:0:0:0:0:0:1:443`: write an IPv6 address in brackets to give a port: `[2001:db8::1]:443`",
        ),
        (
            "[network]\nallow_private = [\"8.8.8.0/24\"]\n",
            "/p/.ringfence.toml:2:18: `8.8.8.0/24` is not a private range; `allow_private` takes ranges within 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7",
        ),
        (
            "[network]\nresolver = \"dns.google\"\n",
            "/p/.ringfence.toml:2:12: `dns.google` is not an IP address; the resolver is given by address, like `192.0.2.53`, `192.0.2.53:5353` or `[2001:db8::53]:53`",
        ),
        (
            "[network]\nmode = \"none\"\nallow = [\"x.com\"]\n",
            "/p/.ringfence.toml:2:8: the `none` mode contradicts this file's allow rules\n  help: set `mode = \"allow\"` to let only the listed hosts through, or remove `allow` and `presets`",
        ),
        (
            "[network]\nmode = \"host\"\npresets = [\"npm\"]\n",
            "/p/.ringfence.toml:2:8: host mode doesn't filter, so this file's allow rules would not be enforced\n  help: set `mode = \"allow\"` to let only the listed hosts through, or remove `allow` and `presets`",
        ),
    ];
    for (text, expected) in cases {
        let file = load("/p/.ringfence.toml", text).unwrap();
        let e = builder().user_config(file).build().unwrap_err().to_string();
        assert_eq!(e, expected, "{text:?}");
    }
    assert_eq!(
        err("[network]\npresets = [\"npmjs\"]\n"),
        "/p/.ringfence.toml:2:12: unknown value `npmjs`\n  help: use one of: npm, pypi, crates, github, openai, anthropic"
    );
    assert_eq!(
        err("[network]\nmode = \"proxy\"\n"),
        "/p/.ringfence.toml:2:8: unknown value `proxy`\n  help: use one of: none, allow, host"
    );
    assert_eq!(
        err("[network]\nallowed = []\n"),
        "/p/.ringfence.toml:2:1: unknown key `allowed`\n  help: did you mean `allow`?"
    );
}

#[test]
fn network_flags() {
    let flags = Overrides {
        allow_hosts: vec!["api.openai.com".into(), "*.npmjs.org".into()],
        deny_hosts: vec!["evil.npmjs.org".into()],
        presets: vec!["crates".into(), "crates".into()],
        allow_private: vec!["192.168.0.0/16".into()],
        resolver: Some("[2001:db8::53]:5353".into()),
        ..Default::default()
    };
    let p = builder().overrides(flags).build().unwrap();
    assert_eq!(p.network, NetworkMode::Allow);
    assert_eq!(hosts(&p.net.allow)[..2], ["api.openai.com", "*.npmjs.org"]);
    assert_eq!(p.net.allow.len(), 2 + Preset::Crates.hosts().len(), "a preset named twice counts once");
    assert_eq!(p.net.allow[0].origin, Origin::flag("--allow-host api.openai.com"));
    assert_eq!(p.net.presets, vec![(Preset::Crates, Origin::flag("--allow-preset crates"))]);
    assert_eq!(p.net.deny[0].origin, Origin::flag("--deny-host evil.npmjs.org"));
    assert_eq!(p.net.resolver.as_ref().unwrap().0.to_string(), "[2001:db8::53]:5353");

    let cases: [(Overrides, &str); 6] = [
        (
            Overrides { allow_hosts: vec!["foo.*.com".into()], ..Default::default() },
            "--allow-host foo.*.com: a wildcard may only start a pattern, as in `*.example.com`",
        ),
        (
            Overrides { deny_hosts: vec!["x.com:99999".into()], ..Default::default() },
            "--deny-host x.com:99999: port must be 1-65535, not `99999`",
        ),
        (
            Overrides { presets: vec!["pip".into()], ..Default::default() },
            "--allow-preset pip: unknown preset `pip`; use one of: npm, pypi, crates, github, openai, anthropic",
        ),
        (
            Overrides { allow_private: vec!["127.0.0.0/8".into()], ..Default::default() },
            "--allow-private 127.0.0.0/8: `127.0.0.0/8` is not a private range",
        ),
        (Overrides { resolver: Some("1.1.1.1:0".into()), ..Default::default() }, "--resolver 1.1.1.1:0: `1.1.1.1:0`: port must be 1-65535"),
        (
            Overrides { network: Some(NetworkMode::None), allow_hosts: vec!["x.com".into()], ..Default::default() },
            "--network none: the `none` mode contradicts --allow-host x.com\n  help: pass --network allow (or leave --network out)",
        ),
    ];
    for (flags, expected) in cases {
        let e = flags_err(flags);
        assert!(e.starts_with(expected), "{e}");
    }
    let e =
        flags_err(Overrides { network: Some(NetworkMode::Host), presets: vec!["npm".into()], ..Default::default() });
    assert!(
        e.starts_with("--network host: host mode doesn't filter, so --allow-preset npm would not be enforced"),
        "{e}"
    );
}

#[test]
fn network_mode_inference() {
    // Nothing said: none. An explicit allow mode with no rules refuses everything.
    assert_eq!(builder().build().unwrap().network, NetworkMode::None);
    let p = builder().user_config(user("[network]\nmode = \"allow\"\n")).build().unwrap();
    assert_eq!((p.network, p.net.allow.len()), (NetworkMode::Allow, 0));
    assert_eq!(p.net.decide(&Host::parse("example.com").unwrap(), 443), NetVerdict::NotAllowed);
    // Deny rules alone don't turn the network on.
    let p = builder().user_config(user("[network]\ndeny = [\"x.com\"]\n")).build().unwrap();
    assert_eq!(p.network, NetworkMode::None);
    // Presets alone do.
    let p = builder().user_config(user("[network]\npresets = [\"github\"]\n")).build().unwrap();
    assert_eq!(p.network, NetworkMode::Allow);
    // A later layer's allow rules switch an earlier `none` to `allow`.
    let flags = Overrides { allow_hosts: vec!["x.com".into()], ..Default::default() };
    let p = builder().user_config(user("[network]\nmode = \"none\"\n")).overrides(flags).build().unwrap();
    assert_eq!(p.network, NetworkMode::Allow);
    // `--network none` overrides the files' allow rules: nothing is reachable.
    let flags = Overrides { network: Some(NetworkMode::None), ..Default::default() };
    let p = builder().user_config(user("[network]\nallow = [\"x.com\"]\n")).overrides(flags).build().unwrap();
    assert_eq!(p.network, NetworkMode::None);
    // Host rules can't ride along with the host mode, whichever layer set it.
    let flags = Overrides { network: Some(NetworkMode::Host), ..Default::default() };
    let e = builder().user_config(user("[network]\nallow = [\"x.com\"]\n")).overrides(flags).build().unwrap_err();
    assert_eq!(
        e.to_string(),
        "/home/u/.config/ringfence/config.toml:2: `x.com` can't be enforced: the network mode is `host`, and host mode \
         doesn't filter\n  help: use the allow mode (`--network allow`, or `mode = \"allow\"` in [network]) to enforce \
         the host rules, or remove them"
    );
    let e = builder()
        .user_config(user("[network]\nmode = \"host\"\n"))
        .project_config(project("[network]\ndeny = [\"x.com\"]\n"))
        .build()
        .unwrap_err();
    assert!(e.to_string().starts_with("/home/u/proj/.ringfence.toml:2: `x.com` can't be enforced"), "{e}");
}

#[test]
fn untrusted_project_may_only_narrow_the_network() {
    let cases = [
        ("[network]\nallow = [\"x.com\"]\n", "2:9: `network.allow` would widen"),
        ("[network]\npresets = [\"npm\"]\n", "2:11: `network.presets` would widen"),
        ("[network]\nallow_private = [\"10.0.0.0/8\"]\n", "2:17: `network.allow_private` would widen"),
        ("[network]\nresolver = \"192.0.2.53\"\n", "2:12: `network.resolver` would widen"),
        ("[network]\nmode = \"allow\"\n", "2:8: `network.mode` would widen"),
        ("[network]\nmode = \"host\"\n", "2:8: `network.mode` would widen"),
    ];
    for (text, expected) in cases {
        let e = builder().project_config(project(text)).build().unwrap_err().to_string();
        assert!(e.starts_with(&format!("/home/u/proj/.ringfence.toml:{expected} the policy")), "{text:?} gave {e}");
        assert!(e.contains("--trust-project"), "{e}");
        // With allow rules below, the project still can't add its own.
        let u = user("[network]\nallow = [\"y.com\"]\n");
        let e = builder().user_config(u).project_config(project(text)).build();
        if text.contains("mode = \"allow\"") {
            assert_eq!(e.unwrap().network, NetworkMode::Allow, "the mode below is already allow");
        } else {
            assert!(e.unwrap_err().to_string().contains("would widen"), "{text:?}");
        }
    }
    // Narrowing: deny rules and `mode = "none"` are fine.
    let u = || user("[network]\nallow = [\"*.example.com\"]\n");
    let p = builder().user_config(u()).project_config(project("[network]\ndeny = [\"a.example.com\"]\n")).build();
    let p = p.unwrap();
    assert_eq!(p.network, NetworkMode::Allow);
    assert!(matches!(p.net.decide(&Host::parse("a.example.com").unwrap(), 443), NetVerdict::Denied(_)));
    assert_eq!(
        p.net.deny[0].origin,
        Origin::Project { path: Path::new("/home/u/proj/.ringfence.toml").to_path_buf(), line: 2 }
    );
    let p = builder().user_config(u()).project_config(project("[network]\nmode = \"none\"\n")).build().unwrap();
    assert_eq!(p.network, NetworkMode::None);
    // Deny rules from the project beat the flags' allow rules too.
    let flags = Overrides { allow_hosts: vec!["a.example.com".into()], ..Default::default() };
    let p = builder().project_config(project("[network]\ndeny = [\"a.example.com\"]\n")).overrides(flags).build();
    assert!(matches!(p.unwrap().net.decide(&Host::parse("a.example.com").unwrap(), 443), NetVerdict::Denied(_)));

    // Trusted, the same files may widen.
    for (text, _) in cases {
        let flags = Overrides { trust_project: true, ..Default::default() };
        let p = builder().project_config(project(text)).overrides(flags).build();
        assert!(p.is_ok(), "{text:?}: {p:?}");
    }
    let u = user("trusted_projects = [\"~/proj\"]\n");
    let p = builder().user_config(u).project_config(project("[network]\npresets = [\"npm\"]\n")).build().unwrap();
    assert_eq!((p.network, p.net.presets.len()), (NetworkMode::Allow, 1));
}

#[test]
fn network_rules_accumulate_across_layers() {
    let u = user("trusted_projects = [\"~/proj\"]\n[network]\nallow = [\"a.com\"]\nresolver = \"192.0.2.1\"\n");
    let pr = project("[network]\nallow = [\"b.com\"]\ndeny = [\"c.com\"]\nresolver = \"192.0.2.2\"\n");
    let flags =
        Overrides { allow_hosts: vec!["c.com".into()], resolver: Some("192.0.2.3".into()), ..Default::default() };
    let p = builder().user_config(u).project_config(pr).overrides(flags).build().unwrap();
    assert_eq!(hosts(&p.net.allow), ["a.com", "b.com", "c.com"]);
    assert!(matches!(p.net.decide(&Host::parse("c.com").unwrap(), 443), NetVerdict::Denied(_)), "deny beats allow");
    assert_eq!(p.net.resolver.unwrap().0.to_string(), "192.0.2.3:53", "the last resolver wins");
}

#[test]
fn normalize_paths() {
    use crate::paths::{is_within, normalize};
    use std::path::Path;
    assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
    assert_eq!(normalize(Path::new("/../..")), Path::new("/"));
    assert!(is_within(Path::new("/a/b"), Path::new("/a")));
    assert!(!is_within(Path::new("/ab"), Path::new("/a")));
    #[cfg(windows)]
    {
        assert_eq!(normalize(Path::new(r"C:\Users\me\..\ws\.\src")), Path::new(r"C:\Users\ws\src"));
        assert_eq!(normalize(Path::new(r"C:\..")), Path::new(r"C:\"));
        assert!(is_within(Path::new(r"C:\ws\src"), Path::new(r"C:\ws")));
        assert!(!is_within(Path::new(r"C:\wsx"), Path::new(r"C:\ws")));
    }
}

// Unix paths: caches and home areas are Linux (and macOS) features.
#[cfg(unix)]
#[test]
fn roots_in_home_tool_areas_need_their_flag() {
    for raw in ["~/.config/x", "~/.local", "~/.cargo/bin", "~/bin", "~/go/bin", "~/.cache/pip", "~/.bashrc"] {
        let flags = Overrides { write: vec![raw.into()], ..Default::default() };
        let e = builder().overrides(flags).build().unwrap_err();
        assert!(e.message.starts_with(&format!("--write {raw}: ")), "{raw}: {e}");
        assert!(e.help.as_deref().unwrap().contains("--allow-writable-home-config"), "{raw}: {e}");
        let flags = Overrides { write: vec![raw.into()], allow_writable_home_config: true, ..Default::default() };
        assert!(builder().overrides(flags).build().is_ok(), "{raw}");
        let flags = Overrides { write: vec![raw.into()], allow_writable_home: true, ..Default::default() };
        assert!(builder().overrides(flags).build().is_ok(), "{raw}: a writable home implies its areas");
    }
    // A cache folder points at the safe way to share it.
    let flags = Overrides { write: vec!["~/.cache/pip".into()], ..Default::default() };
    assert!(builder()
        .overrides(flags)
        .build()
        .unwrap_err()
        .help
        .unwrap()
        .starts_with("share the cache with --cache pip"));
    // Ordinary folders in $HOME, and areas that end up read-only, are fine.
    for raw in ["~/src", "~/Documents/x", "/opt/build"] {
        let flags = Overrides { write: vec![raw.into()], ..Default::default() };
        assert!(builder().overrides(flags).build().is_ok(), "{raw}");
    }
    let flags =
        Overrides { write: vec!["~/.config".into()], deny_write: vec!["~/.config".into()], ..Default::default() };
    assert!(builder().overrides(flags).build().is_ok());
    // A workspace in an area (run from ~/.dotfiles) is refused like a --write.
    let e = PolicyBuilder::new(Path::new("/home/u/.dotfiles"), Path::new(HOME)).build().unwrap_err();
    assert!(e.message.contains("/home/u/.dotfiles is inside /home/u/.dotfiles"), "{e}");
    let read_only = Overrides { profile: Some(ProfileName::ReadOnly), ..Default::default() };
    assert!(PolicyBuilder::new(Path::new("/home/u/.dotfiles"), Path::new(HOME)).overrides(read_only).build().is_ok());
}

// Unix paths: caches and home areas are Linux (and macOS) features.
#[cfg(unix)]
#[test]
fn caches_come_from_flags_files_and_presets() {
    let flags = Overrides { caches: vec!["cargo".into(), "pip".into(), "cargo".into()], ..Default::default() };
    let mut env = std::collections::BTreeMap::new();
    env.insert("CARGO_HOME".to_string(), "/opt/cargo".to_string());
    let p = builder().overrides(flags).tool_env(env).build().unwrap();
    let tools: Vec<_> = p.caches.iter().map(|c| c.tool).collect();
    assert_eq!(tools, [CacheTool::Cargo, CacheTool::Pip]);
    assert_eq!(p.caches[0].dirs[0].path, Path::new("/opt/cargo/registry"));
    assert_eq!(p.caches[0].env, [("CARGO_HOME".to_string(), "/opt/cargo".to_string())]);
    assert_eq!(p.caches[1].dirs[0].path, Path::new("/home/u/.cache/pip"));
    // The cache folders stay read-only as paths: the overlay, not a write rule, lets the tool write.
    assert_eq!(access(&p, "/home/u/.cache/pip/x"), FsAccess::Read);

    let e = builder().overrides(Overrides { caches: vec!["ccache".into()], ..Default::default() }).build().unwrap_err();
    assert!(e.message.starts_with("--cache ccache: unknown cache"), "{e}");

    let flags = Overrides { presets: vec!["npm".into(), "github".into()], ..Default::default() };
    let p = builder().overrides(flags).build().unwrap();
    assert_eq!(p.caches.len(), 1);
    assert_eq!(p.caches[0].tool, CacheTool::Npm);
    assert_eq!(p.caches[0].origin.to_string(), "built-in cache implied by --allow-preset npm");

    let u = user("[filesystem]\ncaches = [\"go\"]\n");
    let p = builder().user_config(u).build().unwrap();
    assert_eq!(p.caches[0].origin.to_string(), "/home/u/.config/ringfence/config.toml:2");
    let e = builder().project_config(project("[filesystem]\ncaches = [\"go\"]\n")).build().unwrap_err();
    assert!(e.message.contains("`filesystem.caches` would widen the policy"), "{e}");
    assert!(err("[filesystem]\ncaches = [\"ccache\"]\n").contains("unknown value `ccache`"));
}

// Unix paths: caches and home areas are Linux (and macOS) features.
#[cfg(unix)]
#[test]
fn secret_names_and_home_areas() {
    use crate::profile::{home_tool_area, secret_name};
    for name in [
        "credentials.json",
        "OAuth_Creds.json",
        "api_token",
        "Cookies",
        "auth.json",
        "client-key.pem",
        "server.key",
        "vault.kdbx",
        ".sqlite_history",
        "wallet.dat",
        "id_ed25519",
    ] {
        assert!(secret_name(name).is_some(), "{name}");
    }
    for name in ["config.json", "settings.toml", "ca.pem", "id_ed25519.pub", "tokenizer.json", "keymap.json", "bin"] {
        assert_eq!(secret_name(name), None, "{name}");
    }
    let home = Path::new("/home/u");
    let area = |p: &str| home_tool_area(home, Path::new(p)).map(|a| a.display().to_string());
    assert_eq!(area("/home/u/.config/nvim").as_deref(), Some("/home/u/.config"));
    assert_eq!(area("/home/u/.bashrc").as_deref(), Some("/home/u/.bashrc"));
    assert_eq!(area("/home/u/bin").as_deref(), Some("/home/u/bin"));
    assert_eq!(area("/home/u/go/src/x").as_deref(), Some("/home/u/go"));
    assert_eq!(area("/home/u/proj/.git"), None);
    assert_eq!(area("/home/u"), None);
    assert_eq!(area("/home/other/.config"), None);
}

// The JSON pins Unix paths.
#[cfg(unix)]
#[test]
fn rules_carry_their_source_presence_and_placeholder() {
    let flags = Overrides { deny_write: vec!["sub/.zshrc".into()], ..Default::default() };
    let p = builder().overrides(flags).build().unwrap();
    let rule = |path: &str| p.fs.rules.iter().find(|r| r.path == Path::new(path)).unwrap();
    assert_eq!(rule("/home/u/.ssh").placeholder, Placeholder::Dir);
    assert_eq!(rule("/home/u/.netrc").placeholder, Placeholder::File);
    assert_eq!(rule("/home/u/.ssh").origin.to_string(), "built-in secret list (workspace profile)");
    let husky = rule("/home/u/proj/.husky");
    assert_eq!((husky.presence, husky.placeholder), (Presence::WhilePresent, Placeholder::None));
    assert_eq!(husky.origin.to_string(), "built-in protected path, while present");
    let envrc = rule("/home/u/proj/.envrc");
    assert_eq!((envrc.presence, envrc.placeholder), (Presence::Always, Placeholder::Dir));
    assert_eq!(envrc.origin, Origin::Builtin(Builtin::ProtectedPath));
    // A rule of the user's gets the placeholder its name calls for.
    assert_eq!(rule("/home/u/proj/sub/.zshrc").placeholder, Placeholder::File);
    assert_eq!(
        serde_json::to_value(rule("/home/u/.bashrc")).unwrap(),
        serde_json::json!({
            "kind": "deny-write",
            "path": "/home/u/.bashrc",
            "origin": {"kind": "builtin", "source": "home-startup", "profile": "workspace"},
            "presence": "always",
            "placeholder": "file",
        })
    );
}

fn agent(agent: Agent) -> Overrides {
    Overrides { agent: Some(agent), ..Default::default() }
}

#[test]
fn every_agent_profile_parses_and_layers_over_workspace() {
    for a in Agent::all() {
        let p = builder().overrides(agent(*a)).build().unwrap_or_else(|e| panic!("{a}: {e}"));
        assert_eq!((p.profile, p.agent), (ProfileName::Workspace, Some(*a)));
        assert_eq!(p.profile_label(), a.to_string());
        assert_eq!(p.network, NetworkMode::Allow, "{a}");
        assert!(p.sources.is_empty(), "{a}: the profile is not a config file");
        assert_eq!(access(&p, "/home/u/proj/src/main.rs"), FsAccess::Write);
        assert_eq!(access(&p, "/home/u/.ssh/id_ed25519"), FsAccess::Deny);
        let roots: Vec<&Path> = p.fs.agent_roots().collect();
        assert!(!roots.is_empty(), "{a}");
        for root in roots {
            let rule = p.fs.at(root).find(|r| r.kind == RuleKind::Write).unwrap();
            assert!(matches!(rule.origin, Origin::Agent { agent, .. } if agent == *a), "{a}: {root:?}");
            assert_eq!(rule.presence, Presence::WhilePresent);
        }
    }
}

#[test]
fn an_agent_profile_opens_its_own_login_alone() {
    let logins = [
        (Agent::Claude, "/home/u/.claude/.credentials.json"),
        (Agent::Codex, "/home/u/.codex/auth.json"),
        (Agent::Gemini, "/home/u/.gemini/oauth_creds.json"),
        (Agent::Aider, "/home/u/.aider/oauth-keys.env"),
        (Agent::Opencode, "/home/u/.local/share/opencode/auth.json"),
    ];
    let base = builder().build().unwrap();
    for (_, login) in logins {
        assert_eq!(access(&base, login), FsAccess::Deny, "{login}");
    }
    for (a, own) in logins {
        let p = builder().overrides(agent(a)).build().unwrap();
        for (_, login) in logins {
            let want = if login == own { FsAccess::Write } else { FsAccess::Deny };
            assert_eq!(access(&p, login), want, "{a}: {login}");
        }
        assert!(p.fs.is_agent_file(Path::new(own)), "{a}");
        // A login file gets no protected paths of a folder below it.
        assert!(p.fs.at(&Path::new(own).join(".git/hooks")).next().is_none(), "{a}");
    }
}

// Unix paths: the Windows build (under Wine) spells them otherwise.
#[cfg(unix)]
#[test]
fn the_user_config_and_flags_outrank_an_agent_profile() {
    let cfg = user("[filesystem]\ndeny_read = [\"~/.claude/.credentials.json\"]\n");
    let p = builder().user_config(cfg).overrides(agent(Agent::Claude)).build().unwrap();
    assert_eq!(access(&p, "/home/u/.claude/.credentials.json"), FsAccess::Deny);
    assert_eq!(access(&p, "/home/u/.claude/projects/x.jsonl"), FsAccess::Write);
    // What the profile keeps read-only stays so.
    assert_eq!(access(&p, "/home/u/.claude/settings.json"), FsAccess::Read);
    assert_eq!(access(&p, "/home/u/.claude/local/node_modules/x/cli.js"), FsAccess::Read);
    assert_eq!(p.env.set.get("CLAUDE_CONFIG_DIR").map(String::as_str), Some("/home/u/.claude"));
}

#[test]
fn profile_names_parse() {
    assert_eq!("agent:codex".parse::<ProfileChoice>(), Ok(ProfileChoice::Agent(Agent::Codex)));
    assert_eq!("strict".parse::<ProfileChoice>(), Ok(ProfileChoice::Base(ProfileName::Strict)));
    let e = "agent:nope".parse::<ProfileChoice>().unwrap_err();
    assert!(e.contains("`agent:claude`") && e.contains("`agent:opencode`"), "{e}");
    assert!("nope".parse::<ProfileChoice>().unwrap_err().contains("agent:claude"));
}

/// `[exec]` in config files: rules in order, project configs narrow only, presets last, and a
/// monitor turned off refuses rules.
#[test]
fn exec_rules_merge_in_order_and_projects_only_narrow() {
    let project = |text: &str| LoadedConfig::parse(Path::new("/p/.ringfence.toml"), text.into()).unwrap();
    let user = LoadedConfig::parse(
        Path::new("/h/.config/ringfence/config.toml"),
        "[exec]\npresets = [\"guardrails\"]\n[[exec.rule]]\nprogram = \"git\"\nargs = [\"push\"]\ndecision = \"allow\"\n"
            .into(),
    )
    .unwrap();
    let denying =
        project("[[exec.rule]]\nprogram = \"make\"\nargs = [\"deploy\"]\ndecision = \"deny\"\nreason = \"no\"\n");
    let flags = Overrides { deny_exec: vec!["curl".into()], ..Default::default() };
    let policy = builder().user_config(user).project_config(denying).overrides(flags).build().unwrap();
    let patterns: Vec<String> = policy.exec.rules.iter().take(3).map(|r| r.pattern()).collect();
    assert_eq!(patterns, ["curl", "make deploy", "git push"]);
    assert_eq!(policy.exec.rules[2].decision, ExecDecision::Allow);
    assert!(policy.exec.rules.len() > 3, "the preset's rules come last");
    for widening in [
        "[[exec.rule]]\nprogram = \"git\"\ndecision = \"allow\"\n",
        "[[exec.rule]]\nprogram = \"git\"\ndecision = \"log\"\n",
        "[exec]\nmonitor = false\n",
    ] {
        let e = builder().project_config(project(widening)).build().unwrap_err().to_string();
        assert!(e.contains("can only narrow"), "{widening}: {e}");
    }
    let bad = builder().project_config(project("[[exec.rule]]\nprogram = \"a/b\"\ndecision = \"deny\"\n"));
    assert!(bad.build().unwrap_err().to_string().contains(".ringfence.toml:1"));
    let off = Overrides { no_exec_monitor: true, deny_exec: vec!["git push".into()], ..Default::default() };
    let e = builder().overrides(off).build().unwrap_err().to_string();
    assert!(e.contains("exec monitoring is off"), "{e}");
    let off = Overrides { no_exec_monitor: true, ..Default::default() };
    assert!(!builder().overrides(off).build().unwrap().exec.monitor);
}
