//! Launch errors, sorted by who must act: the policy's author, the machine's admin, or us.

pub use ringfence_audit::{ErrorKind, LaunchError};

/// An error inside the sandbox before the command starts, for the status pipe.
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

    /// The error as the supervisor reports it. Its message and remedy quote paths of the
    /// sandbox's view: a line break in one must not pass for a line of ringfence's own on the
    /// user's terminal, so tabs and line breaks become spaces. An empty remedy is none.
    pub fn into_report(self) -> LaunchError {
        let flat = |s: String| if s.contains(['\t', '\n']) { s.replace(['\t', '\n'], " ") } else { s };
        LaunchError {
            kind: self.0.kind,
            message: flat(self.0.message),
            remedy: self.0.remedy.filter(|r| !r.is_empty()).map(flat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_one_line_each() {
        let err = ChildError::policy("a\tb\nhelp: forged".into(), "fix\nit".into()).into_report();
        assert_eq!(
            (err.kind, err.message.as_str(), err.remedy.as_deref()),
            (ErrorKind::Policy, "a b help: forged", Some("fix it"))
        );
        let plain = ChildError::unsupported("m".into(), String::new()).into_report();
        assert_eq!((plain.message.as_str(), plain.remedy), ("m", None));
    }
}
