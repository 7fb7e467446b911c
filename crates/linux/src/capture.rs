//! The transparent path's side inside the sandbox, set up by init while it still holds its
//! capabilities in its own namespaces: a `local` default route for IPv4 and IPv6 (every address
//! is delivered to the sandbox's own loopback, so nothing leaves the namespace and every
//! connection lands on a socket of this namespace), a dual-stack listener on each port the rules
//! allow (a connection's original destination is the accepted socket's local address), the
//! resolver's sockets on port 53, and raw UDP sockets that see the other UDP datagrams, to
//! record them. All are handed to the supervisor, which serves them from outside.

use nix::sys::socket::{
    bind, listen, recv, send, setsockopt, socket, sockopt, AddressFamily, Backlog, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType, SockaddrIn, SockaddrIn6,
};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use ringfence_policy::DNS_PORT;
/// Listen backlog of each capture listener (the kernel caps it at somaxconn, 4096 by default).
const BACKLOG: i32 = 4096;

/// The sockets init hands over, in this order: one listener per captured port, the resolver's
/// UDP sockets (IPv4, IPv6) and TCP listener, and the UDP taps (IPv4, IPv6).
pub fn open_sockets(ports: &[u16]) -> io::Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(ports.len() + 4);
    for port in ports {
        out.push(tcp_listener(*port).map_err(|e| with_context(e, &format!("listening on TCP port {port}")))?);
    }
    out.push(udp_socket(false).map_err(|e| with_context(e, "the resolver's IPv4 UDP socket"))?);
    out.push(udp_socket(true).map_err(|e| with_context(e, "the resolver's IPv6 UDP socket"))?);
    out.push(tcp_listener(DNS_PORT).map_err(|e| with_context(e, "the resolver's TCP listener"))?);
    out.push(udp_tap(false).map_err(|e| with_context(e, "the IPv4 UDP tap"))?);
    out.push(udp_tap(true).map_err(|e| with_context(e, "the IPv6 UDP tap"))?);
    Ok(out)
}

/// How many sockets [`open_sockets`] makes for `ports`.
pub fn socket_count(ports: &[u16]) -> usize {
    ports.len() + 5
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A listener on `port` of every address, IPv4 (as mapped addresses) and IPv6.
fn tcp_listener(port: u16) -> io::Result<OwnedFd> {
    let sock = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&sock, sockopt::Ipv6V6Only, &false)?;
    bind(sock.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)))?;
    listen(&sock, Backlog::new(BACKLOG).map_err(io::Error::from)?)?;
    Ok(sock)
}

/// A UDP socket on port 53 of every address of one family, which says where each datagram was
/// sent (so the answer can come from that address).
fn udp_socket(v6: bool) -> io::Result<OwnedFd> {
    let family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let sock = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    if v6 {
        setsockopt(&sock, sockopt::Ipv6V6Only, &true)?;
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)?;
        // An IPv6 answer may come from an address no interface holds (a `local` route makes
        // it the namespace's) only with IP_FREEBIND; IPv4 needs nothing.
        setsockopt(&sock, sockopt::IpFreebind, &true)?;
        bind(sock.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, DNS_PORT, 0, 0)))?;
    } else {
        setsockopt(&sock, sockopt::Ipv4PacketInfo, &true)?;
        bind(sock.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DNS_PORT)))?;
    }
    Ok(sock)
}

/// A raw UDP socket of one family: it receives a copy of each UDP datagram delivered in the
/// namespace (all of them: every address is loopback's), but DNS questions and the resolver's
/// answers, cut to their first 128 bytes. IPv4 copies start at the IP header; IPv6 ones at the
/// UDP header, with the destination address in IPV6_PKTINFO. (A raw socket rather than a
/// packet socket: closing a packet socket waits for an RCU grace period, 8-16 ms at the end of
/// every run.)
fn udp_tap(v6: bool) -> io::Result<OwnedFd> {
    let family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let sock = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::Udp)?;
    if v6 {
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)?;
    }
    crate::sys::attach_socket_filter(sock.as_fd(), &udp_tap_filter(v6))?;
    Ok(sock)
}

/// Classic BPF over a datagram that starts at its IPv4 header (`v6` false) or at its UDP
/// header (`v6` true): drop it when either port is the resolver's, else keep its first 128
/// bytes.
fn udp_tap_filter(v6: bool) -> Vec<libc::sock_filter> {
    const KEEP: u32 = 128;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let (ldx_msh, ld_h_ind, ld_h_abs, jeq, ret) = (0xb1, 0x48, 0x28, 0x15, 0x06);
    let dns = u32::from(DNS_PORT);
    let ports = if v6 {
        [op(ld_h_abs, 0, 0, 0), op(jeq, 3, 0, dns), op(ld_h_abs, 0, 0, 2)] // source, its test, destination
    } else {
        [op(ld_h_ind, 0, 0, 0), op(jeq, 3, 0, dns), op(ld_h_ind, 0, 0, 2)] // the same, past X bytes
    };
    let mut filter = Vec::with_capacity(7);
    if !v6 {
        filter.push(op(ldx_msh, 0, 0, 0)); // X = the IPv4 header's length
    }
    filter.extend(ports);
    filter.extend([op(jeq, 1, 0, dns), op(ret, 0, 0, KEEP), op(ret, 0, 0, 0)]);
    filter
}

/// Adds `local 0.0.0.0/0 dev lo` and `local ::/0 dev lo` (table local), as `ip route` would,
/// over rtnetlink: every destination is then this namespace's own, so a packet can go nowhere
/// but to the sandbox's loopback.
pub fn route_everything_to_loopback() -> io::Result<()> {
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
    bind(sock.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    let lo = nix::net::if_::if_nametoindex("lo").map_err(io::Error::from)?;
    for (seq, family) in [(1, libc::AF_INET), (2, libc::AF_INET6)] {
        send(sock.as_raw_fd(), &local_default_route(family as u8, seq, lo), MsgFlags::empty())?;
        acknowledged(sock.as_fd(), seq)?;
    }
    Ok(())
}

/// An RTM_NEWROUTE message: a local route of `family` for every address, out of interface `oif`.
fn local_default_route(family: u8, seq: u32, oif: u32) -> Vec<u8> {
    const HEADER: usize = 16;
    const RTMSG: usize = 12;
    const ATTR: usize = 8;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut m = Vec::with_capacity(HEADER + RTMSG + ATTR);
    m.extend(((HEADER + RTMSG + ATTR) as u32).to_ne_bytes());
    m.extend(libc::RTM_NEWROUTE.to_ne_bytes());
    m.extend(flags.to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    // rtmsg: family, destination and source prefix lengths, tos, table, protocol, scope, type.
    m.extend([family, 0, 0, 0, libc::RT_TABLE_LOCAL, libc::RTPROT_BOOT, libc::RT_SCOPE_HOST, libc::RTN_LOCAL]);
    m.extend(0u32.to_ne_bytes());
    m.extend((ATTR as u16).to_ne_bytes());
    m.extend(libc::RTA_OIF.to_ne_bytes());
    m.extend(oif.to_ne_bytes());
    m
}

/// Reads the kernel's answer to request `seq`: an error message whose code is 0, or the error.
fn acknowledged(sock: BorrowedFd, seq: u32) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    let field = |at: usize, len: usize| buf.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let got_seq = field(8, 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let code = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, got_seq, code) {
        (Some(k), Some(s), Some(0)) if k == libc::NLMSG_ERROR as u16 && s == seq => Ok(()),
        (Some(k), Some(s), Some(c)) if k == libc::NLMSG_ERROR as u16 && s == seq => {
            Err(io::Error::from_raw_os_error(-c))
        }
        _ => Err(io::Error::other("an unexpected rtnetlink answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_message_is_what_ip_route_sends() {
        let m = local_default_route(libc::AF_INET6 as u8, 7, 1);
        assert_eq!(m.len(), 36);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(&m[16..24], &[libc::AF_INET6 as u8, 0, 0, 0, 255, 3, 254, 2]);
        assert_eq!(u32::from_ne_bytes(m[32..36].try_into().unwrap()), 1);
    }

    #[test]
    fn the_tap_filters_drop_dns_and_keep_the_rest() {
        for v6 in [false, true] {
            let filter = udp_tap_filter(v6);
            for (i, ins) in filter.iter().enumerate() {
                if ins.code == 0x15 {
                    let last = filter.len() - 1;
                    assert!(i + 1 + usize::from(ins.jt.max(ins.jf)) <= last, "instruction {i} jumps out");
                    // Every test of port 53 jumps to the final "drop".
                    assert_eq!(i + 1 + usize::from(ins.jt), last, "instruction {i}");
                }
            }
            assert_eq!(filter[filter.len() - 1].k, 0);
            assert_eq!(filter[filter.len() - 2].k, 128);
        }
    }
}
