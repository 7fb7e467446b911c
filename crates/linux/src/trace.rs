//! The Linux launch's marks on the launch timeline (`--trace-launch`, see
//! `ringfence_backend::trace`), by side.

/// Marks the end of a phase of the supervisor's.
pub(crate) fn supervisor(phase: &str) {
    ringfence_backend::trace::mark("supervisor", phase);
}

/// Marks the end of a phase of init's set-up.
pub(crate) fn init(phase: &str) {
    ringfence_backend::trace::mark("init", phase);
}
