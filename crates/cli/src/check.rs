//! `ringfence check`: what this machine can enforce, and how to get more.

#[cfg(target_os = "linux")]
pub fn check() -> i32 {
    let features = ringfence::linux::Features::probe();
    println!("ringfence {} on Linux {}", env!("CARGO_PKG_VERSION"), features.kernel);
    println!();
    let mut missing_required = false;
    for item in features.report() {
        let mark = if item.available { "ok  " } else { "MISS" };
        println!("[{mark}] {:<16} {}", item.name, item.detail);
        if let Some(remedy) = &item.remedy {
            println!("       {:<16} → {remedy}", "");
        }
        if !item.available && matches!(item.name, "user namespaces" | "seccomp") {
            missing_required = true;
        }
    }
    println!();
    if missing_required {
        println!("ringfence can't run here until the items marked MISS above are fixed.");
        ringfence::exit_code::UNSUPPORTED
    } else {
        println!("ringfence runs here; items marked MISS need --allow-degraded when the policy asks for them.");
        0
    }
}

#[cfg(not(target_os = "linux"))]
pub fn check() -> i32 {
    println!("ringfence {}: this platform's backend is not available yet.", env!("CARGO_PKG_VERSION"));
    ringfence::exit_code::UNSUPPORTED
}
