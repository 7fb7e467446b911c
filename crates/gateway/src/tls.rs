//! Reads the server name (SNI) from the first bytes of a tunnel, which must be a TLS
//! ClientHello. Parsing is rustls's, so the gateway judges the hello the way a TLS server
//! would; on top, the server_name list must hold exactly one host name (servers differ in which
//! entry of a longer list they use). It also recognizes a server's HelloRetryRequest, after
//! which the client sends a second ClientHello that must pass the same check.

use rustls::server::Acceptor;

/// The most a ClientHello may take before the tunnel is refused (hellos with post-quantum key
/// shares are a few KiB; the TLS limit for one handshake message is far above any real one).
pub const HELLO_LIMIT: usize = 64 * 1024;

/// What the first bytes of a tunnel are.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed to decide.
    Incomplete,
    /// A ClientHello, with its server name if it has one, and how many bytes its records take
    /// (what follows is not part of it, and not yet checked).
    Tls(Option<String>, usize),
    /// Not a TLS handshake, or a malformed one; with why.
    NotTls(String),
}

/// Judges the bytes a tunnel has received so far.
pub fn parse(bytes: &[u8]) -> Hello {
    // A TLS record starts with the handshake content type and a 3.x version: anything else
    // is some other protocol, known from the first bytes.
    match bytes {
        [] => return Hello::Incomplete,
        [b, ..] if *b != 0x16 => return Hello::NotTls("the first bytes are not a TLS handshake".into()),
        [_, v, ..] if *v != 0x03 => return Hello::NotTls("the first bytes are not a TLS handshake".into()),
        _ => {}
    }
    if bytes.len() > HELLO_LIMIT {
        return Hello::NotTls(format!("no complete ClientHello within {} KiB", HELLO_LIMIT / 1024));
    }
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Hello::NotTls(format!("malformed TLS: {e}")),
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                if let Err(why) = single_server_name(bytes) {
                    return Hello::NotTls(why.into());
                }
                let Some(len) = hello_records_len(bytes) else {
                    return Hello::NotTls("more than the ClientHello in its records".into());
                };
                return Hello::Tls(accepted.client_hello().server_name().map(str::to_ascii_lowercase), len);
            }
            Ok(None) => {}
            Err((e, _)) => return Hello::NotTls(format!("malformed ClientHello: {e}")),
        }
    }
    Hello::Incomplete
}

/// The first `want` bytes of the handshake messages carried by the TLS records at the start of
/// `bytes`, joined (a message may be split across records); `None` if they aren't all there.
fn handshake_bytes(mut bytes: &[u8], want: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < want {
        let [0x16, _, _, hi, lo, rest @ ..] = bytes else { return None };
        let len = usize::from(*hi) << 8 | usize::from(*lo);
        let payload = rest.get(..len)?;
        out.extend_from_slice(payload);
        bytes = &rest[len..];
    }
    out.truncate(want);
    Some(out)
}

/// The bytes of the records that carry the ClientHello, if they carry nothing else: a second
/// handshake message packed into the same record would reach the server unchecked.
fn hello_records_len(bytes: &[u8]) -> Option<usize> {
    let header = handshake_bytes(bytes, 4)?;
    let mut left = 4 + length(&header, 1, 3)?;
    let mut at = 0;
    while left > 0 {
        let len = length(bytes, at + 3, 2)?;
        if len > left {
            return None;
        }
        left -= len;
        at += 5 + len;
    }
    Some(at)
}

/// Reads a big-endian length of `n` bytes at `at`.
fn length(msg: &[u8], at: usize, n: usize) -> Option<usize> {
    msg.get(at..at + n).map(|b| b.iter().fold(0usize, |acc, &x| acc << 8 | usize::from(x)))
}

/// Checks that the ClientHello's server_name extension, if any, lists exactly one host name.
/// Runs after rustls accepted the hello, so the structure is known to be sound.
fn single_server_name(bytes: &[u8]) -> Result<(), &'static str> {
    let malformed = "a malformed ClientHello";
    let header = handshake_bytes(bytes, 4).ok_or(malformed)?;
    let msg = handshake_bytes(bytes, 4 + length(&header, 1, 3).ok_or(malformed)?).ok_or(malformed)?;
    // Type and length, version, random, then the session id, cipher suites and compression
    // methods, each behind its own length.
    let mut at = 4 + 2 + 32;
    for width in [1, 2, 1] {
        at += width + length(&msg, at, width).ok_or(malformed)?;
    }
    let end = (at + 2 + length(&msg, at, 2).unwrap_or(0)).min(msg.len());
    at += 2;
    while at + 4 <= end {
        let (kind, len) = (length(&msg, at, 2).ok_or(malformed)?, length(&msg, at + 2, 2).ok_or(malformed)?);
        if kind == 0 {
            let list = msg.get(at + 4..at + 4 + len).ok_or(malformed)?;
            let names = length(list, 0, 2).ok_or(malformed)?;
            let name_len = length(list, 3, 2).ok_or(malformed)?;
            if list.get(2) != Some(&0) || names != 3 + name_len || list.len() != 2 + names {
                return Err("a server_name list that is not exactly one host name");
            }
        }
        at += 4 + len;
    }
    Ok(())
}

/// What a server's first bytes in a tunnel are.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerFirst {
    Incomplete,
    /// A HelloRetryRequest: the client's next ClientHello must be checked too.
    HelloRetry,
    /// Another handshake message (a ServerHello) or an alert: the handshake goes on as the
    /// first hello said.
    Other,
    /// Not TLS: the server speaks another protocol, and the tunnel carries TLS only.
    NotTls,
}

/// The ServerHello random that marks a HelloRetryRequest (RFC 8446, 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Judges the bytes the server has sent so far.
pub fn server_first(bytes: &[u8]) -> ServerFirst {
    match bytes {
        [] => return ServerFirst::Incomplete,
        [0x15, ..] => return ServerFirst::Other,
        [t, ..] if *t != 0x16 => return ServerFirst::NotTls,
        [_, v, ..] if *v != 0x03 => return ServerFirst::NotTls,
        _ => {}
    }
    // Handshake type, length, version, then the random.
    match handshake_bytes(bytes, 4 + 2 + 32) {
        None if bytes.len() < HELLO_LIMIT => ServerFirst::Incomplete,
        Some(hs) if hs[0] == 2 && hs[6..38] == HELLO_RETRY_RANDOM => ServerFirst::HelloRetry,
        _ => ServerFirst::Other,
    }
}

/// Skips the ChangeCipherSpec record TLS 1.3 clients in middlebox-compatibility mode send
/// before their second ClientHello: exactly `14 03 0x 00 01 01`, nothing longer (a record
/// declaring more could hide a hello the gateway never checks). `None` while incomplete;
/// another leading 0x14 record is left in place, and the hello check refuses it.
pub fn skip_change_cipher_spec(bytes: &[u8]) -> Option<&[u8]> {
    const CCS: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
    // The record version may be 3.1 to 3.3; every other byte is fixed.
    let fits = |i: usize, b: u8| if i == 2 { (1..=3).contains(&b) } else { b == CCS[i] };
    match bytes {
        [0x14, 0x03, 0x01..=0x03, 0x00, 0x01, 0x01, rest @ ..] => Some(rest),
        _ if bytes.len() < CCS.len() && !bytes.is_empty() && bytes.iter().enumerate().all(|(i, &b)| fits(i, b)) => None,
        _ => Some(bytes),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal TLS 1.2-style ClientHello naming `host` (or no SNI).
    pub(crate) fn client_hello(host: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(h) = host {
            let name = h.as_bytes();
            let mut list = vec![0u8];
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(name);
            let mut sni = (list.len() as u16).to_be_bytes().to_vec();
            sni.extend(list);
            ext.extend([0, 0]);
            ext.extend((sni.len() as u16).to_be_bytes());
            ext.extend(sni);
        }
        // signature_algorithms: rsa_pss_rsae_sha256, ecdsa_secp256r1_sha256.
        ext.extend([0, 13, 0, 6, 0, 4, 0x08, 0x04, 0x04, 0x03]);
        // supported_groups: x25519; ec_point_formats: uncompressed.
        ext.extend([0, 10, 0, 4, 0, 2, 0, 29, 0, 11, 0, 2, 1, 0]);
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0xc0, 0x2f]); // one cipher suite
        body.extend([1, 0]); // null compression
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![1u8, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn reads_the_server_name() {
        let hello = client_hello(Some("Example.COM"));
        assert_eq!(parse(&hello), Hello::Tls(Some("example.com".into()), hello.len()));
        let bare = client_hello(None);
        assert_eq!(parse(&bare), Hello::Tls(None, bare.len()));
    }

    #[test]
    fn what_follows_the_hello_is_not_part_of_it() {
        let hello = client_hello(Some("allowed.test"));
        let mut two = hello.clone();
        two.extend(client_hello(Some("evil.test")));
        assert_eq!(parse(&two), Hello::Tls(Some("allowed.test".into()), hello.len()));
        // A second hello packed into the first one's record can't be split off: refused.
        let mut packed = hello.clone();
        let second = client_hello(Some("evil.test"));
        packed.extend(&second[5..]);
        let len = packed.len() - 5;
        packed[3] = (len >> 8) as u8;
        packed[4] = len as u8;
        assert!(matches!(parse(&packed), Hello::NotTls(_)), "{:?}", parse(&packed));
    }

    #[test]
    fn a_split_hello_reads_the_same() {
        let hello = client_hello(Some("example.com"));
        // The same handshake message in two records.
        let payload = &hello[5..];
        let (a, b) = payload.split_at(20);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend([0x16, 0x03, 0x01, (part.len() >> 8) as u8, part.len() as u8]);
            split.extend(part);
        }
        assert_eq!(parse(&split), Hello::Tls(Some("example.com".into()), split.len()));
    }

    #[test]
    fn only_one_host_name() {
        let hello = client_hello(Some("allowed.test"));
        // Append a second entry (type 1) and a second host name to the server_name list.
        let mut extra = vec![1u8, 0, 1, b'x', 0, 0, 9];
        extra.extend(b"evil.test");
        let name_at = hello.windows(12).position(|w| w == b"allowed.test").unwrap() + 12;
        let mut evil = hello[..name_at].to_vec();
        evil.extend(&extra);
        evil.extend(&hello[name_at..]);
        let grow = extra.len();
        // Fix the lengths: record, handshake, extensions, the extension, the list.
        let bump = |b: &mut Vec<u8>, at: usize, width: usize| {
            let v = length(b, at, width).unwrap() + grow;
            for i in 0..width {
                b[at + i] = (v >> (8 * (width - 1 - i))) as u8;
            }
        };
        bump(&mut evil, 3, 2);
        bump(&mut evil, 6, 3);
        let ext_at = 5 + 4 + 2 + 32 + 1 + 4 + 2;
        bump(&mut evil, ext_at, 2);
        bump(&mut evil, ext_at + 4, 2);
        bump(&mut evil, ext_at + 6, 2);
        assert!(matches!(parse(&evil), Hello::NotTls(_)), "{:?}", parse(&evil));
    }

    #[test]
    fn hello_retry_requests_are_recognized() {
        let mut hrr = vec![0x16, 0x03, 0x03, 0x00, 0x30, 0x02, 0x00, 0x00, 0x2c, 0x03, 0x03];
        hrr.extend(HELLO_RETRY_RANDOM);
        hrr.extend([0u8; 10]);
        assert_eq!(server_first(&hrr), ServerFirst::HelloRetry);
        assert_eq!(server_first(&hrr[..20]), ServerFirst::Incomplete);
        let mut hello = hrr.clone();
        hello[20] ^= 1;
        assert_eq!(server_first(&hello), ServerFirst::Other);
        assert_eq!(skip_change_cipher_spec(&[0x14, 3, 3, 0, 1, 1, 0x16]), Some(&[0x16][..]));
        assert_eq!(skip_change_cipher_spec(&[0x14, 3, 3]), None);
        // A longer "change cipher spec" record is not skipped: the hello check sees it and refuses.
        let long = [0x14, 3, 3, 0, 9, 1, 0x16, 3, 1, 0, 4];
        assert_eq!(skip_change_cipher_spec(&long), Some(&long[..]));
        assert!(matches!(parse(&long), Hello::NotTls(_)));
        assert_eq!(server_first(b"220 smtp ready\r\n"), ServerFirst::NotTls);
        assert_eq!(server_first(&[0x15, 3, 3, 0, 2, 2, 40]), ServerFirst::Other);
    }

    #[test]
    fn waits_for_a_whole_hello() {
        let hello = client_hello(Some("example.com"));
        for cut in [1, 3, 5, 20, hello.len() - 1] {
            assert_eq!(parse(&hello[..cut]), Hello::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls(_)));
        assert!(matches!(parse(b"SSH-2.0-OpenSSH\r\n"), Hello::NotTls(_)));
        assert!(matches!(parse(&[0x16, 0x03, 0x01, 0x00, 0x05, 2, 0, 0, 1, 0]), Hello::NotTls(_)));
        let mut big = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        big.resize(HELLO_LIMIT + 1, 0);
        assert!(matches!(parse(&big), Hello::NotTls(_)));
    }
}
