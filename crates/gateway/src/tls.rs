//! Reads the server name (SNI) from the first bytes of a tunnel, which must be a TLS
//! ClientHello. Parsing is rustls's, so the gateway judges the hello the way a TLS server would.

use rustls::server::Acceptor;

/// The most a ClientHello may take before the tunnel is refused (hellos with post-quantum key
/// shares are a few KiB; the TLS limit for one handshake message is far above any real one).
pub const HELLO_LIMIT: usize = 64 * 1024;

/// What the first bytes of a tunnel are.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed to decide.
    Incomplete,
    /// A ClientHello, with its server name if it has one.
    Tls(Option<String>),
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
                return Hello::Tls(accepted.client_hello().server_name().map(str::to_ascii_lowercase))
            }
            Ok(None) => {}
            Err((e, _)) => return Hello::NotTls(format!("malformed ClientHello: {e}")),
        }
    }
    Hello::Incomplete
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
        assert_eq!(parse(&client_hello(Some("Example.COM"))), Hello::Tls(Some("example.com".into())));
        assert_eq!(parse(&client_hello(None)), Hello::Tls(None));
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
