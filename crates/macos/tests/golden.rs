//! Golden Seatbelt profiles: the built-in profiles and tricky policies compiled with a fixed
//! table of macOS's links, compared with the files in tests/golden/. After an intended change,
//! regenerate them with `RINGFENCE_UPDATE_GOLDEN=1 cargo test -p ringfence-macos --test golden`
//! and review the diff.

use ringfence_macos::resolve::{self, Resolver};
use ringfence_macos::{compile, Compiled, Net, Request};
use ringfence_policy::{FsAccess, NetworkMode, Overrides, Policy, PolicyBuilder, ProfileName};
use std::path::{Path, PathBuf};

/// The links every Mac has, plus a home folder reached through one.
fn mac_links() -> Resolver<impl Fn(&Path) -> Option<PathBuf>> {
    resolve::table(&[
        ("/tmp", "private/tmp"),
        ("/var", "private/var"),
        ("/etc", "private/etc"),
        ("/Users/linked", "/Volumes/Data/linked"),
        ("/Users/u/proj/build", "/Volumes/Scratch/build"),
    ])
}

const TMP: &str = "/var/folders/zz/abc/T/ringfence-42-1";

fn policy(ws: &str, home: &str, flags: Overrides) -> Policy {
    PolicyBuilder::new(Path::new(ws), Path::new(home)).overrides(flags).build().unwrap()
}

fn compiled(policy: &Policy, net: Net, terminal: Option<&str>) -> Compiled {
    let request = Request { policy, tmp: Path::new(TMP), net, terminal: terminal.map(Path::new) };
    compile(&request, &mac_links()).unwrap_or_else(|e| panic!("{}: {}", e.message, e.remedy))
}

/// Compares with tests/golden/NAME.sb, or rewrites it with RINGFENCE_UPDATE_GOLDEN=1.
fn golden(name: &str, c: &Compiled) {
    check_shape(c);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.sb"));
    let actual = c.profile.render();
    if std::env::var_os("RINGFENCE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        panic!(
            "{} differs from the compiled profile (first differing line: {:?}); if the change is intended, \
             regenerate with RINGFENCE_UPDATE_GOLDEN=1 cargo test -p ringfence-macos --test golden\n\n{actual}",
            path.display(),
            first.map(|l| l + 1)
        );
    }
}

/// What every profile must be: ASCII text with balanced parentheses, every parameter both
/// named in the text and defined, and a default of deny.
fn check_shape(c: &Compiled) {
    let text = &c.profile.text;
    assert!(text.bytes().all(|b| b == b'\n' || (b' '..=b'~').contains(&b)), "non-ASCII or control byte in:\n{text}");
    assert!(text.starts_with("(version 1)\n"));
    assert!(text.contains("\n(deny default)\n"));
    assert!(!text.contains("(allow default"));
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for ch in text.chars() {
        match (in_string, escaped, ch) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_string = !in_string,
            (false, _, '(') => depth += 1,
            (false, _, ')') => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced parentheses in:\n{text}");
            }
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unbalanced parentheses in:\n{text}");
    for (name, _) in &c.profile.params {
        assert!(text.contains(&format!("(param \"{name}\")")), "{name} is defined but unused");
    }
    let used = text.matches("(param \"").count();
    assert!(used >= c.profile.params.len());
    for line in text.lines().filter(|l| l.contains("(param \"")) {
        for part in line.split("(param \"").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(c.profile.params.iter().any(|(n, _)| n == name), "{name} is used but not defined");
        }
    }
}

fn flags(f: impl FnOnce(&mut Overrides)) -> Overrides {
    let mut o = Overrides::default();
    f(&mut o);
    o
}

#[test]
fn workspace_profile() {
    let p = policy("/Users/u/proj", "/Users/u", Overrides::default());
    golden("workspace", &compiled(&p, Net::None, None));
}

#[test]
fn secrets_are_also_left_out_in_their_data_volume_spelling() {
    let p = policy("/Users/u/proj", "/Users/u", Overrides::default());
    let c = compiled(&p, Net::None, None);
    let value = |v: &str| c.profile.params.iter().any(|(_, p)| p == v.as_bytes());
    assert!(value("/Users/u/.ssh") && value("/System/Volumes/Data/Users/u/.ssh"));
    assert!(value("/System/Volumes/Data/private/etc/sudoers"));
    // Writable regions are allowed in one spelling only, so they need no twin.
    assert!(!value("/System/Volumes/Data/Users/u/proj/.git/hooks"));
}

#[test]
fn read_only_profile() {
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.profile = Some(ProfileName::ReadOnly)));
    golden("read-only", &compiled(&p, Net::None, None));
}

#[test]
fn strict_profile_re_allows_toolchains_inside_the_hidden_home() {
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.profile = Some(ProfileName::Strict)));
    let c = compiled(&p, Net::None, None);
    golden("strict", &c);
    let home = c.regions.read.iter().find(|r| r.root == Path::new("/Users/u/.cargo")).expect("a region for ~/.cargo");
    assert!(home.except.contains(&PathBuf::from("/Users/u/.cargo/credentials")));
    assert!(c.regions.traverse.contains(&PathBuf::from("/Users/u")));
    assert!(!c.regions.read.iter().any(|r| r.root == Path::new("/Users/u")));
}

#[test]
fn quotes_backslashes_newlines_and_non_ascii_stay_out_of_the_text() {
    let ws = "/Users/jos\u{e9}/my \"quoted\" proj\\ (x)";
    let p = policy(
        ws,
        "/Users/jos\u{e9}",
        flags(|o| {
            o.deny_read =
                vec!["secret\")) (allow default) ;".into(), "caf\u{e9}/\u{65e5}\u{672c}".into(), "new\nline".into()];
            o.write = vec!["/tmp/out".into()];
        }),
    );
    let c = compiled(&p, Net::None, None);
    golden("tricky-paths", &c);
    for fragment in ["jos", "quoted", "allow default) ;", "caf", "new"] {
        assert!(!c.profile.text.contains(fragment), "{fragment:?} leaked into the profile text");
    }
    let value = |v: &str| c.profile.params.iter().any(|(_, p)| p == v.as_bytes());
    assert!(value(ws), "the workspace is a parameter, byte for byte");
    assert!(value(&format!("{ws}/secret\")) (allow default) ;")));
    assert!(value("/private/tmp/out"), "/tmp/out is matched at /private/tmp/out");
}

#[test]
fn linked_home_and_system_links_resolve() {
    let p = policy("/Users/linked/proj", "/Users/linked", flags(|o| o.deny_read = vec!["/etc/hosts".into()]));
    let c = compiled(&p, Net::None, None);
    golden("linked-home", &c);
    let params: Vec<String> = c.profile.params.iter().map(|(_, v)| String::from_utf8_lossy(v).into_owned()).collect();
    assert!(params.contains(&"/Volumes/Data/linked/.ssh".to_string()));
    assert!(params.contains(&"/Volumes/Data/linked/proj".to_string()));
    assert!(params.contains(&"/private/etc/hosts".to_string()));
    assert!(params.contains(&"/private/var/folders/zz/abc/T/ringfence-42-1".to_string()));
    assert!(!params.iter().any(|p| p.starts_with("/Users/linked")), "{params:?}");
}

#[test]
fn deny_write_inside_a_writable_root_pins_the_folders_on_the_way() {
    let p = policy(
        "/Users/u/proj",
        "/Users/u",
        flags(|o| {
            o.deny_write = vec!["vendor".into(), "src/gen/schema".into()];
            o.write = vec!["build".into()];
        }),
    );
    let c = compiled(&p, Net::None, None);
    golden("deny-write-inside-write", &c);
    for pin in ["/Users/u/proj/.git", "/Users/u/proj/src", "/Users/u/proj/src/gen"] {
        assert!(c.regions.pins.contains(&PathBuf::from(pin)), "{pin} is not pinned: {:?}", c.regions.pins);
    }
    assert!(!c.regions.pins.contains(&PathBuf::from("/Users/u/proj")));
    assert!(
        c.regions.write.iter().any(|r| r.root == Path::new("/Volumes/Scratch/build")),
        "the link's target is writable"
    );
}

#[test]
fn network_allow_opens_only_the_two_gateway_ports() {
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.allow_hosts = vec!["example.com".into()]));
    assert_eq!(p.network, NetworkMode::Allow);
    let c = compiled(&p, Net::Gateway { http: 61000, socks: 61001 }, Some("/dev/ttys004"));
    golden("network-allow", &c);
    let text = &c.profile.text;
    assert!(text.contains("(allow network-outbound (remote ip \"localhost:61000\") (remote ip \"localhost:61001\"))"));
    assert_eq!(text.matches("network-outbound").count(), 2, "only the gateway and the run's own Unix sockets");
    assert!(!text.contains("network*"));
    assert!(!text.contains("com.apple.dnssd.service"), "only the gateway resolves names");
}

#[test]
fn network_none_and_host() {
    let p = policy("/Users/u/proj", "/Users/u", Overrides::default());
    let none = compiled(&p, Net::None, None).profile.text;
    assert!(!none.contains("remote ip") && !none.contains("network*") && !none.contains("dnssd"));
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.network = Some(NetworkMode::Host)));
    let host = compiled(&p, Net::Host, None);
    golden("network-host", &host);
    assert!(host.profile.text.contains("(allow network*)"));
    assert!(host.profile.text.contains("com.apple.dnssd.service"));
}

#[test]
fn the_profile_never_opens_the_keychain_pasteboard_or_apple_events() {
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.network = Some(NetworkMode::Host)));
    let text = compiled(&p, Net::Host, Some("/dev/ttys001")).profile.text;
    for refused in [
        "com.apple.SecurityServer",
        "securityd",
        "pasteboard",
        "appleevent",
        "lsopen",
        "launchservicesd",
        "job-creation",
        "file-link",
        "file-clone",
        "file-write-setugid",
        "mach-register",
        "(target others)",
        "process-info* )",
    ] {
        assert!(!text.contains(refused), "{refused} in the profile");
    }
}

/// The regions of every golden policy agree with the policy model path by path.
#[test]
fn regions_agree_with_the_policy_model() {
    let policies = [
        policy("/Users/u/proj", "/Users/u", Overrides::default()),
        policy("/Users/u/proj", "/Users/u", flags(|o| o.profile = Some(ProfileName::Strict))),
        policy(
            "/Users/u/proj",
            "/Users/u",
            flags(|o| {
                o.deny_write = vec!["vendor".into(), "src/gen/schema".into()];
                o.read = vec!["~/.ssh/known_hosts".into()];
            }),
        ),
    ];
    let samples = [
        "/",
        "/usr/bin/git",
        "/dev/disk0",
        "/Users/u",
        "/Users/u/Documents/x",
        "/Users/u/.ssh",
        "/Users/u/.ssh/id_ed25519",
        "/Users/u/.ssh/known_hosts",
        "/Users/u/.cargo/bin/cargo",
        "/Users/u/.cargo/credentials.toml",
        "/Users/u/Library/Keychains/login.keychain-db",
        "/Users/u/Library/LaunchAgents/x.plist",
        "/Users/u/proj",
        "/Users/u/proj/src/main.rs",
        "/Users/u/proj/src/gen/schema/a",
        "/Users/u/proj/vendor/x",
        "/Users/u/proj/.git/hooks/pre-commit",
        "/Users/u/proj/.git/config",
        "/Users/u/proj/.git/index",
        "/Users/u/proj/.envrc",
        "/Users/other/notes",
        "/private/var/folders/zz/abc/T/ringfence-42-1/x",
        "/private/etc/hosts",
    ];
    for p in &policies {
        let c = compiled(p, Net::None, None);
        for sample in samples {
            let sample = Path::new(sample);
            let expected = c.rules.access(sample).access;
            let in_region = |regions: &[ringfence_macos::regions::Region]| {
                regions.iter().any(|r| sample.starts_with(&r.root) && !r.except.iter().any(|e| sample.starts_with(e)))
            };
            let pinned = c.regions.pins.iter().any(|p| p == sample);
            let got = match (in_region(&c.regions.read), in_region(&c.regions.write) && !pinned) {
                (true, true) => FsAccess::Write,
                (true, false) => FsAccess::Read,
                _ => FsAccess::Deny,
            };
            assert_eq!(got, expected, "{} under the {} profile", sample.display(), p.profile);
        }
    }
}

#[test]
fn a_write_rule_through_a_link_to_home_is_refused() {
    let links = resolve::table(&[("/Users/u/proj/home", "/Users/u")]);
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.write = vec!["home".into()]));
    let request = Request { policy: &p, tmp: Path::new(TMP), net: Net::None, terminal: None };
    let err = compile(&request, &links).unwrap_err();
    assert!(err.message.contains("home folder /Users/u writable"), "{}", err.message);
    assert!(err.remedy.contains("--allow-writable-home"));
}

#[test]
fn a_rule_under_dev_is_refused() {
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.read = vec!["/dev/ttys001".into()]));
    let request = Request { policy: &p, tmp: Path::new(TMP), net: Net::None, terminal: None };
    let err = compile(&request, &mac_links()).unwrap_err();
    assert!(err.message.contains("/dev/ttys001"), "{}", err.message);
}

#[test]
fn explain_names_the_seatbelt_layer_of_each_rule() {
    let p = policy("/Users/u/proj", "/Users/u", flags(|o| o.deny_write = vec!["src/gen".into()]));
    let text = ringfence_macos::explain::files(&p, &compiled(&p, Net::None, None)).render();
    let line = |path: &str| text.lines().find(|l| l.trim_start().starts_with(&format!("{path} "))).unwrap_or_default();
    assert!(line("/Users/u/.ssh").contains("hidden") && line("/Users/u/.ssh").contains("any letter case"), "{text}");
    assert!(line("/Users/u/proj/.envrc").contains("read-only") && line("/Users/u/proj/.envrc").contains("absent"));
    assert!(line("/Users/u/proj").contains("writable"));
    assert!(line("/Users/u/Library/Keychains").contains("hidden"));
    assert!(text.contains("pinned") && text.contains("/Users/u/proj/src"), "{text}");
    assert!(line("/private/var/folders/zz/abc/T/ringfence-42-1").contains("writable"));
}
