//! One entry point over every parser that reads what the sandbox sends, for the fuzz target
//! in fuzz/ and for the mutation test below.

use crate::chunked::Chunked;
use crate::{http, socks, tls};

/// Runs `data` through every parser of untrusted input; none may panic or loop.
pub fn parse_untrusted(data: &[u8]) {
    if let Ok(Some(req)) = http::parse_request(data) {
        let _ = http::request_body(&req);
        let _ = http::host_header(&req, 80);
        let _ = http::wants_close(&req);
        let _ = http::expects_continue(&req);
        let _ = http::parse_absolute(&req.target);
        let _ = http::parse_authority(&req.target, None);
        let _ = http::request_body(&req).map(|body| http::origin_head(&req, "/", "example.com", body, false));
    }
    if let Ok(Some(resp)) = http::parse_response(data) {
        let _ = http::response_body(&resp, "GET");
        let _ = http::server_closes(&resp);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = http::parse_authority(text, Some(80));
        let _ = http::parse_absolute(text);
        let _ = ringfence_policy::Host::parse(text);
    }
    let mut chunked = Chunked::default();
    for piece in data.chunks(7) {
        match chunked.feed(piece) {
            Ok((_, false)) => {}
            _ => break,
        }
    }
    let _ = socks::parse_greeting(data);
    let _ = socks::parse_request(data);
    let _ = tls::parse(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEEDS: &[&[u8]] = &[
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        b"GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n",
        b"POST http://[2001:db8::1]:8080/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
        &[5, 1, 0, 3, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm', 1, 187],
        &[5, 2, 0, 2],
        &[0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0x00, 0x00, 0x2c, 0x03, 0x03],
    ];

    /// A small xorshift generator: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut inputs: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.to_vec()).collect();
        inputs.push(crate::tls::tests::client_hello(Some("example.com")));
        for round in 0..3000 {
            let mut data = inputs[round % inputs.len()].clone();
            for _ in 0..(rng.next() % 6 + 1) {
                let pos = (rng.next() as usize) % (data.len() + 1);
                match rng.next() % 4 {
                    0 if pos < data.len() => data[pos] = rng.next() as u8,
                    1 => data.insert(pos, rng.next() as u8),
                    2 if pos < data.len() => {
                        data.remove(pos);
                    }
                    _ => data.truncate(pos),
                }
            }
            parse_untrusted(&data);
        }
        for len in 0..512 {
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            parse_untrusted(&data);
        }
    }
}
