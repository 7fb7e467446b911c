//! `ringfence check`: what this machine can enforce, and how to get more.

#[cfg(target_os = "linux")]
pub fn check() -> i32 {
    use std::fmt::Write;
    let features = ringfence::linux::Features::probe();
    let mut out = String::new();
    let _ = writeln!(out, "ringfence {} on Linux {}\n", env!("CARGO_PKG_VERSION"), features.kernel);
    let mut missing_required = false;
    for item in features.report() {
        let mark = if item.available { "ok  " } else { "MISS" };
        let _ = writeln!(out, "[{mark}] {:<16} {}", item.name, item.detail);
        if let Some(remedy) = &item.remedy {
            let _ = writeln!(out, "       {:<16} → {remedy}", "");
        }
        if !item.available && matches!(item.name, "user namespaces" | "seccomp") {
            missing_required = true;
        }
    }
    out.push('\n');
    let code = if missing_required {
        out.push_str("ringfence can't run here until the items marked MISS above are fixed.\n");
        ringfence::exit_code::UNSUPPORTED
    } else {
        out.push_str("ringfence runs here; items marked MISS need --allow-degraded when the policy asks for them.\n");
        0
    };
    crate::emit(&out);
    code
}

#[cfg(windows)]
pub fn check() -> i32 {
    use ringfence::windows::FilterState;
    use std::fmt::Write;
    let state = ringfence::windows::state();
    let mut out = String::new();
    let _ = writeln!(out, "ringfence {} on Windows\n", env!("CARGO_PKG_VERSION"));
    let mark = |ok: bool| if ok { "ok  " } else { "MISS" };
    let account = match &state.account_sid {
        Some(sid) => format!("`{}` ({sid})", ringfence::windows::ACCOUNT_NAME),
        None => format!("`{}` does not exist", ringfence::windows::ACCOUNT_NAME),
    };
    let _ = writeln!(out, "[{}] sandbox account  {account}", mark(state.account_sid.is_some()));
    let _ = writeln!(out, "[{}] account secret   readable by this user (DPAPI)", mark(state.secret_readable));
    if let Some(works) = state.logon_works {
        let _ = writeln!(out, "[{}] logon            as the sandbox account", mark(works));
    }
    let _ = writeln!(out, "[{}] runner           installed for the sandbox account", mark(state.runner_installed));
    let filters = match &state.filters {
        FilterState::Present { count } => (true, format!("{count} WFP filters on the account")),
        FilterState::Missing { missing, expected } => (false, format!("{missing} of {expected} WFP filters missing")),
        FilterState::Unknown(why) => (false, format!("WFP filters unknown: {why}")),
    };
    let _ = writeln!(out, "[{}] network filters  {}", mark(filters.0), filters.1);
    let profile = state.profile.as_deref().unwrap_or("missing");
    let _ = writeln!(out, "[{}] profile          {profile}", mark(state.profile.is_some()));
    let _ =
        writeln!(out, "[{}] NUL device       writable by sandboxed commands", mark(state.null_device == Some(true)));
    for gap in &state.not_enforced {
        let _ = writeln!(out, "[no  ] {:<16} not enforced on Windows: {}", gap.name, gap.detail);
    }
    for note in &state.notes {
        let _ = writeln!(out, "       {note}");
    }
    out.push('\n');
    let problems = state.problems();
    let code = if problems.is_empty() {
        out.push_str("ringfence runs here.\n");
        0
    } else {
        for p in &problems {
            let _ = writeln!(out, "  → {p}");
        }
        out.push_str("ringfence can't run here until the items above are fixed.\n");
        ringfence::exit_code::UNSUPPORTED
    };
    crate::emit(&out);
    code
}

#[cfg(target_os = "macos")]
pub fn check() -> i32 {
    use ringfence::macos::report;
    use std::fmt::Write;
    let seatbelt = ringfence::macos::probe();
    let mut out = String::new();
    let _ = writeln!(out, "ringfence {} on macOS {}\n", env!("CARGO_PKG_VERSION"), ringfence::macos::os_version());
    for item in report::check_items(&seatbelt) {
        let mark = if item.available { "ok  " } else { "MISS" };
        let _ = writeln!(out, "[{mark}] {:<16} {}", item.name, item.detail);
    }
    out.push('\n');
    let code = if seatbelt.is_ok() {
        out.push_str("ringfence runs here; items marked MISS are what macOS can't give (see docs/macos.md).\n");
        0
    } else {
        out.push_str("ringfence can't run here: Seatbelt refused its profile (see the seatbelt line above).\n");
        ringfence::exit_code::UNSUPPORTED
    };
    crate::emit(&out);
    code
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub fn check() -> i32 {
    crate::emit(&format!("ringfence {}: this platform's backend is not available yet.\n", env!("CARGO_PKG_VERSION")));
    ringfence::exit_code::UNSUPPORTED
}
