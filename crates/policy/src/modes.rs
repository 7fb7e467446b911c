//! The named settings a policy picks from: its profile and its network mode.

use serde::Serialize;
use std::fmt;

/// The built-in profiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileName {
    /// Read the whole filesystem except secrets; write the workspace and a private /tmp.
    #[default]
    Workspace,
    /// Like `workspace`, but the workspace is read-only too.
    ReadOnly,
    /// Hide all of $HOME except the workspace and toolchain directories.
    Strict,
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileName::Workspace => "workspace",
            ProfileName::ReadOnly => "read-only",
            ProfileName::Strict => "strict",
        })
    }
}

impl std::str::FromStr for ProfileName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "workspace" => Ok(ProfileName::Workspace),
            "read-only" => Ok(ProfileName::ReadOnly),
            "strict" => Ok(ProfileName::Strict),
            _ => Err(format!("unknown profile `{s}`; use `workspace`, `read-only` or `strict`")),
        }
    }
}

/// Network access for the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// No network: the sandbox has its own loopback and nothing else.
    #[default]
    None,
    /// Only the allowed hosts, through ringfence's gateway (HTTP and SOCKS5 proxies); every
    /// attempt is checked and recorded.
    Allow,
    /// The host's network, unfiltered. A danger flag: nothing checks what is sent.
    Host,
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::None => "none",
            NetworkMode::Allow => "allow",
            NetworkMode::Host => "host",
        })
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "allow" => Ok(NetworkMode::Allow),
            "host" => Ok(NetworkMode::Host),
            _ => Err(format!("unknown network mode `{s}`; use `none`, `allow` or `host`")),
        }
    }
}
