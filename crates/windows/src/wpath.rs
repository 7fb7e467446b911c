//! Windows path text, handled lexically so the ACL plan can be built and tested anywhere:
//! either separator, case-insensitive comparison, drive roots, UNC shares and the `\\?\`
//! prefix that canonical paths carry.

/// Lexically normalizes: `/` becomes `\`, `\\?\` and `\\?\UNC\` prefixes are dropped, `.` goes,
/// `..` takes the previous component (never the root), repeated and trailing separators go,
/// and a drive letter is upper-cased. Roots keep their separator (`C:\`, `\`).
pub fn normalize(path: &str) -> String {
    let mut p = path.replace('/', "\\");
    if let Some(rest) = p.strip_prefix(r"\\?\UNC\") {
        p = format!(r"\\{rest}");
    } else if let Some(rest) = p.strip_prefix(r"\\?\") {
        p = rest.to_string();
    }
    let (root, rest) = split_root(&p);
    let mut parts: Vec<&str> = Vec::new();
    for part in rest.split('\\') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = root;
    out.push_str(&parts.join("\\"));
    out
}

/// Splits off the root, normalized: `C:\`, `C:` (drive-relative), `\\server\share\`, `\`, or
/// nothing (relative).
fn split_root(p: &str) -> (String, &str) {
    let b = p.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        let drive = (b[0] as char).to_ascii_uppercase();
        return if b.get(2) == Some(&b'\\') {
            (format!("{drive}:\\"), &p[3..])
        } else {
            (format!("{drive}:"), &p[2..])
        };
    }
    if let Some(unc) = p.strip_prefix(r"\\") {
        let mut it = unc.splitn(3, '\\');
        let server = it.next().unwrap_or("");
        let share = it.next().unwrap_or("");
        let rest = it.next().unwrap_or("");
        return (format!(r"\\{server}\{share}\"), rest);
    }
    if let Some(rest) = p.strip_prefix('\\') {
        return ("\\".to_string(), rest);
    }
    (String::new(), p)
}

/// Whether `path` is a root (`C:\`, `\`, `\\server\share\`), after normalizing.
pub fn is_root(path: &str) -> bool {
    let n = normalize(path);
    let (root, rest) = split_root(&n);
    !root.is_empty() && rest.is_empty()
}

fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Whether two normalized paths name the same file (Windows compares names without case).
pub fn same(a: &str, b: &str) -> bool {
    fold(a) == fold(b)
}

/// Whether normalized `path` is `base` or below it.
pub fn is_within(path: &str, base: &str) -> bool {
    let (p, b) = (fold(path), fold(base));
    if p == b {
        return true;
    }
    if b.ends_with('\\') {
        return p.starts_with(&b);
    }
    p.len() > b.len() && p.starts_with(&b) && p.as_bytes()[b.len()] == b'\\'
}

/// The parent of a normalized path; None for a root or a single relative component.
pub fn parent(path: &str) -> Option<String> {
    let (root, rest) = split_root(path);
    if rest.is_empty() {
        return None;
    }
    match rest.rfind('\\') {
        Some(i) => Some(format!("{root}{}", &rest[..i])),
        None if !root.is_empty() => Some(root),
        None => None,
    }
}

/// The last component.
pub fn file_name(path: &str) -> &str {
    path.rsplit('\\').next().unwrap_or(path)
}

/// Joins a relative `name` (either separator) to `dir`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('\\') || dir.is_empty() {
        normalize(&format!("{dir}{name}"))
    } else {
        normalize(&format!("{dir}\\{name}"))
    }
}

/// The paths strictly between `base` and `path` (below `base`, above `path`), outermost
/// first. Empty unless `path` lies strictly below `base`.
pub fn between(base: &str, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !is_within(path, base) || same(path, base) {
        return out;
    }
    let mut cur = parent(path);
    while let Some(p) = cur {
        if same(&p, base) || !is_within(&p, base) {
            break;
        }
        cur = parent(&p);
        out.push(p);
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("c:/Users/me/./proj/../work/"), r"C:\Users\me\work");
        assert_eq!(normalize(r"\\?\C:\x\y"), r"C:\x\y");
        assert_eq!(normalize(r"\\?\UNC\srv\share\a"), r"\\srv\share\a");
        assert_eq!(normalize(r"C:\"), r"C:\");
        assert_eq!(normalize(r"C:\.."), r"C:\");
        assert_eq!(normalize("/"), r"\");
        assert_eq!(normalize("/etc/shadow"), r"\etc\shadow");
        assert_eq!(normalize(r"C:\a\\b"), r"C:\a\b");
        assert_eq!(normalize(r"rel\x\..\y"), r"rel\y");
    }

    #[test]
    fn roots() {
        for r in [r"C:\", "c:/", "/", r"\\srv\share", r"\\srv\share\"] {
            assert!(is_root(r), "{r}");
        }
        for n in [r"C:\x", r"\x", "x", r"\\srv\share\x"] {
            assert!(!is_root(n), "{n}");
        }
    }

    #[test]
    fn containment_ignores_case() {
        assert!(is_within(r"C:\Users\Me\Proj\src", r"c:\users\me\proj"));
        assert!(is_within(r"C:\Users\me", r"C:\Users\me"));
        assert!(!is_within(r"C:\Users\me2", r"C:\Users\me"));
        assert!(is_within(r"C:\x", r"C:\"));
        assert!(is_within(r"\etc\x", r"\"));
        assert!(!is_within(r"C:\", r"C:\x"));
        assert!(same(r"C:\ÄB", r"c:\äb"));
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent(r"C:\a\b").as_deref(), Some(r"C:\a"));
        assert_eq!(parent(r"C:\a").as_deref(), Some(r"C:\"));
        assert_eq!(parent(r"C:\"), None);
        assert_eq!(parent(r"\\srv\share\a").as_deref(), Some(r"\\srv\share\"));
        assert_eq!(file_name(r"C:\a\.git"), ".git");
        assert_eq!(join(r"C:\w", ".git/hooks"), r"C:\w\.git\hooks");
        assert_eq!(join(r"C:\", "x"), r"C:\x");
    }

    #[test]
    fn between_lists_the_pins() {
        assert_eq!(between(r"C:\w", r"C:\w\.git\hooks"), vec![r"C:\w\.git".to_string()]);
        assert_eq!(between(r"C:\w", r"C:\w\a\b\c"), vec![r"C:\w\a".to_string(), r"C:\w\a\b".to_string()]);
        assert!(between(r"C:\w", r"C:\w\x").is_empty());
        assert!(between(r"C:\w", r"C:\w").is_empty());
        assert!(between(r"C:\w", r"C:\other\x").is_empty());
    }
}
