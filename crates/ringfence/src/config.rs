//! Finding and reading config files, and merging them with flags into one policy.

use ringfence_policy::{LoadedConfig, Overrides, Policy, PolicyBuilder, PolicyError};
use std::path::{Path, PathBuf};

/// The project config's file name, looked for in the workspace.
pub const PROJECT_CONFIG: &str = ".ringfence.toml";

/// Where the user config lives: $XDG_CONFIG_HOME/ringfence/config.toml or ~/.config/….
pub fn user_config_path(home: &Path) -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"))
        .join("ringfence/config.toml")
}

/// The user's home directory, from $HOME or the password database.
pub fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    #[cfg(target_os = "linux")]
    if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::getuid()) {
        return user.dir;
    }
    PathBuf::from("/")
}

fn read(path: &Path) -> Result<Option<LoadedConfig>, PolicyError> {
    // A directory here is a concurrent run's read-only placeholder for the absent file.
    if path.is_dir() {
        return Ok(None);
    }
    match std::fs::read_to_string(path) {
        Ok(text) => LoadedConfig::parse(path, text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PolicyError::new(format!("{}: {e}", path.display()))),
    }
}

/// Where the layers of a policy come from.
#[derive(Clone, Debug, Default)]
pub struct PolicySources {
    /// The workspace (the command's directory); the process's cwd when unset.
    pub workspace: Option<PathBuf>,
    /// Use this file instead of the user config.
    pub config: Option<PathBuf>,
    /// Skip the user and project config files.
    pub no_config: bool,
}

/// The current directory as the user reached it: `$PWD` when it names the current directory
/// (shells keep it with the links the user went through), else the resolved one.
#[cfg(target_os = "linux")]
fn logical_cwd() -> Result<PathBuf, PolicyError> {
    use std::os::unix::fs::MetadataExt;
    let real = std::env::current_dir().map_err(|e| PolicyError::new(format!("the current directory: {e}")))?;
    let same = |p: &Path| {
        let (a, b) = (std::fs::metadata(p), std::fs::metadata(&real));
        a.is_ok_and(|a| b.is_ok_and(|b| a.dev() == b.dev() && a.ino() == b.ino()))
    };
    Ok(std::env::var_os("PWD").map(PathBuf::from).filter(|p| p.is_absolute() && same(p)).unwrap_or(real))
}

/// Refuses a workspace the user named through a link a sandboxed run could have planted (a
/// folder linked to ~/.config inside a project): the user must name the real folder. The
/// named path must still lead to `workspace` (resolved before): a link swapped meanwhile is
/// refused too.
#[cfg(target_os = "linux")]
fn check_named_workspace(sources: &PolicySources, home: &Path, workspace: &Path) -> Result<(), PolicyError> {
    let named = match &sources.workspace {
        Some(w) if w.is_absolute() => w.clone(),
        Some(w) => logical_cwd()?.join(w),
        None => logical_cwd()?,
    };
    ringfence_linux::roots::refuse_planted_link(&named, home, "the workspace", |real| {
        format!("run from the real folder: cd {0} (or -C {0})", real.display())
    })
    .map_err(|e| PolicyError::new(e.0).with_help(e.1))?;
    let (now, _) = ringfence_linux::roots::walk(&named);
    if now != workspace {
        return Err(PolicyError::new(format!(
            "the workspace {} changed while ringfence started: it led to {}, then to {}",
            named.display(),
            workspace.display(),
            now.display()
        ))
        .with_help("run again from the real folder, and check what is changing it"));
    }
    Ok(())
}

/// The host's values of the variables that place tools' caches.
fn tool_env() -> std::collections::BTreeMap<String, String> {
    let names = ringfence_policy::CacheTool::all().iter().flat_map(|t| t.variables());
    names.filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect()
}

/// Builds the effective policy: built-in profile, user config, project config, then `flags`.
pub fn load_policy(sources: &PolicySources, flags: Overrides) -> Result<Policy, PolicyError> {
    let workspace = match &sources.workspace {
        Some(w) => w.clone(),
        None => std::env::current_dir().map_err(|e| PolicyError::new(format!("the current directory: {e}")))?,
    };
    let workspace = workspace
        .canonicalize()
        .map_err(|e| PolicyError::new(format!("the workspace {}: {e}", workspace.display())))?;
    // Resolved, so a $HOME reached through a link is still recognised as home by the policy.
    let home = home_dir();
    let home = home.canonicalize().unwrap_or(home);
    #[cfg(target_os = "linux")]
    check_named_workspace(sources, &home, &workspace)?;
    let user_path = user_config_path(&home);
    let mut builder = PolicyBuilder::new(&workspace, &home).user_config_path(&user_path).tool_env(tool_env());
    #[cfg(target_os = "linux")]
    if let Some(total) = ringfence_linux::features::physical_memory() {
        builder = builder.physical_memory(ringfence_policy::ByteSize(total));
    }
    if !sources.no_config {
        let user = match &sources.config {
            Some(path) => {
                // Made absolute (against the workspace, like other paths in flags), so the file is
                // protected and its own relative paths resolve.
                let path = workspace.join(path);
                let loaded = read(&path)?;
                Some(loaded.ok_or_else(|| PolicyError::new(format!("--config {}: no such file", path.display())))?)
            }
            None => read(&user_path)?,
        };
        if let Some(user) = user {
            builder = builder.user_config(user);
        }
        if let Some(project) = read(&workspace.join(PROJECT_CONFIG))? {
            builder = builder.project_config(project);
        }
    }
    builder.overrides(flags).build()
}
