//! `ringfence explain`: the effective policy, and which layer enforces each rule, as the
//! backend says.

use crate::args::ExplainArgs;
use crate::report;
use ringfence::exit_code;
use ringfence_audit::untrusted::{lines_for_terminal, to_json_pretty, EVENT_CAP};

pub fn explain(args: ExplainArgs) -> i32 {
    let policy = match ringfence::load_policy(&args.policy.sources(), args.policy.overrides()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return exit_code::POLICY;
        }
    };
    // Like `run`, a policy whose sandbox can't be built is an error, whatever the format.
    let rendered = match text(&policy) {
        Ok(text) => text,
        Err(e) => {
            report(&e);
            return e.exit_code();
        }
    };
    // Paths, names and values from config files (a project's may have been written by an earlier
    // run) are shown escaped and bounded, in both formats.
    let text = if args.json { to_json_pretty(&policy, EVENT_CAP).unwrap_or_default() + "\n" } else { rendered };
    crate::emit(&text);
    0
}

/// The policy as `explain` prints it, for a terminal or an agent: what the backend says of
/// each rule, escaped and bounded.
pub fn text(policy: &ringfence::Policy) -> Result<String, ringfence::Error> {
    Ok(lines_for_terminal(&ringfence::explain(policy)?.render(), EVENT_CAP))
}
