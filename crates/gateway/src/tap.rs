//! UDP other than DNS is not carried: the datagrams land on the sandbox's loopback, where
//! nothing listens (the sender gets ICMP port unreachable, so QUIC clients fall back to TCP).
//! A packet socket in the sandbox's namespace sees the start of each one as it is sent; each
//! destination is recorded once, as net.deny naming the name behind a fake address.

use crate::egress::Egress;
use crate::engine::{DenyReason, Proto};
use ringfence_policy::Host;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Destinations recorded one by one; past that, one more event says the rest are not.
const DESTINATIONS: usize = 4096;

/// The destination of a datagram that starts at its IP header.
fn destination(packet: &[u8]) -> Option<SocketAddr> {
    let port_at = |at: usize| packet.get(at..at + 2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    match packet.first()? >> 4 {
        4 => {
            let ip: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            let header = usize::from(packet[0] & 0x0f) * 4;
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port_at(header + 2)?))
        }
        6 => {
            let ip: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port_at(42)?))
        }
        _ => None,
    }
}

/// Reads the tap until the gateway stops, recording each new destination. The packet socket
/// is served as a datagram socket: only recv(2) is used on it, which every datagram socket
/// shares.
pub async fn serve(tap: OwnedFd, egress: Arc<Egress>) {
    let Ok(tap) = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(tap)) else { return };
    let mut seen = HashSet::new();
    let mut buf = [0u8; 256];
    loop {
        let Ok(n) = tap.recv(&mut buf).await else { return };
        // Datagrams between the sandbox's own programs on its loopback are theirs.
        let Some(to) = destination(&buf[..n]).filter(|to| !to.ip().to_canonical().is_loopback()) else { continue };
        if seen.len() > DESTINATIONS || !seen.insert(to) {
            continue;
        }
        record(&egress, to, seen.len() > DESTINATIONS);
    }
}

fn record(egress: &Egress, to: SocketAddr, last: bool) {
    let ip = to.ip().to_canonical();
    let host = match egress.destination(Proto::Udp, ip, to.port()) {
        Ok(host) => host,
        Err(_) => Host::Ip(ip),
    };
    let more = if last {
        format!("; more than {DESTINATIONS} destinations: the others are not recorded")
    } else {
        String::new()
    };
    let detail = format!(
        "a UDP datagram to {host}:{} was dropped: UDP other than DNS is not carried (HTTP/3 falls back to TCP){more}",
        to.port()
    );
    egress.engine.deny(
        Proto::Udp,
        &host,
        to.port(),
        DenyReason::Udp,
        detail,
        None,
        Some(SocketAddr::new(ip, to.port())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_of_datagrams() {
        let mut v4 = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 198, 18, 0, 1];
        v4.extend([0x30, 0x39, 0x01, 0xbb, 0, 8, 0, 0]);
        assert_eq!(destination(&v4), Some("198.18.0.1:443".parse().unwrap()));
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend([0u8; 16]);
        v6.extend("2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend([0x30, 0x39, 0, 123, 0, 8, 0, 0]);
        assert_eq!(destination(&v6), Some("[2001:db8::10]:123".parse().unwrap()));
        assert_eq!(destination(&v4[..21]), None);
        assert_eq!(destination(&[]), None);
    }
}
