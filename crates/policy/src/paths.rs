//! Path arithmetic on policy paths: lexical only, no filesystem access, so every platform
//! agrees on what a rule names.

use std::path::{Path, PathBuf};

/// Whether normalized `path` is `base` or below it.
pub fn is_within(path: &Path, base: &Path) -> bool {
    let (p, b) = (path.as_os_str().as_encoded_bytes(), base.as_os_str().as_encoded_bytes());
    let separator = |c: u8| c == b'/' || (cfg!(windows) && c == b'\\');
    p.starts_with(b) && (p.len() == b.len() || b.last().is_some_and(|&c| separator(c)) || separator(p[b.len()]))
}

/// Lexically normalizes an absolute path: removes `.`, resolves `..`, drops trailing slashes.
/// A Windows drive or UNC prefix is kept; `..` never climbs above the root.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Prefix(prefix) => out.push(prefix.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            Component::Normal(p) => {
                if !out.has_root() {
                    out.push(Component::RootDir.as_os_str());
                }
                out.push(p);
            }
            Component::CurDir => {}
        }
    }
    if !out.has_root() {
        out.push(Component::RootDir.as_os_str());
    }
    out
}

/// Expands `~` and makes `raw` absolute against `base`.
pub fn expand_path(raw: &str, base: &Path, home: &Path) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("empty path".into());
    }
    let joined = if raw == "~" {
        home.to_path_buf()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.join(rest)
    } else if raw.starts_with('~') {
        return Err(format!("`{raw}`: only `~` and `~/…` are supported, not `~user`"));
    } else {
        base.join(raw)
    };
    Ok(normalize(&joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_component_wise() {
        assert!(is_within(Path::new("/a/b"), Path::new("/a")));
        assert!(is_within(Path::new("/a"), Path::new("/a")));
        assert!(is_within(Path::new("/a"), Path::new("/")));
        assert!(!is_within(Path::new("/ab"), Path::new("/a")));
        assert!(!is_within(Path::new("/a"), Path::new("/a/b")));
    }

    #[test]
    fn paths_expand() {
        let home = Path::new("/home/u");
        let base = Path::new("/work/p");
        assert_eq!(expand_path("~/.ssh", base, home).unwrap(), PathBuf::from("/home/u/.ssh"));
        assert_eq!(expand_path("../x/./y/", base, home).unwrap(), PathBuf::from("/work/x/y"));
        assert_eq!(expand_path("/abs", base, home).unwrap(), PathBuf::from("/abs"));
        assert!(expand_path("~bob/x", base, home).is_err());
    }
}
