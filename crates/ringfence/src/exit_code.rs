//! ringfence's own exit codes. Any other code is the command's; 128+N means signal N.

/// The post-run review of the writable roots could not finish: something the run left there
/// (a git hook or config, a nested protected file) may still run code when the user's tools
/// are used. stderr names the path.
pub const REVIEW: i32 = 120;
/// The policy is invalid: a config file, a flag, or a path it names.
pub const POLICY: i32 = 121;
/// The machine can't enforce the policy (a kernel feature is missing); see `ringfence check`.
pub const UNSUPPORTED: i32 = 122;
/// A resource limit ended the run: memory (the command was OOM-killed) or processes.
pub const LIMIT: i32 = 123;
/// The run's timeout expired; the command got SIGTERM, then SIGKILL.
pub const TIMEOUT: i32 = 124;
/// ringfence failed for another reason (a bug or an unexpected system error).
pub const INTERNAL: i32 = 125;
/// The command was found but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found in the sandbox's PATH.
pub const NOT_FOUND: i32 = 127;
