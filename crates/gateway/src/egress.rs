//! What the explicit proxies, the transparent path, the sandbox's resolver and the early
//! connect(2) decision share: the engine (rules, resolver, address guard, events) and the pool
//! of fake addresses that maps a connection's destination back to the name it was looked up by.

use crate::engine::{DenyReason, Engine, Proto, Refusal};
use crate::fakeip::{Fake, Pool};
use crate::EventSink;
use ringfence_policy::{Host, NetworkRules, DNS_PORT};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

/// The gateway's shared state for one run.
pub struct Egress {
    pub(crate) engine: Engine,
    pool: Mutex<Pool>,
    /// The ports the transparent path listens on.
    captured: Vec<u16>,
}

impl Egress {
    /// The state for a run under `rules` (where there is a transparent path, it listens on
    /// their captured ports); events go to `sink`.
    pub fn new(rules: NetworkRules, sink: EventSink) -> Arc<Egress> {
        let captured = rules.captured_ports();
        Arc::new(Egress { engine: Engine::new(rules, sink), pool: Mutex::default(), captured })
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fake addresses of an allowed name; None when the pool is full.
    // Only Linux has the resolver that gives them out; elsewhere the pool stays empty.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn fake_addresses(&self, name: &str) -> Option<(Ipv4Addr, Ipv6Addr)> {
        self.pool().addresses(name)
    }

    /// The destination a command meant by `ip`: the name behind a fake address, or the address.
    /// An address of the pool that was never given out is refused, recorded.
    pub(crate) fn destination(&self, proto: Proto, ip: IpAddr, port: u16) -> Result<Host, Refusal> {
        let ip = ip.to_canonical();
        match self.pool().lookup(ip) {
            Fake::Real => Ok(Host::Ip(ip)),
            Fake::Name(name) => Ok(Host::Name(name)),
            Fake::Unknown => {
                let detail = format!(
                    "{ip}:{port} is refused: the address is in the sandbox resolver's pool but was never given out"
                );
                let addr = Some(SocketAddr::new(ip, port));
                Err(self.engine.deny(proto, &Host::Ip(ip), port, DenyReason::UnknownFake, detail, None, addr))
            }
        }
    }

    /// The early decision on a TCP connection to `to` (from connect(2), before any packet):
    /// the sandbox's own loopback and the resolver pass; anything else must be a destination a
    /// rule allows on a port the transparent path listens on. A refusal is recorded as net.deny
    /// naming the destination (the name behind a fake address).
    pub fn judge(&self, to: SocketAddr) -> bool {
        let ip = to.ip().to_canonical();
        let port = to.port();
        if ip.is_unspecified() || port == DNS_PORT || (ip.is_loopback() && !self.captured.contains(&port)) {
            return true;
        }
        let Ok(host) = self.destination(Proto::Tcp, ip, port) else { return false };
        if self.engine.allowing_rule(Proto::Tcp, &host, port).is_err() {
            return false;
        }
        if self.captured.contains(&port) {
            return true;
        }
        let detail = format!(
            "{host}:{port} is refused: port {port} is the explicit proxy's on the sandbox's loopback; \
             use the proxy (HTTPS_PROXY) to reach it"
        );
        self.engine.deny(Proto::Tcp, &host, port, DenyReason::NotAllowed, detail, None, Some(to));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_audit::EventBody;
    use ringfence_policy::{HostPattern, HostRule, Origin};

    fn egress(allow: &[&str], events: Arc<Mutex<Vec<EventBody>>>) -> Arc<Egress> {
        let rule = |s: &str| HostRule { pattern: HostPattern::parse(s).unwrap(), origin: Origin::flag(s.to_string()) };
        let rules = NetworkRules { allow: allow.iter().map(|s| rule(s)).collect(), ..Default::default() };
        Egress::new(rules, Arc::new(move |e| events.lock().unwrap().push(e)))
    }

    #[test]
    fn connects_are_judged_by_the_name_behind_the_address() {
        let events = Arc::default();
        let egress = egress(&["a.test", "b.test:22", "10.1.0.0/16:5432"], Arc::clone(&events));
        let (a4, a6) = egress.fake_addresses("a.test").unwrap();
        let (b4, _) = egress.fake_addresses("b.test").unwrap();
        let at = |ip: IpAddr, port: u16| SocketAddr::new(ip, port);
        assert!(egress.judge(at(a4.into(), 443)));
        assert!(egress.judge(at(a6.into(), 80)));
        assert!(!egress.judge(at(a4.into(), 22)), "a.test has no rule for port 22");
        assert!(egress.judge(at(b4.into(), 22)));
        assert!(!egress.judge(at(b4.into(), 443)));
        assert!(egress.judge(at("10.1.2.3".parse().unwrap(), 5432)));
        assert!(!egress.judge(at("192.0.2.10".parse().unwrap(), 443)), "an address needs its own rule");
        assert!(!egress.judge(at("198.18.0.9".parse().unwrap(), 443)), "never given out");
        assert!(egress.judge(at("127.0.0.1".parse().unwrap(), 8080)), "the sandbox's own loopback");
        assert!(!egress.judge(at("127.0.0.1".parse().unwrap(), 443)), "a captured port on loopback is egress");
        assert!(egress.judge(at("192.0.2.53".parse().unwrap(), 53)), "the resolver");
        let events = events.lock().unwrap();
        let denied: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                EventBody::NetDeny { host, port, reason, .. } => Some(format!("{host}:{port} {reason}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            denied,
            [
                "a.test:22 not-allowed",
                "b.test:443 not-allowed",
                "192.0.2.10:443 not-allowed",
                "198.18.0.9:443 unknown-address",
                "127.0.0.1:443 not-allowed"
            ]
        );
    }
}
