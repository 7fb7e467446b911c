//! Built-in profiles and the lists they are made of.

use crate::model::{FsRules, Origin, ProfileName, RuleKind};
use std::path::Path;

/// Secret folders under $HOME that no profile lets the sandbox read.
pub const HOME_SECRET_DIRS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".kube",
    ".docker",
    ".config/gh",
    ".config/hub",
    ".password-store",
    ".local/share/keyrings",
    ".mozilla",
    ".thunderbird",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/microsoft-edge",
    ".config/vivaldi",
    ".config/op",
    ".config/rclone",
    ".config/doctl",
    ".config/hcloud",
    ".oci",
    ".config/sops",
    ".config/github-copilot",
];

/// Secret files under $HOME that no profile lets the sandbox read.
pub const HOME_SECRET_FILES: &[&str] = &[
    ".netrc",
    ".npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".git-credentials",
    ".config/git/credentials",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".vault-token",
    ".terraform.d/credentials.tfrc.json",
    ".gem/credentials",
    ".m2/settings.xml",
    ".m2/settings-security.xml",
    ".gradle/gradle.properties",
    ".s3cfg",
    ".boto",
    ".pgpass",
    ".my.cnf",
    ".config/containers/auth.json",
    ".codex/auth.json",
    ".claude/.credentials.json",
    ".bash_history",
    ".zsh_history",
    ".python_history",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".local/share/fish/fish_history",
    ".cache/huggingface/token",
    ".huggingface/token",
];

/// Host-wide secrets.
pub const SYSTEM_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
    "/etc/ssl/private",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/var/backups/shadow.bak",
    "/var/backups/gshadow.bak",
];

/// Paths inside every writable root that stay read-only, even when absent (an empty
/// placeholder is mounted read-only for the run): code there runs later, outside the sandbox
/// (git hooks and config, submodules, direnv, editor tasks, our own config).
pub const PROTECTED_IN_WRITE_ROOTS: &[&str] =
    &[".git/hooks", ".git/config", ".gitmodules", ".envrc", ".vscode", ".idea", ".zed", ".ringfence.toml"];

/// Paths inside every writable root that stay read-only while they exist. When absent they are
/// inert: their tools only run them once a hook in .git (itself protected) points at them.
pub const PROTECTED_WHILE_PRESENT: &[&str] =
    &[".husky", ".pre-commit-config.yaml", "lefthook.yml", ".lefthook.yml", "mise.toml", ".mise.toml"];

/// The origin of rules from `PROTECTED_WHILE_PRESENT`; backends skip placeholders for them.
pub const WHILE_PRESENT: &str = "protected path, while present";

/// Files under $HOME that run code at login or on use; read-only even when $HOME is writable.
/// Their placeholders, when absent, are empty files: tools read them wherever they are, and a
/// directory there would break the tools inside.
pub const HOME_FILES: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".gitconfig",
    ".pam_environment",
    ".xprofile",
];

/// Folders under $HOME whose content runs code at login or on use; read-only like `HOME_FILES`.
pub const HOME_DIRS: &[&str] =
    &[".config/fish", ".config/git", ".config/ringfence", ".config/autostart", ".config/systemd", ".local/bin"];

/// Toolchain directories the `strict` profile keeps readable inside $HOME.
pub const STRICT_TOOLCHAINS: &[&str] = &[
    ".cargo",
    ".rustup",
    ".nvm",
    ".npm",
    ".pyenv",
    ".local/bin",
    ".local/lib",
    ".bun",
    ".deno",
    "go",
    ".sdkman",
    ".volta",
    ".rbenv",
    ".gradle",
    ".m2",
    ".cache",
];

/// The rules a profile starts with.
pub fn base_rules(profile: ProfileName, workspace: &Path, home: &Path) -> FsRules {
    let mut fs = FsRules::default();
    let origin = |what: &str| Origin::builtin(format!("{what} ({profile} profile)"));
    fs.push(RuleKind::Read, "/".into(), origin("read root"));
    if profile == ProfileName::Strict {
        for dir in ["/home", "/root"] {
            fs.push(RuleKind::DenyRead, dir.into(), origin("home directories"));
        }
        fs.push(RuleKind::DenyRead, home.to_path_buf(), origin("home directory"));
        for dir in STRICT_TOOLCHAINS {
            fs.push(RuleKind::Read, home.join(dir), origin("toolchain directory"));
        }
    }
    for secret in HOME_SECRET_DIRS.iter().chain(HOME_SECRET_FILES) {
        fs.push(RuleKind::DenyRead, home.join(secret), origin("secret list"));
    }
    for secret in SYSTEM_SECRETS {
        fs.push(RuleKind::DenyRead, secret.into(), origin("secret list"));
    }
    if profile == ProfileName::ReadOnly {
        fs.push(RuleKind::Read, workspace.to_path_buf(), origin("workspace"));
    } else {
        fs.push(RuleKind::Write, workspace.to_path_buf(), origin("workspace"));
    }
    for file in HOME_FILES.iter().chain(HOME_DIRS) {
        fs.push(RuleKind::DenyWrite, home.join(file), origin("protected path"));
    }
    fs
}

/// Adds the protected paths below every writable root; called once all roots are known.
pub fn protect_write_roots(fs: &mut FsRules) {
    let roots: Vec<_> = fs.of_kind(RuleKind::Write).map(|r| r.path.clone()).collect();
    let lists = [(PROTECTED_IN_WRITE_ROOTS, "protected path"), (PROTECTED_WHILE_PRESENT, WHILE_PRESENT)];
    for root in roots {
        for (names, what) in lists {
            for name in names {
                let path = root.join(name);
                if !fs.rules.iter().any(|r| r.kind == RuleKind::DenyWrite && r.path == path) {
                    fs.push(RuleKind::DenyWrite, path, Origin::builtin(what));
                }
            }
        }
    }
}
