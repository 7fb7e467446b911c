//! `ringfence setup` and `ringfence uninstall`: the Windows backend's one-time, elevated
//! installation (sandbox account, its secret, WFP filters). Other platforms need none.

#[cfg(windows)]
fn finish(result: Result<ringfence::windows::SetupReport, ringfence::windows::LaunchError>, what: &str) -> i32 {
    match result {
        Ok(report) => {
            let mut out = String::new();
            for action in &report.actions {
                out.push_str(&format!("{action}\n"));
            }
            if report.actions.is_empty() {
                out.push_str(&format!("ringfence {what}: nothing to do\n"));
            }
            crate::emit(&out);
            0
        }
        Err(e) => {
            let err = ringfence::Error::Launch(e);
            crate::report(&err);
            err.exit_code()
        }
    }
}

#[cfg(windows)]
pub fn setup() -> i32 {
    finish(ringfence::windows::setup(), "setup")
}

#[cfg(windows)]
pub fn uninstall() -> i32 {
    finish(ringfence::windows::uninstall(), "uninstall")
}

#[cfg(not(windows))]
pub fn setup() -> i32 {
    crate::emit("ringfence setup: nothing to set up on this platform; `ringfence check` shows what it can enforce.\n");
    0
}

#[cfg(not(windows))]
pub fn uninstall() -> i32 {
    crate::emit("ringfence uninstall: nothing was installed on this platform.\n");
    0
}
