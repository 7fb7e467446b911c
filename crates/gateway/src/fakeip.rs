//! The sandbox's resolver answers an allowed name with an address from a private pool, one per
//! name for the whole run, IPv4 from 198.18.0.0/15 and IPv6 from fd72:696e:6766::/96; a
//! connection to such an address is a connection to that name. The pool never forgets a name
//! (an address handed out keeps meaning its name), so it is capped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IPv4 pool: 198.18.0.0/15 (reserved for benchmarks, routed nowhere).
const V4_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const V4_SIZE: u32 = 1 << 17;
/// The IPv6 pool's /96 prefix (a unique local address range: "rin" "gf" in ASCII).
const V6_PREFIX: [u8; 12] = [0xfd, 0x72, 0x69, 0x6e, 0x67, 0x66, 0, 0, 0, 0, 0, 0];
/// The most names one run may look up.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub const MAX_NAMES: usize = 65_536;

/// What an address means to the pool.
#[derive(Debug, PartialEq, Eq)]
pub enum Fake {
    /// Not in the pool: a real address.
    Real,
    /// In the pool, but never given out.
    Unknown,
    /// The address of this name.
    Name(String),
}

// Only Linux has the resolver that gives addresses out; elsewhere the pool stays empty.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Default)]
pub struct Pool {
    /// Index i-1 holds the name of addresses number i.
    names: Vec<String>,
    numbers: HashMap<String, u32>,
}

impl Pool {
    /// The IPv4 and IPv6 addresses of `name`, given out now if it had none; None when the pool
    /// is full.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn addresses(&mut self, name: &str) -> Option<(Ipv4Addr, Ipv6Addr)> {
        let number = match self.numbers.get(name) {
            Some(n) => *n,
            None if self.names.len() >= MAX_NAMES => return None,
            None => {
                self.names.push(name.to_string());
                let n = self.names.len() as u32;
                self.numbers.insert(name.to_string(), n);
                n
            }
        };
        let mut v6 = [0u8; 16];
        v6[..12].copy_from_slice(&V6_PREFIX);
        v6[12..].copy_from_slice(&number.to_be_bytes());
        Some((Ipv4Addr::from(V4_BASE + number), Ipv6Addr::from(v6)))
    }

    /// What `ip` (an IPv4-mapped address as its IPv4 address) stands for.
    pub fn lookup(&self, ip: IpAddr) -> Fake {
        let number = match ip.to_canonical() {
            IpAddr::V4(v4) => match u32::from(v4).checked_sub(V4_BASE) {
                Some(n) if n < V4_SIZE => n,
                _ => return Fake::Real,
            },
            IpAddr::V6(v6) if v6.octets()[..12] == V6_PREFIX => {
                u32::from_be_bytes(v6.octets()[12..].try_into().unwrap_or_default())
            }
            IpAddr::V6(_) => return Fake::Real,
        };
        match number.checked_sub(1).and_then(|i| self.names.get(i as usize)) {
            Some(name) => Fake::Name(name.clone()),
            None => Fake::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_stable_addresses_that_map_back() {
        let mut pool = Pool::default();
        let (a4, a6) = pool.addresses("a.test").unwrap();
        assert_eq!(a4, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(a6, "fd72:696e:6766::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(pool.addresses("a.test"), Some((a4, a6)));
        let (b4, _) = pool.addresses("b.test").unwrap();
        assert_eq!(b4, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(pool.lookup(a4.into()), Fake::Name("a.test".into()));
        assert_eq!(pool.lookup(a6.into()), Fake::Name("a.test".into()));
        assert_eq!(pool.lookup(IpAddr::V6(a4.to_ipv6_mapped())), Fake::Name("a.test".into()));
        assert_eq!(pool.lookup("198.18.0.3".parse().unwrap()), Fake::Unknown);
        assert_eq!(pool.lookup("198.18.0.0".parse().unwrap()), Fake::Unknown);
        assert_eq!(pool.lookup("198.19.255.255".parse().unwrap()), Fake::Unknown);
        assert_eq!(pool.lookup("fd72:696e:6766::9".parse().unwrap()), Fake::Unknown);
        assert_eq!(pool.lookup("198.20.0.1".parse().unwrap()), Fake::Real);
        assert_eq!(pool.lookup("192.0.2.10".parse().unwrap()), Fake::Real);
        assert_eq!(pool.lookup("fd72:696e:6767::1".parse().unwrap()), Fake::Real);
    }

    #[test]
    fn the_pool_is_capped() {
        let mut pool = Pool::default();
        for i in 0..MAX_NAMES {
            assert!(pool.addresses(&format!("n{i}.test")).is_some());
        }
        assert_eq!(pool.addresses("one-more.test"), None);
        assert!(pool.addresses("n7.test").is_some(), "known names keep their addresses");
        let last = pool.addresses(&format!("n{}.test", MAX_NAMES - 1)).unwrap().0;
        assert_eq!(pool.lookup(last.into()), Fake::Name(format!("n{}.test", MAX_NAMES - 1)));
    }
}
