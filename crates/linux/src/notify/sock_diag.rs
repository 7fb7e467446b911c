//! Which Unix sockets listen in a network namespace, asked of the kernel through
//! NETLINK_SOCK_DIAG (unix_diag) on a netlink socket created in that namespace: the kernel
//! answers for the socket's own namespace, whoever holds the socket.

use nix::sys::socket::{recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_RQLEN: u16 = 4;
const HEADER: usize = 16; // struct nlmsghdr
const DIAG_MSG: usize = 16; // struct unix_diag_msg

/// A listening Unix socket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listener {
    /// The socket's own inode (`socket:[N]` in /proc/PID/fd).
    pub inode: u32,
    /// For a socket bound to a path: the superblock device (the kernel's internal form, major
    /// above bit 20, not stat's) and inode number of the file the bind created, 32 bits each.
    pub file: Option<(u32, u32)>,
    /// The bound name: a path, or a NUL and an abstract name (only when asked for).
    pub name: Option<Vec<u8>>,
    /// Connections waiting to be accepted, and the most the backlog takes: a connect waits
    /// only while more are queued than that.
    pub backlog: Option<(u32, u32)>,
}

impl Listener {
    /// Whether a connect now would be queued without waiting.
    pub fn has_room(&self) -> bool {
        self.backlog.is_some_and(|(queued, max)| queued < max)
    }
}

/// A netlink socket for the diagnostics of the calling thread's network namespace.
pub fn open() -> io::Result<OwnedFd> {
    Ok(socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)?)
}

/// Whether the kernel answers Unix socket diagnostics (CONFIG_UNIX_DIAG): a dump that matches
/// no socket state.
pub fn probe() -> io::Result<()> {
    let diag = open()?;
    dump(diag.as_fd(), 0, 0).map(drop)
}

/// Every listening Unix socket of the namespace, with the file it is bound to, its backlog
/// and, when `names`, its name.
pub fn listening(diag: BorrowedFd, names: bool) -> io::Result<Vec<Listener>> {
    let show = UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN | if names { UDIAG_SHOW_NAME } else { 0 };
    dump(diag, 1 << TCP_LISTEN, show)
}

fn request(states: u32, show: u32, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 24);
    out.extend_from_slice(&((HEADER + 24) as u32).to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    out.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, padding
    for word in [states, 0, show, 0, 0] {
        out.extend_from_slice(&word.to_ne_bytes()); // states, inode, show, cookie
    }
    out
}

/// Sends one dump request and reads every answer up to its end.
fn dump(diag: BorrowedFd, states: u32, show: u32) -> io::Result<Vec<Listener>> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    send(diag.as_raw_fd(), &request(states, show, seq), MsgFlags::empty())?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    loop {
        let n = recv(diag.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        if parse_batch(&buf[..n], seq, &mut out)? {
            return Ok(out);
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag answer")
}

/// Parses the messages of one datagram into `out`; true once the dump is complete.
fn parse_batch(batch: &[u8], seq: u32, out: &mut Vec<Listener>) -> io::Result<bool> {
    let mut at = 0;
    while at + HEADER <= batch.len() {
        let len = u32_at(batch, at).ok_or_else(malformed)? as usize;
        let kind = u16_at(batch, at + 4).ok_or_else(malformed)?;
        let body = batch.get(at + HEADER..at + len).ok_or_else(malformed)?;
        if len < HEADER {
            return Err(malformed());
        }
        // Answers to an earlier request, abandoned after an error, are skipped.
        if u32_at(batch, at + 8) == Some(seq) {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let code = u32_at(body, 0).ok_or_else(malformed)? as i32;
                    return Err(io::Error::from_raw_os_error(-code));
                }
                SOCK_DIAG_BY_FAMILY => out.push(parse_listener(body).ok_or_else(malformed)?),
                _ => {}
            }
        }
        at += (len + 3) & !3;
    }
    Ok(false)
}

/// One unix_diag_msg and its attributes.
fn parse_listener(body: &[u8]) -> Option<Listener> {
    let mut listener = Listener { inode: u32_at(body, 4)?, ..Default::default() };
    let mut at = DIAG_MSG;
    while at + 4 <= body.len() {
        let len = usize::from(u16_at(body, at)?);
        let data = body.get(at + 4..at + len)?;
        match u16_at(body, at + 2)? {
            UNIX_DIAG_VFS => listener.file = Some((u32_at(data, 4)?, u32_at(data, 0)?)),
            UNIX_DIAG_NAME => listener.name = Some(data.to_vec()),
            UNIX_DIAG_RQLEN => listener.backlog = Some((u32_at(data, 0)?, u32_at(data, 4)?)),
            _ => {}
        }
        at += (len.max(4) + 3) & !3;
    }
    Some(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket bound and listening here shows up with the device and inode of its file; a
    /// bound datagram socket does not.
    #[test]
    fn a_listening_socket_is_found_by_its_file() {
        use std::os::unix::fs::MetadataExt;
        let file = |m: &std::fs::Metadata| {
            let dev = super::super::unix::kernel_dev(libc::major(m.dev()), libc::minor(m.dev()));
            Some((dev, m.ino() as u32))
        };
        let dir = std::env::temp_dir().join(format!("rf-diag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _bound_only = std::os::unix::net::UnixDatagram::bind(dir.join("d")).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let diag = open().unwrap();
        let found = listening(diag.as_fd(), true).unwrap();
        let ours: Vec<&Listener> = found.iter().filter(|l| l.file == file(&meta)).collect();
        assert_eq!(ours.len(), 1, "{found:?}");
        assert!(matches!(ours[0].backlog, Some((0, max)) if max > 0), "{:?}", ours[0].backlog);
        assert!(ours[0].has_room());
        let name = [path.as_os_str().as_encoded_bytes(), b"\0"].concat();
        assert_eq!(ours[0].name.as_deref(), Some(name.as_slice()));
        let dgram = std::fs::metadata(dir.join("d")).unwrap();
        assert!(!found.iter().any(|l| l.file == file(&dgram)));
        probe().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
