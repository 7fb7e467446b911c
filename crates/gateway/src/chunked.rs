//! Finds where a chunked HTTP/1.1 body ends, so a kept-alive connection knows where the next
//! message starts. The bytes themselves pass through unchanged, so the reading is strict: a
//! line ends only at CRLF, and a bare LF or other control byte is an error. A server that
//! ended a line at a bare LF would otherwise see the body end earlier than the gateway did,
//! and read the rest as a request the gateway never checked.

/// Longest chunk-size line (with extensions) or trailer line accepted.
const LINE_LIMIT: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const TRAILER_LIMIT: usize = 32 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line; `len` bytes of it so far, `size` the digits' value.
    Size {
        size: u64,
        digits: usize,
        in_ext: bool,
        len: usize,
    },
    /// Saw the size line's CR.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: reading trailer lines; `line` bytes into the current one.
    Trailer {
        line: usize,
        total: usize,
    },
    TrailerLf {
        line: usize,
        total: usize,
    },
    Done,
}

/// A streaming tracker of chunked framing.
#[derive(Debug)]
pub struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size { size: 0, digits: 0, in_ext: false, len: 0 } }
    }
}

impl Chunked {
    /// Feeds the next bytes of the body. Returns how many of them belong to the body: all of
    /// them (and `false`) while it goes on, or the count up to its end (and `true`).
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut i = 0;
        while i < data.len() {
            if let State::Data { left } = self.state {
                let take = (left.min((data.len() - i) as u64)) as usize;
                i += take;
                self.state = if left == take as u64 { State::DataCr } else { State::Data { left: left - take as u64 } };
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match self.state {
                State::Size { size, digits, in_ext, len } => {
                    if len >= LINE_LIMIT {
                        return Err("a chunk-size line is too long");
                    }
                    match b {
                        b'\r' if digits > 0 => State::SizeLf { size },
                        _ if in_ext && line_byte(b) => State::Size { size, digits, in_ext, len: len + 1 },
                        _ if in_ext => return Err("a control byte in a chunk extension"),
                        b';' if digits > 0 => State::Size { size, digits, in_ext: true, len: len + 1 },
                        // Whitespace before extensions (RFC 9112 allows BWS there).
                        b' ' | b'\t' if digits > 0 => State::Size { size, digits, in_ext: true, len: len + 1 },
                        _ => {
                            let d = (b as char).to_digit(16).ok_or("a chunk size is not hexadecimal")?;
                            if digits >= 16 {
                                return Err("a chunk size is too large");
                            }
                            State::Size { size: size << 4 | d as u64, digits: digits + 1, in_ext, len: len + 1 }
                        }
                    }
                }
                State::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => State::Trailer { line: 0, total: 0 },
                    (b'\n', n) => State::Data { left: n },
                    _ => return Err("a chunk-size line does not end in CRLF"),
                },
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0, in_ext: false, len: 0 },
                State::DataCr | State::DataLf => return Err("a chunk's data does not end in CRLF"),
                State::Trailer { line, total } => {
                    if line >= LINE_LIMIT || total >= TRAILER_LIMIT {
                        return Err("the trailer is too long");
                    }
                    match b {
                        b'\r' => State::TrailerLf { line, total: total + 1 },
                        _ if line_byte(b) => State::Trailer { line: line + 1, total: total + 1 },
                        _ => return Err("a control byte in a trailer line"),
                    }
                }
                State::TrailerLf { line, total } => match (b, line) {
                    (b'\n', 0) => State::Done,
                    (b'\n', _) => State::Trailer { line: 0, total: total + 1 },
                    _ => return Err("a trailer line does not end in CRLF"),
                },
                State::Data { .. } | State::Done => unreachable!("handled above"),
            };
            if self.state == State::Done {
                return Ok((i, true));
            }
        }
        Ok((i, self.state == State::Done))
    }
}

/// A byte a header-like line may hold: visible ASCII, space, tab and obs-text.
fn line_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &[u8]) -> Result<(usize, bool), &'static str> {
        Chunked::default().feed(body)
    }

    #[test]
    fn finds_the_end() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET /next";
        assert_eq!(whole(body), Ok((body.len() - 9, true)));
        let trailers = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        assert_eq!(whole(trailers), Ok((trailers.len(), true)));
    }

    #[test]
    fn the_same_end_whatever_the_pieces() {
        let body = b"a\r\n0123456789\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n";
        for step in 1..body.len() {
            let mut c = Chunked::default();
            let mut seen = 0;
            let mut done = false;
            for piece in body.chunks(step) {
                let (n, d) = c.feed(piece).unwrap();
                seen += n;
                if d {
                    done = true;
                    break;
                }
            }
            assert!(done && seen == body.len(), "step {step}");
        }
    }

    #[test]
    fn refuses_bad_framing() {
        let bare_lf = [&b"0;a\n\r\n"[..], b"0\r\n\n", b"0\r\nX: 1\nGET / HTTP/1.1\r\n\r\n", b"5;\x00\r\nhello\r\n"];
        for bad in
            [&b"x\r\n"[..], b"5\rhello", b"5\r\nhelloXX", b"\r\n", b"11111111111111111\r\n"].into_iter().chain(bare_lf)
        {
            assert!(whole(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'1'; 1].into_iter().chain(std::iter::repeat_n(b';', LINE_LIMIT + 1)).collect::<Vec<_>>();
        assert!(whole(&long).is_err());
    }

    #[test]
    fn incomplete_bodies_go_on() {
        assert_eq!(whole(b"5\r\nhel"), Ok((6, false)));
        assert_eq!(whole(b"0\r\n"), Ok((3, false)));
    }
}
