//! Presets: named host lists for the network's `allow` mode, each on port 443.

use crate::caches::CacheTool;
use serde::{Serialize, Serializer};
use std::fmt;

/// Built-in allow lists. Each is a documented list of host patterns, all on port 443.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// npm and Yarn registries: registry.npmjs.org, registry.yarnpkg.com, repo.yarnpkg.com.
    Npm,
    /// The Python Package Index: pypi.org, files.pythonhosted.org.
    Pypi,
    /// crates.io: crates.io, index.crates.io, static.crates.io.
    Crates,
    /// GitHub: github.com, api.github.com, codeload.github.com, raw.githubusercontent.com,
    /// objects.githubusercontent.com, release-assets.githubusercontent.com.
    Github,
    /// The OpenAI API: api.openai.com.
    Openai,
    /// The Anthropic API: api.anthropic.com.
    Anthropic,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Npm => "npm",
            Preset::Pypi => "pypi",
            Preset::Crates => "crates",
            Preset::Github => "github",
            Preset::Openai => "openai",
            Preset::Anthropic => "anthropic",
        }
    }

    /// The host patterns the preset allows.
    pub fn hosts(self) -> &'static [&'static str] {
        match self {
            Preset::Npm => &["registry.npmjs.org:443", "registry.yarnpkg.com:443", "repo.yarnpkg.com:443"],
            Preset::Pypi => &["pypi.org:443", "files.pythonhosted.org:443"],
            Preset::Crates => &["crates.io:443", "index.crates.io:443", "static.crates.io:443"],
            Preset::Github => &[
                "github.com:443",
                "api.github.com:443",
                "codeload.github.com:443",
                "raw.githubusercontent.com:443",
                "objects.githubusercontent.com:443",
                "release-assets.githubusercontent.com:443",
            ],
            Preset::Openai => &["api.openai.com:443"],
            Preset::Anthropic => &["api.anthropic.com:443"],
        }
    }

    /// The package tool whose cache comes with the preset (shared as an overlay).
    pub fn cache(self) -> Option<CacheTool> {
        match self {
            Preset::Npm => Some(CacheTool::Npm),
            Preset::Pypi => Some(CacheTool::Pip),
            Preset::Crates => Some(CacheTool::Cargo),
            Preset::Github | Preset::Openai | Preset::Anthropic => None,
        }
    }

    pub fn all() -> &'static [Preset] {
        &[Preset::Npm, Preset::Pypi, Preset::Crates, Preset::Github, Preset::Openai, Preset::Anthropic]
    }

    /// The known names, comma-separated, for messages.
    pub fn names() -> String {
        Preset::all().iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Preset::all()
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown preset `{s}`; use one of: {}", Preset::names()))
    }
}

impl Serialize for Preset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
