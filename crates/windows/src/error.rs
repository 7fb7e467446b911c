//! Launch and setup errors, sorted by who must act: the policy's author, the machine's admin, or us.

pub use ringfence_audit::{ErrorKind, LaunchError};

/// The remedy for everything `ringfence setup` installs.
pub const SETUP_REMEDY: &str = "run `ringfence setup` once from an elevated prompt (Run as administrator)";

/// Something `ringfence setup` creates is missing or unusable.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn needs_setup(message: impl Into<String>) -> LaunchError {
    LaunchError::unsupported(message, SETUP_REMEDY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_the_remedy() {
        let e = needs_setup("the sandbox account `ringfence-sandbox` does not exist");
        assert_eq!(e.kind, ErrorKind::Unsupported);
        let text = e.to_string();
        assert!(text.starts_with("the sandbox account"));
        assert!(text.contains("\n  fix: run `ringfence setup`"), "{text}");
    }
}
