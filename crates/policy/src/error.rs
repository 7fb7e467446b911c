//! Policy errors that point at the file, line and column, and say what to write instead.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: Option<PathBuf>,
    /// 1-based line and column, where known.
    pub position: Option<(usize, usize)>,
    pub message: String,
    pub help: Option<String>,
}

impl PolicyError {
    pub fn new(message: impl Into<String>) -> Self {
        PolicyError { file: None, position: None, message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Places the error in `file` at byte offset `offset` of `text`.
    pub fn at(mut self, file: &Path, text: &str, offset: Option<usize>) -> Self {
        self.file = Some(file.to_path_buf());
        self.position = offset.map(|o| line_col(text, o));
        self
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The message and help quote config content (keys, values, paths) that a project file, maybe
/// written by an earlier run, chose: each part is shown as one escaped, bounded line.
impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ringfence_audit::untrusted::{escape, for_terminal, LINE_CAP};
        match (&self.file, self.position) {
            (Some(file), Some((line, col))) => write!(f, "{}:{line}:{col}: ", for_terminal(file))?,
            (Some(file), None) => write!(f, "{}: ", for_terminal(file))?,
            _ => {}
        }
        f.write_str(&escape(self.message.as_bytes(), LINE_CAP))?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {}", escape(help.as_bytes(), LINE_CAP))?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}
