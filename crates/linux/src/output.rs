//! Files ringfence itself writes for the caller during a run: the event log and the status
//! file. An earlier run could have planted a link, a FIFO or a second name (a hard link) at the
//! path, or a link in a folder on the way to it, if that folder lies in a writable root. So the
//! file is opened once, before the launch, without following links in any folder a run could
//! have written and never in the last component, without blocking, and kept only if it is a
//! regular file of the caller's with a single name. The caller then writes through the
//! descriptor and makes the path read-only in the sandbox's view (a `deny_write` rule).

use crate::canon::Canonicalizer;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use ringfence_audit::LaunchError;
use ringfence_policy::{is_within, Policy, RuleKind};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// How an output file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Created if missing; every write goes to its end (the event log).
    Append,
    /// Created if missing, emptied once it passed the checks (the status file).
    Replace,
}

/// An output file ringfence opened, and where it is.
#[derive(Debug)]
pub struct OutputFile {
    pub file: File,
    /// The file's path with every link resolved.
    pub path: PathBuf,
    /// Whether it lies inside a writable root of the run, so the sandbox's view must make it
    /// read-only (outside them the view is read-only anyway).
    pub in_writable_root: bool,
}

/// The policy's writable roots, links resolved.
fn writable_roots(policy: &Policy) -> Vec<PathBuf> {
    let mut canon = Canonicalizer::default();
    policy.fs.of_kind(RuleKind::Write).map(|r| canon.resolve(&r.path)).collect()
}

fn refused(path: &Path, what: String, fix: &str) -> LaunchError {
    LaunchError::policy(format!("{}: {what}", path.display()), fix)
}

/// Opens `path` (relative to the current directory) for ringfence's own output; see the module
/// documentation. Refusals are policy errors whose remedy says what to change.
pub fn open_output(path: &Path, policy: &Policy, mode: OutputMode) -> Result<OutputFile, LaunchError> {
    let roots = writable_roots(policy);
    let absolute =
        std::env::current_dir().map_err(|e| refused(path, e.to_string(), "run from a folder that exists"))?.join(path);
    let mut parts: Vec<Component> = absolute.components().collect();
    let Some(Component::Normal(name)) = parts.pop() else {
        return Err(refused(path, "names a folder, not a file".into(), "name a file, e.g. run.jsonl"));
    };
    let folder = resolve_folder(path, &parts.iter().collect::<PathBuf>(), &roots)?;
    let full = folder.join(name);
    let file = open_no_links(path, &full, mode)?;
    check_regular_own_single(path, &file)?;
    if mode == OutputMode::Replace {
        file.set_len(0).map_err(|e| refused(path, format!("emptying it: {e}"), "choose a file you can write"))?;
    }
    let in_writable_root = roots.iter().any(|r| is_within(&full, r));
    Ok(OutputFile { file, path: full, in_writable_root })
}

/// Resolves the links in `folder` (absolute) one component at a time, refusing any that lies
/// in a writable root: a run could have planted it. Links elsewhere are the user's own.
fn resolve_folder(shown: &Path, folder: &Path, roots: &[PathBuf]) -> Result<PathBuf, LaunchError> {
    let mut done = PathBuf::from("/");
    let mut todo: Vec<OsString> = names_reversed(folder);
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            // `done` has no links in it, so its parent is what the kernel would take.
            done.pop();
            continue;
        }
        let next = done.join(&part);
        let meta = std::fs::symlink_metadata(&next).map_err(|e| {
            refused(shown, format!("{}: {e}", next.display()), "create the folder first, or choose another path")
        })?;
        if !meta.file_type().is_symlink() {
            done = next;
            continue;
        }
        if let Some(root) = roots.iter().find(|r| is_within(&done, r)) {
            return Err(refused(
                shown,
                format!(
                    "{} is a link inside the writable root {}, where a sandboxed run could have planted it; \
                     ringfence does not follow it",
                    next.display(),
                    root.display()
                ),
                "replace the link by a real folder, or name the file by a path without links",
            ));
        }
        links += 1;
        let target = std::fs::read_link(&next).ok().filter(|_| links <= 40).ok_or_else(|| {
            refused(shown, format!("{} can't be resolved (a loop of links?)", next.display()), "fix the link")
        })?;
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        todo.extend(names_reversed(&target));
    }
    Ok(done)
}

/// The names of `path` in reverse order (to pop from the end), `..` kept, `.` and `/` dropped.
fn names_reversed(path: &Path) -> Vec<OsString> {
    let names = path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some("..".into()),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    });
    let mut out: Vec<OsString> = names.collect();
    out.reverse();
    out
}

/// Opens `full`, whose folders have no links, refusing a link in any component (the kernel
/// checks, so nothing swapped in since the resolution is followed). Non-blocking, so a FIFO
/// can't hold the launch up.
fn open_no_links(shown: &Path, full: &Path, mode: OutputMode) -> Result<File, LaunchError> {
    let mut flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    if mode == OutputMode::Append {
        flags |= OFlag::O_APPEND;
    }
    let how = OpenHow::new()
        .flags(flags)
        .mode(Mode::from_bits_truncate(0o666))
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, full, how).map_err(|e| match e {
        nix::Error::ELOOP => refused(
            shown,
            "is a symbolic link (or one was put on its way); ringfence writes only to a file it opens without following links".into(),
            "remove the link, or choose another path",
        ),
        nix::Error::ENXIO => refused(
            shown,
            "is a FIFO or socket, not a regular file".into(),
            "remove it (ringfence creates the file), or choose another path",
        ),
        nix::Error::EISDIR => refused(shown, "is a folder, not a file".into(), "name a file, e.g. run.jsonl"),
        nix::Error::ENOSYS => LaunchError::unsupported(
            format!("{}: opening it safely needs openat2(2), which this kernel lacks", shown.display()),
            "use Linux 5.6 or later",
        ),
        e => refused(shown, e.desc().to_string(), "choose a file in a folder you can write"),
    })?;
    Ok(File::from(fd))
}

/// A regular file, the caller's own, with exactly one name: a second name (a hard link an
/// earlier run made) would let the sandbox write the same file through that name.
fn check_regular_own_single(shown: &Path, file: &File) -> Result<(), LaunchError> {
    let meta = file.metadata().map_err(|e| refused(shown, e.to_string(), "choose another path"))?;
    let kind = SFlag::from_bits_truncate(meta.mode() & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG {
        return Err(refused(
            shown,
            "is not a regular file (a FIFO, socket or device)".into(),
            "remove it (ringfence creates the file), or choose another path",
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refused(
            shown,
            format!("belongs to uid {}, not to you (uid {me})", meta.uid()),
            "choose a file of your own, or remove this one",
        ));
    }
    if meta.nlink() != 1 {
        return Err(refused(
            shown,
            format!("has {} names (hard links): the sandbox could write it under another name", meta.nlink()),
            "remove the file (ringfence creates it again) or its other names, or choose another path",
        ));
    }
    Ok(())
}

/// For an output descriptor the caller passed open (`--json-status 3`): when it is a regular
/// file inside a writable root, its path, found through /proc/self/fd and checked to be the same
/// file, so that the caller can make it read-only in the sandbox's view. Pipes, terminals and
/// sockets, files outside the writable roots, and files without a name need nothing. A file
/// with more than one name, or whose name can't be confirmed, is refused.
pub fn inherited_output_path(fd: RawFd, policy: &Policy) -> Result<Option<PathBuf>, LaunchError> {
    let shown = PathBuf::from(format!("descriptor {fd}"));
    let fix = "pass a file path instead (--json-status PATH), which ringfence opens and protects itself";
    let stat = crate::sys::fstat_number(fd).map_err(|e| refused(&shown, e.desc().into(), fix))?;
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG || stat.st_nlink == 0 {
        return Ok(None);
    }
    if stat.st_nlink != 1 {
        return Err(refused(
            &shown,
            format!("its file has {} names (hard links): the sandbox could write it under another name", stat.st_nlink),
            "remove the file's other names, or let ringfence create a new file (--json-status PATH)",
        ));
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| refused(&shown, e.to_string(), fix))?;
    let same = std::fs::symlink_metadata(&path).is_ok_and(|m| m.dev() == stat.st_dev && m.ino() == stat.st_ino);
    if !same {
        return Err(refused(&shown, format!("its file can't be confirmed at {}", path.display()), fix));
    }
    Ok(writable_roots(policy).iter().any(|r| is_within(&path, r)).then_some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_policy::PolicyBuilder;
    use std::os::fd::AsRawFd;

    fn scratch(tag: &str) -> (PathBuf, Policy) {
        let dir = Path::new("/var/tmp").join(format!("rf-output-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ws/sub")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let dir = dir.canonicalize().unwrap();
        let policy = PolicyBuilder::new(&dir.join("ws"), &dir).build().unwrap();
        (dir, policy)
    }

    #[test]
    fn opens_a_new_file_and_says_whether_it_needs_protecting() {
        let (dir, policy) = scratch("new");
        let inside = open_output(&dir.join("ws/sub/run.jsonl"), &policy, OutputMode::Append).unwrap();
        assert_eq!(inside.path, dir.join("ws/sub/run.jsonl"));
        assert!(inside.in_writable_root);
        // A link outside the writable roots is the user's own and is followed.
        std::os::unix::fs::symlink(dir.join("out"), dir.join("alias")).unwrap();
        let outside = open_output(&dir.join("alias/e.jsonl"), &policy, OutputMode::Append).unwrap();
        assert_eq!(outside.path, dir.join("out/e.jsonl"));
        assert!(!outside.in_writable_root);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_a_run_could_have_planted() {
        let (dir, policy) = scratch("planted");
        let victim = dir.join("out/victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("ws/link.jsonl")).unwrap();
        std::os::unix::fs::symlink(dir.join("out"), dir.join("ws/dirlink")).unwrap();
        nix::unistd::mkfifo(&dir.join("ws/fifo.jsonl"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(dir.join("ws/two.jsonl"), "").unwrap();
        std::fs::hard_link(dir.join("ws/two.jsonl"), dir.join("ws/other")).unwrap();
        for (name, says) in [
            ("link.jsonl", "symbolic link"),
            ("dirlink/e.jsonl", "is a link inside the writable root"),
            ("fifo.jsonl", "FIFO"),
            ("two.jsonl", "has 2 names"),
            ("sub/..", "names a folder"),
        ] {
            let err = open_output(&dir.join("ws").join(name), &policy, OutputMode::Append).unwrap_err();
            assert!(err.message.contains(says), "{name}: {err}");
            assert_eq!(err.kind, ringfence_audit::ErrorKind::Policy, "{name}");
            assert!(err.remedy.is_some(), "{name}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!dir.join("out/e.jsonl").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replace_empties_only_a_file_that_passed() {
        let (dir, policy) = scratch("replace");
        let status = dir.join("ws/status.json");
        std::fs::write(&status, "old").unwrap();
        let out = open_output(&status, &policy, OutputMode::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&status).unwrap(), "");
        drop(out);
        std::fs::write(&status, "old").unwrap();
        std::fs::hard_link(&status, dir.join("ws/alias")).unwrap();
        assert!(open_output(&status, &policy, OutputMode::Replace).is_err());
        assert_eq!(std::fs::read_to_string(&status).unwrap(), "old");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inherited_descriptors_are_found_by_name() {
        let (dir, policy) = scratch("fd");
        let inside = File::create(dir.join("ws/status.json")).unwrap();
        let found = inherited_output_path(inside.as_raw_fd(), &policy).unwrap();
        assert_eq!(found, Some(dir.join("ws/status.json")));
        let outside = File::create(dir.join("out/status.json")).unwrap();
        assert_eq!(inherited_output_path(outside.as_raw_fd(), &policy).unwrap(), None);
        let (read, _write) = std::io::pipe().unwrap();
        assert_eq!(inherited_output_path(read.as_raw_fd(), &policy).unwrap(), None);
        std::fs::hard_link(dir.join("ws/status.json"), dir.join("ws/second")).unwrap();
        assert!(inherited_output_path(inside.as_raw_fd(), &policy).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
