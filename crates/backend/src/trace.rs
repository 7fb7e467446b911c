//! The launch timeline behind `--trace-launch` and `RINGFENCE_TRACE_LAUNCH=1`: each phase of a
//! launch, as it ends, prints one line on stderr with its monotonic offset from the start of
//! the trace and how long it took (since the previous phase of the same process). Off, a mark
//! costs one atomic load.
//!
//! The sandbox's init is a clone of the supervisor: it inherits the start and its last mark, so
//! its lines share the supervisor's clock (`CLOCK_MONOTONIC`, which namespaces don't change)
//! and its first phase is measured from the clone's last mark before it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The variable that turns the timeline on for any program using the library.
pub const ENV_VAR: &str = "RINGFENCE_TRACE_LAUNCH";

static ON: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();
/// The previous mark of this process, in nanoseconds since `START`.
static LAST: AtomicU64 = AtomicU64::new(0);

/// Starts the timeline now, when `requested` or the environment asks for it; later calls keep
/// the first start.
pub fn start(requested: bool) {
    let by_env = std::env::var_os(ENV_VAR).is_some_and(|v| !v.is_empty() && v != "0");
    if requested || by_env {
        START.get_or_init(Instant::now);
        ON.store(true, Ordering::Relaxed);
    }
}

/// Whether the timeline is on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Marks the end of `phase` (on `side`: "supervisor", "init", ...). One `write` per line, so
/// lines of the supervisor and init interleave whole.
pub fn mark(side: &str, phase: &str) {
    if !enabled() {
        return;
    }
    let Some(start) = START.get() else { return };
    let now = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    let took = now.saturating_sub(LAST.swap(now, Ordering::Relaxed));
    let line =
        format!("ringfence: trace: {:>9.3} ms  {:>7.3} ms  {side}: {phase}\n", now as f64 / 1e6, took as f64 / 1e6);
    let _ = std::io::stderr().write_all(line.as_bytes());
}
