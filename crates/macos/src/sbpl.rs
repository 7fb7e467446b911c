//! SBPL text. A generated profile is ASCII only and never contains a path: every path, and
//! every regular expression built from one, travels as a parameter of
//! `sandbox_init_with_parameters` (`(param "P3")` in the text, the exact bytes beside it).
//! A path can't change the profile's structure whatever bytes it holds, quotes, backslashes,
//! parentheses and newlines included, and non-ASCII names reach the kernel unchanged.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// A profile and the parameters it refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The SBPL source: printable ASCII, newlines and spaces only.
    pub text: String,
    /// `(name, value)` for each `(param "name")` in the text, in order of first use.
    pub params: Vec<(String, Vec<u8>)>,
}

impl Profile {
    /// The profile with each line's parameters shown in a comment at its end, for golden files
    /// and debugging. Values are shown with Rust's escapes, so the result is ASCII too.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.text.len() * 2);
        for line in self.text.lines() {
            out.push_str(line);
            let mut sep = "  ; ";
            for part in line.split("(param \"").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                if let Some((_, value)) = self.params.iter().find(|(n, _)| n == name) {
                    let shown: String = String::from_utf8_lossy(value).escape_default().collect();
                    let _ = write!(out, "{sep}{name}=\"{shown}\"");
                    sep = " ";
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Quotes a fixed string (a service or sysctl name) as an SBPL string literal. Only printable
/// ASCII is accepted: anything else has no agreed spelling in SBPL and goes through
/// [`Params`] instead.
pub fn quote(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => return Err(format!("{s:?} can't be written as an SBPL string literal (printable ASCII only)")),
        }
    }
    out.push('"');
    Ok(out)
}

/// The parameter table of a profile being written: each distinct value gets one name.
#[derive(Default)]
pub struct Params {
    list: Vec<(String, Vec<u8>)>,
    names: HashMap<(char, Vec<u8>), String>,
}

impl Params {
    /// `(param "Pn")` naming this path.
    pub fn path(&mut self, path: &Path) -> String {
        self.named('P', path.as_os_str().as_encoded_bytes().to_vec())
    }

    /// `(param "Rn")` naming this regular expression.
    pub fn regex(&mut self, regex: Vec<u8>) -> String {
        self.named('R', regex)
    }

    fn named(&mut self, kind: char, value: Vec<u8>) -> String {
        let key = (kind, value);
        let name = match self.names.get(&key) {
            Some(name) => name.clone(),
            None => {
                let name = format!("{kind}{}", self.names.keys().filter(|(k, _)| *k == kind).count());
                self.list.push((name.clone(), key.1.clone()));
                self.names.insert(key, name.clone());
                name
            }
        };
        format!("(param \"{name}\")")
    }

    pub fn into_list(self) -> Vec<(String, Vec<u8>)> {
        self.list
    }
}

/// A regular expression matching `path` (and everything below it with `subtree`), with ASCII
/// letters in either case: macOS volumes are usually case-insensitive, so `~/.SSH/id_rsa` opens
/// `~/.ssh/id_rsa`. Used only to take paths away from an allowed region, where matching more is
/// the safe side.
pub fn any_case(path: &Path, subtree: bool) -> Vec<u8> {
    let mut out = b"^".to_vec();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphabetic() {
            out.extend_from_slice(&[b'[', b.to_ascii_lowercase(), b.to_ascii_uppercase(), b']']);
        } else if b".^$|()[]{}*+?\\".contains(&b) {
            out.extend_from_slice(&[b'\\', b]);
        } else {
            // Other ASCII and the bytes of non-ASCII names match themselves.
            out.push(b);
        }
    }
    out.extend_from_slice(if subtree { b"(/.*)?$".as_slice() } else { b"$".as_slice() });
    out
}

/// Whether the any-case expression of `path` says more than `subpath` does.
pub fn has_letters(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().iter().any(u8::is_ascii_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_quotes_and_backslashes() {
        assert_eq!(quote("a\"b\\c").unwrap(), r#""a\"b\\c""#);
        assert_eq!(
            quote("com.apple.system.opendirectoryd.libinfo").unwrap(),
            "\"com.apple.system.opendirectoryd.libinfo\""
        );
    }

    #[test]
    fn quote_refuses_what_has_no_spelling() {
        assert!(quote("caf\u{e9}").is_err());
        assert!(quote("a\nb").is_err());
        assert!(quote("a\0b").is_err());
    }

    #[test]
    fn params_are_named_once_per_value() {
        let mut p = Params::default();
        assert_eq!(p.path(Path::new("/a")), "(param \"P0\")");
        assert_eq!(p.path(Path::new("/b")), "(param \"P1\")");
        assert_eq!(p.path(Path::new("/a")), "(param \"P0\")");
        assert_eq!(p.regex(b"/a".to_vec()), "(param \"R0\")");
        assert_eq!(p.into_list().len(), 3);
    }

    #[test]
    fn any_case_regex_escapes_and_folds() {
        let r = any_case(Path::new("/U/.s+h"), true);
        assert_eq!(String::from_utf8(r).unwrap(), r"^/[uU]/\.[sS]\+[hH](/.*)?$");
        let r = any_case(Path::new("/caf\u{e9}"), false);
        assert_eq!(r, [b"^/[cC][aA][fF]".as_slice(), "\u{e9}".as_bytes(), b"$"].concat());
        assert!(!has_letters(Path::new("/1/2")));
    }
}
