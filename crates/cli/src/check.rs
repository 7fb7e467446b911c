//! `ringfence check`: what this machine can enforce, and how to get more, as the backend says.

use std::fmt::Write;

pub fn check() -> i32 {
    let probe = ringfence::probe();
    let mut out = String::new();
    let _ = writeln!(out, "ringfence {} on {}\n", env!("CARGO_PKG_VERSION"), probe.platform);
    for item in &probe.items {
        let mark = if item.available { "ok  " } else { "MISS" };
        let _ = writeln!(out, "[{mark}] {:<16} {}", item.name, item.detail);
        if let Some(remedy) = &item.remedy {
            let _ = writeln!(out, "       {:<16} → {remedy}", "");
        }
    }
    for note in &probe.notes {
        let _ = writeln!(out, "       {note}");
    }
    out.push('\n');
    let code = if probe.runnable() {
        out.push_str("ringfence runs here; items marked MISS need --allow-degraded when the policy asks for them.\n");
        0
    } else {
        out.push_str("ringfence can't run here until the items marked MISS above are fixed.\n");
        ringfence::exit_code::UNSUPPORTED
    };
    crate::emit(&out);
    code
}
