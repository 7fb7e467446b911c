//! The host's mount table (/proc/self/mountinfo), to find the other places where a file shows:
//! a bind mount of /home or of $HOME elsewhere shows the same files under another path, and
//! rules that hide by path must follow them there. Also finds the Windows drives of WSL.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    /// `major:minor` of the filesystem.
    pub device: String,
    /// The folder of the filesystem this mount shows.
    pub root: PathBuf,
    /// Where it shows it.
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// The mounts, in mountinfo's order (a later mount at the same point covers an earlier one).
#[derive(Clone, Debug, Default)]
pub struct MountTable {
    mounts: Vec<Mount>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash, ...).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

fn parse_line(line: &str) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let mut tail = tail.split(' ');
    Some(Mount {
        id: head.first()?.parse().ok()?,
        device: head.get(2)?.to_string(),
        root: unescape(head.get(3)?),
        point: unescape(head.get(4)?),
        fstype: tail.next()?.to_string(),
        source: tail.next()?.to_string(),
        super_options: tail.next().unwrap_or("").to_string(),
    })
}

impl MountTable {
    /// Parses mountinfo text; malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        MountTable { mounts: text.lines().filter_map(parse_line).collect() }
    }

    /// This process's mount table (empty if unreadable: nothing then has aliases).
    pub fn read() -> Self {
        MountTable::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// The mount that shows `path` (absolute, canonical): the deepest mount point above it,
    /// the last one listed among mounts at the same point.
    fn showing(&self, path: &Path) -> Option<&Mount> {
        self.mounts
            .iter()
            .filter(|m| path.starts_with(&m.point))
            .max_by_key(|m| m.point.components().count())
            .and_then(|deepest| self.mounts.iter().rev().find(|m| m.point == deepest.point))
    }

    /// Where `path` lives: its filesystem and its folder within it.
    fn locate(&self, path: &Path) -> Option<(&Mount, PathBuf)> {
        let mount = self.showing(path)?;
        let rest = path.strip_prefix(&mount.point).ok()?;
        Some((mount, if rest.as_os_str().is_empty() { mount.root.clone() } else { mount.root.join(rest) }))
    }

    /// Other places that show `path` or part of it: a mount of the same filesystem whose root
    /// holds `path`'s folder shows it at the matching place below its mount point; one whose
    /// root lies inside it shows a part of it at its mount point. Only places that no later
    /// mount covers count.
    pub fn aliases(&self, path: &Path) -> Vec<PathBuf> {
        let Some((mount, inner)) = self.locate(path) else { return Vec::new() };
        let mut out = Vec::new();
        for other in self.mounts.iter().filter(|m| m.device == mount.device && m.id != mount.id) {
            // A mount inside the region is covered by the region's own rule.
            if other.point.starts_with(path) {
                continue;
            }
            let alias = match inner.strip_prefix(&other.root) {
                Ok(rest) if rest.as_os_str().is_empty() => other.point.clone(),
                Ok(rest) => other.point.join(rest),
                Err(_) if other.root.starts_with(&inner) => other.point.clone(),
                Err(_) => continue,
            };
            if alias != path && self.showing(&alias).is_some_and(|m| m.id == other.id) && !out.contains(&alias) {
                out.push(alias);
            }
        }
        out
    }

    /// `path` as seen from `home`'s side when both lie on one filesystem: `Within(p)` when it
    /// shows `p`, a path at or below `home`; `Holds` when it shows a folder that holds `home`.
    pub fn relative_to_home(&self, path: &Path, home: &Path) -> Option<HomeView> {
        let (mount, inner) = self.locate(path)?;
        let (home_mount, home_inner) = self.locate(home)?;
        if mount.device != home_mount.device {
            return None;
        }
        if let Ok(rest) = inner.strip_prefix(&home_inner) {
            return Some(HomeView::Within(if rest.as_os_str().is_empty() {
                home.to_path_buf()
            } else {
                home.join(rest)
            }));
        }
        home_inner.starts_with(&inner).then_some(HomeView::Holds)
    }

    /// Mount points of Windows drives under WSL: `drvfs` (WSL 1), or 9p served by drvfs (WSL 2).
    pub fn windows_drives(&self) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .filter(|m| {
                m.fstype == "drvfs"
                    || (m.fstype == "9p"
                        && (m.source == "drvfs" || m.super_options.split([',', ';']).any(|o| o == "aname=drvfs")))
            })
            .map(|m| m.point.clone())
            .collect()
    }
}

/// How a path relates to $HOME through the filesystem they share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeView {
    Within(PathBuf),
    Holds,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with /home on its own filesystem (8:2), bound again at /srv/homes and /mnt/me
    /// (just $HOME), a bind of ~/.ssh at /opt/keys, and a tmpfs at /srv/homes/u/cache.
    const BINDS: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 8:2 / /home rw,relatime shared:2 - ext4 /dev/sda2 rw
41 22 8:2 / /srv/homes rw,relatime shared:2 - ext4 /dev/sda2 rw
42 22 8:2 /u /mnt/me rw,relatime - ext4 /dev/sda2 rw
43 22 8:2 /u/.ssh /opt/keys rw - ext4 /dev/sda2 rw
44 41 0:50 / /srv/homes/u/cache rw - tmpfs tmpfs rw
45 22 8:1 /var/with\\040space /mnt/sp\\134ace rw - ext4 /dev/sda1 rw
";

    #[test]
    fn bind_mounts_of_home_are_aliases() {
        let t = MountTable::parse(BINDS);
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(t.aliases(&p("/home/u/.ssh")), [p("/srv/homes/u/.ssh"), p("/mnt/me/.ssh"), p("/opt/keys")]);
        assert_eq!(
            t.aliases(&p("/home/u/.ssh/id_rsa")),
            [p("/srv/homes/u/.ssh/id_rsa"), p("/mnt/me/.ssh/id_rsa"), p("/opt/keys/id_rsa")]
        );
        // A place a later mount covers shows something else.
        assert!(t.aliases(&p("/home/u/cache/token")).iter().all(|a| !a.starts_with("/srv/homes/u/cache")));
        // A file on another filesystem has none.
        assert!(t.aliases(&p("/etc/shadow")).is_empty());
        // Seen from home's side.
        assert_eq!(
            t.relative_to_home(&p("/mnt/me/.config"), &p("/home/u")),
            Some(HomeView::Within(p("/home/u/.config")))
        );
        assert_eq!(t.relative_to_home(&p("/srv/homes/u"), &p("/home/u")), Some(HomeView::Within(p("/home/u"))));
        assert_eq!(t.relative_to_home(&p("/srv/homes"), &p("/home/u")), Some(HomeView::Holds));
        assert_eq!(t.relative_to_home(&p("/srv/homes/other"), &p("/home/u")), None);
        assert_eq!(t.relative_to_home(&p("/opt/x"), &p("/home/u")), None);
        assert_eq!(t.mounts.last().unwrap().point, p("/mnt/sp\\ace"));
        assert_eq!(t.mounts.last().unwrap().root, p("/var/with space"));
    }

    #[test]
    fn btrfs_subvolumes_are_not_aliases() {
        let t = MountTable::parse(
            "30 1 0:31 /@ / rw - btrfs /dev/sda2 rw,subvol=/@\n31 30 0:31 /@home /home rw - btrfs /dev/sda2 rw,subvol=/@home\n",
        );
        assert!(t.aliases(Path::new("/home/u/.ssh")).is_empty());
        assert!(t.aliases(Path::new("/etc/shadow")).is_empty());
    }

    #[test]
    fn wsl_drives_are_found() {
        let t = MountTable::parse(
            "60 22 0:55 / /mnt/c rw,noatime - 9p C:\\134 rw,dirsync,aname=drvfs;path=C:\\;uid=1000;gid=1000;symlinkroot=/mnt/\n\
             61 22 0:56 / /mnt/d rw - drvfs D: rw\n\
             62 22 0:57 / /mnt/share rw - 9p share rw,trans=virtio\n",
        );
        assert_eq!(t.windows_drives(), [PathBuf::from("/mnt/c"), PathBuf::from("/mnt/d")]);
        assert!(MountTable::parse("garbage\n\n1 2\n").mounts.is_empty());
    }
}
