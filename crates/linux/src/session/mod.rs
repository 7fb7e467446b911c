//! Sessions on the host: where their sockets live, how they are found, listed and stopped.
//! A session is served by a process of its own (`server.rs`) that holds the sandbox; commands
//! reach it through a `SOCK_SEQPACKET` socket (`client.rs`).
//!
//! The sockets live in one folder per user, mode 0700: `$XDG_RUNTIME_DIR/ringfence-sessions`,
//! else `/tmp/ringfence-sessions-UID`. A folder that is a link, another user's, or open to
//! others is refused. Beside each socket `ID.sock` lies `ID.json`, what `list` shows. The
//! server checks each peer's uid (`SO_PEERCRED`) and the client checks the server's.

mod client;
mod server;

pub(crate) use client::exec;
pub(crate) use server::start;

use nix::sys::socket::{connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use ringfence_backend::{LaunchError, ReviewFinding, SessionInfo};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The user's folder of session sockets, made (mode 0700) if missing, and checked.
pub(crate) fn folder() -> Result<PathBuf, LaunchError> {
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

use std::os::unix::fs::DirBuilderExt;

fn socket_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.sock"))
}

fn info_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Connects to a session's socket and checks that the server runs as this user.
fn connect_to(path: &Path) -> std::io::Result<OwnedFd> {
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

/// One byte asking the server to end the session.
const STOP: u8 = b's';
/// One byte telling the caller, before the command's end, that the policy's timeout ended it.
const TIMED_OUT: u8 = b't';
/// One byte telling the caller, before the command's end, that the memory limit was reached.
const MEMORY_LIMIT: u8 = b'm';

/// Ends a session and everything in it; returns once its server is gone.
pub(crate) fn stop(session: &str) -> Result<(), LaunchError> {
    let conn = connect_to(&find(session)?).map_err(|e| LaunchError::internal(format!("reaching the session: {e}")))?;
    crate::sys::send_with_fds(conn.as_fd(), &[STOP], &[])
        .map_err(|e| LaunchError::internal(format!("asking the session to stop: {e}")))?;
    // The server closes its end only by exiting, once the sandbox is gone.
    let mut buf = [0u8; 64];
    while matches!(crate::sys::recv_with_fds(conn.as_fd(), &mut buf), Ok((n, _)) if n > 0) {}
    Ok(())
}

/// A finding of the review after a command, for its caller (before the command's end): `f`
/// for what was found and dealt with, `F` for what could not be checked; then the rule, the
/// path and the detail, each ended by a NUL.
fn encode_finding(failed: bool, finding: &ReviewFinding) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut packet = vec![if failed { b'F' } else { b'f' }];
    for field in [finding.rule.as_bytes(), finding.path.as_os_str().as_bytes(), finding.detail.as_bytes()] {
        packet.extend(field.iter().filter(|b| **b != 0));
        packet.push(0);
    }
    packet
}

/// The finding of a packet, and whether it is a failure; None for another packet.
fn decode_finding(packet: &[u8]) -> Option<(bool, ReviewFinding)> {
    use std::os::unix::ffi::OsStrExt;
    let (failed, rest) = match packet.split_first()? {
        (b'f', rest) => (false, rest),
        (b'F', rest) => (true, rest),
        _ => return None,
    };
    let mut fields = rest.split(|b| *b == 0);
    let rule = match fields.next()? {
        b"git" => "git",
        b"protected-file" => "protected-file",
        b"special-file" => "special-file",
        b"permissions" => "permissions",
        _ => "review-failed",
    };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(fields.next()?));
    let detail = String::from_utf8_lossy(fields.next()?).into_owned();
    Some((failed, ReviewFinding { path, rule, detail }))
}

fn info_to_json(info: &SessionInfo) -> String {
    serde_json::json!({
        "id": info.id,
        "name": info.name,
        "pid": info.pid,
        "owner": info.owner,
        "workspace": info.workspace,
        "started": info.started,
    })
    .to_string()
}

fn info_from_json(id: &str, text: &str) -> Option<SessionInfo> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(SessionInfo {
        id: id.to_string(),
        name: v["name"].as_str().map(str::to_string),
        pid: v["pid"].as_u64()? as u32,
        owner: v["owner"].as_u64()? as u32,
        workspace: PathBuf::from(v["workspace"].as_str()?),
        started: v["started"].as_u64()?,
    })
}
