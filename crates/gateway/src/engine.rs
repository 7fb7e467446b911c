//! The decisions every proxy protocol shares: the policy's verdict, resolution of allowed
//! names only, the address guard, dialling the address that was checked, and the events.

use crate::guard::Guard;
use crate::resolve::{Resolver, Upstream};
use crate::EventSink;
use ringfence_audit::EventBody;
use ringfence_policy::{Host, NetVerdict, NetworkRules};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long one dial may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// Only Linux has the transparent path, the resolver and the UDP tap.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    HttpConnect,
    Http,
    Socks5,
    /// A TCP connection the transparent path captured.
    Tcp,
    /// A question to the sandbox's resolver.
    Dns,
    /// A UDP datagram other than DNS (dropped).
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::HttpConnect => "http-connect",
            Proto::Http => "http",
            Proto::Socks5 => "socks5",
            Proto::Tcp => "tcp",
            Proto::Dns => "dns",
            Proto::Udp => "udp",
        }
    }
}

/// Why a destination is refused; `name` is the event's `reason`.
// Only Linux has the transparent path and the UDP tap.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    NotAllowed,
    Denied,
    AddressGuard,
    SniMismatch,
    NoSni,
    NotTls,
    HostMismatch,
    BadRequest,
    /// A transparent connection to a port no rule names, carrying neither TLS nor HTTP.
    NotNamedPort,
    /// An address the sandbox's resolver never gave out, in its pool of fake addresses.
    UnknownFake,
    /// UDP other than DNS.
    Udp,
}

impl DenyReason {
    pub fn name(self) -> &'static str {
        match self {
            DenyReason::NotAllowed => "not-allowed",
            DenyReason::Denied => "denied",
            DenyReason::AddressGuard => "address-guard",
            DenyReason::SniMismatch => "sni-mismatch",
            DenyReason::NoSni => "no-sni",
            DenyReason::NotTls => "not-tls",
            DenyReason::HostMismatch => "host-mismatch",
            DenyReason::BadRequest => "bad-request",
            DenyReason::NotNamedPort => "port-not-named",
            DenyReason::UnknownFake => "unknown-address",
            DenyReason::Udp => "udp",
        }
    }
}

/// Why no connection was made.
#[derive(Debug)]
pub enum Refusal {
    /// The policy (or a protocol check) refused; already recorded as net.deny.
    Denied { reason: DenyReason, detail: String },
    /// An allowed name did not resolve.
    Unresolved(String),
    /// No allowed address answered.
    Unreachable(std::io::Error),
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Denied { detail, .. } => format!("ringfence: {detail}"),
            Refusal::Unresolved(e) => format!("ringfence: could not resolve the name: {e}"),
            Refusal::Unreachable(e) => format!("ringfence: could not connect: {e}"),
        }
    }
}

/// One connection made for the sandbox; recorded as net.connect when it is dropped, so
/// nothing is lost when the run ends with the connection still open.
pub struct Connection {
    pub stream: TcpStream,
    proto: Proto,
    host: Host,
    port: u16,
    addr: SocketAddr,
    rule: String,
    /// The allow rule names the port: the user's consent to protocols other than TLS and HTTP.
    pub named_port: bool,
    started: Instant,
    pub up: u64,
    pub down: u64,
    pub error: Option<String>,
    /// Set when a protocol check refused the connection after it was made (net.deny instead).
    refused: bool,
    sink: EventSink,
}

impl Connection {
    /// Relays `client` and the server both ways until both have closed, `pending` (what the
    /// client sent before the checks let it through) first; counts the bytes, and keeps the
    /// error when a side broke. Whether both ends closed cleanly.
    pub async fn relay(&mut self, client: &TcpStream, pending: &[u8]) -> bool {
        let Connection { stream, up, down, error, .. } = self;
        let server = &*stream;
        let to_server = async {
            crate::relay::write_all(server, pending).await?;
            *up += pending.len() as u64;
            crate::relay::pump(client, server, up).await
        };
        let to_client = crate::relay::pump(server, client, down);
        match tokio::try_join!(to_server, to_client) {
            Ok(_) => true,
            Err(e) => {
                *error = Some(e.to_string());
                false
            }
        }
    }

    /// Records the refusal instead of a connection.
    pub fn refuse(mut self, engine: &Engine, reason: DenyReason, detail: String) -> Refusal {
        self.refused = true;
        engine.deny(self.proto, &self.host, self.port, reason, detail, Some(self.rule.clone()), Some(self.addr))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.refused {
            return;
        }
        (self.sink)(EventBody::NetConnect {
            proto: self.proto.name().into(),
            host: self.host.to_string(),
            port: self.port,
            addr: self.addr.to_string(),
            rule: std::mem::take(&mut self.rule),
            bytes_up: self.up,
            bytes_down: self.down,
            duration_ms: self.started.elapsed().as_millis() as u64,
            error: self.error.take(),
        });
    }
}

pub struct Engine {
    rules: NetworkRules,
    guard: Guard,
    resolver: Resolver,
    sink: EventSink,
}

impl Engine {
    pub fn new(rules: NetworkRules, sink: EventSink) -> Self {
        let upstream = rules.resolver.as_ref().map_or(Upstream::System, |(a, _)| Upstream::Server(*a));
        let guard = Guard::new(rules.allow_private.iter().map(|(n, _)| *n).collect());
        Engine { rules, guard, resolver: Resolver::new(upstream), sink }
    }

    /// Records a refusal as net.deny and returns it.
    #[allow(clippy::too_many_arguments)]
    pub fn deny(
        &self,
        proto: Proto,
        host: &Host,
        port: u16,
        reason: DenyReason,
        detail: String,
        rule: Option<String>,
        addr: Option<SocketAddr>,
    ) -> Refusal {
        (self.sink)(EventBody::NetDeny {
            proto: proto.name().into(),
            host: host.to_string(),
            port,
            reason: reason.name().into(),
            detail: detail.clone(),
            rule,
            addr: addr.map(|a| a.to_string()),
        });
        Refusal::Denied { reason, detail }
    }

    /// A request the gateway could not parse, recorded with what is known of it.
    pub fn bad_request(&self, proto: Proto, detail: String) -> Refusal {
        (self.sink)(EventBody::NetDeny {
            proto: proto.name().into(),
            host: String::new(),
            port: 0,
            reason: DenyReason::BadRequest.name().into(),
            detail: detail.clone(),
            rule: None,
            addr: None,
        });
        Refusal::Denied { reason: DenyReason::BadRequest, detail }
    }

    /// Decides, resolves, guards and dials `host:port` for the sandbox.
    pub async fn open(&self, proto: Proto, host: &Host, port: u16) -> Result<Connection, Refusal> {
        let (rule, named_port) = self.allowing_rule(proto, host, port)?;
        let permitted = self.permitted_addresses(proto, host, port, &rule).await?;
        let mut conn = self.dial(proto, host, port, rule, permitted).await?;
        conn.named_port = named_port;
        Ok(conn)
    }

    #[cfg(target_os = "linux")]
    pub fn rules(&self) -> &NetworkRules {
        &self.rules
    }

    /// The allow rule (its pattern, and whether it names the port) that lets the sandbox reach
    /// `host:port`, or the refusal, recorded.
    pub fn allowing_rule(&self, proto: Proto, host: &Host, port: u16) -> Result<(String, bool), Refusal> {
        match self.rules.decide(host, port) {
            NetVerdict::Allowed(rule) => Ok((rule.pattern.to_string(), rule.pattern.port.is_some())),
            NetVerdict::Denied(rule) => {
                let detail = format!("{host}:{port} is refused by the deny rule `{}` ({})", rule.pattern, rule.origin);
                Err(self.deny(proto, host, port, DenyReason::Denied, detail, Some(rule.pattern.to_string()), None))
            }
            NetVerdict::NotAllowed => {
                let hint = match host {
                    Host::Ip(IpAddr::V6(ip)) => format!("--allow-host '[{ip}]:{port}'"),
                    Host::Ip(ip) => format!("--allow-host {ip}:{port}"),
                    Host::Name(name) => format!("--allow-host {name}"),
                };
                let what = if matches!(host, Host::Ip(_)) {
                    "an IP address is reachable only when listed"
                } else {
                    "it is not in the network allow list"
                };
                let detail = format!("{host}:{port} is not allowed: {what} (to allow it: {hint})");
                Err(self.deny(proto, host, port, DenyReason::NotAllowed, detail, None, None))
            }
        }
    }

    /// The addresses of `host` (the address itself, when it is one) that pass the address
    /// guard; none is a refusal, recorded.
    async fn permitted_addresses(
        &self,
        proto: Proto,
        host: &Host,
        port: u16,
        rule: &str,
    ) -> Result<Vec<IpAddr>, Refusal> {
        let (candidates, listed) = match host {
            Host::Ip(ip) => (vec![*ip], true),
            Host::Name(name) => (self.resolve(name).await?, false),
        };
        let mut permitted = Vec::new();
        let mut guarded = Vec::new();
        for ip in candidates {
            match self.guard.check(ip, listed) {
                Ok(()) => permitted.push(ip),
                Err(why) => guarded.push((ip, why)),
            }
        }
        if !permitted.is_empty() {
            return Ok(permitted);
        }
        let Some(&(ip, why)) = guarded.first() else {
            return Err(Refusal::Unresolved(format!("{host}: no addresses")));
        };
        let detail = format!(
            "{host}:{port} is refused: it {} {ip}, {}",
            if listed { "is" } else { "resolves to" },
            why.describe()
        );
        let addr = Some(SocketAddr::new(ip, port));
        Err(self.deny(proto, host, port, DenyReason::AddressGuard, detail, Some(rule.to_string()), addr))
    }

    /// Connects to the first of `addresses` that answers; each that does not is recorded.
    async fn dial(
        &self,
        proto: Proto,
        host: &Host,
        port: u16,
        rule: String,
        addresses: Vec<IpAddr>,
    ) -> Result<Connection, Refusal> {
        let started = Instant::now();
        let mut last = std::io::Error::other("no address");
        for ip in addresses {
            let addr = SocketAddr::new(ip, port);
            let dialled = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")),
            };
            match dialled {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    crate::cap_buffers(&stream);
                    return Ok(Connection {
                        stream,
                        proto,
                        host: host.clone(),
                        port,
                        addr,
                        rule,
                        named_port: false,
                        started,
                        up: 0,
                        down: 0,
                        error: None,
                        refused: false,
                        sink: self.sink.clone(),
                    });
                }
                Err(e) => {
                    (self.sink)(EventBody::NetConnect {
                        proto: proto.name().into(),
                        host: host.to_string(),
                        port,
                        addr: addr.to_string(),
                        rule: rule.clone(),
                        bytes_up: 0,
                        bytes_down: 0,
                        duration_ms: started.elapsed().as_millis() as u64,
                        error: Some(e.to_string()),
                    });
                    last = e;
                }
            }
        }
        Err(Refusal::Unreachable(last))
    }

    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Refusal> {
        let lookup = self.resolver.lookup(name).await;
        if lookup.fresh {
            (self.sink)(EventBody::NetDns {
                name: name.to_string(),
                resolver: self.resolver.upstream().to_string(),
                answers: lookup.answers.iter().flatten().map(|a| a.to_string()).collect(),
                duration_ms: lookup.duration.as_millis() as u64,
                error: lookup.answers.as_ref().err().cloned(),
            });
        }
        lookup.answers.map_err(|e| Refusal::Unresolved(format!("{name}: {e}")))
    }
}
