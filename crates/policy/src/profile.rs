//! The built-in lists that profiles are made of, and the names the launch-time secret scan
//! looks for. Data and pure predicates only: `base_rules` turns them into rules.

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
    ".config/glab-cli",
    ".fly",
    ".pki/nssdb",
    ".local/share/kwalletd",
    ".kde/share/apps/kwallet",
    ".kde4/share/apps/kwallet",
    ".config/Slack",
    ".config/discord",
    ".config/opera",
    ".var/app",
    "snap",
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
    ".yarnrc",
    ".terraformrc",
    ".kaggle/kaggle.json",
    ".gemini/oauth_creds.json",
    ".gemini/google_accounts.json",
    ".local/share/opencode/auth.json",
    ".aider/oauth-keys.env",
    ".claude.json",
    ".pulumi/credentials.json",
    ".config/configstore/firebase-tools.json",
    ".config/composer/auth.json",
    ".composer/auth.json",
    ".config/pip/pip.conf",
    ".pip/pip.conf",
    ".viminfo",
    ".Xauthority",
    ".ICEauthority",
];

/// Below each Windows user profile a WSL host mounts (`/mnt/c/Users/NAME`), besides the home
/// secret lists: `AppData` whole, where Windows programs keep their browser profiles, credential
/// and DPAPI key stores and chat sessions (tools in WSL don't need it, and hiding the folder
/// costs one rule instead of a walk of a slow drive), and the user's registry hive.
pub const WINDOWS_PROFILE_SECRETS: &[&str] = &["AppData", "NTUSER.DAT"];

/// Name fragments (any case) that mark an entry as a credential, token, cookie or key store
/// when the launch-time scan finds it (see `secret_name`). Tools rarely keep what they need
/// to run under such names; `history` catches the REPL and client histories beyond the list.
pub const SECRET_NAME_FRAGMENTS: &[&str] = &[
    "credential",
    "token",
    "secret",
    "cookie",
    "password",
    "passwd",
    "oauth",
    "apikey",
    "api_key",
    "api-key",
    "private_key",
    "keyring",
    "wallet",
    "history",
];

/// Whole names (any case) the scan hides: auth files and private keys kept outside `~/.ssh`.
pub const SECRET_NAMES: &[&str] =
    &["auth.json", ".authinfo", ".authinfo.gpg", "id_rsa", "id_ed25519", "id_ecdsa", "id_dsa", "adbkey"];

/// Endings (any case) of key stores and private keys. A `.pem` counts only when its name says
/// key or private (`client-key.pem`, `privkey.pem`): certificates are public and tools need them.
pub const SECRET_SUFFIXES: &[&str] = &[".key", ".p12", ".pfx", ".jks", ".keystore", ".kdbx", ".ppk"];

/// Names that are never secrets though they match: public keys, samples, tokenizers.
const NOT_SECRET: &[&str] = &[".pub", ".sample", ".example", "tokeniz"];

/// Entries that mark their folder as a browser or Electron (Chromium, Firefox) profile: the
/// whole folder is hidden, since such apps keep sessions and tokens in many files.
pub const PROFILE_MARKERS: &[&str] = &[
    "Cookies",
    "Local State",
    "Local Storage",
    "Login Data",
    "Session Storage",
    "Web Data",
    "cookies.sqlite",
    "key4.db",
    "logins.json",
    "profiles.ini",
];

/// The first of `needles` (lowercase) found anywhere in `hay`, ignoring ASCII case. Allocates
/// nothing: the launch-time scan asks this for thousands of names.
fn find_ignoring_case(hay: &[u8], needles: &[&'static str]) -> Option<&'static str> {
    (0..hay.len()).find_map(|i| {
        let first = hay[i].to_ascii_lowercase();
        needles.iter().copied().find(|n| {
            n.as_bytes()[0] == first && hay.get(i..i + n.len()).is_some_and(|w| w.eq_ignore_ascii_case(n.as_bytes()))
        })
    })
}

fn ends_ignoring_case(hay: &[u8], suffix: &str) -> bool {
    hay.len() >= suffix.len() && hay[hay.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Why the scan hides an entry called `name`, or None. Pure, so every backend agrees.
pub fn secret_name(name: &str) -> Option<&'static str> {
    let name = name.as_bytes();
    if find_ignoring_case(name, NOT_SECRET).is_some() {
        return None;
    }
    if let Some(fragment) = find_ignoring_case(name, SECRET_NAME_FRAGMENTS) {
        return Some(fragment);
    }
    if let Some(exact) = SECRET_NAMES.iter().find(|n| name.eq_ignore_ascii_case(n.as_bytes())) {
        return Some(exact);
    }
    if ends_ignoring_case(name, ".pem") && find_ignoring_case(name, &["key", "priv"]).is_some() {
        return Some("private key .pem");
    }
    SECRET_SUFFIXES.iter().copied().find(|s| ends_ignoring_case(name, s))
}

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
/// placeholder is mounted read-only for the run): code there runs later, outside the sandbox.
/// Each is a name no tool trips over when it is an empty directory for a while:
/// - git hooks and config, submodules (`.gitmodules`: git ignores an empty directory), direnv;
/// - editor folders whose tasks, settings or hooks run code: `.vscode`, `.idea`, `.zed`, `.helix`;
/// - coding agents' project folders, whose settings hold hooks and MCP servers they start:
///   `.claude` (settings.json hooks), `.cursor`, `.gemini`, `.codex`;
/// - `.devcontainer`, whose commands (`postCreateCommand`, …) run when the folder is opened;
/// - ringfence's own project config.
pub const PROTECTED_IN_WRITE_ROOTS: &[&str] = &[
    ".git/hooks",
    ".git/config",
    ".gitmodules",
    ".envrc",
    ".vscode",
    ".idea",
    ".zed",
    ".helix",
    ".claude",
    ".cursor",
    ".gemini",
    ".codex",
    ".devcontainer",
    ".ringfence.toml",
];

/// Paths inside every writable root that stay read-only while they exist, with no placeholder
/// when absent. Two reasons:
/// - inert while absent: the hook managers (`.husky`, pre-commit, Lefthook) run their config
///   only from a git hook, itself protected; mise asks to trust a new config;
/// - files that tools read by name from the folder they run in, where an empty directory (or an
///   empty file) would break the tools inside the sandbox: Claude Code's `.mcp.json`, editors'
///   exrc files (`.nvim.lua`, `.nvimrc`, `.exrc`, `.vimrc`), Emacs' `.dir-locals.el`,
///   cargo's `.cargo/config.toml` and `.cargo/config` (`rustc-wrapper`, runners), rustup's
///   `rust-toolchain.toml` and `rust-toolchain` (a path toolchain runs its binaries), npm's and
///   Yarn's project configs (`node-options`, `yarnPath`), pnpm's `.pnpmfile.cjs` hooks. One the
///   run creates is left to the post-run review, which moves it aside.
pub const PROTECTED_WHILE_PRESENT: &[&str] = &[
    ".husky",
    ".pre-commit-config.yaml",
    "lefthook.yml",
    ".lefthook.yml",
    "mise.toml",
    ".mise.toml",
    ".mcp.json",
    ".nvim.lua",
    ".nvimrc",
    ".exrc",
    ".vimrc",
    ".dir-locals.el",
    ".dir-locals-2.el",
    ".cargo/config.toml",
    ".cargo/config",
    "rust-toolchain.toml",
    "rust-toolchain",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".pnpmfile.cjs",
];

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

/// Entries of $HOME besides its dot entries that hold configuration or programs: scripts on
/// PATH (`bin`), Go's default GOPATH (`go`, whose `bin` is on PATH), local::lib's `perl5`, a
/// `node_modules` that Node searches for every script below $HOME, snaps' per-app data, and
/// Windows' `AppData`. A writable root in one of them, or in any dot entry of $HOME, needs an
/// explicit flag (see `home_tool_area`).
pub const HOME_TOOL_AREAS: &[&str] = &["bin", "go", "perl5", "node_modules", "snap", "AppData"];

/// The entry of $HOME that holds `path` when it is a configuration, program or cache area:
/// a dot entry (`~/.config`, `~/.local`, `~/.cargo`, `~/.bashrc`, …) or one of
/// `HOME_TOOL_AREAS`. Code there runs later outside the sandbox, so making it writable is a
/// choice the user makes explicitly, like a writable $HOME.
pub fn home_tool_area(home: &Path, path: &Path) -> Option<std::path::PathBuf> {
    let first = path.strip_prefix(home).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    (name.starts_with('.') || HOME_TOOL_AREAS.contains(&name)).then(|| home.join(name))
}

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
