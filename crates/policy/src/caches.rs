//! Package tools' caches shared with the sandbox safely. Their contents run later on the host
//! (an extracted crate's `build.rs`, a cached wheel, an npm tarball), so a cache is never a
//! writable root: backends show it as an overlay, the host's cache read-only below and a layer
//! of ringfence's own on top that host tools never read.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// A tool whose cache can be shared (`--cache NAME`, `[filesystem] caches`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheTool {
    /// cargo: `$CARGO_HOME/registry` and `$CARGO_HOME/git` (`~/.cargo`).
    Cargo,
    /// pip: `$PIP_CACHE_DIR`, else `$XDG_CACHE_HOME/pip` (`~/.cache/pip`).
    Pip,
    /// npm: `$npm_config_cache`, else `~/.npm`.
    Npm,
    /// Yarn: classic's `$YARN_CACHE_FOLDER` (`~/.cache/yarn`) and Berry's `~/.yarn/berry/cache`.
    Yarn,
    /// pnpm: its store (`$XDG_DATA_HOME/pnpm/store`) and metadata cache (`~/.cache/pnpm`).
    Pnpm,
    /// Go: `$GOMODCACHE` (`$GOPATH/pkg/mod`, `~/go/pkg/mod`) and `$GOCACHE` (`~/.cache/go-build`).
    Go,
    /// Maven: `~/.m2/repository`.
    Maven,
    /// Gradle: `$GRADLE_USER_HOME/caches` and `$GRADLE_USER_HOME/wrapper/dists` (`~/.gradle`).
    Gradle,
    /// uv: `$UV_CACHE_DIR`, else `$XDG_CACHE_HOME/uv` (`~/.cache/uv`).
    Uv,
    /// opencode: `$XDG_CACHE_HOME/opencode` (`~/.cache/opencode`), the provider packages it
    /// installs from npm and loads.
    Opencode,
}

/// One folder of a tool's cache. `label` names it in ringfence's own layer folders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheDir {
    pub label: &'static str,
    pub path: PathBuf,
}

impl CacheTool {
    pub fn all() -> &'static [CacheTool] {
        use CacheTool::*;
        &[Cargo, Pip, Npm, Yarn, Pnpm, Go, Maven, Gradle, Uv, Opencode]
    }

    pub fn name(self) -> &'static str {
        match self {
            CacheTool::Cargo => "cargo",
            CacheTool::Pip => "pip",
            CacheTool::Npm => "npm",
            CacheTool::Yarn => "yarn",
            CacheTool::Pnpm => "pnpm",
            CacheTool::Go => "go",
            CacheTool::Maven => "maven",
            CacheTool::Gradle => "gradle",
            CacheTool::Uv => "uv",
            CacheTool::Opencode => "opencode",
        }
    }

    /// The known names, comma-separated, for messages.
    pub fn names() -> String {
        CacheTool::all().iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    /// Host variables that move this tool's cache; read when the policy is built.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            CacheTool::Cargo => &["CARGO_HOME"],
            CacheTool::Pip => &["PIP_CACHE_DIR", "XDG_CACHE_HOME"],
            CacheTool::Npm => &["npm_config_cache", "NPM_CONFIG_CACHE"],
            CacheTool::Yarn => &["YARN_CACHE_FOLDER", "XDG_CACHE_HOME"],
            CacheTool::Pnpm => &["XDG_DATA_HOME", "XDG_CACHE_HOME"],
            CacheTool::Go => &["GOMODCACHE", "GOPATH", "GOCACHE", "XDG_CACHE_HOME"],
            CacheTool::Maven => &[],
            CacheTool::Gradle => &["GRADLE_USER_HOME"],
            CacheTool::Uv => &["UV_CACHE_DIR", "XDG_CACHE_HOME"],
            CacheTool::Opencode => &["XDG_CACHE_HOME"],
        }
    }

    /// Where this host keeps the tool's cache, and the variables that said so. `env` looks a
    /// host variable up; relative values are ignored, as the tools themselves would misplace them.
    pub fn locate(self, home: &Path, env: &dyn Fn(&str) -> Option<String>) -> (Vec<CacheDir>, Vec<(String, String)>) {
        let mut used = Vec::new();
        let mut var = |name: &str| {
            let value = env(name).filter(|v| Path::new(v).is_absolute())?;
            if !used.iter().any(|(k, _): &(String, String)| k == name) {
                used.push((name.to_string(), value.clone()));
            }
            Some(PathBuf::from(value))
        };
        let xdg_cache = var("XDG_CACHE_HOME").unwrap_or_else(|| home.join(".cache"));
        let dir = |label, path: PathBuf| CacheDir { label, path: crate::paths::normalize(&path) };
        let dirs = match self {
            CacheTool::Cargo => {
                let cargo = var("CARGO_HOME").unwrap_or_else(|| home.join(".cargo"));
                vec![dir("registry", cargo.join("registry")), dir("git", cargo.join("git"))]
            }
            CacheTool::Pip => vec![dir("cache", var("PIP_CACHE_DIR").unwrap_or_else(|| xdg_cache.join("pip")))],
            CacheTool::Npm => {
                let found = var("npm_config_cache").or_else(|| var("NPM_CONFIG_CACHE"));
                vec![dir("cache", found.unwrap_or_else(|| home.join(".npm")))]
            }
            CacheTool::Yarn => vec![
                dir("classic", var("YARN_CACHE_FOLDER").unwrap_or_else(|| xdg_cache.join("yarn"))),
                dir("berry", home.join(".yarn/berry/cache")),
            ],
            CacheTool::Pnpm => {
                let data = var("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share"));
                vec![dir("store", data.join("pnpm/store")), dir("cache", xdg_cache.join("pnpm"))]
            }
            CacheTool::Go => {
                // GOPATH is a list; the module cache is in its first entry.
                let gopath = var("GOPATH").and_then(|p| p.to_string_lossy().split(':').next().map(PathBuf::from));
                let gopath = gopath.unwrap_or_else(|| home.join("go"));
                let modcache = var("GOMODCACHE").unwrap_or_else(|| gopath.join("pkg/mod"));
                vec![dir("mod", modcache), dir("build", var("GOCACHE").unwrap_or_else(|| xdg_cache.join("go-build")))]
            }
            CacheTool::Maven => vec![dir("repository", home.join(".m2/repository"))],
            CacheTool::Gradle => {
                let gradle = var("GRADLE_USER_HOME").unwrap_or_else(|| home.join(".gradle"));
                vec![dir("caches", gradle.join("caches")), dir("wrapper", gradle.join("wrapper/dists"))]
            }
            CacheTool::Uv => vec![dir("cache", var("UV_CACHE_DIR").unwrap_or_else(|| xdg_cache.join("uv")))],
            CacheTool::Opencode => vec![dir("cache", xdg_cache.join("opencode"))],
        };
        (dirs, used)
    }

    /// The tool whose default cache folder holds `path`, for suggesting `--cache` instead of a
    /// writable root there.
    pub fn owning(path: &Path, home: &Path) -> Option<CacheTool> {
        let none = |_: &str| None;
        CacheTool::all()
            .iter()
            .copied()
            .find(|t| t.locate(home, &none).0.iter().any(|d| crate::paths::is_within(path, &d.path)))
    }
}

impl fmt::Display for CacheTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CacheTool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CacheTool::all()
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown cache `{s}`; use one of: {}", CacheTool::names()))
    }
}

impl Serialize for CacheTool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

// Unix paths: caches are Linux (and macOS) features.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn locate(tool: CacheTool, vars: &[(&str, &str)]) -> (Vec<PathBuf>, Vec<(String, String)>) {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (dirs, used) = tool.locate(Path::new("/home/u"), &|k| map.get(k).cloned());
        (dirs.into_iter().map(|d| d.path).collect(), used)
    }

    #[test]
    fn defaults_and_variables() {
        let (dirs, used) = locate(CacheTool::Cargo, &[]);
        assert_eq!(dirs, [PathBuf::from("/home/u/.cargo/registry"), PathBuf::from("/home/u/.cargo/git")]);
        assert!(used.is_empty());
        let (dirs, used) = locate(CacheTool::Cargo, &[("CARGO_HOME", "/opt/cargo")]);
        assert_eq!(dirs[0], PathBuf::from("/opt/cargo/registry"));
        assert_eq!(used, [("CARGO_HOME".to_string(), "/opt/cargo".to_string())]);
        // A relative value is ignored, like an unset one.
        let (dirs, used) = locate(CacheTool::Pip, &[("PIP_CACHE_DIR", "rel/pip")]);
        assert_eq!(dirs, [PathBuf::from("/home/u/.cache/pip")]);
        assert!(used.is_empty());
        let (dirs, _) = locate(CacheTool::Uv, &[("XDG_CACHE_HOME", "/c")]);
        assert_eq!(dirs, [PathBuf::from("/c/uv")]);
        let (dirs, used) = locate(CacheTool::Go, &[("GOPATH", "/g:/other")]);
        assert_eq!(dirs, [PathBuf::from("/g/pkg/mod"), PathBuf::from("/home/u/.cache/go-build")]);
        assert_eq!(used[0].0, "GOPATH");
        let (dirs, _) = locate(CacheTool::Npm, &[]);
        assert_eq!(dirs, [PathBuf::from("/home/u/.npm")]);
    }

    #[test]
    fn names_round_trip_and_owners_are_found() {
        for tool in CacheTool::all() {
            assert_eq!(tool.name().parse::<CacheTool>().unwrap(), *tool);
        }
        assert!("ccache".parse::<CacheTool>().unwrap_err().contains("use one of: cargo, pip"));
        let home = Path::new("/home/u");
        assert_eq!(CacheTool::owning(Path::new("/home/u/.cache/pip/wheels"), home), Some(CacheTool::Pip));
        assert_eq!(CacheTool::owning(Path::new("/home/u/.cargo/registry"), home), Some(CacheTool::Cargo));
        assert_eq!(CacheTool::owning(Path::new("/home/u/.cache"), home), None);
    }
}
