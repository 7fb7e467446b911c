//! Checks on writable roots that need the host: the links on the way to them, and $HOME's
//! areas once links and second mounts are resolved.
//!
//! A link planted by one run redirects the next: `proj/sub -> ~/.config` made a workspace, or
//! `--write ./cache` after `cache -> ~/.local` was planted, would make that folder writable. So
//! a writable root is refused when the path the user named passes a link that a sandboxed run
//! could have made: one in a folder the caller can write, other than `/`, $HOME and the folders
//! above $HOME (no run writes those without an explicit danger flag). System links such as
//! `/home -> /var/home` sit in folders the caller can't write, and keep working.

use crate::mount_plan::PlanError;
use crate::mounts::{HomeView, MountTable};
use ringfence_policy::profile::home_tool_area;
use ringfence_policy::{FsAccess, FsRules, Policy, RuleKind};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// A symbolic link met on the way to a path: where it is, and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkHop {
    pub at: PathBuf,
    pub target: PathBuf,
}

fn parts(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some("..".into()),
        Component::CurDir => Some(".".into()),
        Component::RootDir | Component::Prefix(_) => None,
    })
}

/// Resolves absolute `path` the way the kernel does (a `..` after a link climbs from where the
/// link led) and lists the links followed. A missing component ends the walk; the rest is
/// appended as written.
pub fn walk(path: &Path) -> (PathBuf, Vec<LinkHop>) {
    let mut pending: VecDeque<OsString> = parts(path).collect();
    let mut current = PathBuf::from("/");
    let mut hops = Vec::new();
    while let Some(name) = pending.pop_front() {
        if name == "." {
            continue;
        }
        if name == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&name);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() && hops.len() < 40 => {
                let Ok(target) = std::fs::read_link(&candidate) else { return (candidate, hops) };
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                for part in parts(&target).rev() {
                    pending.push_front(part);
                }
                hops.push(LinkHop { at: candidate, target });
            }
            Ok(_) => current = candidate,
            Err(_) => {
                current = candidate;
                current.extend(pending.drain(..));
                return (ringfence_policy::normalize(&current), hops);
            }
        }
    }
    (current, hops)
}

/// Whether a sandboxed run, which has the caller's uid and groups and no capabilities, could
/// have made a link at `at`: its folder is the caller's own (which it may chmod) or writable
/// by its mode, and is not `/`, $HOME or above $HOME.
fn could_be_planted(at: &Path, home: &Path) -> bool {
    let Some(folder) = at.parent() else { return false };
    if folder == Path::new("/") || home.starts_with(folder) {
        return false;
    }
    let Ok(meta) = std::fs::metadata(folder) else { return true };
    let uid = nix::unistd::geteuid().as_raw();
    let in_group = |gid: u32| {
        nix::unistd::getegid().as_raw() == gid
            || nix::unistd::getgroups().is_ok_and(|g| g.iter().any(|x| x.as_raw() == gid))
    };
    meta.uid() == uid || meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && in_group(meta.gid()))
}

/// Refuses `named` as a writable root (`what` says which) when the way to it passes a link a
/// run could have planted; `fix` words the remedy for the real path.
pub fn refuse_planted_link(
    named: &Path,
    home: &Path,
    what: &str,
    fix: impl Fn(&Path) -> String,
) -> Result<(), PlanError> {
    let (real, hops) = walk(named);
    let Some(hop) = hops.iter().find(|h| could_be_planted(&h.at, home)) else { return Ok(()) };
    Err(PlanError(
        format!(
            "{what}: {} is reached through the link {} -> {}, in a folder a sandboxed run can write, so an \
             earlier run may have planted it; it leads to {}",
            named.display(),
            hop.at.display(),
            hop.target.display(),
            real.display()
        ),
        format!(
            "{}, if that is the folder you mean. Links are followed only where no run can make them: \
             in /, in your home folder itself or above it, and in folders you can't write",
            fix(&real)
        ),
    ))
}

/// The policy's writable roots (`--write`, `write` in config files, a workspace given as is
/// to the library), checked for planted links before they are resolved.
pub fn check_links(policy: &Policy) -> Result<(), PlanError> {
    for rule in policy.fs.of_kind(RuleKind::Write) {
        refuse_planted_link(&rule.path, &policy.home, &rule.origin.to_string(), |real| {
            format!("name the real folder instead: {}", real.display())
        })?;
    }
    Ok(())
}

fn writable_home(what: &str, home: &Path, how: &str) -> PlanError {
    PlanError(
        format!("{what} would make your home folder {} writable ({how})", home.display()),
        "name only the folders the command needs, or pass --allow-writable-home".into(),
    )
}

fn in_area(what: &str, root: &Path, area: &Path, home: &Path, how: &str) -> PlanError {
    let (message, help) = ringfence_policy::home_area_refusal(what, root, area, home);
    PlanError(format!("{message} ({how})"), help)
}

/// The policy's checks of $HOME and its areas, repeated on the resolved rules (`--write` of a
/// link to home, a home reached through a link) and on each second mount of $HOME's files
/// (a bind mount of /home elsewhere shows the same files under another path).
pub fn check_resolved(rules: &FsRules, home: &Path, policy: &Policy, mounts: &MountTable) -> Result<(), PlanError> {
    if home == Path::new("/") {
        return Ok(());
    }
    for rule in rules.of_kind(RuleKind::Write).filter(|r| rules.access(&r.path).access == FsAccess::Write) {
        let what = format!("{}: {}", rule.origin, rule.path.display());
        let areas_allowed = ringfence_policy::home_area_allowed(policy, &rule.origin);
        if let Some(area) = home_tool_area(home, &rule.path).filter(|_| !areas_allowed) {
            return Err(in_area(&rule.origin.to_string(), &rule.path, &area, home, "after resolving links"));
        }
        match mounts.relative_to_home(&rule.path, home) {
            Some(HomeView::Holds) if !home.starts_with(&rule.path) && !policy.allow_writable_home => {
                return Err(writable_home(&what, home, "through a second mount of it"));
            }
            Some(HomeView::Within(seen)) if seen != rule.path => {
                if seen == home && !policy.allow_writable_home {
                    return Err(writable_home(&what, home, "through a second mount of it"));
                }
                if let Some(area) = home_tool_area(home, &seen).filter(|_| !areas_allowed) {
                    let how = format!("a second mount of {}", seen.display());
                    return Err(in_area(&rule.origin.to_string(), &rule.path, &area, home, &how));
                }
            }
            _ => {}
        }
    }
    if policy.allow_writable_home || rules.access(home).access != FsAccess::Write {
        return Ok(());
    }
    let by = rules.of_kind(RuleKind::Write).find(|r| home.starts_with(&r.path));
    let what = by.map(|r| format!("{}: {}", r.origin, r.path.display())).unwrap_or_else(|| "a write rule".into());
    Err(writable_home(&what, home, "after resolving links"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(tag: &str) -> PathBuf {
        let dir = Path::new("/var/tmp").join(format!("rf-roots-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn the_walk_follows_links_like_the_kernel() {
        let dir = scratch("walk");
        std::fs::create_dir_all(dir.join("home/.config/app")).unwrap();
        std::fs::create_dir_all(dir.join("home/proj")).unwrap();
        symlink(dir.join("home/.config"), dir.join("home/proj/sub")).unwrap();
        symlink("../proj/sub/app", dir.join("home/proj/rel")).unwrap();
        let (real, hops) = walk(&dir.join("home/proj/sub/app"));
        assert_eq!(real, dir.join("home/.config/app"));
        assert_eq!(hops, [LinkHop { at: dir.join("home/proj/sub"), target: dir.join("home/.config") }]);
        // `..` after a link climbs from the link's target.
        assert_eq!(walk(&dir.join("home/proj/sub/..")).0, dir.join("home"));
        let (real, hops) = walk(&dir.join("home/proj/rel/missing/x"));
        assert_eq!(real, dir.join("home/.config/app/missing/x"));
        assert_eq!(hops.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_where_a_run_could_write_are_refused() {
        let dir = scratch("planted");
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".config")).unwrap();
        std::fs::create_dir_all(home.join("proj")).unwrap();
        symlink(home.join(".config"), home.join("proj/sub")).unwrap();
        symlink(home.join("proj"), home.join("work")).unwrap();
        let err =
            refuse_planted_link(&home.join("proj/sub"), &home, "the workspace", |r| format!("cd {}", r.display()))
                .unwrap_err();
        assert!(
            err.0.contains(&format!(
                "the link {} -> {}",
                home.join("proj/sub").display(),
                home.join(".config").display()
            )),
            "{}",
            err.0
        );
        assert!(err.1.starts_with(&format!("cd {}", home.join(".config").display())), "{}", err.1);
        // A link in $HOME itself can't have been planted without --allow-writable-home.
        assert!(refuse_planted_link(&home.join("work"), &home, "w", |_| String::new()).is_ok());
        // Nor one in a folder the caller may not write.
        let locked = dir.join("locked");
        std::fs::create_dir(&locked).unwrap();
        symlink(home.join("proj"), locked.join("link")).unwrap();
        let other = if nix::unistd::geteuid().is_root() { 65534 } else { 0 };
        std::os::unix::fs::chown(&locked, Some(other), Some(other)).unwrap_or(());
        let locked_owned = std::fs::metadata(&locked).unwrap().uid() == other;
        assert_eq!(refuse_planted_link(&locked.join("link"), &home, "w", |_| String::new()).is_ok(), locked_owned);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
