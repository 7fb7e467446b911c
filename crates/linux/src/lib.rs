//! ringfence's Linux backend. The supervisor plans the mount view, the seccomp filter and the
//! limits, then clones a child into new namespaces; the child, pid 1 of its pid namespace,
//! builds the view, confines itself and runs the command. See docs/ARCHITECTURE.md.

#![cfg(target_os = "linux")]
#![deny(clippy::too_many_lines, clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

mod api;
mod backend;
mod cache_plan;
mod caches;
mod canon;
mod capture;
mod cgroup;
mod cleaner;
mod enforcement;
mod error;
mod explain;
mod features;
mod gitcheck;
mod host;
mod init;
mod landlock_rules;
mod launch;
mod limits;
mod mount_plan;
mod mounts;
mod notify;
mod output;
mod placeholder;
mod plan;
mod protocol;
mod pty;
mod resolve;
mod rollback;
mod roots;
mod sandbox;
mod seccomp;
mod secrets;
mod served;
mod session;
mod sys;
mod trace;
mod view;

pub use backend::{Linux, Prepared, Sandbox, Signals};
