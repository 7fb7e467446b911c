//! What macOS adds to the policy's rules: its own secret stores and startup files, the run's
//! private temporary folder, and the fixed set of devices.

use ringfence_policy::{Builtin, FsRules, Origin, Policy, ProfileName, RuleKind};
use std::path::Path;

/// Secret stores under $HOME that exist only on macOS; hidden like the policy's secret list.
pub const MACOS_HOME_SECRETS: &[&str] = &[
    "Library/Keychains",
    "Library/Cookies",
    "Library/Accounts",
    "Library/Mail",
    "Library/Messages",
    "Library/Safari",
    "Library/IdentityServices",
    "Library/Group Containers/2BUA8C4S2C.com.1password",
    "Library/Application Support/1Password",
    "Library/Application Support/com.apple.TCC",
    "Library/Application Support/Google/Chrome",
    "Library/Application Support/Chromium",
    "Library/Application Support/Firefox",
    "Library/Application Support/BraveSoftware",
    "Library/Application Support/Microsoft Edge",
    "Library/Application Support/Vivaldi",
    "Library/Application Support/Arc",
    "Library/Application Support/gh",
];

/// Host-wide secret stores of macOS.
pub const MACOS_SYSTEM_SECRETS: &[&str] = &["/Library/Keychains", "/private/var/db/SystemKey"];

/// Files under $HOME that make macOS run code later (at login, or when a terminal or editor
/// opens); read-only like the policy's home startup files.
pub const MACOS_HOME_STARTUP: &[&str] =
    &["Library/LaunchAgents", "Library/Preferences/com.apple.Terminal.plist", "Library/Application Support/Code/User"];

/// Other users' home folders on macOS, hidden by the `strict` profile like /home on Linux.
pub const MACOS_HOMES: &[&str] = &["/Users", "/var/root"];

/// The policy's rules with macOS's additions, before links are resolved.
pub fn effective_rules(policy: &Policy, tmp: &Path) -> Result<FsRules, (String, String)> {
    check_devices(&policy.fs)?;
    let mut fs = FsRules::default();
    for rule in &policy.fs.rules {
        fs.add(rule.clone());
    }
    for secret in MACOS_HOME_SECRETS {
        fs.push(RuleKind::DenyRead, policy.home.join(secret), Builtin::MacosSecretList);
    }
    for secret in MACOS_SYSTEM_SECRETS {
        fs.push(RuleKind::DenyRead, secret.into(), Builtin::MacosSecretList);
    }
    if policy.profile == ProfileName::Strict {
        for dir in MACOS_HOMES {
            fs.push(RuleKind::DenyRead, dir.into(), Builtin::MacosHomeDirectories);
        }
    }
    for file in MACOS_HOME_STARTUP {
        fs.push(RuleKind::DenyWrite, policy.home.join(file), Builtin::MacosStartup);
    }
    // The run's private temporary folder, writable like the workspace and removed afterwards;
    // /dev hidden, the command gets a fixed set of devices instead.
    fs.push(RuleKind::Write, tmp.to_path_buf(), Builtin::PrivateTmp);
    fs.push(RuleKind::DenyRead, "/dev".into(), Builtin::Devices);
    Ok(fs)
}

/// A rule of the user's under /dev: the command gets a fixed set of devices, never a rule's.
fn check_devices(fs: &FsRules) -> Result<(), (String, String)> {
    match fs.rules.iter().find(|r| r.path.starts_with("/dev") && !matches!(r.origin, Origin::Builtin(_))) {
        Some(rule) => Err((
            format!("{}: {} is the sandbox's own and can't be changed by a rule", rule.origin, rule.path.display()),
            "remove the rule; the sandbox gets a fixed set of devices".into(),
        )),
        None => Ok(()),
    }
}
