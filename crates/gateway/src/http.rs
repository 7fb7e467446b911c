//! HTTP/1.1 message heads as a forward proxy sees them: parsing (httparse), request targets,
//! body framing, and the head sent on to the origin server.

use ringfence_policy::Host;

/// Largest request or response head accepted.
pub const HEAD_LIMIT: usize = 32 * 1024;
/// Most header fields in one head.
const MAX_HEADERS: usize = 128;

/// Why a head could not be used; each maps to a status for the client.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400, with why.
    Malformed(String),
    /// 431: the head or its field count is over the limit.
    TooLarge,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Header>,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub minor: u8,
    pub headers: Vec<Header>,
    pub len: usize,
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

fn headers_of(raw: &[httparse::Header<'_>]) -> Vec<Header> {
    raw.iter().map(|h| Header { name: h.name.to_ascii_lowercase(), value: h.value.to_vec() }).collect()
}

fn head_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        e => HeadError::Malformed(e.to_string()),
    }
}

/// Parses a request head from the start of `buf`; `Ok(None)` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(buf).map_err(head_error)? {
        httparse::Status::Partial if buf.len() >= HEAD_LIMIT => Err(HeadError::TooLarge),
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(_) if buf.len() > HEAD_LIMIT => Err(HeadError::TooLarge),
        httparse::Status::Complete(len) if len > HEAD_LIMIT => Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => Ok(Some(Request {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            minor: req.version.unwrap_or(1),
            headers: headers_of(req.headers),
            len,
        })),
    }
}

/// Parses a response head from the start of `buf`; `Ok(None)` while it is incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<Response>, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(buf).map_err(head_error)? {
        httparse::Status::Partial if buf.len() >= HEAD_LIMIT => Err(HeadError::TooLarge),
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(len) if len > HEAD_LIMIT => Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => Ok(Some(Response {
            status: resp.code.unwrap_or(0),
            minor: resp.version.unwrap_or(1),
            headers: headers_of(resp.headers),
            len,
        })),
    }
}

fn values<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.iter().filter(move |h| h.name == name).map(|h| h.value.as_slice())
}

/// The comma-separated tokens of every `name` field, lowercased.
fn tokens(headers: &[Header], name: &str) -> Vec<String> {
    values(headers, name)
        .flat_map(|v| {
            // Only HTTP's own whitespace: a Unicode space must not turn `\u{a0}chunked` into `chunked`.
            let text = String::from_utf8_lossy(v);
            text.split(',').map(|t| t.trim_matches([' ', '\t']).to_ascii_lowercase()).collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// The body framing of a request, refusing the ambiguous combinations request smuggling needs.
pub fn request_body(req: &Request) -> Result<Body, HeadError> {
    message_body(&req.headers)?.map_or(Ok(Body::None), Ok)
}

/// The body framing of a response to a request made with `method`.
pub fn response_body(resp: &Response, method: &str) -> Result<Body, HeadError> {
    if method.eq_ignore_ascii_case("HEAD") || resp.status < 200 || resp.status == 204 || resp.status == 304 {
        return Ok(Body::None);
    }
    Ok(message_body(&resp.headers)?.unwrap_or(Body::UntilClose))
}

fn message_body(headers: &[Header]) -> Result<Option<Body>, HeadError> {
    let te = tokens(headers, "transfer-encoding");
    let lengths: Vec<&[u8]> = values(headers, "content-length").collect();
    if !te.is_empty() {
        if !lengths.is_empty() {
            return Err(HeadError::Malformed("both Transfer-Encoding and Content-Length".into()));
        }
        if te.last().map(String::as_str) != Some("chunked") || te.iter().filter(|t| *t == "chunked").count() > 1 {
            return Err(HeadError::Malformed(format!("unsupported Transfer-Encoding `{}`", te.join(", "))));
        }
        return Ok(Some(Body::Chunked));
    }
    let mut length = None;
    for raw in lengths {
        for part in String::from_utf8_lossy(raw).split(',') {
            let part = part.trim();
            let n: u64 = part
                .parse()
                .ok()
                .filter(|_| part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| HeadError::Malformed(format!("a bad Content-Length `{part}`")))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting Content-Length values".into()));
            }
            length = Some(n);
        }
    }
    Ok(length.map(|n| if n == 0 { Body::None } else { Body::Length(n) }))
}

/// Whether the client asked for the connection to close after this exchange.
pub fn wants_close(req: &Request) -> bool {
    let conn = tokens(&req.headers, "connection");
    conn.iter().any(|t| t == "close") || (req.minor == 0 && !conn.iter().any(|t| t == "keep-alive"))
}

/// Whether the server will close the connection after this response.
pub fn server_closes(resp: &Response) -> bool {
    let conn = tokens(&resp.headers, "connection");
    conn.iter().any(|t| t == "close") || (resp.minor == 0 && !conn.iter().any(|t| t == "keep-alive"))
}

pub fn expects_continue(req: &Request) -> bool {
    tokens(&req.headers, "expect").iter().any(|t| t == "100-continue")
}

/// Splits `host[:port]` (IPv6 in brackets), with `default_port` when none is given.
pub fn parse_authority(authority: &str, default_port: Option<u16>) -> Result<(Host, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("an IPv6 address without its closing `]`")?;
        match after {
            "" => (h, None),
            a => (h, Some(a.strip_prefix(':').ok_or("junk after `]`")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| format!("a bad port `{p}`"))?
        }
        Some(p) => return Err(format!("a bad port `{p}`")),
        None => default_port.ok_or("a port is required (host:port)")?,
    };
    if host.contains('@') {
        return Err("credentials in the authority are not accepted".into());
    }
    Ok((Host::parse(host)?, port))
}

/// An absolute-form target `http://authority/path?query`: the host, port and origin-form path.
pub fn parse_absolute(target: &str) -> Result<(Host, u16, String), String> {
    let lower = target.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        return Err("https:// URLs go through CONNECT (set HTTPS_PROXY)".into());
    } else {
        return Err("a proxy request needs an absolute http:// URL".into());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = match path.split('#').next().unwrap_or_default() {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    let (host, port) = parse_authority(authority, Some(80))?;
    Ok((host, port, path))
}

/// Headers the gateway never passes on: this hop's own, and those it writes itself (`host`,
/// and the body's framing, from its own reading of the request). A client's `Connection`
/// header may name more to drop, but never these: dropping the framing would let the body be
/// read as a second request the gateway never checked.
const WRITTEN_BY_GATEWAY: &[&str] = &["host", "content-length", "transfer-encoding"];
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "upgrade",
    "expect",
];

/// The head to send the origin: origin-form target, the Host header the policy judged, the
/// body framing the gateway will relay, and the client's other end-to-end headers.
pub fn origin_head(req: &Request, path: &str, authority: &str, body: Body, close: bool) -> Vec<u8> {
    let listed = tokens(&req.headers, "connection");
    let mut out = format!("{} {} HTTP/1.1\r\nHost: {authority}\r\n", req.method, path).into_bytes();
    match body {
        Body::Length(n) => out.extend(format!("Content-Length: {n}\r\n").as_bytes()),
        Body::Chunked => out.extend(b"Transfer-Encoding: chunked\r\n"),
        Body::None | Body::UntilClose => {}
    }
    for h in &req.headers {
        let name = h.name.as_str();
        if WRITTEN_BY_GATEWAY.contains(&name) || HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name) {
            continue;
        }
        out.extend(h.name.as_bytes());
        out.extend(b": ");
        out.extend(&h.value);
        out.extend(b"\r\n");
    }
    if close {
        out.extend(b"Connection: close\r\n");
    }
    out.extend(b"\r\n");
    out
}

/// The Host header's host and port (`default_port` when it names none), if the request has
/// exactly one.
pub fn host_header(req: &Request, default_port: u16) -> Result<Option<(Host, u16)>, String> {
    let mut hosts = values(&req.headers, "host");
    let Some(first) = hosts.next() else { return Ok(None) };
    if hosts.next().is_some() {
        return Err("more than one Host header".into());
    }
    let text = std::str::from_utf8(first).map_err(|_| "a Host header that is not text")?;
    parse_authority(text.trim(), Some(default_port)).map(Some)
}

/// A complete response from the gateway itself.
pub fn gateway_response(status: u16, reason: &str, extra: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Request {
        parse_request(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn authorities() {
        assert_eq!(parse_authority("Example.com:443", None).unwrap(), (Host::Name("example.com".into()), 443));
        assert_eq!(parse_authority("[2001:db8::1]:8443", None).unwrap().1, 8443);
        assert_eq!(parse_authority("example.com", Some(80)).unwrap().1, 80);
        for bad in ["example.com", "example.com:", "example.com:0", "example.com:99999", "a:b:c", "[::1", "u@h:1"] {
            assert!(parse_authority(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_targets() {
        let (h, p, path) = parse_absolute("http://example.com:8080/a/b?c=d#frag").unwrap();
        assert_eq!((h.to_string(), p, path.as_str()), ("example.com".to_string(), 8080, "/a/b?c=d"));
        assert_eq!(parse_absolute("HTTP://example.com").unwrap().2, "/");
        assert_eq!(parse_absolute("http://example.com?q").unwrap().2, "/?q");
        assert!(parse_absolute("https://example.com/").is_err());
        assert!(parse_absolute("/relative").is_err());
        assert!(parse_absolute("http://user@example.com/").is_err());
    }

    #[test]
    fn framing_refuses_smuggling() {
        let both = req("POST http://a.example/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(request_body(&both).is_err());
        let two = req("POST http://a.example/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
        assert!(request_body(&two).is_err());
        let same = req("POST http://a.example/ HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(request_body(&same), Ok(Body::Length(3)));
        let gzip = req("POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert!(request_body(&gzip).is_err());
        let plus = req("POST http://a.example/ HTTP/1.1\r\nContent-Length: +3\r\n\r\n");
        assert!(request_body(&plus).is_err());
        let chunked = req("POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(request_body(&chunked), Ok(Body::Chunked));
    }

    #[test]
    fn limits() {
        let big = format!("GET http://a.example/ HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(HEAD_LIMIT));
        assert_eq!(parse_request(big.as_bytes()), Err(HeadError::TooLarge));
        let many: String = (0..200).map(|i| format!("X{i}: 1\r\n")).collect();
        let many = format!("GET http://a.example/ HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_request(many.as_bytes()), Err(HeadError::TooLarge));
        assert!(matches!(parse_request(b"GET\x01 / HTTP/1.1\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert_eq!(parse_request(b"GET http://a.example/ HTTP/1.1\r\nHost: a"), Ok(None));
    }

    #[test]
    fn origin_head_drops_hop_headers() {
        let r = req("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\nProxy-Connection: keep-alive\r\nConnection: X-Secret\r\nX-Secret: 1\r\nProxy-Authorization: Basic Zm9v\r\nAccept: */*\r\n\r\n");
        let head = String::from_utf8(origin_head(&r, "/x", "a.example", Body::None, false)).unwrap();
        assert_eq!(head, "GET /x HTTP/1.1\r\nHost: a.example\r\naccept: */*\r\n\r\n");
        let old = req("GET http://a.example:8080/ HTTP/1.0\r\n\r\n");
        let head = String::from_utf8(origin_head(&old, "/", "a.example:8080", Body::None, true)).unwrap();
        assert!(head.contains("Host: a.example:8080\r\n") && head.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn connection_cannot_drop_the_framing() {
        for (framing, body, want) in [
            ("Connection: content-length\r\nContent-Length: 40", Body::Length(40), "Content-Length: 40\r\n"),
            (
                "Connection: transfer-encoding, host\r\nTransfer-Encoding: chunked",
                Body::Chunked,
                "Transfer-Encoding: chunked\r\n",
            ),
        ] {
            let r = req(&format!("POST http://a.example/ HTTP/1.1\r\nHost: a.example\r\n{framing}\r\n\r\n"));
            assert_eq!(request_body(&r), Ok(body));
            let head = String::from_utf8(origin_head(&r, "/", "a.example", body, false)).unwrap();
            assert!(head.contains(want) && head.contains("Host: a.example\r\n"), "{head}");
            assert_eq!(head.matches("\r\n").count(), 4, "{head}");
        }
        let nbsp = req("POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: \u{a0}chunked\r\n\r\n");
        assert!(request_body(&nbsp).is_err());
    }

    #[test]
    fn response_framing() {
        let resp = |t: &str| parse_response(t.as_bytes()).unwrap().unwrap();
        assert_eq!(response_body(&resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), "GET"), Ok(Body::Length(5)));
        assert_eq!(response_body(&resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), "HEAD"), Ok(Body::None));
        assert_eq!(response_body(&resp("HTTP/1.1 304 Not Modified\r\n\r\n"), "GET"), Ok(Body::None));
        assert_eq!(response_body(&resp("HTTP/1.1 200 OK\r\n\r\n"), "GET"), Ok(Body::UntilClose));
        assert!(server_closes(&resp("HTTP/1.0 200 OK\r\n\r\n")));
        assert!(!server_closes(&resp("HTTP/1.1 200 OK\r\n\r\n")));
    }
}
