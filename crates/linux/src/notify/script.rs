//! A script's `#!` line, read as the kernel reads it (fs/binfmt_script.c): the kernel runs the
//! interpreter it names without another execve, so the exec monitor checks the interpreter's
//! call too.

use super::Fail;
use std::os::fd::{AsRawFd, OwnedFd};

/// How much of a file the kernel looks at for `#!` (BINPRM_BUF_SIZE).
const HEAD: usize = 256;
/// How many interpreters deep the kernel follows scripts before failing with ELOOP.
pub const MAX_DEPTH: usize = 4;

/// The interpreter a script names, and the one argument its `#!` line may add.
#[derive(Debug, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: Vec<u8>,
    pub argument: Option<Vec<u8>>,
}

/// The `#!` line at the start of `head`, if it is one naming an interpreter.
pub fn parse(head: &[u8]) -> Option<Shebang> {
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next().unwrap_or(line);
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = trim(line, blank);
    let end = line.iter().position(blank).unwrap_or(line.len());
    let (interpreter, rest) = line.split_at(end);
    if interpreter.is_empty() {
        return None;
    }
    let rest = trim(rest, blank);
    Some(Shebang { interpreter: interpreter.to_vec(), argument: (!rest.is_empty()).then(|| rest.to_vec()) })
}

/// `bytes` without leading and trailing bytes that are `blank`.
fn trim(bytes: &[u8], blank: impl Fn(&u8) -> bool) -> &[u8] {
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !blank(b)).map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// The `#!` line of an opened program (an O_PATH descriptor of ours), if it has one. A file
/// the supervisor can't read fails with EACCES: the kernel could still run it, and what it
/// would run can't be checked.
pub fn of_file(file: &OwnedFd) -> Result<Option<Shebang>, Fail> {
    use std::io::Read;
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let opened = std::fs::File::open(&path).map_err(|e| Fail::Errno(e.raw_os_error().unwrap_or(libc::EACCES)))?;
    let mut head = Vec::with_capacity(HEAD);
    opened.take(HEAD as u64).read_to_end(&mut head).map_err(|e| Fail::Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(parse(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shebang(interpreter: &str, argument: Option<&str>) -> Option<Shebang> {
        Some(Shebang { interpreter: interpreter.into(), argument: argument.map(Into::into) })
    }

    #[test]
    fn reads_the_interpreter_and_one_argument_as_the_kernel_does() {
        assert_eq!(parse(b"#!/bin/sh\necho"), shebang("/bin/sh", None));
        assert_eq!(parse(b"#! /usr/bin/env  python3 -u \nx"), shebang("/usr/bin/env", Some("python3 -u")));
        assert_eq!(parse(b"#!\t/bin/bash\t-e"), shebang("/bin/bash", Some("-e")));
        assert_eq!(parse(b"#!./git push\n"), shebang("./git", Some("push")));
    }

    #[test]
    fn anything_else_is_not_a_script() {
        assert_eq!(parse(b"\x7fELF\x02\x01"), None);
        assert_eq!(parse(b"#!\n/bin/sh"), None);
        assert_eq!(parse(b"#!   "), None);
        assert_eq!(parse(b" #!/bin/sh"), None);
        assert_eq!(parse(b""), None);
    }
}
