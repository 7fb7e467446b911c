//! UDP other than DNS is not carried: the datagrams land on the sandbox's loopback, where
//! nothing listens (the sender gets ICMP port unreachable, so QUIC clients fall back to TCP).
//! A raw UDP socket per family in the sandbox's namespace gets a copy of the start of each one;
//! each destination is recorded once, as net.deny naming the name behind a fake address.

use crate::dns;
use crate::egress::Egress;
use crate::engine::{DenyReason, Proto};
use ringfence_policy::Host;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Destinations recorded one by one; past that, one more event says the rest are not.
const DESTINATIONS: usize = 4096;

/// The destination of an IPv4 datagram that starts at its IP header.
fn destination_v4(packet: &[u8]) -> Option<SocketAddr> {
    let ip: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
    let header = usize::from(packet.first()? & 0x0f) * 4;
    let port = packet.get(header + 2..header + 4)?;
    Some(SocketAddr::new(Ipv4Addr::from(ip).into(), u16::from_be_bytes([port[0], port[1]])))
}

/// The destination of an IPv6 datagram that starts at its UDP header and was sent to `to`.
fn destination_v6(udp: &[u8], to: IpAddr) -> Option<SocketAddr> {
    let port = udp.get(2..4)?;
    Some(SocketAddr::new(to, u16::from_be_bytes([port[0], port[1]])))
}

/// Reads the IPv4 and IPv6 taps until the gateway stops, recording each new destination.
pub async fn serve(v4: UdpSocket, v6: UdpSocket, egress: Arc<Egress>) {
    let mut seen = HashSet::new();
    loop {
        let received = tokio::select! {
            got = v4.async_io(Interest::READABLE, || dns::receive(&v4)) => got.map(|(packet, _, _)| destination_v4(&packet)),
            got = v6.async_io(Interest::READABLE, || dns::receive(&v6)) => {
                got.map(|(udp, _, to)| to.and_then(|to| destination_v6(&udp, to)))
            }
        };
        let Ok(to) = received else { return };
        // Datagrams between the sandbox's own programs on its loopback are theirs.
        let Some(to) = to.filter(|to| !to.ip().to_canonical().is_loopback()) else { continue };
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
        assert_eq!(destination_v4(&v4), Some("198.18.0.1:443".parse().unwrap()));
        let to: IpAddr = "2001:db8::10".parse().unwrap();
        assert_eq!(destination_v6(&[0x30, 0x39, 0, 123, 0, 8, 0, 0], to), Some("[2001:db8::10]:123".parse().unwrap()));
        assert_eq!(destination_v4(&v4[..21]), None);
        assert_eq!(destination_v4(&[]), None);
        assert_eq!(destination_v6(&[0x30, 0x39, 0], to), None);
    }
}
