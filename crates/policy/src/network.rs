//! Network rules for the `allow` mode: host patterns, presets, private ranges and the resolver
//! the gateway uses. Pure: parsing and matching only; the gateway enforces them.

use crate::origin::Origin;
use crate::presets::Preset;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A destination as a client names it, normalized.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Parses a host from a CONNECT authority, SOCKS5 domain, URL or Host header (host part
    /// only, no port).
    ///
    /// Names: ASCII letters, digits, `-` and `_`; labels of 1 to 63 characters, 253 in all, no
    /// label starting or ending with `-`; lowercased, one trailing dot dropped. Numeric forms
    /// that `inet_aton` would read as an address (`2130706433`, `127.1`, `0x7f.1`: the last label
    /// all digits, or a label `0x` followed by hex digits) are not names: they parse only as a
    /// strict dotted-quad IPv4 address. IPv6 is accepted bare or in brackets, without a zone id.
    pub fn parse(s: &str) -> Result<Host, String> {
        if s.is_empty() {
            return Err("empty host name".into());
        }
        if let Some(inner) = s.strip_prefix('[') {
            if inner.contains("]:") {
                return Err(format!("`{s}`: give the host without a port"));
            }
            let inner = inner.strip_suffix(']').ok_or_else(|| format!("`{s}`: missing `]` after the IPv6 address"))?;
            return parse_ipv6(inner).map(Host::Ip);
        }
        if s.matches(':').count() == 1 && !s.contains('%') {
            return Err(format!("`{s}`: give the host without a port"));
        }
        if s.contains(':') || s.contains('%') {
            return parse_ipv6(s).map(Host::Ip);
        }
        if !s.is_ascii() {
            return Err(format!("`{s}`: write an internationalized name in its ASCII form (`xn--…`)"));
        }
        let lower = s.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.is_empty() {
            return Err(format!("`{s}` is not a host name"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        let numeric = labels.last().is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            || labels
                .iter()
                .any(|l| l.strip_prefix("0x").is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit())));
        if numeric {
            return name.parse::<Ipv4Addr>().map(|ip| Host::Ip(IpAddr::V4(ip))).map_err(|_| {
                format!("`{s}` is a numeric address in an unusual form; write IPv4 addresses as four decimal numbers, like `192.0.2.7`")
            });
        }
        if name.len() > 253 {
            return Err(format!("`{s}` is longer than the 253 characters a host name may have"));
        }
        for label in &labels {
            if label.is_empty() {
                return Err(format!("`{s}` has an empty label (two dots in a row, or a leading dot)"));
            }
            if label.len() > 63 {
                return Err(format!("`{s}` has a label longer than 63 characters"));
            }
            if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
                return Err(format!("`{s}` contains `{c}`; host names hold letters, digits, `-` and `_`"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("`{s}`: a label can't start or end with `-`"));
            }
        }
        Ok(Host::Name(name.to_string()))
    }
}

fn parse_ipv6(s: &str) -> Result<IpAddr, String> {
    if s.contains('%') {
        return Err(format!("`{s}`: IPv6 zone ids (`%eth0`) are not accepted"));
    }
    s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| format!("`{s}` is not a valid IPv6 address"))
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The host part of a [`HostPattern`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Exactly this name.
    Exact(String),
    /// `*.example.com`: any name strictly below example.com, not example.com itself.
    Subdomains(String),
    /// Exactly this address (an IPv4-mapped IPv6 address counts as its IPv4 address).
    Ip(IpAddr),
    /// Any address in this range (`10.1.0.0/16`, `2001:db8::/64`).
    Net(ipnet::IpNet),
}

/// The ports a rule without a port covers: HTTP and HTTPS.
pub const WEB_PORTS: [u16; 2] = [80, 443];

/// A host pattern of an allow or deny rule, with an optional port (none: [`WEB_PORTS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    pub host: HostMatch,
    pub port: Option<u16>,
}

const BRACKETS_FOR_PORT: &str = "write an IPv6 address in brackets to give a port: `[2001:db8::1]:443`";

impl HostPattern {
    /// Parses `example.com`, `*.example.com`, `example.com:443`, `192.0.2.7`, `192.0.2.7:8080`,
    /// `[2001:db8::1]` or `[2001:db8::1]:443`. Errors say what to write instead.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        if s.is_empty() {
            return Err("empty host pattern".into());
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(format!("write the host only, without `{scheme}://`"));
        }
        if let Some(pattern) = parse_range(s)? {
            return Ok(pattern);
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) =
                rest.split_once(']').ok_or_else(|| "missing `]` after the IPv6 address".to_string())?;
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(p) => Some(parse_port(p)?),
                    None => return Err(format!("unexpected `{after}` after `]`; write `[2001:db8::1]:443`")),
                },
            };
            let ip = parse_ipv6(inner)?;
            return Ok(HostPattern { host: HostMatch::Ip(ip), port });
        } else if s.matches(':').count() > 1 {
            // A bare IPv6 address; it can't carry a port.
            if s.contains('%') {
                return Err(format!("`{s}`: IPv6 zone ids (`%eth0`) are not accepted"));
            }
            return match s.parse::<Ipv6Addr>() {
                Ok(ip) => Ok(HostPattern { host: HostMatch::Ip(IpAddr::V6(ip)), port: None }),
                Err(_) => match s.rsplit_once(':') {
                    Some((addr, _)) if addr.parse::<Ipv6Addr>().is_ok() => Err(BRACKETS_FOR_PORT.into()),
                    _ => Err(format!("`{s}` is not a valid IPv6 address")),
                },
            };
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(parse_port(p)?)),
                None => (s, None),
            }
        };
        if host == "*" {
            return Err("`*` alone would allow everything: use network.mode = \"host\"".into());
        }
        let wildcard = host.strip_prefix("*.");
        let rest = wildcard.unwrap_or(host);
        if rest.contains('*') {
            return Err("a wildcard may only start a pattern, as in `*.example.com`".into());
        }
        let host = match (Host::parse(rest)?, wildcard) {
            (Host::Name(n), None) => HostMatch::Exact(n),
            (Host::Name(n), Some(_)) => HostMatch::Subdomains(n),
            (Host::Ip(ip), None) => HostMatch::Ip(ip),
            (Host::Ip(_), Some(_)) => {
                return Err("a wildcard applies to names, not to IP addresses; list each address".into())
            }
        };
        Ok(HostPattern { host, port })
    }

    /// The ports the pattern covers: its own, or [`WEB_PORTS`] when it names none.
    pub fn ports(&self) -> &[u16] {
        match &self.port {
            Some(p) => std::slice::from_ref(p),
            None => &WEB_PORTS,
        }
    }

    /// Whether `host` matches, whatever the port.
    pub fn matches_host(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostMatch::Exact(p), Host::Name(n)) => p == n,
            (HostMatch::Subdomains(p), Host::Name(n)) => {
                n.len() > p.len() + 1 && n.ends_with(p.as_str()) && n.as_bytes()[n.len() - p.len() - 1] == b'.'
            }
            (HostMatch::Ip(p), Host::Ip(a)) => unmap(*p) == unmap(*a),
            (HostMatch::Net(net), Host::Ip(a)) => net.contains(&unmap(*a)),
            _ => false,
        }
    }

    /// Whether `host:port` matches. Name patterns never match an IP host and vice versa.
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        self.ports().contains(&port) && self.matches_host(host)
    }
}

/// A CIDR range pattern (`10.1.0.0/16`, `10.1.0.0/16:5432`, `[2001:db8::/64]:22`), `None`
/// when `s` holds no `/`.
fn parse_range(s: &str) -> Result<Option<HostPattern>, String> {
    let Some((_, suffix)) = s.split_once('/') else { return Ok(None) };
    let (net, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((net, "")) => (net, None),
            Some((net, after)) => match after.strip_prefix(':') {
                Some(p) => (net, Some(parse_port(p)?)),
                None => return Err(format!("unexpected `{after}` after `]`; write `[2001:db8::/64]:22`")),
            },
            None => return Err("missing `]` after the IPv6 range".into()),
        }
    } else {
        match suffix.split_once(':') {
            Some((_, p)) if !s.contains("::") && s.matches(':').count() == 1 => {
                (&s[..s.len() - p.len() - 1], Some(parse_port(p)?))
            }
            _ => (s, None),
        }
    };
    let Ok(net) = net.parse::<ipnet::IpNet>() else {
        return Err("write the host only, without a path (or an address range such as `10.1.0.0/16`)".into());
    };
    if net.trunc() != net {
        return Err(format!("`{net}` has bits set past its prefix; write `{}`", net.trunc()));
    }
    Ok(Some(HostPattern { host: HostMatch::Net(net), port }))
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others unchanged.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("port must be 1-65535, not `{p}`")),
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Exact(n) => f.write_str(n)?,
            HostMatch::Subdomains(n) => write!(f, "*.{n}")?,
            HostMatch::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostMatch::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostMatch::Net(net @ ipnet::IpNet::V4(_)) => write!(f, "{net}")?,
            HostMatch::Net(net) => write!(f, "[{net}]")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One allow or deny rule and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostRule {
    pub pattern: HostPattern,
    pub origin: Origin,
}

/// The network rules of the `allow` mode, gathered from every layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkRules {
    pub allow: Vec<HostRule>,
    pub deny: Vec<HostRule>,
    /// Private ranges (RFC 1918, ULA fc00::/7, CGNAT 100.64.0.0/10) the gateway may dial;
    /// everything else private stays refused.
    #[serde(serialize_with = "ser_private")]
    pub allow_private: Vec<(ipnet::IpNet, Origin)>,
    /// Upstream DNS server for the gateway; None = the system resolver. Port defaults to 53.
    #[serde(serialize_with = "ser_resolver")]
    pub resolver: Option<(SocketAddr, Origin)>,
    /// Presets in force, for explain (their hosts are already expanded into `allow`).
    #[serde(serialize_with = "ser_presets")]
    pub presets: Vec<(Preset, Origin)>,
}

/// The gateway's decision for one destination, with the rule that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetVerdict<'a> {
    Allowed(&'a HostRule),
    Denied(&'a HostRule),
    NotAllowed,
}

impl NetworkRules {
    /// Deny rules beat allow rules; an IP host is allowed only by an address or range
    /// pattern. An allow rule without a port covers [`WEB_PORTS`]; a deny rule without a port
    /// covers every port.
    pub fn decide(&self, host: &Host, port: u16) -> NetVerdict<'_> {
        let denies = |r: &&HostRule| r.pattern.port.is_none_or(|p| p == port) && r.pattern.matches_host(host);
        if let Some(rule) = self.deny.iter().find(denies) {
            return NetVerdict::Denied(rule);
        }
        match self.allow.iter().find(|r| r.pattern.matches(host, port)) {
            Some(rule) => NetVerdict::Allowed(rule),
            None => NetVerdict::NotAllowed,
        }
    }

    /// The allow rule that lets the sandbox reach `host` on at least one port, if any: such a
    /// name gets an answer from the sandbox's resolver.
    pub fn allows_host(&self, host: &Host) -> Option<&HostRule> {
        self.allow.iter().filter(|r| r.pattern.matches_host(host)).find_map(|r| {
            r.pattern.ports().iter().find_map(|p| match self.decide(host, *p) {
                NetVerdict::Allowed(rule) => Some(rule),
                _ => None,
            })
        })
    }

    /// Every port an allow rule covers, ascending: the ports a transparent path must capture.
    pub fn allowed_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.allow.iter().flat_map(|r| r.pattern.ports().iter().copied()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The ports the transparent path listens on: every port an allow rule covers, but the
    /// resolver's and the explicit proxies' ports on the sandbox's loopback.
    pub fn captured_ports(&self) -> Vec<u16> {
        let taken = [DNS_PORT, HTTP_PROXY_PORT, SOCKS_PROXY_PORT];
        self.allowed_ports().into_iter().filter(|p| !taken.contains(p)).collect()
    }

    /// Whether `rule` in `allow` was put there by a preset in force.
    pub fn preset_of(&self, rule: &HostRule) -> Option<Preset> {
        let text = rule.pattern.to_string();
        self.presets.iter().find(|(p, o)| *o == rule.origin && p.hosts().contains(&text.as_str())).map(|(p, _)| *p)
    }
}

/// The gateway's HTTP proxy port on the sandbox's loopback (HTTP_PROXY, HTTPS_PROXY).
pub const HTTP_PROXY_PORT: u16 = 3128;
/// The gateway's SOCKS5 port on the sandbox's loopback (ALL_PROXY).
pub const SOCKS_PROXY_PORT: u16 = 1080;
/// The port of the sandbox's resolver on every address (the transparent path).
pub const DNS_PORT: u16 = 53;

/// The private ranges `allow_private` may open, with their names.
pub const PRIVATE_RANGES: &[(&str, &str)] = &[
    ("10.0.0.0/8", "RFC 1918"),
    ("172.16.0.0/12", "RFC 1918"),
    ("192.168.0.0/16", "RFC 1918"),
    ("100.64.0.0/10", "CGNAT"),
    ("fc00::/7", "ULA"),
];

/// Parses an `allow_private` entry: a CIDR range, or one address, within [`PRIVATE_RANGES`].
pub fn parse_private_range(s: &str) -> Result<ipnet::IpNet, String> {
    let net = match s.parse::<ipnet::IpNet>() {
        Ok(net) => net,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => ipnet::IpNet::from(ip),
            Err(_) => return Err(format!("`{s}` is not an address range; write one like `10.0.0.0/8` or `fd00::/8`")),
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "`{s}` has bits set past its prefix; write `{}`, or `{}/{}` for one address",
            net.trunc(),
            net.addr(),
            net.max_prefix_len()
        ));
    }
    let within = PRIVATE_RANGES.iter().any(|(r, _)| r.parse::<ipnet::IpNet>().is_ok_and(|r| r.contains(&net)));
    if !within {
        let list: Vec<&str> = PRIVATE_RANGES.iter().map(|(r, _)| *r).collect();
        return Err(format!("`{s}` is not a private range; `allow_private` takes ranges within {}", list.join(", ")));
    }
    Ok(net)
}

/// Parses a resolver address: `192.0.2.53`, `192.0.2.53:5353`, `[2001:db8::53]:53` or
/// `2001:db8::53` (port 53 when none is given).
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    let addr = if let Ok(a) = s.parse::<SocketAddr>() {
        a
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        SocketAddr::new(ip, 53)
    } else if let Some(ip) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse().ok()) {
        SocketAddr::new(IpAddr::V6(ip), 53)
    } else if s.contains('%') {
        return Err(format!("`{s}`: IPv6 zone ids (`%eth0`) are not accepted"));
    } else {
        return Err(format!(
            "`{s}` is not an IP address; the resolver is given by address, like `192.0.2.53`, \
             `192.0.2.53:5353` or `[2001:db8::53]:53`"
        ));
    };
    if addr.port() == 0 {
        return Err(format!("`{s}`: port must be 1-65535"));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!("`{s}` can't be a resolver address"));
    }
    Ok(addr)
}

fn ser_private<S: Serializer>(list: &[(ipnet::IpNet, Origin)], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        range: String,
        origin: &'a Origin,
    }
    s.collect_seq(list.iter().map(|(n, o)| Entry { range: n.to_string(), origin: o }))
}

fn ser_resolver<S: Serializer>(r: &Option<(SocketAddr, Origin)>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        None => s.serialize_none(),
        Some((addr, origin)) => {
            let mut st = s.serialize_struct("Resolver", 2)?;
            st.serialize_field("address", &addr.to_string())?;
            st.serialize_field("origin", origin)?;
            st.end()
        }
    }
}

fn ser_presets<S: Serializer>(list: &[(Preset, Origin)], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'static str,
        hosts: &'static [&'static str],
        origin: &'a Origin,
    }
    s.collect_seq(list.iter().map(|(p, o)| Entry { name: p.name(), hosts: p.hosts(), origin: o }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Host {
        Host::Name(s.into())
    }
    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }
    fn pat(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn rule(s: &str) -> HostRule {
        HostRule { pattern: pat(s), origin: Origin::flag(format!("test {s}")) }
    }

    #[test]
    fn host_names_normalize() {
        assert_eq!(Host::parse("Example.COM"), Ok(name("example.com")));
        assert_eq!(Host::parse("example.com."), Ok(name("example.com")));
        assert_eq!(Host::parse("a_b-c.example"), Ok(name("a_b-c.example")));
        assert_eq!(Host::parse("localhost"), Ok(name("localhost")));
        assert_eq!(Host::parse("1password.com"), Ok(name("1password.com")));
        assert_eq!(Host::parse("x.0xample.com"), Ok(name("x.0xample.com")));
        assert_eq!(Host::parse("com.123a"), Ok(name("com.123a")));
        let long = format!("{}.com", "a".repeat(63));
        assert_eq!(Host::parse(&long), Ok(name(&long)));
        let total = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(total.len(), 253);
        assert!(Host::parse(&total).is_ok());
        assert!(Host::parse(&format!("{total}.")).is_ok());
    }

    #[test]
    fn bad_host_names() {
        let bad = [
            "",
            ".",
            "example.com..",
            ".example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "exa mple.com",
            "example.com:443",
            "ex*ample.com",
            "a/b",
            "bücher.de",
            " example.com",
        ];
        for s in bad {
            assert!(Host::parse(s).is_err(), "{s:?} parsed");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(Host::parse(&long).unwrap_err().contains("63"));
        let total = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
        assert!(Host::parse(&total).unwrap_err().contains("253"));
    }

    #[test]
    fn numeric_tricks_are_not_names() {
        assert_eq!(Host::parse("127.0.0.1"), Ok(ip("127.0.0.1")));
        assert_eq!(Host::parse("192.0.2.7."), Ok(ip("192.0.2.7")));
        for s in [
            "2130706433",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0x7f000001",
            "0X7F.0.0.1",
            "0177.0.0.1",
            "127.0.0.01",
            "1.2.3.4.5",
            "256.0.0.1",
            "0x",
            "example.0x1f.com",
            "example.123",
        ] {
            let e = Host::parse(s).unwrap_err();
            assert!(e.contains("four decimal numbers"), "{s}: {e}");
        }
    }

    #[test]
    fn ipv6_hosts() {
        assert_eq!(Host::parse("2001:db8::1"), Ok(ip("2001:db8::1")));
        assert_eq!(Host::parse("[2001:DB8::1]"), Ok(ip("2001:db8::1")));
        assert_eq!(Host::parse("::ffff:127.0.0.1"), Ok(ip("::ffff:127.0.0.1")));
        assert!(Host::parse("fe80::1%eth0").unwrap_err().contains("zone"));
        assert!(Host::parse("[fe80::1%25eth0]").unwrap_err().contains("zone"));
        assert!(Host::parse("[2001:db8::1").is_err());
        assert!(Host::parse("[2001:db8::1]:443").unwrap_err().contains("without a port"));
        assert!(Host::parse("example.com:443").unwrap_err().contains("without a port"));
        assert!(Host::parse("[example.com]").is_err());
        assert!(Host::parse("2001:db8:::1").is_err());
        assert_eq!(ip("2001:db8::1").to_string(), "2001:db8::1");
        assert_eq!(name("example.com").to_string(), "example.com");
    }

    #[test]
    fn patterns_parse_and_round_trip() {
        let cases = [
            ("example.com", HostMatch::Exact("example.com".into()), None),
            ("*.Example.com", HostMatch::Subdomains("example.com".into()), None),
            ("example.com:443", HostMatch::Exact("example.com".into()), Some(443)),
            ("192.0.2.7", HostMatch::Ip("192.0.2.7".parse().unwrap()), None),
            ("192.0.2.7:8080", HostMatch::Ip("192.0.2.7".parse().unwrap()), Some(8080)),
            ("[2001:db8::1]", HostMatch::Ip("2001:db8::1".parse().unwrap()), None),
            ("[2001:db8::1]:443", HostMatch::Ip("2001:db8::1".parse().unwrap()), Some(443)),
            ("2001:db8::1", HostMatch::Ip("2001:db8::1".parse().unwrap()), None),
        ];
        for (s, host, port) in cases {
            let p = pat(s);
            assert_eq!(p, HostPattern { host, port }, "{s}");
            assert_eq!(pat(&p.to_string()), p, "{s} -> {p}");
        }
        assert_eq!(pat("*.Example.com:8443").to_string(), "*.example.com:8443");
        for range in ["10.1.0.0/16", "10.1.0.0/16:5432", "[2001:db8::/64]", "[2001:db8::/64]:22"] {
            assert_eq!(pat(range).to_string(), range);
        }
        assert_eq!(pat("2001:db8::/64").to_string(), "[2001:db8::/64]");
        assert_eq!(pat("2001:db8::1").to_string(), "[2001:db8::1]");
        assert_eq!(pat("[2001:db8::1]:443").to_string(), "[2001:db8::1]:443");
    }

    #[test]
    fn pattern_errors_explain_the_fix() {
        let cases = [
            ("*", "`*` alone would allow everything: use network.mode = \"host\""),
            ("*:443", "`*` alone would allow everything"),
            ("foo.*.com", "a wildcard may only start a pattern, as in `*.example.com`"),
            ("*example.com", "a wildcard may only start a pattern"),
            ("**.example.com", "a wildcard may only start a pattern"),
            ("ex*.com", "a wildcard may only start a pattern"),
            ("example.com:0", "port must be 1-65535"),
            ("example.com:65536", "port must be 1-65535"),
            ("example.com:", "port must be 1-65535"),
            ("example.com:+1", "port must be 1-65535"),
            ("example.com:https", "port must be 1-65535"),
            ("[2001:db8::1]:0", "port must be 1-65535"),
            ("2001:db8:0:0:0:0:0:1:443", "write an IPv6 address in brackets to give a port: `[2001:db8::1]:443`"),
            ("[2001:db8::1]443", "after `]`"),
            ("fe80::1%eth0", "zone"),
            ("*.192.0.2.7", "not to IP addresses"),
            ("https://example.com", "without `https://`"),
            ("example.com/path", "without a path"),
            ("10.1.2.3/16", "bits set past its prefix; write `10.1.0.0/16`"),
            ("10.1.0.0/16:0", "port must be 1-65535"),
            ("[2001:db8::/64]x", "after `]`"),
            ("", "empty"),
            ("127.1", "four decimal numbers"),
            ("exa_mple!.com", "contains `!`"),
        ];
        for (s, expected) in cases {
            let e = HostPattern::parse(s).unwrap_err();
            assert!(e.contains(expected), "{s:?} gave {e:?}");
        }
    }

    #[test]
    fn pattern_matching() {
        let exact = pat("example.com");
        assert!(exact.matches(&name("example.com"), 443));
        assert!(exact.matches(&name("example.com"), 80));
        assert!(!exact.matches(&name("example.com"), 22), "a rule without a port means 80 and 443");
        assert!(!exact.matches(&name("example.com"), 8443));
        assert!(!exact.matches(&name("www.example.com"), 443));
        assert!(!exact.matches(&name("example.com.evil"), 443));

        let wild = pat("*.example.com");
        assert!(wild.matches(&name("www.example.com"), 443));
        assert!(wild.matches(&name("a.b.example.com"), 443));
        assert!(!wild.matches(&name("example.com"), 443), "the apex is not below itself");
        assert!(!wild.matches(&name("badexample.com"), 443));
        assert!(!wild.matches(&name("example.com.evil.net"), 443));

        let port = pat("example.com:443");
        assert!(port.matches(&name("example.com"), 443));
        assert!(!port.matches(&name("example.com"), 80));

        let v4 = pat("192.0.2.7");
        assert!(v4.matches(&ip("192.0.2.7"), 80));
        assert!(!v4.matches(&ip("192.0.2.7"), 1));
        assert!(v4.matches(&ip("::ffff:192.0.2.7"), 443), "mapped IPv6 is its IPv4 address");
        assert!(!v4.matches(&ip("192.0.2.8"), 443));
        assert!(!v4.matches(&name("192.0.2.7.nip.io"), 443));

        let range = pat("10.1.0.0/16:5432");
        assert!(range.matches(&ip("10.1.2.3"), 5432));
        assert!(range.matches(&ip("::ffff:10.1.2.3"), 5432));
        assert!(!range.matches(&ip("10.2.0.1"), 5432));
        assert!(!range.matches(&ip("10.1.2.3"), 443));
        let range6 = pat("[2001:db8::/64]:22");
        assert!(range6.matches(&ip("2001:db8::99"), 22));
        assert!(!range6.matches(&ip("2001:db9::1"), 22));
        assert!(pat("2001:db8::/64").matches(&ip("2001:db8::1"), 443));
        let mapped = pat("[::ffff:192.0.2.7]:443");
        assert!(mapped.matches(&ip("192.0.2.7"), 443));
        assert!(!mapped.matches(&ip("192.0.2.7"), 80));
        let v6 = pat("[2001:db8::1]:443");
        assert!(v6.matches(&ip("2001:db8::1"), 443));
        assert!(!v6.matches(&ip("2001:db8::2"), 443));

        // Name patterns never match addresses, and address patterns never match names.
        assert!(!pat("localhost").matches(&ip("127.0.0.1"), 80));
        assert!(!pat("127.0.0.1").matches(&name("localhost"), 80));
    }

    #[test]
    fn deny_beats_allow_and_ips_need_their_own_rule() {
        let rules = NetworkRules {
            allow: vec![rule("*.example.com"), rule("api.example.net:443"), rule("192.0.2.7")],
            deny: vec![rule("secret.example.com"), rule("api.example.net")],
            ..Default::default()
        };
        assert_eq!(rules.decide(&name("www.example.com"), 443), NetVerdict::Allowed(&rules.allow[0]));
        assert_eq!(rules.decide(&name("secret.example.com"), 443), NetVerdict::Denied(&rules.deny[0]));
        assert_eq!(rules.decide(&name("api.example.net"), 443), NetVerdict::Denied(&rules.deny[1]));
        assert_eq!(rules.decide(&name("example.com"), 443), NetVerdict::NotAllowed);
        assert_eq!(rules.decide(&ip("192.0.2.7"), 443), NetVerdict::Allowed(&rules.allow[2]));
        assert_eq!(rules.decide(&ip("::ffff:192.0.2.7"), 80), NetVerdict::Allowed(&rules.allow[2]));
        assert_eq!(rules.decide(&ip("192.0.2.7"), 22), NetVerdict::NotAllowed);
        assert_eq!(rules.decide(&ip("192.0.2.8"), 443), NetVerdict::NotAllowed);
        assert_eq!(NetworkRules::default().decide(&name("example.com"), 443), NetVerdict::NotAllowed);
        // A deny rule without a port covers every port, not only 80 and 443.
        let ssh = NetworkRules {
            allow: vec![rule("*.example.com:22")],
            deny: vec![rule("secret.example.com")],
            ..Default::default()
        };
        assert_eq!(ssh.decide(&name("secret.example.com"), 22), NetVerdict::Denied(&ssh.deny[0]));
        assert_eq!(ssh.allows_host(&name("secret.example.com")), None);
        assert_eq!(ssh.allows_host(&name("www.example.com")), Some(&ssh.allow[0]));
        assert_eq!(rules.allows_host(&name("api.example.net")), None, "denied on its only port");
        assert_eq!(rules.allowed_ports(), vec![80, 443]);
        assert_eq!(ssh.allowed_ports(), vec![22]);
    }

    #[test]
    fn presets() {
        assert_eq!(Preset::all().len(), 6);
        for p in Preset::all() {
            assert_eq!(p.name().parse::<Preset>(), Ok(*p));
            assert!(!p.hosts().is_empty());
            for h in p.hosts() {
                let pattern = pat(h);
                assert_eq!(pattern.port, Some(443), "{h}");
                assert!(matches!(pattern.host, HostMatch::Exact(_)), "{h}");
                assert_eq!(pattern.to_string(), *h);
            }
        }
        assert_eq!(Preset::Npm.hosts(), ["registry.npmjs.org:443", "registry.yarnpkg.com:443", "repo.yarnpkg.com:443"]);
        assert_eq!(Preset::Pypi.hosts(), ["pypi.org:443", "files.pythonhosted.org:443"]);
        assert_eq!(Preset::Crates.hosts(), ["crates.io:443", "index.crates.io:443", "static.crates.io:443"]);
        assert_eq!(Preset::Github.hosts().len(), 6);
        assert!(Preset::Github.hosts().contains(&"release-assets.githubusercontent.com:443"));
        assert_eq!(Preset::Openai.hosts(), ["api.openai.com:443"]);
        assert_eq!(Preset::Anthropic.hosts(), ["api.anthropic.com:443"]);
        let e = "npmjs".parse::<Preset>().unwrap_err();
        assert_eq!(e, "unknown preset `npmjs`; use one of: npm, pypi, crates, github, openai, anthropic");
    }

    #[test]
    fn private_ranges() {
        for ok in ["10.0.0.0/8", "10.1.0.0/16", "172.16.0.0/12", "192.168.1.0/24", "100.64.0.0/10", "fd00::/8"] {
            assert_eq!(parse_private_range(ok).unwrap().to_string(), ok);
        }
        assert_eq!(parse_private_range("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_private_range("fd12::1").unwrap().to_string(), "fd12::1/128");
        for bad in ["8.8.8.0/24", "10.0.0.0/7", "127.0.0.0/8", "169.254.0.0/16", "172.32.0.0/12", "::ffff:10.0.0.0/104"]
        {
            let e = parse_private_range(bad).unwrap_err();
            assert!(e.contains("is not a private range"), "{bad}: {e}");
        }
        assert!(parse_private_range("10.1.2.3/8").unwrap_err().contains("write `10.0.0.0/8`"));
        assert!(parse_private_range("lan").unwrap_err().contains("not an address range"));
    }

    #[test]
    fn resolvers() {
        assert_eq!(parse_resolver("192.0.2.53").unwrap().to_string(), "192.0.2.53:53");
        assert_eq!(parse_resolver("192.0.2.53:5353").unwrap().to_string(), "192.0.2.53:5353");
        assert_eq!(parse_resolver("[2001:db8::53]:53").unwrap().to_string(), "[2001:db8::53]:53");
        assert_eq!(parse_resolver("[2001:db8::53]").unwrap().to_string(), "[2001:db8::53]:53");
        assert_eq!(parse_resolver("2001:db8::53").unwrap().to_string(), "[2001:db8::53]:53");
        assert!(parse_resolver("dns.example").unwrap_err().contains("not an IP address"));
        assert!(parse_resolver("192.0.2.53:0").unwrap_err().contains("1-65535"));
        assert!(parse_resolver("0.0.0.0").is_err());
        assert!(parse_resolver("[fe80::1%eth0]:53").is_err());
    }
}
