//! Where a rule came from: `explain` and errors point at it, and backends tell the built-in
//! sources apart by their variant, never by their wording.

use crate::modes::ProfileName;
use crate::named::{Agent, ExecPreset};
use crate::presets::Preset;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// Where a rule came from, so `explain` and errors can point at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A built-in profile or list, or something ringfence found on the host or made itself.
    Builtin(Builtin),
    /// A built-in agent profile (`--profile agent:NAME`), with the line of the entry in its
    /// text (`ringfence profile show agent:NAME`). Above the built-in lists, so that it can
    /// re-allow the agent's own credentials; below every config file and flag.
    Agent { agent: Agent, line: usize },
    /// The user's config file, with the line of the entry.
    File { path: PathBuf, line: usize },
    /// The project's config file, with the line of the entry.
    Project { path: PathBuf, line: usize },
    /// A command-line flag or the library builder.
    Flag { flag: String },
}

impl Origin {
    pub fn flag(flag: impl Into<String>) -> Self {
        Origin::Flag { flag: flag.into() }
    }

    /// Precedence of the source: on equal paths the higher one wins.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Origin::Builtin(_) => 0,
            Origin::Agent { .. } => 1,
            Origin::File { .. } => 2,
            Origin::Project { .. } => 3,
            Origin::Flag { .. } => 4,
        }
    }
}

impl From<Builtin> for Origin {
    fn from(source: Builtin) -> Self {
        Origin::Builtin(source)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin(source) => write!(f, "built-in {source}"),
            Origin::Agent { agent, line } => write!(f, "built-in {agent} profile, line {line}"),
            Origin::File { path, line } | Origin::Project { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Flag { flag } => write!(f, "{flag}"),
        }
    }
}

/// The built-in lists and sources of rules. Shown in `explain` as `built-in <text>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Builtin {
    /// `/`, readable under every profile.
    ReadRoot { profile: ProfileName },
    /// `/home` and `/root`, hidden by the `strict` profile.
    HomeDirectories { profile: ProfileName },
    /// $HOME, hidden by the `strict` profile.
    HomeDirectory { profile: ProfileName },
    /// The toolchain folders the `strict` profile keeps readable (`STRICT_TOOLCHAINS`).
    Toolchain { profile: ProfileName },
    /// The secret list: `HOME_SECRET_DIRS`, `HOME_SECRET_FILES`, `SYSTEM_SECRETS`.
    SecretList { profile: ProfileName },
    /// The workspace: writable, or readable under the `read-only` profile.
    Workspace { profile: ProfileName },
    /// $HOME's startup files and folders (`HOME_FILES`, `HOME_DIRS`).
    HomeStartup { profile: ProfileName },
    /// `PROTECTED_IN_WRITE_ROOTS`, below every writable root.
    ProtectedPath,
    /// `PROTECTED_WHILE_PRESENT` below every writable root, and ringfence's own cache folder.
    ProtectedWhilePresent,
    /// ringfence's user config and its folder.
    RingfenceConfig,
    /// The cache a package registry's preset brings along; `by` is where the preset came from.
    PresetCache { preset: Preset, by: Box<Origin> },
    /// The rules of a built-in exec preset; `by` is where the preset came from.
    ExecPreset { preset: ExecPreset, by: Box<Origin> },
    /// The socket of a host service (ssh-agent, D-Bus, docker, any path socket listening).
    HostSocket,
    /// A folder under /run the sandbox keeps (NixOS's system, the host resolver's files).
    SystemRuntime,
    /// A folder git's `core.hooksPath` names.
    GitHooksPath,
    /// A file git's configs include.
    GitInclude,
    /// Found by the secret pattern: a name that marks a credential, token or key store.
    SecretName { matches: &'static str },
    /// Found by the secret pattern: a folder that holds a browser or Electron profile.
    BrowserProfile { marker: String },
    /// The secret list in a Windows user profile that WSL mounts.
    WslProfile,
    /// A hidden path shown again elsewhere by a second mount of its filesystem.
    SecondMount { of: PathBuf },
    /// ringfence's event log (`--events`) inside a writable root.
    EventLog,
    /// ringfence's status file (`--json-status`) inside a writable root.
    StatusFile,
    /// macOS's own secret stores.
    MacosSecretList,
    /// Other users' home folders on macOS, hidden by the `strict` profile.
    MacosHomeDirectories,
    /// What makes macOS run code later (launch agents, Terminal's and VS Code's settings).
    MacosStartup,
    /// The run's private temporary folder on macOS (TMPDIR).
    PrivateTmp,
    /// /dev on macOS: the command gets a fixed set of devices instead.
    Devices,
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Builtin::ReadRoot { profile } => write!(f, "read root ({profile} profile)"),
            Builtin::HomeDirectories { profile } => write!(f, "home directories ({profile} profile)"),
            Builtin::HomeDirectory { profile } => write!(f, "home directory ({profile} profile)"),
            Builtin::Toolchain { profile } => write!(f, "toolchain directory ({profile} profile)"),
            Builtin::SecretList { profile } => write!(f, "secret list ({profile} profile)"),
            Builtin::Workspace { profile } => write!(f, "workspace ({profile} profile)"),
            Builtin::HomeStartup { profile } => write!(f, "protected path ({profile} profile)"),
            Builtin::ProtectedPath => f.write_str("protected path"),
            Builtin::ProtectedWhilePresent => f.write_str("protected path, while present"),
            Builtin::RingfenceConfig => f.write_str("ringfence config"),
            Builtin::PresetCache { by, .. } if matches!(**by, Origin::Flag { .. }) => {
                write!(f, "cache implied by {by}")
            }
            Builtin::PresetCache { preset, by } => write!(f, "cache implied by preset {preset} ({by})"),
            Builtin::ExecPreset { preset, by } => write!(f, "exec preset {preset} ({by})"),
            Builtin::HostSocket => f.write_str("host service socket"),
            Builtin::SystemRuntime => f.write_str("system runtime"),
            Builtin::GitHooksPath => f.write_str("git core.hooksPath"),
            Builtin::GitInclude => f.write_str("git include"),
            Builtin::SecretName { matches } => write!(f, "secret pattern: the name matches `{matches}`"),
            Builtin::BrowserProfile { marker } => {
                write!(f, "secret pattern: a browser or Electron profile (holds {marker})")
            }
            Builtin::WslProfile => f.write_str("secret list, in a Windows profile (WSL)"),
            Builtin::SecondMount { of } => write!(f, "secret list, second mount of {}", of.display()),
            Builtin::EventLog => f.write_str("event log"),
            Builtin::StatusFile => f.write_str("status file"),
            Builtin::MacosSecretList => f.write_str("secret list (macOS)"),
            Builtin::MacosHomeDirectories => f.write_str("home directories (strict profile) (macOS)"),
            Builtin::MacosStartup => f.write_str("protected path (macOS)"),
            Builtin::PrivateTmp => f.write_str("private temporary folder (TMPDIR)"),
            Builtin::Devices => {
                f.write_str("devices: only null, zero, random, urandom, fd, ptmx and the run's own terminal")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sources_read_as_before_and_serialize_by_name() {
        let preset = |by| Origin::from(Builtin::PresetCache { preset: Preset::Npm, by: Box::new(by) });
        assert_eq!(
            preset(Origin::flag("--allow-preset npm")).to_string(),
            "built-in cache implied by --allow-preset npm"
        );
        let file = Origin::File { path: "/u/config.toml".into(), line: 2 };
        assert_eq!(preset(file).to_string(), "built-in cache implied by preset npm (/u/config.toml:2)");
        let root = Origin::from(Builtin::ReadRoot { profile: ProfileName::Strict });
        assert_eq!(root.to_string(), "built-in read root (strict profile)");
        assert_eq!(
            serde_json::to_value(&root).unwrap(),
            serde_json::json!({"kind": "builtin", "source": "read-root", "profile": "strict"})
        );
        let found = Origin::from(Builtin::SecretName { matches: "token" });
        assert_eq!(found.to_string(), "built-in secret pattern: the name matches `token`");
        assert_eq!(
            serde_json::to_value(&found).unwrap(),
            serde_json::json!({"kind": "builtin", "source": "secret-name", "matches": "token"})
        );
        assert_eq!(
            serde_json::to_value(Origin::from(Builtin::HostSocket)).unwrap(),
            serde_json::json!({"kind": "builtin", "source": "host-socket"})
        );
    }
}
