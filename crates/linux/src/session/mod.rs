//! Sessions on the host: where their sockets live, how they are found, listed and stopped.
//! A session is served by a process of its own (`server.rs`) that holds the sandbox; commands
//! reach it through a `SOCK_SEQPACKET` socket (`client.rs`).
//!
//! The sockets live in one folder per user, mode 0700: `$XDG_RUNTIME_DIR/ringfence-sessions`,
//! else `/tmp/ringfence-sessions-UID`. A folder that is a link, another user's, or open to
//! others is refused. Beside each socket `ID.sock` lies `ID.json`, what `list` shows. The
//! server checks each peer's uid (`SO_PEERCRED`) and the client checks the server's.

mod client;
mod folder;
mod server;
mod wire;

pub(crate) use client::{exec, stop};
pub(crate) use folder::list;
pub(crate) use server::start;
