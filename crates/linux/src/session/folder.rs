//! The user's session folder: where each session's socket and record live, finding a session
//! by id or name, and telling live sessions from dead ones.

use nix::sys::socket::{connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use ringfence_backend::{LaunchError, SessionInfo};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The user's folder of session sockets, made (mode 0700) if missing, and checked.
pub(super) fn folder() -> Result<PathBuf, LaunchError> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| Path::new(d).is_absolute()) {
        Some(runtime) => Path::new(&runtime).join("ringfence-sessions"),
        None => PathBuf::from(format!("/tmp/ringfence-sessions-{uid}")),
    };
    let fail = |what: String| {
        LaunchError::policy(
            format!("the session folder {}: {what}", dir.display()),
            "remove it, or set XDG_RUNTIME_DIR to a folder of your own",
        )
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("not a folder (or a link)".into()));
    }
    if meta.uid() != uid {
        return Err(fail(format!("owned by uid {}, not {uid}", meta.uid())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(fail(format!("mode {:o}: others may enter it (want 0700)", meta.permissions().mode() & 0o7777)));
    }
    Ok(dir)
}

pub(super) fn socket_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.sock"))
}

pub(super) fn info_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Connects to a session's socket and checks that the server runs as this user.
pub(super) fn connect_to(path: &Path) -> std::io::Result<OwnedFd> {
    let sock = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &UnixAddr::new(path)?)?;
    let peer = getsockopt(&sock.as_fd(), sockopt::PeerCredentials)?;
    if peer.uid() != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the session's server is another user's",
        ));
    }
    Ok(sock)
}

/// Every session the user has, live or not, from the info files.
fn recorded(dir: &Path) -> Vec<SessionInfo> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .filter_map(|id| info_from_json(&id, &std::fs::read_to_string(info_path(dir, &id)).ok()?))
        .collect()
}

/// Whether the session's server still answers; one that does not (it crashed, or was killed)
/// leaves a stale socket and info file, which are removed. A socket without an info file is
/// a session still starting, or one whose start failed: left alone.
fn alive(dir: &Path, id: &str) -> bool {
    match connect_to(&socket_path(dir, id)) {
        Ok(_) => true,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOENT)) => {
            let _ = std::fs::remove_file(socket_path(dir, id));
            let _ = std::fs::remove_file(info_path(dir, id));
            false
        }
        Err(_) => true,
    }
}

/// The live sessions of this user; stale ones are cleaned away.
pub(crate) fn list() -> Result<Vec<SessionInfo>, LaunchError> {
    let dir = folder()?;
    let mut live: Vec<SessionInfo> = recorded(&dir).into_iter().filter(|s| alive(&dir, &s.id)).collect();
    live.sort_by_key(|s| s.started);
    Ok(live)
}

/// A connection to the live session with this id or name. A session found dead on the way (its
/// server gone, its socket stale) is cleaned away and reported as not running.
pub(super) fn connect_session(session: &str) -> Result<OwnedFd, LaunchError> {
    let reach = |path: &Path| connect_to(path).map_err(|e| LaunchError::internal(format!("reaching the session: {e}")));
    match connect_to(&find(session)?) {
        Ok(conn) => Ok(conn),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOENT)) => {
            list()?;
            reach(&find(session)?)
        }
        Err(e) => Err(LaunchError::internal(format!("reaching the session: {e}"))),
    }
}

/// The socket of the live session with this id or name. An id names its socket directly (the
/// connection then shows whether it lives); a name is looked up among the records.
fn find(session: &str) -> Result<PathBuf, LaunchError> {
    let dir = folder()?;
    let is_id = session.len() == 16 && session.bytes().all(|b| b.is_ascii_hexdigit());
    if is_id && socket_path(&dir, session).exists() {
        return Ok(socket_path(&dir, session));
    }
    let found = list()?.into_iter().find(|s| s.id == session || s.name.as_deref() == Some(session));
    match found {
        Some(s) => Ok(socket_path(&dir, &s.id)),
        None => Err(LaunchError::policy(
            format!("no running session named {}", ringfence_audit::untrusted::for_terminal(session)),
            "`ringfence session list` shows the running ones",
        )),
    }
}

pub(super) fn info_to_json(info: &SessionInfo) -> String {
    serde_json::to_string(info).unwrap_or_default()
}

/// The record of session `id` (named by its file); None when unreadable or another id's.
pub(super) fn info_from_json(id: &str, text: &str) -> Option<SessionInfo> {
    serde_json::from_str::<SessionInfo>(text).ok().filter(|info| info.id == id)
}
