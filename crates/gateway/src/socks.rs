//! SOCKS5 (RFC 1928) messages: the method greeting and the CONNECT request. No authentication
//! methods are offered: the proxy listens inside the sandbox only.

use ringfence_policy::Host;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const VERSION: u8 = 5;
pub const NO_AUTH: u8 = 0;
pub const NO_ACCEPTABLE_METHOD: u8 = 0xff;

/// Reply codes.
pub const SUCCEEDED: u8 = 0;
pub const GENERAL_FAILURE: u8 = 1;
pub const NOT_ALLOWED: u8 = 2;
pub const NETWORK_UNREACHABLE: u8 = 3;
pub const HOST_UNREACHABLE: u8 = 4;
pub const CONNECTION_REFUSED: u8 = 5;
pub const TTL_EXPIRED: u8 = 6;
pub const COMMAND_NOT_SUPPORTED: u8 = 7;
pub const ADDRESS_NOT_SUPPORTED: u8 = 8;

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    Incomplete,
    Done(T, usize),
    /// Not SOCKS5: close the connection.
    Invalid(&'static str),
    /// A well-formed request the gateway refuses with this reply code.
    Refuse(u8, &'static str, usize),
}

/// The greeting: whether the client offers "no authentication".
pub fn parse_greeting(buf: &[u8]) -> Parsed<bool> {
    match buf {
        [] | [_] => Parsed::Incomplete,
        [v, ..] if *v != VERSION => Parsed::Invalid("not SOCKS version 5"),
        [_, 0, ..] => Parsed::Invalid("a greeting without methods"),
        [_, n, methods @ ..] if methods.len() >= *n as usize => {
            Parsed::Done(methods[..*n as usize].contains(&NO_AUTH), 2 + *n as usize)
        }
        _ => Parsed::Incomplete,
    }
}

/// The request: a CONNECT to a host and port.
pub fn parse_request(buf: &[u8]) -> Parsed<(Host, u16)> {
    let [v, cmd, _rsv, atyp, rest @ ..] = buf else { return Parsed::Incomplete };
    if *v != VERSION {
        return Parsed::Invalid("not SOCKS version 5");
    }
    let (host, used) = match *atyp {
        1 => match rest {
            [a, b, c, d, ..] => (Ok(Host::Ip(Ipv4Addr::new(*a, *b, *c, *d).into())), 4),
            _ => return Parsed::Incomplete,
        },
        4 => match rest.get(..16) {
            Some(o) => (Ok(Host::Ip(Ipv6Addr::from(<[u8; 16]>::try_from(o).unwrap_or_default()).into())), 16),
            None => return Parsed::Incomplete,
        },
        3 => match rest {
            [0, ..] => return Parsed::Invalid("an empty host name"),
            [n, name @ ..] if name.len() >= *n as usize => {
                let name = &name[..*n as usize];
                (std::str::from_utf8(name).map_err(|_| ()).and_then(|s| Host::parse(s).map_err(|_| ())), 1 + name.len())
            }
            _ => return Parsed::Incomplete,
        },
        _ => return Parsed::Invalid("an unknown address type"),
    };
    let Some(port) = rest.get(used..used + 2) else { return Parsed::Incomplete };
    let total = 4 + used + 2;
    let port = u16::from_be_bytes([port[0], port[1]]);
    if *cmd != 1 {
        return Parsed::Refuse(COMMAND_NOT_SUPPORTED, "only CONNECT is supported (not BIND or UDP ASSOCIATE)", total);
    }
    match host {
        Ok(_) if port == 0 => Parsed::Refuse(ADDRESS_NOT_SUPPORTED, "port 0", total),
        Ok(h) => Parsed::Done((h, port), total),
        Err(()) => Parsed::Refuse(ADDRESS_NOT_SUPPORTED, "not a valid host name", total),
    }
}

/// A reply with an empty bound address: the gateway's own addresses are none of the sandbox's business.
pub fn reply(code: u8) -> [u8; 10] {
    [VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert_eq!(parse_greeting(&[5, 2, 2, 0]), Parsed::Done(true, 4));
        assert_eq!(parse_greeting(&[5, 1, 2]), Parsed::Done(false, 3));
        assert_eq!(parse_greeting(&[5, 2, 0]), Parsed::Incomplete);
        assert!(matches!(parse_greeting(&[4, 1, 0]), Parsed::Invalid(_)));
        assert!(matches!(parse_greeting(b"GET / HTTP/1.1"), Parsed::Invalid(_)));
    }

    #[test]
    fn requests() {
        let mut name = vec![5, 1, 0, 3, 11];
        name.extend(b"Example.COM");
        name.extend([1, 187]);
        assert_eq!(parse_request(&name), Parsed::Done((Host::Name("example.com".into()), 443), name.len()));
        assert_eq!(parse_request(&name[..name.len() - 1]), Parsed::Incomplete);
        let v4 = [5, 1, 0, 1, 192, 0, 2, 7, 0, 80];
        assert_eq!(parse_request(&v4), Parsed::Done((Host::Ip("192.0.2.7".parse().unwrap()), 80), 10));
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend([0, 80]);
        assert!(matches!(parse_request(&v6), Parsed::Done((Host::Ip(_), 80), 22)));
        assert!(matches!(
            parse_request(&[5, 3, 0, 1, 1, 2, 3, 4, 0, 53]),
            Parsed::Refuse(COMMAND_NOT_SUPPORTED, _, 10)
        ));
        assert!(matches!(parse_request(&[5, 1, 0, 9, 1]), Parsed::Invalid(_)));
        let mut bad = vec![5, 1, 0, 3, 3];
        bad.extend(b"a b");
        bad.extend([0, 80]);
        assert!(matches!(parse_request(&bad), Parsed::Refuse(ADDRESS_NOT_SUPPORTED, _, _)));
    }
}
