//! Launch errors, sorted by who must act: the policy's author, the machine's admin, or us.
//! Every backend reports its failures with these.

use std::fmt;

/// Who has to act on a [`LaunchError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The policy or the launch request asks for something that can't be built (a missing
    /// writable root, a command that doesn't exist).
    Policy,
    /// The machine lacks something the sandbox needs (a kernel feature, the Windows sandbox
    /// account). The remedy says what to do.
    Unsupported,
    /// Anything else: a bug, or an unexpected system error.
    Internal,
}

/// An error from setting up, starting or running the sandbox, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchError {
    pub kind: ErrorKind,
    pub message: String,
    pub remedy: Option<String>,
}

impl LaunchError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, remedy: Option<String>) -> Self {
        LaunchError { kind, message: message.into(), remedy }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message, None)
    }

    pub fn policy(message: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self::new(ErrorKind::Policy, message, Some(remedy.into()))
    }

    pub fn unsupported(message: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message, Some(remedy.into()))
    }

    /// Prefixes the message with what was being done, keeping kind and remedy.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// Message and remedy may quote paths and names the sandbox chose: each is shown as one
/// escaped, bounded line.
impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |text: &str| crate::untrusted::escape(text.as_bytes(), crate::untrusted::LINE_CAP);
        f.write_str(&shown(&self.message))?;
        if let Some(remedy) = &self.remedy {
            write!(f, "\n  fix: {}", shown(remedy))?;
        }
        Ok(())
    }
}

impl std::error::Error for LaunchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_remedy() {
        let e = LaunchError::unsupported("no user namespaces", "enable them");
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert_eq!(e.to_string(), "no user namespaces\n  fix: enable them");
        assert_eq!(LaunchError::internal("boom").to_string(), "boom");
        let e = LaunchError::policy("no folder a\nfix: b\x1b[2J", "c\u{202e}");
        assert_eq!(e.to_string(), "no folder a\\nfix: b\\x1b[2J\n  fix: c\\u{202e}");
    }

    #[test]
    fn context_keeps_kind_and_remedy() {
        let e = LaunchError::policy("no such folder", "create it").context("writable root /w");
        assert_eq!(e.kind, ErrorKind::Policy);
        assert_eq!(e.message, "writable root /w: no such folder");
        assert_eq!(e.remedy.as_deref(), Some("create it"));
    }
}
