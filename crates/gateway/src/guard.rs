//! The address guard: which resolved addresses the gateway may dial on the sandbox's behalf.
//!
//! An allowed name is only as safe as the addresses it resolves to: a name pointed at
//! 127.0.0.1, the host's own address, a LAN box or the cloud metadata service would turn the
//! gateway into a way in (SSRF). Addresses that embed an IPv4 address (IPv4-mapped, NAT64,
//! 6to4) are judged by the address they embed.

use ipnet::IpNet;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the host's interface addresses are trusted before they are read again.
const OWN_ADDRESSES_TTL: Duration = Duration::from_secs(2);

/// Cloud metadata endpoints, refused even where private ranges are allowed.
const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),   // AWS ECS task credentials
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),  // AWS EKS pod identity
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)), // Alibaba Cloud
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),     // Oracle Cloud (legacy)
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)), // AWS IMDS over IPv6
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)), // AWS EKS pod identity over IPv6
    IpAddr::V6(Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)), // GCP metadata over IPv6
];

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    Loopback,
    LinkLocal,
    Metadata,
    Unspecified,
    Multicast,
    Broadcast,
    Reserved,
    /// RFC 1918, unique local (fc00::/7) or shared (100.64.0.0/10), not allowed by policy.
    Private,
    /// One of the machine's own interface addresses.
    OwnAddress,
    /// A Teredo address, whose IPv4 destination is obfuscated.
    Teredo,
}

impl Guarded {
    pub fn describe(self) -> &'static str {
        match self {
            Guarded::Loopback => "a loopback address",
            Guarded::LinkLocal => "a link-local address",
            Guarded::Metadata => "a cloud metadata endpoint",
            Guarded::Unspecified => "the unspecified address",
            Guarded::Multicast => "a multicast address",
            Guarded::Broadcast => "the broadcast address",
            Guarded::Reserved => "a reserved address",
            Guarded::Private => "a private address (allow its range with --allow-private)",
            Guarded::OwnAddress => "this machine's own address",
            Guarded::Teredo => "a Teredo tunnel address",
        }
    }
}

/// The IPv4 address an IPv6 address stands for, where it embeds one.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and the deprecated IPv4-compatible ::a.b.c.d (not :: or ::1).
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // NAT64: the well-known prefix and the local-use prefix (RFC 6052, RFC 8215).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x64, 0xff9b, 1, _, _, _, _, _] => Some(tail),
        // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d.
        [0x2002, a, b, ..] => Some(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        _ => None,
    }
}

/// The class of an address regardless of policy; `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<Guarded> {
    if METADATA.contains(&ip) {
        return Some(Guarded::Metadata);
    }
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify(IpAddr::V4(v4)),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Guarded> {
    let o = ip.octets();
    Some(match o {
        [127, ..] => Guarded::Loopback,
        [0, 0, 0, 0] => Guarded::Unspecified,
        [0, ..] => Guarded::Reserved,
        [169, 254, ..] => Guarded::LinkLocal,
        [255, 255, 255, 255] => Guarded::Broadcast,
        [224..=239, ..] => Guarded::Multicast,
        [240..=255, ..] => Guarded::Reserved,
        // IETF protocol assignments (192.0.0.0/24), and benchmarking (198.18.0.0/15).
        [192, 0, 0, _] | [198, 18 | 19, ..] => Guarded::Reserved,
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => Guarded::Private,
        [100, b, ..] if (64..128).contains(&b) => Guarded::Private,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Guarded> {
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 1] => Guarded::Loopback,
        [0, 0, 0, 0, 0, 0, 0, 0] => Guarded::Unspecified,
        [0x2001, 0, ..] => Guarded::Teredo,
        [a, ..] if a & 0xff00 == 0xff00 => Guarded::Multicast,
        [a, ..] if a & 0xffc0 == 0xfe80 => Guarded::LinkLocal,
        // Deprecated site-local (fec0::/10), treated like unique local.
        [a, ..] if a & 0xffc0 == 0xfec0 => Guarded::Private,
        [a, ..] if a & 0xfe00 == 0xfc00 => Guarded::Private,
        // Discard-only (100::/64) and the rest of ::/8 not handled above.
        [0x100, 0, 0, 0, ..] | [0, ..] => Guarded::Reserved,
        _ => return None,
    })
}

/// Judges addresses against the policy's private ranges and the machine's own addresses.
pub struct Guard {
    allow_private: Vec<IpNet>,
    own: Mutex<(Option<Instant>, HashSet<IpAddr>)>,
}

impl Guard {
    pub fn new(allow_private: Vec<IpNet>) -> Self {
        Guard { allow_private, own: Mutex::new((None, HashSet::new())) }
    }

    /// Whether the gateway may dial `ip`. `listed` is true when the sandbox named this very
    /// address and an IP rule allowed it: naming a private address is then the policy's
    /// explicit choice, but loopback, metadata and the host's own addresses stay refused.
    pub fn check(&self, ip: IpAddr, listed: bool) -> Result<(), Guarded> {
        let plain = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match classify(ip) {
            None => {}
            Some(Guarded::Private) if listed || self.allow_private.iter().any(|n| n.contains(&plain)) => {}
            Some(g) => return Err(g),
        }
        if self.is_own(ip) || self.is_own(plain) || routed_to_self(ip) {
            return Err(Guarded::OwnAddress);
        }
        Ok(())
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        if own.0.is_none_or(|t| t.elapsed() > OWN_ADDRESSES_TTL) {
            if let Ok(interfaces) = if_addrs::get_if_addrs() {
                own.1 = interfaces.iter().map(|i| i.ip()).collect();
            }
            own.0 = Some(Instant::now());
        }
        own.1.contains(&ip)
    }
}

/// Whether the kernel would deliver a packet for `ip` to this machine itself: a route of type
/// `local` covers more than the interfaces' addresses (AnyIP, `ip route add local 203.0.113.0/24
/// dev lo`). Connecting a UDP socket picks the route and source address without sending
/// anything; a destination delivered locally is answered from itself.
fn routed_to_self(ip: IpAddr) -> bool {
    let any: std::net::SocketAddr = if ip.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    std::net::UdpSocket::bind(any)
        .and_then(|probe| probe.connect((ip, 9)).and_then(|()| probe.local_addr()))
        .is_ok_and(|local| local.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<Guarded> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn public_and_documentation_addresses_pass() {
        for ok in ["93.184.216.34", "192.0.2.10", "198.51.100.7", "203.0.113.1", "2606:4700::1111", "2001:db8::1"] {
            assert_eq!(c(ok), None, "{ok}");
        }
    }

    #[test]
    fn dangerous_classes() {
        let cases = [
            ("127.0.0.1", Guarded::Loopback),
            ("127.255.1.2", Guarded::Loopback),
            ("::1", Guarded::Loopback),
            ("0.0.0.0", Guarded::Unspecified),
            ("::", Guarded::Unspecified),
            ("0.1.2.3", Guarded::Reserved),
            ("169.254.169.254", Guarded::Metadata),
            ("169.254.170.2", Guarded::Metadata),
            ("100.100.100.200", Guarded::Metadata),
            ("fd00:ec2::254", Guarded::Metadata),
            ("fd20:ce::254", Guarded::Metadata),
            ("169.254.1.1", Guarded::LinkLocal),
            ("fe80::1", Guarded::LinkLocal),
            ("224.0.0.1", Guarded::Multicast),
            ("ff02::1", Guarded::Multicast),
            ("255.255.255.255", Guarded::Broadcast),
            ("240.0.0.1", Guarded::Reserved),
            ("10.1.2.3", Guarded::Private),
            ("172.16.0.1", Guarded::Private),
            ("172.31.255.255", Guarded::Private),
            ("192.168.1.1", Guarded::Private),
            ("100.64.0.1", Guarded::Private),
            ("fd12:3456::1", Guarded::Private),
            ("fc00::1", Guarded::Private),
            ("2001::1", Guarded::Teredo),
        ];
        for (ip, want) in cases {
            assert_eq!(c(ip), Some(want), "{ip}");
        }
        assert_eq!(c("172.32.0.1"), None);
        assert_eq!(c("100.128.0.1"), None);
    }

    #[test]
    fn embedded_ipv4_is_judged_by_its_ipv4_address() {
        for (ip, want) in [
            ("::ffff:127.0.0.1", Some(Guarded::Loopback)),
            ("::ffff:169.254.169.254", Some(Guarded::Metadata)),
            ("::127.0.0.1", Some(Guarded::Loopback)),
            ("64:ff9b::7f00:1", Some(Guarded::Loopback)),
            ("64:ff9b::a00:1", Some(Guarded::Private)),
            ("64:ff9b:1::a9fe:a9fe", Some(Guarded::Metadata)),
            ("2002:7f00:1::", Some(Guarded::Loopback)),
            ("2002:c000:20a::1", None),
            ("::ffff:192.0.2.10", None),
            ("64:ff9b::c000:20a", None),
        ] {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn private_ranges_open_only_where_allowed() {
        let g = Guard::new(vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        assert_eq!(g.check("10.9.8.7".parse().unwrap(), false), Ok(()));
        assert_eq!(g.check("::ffff:10.9.8.7".parse().unwrap(), false), Ok(()));
        assert_eq!(g.check("fd12::1".parse().unwrap(), false), Ok(()));
        assert_eq!(g.check("192.168.0.1".parse().unwrap(), false), Err(Guarded::Private));
        assert_eq!(g.check("192.168.0.1".parse().unwrap(), true), Ok(()));
        // Metadata stays refused inside an allowed private range, and loopback even when listed.
        assert_eq!(g.check("fd00:ec2::254".parse().unwrap(), true), Err(Guarded::Metadata));
        assert_eq!(g.check("127.0.0.1".parse().unwrap(), true), Err(Guarded::Loopback));
    }

    #[test]
    fn own_addresses_are_refused() {
        let g = Guard::new(vec![]);
        let own: Vec<IpAddr> = if_addrs::get_if_addrs()
            .unwrap()
            .iter()
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4() && classify(*ip).is_none())
            .collect();
        for ip in own {
            assert_eq!(g.check(ip, true), Err(Guarded::OwnAddress), "{ip}");
            assert!(routed_to_self(ip), "{ip}");
        }
    }
}
