//! The two proxies the sandbox talks to: HTTP (CONNECT and absolute-form requests) and SOCKS5.
//! Both end in the same engine, and both check that a tunnel carries TLS for the allowed name.

use crate::chunked::Chunked;
use crate::engine::{Connection, DenyReason, Engine, Proto, Refusal};
use crate::http::{self, Body, HeadError, Request};
use crate::relay;
use crate::socks::{self, Parsed};
use crate::tls::{self, Hello};
use ringfence_policy::Host;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Time a client has to send a complete request head, SOCKS handshake or ClientHello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a server has to answer a checked ClientHello.
const SERVER_HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a kept-alive HTTP client connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Buffer for each direction of a relay.
const RELAY_BUFFER: usize = 128 * 1024;

/// Reads more bytes into `buf`; Ok(0) at end of stream, Err on timeout or error.
pub async fn read_more<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<usize> {
    let mut chunk = [0u8; 8192];
    match timeout_at(deadline, r.read(&mut chunk)).await {
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

pub enum HeadRead {
    Request(Request),
    /// The client closed (or idled out) between requests.
    Closed,
    TimedOut,
    Bad(HeadError),
}

/// Reads a request head: the client gets `idle` for its first byte, then HANDSHAKE_TIMEOUT
/// for the rest, so a slow client can't hold a connection open with a trickle.
pub async fn read_request<R: AsyncRead + Unpin>(client: &mut R, buf: &mut Vec<u8>, idle: Duration) -> HeadRead {
    let idle_deadline = Instant::now() + idle;
    let mut head_deadline = (!buf.is_empty()).then(|| Instant::now() + HANDSHAKE_TIMEOUT);
    loop {
        match http::parse_request(buf) {
            Ok(Some(req)) => return HeadRead::Request(req),
            Ok(None) => {}
            Err(e) => return HeadRead::Bad(e),
        }
        match read_more(client, buf, head_deadline.unwrap_or(idle_deadline)).await {
            Ok(0) => return HeadRead::Closed,
            Ok(_) => {
                head_deadline.get_or_insert_with(|| Instant::now() + HANDSHAKE_TIMEOUT);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !buf.is_empty() => return HeadRead::TimedOut,
            Err(_) => return HeadRead::Closed,
        }
    }
}

/// The HTTP response for a refusal.
fn refusal_response(refusal: &Refusal) -> Vec<u8> {
    let body = format!("{}\n", refusal.message());
    match refusal {
        Refusal::Denied { reason: DenyReason::BadRequest, .. } => {
            http::gateway_response(400, "Bad Request", &[("X-Ringfence-Deny", "bad-request")], &body)
        }
        Refusal::Denied { reason, .. } => {
            http::gateway_response(403, "Forbidden", &[("X-Ringfence-Deny", reason.name())], &body)
        }
        Refusal::Unresolved(_) => {
            http::gateway_response(502, "Bad Gateway", &[("X-Ringfence-Error", "resolve-failed")], &body)
        }
        Refusal::Unreachable(e) if e.kind() == io::ErrorKind::TimedOut => {
            http::gateway_response(504, "Gateway Timeout", &[("X-Ringfence-Error", "connect-failed")], &body)
        }
        Refusal::Unreachable(_) => {
            http::gateway_response(502, "Bad Gateway", &[("X-Ringfence-Error", "connect-failed")], &body)
        }
    }
}

fn head_refusal(engine: &Engine, e: HeadError) -> Vec<u8> {
    match e {
        HeadError::TooLarge => {
            engine.bad_request(Proto::Http, format!("a request head over {} KiB", http::HEAD_LIMIT / 1024));
            http::gateway_response(
                431,
                "Request Header Fields Too Large",
                &[("X-Ringfence-Deny", "bad-request")],
                "ringfence: the request head is too large\n",
            )
        }
        HeadError::Malformed(why) => {
            refusal_response(&engine.bad_request(Proto::Http, format!("a malformed request: {why}")))
        }
    }
}

/// A connection to the origin, kept alive between requests to the same host and port.
pub type Upstream = Option<((Host, u16), Connection)>;

/// A request's destination, origin-form path and body, once the request is found sound.
pub struct Target {
    host: Host,
    port: u16,
    path: String,
    body: Body,
}

/// Serves one client of the HTTP proxy until it closes.
pub async fn serve_http(engine: &Engine, client: TcpStream) {
    serve_requests(engine, Proto::Http, client, Vec::new(), None, |req| checked_target(engine, req)).await;
}

/// Serves the requests of one client connection, each checked by `check`, on `upstream`
/// (opened anew when it can't carry the next one). A CONNECT opens a tunnel on the proxy.
pub async fn serve_requests(
    engine: &Engine,
    proto: Proto,
    mut client: TcpStream,
    mut buf: Vec<u8>,
    mut upstream: Upstream,
    check: impl Fn(&Request) -> Result<Target, Refusal>,
) {
    let mut idle = HANDSHAKE_TIMEOUT;
    loop {
        let req = match read_request(&mut client, &mut buf, idle).await {
            HeadRead::Request(r) => r,
            HeadRead::Closed => return,
            HeadRead::TimedOut => {
                engine.bad_request(proto, "the request head did not arrive in time".into());
                let body = "ringfence: the request head did not arrive in time\n";
                let _ = client.write_all(&http::gateway_response(408, "Request Timeout", &[], body)).await;
                return;
            }
            HeadRead::Bad(e) => {
                let _ = client.write_all(&head_refusal(engine, e)).await;
                return;
            }
        };
        idle = IDLE_TIMEOUT;
        buf.drain(..req.len);
        if req.method.eq_ignore_ascii_case("CONNECT") && proto == Proto::Http {
            drop(upstream.take());
            connect(engine, client, req, buf).await;
            return;
        }
        let forwarded = match check(&req) {
            Ok(target) => forward(engine, proto, &mut client, &req, target, &mut buf, &mut upstream).await,
            Err(refusal) => Err(refusal),
        };
        match forwarded {
            Ok(true) => {}
            Ok(false) => return,
            Err(refusal) => {
                let _ = client.write_all(&refusal_response(&refusal)).await;
                return;
            }
        }
    }
}

/// CONNECT host:port: a tunnel, once the ClientHello names the same host.
async fn connect(engine: &Engine, mut client: TcpStream, req: Request, pending: Vec<u8>) {
    let target = match http::parse_authority(&req.target, None) {
        Ok(t) => t,
        Err(e) => {
            let refusal = engine.bad_request(Proto::HttpConnect, format!("CONNECT {}: {e}", req.target));
            let _ = client.write_all(&refusal_response(&refusal)).await;
            return;
        }
    };
    let conn = match engine.open(Proto::HttpConnect, &target.0, target.1).await {
        Ok(c) => c,
        Err(refusal) => {
            let _ = client.write_all(&refusal_response(&refusal)).await;
            return;
        }
    };
    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
        return;
    }
    tunnel(engine, client, pending, &target.0, conn).await;
}

/// Sends one request to its target and relays its response. Ok(true) when the client
/// connection may carry another request.
async fn forward(
    engine: &Engine,
    proto: Proto,
    client: &mut TcpStream,
    req: &Request,
    target: Target,
    buf: &mut Vec<u8>,
    upstream: &mut Upstream,
) -> Result<bool, Refusal> {
    let Target { host, port, path, body } = target;
    let reusable = |(key, conn): &((Host, u16), Connection)| *key == (host.clone(), port) && !closed(&conn.stream);
    if !upstream.as_ref().is_some_and(reusable) {
        *upstream = None;
        let conn = engine.open(proto, &host, port).await?;
        *upstream = Some(((host.clone(), port), conn));
    }
    let Some((_, conn)) = upstream.as_mut() else { return Ok(false) };
    let close = http::wants_close(req);
    let head = http::origin_head(req, &path, &authority(&host, port), body, close);
    match exchange(client, conn, req, &head, body, buf).await {
        Exchanged::Done { reusable } => {
            if !reusable {
                *upstream = None;
            }
            Ok(!close)
        }
        Exchanged::BodyRefused(e) => {
            *upstream = None;
            Err(engine.bad_request(proto, format!("a malformed request body: {e}")))
        }
        Exchanged::Broken { keep_upstream } => {
            if !keep_upstream {
                *upstream = None;
            }
            Ok(false)
        }
    }
}

/// An absolute-form request's target host, port and path, and its body, once the request is
/// found sound: its Host header, if any, must name the target.
fn checked_target(engine: &Engine, req: &Request) -> Result<Target, Refusal> {
    let bad = |e: String| engine.bad_request(Proto::Http, format!("a bad request: {e}"));
    let (host, port, path) = http::parse_absolute(&req.target).map_err(|e| bad(format!("{}: {e}", req.target)))?;
    let target = Target { body: checked_body(engine, Proto::Http, req)?, host, port, path };
    check_host_header(engine, Proto::Http, req, &target)?;
    Ok(target)
}

/// A request on a transparent connection to `host:port`: its target (origin-form, or
/// absolute-form naming the same host) and its Host header, if any, must name that
/// destination.
#[cfg(target_os = "linux")]
pub fn checked_pinned_target(engine: &Engine, req: &Request, host: &Host, port: u16) -> Result<Target, Refusal> {
    let bad = |e: String| engine.bad_request(Proto::Tcp, format!("a bad request: {e}"));
    let path = if req.target.starts_with('/') || req.target == "*" {
        req.target.clone()
    } else {
        let (h, p, path) = http::parse_absolute(&req.target).map_err(|e| bad(format!("{}: {e}", req.target)))?;
        if (&h, p) != (host, port) {
            let detail =
                format!("the request's target ({h}:{p}) differs from the connection's destination ({host}:{port})");
            return Err(engine.deny(Proto::Tcp, host, port, DenyReason::HostMismatch, detail, None, None));
        }
        path
    };
    let target = Target { body: checked_body(engine, Proto::Tcp, req)?, host: host.clone(), port, path };
    check_host_header(engine, Proto::Tcp, req, &target)?;
    Ok(target)
}

fn checked_body(engine: &Engine, proto: Proto, req: &Request) -> Result<Body, Refusal> {
    http::request_body(req).map_err(|e| {
        let why = match e {
            HeadError::Malformed(m) => m,
            HeadError::TooLarge => "a request head that is too large".into(),
        };
        engine.bad_request(proto, format!("a bad request: {why}"))
    })
}

/// The Host header, if any, must name the target's host and port (the target's port when it
/// names none).
fn check_host_header(engine: &Engine, proto: Proto, req: &Request, target: &Target) -> Result<(), Refusal> {
    let default_port = if proto == Proto::Http { 80 } else { target.port };
    let named =
        http::host_header(req, default_port).map_err(|e| engine.bad_request(proto, format!("a bad request: {e}")))?;
    match named {
        Some((h, p)) if h != target.host || p != target.port => {
            let (host, port) = (&target.host, target.port);
            let detail = format!(
                "the Host header ({h}:{p}) differs from the request's target ({host}:{port}); both must name the same host"
            );
            Err(engine.deny(proto, host, port, DenyReason::HostMismatch, detail, None, None))
        }
        _ => Ok(()),
    }
}

/// The Host header for the origin: the port only when it is not 80, an IPv6 address in brackets.
fn authority(host: &Host, port: u16) -> String {
    match (host, port) {
        (Host::Ip(std::net::IpAddr::V6(ip)), 80) => format!("[{ip}]"),
        (Host::Ip(std::net::IpAddr::V6(ip)), p) => format!("[{ip}]:{p}"),
        (h, 80) => h.to_string(),
        (h, p) => format!("{h}:{p}"),
    }
}

/// How one exchange on an upstream connection ended.
enum Exchanged {
    /// The response was relayed; whether the upstream connection can carry another exchange.
    Done { reusable: bool },
    /// The gateway refused the client's request body (malformed).
    BodyRefused(io::Error),
    /// The exchange broke off; whether the upstream connection may still be used.
    Broken { keep_upstream: bool },
}

/// Sends the request's head and body upstream while relaying the response to the client;
/// a failure is recorded on the connection.
async fn exchange(
    client: &mut TcpStream,
    conn: &mut Connection,
    req: &Request,
    head: &[u8],
    body: Body,
    buf: &mut Vec<u8>,
) -> Exchanged {
    let Connection { stream, up, down, error, .. } = conn;
    let (mut ur, mut uw) = stream.split();
    let (mut cr, mut cw) = client.split();
    if let Err(e) = uw.write_all(head).await {
        *error = Some(e.to_string());
        return Exchanged::Broken { keep_upstream: false };
    }
    *up += head.len() as u64;
    if http::expects_continue(req) && body != Body::None {
        // The origin never sees the Expect header: the gateway says go on itself.
        if cw.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            return Exchanged::Broken { keep_upstream: true };
        }
    }
    // The body goes up while the response comes down (a server may answer before it has read
    // all of it). A body the gateway refuses ends the exchange at once: the origin would wait
    // for the rest of it, and the client for an answer, until one of them gave up.
    let send = copy_body(&mut cr, buf, &mut uw, body, up);
    let receive = async {
        let mut ubuf = Vec::new();
        let outcome = relay_response(&mut ur, &mut ubuf, &mut cw, &req.method, down).await;
        (outcome, ubuf.is_empty())
    };
    tokio::pin!(send, receive);
    let mut sent = None;
    let mut received = None;
    while received.is_none() {
        tokio::select! {
            r = &mut send, if sent.is_none() => {
                let refused = r.is_err();
                sent = Some(r);
                if refused {
                    break;
                }
            }
            r = &mut receive => received = Some(r),
        }
    }
    if sent.is_none() {
        sent = Some(send.await);
    }
    match (sent, received) {
        (Some(Ok(())), Some((Ok(server_closes), clean))) => Exchanged::Done { reusable: !server_closes && clean },
        (Some(Err(e)), None) if e.kind() == io::ErrorKind::InvalidData => {
            *error = Some(format!("the request body was refused: {e}"));
            Exchanged::BodyRefused(e)
        }
        (Some(Err(e)), _) | (_, Some((Err(e), _))) => {
            *error = Some(e.to_string());
            Exchanged::Broken { keep_upstream: false }
        }
        (None, _) | (_, None) => Exchanged::Broken { keep_upstream: false },
    }
}

/// Whether a kept-alive server connection was closed (or sent something unasked) while idle:
/// then the next request goes on a new connection instead of failing.
fn closed(stream: &TcpStream) -> bool {
    let mut probe = [std::mem::MaybeUninit::uninit()];
    // The socket is non-blocking (tokio's), so an idle, open connection answers WouldBlock.
    !matches!(socket2::SockRef::from(stream).peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Relays a response head (after any interim 1xx heads) and its body. Returns whether the
/// connection can't carry another exchange.
async fn relay_response<R, W>(
    from: &mut R,
    buf: &mut Vec<u8>,
    to: &mut W,
    method: &str,
    count: &mut u64,
) -> io::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let resp = loop {
            match http::parse_response(buf) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(_) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "the server sent a malformed response"))
                }
            }
            if read_more(from, buf, Instant::now() + Duration::from_secs(24 * 3600)).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed before responding"));
            }
        };
        to.write_all(&buf[..resp.len]).await?;
        *count += resp.len as u64;
        buf.drain(..resp.len);
        if (100..200).contains(&resp.status) && resp.status != 101 {
            continue;
        }
        let body = http::response_body(&resp, method)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the server's response framing is ambiguous"))?;
        if resp.status == 101 {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "protocol upgrades are not relayed"));
        }
        copy_body(from, buf, to, body, count).await?;
        return Ok(body == Body::UntilClose || http::server_closes(&resp));
    }
}

/// Copies one message body from `from` to `to`, starting with the bytes already in `pending`;
/// afterwards `pending` holds what was read beyond the body.
async fn copy_body<R, W>(from: &mut R, pending: &mut Vec<u8>, to: &mut W, body: Body, count: &mut u64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunked = Chunked::default();
    let mut left = match body {
        Body::None => return Ok(()),
        Body::Length(n) => n,
        Body::Chunked | Body::UntilClose => u64::MAX,
    };
    let mut scratch = vec![0u8; RELAY_BUFFER];
    loop {
        if !pending.is_empty() {
            let (take, done) = match body {
                Body::Chunked => chunked.feed(pending).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                _ => {
                    let take = left.min(pending.len() as u64) as usize;
                    left -= take as u64;
                    (take, left == 0)
                }
            };
            to.write_all(&pending[..take]).await?;
            *count += take as u64;
            pending.drain(..take);
            if done {
                return Ok(());
            }
        }
        let n = from.read(&mut scratch).await?;
        if n == 0 {
            return match body {
                Body::UntilClose => to.flush().await,
                _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early")),
            };
        }
        pending.extend_from_slice(&scratch[..n]);
    }
}

/// Why a tunnel is refused: the reason for the event, and the sentence.
type TunnelRefusal = (DenyReason, String);

fn not_tls(host: &Host, why: &str) -> TunnelRefusal {
    let detail = format!(
        "the tunnel to {host} does not carry TLS ({why}); tunnels carry TLS only, plain HTTP goes through the HTTP proxy"
    );
    (DenyReason::NotTls, detail)
}

/// Reads a ClientHello from `client` (after what `pending` already holds) and checks its
/// server name against `host`. A `second` hello (after a HelloRetryRequest) may follow a
/// ChangeCipherSpec record. Returns how many bytes of `pending` the checked records take, or
/// None when the client went away first.
async fn checked_hello(
    client: &mut TcpStream,
    pending: &mut Vec<u8>,
    host: &Host,
    second: bool,
) -> Result<Option<usize>, TunnelRefusal> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let (sni, len) = loop {
        let (skipped, hello) = match second.then(|| tls::skip_change_cipher_spec(pending)) {
            Some(Some(rest)) => (pending.len() - rest.len(), tls::parse(rest)),
            Some(None) => (0, Hello::Incomplete),
            None => (0, tls::parse(pending)),
        };
        match hello {
            Hello::Tls(sni, len) => break (sni, skipped + len),
            Hello::NotTls(why) => return Err(not_tls(host, &why)),
            Hello::Incomplete => {}
        }
        match read_more(client, pending, deadline).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let secs = HANDSHAKE_TIMEOUT.as_secs();
                return Err((DenyReason::NotTls, format!("no TLS ClientHello arrived for {host} within {secs}s")));
            }
            Err(_) => return Ok(None),
        }
    };
    match (host, sni.as_deref()) {
        (Host::Name(name), Some(sni)) if sni == name.as_str() => Ok(Some(len)),
        (Host::Ip(_), None) => Ok(Some(len)),
        (_, Some(sni)) => {
            Err((DenyReason::SniMismatch, format!("the TLS server name `{sni}` differs from the tunnel's host {host}")))
        }
        (_, None) => Err((DenyReason::NoSni, format!("the TLS ClientHello for {host} names no server"))),
    }
}

/// How the server answered the checked ClientHello.
enum Flight {
    /// The handshake goes on as the hello said.
    Go,
    /// A HelloRetryRequest: the client's next hello must be checked too.
    Retry,
    /// The server went away without answering.
    Closed,
}

/// Checks that the tunnel starts with a ClientHello for `host`, sends exactly that hello on,
/// and holds everything else the client sends until the server has answered with TLS; after a
/// HelloRetryRequest, the client's second ClientHello gets the same check. Then relays both
/// ways.
pub async fn tunnel(engine: &Engine, mut client: TcpStream, mut pending: Vec<u8>, host: &Host, mut conn: Connection) {
    let refused = match checked_hello(&mut client, &mut pending, host, false).await {
        Ok(Some(hello)) => match first_flight(&mut pending, hello, &mut conn, &mut client).await {
            Ok(Ok(Flight::Go)) => None,
            Ok(Ok(Flight::Closed)) => return,
            Ok(Ok(Flight::Retry)) => match checked_hello(&mut client, &mut pending, host, true).await {
                Ok(Some(_)) => None,
                Ok(None) => return,
                Err((reason, detail)) => Some((reason, format!("after a HelloRetryRequest, {detail}"))),
            },
            Ok(Err(why)) => Some(not_tls(host, &why)),
            Err(e) => {
                conn.error = Some(e.to_string());
                return;
            }
        },
        Ok(None) => return,
        Err(refusal) => Some(refusal),
    };
    if let Some((reason, detail)) = refused {
        conn.refuse(engine, reason, detail);
        return;
    }
    conn.relay(&client, &pending).await;
}

/// Sends the first `hello` bytes of `pending` (the checked ClientHello) on, keeps the rest, and
/// relays the server's first answer once it is known to be TLS. The inner error says why the
/// server's answer is not TLS (nothing of it is relayed then).
async fn first_flight(
    pending: &mut Vec<u8>,
    hello: usize,
    conn: &mut Connection,
    client: &mut TcpStream,
) -> io::Result<Result<Flight, String>> {
    relay::write_all(&conn.stream, &pending[..hello]).await?;
    conn.up += hello as u64;
    pending.drain(..hello);
    let mut answer = Vec::new();
    let deadline = Instant::now() + SERVER_HELLO_TIMEOUT;
    let flight = loop {
        match tls::server_first(&answer) {
            tls::ServerFirst::Incomplete => {}
            tls::ServerFirst::HelloRetry => break Flight::Retry,
            tls::ServerFirst::Other => break Flight::Go,
            tls::ServerFirst::NotTls => return Ok(Err("the server did not answer with TLS".into())),
        }
        if read_more(&mut conn.stream, &mut answer, deadline).await? == 0 {
            break Flight::Closed;
        }
    };
    relay::write_all(client, &answer).await?;
    conn.down += answer.len() as u64;
    Ok(Ok(flight))
}

/// Serves one SOCKS5 client: handshake, CONNECT, then the same tunnel checks as HTTP CONNECT.
pub async fn serve_socks(engine: &Engine, mut client: TcpStream) {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut buf = Vec::new();
    let bad = |why: &str| {
        engine.bad_request(Proto::Socks5, format!("SOCKS5: {why}"));
    };
    let no_auth = loop {
        match socks::parse_greeting(&buf) {
            Parsed::Done(ok, used) => {
                buf.drain(..used);
                break ok;
            }
            Parsed::Invalid(why) | Parsed::Refuse(_, why, _) => return bad(why),
            Parsed::Incomplete => {}
        }
        match read_more(&mut client, &mut buf, deadline).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => return bad("the handshake did not arrive in time"),
        }
    };
    if !no_auth {
        let _ = client.write_all(&[socks::VERSION, socks::NO_ACCEPTABLE_METHOD]).await;
        return bad("the client offers no method without authentication");
    }
    if client.write_all(&[socks::VERSION, socks::NO_AUTH]).await.is_err() {
        return;
    }
    let (host, port) = loop {
        match socks::parse_request(&buf) {
            Parsed::Done(target, used) => {
                buf.drain(..used);
                break target;
            }
            Parsed::Refuse(code, why, _) => {
                let _ = client.write_all(&socks::reply(code)).await;
                return bad(why);
            }
            Parsed::Invalid(why) => return bad(why),
            Parsed::Incomplete => {}
        }
        match read_more(&mut client, &mut buf, deadline).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => return bad("the request did not arrive in time"),
        }
    };
    let conn = match engine.open(Proto::Socks5, &host, port).await {
        Ok(c) => c,
        Err(refusal) => {
            let code = match &refusal {
                Refusal::Denied { .. } => socks::NOT_ALLOWED,
                Refusal::Unresolved(_) => socks::HOST_UNREACHABLE,
                Refusal::Unreachable(e) => match e.kind() {
                    io::ErrorKind::ConnectionRefused => socks::CONNECTION_REFUSED,
                    io::ErrorKind::NetworkUnreachable => socks::NETWORK_UNREACHABLE,
                    io::ErrorKind::TimedOut => socks::TTL_EXPIRED,
                    io::ErrorKind::HostUnreachable => socks::HOST_UNREACHABLE,
                    _ => socks::GENERAL_FAILURE,
                },
            };
            let _ = client.write_all(&socks::reply(code)).await;
            return;
        }
    };
    if client.write_all(&socks::reply(socks::SUCCEEDED)).await.is_err() {
        return;
    }
    tunnel(engine, client, buf, &host, conn).await;
}
