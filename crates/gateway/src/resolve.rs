//! Name resolution for allowed names only: the system resolver (getaddrinfo) or a configured
//! DNS server. The sandbox has no resolver of its own, so a name the policy refuses never
//! leaves the machine as a query.

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long an answer is reused, at most (a server's shorter TTL wins).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Names kept at most: a sandbox resolving endless distinct names must not grow the supervisor.
const CACHE_ENTRIES: usize = 4096;
/// Per-attempt wait for a DNS server's reply.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_ATTEMPTS: usize = 3;
/// A lookup that takes longer than this has failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where names are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    System,
    Server(SocketAddr),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::System => f.write_str("system"),
            Upstream::Server(a) => write!(f, "{a}"),
        }
    }
}

/// A finished lookup, for the event stream.
pub struct Lookup {
    pub answers: Result<Vec<IpAddr>, String>,
    pub duration: Duration,
    /// False when the answer came from the cache (no query was sent).
    pub fresh: bool,
}

pub struct Resolver {
    upstream: Upstream,
    cache: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
}

impl Resolver {
    pub fn new(upstream: Upstream) -> Self {
        Resolver { upstream, cache: Mutex::new(HashMap::new()) }
    }

    pub fn upstream(&self) -> Upstream {
        self.upstream
    }

    /// The addresses of `name` (already validated and allowed), IPv4 first.
    pub async fn lookup(&self, name: &str) -> Lookup {
        let started = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((expires, addrs)) = cache.get(name) {
                if Instant::now() < *expires {
                    return Lookup { answers: Ok(addrs.clone()), duration: started.elapsed(), fresh: false };
                }
            }
        }
        let result = match tokio::time::timeout(LOOKUP_TIMEOUT, self.query(name)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs())),
        };
        let answers = result.and_then(|(mut addrs, ttl)| {
            if addrs.is_empty() {
                return Err("the name has no addresses".to_string());
            }
            addrs.sort_by_key(|a| a.is_ipv6());
            addrs.dedup();
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_ENTRIES {
                let now = Instant::now();
                cache.retain(|_, (expires, _)| *expires > now);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(name.to_string(), (Instant::now() + ttl.min(CACHE_TTL), addrs.clone()));
            Ok(addrs)
        });
        Lookup { answers, duration: started.elapsed(), fresh: true }
    }

    async fn query(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        match self.upstream {
            Upstream::System => {
                // As an absolute name: the resolver's search list must not turn an allowed
                // `api.example.com` into `api.example.com.corp.example`, a host nobody allowed.
                // The hosts file doesn't match absolute names, so it is read here.
                let absolute: Result<Vec<IpAddr>, String> = tokio::net::lookup_host((format!("{name}."), 0))
                    .await
                    .map(|addrs| addrs.map(|a| a.ip()).collect())
                    .map_err(|e| e.to_string());
                match absolute {
                    Ok(addrs) if !addrs.is_empty() => Ok((addrs, CACHE_TTL)),
                    other => {
                        let listed = hosts_file_entries(name);
                        if listed.is_empty() {
                            other.map(|addrs| (addrs, CACHE_TTL))
                        } else {
                            Ok((listed, CACHE_TTL))
                        }
                    }
                }
            }
            Upstream::Server(server) => {
                let (v4, v6) = tokio::join!(ask(server, name, RecordType::A), ask(server, name, RecordType::AAAA));
                match (v4, v6) {
                    (Err(e), Err(_)) => Err(e),
                    (a, b) => {
                        let (mut addrs, mut ttl) = (Vec::new(), CACHE_TTL);
                        for (list, t) in [a, b].into_iter().flatten() {
                            addrs.extend(list);
                            ttl = ttl.min(t);
                        }
                        Ok((addrs, ttl))
                    }
                }
            }
        }
    }
}

/// The machine's hosts file.
fn hosts_file() -> std::path::PathBuf {
    #[cfg(windows)]
    return std::path::PathBuf::from(std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into()))
        .join("System32\\drivers\\etc\\hosts");
    #[cfg(not(windows))]
    return std::path::PathBuf::from("/etc/hosts");
}

/// The addresses the hosts file gives `name` (compared without case).
fn hosts_file_entries(name: &str) -> Vec<IpAddr> {
    std::fs::read_to_string(hosts_file()).map(|text| hosts_entries(&text, name)).unwrap_or_default()
}

fn hosts_entries(text: &str, name: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            words.any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect()
}

fn random_id() -> u16 {
    std::collections::hash_map::RandomState::new().build_hasher().finish() as u16
}

/// One question to a DNS server: UDP with retries, then TCP if the answer was truncated.
async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Result<(Vec<IpAddr>, Duration), String> {
    let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| format!("{name}: {e}"))?;
    let id = random_id();
    let mut msg = Message::new();
    msg.set_id(id).set_recursion_desired(true).add_query(Query::query(fqdn.clone(), kind));
    let wire = msg.to_vec().map_err(|e| e.to_string())?;
    let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| format!("{server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut last = format!("{server}: no answer");
    for _ in 0..QUERY_ATTEMPTS {
        sock.send(&wire).await.map_err(|e| format!("{server}: {e}"))?;
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    last = format!("{server}: {e}");
                    break;
                }
                Ok(Ok(n)) => n,
            };
            // Anything that doesn't answer our question is someone else's packet: keep waiting.
            let Some(reply) = parse_reply(&buf[..n], id, &fqdn, kind) else { continue };
            if reply.truncated() {
                return ask_tcp(server, &wire, id, &fqdn, kind).await;
            }
            return answers(&reply, kind);
        }
    }
    Err(last)
}

async fn ask_tcp(
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    fqdn: &Name,
    kind: RecordType,
) -> Result<(Vec<IpAddr>, Duration), String> {
    let fail = |e: std::io::Error| format!("{server} (TCP): {e}");
    let mut stream = tokio::time::timeout(QUERY_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| format!("{server} (TCP): timed out"))?
        .map_err(fail)?;
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    stream.write_all(&framed).await.map_err(fail)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(fail)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.map_err(fail)?;
    let reply = parse_reply(&buf, id, fqdn, kind).ok_or_else(|| format!("{server} (TCP): a malformed answer"))?;
    answers(&reply, kind)
}

fn parse_reply(buf: &[u8], id: u16, fqdn: &Name, kind: RecordType) -> Option<Message> {
    let reply = Message::from_vec(buf).ok()?;
    let ours = reply.id() == id
        && reply.message_type() == MessageType::Response
        && reply.queries().len() == 1
        && reply.queries()[0].name().eq_case(fqdn)
        && reply.queries()[0].query_type() == kind;
    ours.then_some(reply)
}

fn answers(reply: &Message, kind: RecordType) -> Result<(Vec<IpAddr>, Duration), String> {
    match reply.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err("no such name (NXDOMAIN)".into()),
        code => return Err(format!("the DNS server answered {code}")),
    }
    let mut ttl = CACHE_TTL;
    let mut addrs = Vec::new();
    for record in reply.answers() {
        let ip = match (record.data(), kind) {
            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
            (RData::AAAA(a), RecordType::AAAA) => IpAddr::V6(a.0),
            _ => continue,
        };
        ttl = ttl.min(Duration::from_secs(record.ttl().into()));
        addrs.push(ip);
    }
    Ok((addrs, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines() {
        let text = "127.0.0.1 localhost\n# 10.0.0.1 commented.example\n192.0.2.7  Registry.Example reg # note\n\
                    2001:db8::7 registry.example\nnot-an-ip registry.example\n";
        let want: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        assert_eq!(hosts_entries(text, "registry.example"), want);
        assert_eq!(hosts_entries(text, "reg"), want[..1].to_vec());
        assert!(hosts_entries(text, "commented.example").is_empty());
        assert!(hosts_entries(text, "example").is_empty());
    }
}
