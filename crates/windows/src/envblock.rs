//! The environment block `CreateProcess` takes with CREATE_UNICODE_ENVIRONMENT: `NAME=VALUE`
//! strings in UTF-16, each NUL-terminated, sorted by name without regard to case (Windows
//! expects the order, and some programs binary-search it), ending with an extra NUL.

use crate::error::LaunchError;

const EQUALS: u16 = b'=' as u16;

/// Upper-cases one UTF-16 unit the way the environment is sorted: by code unit, case-folded.
fn fold(c: u16) -> u16 {
    if (b'a' as u16..=b'z' as u16).contains(&c) {
        return c - 32;
    }
    if c < 0x80 {
        return c;
    }
    match char::from_u32(c as u32) {
        Some(ch) => {
            let mut up = ch.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) if (u as u32) <= 0xFFFF => u as u16,
                _ => c,
            }
        }
        None => c,
    }
}

fn cmp_names(a: &[u16], b: &[u16]) -> std::cmp::Ordering {
    a.iter().map(|&c| fold(c)).cmp(b.iter().map(|&c| fold(c)))
}

/// Whether two names are the same variable (names are case-insensitive).
pub fn same_name(a: &[u16], b: &[u16]) -> bool {
    cmp_names(a, b).is_eq()
}

/// Checks one name: not empty, no NUL, and no `=` except as the first character (the hidden
/// per-drive variables like `=C:` start with one).
pub fn validate_name(name: &[u16]) -> Result<(), String> {
    let show = String::from_utf16_lossy(name);
    if name.is_empty() {
        return Err("an environment variable has an empty name".into());
    }
    if name.contains(&0) {
        return Err(format!("the environment variable name `{show}` contains a NUL"));
    }
    if name[1..].contains(&EQUALS) {
        return Err(format!("the environment variable name `{show}` contains `=`"));
    }
    Ok(())
}

/// Builds the block. A name given twice (in any case) keeps its last value, as the caller's
/// later entries override earlier ones.
pub fn build_env_block(vars: &[(Vec<u16>, Vec<u16>)]) -> Result<Vec<u16>, LaunchError> {
    let mut entries: Vec<(&[u16], &[u16])> = Vec::with_capacity(vars.len());
    for (name, value) in vars {
        validate_name(name).map_err(|e| LaunchError::policy(e, "fix the environment passed to the command"))?;
        if value.contains(&0) {
            return Err(LaunchError::policy(
                format!("the value of `{}` contains a NUL", String::from_utf16_lossy(name)),
                "fix the environment passed to the command",
            ));
        }
        match entries.iter_mut().find(|(n, _)| same_name(n, name)) {
            Some(slot) => *slot = (name, value),
            None => entries.push((name, value)),
        }
    }
    entries.sort_by(|a, b| cmp_names(a.0, b.0));
    let mut block = Vec::with_capacity(entries.iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>() + 2);
    for (name, value) in &entries {
        block.extend_from_slice(name);
        block.push(EQUALS);
        block.extend_from_slice(value);
        block.push(0);
    }
    if entries.is_empty() {
        // An empty block is two NULs: an empty string, then the end.
        block.push(0);
    }
    block.push(0);
    Ok(block)
}

/// Sets (or replaces, whatever the case of the name) each of `overrides` in `vars`.
pub fn set_vars(vars: &mut Vec<(Vec<u16>, Vec<u16>)>, overrides: &[(Vec<u16>, Vec<u16>)]) {
    for (name, value) in overrides {
        vars.retain(|(n, _)| !same_name(n, name));
        vars.push((name.clone(), value.clone()));
    }
}

/// The value of `name` in `vars` (last one wins, like the block).
pub fn get_var<'a>(vars: &'a [(Vec<u16>, Vec<u16>)], name: &str) -> Option<&'a [u16]> {
    let wide: Vec<u16> = name.encode_utf16().collect();
    vars.iter().rev().find(|(n, _)| same_name(n, &wide)).map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::w;

    fn vars(list: &[(&str, &str)]) -> Vec<(Vec<u16>, Vec<u16>)> {
        list.iter().map(|(n, v)| (w(n), w(v))).collect()
    }

    fn entries(block: &[u16]) -> Vec<String> {
        assert_eq!(block.last(), Some(&0));
        assert_eq!(block[block.len() - 2], 0, "double NUL at the end");
        block[..block.len() - 1]
            .split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf16(s).unwrap())
            .collect()
    }

    #[test]
    fn sorted_without_regard_to_case() {
        let block = build_env_block(&vars(&[
            ("path", "C:\\bin"),
            ("Zeta", "z"),
            ("ALPHA", "a"),
            ("=C:", "C:\\work"),
            ("_under", "u"),
            ("beta", "b"),
        ]))
        .unwrap();
        // '=' (0x3D) sorts before letters, '_' (0x5F) after upper-case letters.
        assert_eq!(entries(&block), ["=C:=C:\\work", "ALPHA=a", "beta=b", "path=C:\\bin", "Zeta=z", "_under=u"]);
    }

    #[test]
    fn empty_block_is_two_nuls() {
        assert_eq!(build_env_block(&[]).unwrap(), vec![0, 0]);
        assert_eq!(build_env_block(&vars(&[("A", "")])).unwrap(), w("A=\0\0"));
    }

    #[test]
    fn duplicates_keep_the_last_value_and_its_spelling() {
        let block = build_env_block(&vars(&[("Path", "one"), ("X", "1"), ("PATH", "two")])).unwrap();
        assert_eq!(entries(&block), ["PATH=two", "X=1"]);
    }

    #[test]
    fn values_may_hold_equals_and_unicode() {
        let block = build_env_block(&vars(&[("OPTS", "a=b=c"), ("NAME", "Zoë 漢字 😀")])).unwrap();
        assert_eq!(entries(&block), ["NAME=Zoë 漢字 😀", "OPTS=a=b=c"]);
    }

    #[test]
    fn non_ascii_names_fold_case() {
        assert!(same_name(&w("ÄBC"), &w("äbc")));
        let block = build_env_block(&vars(&[("äx", "1"), ("ÄX", "2"), ("B", "3")])).unwrap();
        assert_eq!(entries(&block), ["B=3", "ÄX=2"]);
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        for bad in [("", "x"), ("A=B", "x"), ("A\0", "x")] {
            assert!(build_env_block(&vars(&[bad])).is_err(), "{bad:?}");
        }
        assert!(build_env_block(&[(w("A"), vec![b'x' as u16, 0])]).is_err());
        assert!(validate_name(&w("=C:")).is_ok());
        assert!(validate_name(&w("=")).is_ok(), "Windows keeps such names; the block holds them verbatim");
    }

    #[test]
    fn overrides_replace_in_any_case() {
        let mut v = vars(&[("temp", "C:\\Users\\me\\AppData\\Local\\Temp"), ("X", "1")]);
        set_vars(&mut v, &vars(&[("TEMP", "C:\\run\\tmp"), ("TMP", "C:\\run\\tmp")]));
        assert_eq!(get_var(&v, "Temp").map(String::from_utf16_lossy).as_deref(), Some("C:\\run\\tmp"));
        assert_eq!(v.len(), 3);
        assert_eq!(get_var(&v, "missing"), None);
    }
}
