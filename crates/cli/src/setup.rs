//! `ringfence setup` and `ringfence uninstall`: the backend's one-time installation (on
//! Windows: the sandbox account, its secret, its network filters; elsewhere nothing).

fn finish(result: Result<Vec<String>, ringfence::Error>, what: &str) -> i32 {
    match result {
        Ok(actions) if actions.is_empty() => {
            crate::emit(&format!("ringfence {what}: nothing to do\n"));
            0
        }
        Ok(actions) => {
            crate::emit(&actions.iter().map(|a| format!("ringfence {what}: {a}\n")).collect::<String>());
            0
        }
        Err(e) => {
            crate::report(&e);
            e.exit_code()
        }
    }
}

pub fn setup() -> i32 {
    finish(ringfence::setup(), "setup")
}

pub fn uninstall() -> i32 {
    finish(ringfence::uninstall(), "uninstall")
}
