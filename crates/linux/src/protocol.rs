//! What the supervisor and the sandbox's init tell each other, in one place. Three channels:
//!
//! - Memory. Init is a clone of the supervisor: it starts with the [`ChildSetup`] in its copy of
//!   the supervisor's memory, so nothing of it is serialized.
//! - The control socket, a `SOCK_SEQPACKET` pair, one [`Control`] message per packet, each with
//!   at most one descriptor (`SCM_RIGHTS`). Init hands over what it made inside the sandbox, in
//!   this order: the terminal's master side (`--tty`), the gateway's two listening sockets (HTTP,
//!   then SOCKS5; network `allow`), the transparent path's sockets (`capture.rs`), a sock_diag socket of the sandbox's network namespace (when
//!   connect(2) is supervised there). The supervisor then sends "go" with the Landlock ruleset,
//!   and init answers with the seccomp listener (when connect(2) is supervised).
//! - The status pipe: init and the command's process write one [`Status`] line each, the
//!   supervisor reads them. Init's set-up error or "started", the command's exec failure, and
//!   finally how the command ended; init closes its end only by exiting.
//!
//! The child encodes and the supervisor decodes, with the codecs below. The child runs on a copy
//! of the supervisor's memory after a raw clone: it may allocate only because the supervisor is
//! single-threaded when it clones (`spawn`'s requirement), so no other thread can hold the
//! allocator's lock, or any other, in that copy. Encoding takes one small allocation per message.

use crate::caches::FolderId;
use crate::limits::RlimitPlan;
use crate::plan::MountPlan;
use ringfence_audit::{ErrorKind, LaunchError};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Signals the supervisor passes on to the command (through init, which forwards them to the
/// command's process group).
pub const FORWARDED_SIGNALS: &[nix::sys::signal::Signal] = {
    use nix::sys::signal::Signal;
    &[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2]
};

/// What init needs, in its copy of the supervisor's memory: borrowed from `spawn`'s frame,
/// which stays in that copy, unchanged, for init's whole life (init never returns into it).
pub(crate) struct ChildSetup<'a> {
    pub program: &'a OsStr,
    pub args: &'a [OsString],
    pub env: &'a [(OsString, OsString)],
    pub cwd: &'a Path,
    pub plan: &'a MountPlan,
    /// Each cache overlay's path and the identities of its lower, upper and work folders.
    pub overlay_ids: Vec<(PathBuf, [FolderId; 3])>,
    pub allow_ptrace: bool,
    pub landlock_abi: i32,
    pub rlimits: RlimitPlan,
    /// The pid namespace's pid_max, when it carries the process cap.
    pub pid_max: Option<u64>,
    pub isolate_network: bool,
    /// Create the gateway's listening sockets on the sandbox's loopback and hand them over.
    pub gateway: bool,
    /// With the gateway: the ports of the transparent path, whose sockets (`capture.rs`) init
    /// makes and hands over after the gateway's.
    pub captured_ports: &'a [u16],
    pub uid: u32,
    pub gid: u32,
    /// Init's end of the control socket.
    pub control: BorrowedFd<'a>,
    /// The status pipe's writing end.
    pub status: BorrowedFd<'a>,
    /// The command's standard streams, where they are not inherited.
    pub stdio: [Option<BorrowedFd<'a>>; 3],
    /// Open a terminal for the command inside the sandbox.
    pub terminal: bool,
    /// connect(2) traps to the supervisor: hand over the seccomp listener (and, in the
    /// sandbox's own network namespace, a sock_diag socket).
    pub supervise_connect: bool,
    /// execve(2) and execveat(2) trap to the supervisor (the exec monitor).
    pub supervise_exec: bool,
    /// The run's cgroup files init writes "0" to (itself) unless it was born in the cgroup.
    pub cgroup_files: &'a [(OwnedFd, PathBuf)],
    /// A session: init keeps the control socket and runs the commands ordered there.
    pub session: bool,
}

/// One line on the status pipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Init set the sandbox up and started the command.
    Started,
    /// The command exited with this code; nothing else of the sandbox runs any more.
    Exited { code: i32 },
    /// The command was killed by this signal; nothing else of the sandbox runs any more.
    Signaled { signal: i32 },
    /// The command's process could not start the program (it then exits with 126 or 127).
    ExecFailed { message: String },
    /// Init's set-up failed; it exits with 125 and the command never starts.
    SetupFailed(LaunchError),
    /// A session's command `id` ended (nothing it started runs any more unless it was started
    /// in the background).
    ExecEnded { id: u64, exit: ringfence_backend::Exit },
}

// The wire format: a tag, then fields, each after a tab; a newline ends the line. A field's
// backslashes, tabs and newlines are escaped (`\\`, `\t`, `\n`), so any text round-trips.
const STARTED: &str = "started";
const EXITED: &str = "exited";
const SIGNALED: &str = "signaled";
const EXEC_FAILED: &str = "exec-failed";
const SETUP_FAILED: &str = "setup-failed";
const EXEC_ENDED: &str = "exec-ended";

impl Status {
    /// The line for the pipe, newline included. Each line goes out in one write(2): a line of at
    /// most PIPE_BUF bytes (the command's exec failure quotes names capped at 1 KiB) never
    /// interleaves with init's.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = Line(Vec::with_capacity(64));
        match self {
            Status::Started => line.tag(STARTED),
            Status::Exited { code } => line.tag(EXITED).number(*code),
            Status::Signaled { signal } => line.tag(SIGNALED).number(*signal),
            Status::ExecFailed { message } => line.tag(EXEC_FAILED).text(message),
            Status::SetupFailed(err) => {
                let kind = match err.kind {
                    ErrorKind::Policy => "policy",
                    ErrorKind::Unsupported => "unsupported",
                    ErrorKind::Internal => "internal",
                };
                let line = line.tag(SETUP_FAILED).text(kind).text(&err.message);
                match &err.remedy {
                    Some(remedy) => line.text(remedy),
                    None => line,
                }
            }
            Status::ExecEnded { id, exit } => {
                let (how, n) = match exit {
                    ringfence_backend::Exit::Code(code) => ("code", *code),
                    ringfence_backend::Exit::Signal(signal) => ("signal", *signal),
                };
                line.tag(EXEC_ENDED).text(&id.to_string()).text(how).number(n)
            }
        };
        line.0.push(b'\n');
        line.0
    }

    /// Reads one line (its newline optional); None for a line this codec did not write.
    pub fn decode(line: &[u8]) -> Option<Status> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let mut fields = line.split(|b| *b == b'\t').map(unescape);
        let tag = fields.next()?;
        let fields: Vec<String> = fields.collect();
        let number = |text: &String| text.parse::<i32>().ok();
        match (tag.as_str(), fields.as_slice()) {
            (STARTED, []) => Some(Status::Started),
            (EXITED, [code]) => Some(Status::Exited { code: number(code)? }),
            (SIGNALED, [signal]) => Some(Status::Signaled { signal: number(signal)? }),
            (EXEC_FAILED, [message]) => Some(Status::ExecFailed { message: message.clone() }),
            (EXEC_ENDED, [id, how, n]) => {
                let exit = match how.as_str() {
                    "code" => ringfence_backend::Exit::Code(number(n)?),
                    "signal" => ringfence_backend::Exit::Signal(number(n)?),
                    _ => return None,
                };
                Some(Status::ExecEnded { id: id.parse().ok()?, exit })
            }
            (SETUP_FAILED, [kind, message, remedy @ ..]) if remedy.len() <= 1 => {
                let kind = match kind.as_str() {
                    "policy" => ErrorKind::Policy,
                    "unsupported" => ErrorKind::Unsupported,
                    _ => ErrorKind::Internal,
                };
                Some(Status::SetupFailed(LaunchError::new(kind, message.clone(), remedy.first().cloned())))
            }
            _ => None,
        }
    }
}

/// A status line being encoded: the tag, then each field after a tab.
struct Line(Vec<u8>);

impl Line {
    fn tag(&mut self, tag: &str) -> &mut Line {
        self.0.extend_from_slice(tag.as_bytes());
        self
    }

    fn number(&mut self, n: i32) -> &mut Line {
        use std::io::Write;
        let _ = write!(self.0, "\t{n}");
        self
    }

    fn text(&mut self, text: &str) -> &mut Line {
        self.0.push(b'\t');
        for &b in text.as_bytes() {
            match b {
                b'\\' => self.0.extend_from_slice(b"\\\\"),
                b'\t' => self.0.extend_from_slice(b"\\t"),
                b'\n' => self.0.extend_from_slice(b"\\n"),
                _ => self.0.push(b),
            }
        }
        self
    }
}

/// A field, its escapes undone; bytes that are not UTF-8 (which the encoder never writes)
/// become U+FFFD.
fn unescape(field: &[u8]) -> String {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A descriptor init made inside the sandbox and hands to the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handover {
    /// The master side of the command's terminal, for the relay.
    Terminal,
    /// A listening socket on the sandbox's loopback, for the gateway to serve.
    GatewaySocket,
    /// A socket of the transparent path (`capture.rs`), for the gateway to serve.
    CaptureSocket,
    /// A sock_diag netlink socket that answers for the sandbox's network namespace.
    SockDiag,
    /// The seccomp filter's listener, for the handler of trapped calls.
    SeccompListener,
}

impl Handover {
    const ALL: [Handover; 5] = [
        Handover::Terminal,
        Handover::GatewaySocket,
        Handover::CaptureSocket,
        Handover::SockDiag,
        Handover::SeccompListener,
    ];

    fn tag(self) -> u8 {
        match self {
            Handover::Terminal => b't',
            Handover::GatewaySocket => b'l',
            Handover::CaptureSocket => b'c',
            Handover::SockDiag => b'd',
            Handover::SeccompListener => b'n',
        }
    }

    /// Its name in error messages.
    pub fn what(self) -> &'static str {
        match self {
            Handover::Terminal => "terminal",
            Handover::GatewaySocket => "gateway socket",
            Handover::CaptureSocket => "transparent-path socket",
            Handover::SockDiag => "sock_diag socket",
            Handover::SeccompListener => "seccomp listener",
        }
    }
}

/// One message on the control socket. `Fd` is a borrowed descriptor when sending, an owned one
/// when received.
#[derive(Debug)]
pub(crate) enum Control<Fd> {
    /// Supervisor to init: start the command, confined by this Landlock ruleset if there is one.
    Go { ruleset: Option<Fd> },
    /// Init to supervisor: a descriptor it made inside the sandbox.
    Handover(Handover, Fd),
}

const GO: u8 = b'g';

impl<Fd> Control<Fd> {
    /// The packet's one byte, and the descriptor that goes with it.
    fn encode(&self) -> (u8, Option<&Fd>) {
        match self {
            Control::Go { ruleset } => (GO, ruleset.as_ref()),
            Control::Handover(what, fd) => (what.tag(), Some(fd)),
        }
    }

    /// The message of a packet; None for one this codec did not write (a handover must carry
    /// its descriptor).
    fn decode(data: &[u8], fd: Option<Fd>) -> Option<Self> {
        let [tag] = data else { return None };
        if *tag == GO {
            return Some(Control::Go { ruleset: fd });
        }
        let what = Handover::ALL.into_iter().find(|h| h.tag() == *tag)?;
        Some(Control::Handover(what, fd?))
    }
}

impl Control<BorrowedFd<'_>> {
    pub fn send(&self, socket: BorrowedFd) -> io::Result<()> {
        let (tag, fd) = self.encode();
        crate::sys::send_with_fd(socket, &[tag], fd.map(|fd| fd.as_raw_fd()))
    }
}

impl Control<OwnedFd> {
    /// The next message; None for a packet that is no message (or the peer's end closed).
    pub fn receive(socket: BorrowedFd) -> io::Result<Option<Self>> {
        let mut data = [0u8; 16];
        let (n, fd) = crate::sys::recv_with_fd(socket, &mut data)?;
        Ok(Control::decode(&data[..n], fd))
    }
}

/// Receives the descriptor init hands over next, which must be `want`.
pub(crate) fn receive_handover(socket: BorrowedFd, want: Handover) -> Result<OwnedFd, LaunchError> {
    match Control::receive(socket) {
        Ok(Some(Control::Handover(got, fd))) if got == want => Ok(fd),
        _ => Err(LaunchError::internal(format!("the sandbox's init sent no {}", want.what()))),
    }
}

/// What a session's supervisor tells init after "go", one per packet on the control socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Run a command; its three standard streams travel with the packet (`SCM_RIGHTS`).
    Exec(ExecOrder),
    /// Pass `signal` to command `id` (SIGKILL ends it and everything it started).
    Signal { id: u64, signal: i32 },
}

/// One command of a session, as init runs it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ExecOrder {
    pub id: u64,
    pub background: bool,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
}

const EXEC: u8 = b'x';
const SIGNAL: u8 = b'k';
/// The largest order init reads: arguments and environment of one command.
pub(crate) const MAX_ORDER: usize = 1 << 20;

impl Order {
    /// The packet: a tag, the id, then fields each prefixed by its length (u32, little endian).
    pub fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::with_capacity(256);
        let field = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend((bytes.len() as u32).to_le_bytes());
            out.extend(bytes);
        };
        match self {
            Order::Signal { id, signal } => {
                out.push(SIGNAL);
                out.extend(id.to_le_bytes());
                out.extend(signal.to_le_bytes());
            }
            Order::Exec(e) => {
                out.extend([EXEC, e.background as u8]);
                out.extend(e.id.to_le_bytes());
                out.extend((e.args.len() as u32).to_le_bytes());
                out.extend((e.env.len() as u32).to_le_bytes());
                field(&mut out, e.program.as_bytes());
                field(&mut out, e.cwd.as_os_str().as_bytes());
                for arg in &e.args {
                    field(&mut out, arg.as_bytes());
                }
                for (k, v) in &e.env {
                    field(&mut out, k.as_bytes());
                    field(&mut out, v.as_bytes());
                }
            }
        }
        out
    }

    /// The order of a packet; None for one this codec did not write.
    pub fn decode(data: &[u8]) -> Option<Order> {
        let mut r = Reader(data);
        match r.take(1)?[0] {
            SIGNAL => Some(Order::Signal { id: r.u64()?, signal: r.u32()? as i32 }),
            EXEC => {
                let background = r.take(1)?[0] != 0;
                let id = r.u64()?;
                let (nargs, nenv) = (r.u32()? as usize, r.u32()? as usize);
                let program = r.field()?;
                let cwd = PathBuf::from(r.field()?);
                let args = (0..nargs).map(|_| r.field()).collect::<Option<Vec<_>>>()?;
                let env = (0..nenv).map(|_| Some((r.field()?, r.field()?))).collect::<Option<Vec<_>>>()?;
                r.0.is_empty().then_some(Order::Exec(ExecOrder { id, background, program, args, env, cwd }))
            }
            _ => None,
        }
    }
}

/// Reads an order's fields, refusing any that runs past the packet.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn field(&mut self) -> Option<OsString> {
        use std::os::unix::ffi::OsStrExt;
        let n = self.u32()? as usize;
        Some(OsStr::from_bytes(self.take(n)?).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    const HOSTILE: &str = "tab\there\nnew line\\t not an escape \\\\ \u{1b}[31m é \\";

    #[test]
    fn status_lines_round_trip() {
        let messages = [
            Status::Started,
            Status::Exited { code: 0 },
            Status::Exited { code: -1 },
            Status::Signaled { signal: 9 },
            Status::ExecFailed { message: format!("{HOSTILE}: command not found") },
            Status::ExecFailed { message: String::new() },
            Status::SetupFailed(LaunchError::policy(HOSTILE, format!("help\t{HOSTILE}"))),
            Status::SetupFailed(LaunchError::unsupported("no", "")),
            Status::SetupFailed(LaunchError::internal(HOSTILE)),
        ];
        for message in messages {
            let line = message.encode();
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "{message:?}");
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(Status::decode(&line), Some(message.clone()), "{:?}", String::from_utf8_lossy(&line));
        }
    }

    #[test]
    fn foreign_status_lines_are_ignored() {
        for line in [
            &b""[..],
            b"\n",
            b"exited",
            b"exited\tzero",
            b"exited\t1\t2",
            b"signaled\t",
            b"setup-failed\tpolicy",
            b"setup-failed\tpolicy\tm\tr\textra",
            b"X\texit\t0",
            b"started\tnow",
        ] {
            assert_eq!(Status::decode(line), None, "{:?}", String::from_utf8_lossy(line));
        }
        // Bytes that are not UTF-8 do not stop the reader.
        let odd = Status::decode(b"exec-failed\t\xff\xfe");
        assert_eq!(odd, Some(Status::ExecFailed { message: "\u{fffd}\u{fffd}".into() }));
    }

    #[test]
    fn an_exec_failure_fits_one_atomic_write() {
        let name = "x".repeat(64 * 1024);
        let shown = ringfence_audit::untrusted::for_terminal(&name);
        let line = Status::ExecFailed { message: format!("{shown}: command not found") }.encode();
        assert!(line.len() <= libc::PIPE_BUF, "{}", line.len());
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap()
    }

    /// The same open file: device and inode.
    fn identity(fd: BorrowedFd) -> (u64, u64) {
        let st = nix::sys::stat::fstat(fd).unwrap();
        (st.st_dev, st.st_ino)
    }

    #[test]
    fn control_messages_round_trip_with_their_descriptors() {
        let (init, supervisor) = pair();
        let file = std::fs::File::open("/").unwrap();
        for what in Handover::ALL {
            Control::Handover(what, file.as_fd()).send(init.as_fd()).unwrap();
            let got = receive_handover(supervisor.as_fd(), what).unwrap();
            assert_eq!(identity(got.as_fd()), identity(file.as_fd()), "{what:?}");
            assert_ne!(got.as_raw_fd(), file.as_raw_fd());
        }
        Control::Go { ruleset: Some(file.as_fd()) }.send(supervisor.as_fd()).unwrap();
        match Control::receive(init.as_fd()).unwrap() {
            Some(Control::Go { ruleset: Some(fd) }) => assert_eq!(identity(fd.as_fd()), identity(file.as_fd())),
            other => panic!("{other:?}"),
        }
        Control::Go { ruleset: None }.send(supervisor.as_fd()).unwrap();
        assert!(matches!(Control::receive(init.as_fd()).unwrap(), Some(Control::Go { ruleset: None })));
    }

    #[test]
    fn unexpected_control_messages_are_refused() {
        let (init, supervisor) = pair();
        let file = std::fs::File::open("/").unwrap();
        Control::Handover(Handover::SockDiag, file.as_fd()).send(init.as_fd()).unwrap();
        let err = receive_handover(supervisor.as_fd(), Handover::Terminal).unwrap_err();
        assert_eq!(err.message, "the sandbox's init sent no terminal");
        // A handover without its descriptor, an unknown tag, an empty or a longer packet.
        for packet in [&b"t"[..], b"x", b"", b"gg"] {
            crate::sys::send_with_fd(init.as_fd(), packet, None).unwrap();
            assert!(Control::receive(supervisor.as_fd()).unwrap().is_none(), "{packet:?}");
        }
        drop(init);
        assert!(receive_handover(supervisor.as_fd(), Handover::SeccompListener).is_err());
    }

    #[test]
    fn session_orders_round_trip_and_truncations_are_refused() {
        let exec = Order::Exec(ExecOrder {
            id: 7,
            background: true,
            program: HOSTILE.into(),
            args: vec!["".into(), HOSTILE.into()],
            env: vec![("A".into(), "b=c".into())],
            cwd: "/work/x".into(),
        });
        for order in [exec, Order::Signal { id: u64::MAX, signal: 15 }] {
            let packet = order.encode();
            assert_eq!(Order::decode(&packet), Some(order));
            for cut in 0..packet.len() {
                assert_eq!(Order::decode(&packet[..cut]), None);
            }
        }
        let ended = Status::ExecEnded { id: 3, exit: ringfence_backend::Exit::Signal(9) };
        assert_eq!(Status::decode(&ended.encode()), Some(ended));
    }
}
