//! Paths in the backend's line-based files (the run journal, the grants' registry, the
//! installation record): every UTF-16 unit is kept, and `%`, control characters and unpaired
//! surrogates are written `%uXXXX`, so a path fits on one line and reads back exactly.

/// Writes a path on one line of text.
pub fn escape(path: &[u16]) -> String {
    let mut out = String::with_capacity(path.len());
    for unit in char::decode_utf16(path.iter().copied()) {
        match unit {
            Ok(c) if c == '%' || c.is_control() => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("%u{u:04X}"));
                }
            }
            Ok(c) => out.push(c),
            Err(e) => out.push_str(&format!("%u{:04X}", e.unpaired_surrogate())),
        }
    }
    out
}

/// Reverses [`escape`].
pub fn unescape(text: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        out.extend(rest[..i].encode_utf16());
        let hex = rest.get(i + 2..i + 6).filter(|_| rest[i + 1..].starts_with('u')).ok_or("bad escape")?;
        out.push(u16::from_str_radix(hex, 16).map_err(|_| "bad escape")?);
        rest = &rest[i + 6..];
    }
    out.extend(rest.encode_utf16());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::w;

    #[test]
    fn escaping_round_trips_every_unit() {
        for path in [w(r"C:\Users\Zoë\proj"), w("C:\\100%\\x"), w("a\nb\tc"), vec![0x43, 0xD800, 0x78], vec![0xDFFF]] {
            let text = escape(&path);
            assert!(!text.contains('\n') && !text.contains('\t'));
            assert_eq!(unescape(&text).unwrap(), path, "{text}");
        }
        assert_eq!(escape(&w("C:\\100%")), "C:\\100%u0025");
        assert!(unescape("%x").is_err());
        assert!(unescape("%u12").is_err());
    }
}
