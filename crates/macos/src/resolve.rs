//! Paths as Seatbelt sees them. Seatbelt matches the path of the file an operation reaches,
//! with every symbolic link resolved: `/tmp/x` is `/private/tmp/x`, `/var/folders/…` is
//! `/private/var/folders/…`, `/etc/hosts` is `/private/etc/hosts`, and a home folder reached
//! through a link is matched at its target. A rule written with the link would match nothing.

use ringfence_policy::normalize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// The firmlinks of the system volume (/usr/share/firmlinks): each of these folders is also
/// reachable below /System/Volumes/Data, the data volume's own mount point.
pub const FIRMLINKS: &[&str] = &[
    "/Applications",
    "/Library",
    "/System/Library/Caches",
    "/System/Library/Assets",
    "/System/Library/PreinstalledAssets",
    "/System/Library/AssetsV2",
    "/System/Library/PreinstalledAssetsV2",
    "/System/Library/Speech",
    "/Users",
    "/Volumes",
    "/cores",
    "/opt",
    "/private",
    "/usr/local",
    "/usr/libexec/cups",
    "/usr/share/snmp",
];

/// Where the data volume is mounted.
pub const DATA_VOLUME: &str = "/System/Volumes/Data";

/// The second spelling of a path below a firmlink (`/Users/u/.ssh` is also
/// `/System/Volumes/Data/Users/u/.ssh`), if it has one.
pub fn firmlink_twin(path: &Path) -> Option<PathBuf> {
    FIRMLINKS.iter().any(|f| path.starts_with(f)).then(|| {
        let rest = path.strip_prefix("/").unwrap_or(path);
        Path::new(DATA_VOLUME).join(rest)
    })
}

/// Links followed before giving up on a path (the kernel's own limit is 32).
const MAX_LINKS: usize = 40;

/// A path with the links in it resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Every link on the way resolved except the last component, which is kept as it is: the
    /// name an operation on a link itself (rename, unlink, create) is matched at.
    pub at: PathBuf,
    /// The last component followed too, when it is a link: where reads and writes through the
    /// path land.
    pub target: PathBuf,
}

/// Resolves paths with `read_link` (the host's, or a table in tests); a component that is not
/// a link, or does not exist, is kept as it is.
pub struct Resolver<F: Fn(&Path) -> Option<PathBuf>> {
    read_link: F,
    cache: std::cell::RefCell<HashMap<PathBuf, Option<PathBuf>>>,
}

/// The host's links.
pub fn host() -> Resolver<impl Fn(&Path) -> Option<PathBuf>> {
    Resolver::new(|p: &Path| std::fs::read_link(p).ok())
}

/// A fixed table of links, for tests: `(link, target)`.
pub fn table(links: &[(&str, &str)]) -> Resolver<impl Fn(&Path) -> Option<PathBuf>> {
    let map: HashMap<PathBuf, PathBuf> = links.iter().map(|(l, t)| (PathBuf::from(l), PathBuf::from(t))).collect();
    Resolver::new(move |p: &Path| map.get(p).cloned())
}

impl<F: Fn(&Path) -> Option<PathBuf>> Resolver<F> {
    pub fn new(read_link: F) -> Self {
        Resolver { read_link, cache: Default::default() }
    }

    fn link(&self, path: &Path) -> Option<PathBuf> {
        if let Some(hit) = self.cache.borrow().get(path) {
            return hit.clone();
        }
        let found = (self.read_link)(path);
        self.cache.borrow_mut().insert(path.to_path_buf(), found.clone());
        found
    }

    /// Resolves `path` (absolute, normalized). A loop of links leaves the rest unresolved.
    pub fn resolve(&self, path: &Path) -> Resolved {
        let parent = path.parent().map(|p| self.follow(p)).unwrap_or_else(|| PathBuf::from("/"));
        let at = match path.file_name() {
            Some(name) => parent.join(name),
            None => parent,
        };
        let target = self.follow(&at);
        Resolved { at, target }
    }

    /// Follows every link in `path`, the last component included.
    fn follow(&self, path: &Path) -> PathBuf {
        let mut done = PathBuf::from("/");
        let mut pending: Vec<PathBuf> = components(path);
        let mut budget = MAX_LINKS;
        while let Some(part) = pending.pop() {
            let next = normalize(&done.join(&part));
            match self.link(&next).filter(|_| budget > 0) {
                Some(target) => {
                    budget -= 1;
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                    pending.extend(components(&target));
                }
                None => done = next,
            }
        }
        done
    }
}

/// The normal components of `path`, last first (a stack to pop from).
fn components(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from(OsStr::new(".."))),
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macos() -> Resolver<impl Fn(&Path) -> Option<PathBuf>> {
        table(&[
            ("/tmp", "private/tmp"),
            ("/var", "private/var"),
            ("/etc", "private/etc"),
            ("/Users/u/proj/out", "../build"),
            ("/Users/u/loop", "/Users/u/loop"),
            ("/Users/u/dangling", "/Users/u/nowhere/x"),
        ])
    }

    #[test]
    fn system_links_resolve() {
        let r = macos();
        assert_eq!(r.resolve(Path::new("/tmp/a")).target, PathBuf::from("/private/tmp/a"));
        assert_eq!(r.resolve(Path::new("/var/folders/x/T")).at, PathBuf::from("/private/var/folders/x/T"));
        assert_eq!(r.resolve(Path::new("/etc")).at, PathBuf::from("/etc"));
        assert_eq!(r.resolve(Path::new("/etc")).target, PathBuf::from("/private/etc"));
        assert_eq!(r.resolve(Path::new("/")).target, PathBuf::from("/"));
    }

    #[test]
    fn relative_and_dangling_links_resolve() {
        let r = macos();
        let out = r.resolve(Path::new("/Users/u/proj/out/x"));
        assert_eq!(out.target, PathBuf::from("/Users/u/build/x"));
        let d = r.resolve(Path::new("/Users/u/dangling"));
        assert_eq!(d.at, PathBuf::from("/Users/u/dangling"));
        assert_eq!(d.target, PathBuf::from("/Users/u/nowhere/x"));
    }

    #[test]
    fn firmlinked_paths_have_a_data_volume_twin() {
        let twin = |p: &str| firmlink_twin(Path::new(p));
        assert_eq!(twin("/Users/u/.ssh"), Some(PathBuf::from("/System/Volumes/Data/Users/u/.ssh")));
        assert_eq!(twin("/private/etc/sudoers"), Some(PathBuf::from("/System/Volumes/Data/private/etc/sudoers")));
        assert_eq!(twin("/usr/bin"), None);
        assert_eq!(twin("/Usersx"), None);
        assert_eq!(twin("/dev"), None);
    }

    #[test]
    fn loops_end() {
        let r = macos();
        assert_eq!(r.resolve(Path::new("/Users/u/loop/x")).target, PathBuf::from("/Users/u/loop/x"));
    }
}
