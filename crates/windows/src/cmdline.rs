//! The command line a Windows process receives. Windows passes one string; the program splits
//! it (CommandLineToArgvW, the C runtime, Rust's std all follow the same rules), so arguments
//! must be quoted for those rules. Also where the program is found: ringfence searches the
//! command's own `PATH` itself, never the current folder, and refuses batch files, whose
//! arguments cmd.exe would re-parse by different rules.

use crate::error::LaunchError;

/// The longest command line `CreateProcess` accepts, in UTF-16 units, without the final NUL.
pub const MAX_COMMAND_LINE: usize = 32_766;

const SPACE: u16 = b' ' as u16;
const TAB: u16 = b'\t' as u16;
const QUOTE: u16 = b'"' as u16;
const BACKSLASH: u16 = b'\\' as u16;

/// Appends `arg` quoted so that the standard parser yields it back unchanged.
pub fn quote_arg(arg: &[u16], out: &mut Vec<u16>) {
    let plain = !arg.is_empty() && !arg.iter().any(|&c| c == SPACE || c == TAB || c == QUOTE || c == 0x0A || c == 0x0B);
    if plain {
        out.extend_from_slice(arg);
        return;
    }
    out.push(QUOTE);
    let mut backslashes = 0usize;
    for &c in arg {
        if c == BACKSLASH {
            backslashes += 1;
            continue;
        }
        if c == QUOTE {
            // Backslashes before a quote are escaped, and the quote too.
            out.extend(std::iter::repeat_n(BACKSLASH, 2 * backslashes + 1));
        } else {
            out.extend(std::iter::repeat_n(BACKSLASH, backslashes));
        }
        backslashes = 0;
        out.push(c);
    }
    // Backslashes before the closing quote are escaped.
    out.extend(std::iter::repeat_n(BACKSLASH, 2 * backslashes));
    out.push(QUOTE);
}

/// The full command line: the program (argv[0], which the parser takes verbatim up to the next
/// quote, so it is always quoted and may not contain one), then the arguments.
pub fn build_command_line(program: &[u16], args: &[Vec<u16>]) -> Result<Vec<u16>, LaunchError> {
    let show = |w: &[u16]| String::from_utf16_lossy(w);
    if program.is_empty() {
        return Err(LaunchError::policy("the program name is empty", "name the program to run"));
    }
    if program.contains(&QUOTE) {
        return Err(LaunchError::policy(
            format!("the program name `{}` contains a double quote", show(program)),
            "Windows can't pass a program name with `\"`; rename or move it",
        ));
    }
    if let Some(bad) = std::iter::once(program).chain(args.iter().map(Vec::as_slice)).find(|a| a.contains(&0)) {
        return Err(LaunchError::policy(format!("`{}` contains a NUL character", show(bad)), "remove it"));
    }
    let mut line = Vec::with_capacity(program.len() + 2 + args.iter().map(|a| a.len() + 3).sum::<usize>());
    line.push(QUOTE);
    line.extend_from_slice(program);
    line.push(QUOTE);
    for arg in args {
        line.push(SPACE);
        quote_arg(arg, &mut line);
    }
    if line.len() > MAX_COMMAND_LINE {
        return Err(LaunchError::policy(
            format!("the command line is {} characters long; Windows takes at most {MAX_COMMAND_LINE}", line.len()),
            "pass fewer or shorter arguments (a response file, if the program takes one)",
        ));
    }
    Ok(line)
}

/// Splits a command line as CommandLineToArgvW and the modern C runtime do (the reference the
/// quoting is tested against; the sandbox never parses command lines itself).
pub fn parse_command_line(line: &[u16]) -> Vec<Vec<u16>> {
    let mut args = Vec::new();
    let mut i = 0;
    // argv[0]: up to the next quote if quoted, else up to whitespace; no escapes.
    let mut first = Vec::new();
    if line.first() == Some(&QUOTE) {
        i = 1;
        while i < line.len() && line[i] != QUOTE {
            first.push(line[i]);
            i += 1;
        }
        i += 1;
    } else {
        while i < line.len() && line[i] != SPACE && line[i] != TAB {
            first.push(line[i]);
            i += 1;
        }
    }
    args.push(first);
    loop {
        while i < line.len() && (line[i] == SPACE || line[i] == TAB) {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut arg = Vec::new();
        let mut quoted = false;
        while i < line.len() {
            let c = line[i];
            if c == BACKSLASH {
                let start = i;
                while i < line.len() && line[i] == BACKSLASH {
                    i += 1;
                }
                let n = i - start;
                if i < line.len() && line[i] == QUOTE {
                    arg.extend(std::iter::repeat_n(BACKSLASH, n / 2));
                    if n % 2 == 1 {
                        arg.push(QUOTE);
                        i += 1;
                    }
                } else {
                    arg.extend(std::iter::repeat_n(BACKSLASH, n));
                }
                continue;
            }
            if c == QUOTE {
                if quoted && line.get(i + 1) == Some(&QUOTE) {
                    // `""` inside quotes: a literal quote, still quoted.
                    arg.push(QUOTE);
                    i += 2;
                    continue;
                }
                quoted = !quoted;
                i += 1;
                continue;
            }
            if !quoted && (c == SPACE || c == TAB) {
                break;
            }
            arg.push(c);
            i += 1;
        }
        args.push(arg);
    }
    args
}

/// Extensions `CreateProcess` runs directly. Batch files (`.bat`, `.cmd`) are run by cmd.exe,
/// which re-parses the arguments by its own rules, so ringfence does not run them implicitly.
const RUNNABLE: &[&str] = &[".exe", ".com"];
const BATCH: &[&str] = &[".bat", ".cmd"];

fn is_separator(c: char) -> bool {
    c == '\\' || c == '/'
}

fn has_extension(name: &str) -> bool {
    let last = name.rsplit(is_separator).next().unwrap_or(name);
    last.rfind('.').is_some_and(|i| i > 0 && i + 1 < last.len())
}

fn extension_of(name: &str) -> String {
    let last = name.rsplit(is_separator).next().unwrap_or(name);
    last.rfind('.').map(|i| last[i..].to_ascii_lowercase()).unwrap_or_default()
}

/// Whether `path` is absolute (`C:\…`, `\\server\…`, `\\?\…`).
pub fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && is_separator(b[2] as char))
        || (b.len() >= 2 && is_separator(b[0] as char) && is_separator(b[1] as char))
}

fn join(dir: &str, name: &str) -> String {
    crate::wpath::join(dir, name)
}

/// Finds the program to run, the way a shell would but without the current folder: a name
/// with a separator is a path (relative to `cwd`); a bare name is searched in the absolute
/// folders of the command's `PATH`. A name without extension gets `.exe` or `.com` (in
/// `PATHEXT` order). `is_file` says whether a candidate exists.
pub fn resolve_program(
    program: &str,
    cwd: &str,
    path_var: Option<&str>,
    pathext: Option<&str>,
    is_file: &dyn Fn(&str) -> bool,
) -> Result<String, LaunchError> {
    if program.is_empty() {
        return Err(LaunchError::policy("the program name is empty", "name the program to run"));
    }
    let batch_error = |found: &str| {
        LaunchError::policy(
            format!("`{found}` is a batch file; cmd.exe would re-read its arguments by other quoting rules"),
            format!("run it through cmd.exe explicitly: `cmd.exe /d /c {program} …`"),
        )
    };
    let exts: Vec<String> = {
        let listed: Vec<String> = pathext
            .unwrap_or(".COM;.EXE")
            .split(';')
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| RUNNABLE.contains(&e.as_str()))
            .collect();
        if listed.is_empty() {
            RUNNABLE.iter().map(|e| e.to_string()).collect()
        } else {
            listed
        }
    };
    let candidates = |base: &str| -> Vec<String> {
        let mut out = Vec::new();
        if has_extension(base) {
            out.push(base.to_string());
        }
        out.extend(exts.iter().map(|e| format!("{base}{e}")));
        out
    };
    let pick = |base: &str| -> Result<Option<String>, LaunchError> {
        for candidate in candidates(base) {
            if is_file(&candidate) {
                if BATCH.contains(&extension_of(&candidate).as_str()) {
                    return Err(batch_error(&candidate));
                }
                return Ok(Some(candidate));
            }
        }
        if !has_extension(base) {
            for ext in BATCH {
                let candidate = format!("{base}{ext}");
                if is_file(&candidate) {
                    return Err(batch_error(&candidate));
                }
            }
        }
        Ok(None)
    };
    let not_found = |searched: String| {
        LaunchError::policy(
            format!("command not found: `{program}` ({searched})"),
            "check the name, or give its full path",
        )
    };
    if program.contains(is_separator) || program.contains(':') {
        let full = if is_absolute(program) { crate::wpath::normalize(program) } else { join(cwd, program) };
        return pick(&full)?.ok_or_else(|| not_found(format!("looked for {full}")));
    }
    let dirs: Vec<&str> = path_var
        .unwrap_or("")
        .split(';')
        .map(|d| d.trim().trim_matches('"'))
        .filter(|d| !d.is_empty() && is_absolute(d))
        .collect();
    for dir in &dirs {
        if let Some(found) = pick(&join(dir, program))? {
            return Ok(found);
        }
    }
    Err(not_found(if dirs.is_empty() {
        "the command's PATH has no absolute folders".into()
    } else {
        format!("searched {} PATH folders", dirs.len())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::w;

    fn round_trip(args: &[&str]) {
        let wide: Vec<Vec<u16>> = args.iter().map(|a| w(a)).collect();
        let line = build_command_line(&w("C:\\Program Files\\tool.exe"), &wide).unwrap();
        let parsed = parse_command_line(&line);
        assert_eq!(parsed[0], w("C:\\Program Files\\tool.exe"));
        assert_eq!(&parsed[1..], &wide[..], "line: {}", String::from_utf16_lossy(&line));
    }

    #[test]
    fn quoting_follows_the_documented_examples() {
        let q = |a: &str| {
            let mut out = Vec::new();
            quote_arg(&w(a), &mut out);
            String::from_utf16(&out).unwrap()
        };
        assert_eq!(q("abc"), "abc");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("a b"), "\"a b\"");
        assert_eq!(q("a\"b"), "\"a\\\"b\"");
        assert_eq!(q("a\\\\b"), "a\\\\b", "backslashes not before a quote stay as they are");
        assert_eq!(q("a b\\"), "\"a b\\\\\"", "a trailing backslash is doubled before the closing quote");
        assert_eq!(q("a\\\"b c"), "\"a\\\\\\\"b c\"");
        assert_eq!(q("C:\\dir with space\\"), "\"C:\\dir with space\\\\\"");
        assert_eq!(q("tab\there"), "\"tab\there\"");
    }

    #[test]
    fn parser_matches_the_documented_examples() {
        // The table in the CommandLineToArgvW / "Parsing C++ command-line arguments" docs.
        let p = |s: &str| -> Vec<String> {
            parse_command_line(&w(&format!("prog {s}")))
                .into_iter()
                .skip(1)
                .map(|a| String::from_utf16(&a).unwrap())
                .collect()
        };
        assert_eq!(p(r#""a b c" d e"#), ["a b c", "d", "e"]);
        assert_eq!(p(r#""ab\"c" "\\" d"#), ["ab\"c", "\\", "d"]);
        assert_eq!(p(r#"a\\\b d"e f"g h"#), [r"a\\\b", "de fg", "h"]);
        assert_eq!(p(r#"a\\\"b c d"#), [r#"a\"b"#, "c", "d"]);
        assert_eq!(p(r#"a\\\\"b c" d e"#), [r"a\\b c", "d", "e"]);
        assert_eq!(p(r#"a"b"" c d"#), [r#"ab" c d"#]);
        assert_eq!(p("   "), Vec::<String>::new());
        assert_eq!(p(r#""""#), [""]);
    }

    #[test]
    fn argv0_is_taken_verbatim() {
        let parsed = parse_command_line(&w(r#""C:\a b\x.exe"tail arg"#));
        assert_eq!(parsed[0], w(r"C:\a b\x.exe"));
        assert_eq!(parsed[1], w("tail"));
        let parsed = parse_command_line(&w(r"C:\x\y.exe\ one"));
        assert_eq!(parsed[0], w(r"C:\x\y.exe\"));
    }

    #[test]
    fn tricky_arguments_round_trip() {
        round_trip(&[]);
        round_trip(&[""]);
        round_trip(&["", "", "x"]);
        round_trip(&["simple", "two words", "\"quoted\"", "back\\slash", "trailing\\", "both \\\"", "\\\\\\"]);
        round_trip(&["\\\"", "\"\\", "a\\\\\"b", " leading", "trailing ", "\t", "new\nline", "é ü 漢字 😀"]);
        round_trip(&["%PATH%", "^&|<>()", "!x!", "'single'", "--flag=\"v a l\"", "C:\\dir\\"]);
    }

    #[test]
    fn random_arguments_round_trip() {
        // A small deterministic generator over the characters that matter to the rules.
        let alphabet: Vec<u16> = w(" \t\"\\a\\\"b\n");
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let n = (next() % 4) as usize;
            let args: Vec<Vec<u16>> = (0..n)
                .map(|_| (0..next() % 9).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect())
                .collect();
            let line = build_command_line(&w("p"), &args).unwrap();
            assert_eq!(&parse_command_line(&line)[1..], &args[..], "{}", String::from_utf16_lossy(&line));
        }
    }

    #[test]
    fn bad_programs_and_arguments_are_refused() {
        assert!(build_command_line(&w(""), &[]).is_err());
        let e = build_command_line(&w("a\"b.exe"), &[]).unwrap_err();
        assert!(e.message.contains("double quote"));
        let e = build_command_line(&w("x.exe"), &[w("a\0b")]).unwrap_err();
        assert!(e.message.contains("NUL"));
        let long = vec![b'a' as u16; MAX_COMMAND_LINE];
        let e = build_command_line(&w("x.exe"), &[long]).unwrap_err();
        assert!(e.message.contains("at most 32766"), "{}", e.message);
    }

    fn fs(files: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |p: &str| files.iter().any(|f| f.eq_ignore_ascii_case(p))
    }

    #[test]
    fn resolves_from_the_commands_path_only() {
        let files = fs(&[r"C:\tools\git.exe", r"C:\work\git.exe", r"C:\bin\node.com", r"C:\bin\py3.11.exe"]);
        let path = Some(r"relative;C:\bin;C:\tools;");
        assert_eq!(resolve_program("git", r"C:\work", path, None, &files).unwrap(), r"C:\tools\git.exe");
        assert_eq!(resolve_program("git.exe", r"C:\work", path, None, &files).unwrap(), r"C:\tools\git.exe");
        assert_eq!(resolve_program("node", r"C:\work", path, None, &files).unwrap(), r"C:\bin\node.com");
        assert_eq!(resolve_program("py3.11", r"C:\work", path, None, &files).unwrap(), r"C:\bin\py3.11.exe");
        // PATHEXT order decides between .com and .exe.
        let both = fs(&[r"C:\b\x.com", r"C:\b\x.exe"]);
        assert_eq!(resolve_program("x", "C:\\", Some(r"C:\b"), Some(".EXE;.COM"), &both).unwrap(), r"C:\b\x.exe");
        assert_eq!(resolve_program("x", "C:\\", Some(r"C:\b"), Some(".COM;.EXE;.BAT"), &both).unwrap(), r"C:\b\x.com");
        // Never the current folder.
        let e = resolve_program("git", r"C:\work", Some(r"C:\none"), None, &files).unwrap_err();
        assert!(e.message.starts_with("command not found: `git`"), "{}", e.message);
        let e = resolve_program("git", r"C:\work", None, None, &files).unwrap_err();
        assert!(e.message.contains("no absolute folders"));
    }

    #[test]
    fn resolves_paths_against_cwd() {
        let files = fs(&[r"C:\work\target\app.exe", r"D:\x\y.exe", r"\\srv\share\t.exe"]);
        assert_eq!(resolve_program(r"target\app", r"C:\work", None, None, &files).unwrap(), r"C:\work\target\app.exe");
        assert_eq!(
            resolve_program("./target/app.exe", r"C:\work\", None, None, &files).unwrap(),
            r"C:\work\target\app.exe"
        );
        assert_eq!(resolve_program(r"D:\x\y", r"C:\work", None, None, &files).unwrap(), r"D:\x\y.exe");
        assert_eq!(resolve_program(r"\\srv\share\t.exe", r"C:\", None, None, &files).unwrap(), r"\\srv\share\t.exe");
        assert!(resolve_program(r"target\missing", r"C:\work", None, None, &files).is_err());
    }

    #[test]
    fn batch_files_are_refused_with_a_remedy() {
        let files = fs(&[r"C:\b\build.cmd", r"C:\b\run.bat"]);
        let e = resolve_program("build", "C:\\", Some(r"C:\b"), Some(".COM;.EXE;.BAT;.CMD"), &files).unwrap_err();
        assert!(e.message.contains("batch file"), "{}", e.message);
        assert!(e.remedy.unwrap().contains("cmd.exe /d /c build"));
        assert!(resolve_program(r"C:\b\run.bat", "C:\\", None, None, &files).is_err());
    }

    #[test]
    fn absolute_paths() {
        assert!(is_absolute(r"C:\x"));
        assert!(is_absolute("c:/x"));
        assert!(is_absolute(r"\\server\share"));
        assert!(is_absolute(r"\\?\C:\x"));
        assert!(!is_absolute(r"C:x"));
        assert!(!is_absolute(r"\x"));
        assert!(!is_absolute("x"));
    }
}
