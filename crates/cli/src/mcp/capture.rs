//! A command's output as the agent gets it: the first and last bytes of each stream, within a
//! cap, and how much there was in all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of each stream given back: the first half and the last half of this.
pub const OUTPUT_CAP: usize = 32 << 10;

/// One stream's bytes: up to half the cap from its start, half from its end, and the total.
#[derive(Debug, Default)]
pub struct Captured {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    pub total: u64,
}

impl Captured {
    fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = (OUTPUT_CAP / 2).saturating_sub(self.head.len());
        let (first, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(first);
        bytes = rest;
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(OUTPUT_CAP / 2);
        self.tail.drain(..excess);
    }

    /// Whether bytes were left out between the head and the tail.
    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The text: invalid UTF-8 replaced, and a marker where bytes were left out.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.truncated() {
            let left_out = self.total - (self.head.len() + self.tail.len()) as u64;
            text.push_str(&format!("\n…[{left_out} bytes left out]…\n"));
        }
        let (a, b) = self.tail.as_slices();
        text.push_str(&String::from_utf8_lossy(&[a, b].concat()));
        text
    }
}

/// Reads `stream` to its end, counting every byte into `seen` (for progress reports).
pub async fn capture(stream: Option<impl AsyncRead + Unpin>, seen: Arc<AtomicU64>) -> Captured {
    let mut out = Captured::default();
    let Some(mut stream) = stream else { return out };
    let mut buf = vec![0; 16 << 10];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        seen.fetch_add(n as u64, Ordering::Relaxed);
        out.push(&buf[..n]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_whole() {
        let mut c = Captured::default();
        c.push(b"hello ");
        c.push(b"world");
        assert_eq!((c.text().as_str(), c.total, c.truncated()), ("hello world", 11, false));
    }

    #[test]
    fn long_output_keeps_its_ends() {
        let mut c = Captured::default();
        c.push(&vec![b'a'; OUTPUT_CAP]);
        for _ in 0..1000 {
            c.push(&[b'b'; 100]);
        }
        c.push(b"END");
        let text = c.text();
        assert!(c.truncated());
        assert_eq!(c.total, (OUTPUT_CAP + 100_000 + 3) as u64);
        assert!(text.starts_with(&"a".repeat(OUTPUT_CAP / 2)), "{}", &text[..40]);
        assert!(text.ends_with("bbbEND"));
        assert!(text.contains("…[100003 bytes left out]…"), "{}", &text[OUTPUT_CAP / 2..OUTPUT_CAP / 2 + 40]);
        assert!(text.len() < OUTPUT_CAP + 100);
    }
}
