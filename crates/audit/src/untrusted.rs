//! Text that ringfence shows but did not choose: file names, host names, header values, config
//! keys, command lines. Anything the sandbox (or a file it could have written) controls may
//! carry terminal control sequences (an ESC that erases the lines above, an OSC 52 that sets
//! the clipboard), bidi overrides that make text read differently than it is, invalid UTF-8, or
//! a megabyte of noise. [`escape`] makes it one visible, bounded line; every front end uses it
//! for what it prints, and the event writer for every string it writes.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;

/// Longest rendering of one untrusted value on a terminal, in bytes, before it is cut.
pub const TERMINAL_CAP: usize = 1024;

/// Longest line of ringfence's own messages (which may quote untrusted values), in bytes.
pub const LINE_CAP: usize = 4096;

/// Longest string in an event, in bytes, before it is cut: generous, since an argv element may
/// be a whole script, but bounded, so a hostile value can't flood the record.
pub const EVENT_CAP: usize = 16 * 1024;

/// Whether `c` must not reach a terminal as it is: C0 controls, DEL, C1 controls, and the
/// invisible format characters that reorder or hide text (bidi embeddings, overrides and
/// isolates, zero-width characters, line and paragraph separators, tag characters).
fn is_hazard(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f'
        | '\x7f'..='\u{9f}'
        | '\u{ad}'
        | '\u{61c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
}

/// One unit of input: a character, or a byte that is not part of valid UTF-8.
#[derive(Clone, Copy)]
enum Piece {
    Char(char),
    Byte(u8),
}

impl Piece {
    fn input_len(self) -> usize {
        match self {
            Piece::Char(c) => c.len_utf8(),
            Piece::Byte(_) => 1,
        }
    }

    /// Appends the piece as it should be shown: itself, or a visible escape (`\n`, `\x1b`,
    /// `\u{202e}`, `\xff`).
    fn push_to(self, out: &mut String) {
        match self {
            Piece::Char('\t') => out.push_str("\\t"),
            Piece::Char('\n') => out.push_str("\\n"),
            Piece::Char('\r') => out.push_str("\\r"),
            Piece::Char(c) if (c as u32) < 0x80 && is_hazard(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            Piece::Char(c) if is_hazard(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            Piece::Char(c) => out.push(c),
            Piece::Byte(b) => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

fn pieces(raw: &[u8]) -> impl Iterator<Item = Piece> + '_ {
    raw.utf8_chunks().flat_map(|chunk| {
        chunk.valid().chars().map(Piece::Char).chain(chunk.invalid().iter().copied().map(Piece::Byte))
    })
}

/// Renders untrusted bytes as one line of plain, visible text: hazardous characters and
/// invalid UTF-8 become escapes (`\x1b`, `\u{202e}`, `\xff`). Longer than `cap` bytes once
/// rendered, it keeps its start and its end (messages end with what was done about it) around
/// a marker saying how many input bytes were cut: `…[cut 1048000 bytes]…`.
pub fn escape(raw: &[u8], cap: usize) -> String {
    let head_cap = cap - cap / 4;
    let mut out = String::with_capacity(raw.len().min(cap) + 32);
    // Where the head ends if the whole doesn't fit: shown length, input length.
    let mut head = (0, 0);
    let mut used = 0;
    for piece in pieces(raw) {
        piece.push_to(&mut out);
        if out.len() > cap {
            break;
        }
        used += piece.input_len();
        if out.len() <= head_cap {
            head = (out.len(), used);
        }
    }
    if used == raw.len() {
        return out;
    }
    out.truncate(head.0);
    let (tail, tail_len) = rendered_tail(&raw[head.1..], cap / 4);
    let _ = write!(out, "…[cut {} bytes]…{tail}", raw.len() - head.1 - tail_len);
    out
}

/// The end of `raw` rendered in at most `cap` bytes, and how many input bytes it shows.
fn rendered_tail(raw: &[u8], cap: usize) -> (String, usize) {
    // Rendering never shrinks, so the last `cap` input bytes hold all that can fit; start at a
    // character boundary.
    let mut from = raw.len().saturating_sub(cap);
    for _ in 0..3 {
        if raw.get(from).is_some_and(|b| b & 0b1100_0000 == 0b1000_0000) {
            from += 1;
        }
    }
    let rendered: Vec<(String, usize)> = pieces(&raw[from..])
        .map(|p| {
            let mut text = String::new();
            p.push_to(&mut text);
            (text, p.input_len())
        })
        .collect();
    let (mut kept, mut size, mut shown) = (Vec::new(), 0, 0);
    for (text, input) in rendered.iter().rev() {
        if size + text.len() > cap {
            break;
        }
        size += text.len();
        shown += input;
        kept.push(text.as_str());
    }
    kept.reverse();
    (kept.concat(), shown)
}

/// One untrusted value (a path, a name, a message part) for a terminal or a log line.
pub fn for_terminal(text: &(impl AsRef<OsStr> + ?Sized)) -> String {
    escape(text.as_ref().as_encoded_bytes(), TERMINAL_CAP)
}

/// A message of several lines that may quote untrusted values: each line rendered and capped
/// at `cap` bytes on its own, the line breaks kept. The last guard before a terminal.
pub fn lines_for_terminal(text: &str, cap: usize) -> String {
    text.split('\n').map(|line| escape(line.as_bytes(), cap)).collect::<Vec<_>>().join("\n")
}

/// A JSON formatter that writes every string, object keys included, as [`escape`] renders it:
/// the output stays valid JSON, and its decoded strings hold no control or format characters,
/// so both the file and a tool that prints its values (`jq -r`) are safe on a terminal.
pub struct EscapingFormatter<F> {
    inner: F,
    cap: usize,
    /// The string being written, decoded back from serde_json's pieces.
    text: String,
}

impl<F> EscapingFormatter<F> {
    pub fn new(inner: F, cap: usize) -> Self {
        EscapingFormatter { inner, cap, text: String::new() }
    }
}

/// Serializes `value` as one compact JSON line (no newline) with every string escaped and cut
/// at `cap` bytes.
pub fn to_json_line<T: serde::Serialize + ?Sized>(value: &T, cap: usize) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        EscapingFormatter::new(serde_json::ser::CompactFormatter, cap),
    );
    value.serialize(&mut ser)?;
    Ok(out)
}

/// Serializes `value` as indented JSON with every string escaped and cut at `cap` bytes.
pub fn to_json_pretty<T: serde::Serialize + ?Sized>(value: &T, cap: usize) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let pretty = serde_json::ser::PrettyFormatter::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, EscapingFormatter::new(pretty, cap));
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(out).unwrap_or_default())
}

macro_rules! forward {
    ($($name:ident),* $(,)?) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
            self.inner.$name(writer)
        }
    )*};
}

macro_rules! forward_first {
    ($($name:ident),* $(,)?) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
            self.inner.$name(writer, first)
        }
    )*};
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for EscapingFormatter<F> {
    // Layout (indentation, separators) is the inner formatter's.
    forward!(
        begin_array,
        end_array,
        end_array_value,
        begin_object,
        end_object,
        end_object_key,
        begin_object_value,
        end_object_value
    );
    forward_first!(begin_array_value, begin_object_key);

    fn begin_string<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.text.clear();
        Ok(())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, _: &mut W, fragment: &str) -> io::Result<()> {
        self.text.push_str(fragment);
        Ok(())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        _: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape::*;
        self.text.push(match escape {
            Quote => '"',
            ReverseSolidus => '\\',
            Solidus => '/',
            Backspace => '\x08',
            FormFeed => '\x0c',
            LineFeed => '\n',
            CarriageReturn => '\r',
            Tab => '\t',
            AsciiControl(b) => char::from(b),
        });
        Ok(())
    }

    /// The whole string is known here: render it, then let serde_json quote the result (which
    /// is left with nothing but `"` and `\` to escape).
    fn end_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        let shown = escape(self.text.as_bytes(), self.cap);
        serde_json::to_writer(writer, &shown).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_become_visible() {
        let raw = "a\x1b]52;c;SGVsbG8=\x07b\x1b[2Jc\u{9b}31md\u{7f}e\u{202e}f\u{2066}g\u{200b}h\ti\nj\r";
        assert_eq!(
            escape(raw.as_bytes(), TERMINAL_CAP),
            "a\\x1b]52;c;SGVsbG8=\\x07b\\x1b[2Jc\\u{9b}31md\\x7fe\\u{202e}f\\u{2066}g\\u{200b}h\\ti\\nj\\r"
        );
        // Ordinary text, non-Latin scripts and emoji stay as they are.
        let plain = "src/main.rs – naïve 日本語 🦀 \\ \"q\"";
        assert_eq!(escape(plain.as_bytes(), TERMINAL_CAP), plain);
    }

    #[test]
    fn invalid_utf8_is_escaped_byte_by_byte() {
        assert_eq!(escape(b"ok\xff\xc3(\x9b", TERMINAL_CAP), "ok\\xff\\xc3(\\x9b");
    }

    #[test]
    fn long_text_keeps_both_ends_around_a_marker() {
        let long = format!("{}{}", "x".repeat(1 << 20), "the end");
        let shown = escape(long.as_bytes(), 100);
        assert_eq!(shown, format!("{}…[cut {} bytes]…{}the end", "x".repeat(75), (1 << 20) - 93, "x".repeat(18)));
        // The cap counts what is shown: escapes use it up faster, and are never split.
        assert_eq!(escape(&[0x1b; 50], 10), "\\x1b\\x1b…[cut 48 bytes]…");
        let shown = escape(format!("{}é€🦀", "a".repeat(300)).as_bytes(), 40);
        assert!(shown.ends_with("…aé€🦀") && shown.len() <= 40 + 24, "{shown}");
        assert_eq!(escape(b"short", 5), "short");
    }

    #[test]
    fn lines_keep_their_breaks_but_not_their_controls() {
        let text = "error: `a\x1bb`\n  help: c\u{202e}d";
        assert_eq!(lines_for_terminal(text, LINE_CAP), "error: `a\\x1bb`\n  help: c\\u{202e}d");
    }

    #[test]
    fn json_strings_are_escaped_and_stay_valid() {
        let value = serde_json::json!({ "k\u{9b}": ["a\x1bb\u{202e}", "q\"\\/", "x".repeat(40)], "n": 3 });
        let line = to_json_line(&value, 20).unwrap();
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(!text.chars().any(is_hazard), "{text}");
        let back: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(back["k\\u{9b}"][0], "a\\x1bb\\u{202e}");
        assert_eq!(back["k\\u{9b}"][1], "q\"\\/");
        assert_eq!(back["k\\u{9b}"][2], format!("{}…[cut 20 bytes]…{}", "x".repeat(15), "x".repeat(5)));
        assert_eq!(back["n"], 3);
        let pretty = to_json_pretty(&value, 100).unwrap();
        assert!(pretty.contains("\n  \"k\\\\u{9b}\": [\n"), "{pretty}");
    }
}
