//! The policy's rules as regions of the file tree. For any path the most specific rule decides
//! (`FsRules::access`), so the access changes only at rule paths. A region is a rule path where
//! an access starts (its nearest enclosing rule path doesn't have it) minus the nearest rule
//! paths inside it where the access stops; re-allowed paths further in are regions of their
//! own. Regions of one access never overlap, so the profile needs no rule order.

use ringfence_policy::{FsAccess, FsRules};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A subtree with some subtrees taken out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub root: PathBuf,
    pub except: Vec<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    pub read: Vec<Region>,
    pub write: Vec<Region>,
    /// Folders above a readable region that are not readable themselves: their metadata is
    /// readable, so that realpath(3) and getcwd(3) can climb through them.
    pub traverse: Vec<PathBuf>,
    /// Folders strictly between a writable region's root and a path inside it that is not
    /// writable (`.git` for `.git/hooks`): not writable themselves, so that none can be renamed
    /// away or created and a protected path sidestepped (`mv .git x; mkdir -p .git/hooks`).
    pub pins: Vec<PathBuf>,
}

/// The regions of `rules` (paths already resolved).
pub fn regions(rules: &FsRules) -> Regions {
    let access: BTreeMap<PathBuf, FsAccess> =
        rules.rules.iter().map(|r| (r.path.clone(), rules.access(&r.path).access)).collect();
    let readable = |a: FsAccess| a != FsAccess::Deny;
    let writable = |a: FsAccess| a == FsAccess::Write;
    let read = of(&access, readable);
    let write = of(&access, writable);
    let traverse = traverse(&read, rules);
    let pins = pins(&write);
    Regions { read, write, traverse, pins }
}

/// The nearest rule path above `path`.
fn enclosing<'a>(access: &'a BTreeMap<PathBuf, FsAccess>, path: &Path) -> Option<(&'a PathBuf, FsAccess)> {
    path.ancestors().skip(1).find_map(|a| access.get_key_value(a)).map(|(p, a)| (p, *a))
}

/// The regions where `has` holds.
fn of(access: &BTreeMap<PathBuf, FsAccess>, has: impl Fn(FsAccess) -> bool) -> Vec<Region> {
    // Each rule path where `has` holds belongs to the region started at the outermost rule
    // path of its unbroken chain of enclosing paths with `has`.
    let mut root_of: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
    let mut regions: BTreeMap<&PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    // Sorted order visits every path after its ancestors.
    for (path, &a) in access {
        let parent = enclosing(access, path);
        let parent_root = parent.filter(|(_, pa)| has(*pa)).and_then(|(p, _)| root_of.get(p).copied());
        match (has(a), parent_root) {
            (true, Some(root)) => {
                root_of.insert(path, root);
            }
            (true, None) => {
                root_of.insert(path, path);
                regions.insert(path, BTreeSet::new());
            }
            (false, Some(root)) => {
                regions.entry(root).or_default().insert(path.clone());
            }
            (false, None) => {}
        }
    }
    regions
        .into_iter()
        .map(|(root, except)| Region { root: root.clone(), except: except.into_iter().collect() })
        .collect()
}

/// The unreadable folders above readable regions.
fn traverse(read: &[Region], rules: &FsRules) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    for region in read {
        for a in region.root.ancestors().skip(1) {
            if rules.access(a).access != FsAccess::Deny {
                break;
            }
            out.insert(a.to_path_buf());
        }
    }
    out.into_iter().collect()
}

/// The folders between each writable region's root and the paths taken out of it.
fn pins(write: &[Region]) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    for region in write {
        for except in &region.except {
            for a in except.ancestors().skip(1).take_while(|a| *a != region.root) {
                out.insert(a.to_path_buf());
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::{Origin, RuleKind};

    fn rules(list: &[(RuleKind, &str)]) -> FsRules {
        let mut fs = FsRules::default();
        for (k, p) in list {
            fs.push(*k, PathBuf::from(p), Origin::flag("--test"));
        }
        fs
    }

    fn region(root: &str, except: &[&str]) -> Region {
        Region { root: root.into(), except: except.iter().map(PathBuf::from).collect() }
    }

    #[test]
    fn nested_allow_inside_deny_is_a_region_of_its_own() {
        let fs = rules(&[
            (RuleKind::Read, "/"),
            (RuleKind::DenyRead, "/Users/u"),
            (RuleKind::Read, "/Users/u/.cargo"),
            (RuleKind::DenyRead, "/Users/u/.cargo/credentials"),
            (RuleKind::Write, "/Users/u/proj"),
            (RuleKind::DenyWrite, "/Users/u/proj/.git/hooks"),
        ]);
        let r = regions(&fs);
        assert_eq!(
            r.read,
            vec![
                region("/", &["/Users/u"]),
                region("/Users/u/.cargo", &["/Users/u/.cargo/credentials"]),
                region("/Users/u/proj", &[]),
            ]
        );
        assert_eq!(r.write, vec![region("/Users/u/proj", &["/Users/u/proj/.git/hooks"])]);
        assert_eq!(r.traverse, vec![PathBuf::from("/Users/u")]);
        assert_eq!(r.pins, vec![PathBuf::from("/Users/u/proj/.git")]);
    }

    #[test]
    fn same_access_inside_merges_and_deny_write_inside_read_changes_nothing() {
        let fs = rules(&[
            (RuleKind::Read, "/"),
            (RuleKind::Read, "/usr"),
            (RuleKind::DenyWrite, "/etc"),
            (RuleKind::Write, "/w"),
            (RuleKind::Write, "/w/sub"),
            (RuleKind::DenyRead, "/w/sub/secret"),
        ]);
        let r = regions(&fs);
        assert_eq!(r.read, vec![region("/", &["/w/sub/secret"])]);
        assert_eq!(r.write, vec![region("/w", &["/w/sub/secret"])]);
        assert_eq!(r.pins, vec![PathBuf::from("/w/sub")]);
        assert!(r.traverse.is_empty());
    }

    #[test]
    fn nothing_readable_without_rules() {
        assert_eq!(regions(&FsRules::default()), Regions::default());
    }
}
