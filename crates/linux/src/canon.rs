//! Symlink resolution for planning, and for the checks that name host paths.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// Resolves symlinks with one `lstat` per new path component, remembering every directory it
/// has seen: the rules share most of their ancestors ($HOME, ~/.config), and planning runs on
/// every launch. A missing component ends resolution; the rest is appended as written.
#[derive(Default)]
pub struct Canonicalizer {
    seen: HashMap<PathBuf, (PathBuf, bool)>,
    /// What `lstat` said of each existing canonical path seen (never a link).
    found: HashMap<PathBuf, Metadata>,
}

impl Canonicalizer {
    pub fn resolve(&mut self, path: &Path) -> PathBuf {
        self.resolve_inner(path, 0).0
    }

    /// For a canonical path already resolved: None if absent, else whether it is a directory.
    pub fn kind(&mut self, canonical: &Path) -> Option<bool> {
        let (_, exists) = self.resolve_inner(canonical, 0);
        exists.then(|| self.found.get(canonical).map_or(canonical == Path::new("/"), Metadata::is_dir))
    }

    /// What `lstat` said of a canonical path `kind` or `resolve` found.
    pub fn metadata(&self, canonical: &Path) -> Option<&Metadata> {
        self.found.get(canonical)
    }

    /// The canonical path and whether it exists.
    fn resolve_inner(&mut self, path: &Path, depth: u32) -> (PathBuf, bool) {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return (PathBuf::from("/"), true);
        };
        if let Some(hit) = self.seen.get(path) {
            return hit.clone();
        }
        let (parent, parent_exists) = self.resolve_inner(parent, depth);
        let candidate = parent.join(name);
        let result = if !parent_exists {
            (candidate, false)
        } else {
            match std::fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() && depth < 40 => match std::fs::read_link(&candidate) {
                    Ok(target) => self.resolve_inner(&ringfence_policy::normalize(&parent.join(target)), depth + 1),
                    Err(_) => (candidate, true),
                },
                Ok(m) => {
                    self.found.insert(candidate.clone(), m);
                    (candidate, true)
                }
                Err(_) => (candidate, false),
            }
        };
        self.seen.insert(path.to_path_buf(), result.clone());
        result
    }
}

/// Resolves symlinks in the longest existing prefix of `path` and re-appends the missing tail.
pub fn canonicalize_lenient(path: &Path) -> PathBuf {
    Canonicalizer::default().resolve(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalizer_follows_links_and_keeps_missing_tails() {
        let dir = Path::new("/var/tmp").join(format!("rf-canon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        let dir = dir.canonicalize().unwrap();
        std::os::unix::fs::symlink("real", dir.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.join("real/sub"), dir.join("abs")).unwrap();
        std::fs::write(dir.join("real/file"), "x").unwrap();
        let mut c = Canonicalizer::default();
        assert_eq!(c.resolve(&dir.join("link/sub/x/y")), dir.join("real/sub/x/y"));
        assert_eq!(c.resolve(&dir.join("abs/z")), dir.join("real/sub/z"));
        assert_eq!(c.resolve(&dir.join("missing/x")), dir.join("missing/x"));
        assert_eq!(c.kind(&dir.join("real/sub")), Some(true));
        assert_eq!(c.kind(&dir.join("real/file")), Some(false));
        assert_eq!(c.kind(&dir.join("real/sub/x")), None);
        assert!(c.metadata(&dir.join("real/file")).is_some_and(|m| m.len() == 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
