//! The transparent path's TCP side: connections the sandbox made to any address, with no proxy
//! settings, land on a listener of the sandbox's namespace (every address is routed to its
//! loopback); the accepted socket's local address is where the command meant to connect. Each
//! goes through the same engine as the proxies: the name behind a fake address (or the address
//! itself), the rules for that port, resolution, the address guard, the dial. Then the first
//! bytes decide: a TLS ClientHello gets the tunnel's checks (its server name must be the
//! destination's), an HTTP request the Host check on every request; anything else passes only
//! to a port an allow rule names (`github.com:22`), which is the user's consent to protocols
//! the gateway can't read.

use crate::egress::Egress;
use crate::engine::{Connection, DenyReason, Proto};
use crate::proxy::{self, HANDSHAKE_TIMEOUT};
use ringfence_policy::Host;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How a connection's first bytes (or their absence) read.
#[derive(Debug, PartialEq, Eq)]
enum Opening {
    Tls,
    Http,
    Other,
    /// The server spoke first (SSH's banner, SMTP's greeting).
    ServerFirst,
    /// The client went away, or sent nothing in time on a port no rule names.
    Gone,
}

/// What the bytes so far say, or None when more are needed: TLS starts with a handshake
/// record, HTTP/1 with a method token (capital letters) and a space.
fn classify(bytes: &[u8]) -> Option<Opening> {
    const LONGEST_METHOD: usize = 16;
    match bytes {
        [] => None,
        [0x16, ..] => Some(Opening::Tls),
        _ => match bytes.iter().position(|b| !b.is_ascii_uppercase()) {
            Some(i) if i > 0 && bytes[i] == b' ' => Some(Opening::Http),
            Some(_) => Some(Opening::Other),
            None if bytes.len() > LONGEST_METHOD => Some(Opening::Other),
            None => None,
        },
    }
}

/// Serves one captured connection whose destination was `local`.
pub async fn serve(egress: Arc<Egress>, mut client: TcpStream, local: SocketAddr) {
    let engine = &egress.engine;
    let port = local.port();
    let Ok(host) = egress.destination(Proto::Tcp, local.ip(), port) else { return reset(&client) };
    let Ok(mut conn) = engine.open(Proto::Tcp, &host, port).await else { return reset(&client) };
    let mut pending = Vec::new();
    match opening(&mut client, &conn, &mut pending).await {
        Opening::Tls => proxy::tunnel(engine, client, pending, &host, conn).await,
        Opening::Http => {
            let upstream = Some(((host.clone(), port), conn));
            let check = |req: &crate::http::Request| proxy::checked_pinned_target(engine, req, &host, port);
            proxy::serve_requests(engine, Proto::Tcp, client, pending, upstream, check).await;
        }
        Opening::Other | Opening::ServerFirst if conn.named_port => opaque(client, pending, &mut conn).await,
        Opening::Other | Opening::ServerFirst => {
            let detail = format!(
                "the connection to {host}:{port} carries neither TLS nor HTTP; other protocols pass only to a \
                 port a rule names (to allow it: --allow-host {}:{port})",
                bracketed(&host)
            );
            conn.refuse(engine, DenyReason::NotNamedPort, detail);
            reset(&client);
        }
        Opening::Gone => {}
    }
}

fn bracketed(host: &Host) -> String {
    match host {
        Host::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        h => h.to_string(),
    }
}

/// Reads the client's first bytes into `pending` until they say what they are. Where the rule
/// names the port, the server may speak first; elsewhere the client must, within the
/// handshake time.
async fn opening(client: &mut TcpStream, conn: &Connection, pending: &mut Vec<u8>) -> Opening {
    let wait = if conn.named_port { Duration::from_secs(24 * 3600) } else { HANDSHAKE_TIMEOUT };
    let deadline = Instant::now() + wait;
    loop {
        if let Some(kind) = classify(pending) {
            return kind;
        }
        tokio::select! {
            read = proxy::read_more(client, pending, deadline) => match read {
                Ok(0) | Err(_) => return Opening::Gone,
                Ok(_) => {}
            },
            _ = conn.stream.readable(), if conn.named_port && pending.is_empty() => return Opening::ServerFirst,
        }
    }
}

/// Relays a connection to a port the rules name, whatever it carries.
async fn opaque(client: TcpStream, pending: Vec<u8>, conn: &mut Connection) {
    if !conn.relay(&client, &pending).await {
        // A connection that broke (a reset, say) on one side breaks on the other as well.
        reset(&client);
        reset(&conn.stream);
    }
}

/// Makes the connection end with a reset when it is closed, as a refusing or broken server's
/// would.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Accepts captured connections on one listener, at most `limit` at once with the proxies'.
pub async fn accept(listener: tokio::net::TcpListener, egress: Arc<Egress>, limit: Arc<tokio::sync::Semaphore>) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        let (client, local) = match listener.accept().await {
            Ok((client, _)) => match client.local_addr() {
                Ok(local) => (client, local),
                Err(_) => continue,
            },
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        crate::cap_buffers(&client);
        let egress = egress.clone();
        tokio::spawn(async move {
            serve(egress, client, local).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(&[0x16, 3, 1]), Some(Opening::Tls));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET / HTTP/1.1"), Some(Opening::Http));
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), Some(Opening::Http));
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), Some(Opening::Other));
        assert_eq!(classify(&[0, 0, 0, 8, 4, 210, 22, 47]), Some(Opening::Other));
        assert_eq!(classify(b" GET"), Some(Opening::Other));
        assert_eq!(classify(b"ABCDEFGHIJKLMNOPQ"), Some(Opening::Other));
    }
}
