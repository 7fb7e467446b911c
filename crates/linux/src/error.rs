//! Launch errors, sorted by who must act: the policy's author, the machine's admin, or us.

pub use ringfence_audit::{ErrorKind, LaunchError};

/// An error inside the sandbox before the command starts; sent to the supervisor as one line.
#[derive(Clone, Debug)]
pub struct ChildError(pub LaunchError);

impl ChildError {
    pub fn internal(message: String) -> Self {
        ChildError(LaunchError::internal(message))
    }

    pub fn policy(message: String, remedy: String) -> Self {
        ChildError(LaunchError::new(ErrorKind::Policy, message, Some(remedy)))
    }

    pub fn unsupported(message: String, remedy: String) -> Self {
        ChildError(LaunchError::new(ErrorKind::Unsupported, message, Some(remedy)))
    }

    /// A failed mount: EPERM there almost always means user namespaces are restricted.
    pub fn mount(message: String, err: nix::Error) -> Self {
        if err == nix::Error::EPERM {
            ChildError::unsupported(message, crate::host::userns_remedy())
        } else {
            ChildError::internal(message)
        }
    }

    /// One line for the status pipe: kind, message and remedy separated by tabs.
    pub fn encode(&self) -> String {
        let kind = match self.0.kind {
            ErrorKind::Policy => "policy",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        };
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        format!("E\t{kind}\t{}\t{}\n", clean(&self.0.message), clean(self.0.remedy.as_deref().unwrap_or("")))
    }

    pub fn decode(line: &str) -> Option<LaunchError> {
        let mut parts = line.strip_prefix("E\t")?.splitn(3, '\t');
        let kind = match parts.next()? {
            "policy" => ErrorKind::Policy,
            "unsupported" => ErrorKind::Unsupported,
            _ => ErrorKind::Internal,
        };
        let message = parts.next()?.to_string();
        let remedy = parts.next().filter(|r| !r.is_empty()).map(String::from);
        Some(LaunchError { kind, message, remedy })
    }
}
