//! Secrets the built-in list can't name, found at launch: credential, token, cookie and key
//! stores by their names, browser and Electron profiles by what they hold, the same secrets
//! under a second mount of $HOME, and the Windows profiles a WSL host mounts.
//!
//! The scan runs on every launch, so it reads only a few known places, one or two levels deep,
//! never follows links, and skips what is already hidden.

use crate::mounts::MountTable;
use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use ringfence_policy::profile::{
    secret_name, HOME_SECRET_DIRS, HOME_SECRET_FILES, PROFILE_MARKERS, WINDOWS_PROFILE_SECRETS,
};
use ringfence_policy::{Builtin, FsAccess, FsRule, FsRules, RuleKind};
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries read from one folder at most: a folder with more is read that far.
const ENTRIES_PER_FOLDER: usize = 2048;

/// Folders of $HOME whose entries are application folders, each looked into. (Flatpak's and
/// snap's per-app homes, `~/.var/app` and `~/snap`, are hidden whole by the secret list.)
const APP_ROOTS: &[&str] = &[".config", ".local/share"];

/// Windows profile folders that are not a person's.
const NOT_PROFILES: &[&str] = &["Public", "Default", "Default User", "All Users"];

/// A folder, open, with the names in it and whether each is a folder (links left out).
struct Listing {
    dir: Dir,
    entries: Vec<(std::ffi::OsString, bool)>,
}

/// Lists a folder without following links: `name` relative to an open `parent` (one lookup,
/// not a walk from /), or an absolute path. Keeps the entries `keep` (given the name and
/// whether it is a folder) wants: most entries of most folders are of no interest.
fn list(parent: Option<&Dir>, path: &Path, keep: impl Fn(&[u8], bool) -> bool) -> Option<Listing> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = match (parent, path.file_name()) {
        (Some(parent), Some(name)) => Dir::openat(parent, name, flags, Mode::empty()),
        _ => Dir::open(path, flags, Mode::empty()),
    }
    .ok()?;
    // SAFETY: `dir` stays open, and is only read, while the borrow is used (the loop below).
    let fd = unsafe { crate::sys::borrow_fd(dir.as_raw_fd()) };
    let mut entries = Vec::new();
    for entry in dir.iter().flatten().take(ENTRIES_PER_FOLDER) {
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(Type::Symlink) => continue,
            Some(kind) => kind == Type::Directory,
            None => nix::sys::stat::fstatat(fd, entry.file_name(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR),
        };
        if keep(name, is_dir) {
            entries.push((OsStr::from_bytes(name).to_os_string(), is_dir));
        }
    }
    Some(Listing { dir, entries })
}

/// Whether a name matters to the scan: it looks like a secret, or (with `markers`) it marks a
/// browser or Electron profile.
fn interesting(name: &[u8], markers: bool) -> bool {
    let marker = markers && PROFILE_MARKERS.iter().any(|m| m.as_bytes() == name);
    marker || std::str::from_utf8(name).ok().and_then(secret_name).is_some()
}

/// Collects what the scan hides, with why.
struct Scan<'a> {
    rules: &'a FsRules,
    workspace: &'a Path,
    found: Vec<(PathBuf, Builtin)>,
}

impl Scan<'_> {
    /// Whether `path` is worth a look: not hidden already, and not in the workspace (its
    /// files are the user's work, not a tool's store) nor in an agent profile's state folder
    /// (the agent's own store, whose credentials the profile names).
    fn open_to_view(&self, path: &Path) -> bool {
        self.rules.access(path).access != FsAccess::Deny
            && !path.starts_with(self.workspace)
            && !self.rules.agent_roots().any(|root| path.starts_with(root))
    }

    /// Records the entries of `listing` (the folder `folder`) whose names match. With
    /// `markers`, a folder holding a profile's marker is recorded whole instead. Returns the
    /// other folders among the entries that are not hidden, when asked to (`descend`). Only
    /// matches (and those folders) are checked against the rules: most entries are neither.
    fn check(&mut self, listing: &Listing, folder: &Path, markers: bool, descend: bool) -> Vec<PathBuf> {
        let marker =
            listing.entries.iter().find(|(n, _)| markers && PROFILE_MARKERS.iter().any(|m| OsStr::new(m) == n));
        if let Some((marker, _)) = marker {
            let why = Builtin::BrowserProfile { marker: marker.to_string_lossy().into_owned() };
            self.found.push((folder.to_path_buf(), why));
            return Vec::new();
        }
        let mut folders = Vec::new();
        for (name, is_dir) in &listing.entries {
            let why = name.to_str().and_then(secret_name);
            if why.is_none() && !(*is_dir && descend) {
                continue;
            }
            let path = folder.join(name);
            if !self.open_to_view(&path) {
                continue;
            }
            match why {
                Some(matches) => self.found.push((path, Builtin::SecretName { matches })),
                None => folders.push(path),
            }
        }
        folders
    }

    /// A folder of application folders (`~/.config`): each application folder is looked into.
    fn app_root(&mut self, parent: Option<&Dir>, root: &Path) {
        if !self.open_to_view(root) {
            return;
        }
        let Some(listing) = list(parent, root, |name, is_dir| is_dir || interesting(name, false)) else { return };
        for app in self.check(&listing, root, false, true) {
            if let Some(inner) = list(Some(&listing.dir), &app, |name, _| interesting(name, true)) {
                self.check(&inner, &app, true, false);
            }
        }
    }
}

/// What the secret pattern hides below `home`: matching names among $HOME's dot entries and
/// one level inside each dot folder, and among `~/.config`'s and `~/.local/share`'s
/// application folders and one level inside each; and every dot folder or application folder
/// that holds a browser or Electron profile.
pub fn pattern(home: &Path, workspace: &Path, rules: &FsRules) -> Vec<(PathBuf, Builtin)> {
    let mut scan = Scan { rules, workspace, found: Vec::new() };
    let dot = |name: &[u8], _: bool| name.first() == Some(&b'.');
    let Some(dots) = list(None, home, dot).filter(|_| home != Path::new("/")) else { return scan.found };
    let app_roots: Vec<PathBuf> = APP_ROOTS.iter().map(|r| home.join(r)).collect();
    for folder in scan.check(&dots, home, false, true) {
        if !app_roots.contains(&folder) {
            if let Some(inner) = list(Some(&dots.dir), &folder, |name, _| interesting(name, true)) {
                scan.check(&inner, &folder, true, false);
            }
        }
    }
    for root in &app_roots {
        // A dotfiles manager may make ~/.config a link; its folder is scanned where it is.
        let real = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
        scan.app_root(None, &real);
    }
    scan.found
}

/// The Windows user profiles on the drives a WSL host mounts (`/mnt/c/Users/NAME`), and what
/// to hide in each: the home secret lists, and Windows' browser, credential and chat stores.
pub fn windows_profiles(mounts: &MountTable) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for drive in mounts.windows_drives() {
        let users = drive.join("Users");
        for (name, is_dir) in list(None, &users, |_, is_dir| is_dir).map(|l| l.entries).unwrap_or_default() {
            if is_dir && !NOT_PROFILES.iter().any(|n| OsStr::new(n) == name) {
                let profile = users.join(&name);
                let lists = HOME_SECRET_DIRS.iter().chain(HOME_SECRET_FILES).chain(WINDOWS_PROFILE_SECRETS);
                out.extend(lists.map(|rel| profile.join(rel)));
            }
        }
    }
    out
}

/// The rules found at launch, beyond `rules` (canonical): the secret pattern below `home`, the
/// Windows profiles of WSL, then every hidden path again at each other place a mount shows it.
pub fn found(rules: &FsRules, home: &Path, workspace: &Path, mounts: &MountTable) -> Vec<FsRule> {
    let mut found: Vec<FsRule> = pattern(home, workspace, rules)
        .into_iter()
        .map(|(path, why)| FsRule::new(RuleKind::DenyRead, path, why))
        .collect();
    found.extend(windows_profiles(mounts).into_iter().map(|p| FsRule::new(RuleKind::DenyRead, p, Builtin::WslProfile)));
    let hidden: Vec<PathBuf> = rules.of_kind(RuleKind::DenyRead).chain(&found).map(|r| r.path.clone()).collect();
    for path in hidden {
        for alias in mounts.aliases(&path) {
            if same_file(&path, &alias) {
                found.push(FsRule::new(RuleKind::DenyRead, alias, Builtin::SecondMount { of: path.clone() }));
            }
        }
    }
    found
}

/// Whether `alias` shows the file at `original`; an absent original matches any alias (its
/// rule then only keeps a file created there later unreadable).
fn same_file(original: &Path, alias: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(original), std::fs::symlink_metadata(alias)) {
        (Err(_), _) => true,
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        (Ok(_), Err(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::{Overrides, PolicyBuilder};

    fn scratch(tag: &str) -> PathBuf {
        let dir = Path::new("/var/tmp").join(format!("rf-secrets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }

    #[test]
    fn the_pattern_finds_stores_and_profiles_and_spares_neighbours() {
        let home = scratch("pattern");
        for f in [
            ".config/sometool/credentials.json",
            ".config/sometool/config.toml",
            ".config/SomeApp/Cookies",
            ".config/SomeApp/settings.json",
            ".local/share/python_keyring/keyring_pass.cfg",
            ".mytool/api_token",
            ".mytool/config",
            ".librewolf/profiles.ini",
            ".rediscli_history",
            ".ssh/id_rsa",
            "proj/.config/x/credentials",
        ] {
            touch(&home.join(f));
        }
        let ws = home.join("proj");
        let policy = PolicyBuilder::new(&ws, &home).overrides(Overrides::default()).build().unwrap();
        let found: Vec<PathBuf> = pattern(&home, &ws, &policy.fs).into_iter().map(|(p, _)| p).collect();
        let want = [
            ".config/sometool/credentials.json",
            ".config/SomeApp",
            ".local/share/python_keyring",
            ".mytool/api_token",
            ".librewolf",
            ".rediscli_history",
        ];
        for w in want {
            assert!(found.contains(&home.join(w)), "{w} not found in {found:?}");
        }
        assert_eq!(found.len(), want.len(), "{found:?}");
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn windows_profiles_of_wsl_get_the_lists() {
        let drive = scratch("wsl");
        for user in ["alice", "Public", "Default"] {
            std::fs::create_dir_all(drive.join("Users").join(user)).unwrap();
        }
        let line = format!("60 22 0:55 / {} rw - 9p C:\\134 rw,aname=drvfs;path=C:\\\n", drive.display());
        let found = windows_profiles(&MountTable::parse(&line));
        let alice = drive.join("Users/alice");
        assert!(
            found.contains(&alice.join(".ssh"))
                && found.contains(&alice.join(".aws/credentials").parent().unwrap().to_path_buf())
        );
        assert!(found.contains(&alice.join("AppData")) && found.contains(&alice.join(".git-credentials")));
        assert!(found.iter().all(|p| p.starts_with(&alice)), "only real people's profiles: {found:?}");
        assert!(windows_profiles(&MountTable::parse("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")).is_empty());
        std::fs::remove_dir_all(&drive).unwrap();
    }
}
