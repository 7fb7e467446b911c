//! An exec's arguments as the trapped process passed them: the path and argv, read once from
//! its memory into buffers of ours. Anything that can't be read in full fails the exec
//! (EFAULT, as the kernel would), and so does anything longer than the caps below (the kernel
//! allows more, but an exec the supervisor can't see whole is never waved through).

use super::target::Target;
use super::{Call, Fail};

/// The longest path, with its NUL (PATH_MAX): beyond it, ENAMETOOLONG.
pub const PATH_CAP: usize = 4096;
/// The most bytes of arguments, each with its NUL: beyond it, E2BIG.
pub const ARGS_CAP: usize = 1 << 20;
/// The most arguments: beyond it, E2BIG.
pub const ARGC_CAP: usize = 65536;

const PAGE: usize = 4096;
/// How much of each argument the first, batched read takes (most arguments are shorter).
const FIRST_READ: usize = 256;
/// The kernel's limit of iovecs per process_vm_readv.
const IOV_MAX: usize = 1024;

/// `execveat`'s flag for executing the descriptor itself.
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
/// `execveat`'s flag refusing a link as the last component.
pub const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;

/// Which directory a relative path starts from.
#[derive(Debug, PartialEq, Eq)]
pub enum Base {
    /// The working directory (execve, or execveat with AT_FDCWD).
    Cwd,
    /// The caller's descriptor.
    Descriptor(i32),
}

/// One exec as the caller asked for it.
#[derive(Debug)]
pub struct ExecRequest {
    pub path: Vec<u8>,
    pub base: Base,
    /// execveat with AT_EMPTY_PATH and an empty path: the descriptor's own file.
    pub the_descriptor: bool,
    pub no_follow: bool,
    pub argv: Vec<Vec<u8>>,
}

impl ExecRequest {
    /// Reads an execve(path, argv, envp) or execveat(dirfd, path, argv, envp, flags) call.
    pub fn read(target: &Target, call: &Call) -> Result<ExecRequest, Fail> {
        let (dirfd, path, argv, flags) = if call.nr == libc::SYS_execveat {
            (call.args[0] as u32 as i32, call.args[1], call.args[2], call.args[4])
        } else {
            (libc::AT_FDCWD, call.args[0], call.args[1], 0)
        };
        let path = read_string(target, path, PATH_CAP, libc::ENAMETOOLONG)?;
        let base = if dirfd == libc::AT_FDCWD { Base::Cwd } else { Base::Descriptor(dirfd) };
        let the_descriptor = flags & AT_EMPTY_PATH != 0 && path.is_empty();
        if path.is_empty() && !the_descriptor {
            return Err(Fail::Errno(libc::ENOENT));
        }
        let argv = read_argv(target, argv)?;
        Ok(ExecRequest { path, base, the_descriptor, no_follow: flags & AT_SYMLINK_NOFOLLOW != 0, argv })
    }
}

/// Bytes from `addr` to the end of its page.
fn to_page_end(addr: u64) -> usize {
    PAGE - (addr as usize % PAGE)
}

/// A NUL-terminated string at `addr`, at most `cap` bytes with its NUL (else `too_long`).
fn read_string(target: &Target, addr: u64, cap: usize, too_long: i32) -> Result<Vec<u8>, Fail> {
    let mut out = Vec::new();
    continue_string(target, addr, &mut out, cap, too_long)?;
    Ok(out)
}

/// Appends the rest of a string whose first `out.len()` bytes were read, from `addr` on.
fn continue_string(target: &Target, mut addr: u64, out: &mut Vec<u8>, cap: usize, too_long: i32) -> Result<(), Fail> {
    loop {
        let room = cap.saturating_sub(out.len() + 1);
        if room == 0 {
            return Err(Fail::Errno(too_long));
        }
        let chunk = to_page_end(addr).min(room + 1);
        let bytes = target.memory(addr, chunk)?;
        if let Some(end) = bytes.iter().position(|b| *b == 0) {
            out.extend_from_slice(&bytes[..end]);
            return Ok(());
        }
        out.extend_from_slice(&bytes);
        addr += chunk as u64;
    }
}

/// The argv array's pointers, up to its NULL.
fn read_pointers(target: &Target, mut addr: u64) -> Result<Vec<u64>, Fail> {
    const WORD: usize = std::mem::size_of::<u64>();
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out); // The kernel runs the program with an empty argv.
    }
    loop {
        let words = (to_page_end(addr) / WORD).max(1).min(ARGC_CAP + 1 - out.len());
        let bytes = target.memory(addr, words * WORD)?;
        for word in bytes.chunks_exact(WORD) {
            let pointer = u64::from_ne_bytes(word.try_into().unwrap_or_default());
            if pointer == 0 {
                return Ok(out);
            }
            out.push(pointer);
        }
        if out.len() > ARGC_CAP {
            return Err(Fail::Errno(libc::E2BIG));
        }
        addr += (words * WORD) as u64;
    }
}

/// Every argument: the first bytes of all of them in a few batched reads, then the rest of
/// those that are longer.
fn read_argv(target: &Target, addr: u64) -> Result<Vec<Vec<u8>>, Fail> {
    let pointers = read_pointers(target, addr)?;
    let firsts: Vec<(u64, usize)> = pointers.iter().map(|&p| (p, to_page_end(p).min(FIRST_READ))).collect();
    let mut argv = Vec::with_capacity(pointers.len());
    let mut total = 0;
    for batch in firsts.chunks(IOV_MAX) {
        for (chunk, (addr, len)) in target.memory_batch(batch)?.into_iter().zip(batch) {
            let arg = match chunk.iter().position(|b| *b == 0) {
                Some(end) => chunk[..end].to_vec(),
                None => {
                    let mut arg = chunk;
                    continue_string(target, addr + *len as u64, &mut arg, ARGS_CAP - total, libc::E2BIG)?;
                    arg
                }
            };
            total += arg.len() + 1;
            if total > ARGS_CAP {
                return Err(Fail::Errno(libc::E2BIG));
            }
            argv.push(arg);
        }
    }
    Ok(argv)
}
