//! connect(2), trapped for every socket. The caller's own connect never runs: on CONTINUE the
//! kernel would read the descriptor number and the address again after the check, and another
//! thread of the caller could have swapped either (an AF_UNIX socket onto the descriptor of a
//! checked TCP socket, a host socket's path into a checked address). Instead the supervisor
//! takes the caller's socket (pidfd_getfd: the same open file, so its family is the kernel's
//! own fact), reads the address once, and connects that socket itself. IP sockets connect to the
//! address as given, since the network namespace confines them (in `allow` mode every address
//! is the sandbox's loopback, where the transparent path listens), after the gateway's early
//! decision on stream sockets: a refused destination gets ECONNREFUSED before any packet is
//! sent. Unix sockets connect only to what `unix.rs` verified.
//!
//! The supervisor's connect runs with the supervisor's credentials, which own the sandbox's
//! user namespace (and may be root's in the host's): a connect whose kernel code checks a
//! capability would pass where the sandbox's own would not. So only families whose connect
//! checks none are carried out: AF_UNIX, AF_INET, AF_INET6, and AF_NETLINK to the kernel
//! without multicast groups (a peer port or a group needs CAP_NET_ADMIN, and later sends on the
//! connected socket are not checked again). Every other family gets EPERM, like the exotic
//! families the filter refuses at socket(2).

use super::target::Target;
use super::unix::Destination;
use super::{kernel, Answer, Call, Context, Fail, Step};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

/// The kernel refuses an address longer than a sockaddr_storage with EINVAL.
const SOCKADDR_STORAGE: i32 = 128;

pub(super) fn handle(ctx: &Context, call: &Call) -> Result<Step, Fail> {
    let target = Target::open(call.tid)?;
    let socket = target.descriptor(call.args[0])?;
    let address = read_address(&target, call.args[1], call.args[2])?;
    let family = kernel::socket_option(socket.as_fd(), libc::SO_DOMAIN).map_err(Fail::of)?;
    let to = match family {
        libc::AF_UNIX => ctx.unix.as_ref().ok_or(Fail::Errno(libc::ENOSYS))?.destination(&target, address)?,
        libc::AF_INET | libc::AF_INET6 => {
            judge_egress(ctx, &socket, &address)?;
            Destination::Address(address)
        }
        libc::AF_NETLINK if netlink_needs_no_capability(&address) => Destination::Address(address),
        _ => return Err(Fail::Errno(libc::EPERM)),
    };
    if !ctx.still_pending(call.id) {
        return Ok(Step::Gone);
    }
    Ok(Dial { socket: Arc::new(socket), to }.step())
}

/// The gateway's early decision on a stream socket's destination (`allow` mode): ECONNREFUSED
/// when refused, as a rejecting firewall would answer. Datagram sockets connect as given: what
/// they send is recorded where it lands (nothing listens there but the resolver on port 53).
fn judge_egress(ctx: &Context, socket: &OwnedFd, address: &[u8]) -> Result<(), Fail> {
    let Some(judge) = &ctx.egress else { return Ok(()) };
    if kernel::socket_option(socket.as_fd(), libc::SO_TYPE).map_err(Fail::of)? == libc::SOCK_DGRAM {
        return Ok(());
    }
    match socket_address(address) {
        Some(to) if !judge.allows(to) => Err(Fail::Errno(libc::ECONNREFUSED)),
        // An address the kernel would refuse as malformed is left to the kernel.
        _ => Ok(()),
    }
}

/// An AF_INET or AF_INET6 socket address from its raw bytes.
fn socket_address(raw: &[u8]) -> Option<std::net::SocketAddr> {
    let family = u16::from_ne_bytes([*raw.first()?, *raw.get(1)?]);
    let port = u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = raw.get(4..8)?.try_into().ok()?;
            Some((std::net::Ipv4Addr::from(ip), port).into())
        }
        libc::AF_INET6 if raw.len() >= 24 => {
            let ip: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
            Some((std::net::Ipv6Addr::from(ip), port).into())
        }
        _ => None,
    }
}

/// The address argument, read once. The kernel reads its length as an int.
fn read_address(target: &Target, addr: u64, len: u64) -> Result<Vec<u8>, Fail> {
    let len = len as u32 as i32;
    if !(0..=SOCKADDR_STORAGE).contains(&len) {
        return Err(Fail::Errno(libc::EINVAL));
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    target.memory(addr, len as usize)
}

/// Whether a netlink connect to `address` checks no capability: one to the kernel (port 0) with
/// no multicast groups, AF_UNSPEC (which disconnects), or one the kernel refuses as malformed
/// before any check.
fn netlink_needs_no_capability(address: &[u8]) -> bool {
    let word = |at: usize| address.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let family = address.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    // struct sockaddr_nl: family, padding, port ID, groups.
    match (family, word(4), word(8)) {
        (Some(f), Some(port), Some(groups)) if f == libc::AF_NETLINK as u16 => port == 0 && groups == 0,
        _ => true,
    }
}

/// A connect the supervisor makes on the caller's socket.
struct Dial {
    socket: Arc<OwnedFd>,
    to: Destination,
}

impl Dial {
    /// The connect runs on the serving thread that received the call. It may wait (a full
    /// backlog, a TCP handshake) unless the socket is non-blocking or a verified listener's
    /// backlog has room; then other threads receive the next calls meanwhile. Should the
    /// caller clear O_NONBLOCK, or fill the backlog, after this look, only the sandbox's own
    /// calls wait behind it.
    fn step(self) -> Step {
        let flags = nix::fcntl::fcntl(self.socket.as_fd(), nix::fcntl::FcntlArg::F_GETFL);
        let nonblocking = flags.is_ok_and(|f| f & libc::O_NONBLOCK != 0);
        let may_block = !nonblocking && !matches!(self.to, Destination::Verified { room: true, .. });
        Step::Connect { socket: self.socket.clone(), may_block, work: Box::new(move || self.connect()) }
    }

    fn connect(&self) -> Answer {
        let result = match &self.to {
            Destination::Address(address) => kernel::connect(self.socket.as_fd(), address),
            Destination::Verified { file, .. } => kernel::connect(self.socket.as_fd(), &through_descriptor(file)),
        };
        match result {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// A sockaddr_un naming our /proc/self/fd/N of the verified file: the kernel connects to the
/// inode that was checked, whatever the path names by now.
fn through_descriptor(file: &OwnedFd) -> Vec<u8> {
    let mut out = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    out.extend_from_slice(format!("/proc/self/fd/{}", file.as_raw_fd()).as_bytes());
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::{netlink_needs_no_capability, socket_address};

    #[test]
    fn ip_addresses_are_read_from_their_bytes() {
        let v4 = [&(libc::AF_INET as u16).to_ne_bytes()[..], &443u16.to_be_bytes(), &[192, 0, 2, 7], &[0; 8]].concat();
        assert_eq!(socket_address(&v4), Some("192.0.2.7:443".parse().unwrap()));
        let ip6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v6 = [&(libc::AF_INET6 as u16).to_ne_bytes()[..], &22u16.to_be_bytes(), &[0; 4], &ip6.octets(), &[0; 4]]
            .concat();
        assert_eq!(socket_address(&v6), Some("[2001:db8::1]:22".parse().unwrap()));
        assert_eq!(socket_address(&v6[..20]), None);
        assert_eq!(socket_address(&v4[..3]), None);
    }

    #[test]
    fn netlink_connects_to_peers_or_groups_are_not_carried_out() {
        let nl = |port: u32, groups: u32| {
            [&(libc::AF_NETLINK as u16).to_ne_bytes()[..], &[0, 0], &port.to_ne_bytes(), &groups.to_ne_bytes()].concat()
        };
        assert!(netlink_needs_no_capability(&nl(0, 0)));
        assert!(!netlink_needs_no_capability(&nl(1234, 0)));
        assert!(!netlink_needs_no_capability(&nl(0, 1)));
        assert!(netlink_needs_no_capability(&(libc::AF_UNSPEC as u16).to_ne_bytes()));
        assert!(netlink_needs_no_capability(&nl(7, 7)[..6]));
    }
}
