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

#[cfg(not(target_os = "linux"))]
pub fn check() -> i32 {
    crate::emit(&format!("ringfence {}: this platform's backend is not available yet.\n", env!("CARGO_PKG_VERSION")));
    ringfence::exit_code::UNSUPPORTED
}
