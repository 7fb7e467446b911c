//! A hermetic test internet for the network tests: two network namespaces that this test
//! process builds and owns, with real HTTP, TLS and DNS servers, and a record of everything
//! those servers saw, so a test can check the far side of every connection.
//!
//! ```text
//!   "host" namespace H (ringfence runs here)          "internet" namespace I
//!   lo 127.0.0.1 ::1                                  rfi 198.51.100.2/24 2001:db8:1::2/64
//!   rfh 198.51.100.1/24 2001:db8:1::1/64  <-- veth -->    192.0.2.10-.13 .53  203.0.113.10
//!   routes to 192.0.2.0/24, 203.0.113.0/24,               169.254.169.254  10.0.0.1
//!     169.254.169.254, 10.0.0.1, 2001:db8::/64,           2001:db8::10 ::11  fd00:ec2::254
//!     fd00:ec2::254 via I; no default route           HTTP :80 and TLS :443 on every address
//!   local route 203.0.113.200/32 dev lo (AnyIP)       DNS 192.0.2.53:53 (UDP and TCP)
//!   /etc/resolv.conf: nameserver 192.0.2.53
//!   HTTP :80 and TLS :443 on every address
//!     (127.0.0.1, ::1, 198.51.100.1 and, through the
//!     local route, 203.0.113.200: SSRF targets)
//! ```
//!
//! H has no default route, so nothing the lab does leaves the two namespaces. Each namespace is
//! held by a `sleep` that dies with this test process (PR_SET_PDEATHSIG). The servers are
//! threads of the test process whose sockets were created after `setns` into the namespace.
//!
//! Names under `.test` (see [`answers`]): `allowed.test` 192.0.2.10, `other.test` 192.0.2.11,
//! `far.test` 203.0.113.10, `v6.test` 2001:db8::10, `loop.test` 127.0.0.1, `loop6.test` ::1,
//! `self.test` 198.51.100.1, `meta.test` 169.254.169.254, `meta6.test` fd00:ec2::254,
//! `lan.test` 10.0.0.1, `mapped.test` ::ffff:127.0.0.1, `nat64.test` 64:ff9b::7f00:1,
//! `mixed.test` both 192.0.2.10 and 127.0.0.1, `anyip.test` 203.0.113.200 (delivered to H
//! itself by its local route), `*.wild.test` 192.0.2.10 (for names no other test uses),
//! `*.corp.test` 192.0.2.12 (names a resolver search list would make), and `*.rebind.test`,
//! whose A answer alternates between 192.0.2.10 and 127.0.0.1. Three coding agents' API hosts
//! (`api.anthropic.com`, `api.openai.com`, `generativelanguage.googleapis.com`) are 192.0.2.13.
//!
//! The HTTP servers read a connection's requests strictly by their framing (Content-Length or
//! chunked), so bytes past a body are read as the next request, and they end a line at a bare
//! LF, as lenient servers do: what a proxy lets through after a body is seen as a request. The
//! TLS servers record every ClientHello of a connection, also the second one a
//! HelloRetryRequest asks for.

#![allow(dead_code)]

use crate::common::{bounded_output, scratch_root, Env, RUN_LIMIT};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use sha2::{Digest, Sha256};

/// The address of the lab's resolver, and the one H's /etc/resolv.conf names.
pub const RESOLVER: &str = "192.0.2.53";
/// H's own address on the link to I.
pub const HOST_ADDR: &str = "198.51.100.1";

/// Which namespace a server runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// H, where ringfence runs: its listeners are SSRF targets that must never be reached.
    Host,
    /// I, the test internet.
    Internet,
}

/// A TCP connection a lab server accepted.
#[derive(Clone, Debug)]
pub struct Conn {
    pub side: Side,
    /// The address that was connected to.
    pub local: SocketAddr,
}

/// A TLS ClientHello a lab server read.
#[derive(Clone)]
pub struct Hello {
    pub side: Side,
    pub local: SocketAddr,
    /// The server name as rustls reads it, lowercase.
    pub sni: Option<String>,
    /// Whether it followed an earlier ClientHello on the same connection (the second hello a
    /// HelloRetryRequest asks for).
    pub retry: bool,
    /// The handshake message as it arrived.
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("side", &self.side)
            .field("local", &self.local)
            .field("sni", &self.sni)
            .field("retry", &self.retry)
            .field("raw", &format_args!("{} bytes", self.raw.len()))
            .finish()
    }
}

/// An HTTP request head a lab server read.
#[derive(Clone, Debug)]
pub struct Request {
    pub side: Side,
    pub local: SocketAddr,
    pub tls: bool,
    pub method: String,
    pub target: String,
    pub host: String,
    /// Whether it carried `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Whether its body was chunked.
    pub chunked: bool,
}

/// A question the lab resolver was asked.
#[derive(Clone, Debug)]
pub struct Query {
    /// Lowercase, without the final dot.
    pub name: String,
    pub qtype: String,
    pub tcp: bool,
}

/// Everything the lab's servers saw.
#[derive(Default)]
struct Log {
    conns: Vec<Conn>,
    hellos: Vec<Hello>,
    /// The first bytes each TLS connection received (up to TLS_BYTES_KEPT), read as they
    /// arrived, whatever their records declare.
    tls_bytes: Vec<Vec<u8>>,
    requests: Vec<Request>,
    queries: Vec<Query>,
    /// Datagrams to the resolver that were not DNS messages.
    datagrams: Vec<Vec<u8>>,
    /// A-record lookups of each `*.rebind.test` name so far.
    rebinds: HashMap<String, u32>,
    /// What each connection to the line server (port 22) sent, up to 4 KiB.
    lines: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams the UDP servers (ports 443 and 123) got: where to, and what.
    udp: Vec<(SocketAddr, Vec<u8>)>,
}

/// The lab: two namespaces, their servers, the CA, and the record of what was seen.
pub struct Lab {
    host_pid: u32,
    internet_pid: u32,
    /// The test CA's certificate, readable by every identity.
    pub ca_pem: PathBuf,
    log: Arc<Mutex<Log>>,
}

/// The lab of this test process, built on first use; `None` (after a note on stderr) when the
/// tests don't run as root, which building namespaces and veth links needs.
pub fn lab() -> Option<&'static Lab> {
    static LAB: OnceLock<Option<Lab>> = OnceLock::new();
    let lab = LAB
        .get_or_init(|| {
            if !nix::unistd::geteuid().is_root() {
                return None;
            }
            Some(Lab::build())
        })
        .as_ref();
    if lab.is_none() {
        eprintln!("SKIP: the network lab needs root (network namespaces and veth links); CI runs as root");
    }
    lab
}

impl Lab {
    fn build() -> Lab {
        let dir = scratch_root().join("netlab");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let certs = Arc::new(Certs::new());
        let ca_pem = dir.join("ca.pem");
        write_public(&ca_pem, certs.ca_pem.as_bytes());
        let resolv = dir.join("resolv.conf");
        write_public(&resolv, format!("nameserver {RESOLVER}\noptions timeout:2 attempts:1\n").as_bytes());

        let (host_pid, internet_pid) = spawn_holders();
        let lab = Lab { host_pid, internet_pid, ca_pem, log: Arc::default() };
        lab.configure(&resolv);
        lab.start_servers(&certs);
        lab
    }

    /// Links the namespaces, gives I its addresses and H its routes and resolver.
    fn configure(&self, resolv: &Path) {
        let (h, i) = (self.host_pid, self.internet_pid);
        let host = format!(
            "set -e
            ip link set lo up
            ip link add rfh type veth peer name rfi netns {i}
            ip addr add {HOST_ADDR}/24 dev rfh
            ip -6 addr add 2001:db8:1::1/64 dev rfh nodad
            ip link set rfh up
            ip route add local 203.0.113.200/32 dev lo
            for net in 192.0.2.0/24 203.0.113.0/24 169.254.169.254/32 10.0.0.1/32; do
                ip route add $net via 198.51.100.2
            done
            for net in 2001:db8::/64 fd00:ec2::254/128; do
                ip -6 route add $net via 2001:db8:1::2
            done
            mount --bind {} /etc/resolv.conf",
            resolv.display()
        );
        sh_in(h, true, &host);
        let internet = "set -e
            ip link set lo up
            ip addr add 198.51.100.2/24 dev rfi
            ip -6 addr add 2001:db8:1::2/64 dev rfi nodad
            for a in 192.0.2.10 192.0.2.11 192.0.2.12 192.0.2.13 192.0.2.53 203.0.113.10 169.254.169.254 10.0.0.1; do
                ip addr add $a/32 dev rfi
            done
            for a in 2001:db8::10 2001:db8::11 fd00:ec2::254; do
                ip -6 addr add $a/128 dev rfi nodad
            done
            ip link set rfi up";
        sh_in(i, false, internet);
    }

    fn start_servers(&self, certs: &Arc<Certs>) {
        for (side, pid) in [(Side::Host, self.host_pid), (Side::Internet, self.internet_pid)] {
            // Dual-stack listeners on every address of the namespace.
            let (http, tls) = in_netns(pid, || {
                (TcpListener::bind("[::]:80").expect("bind :80"), TcpListener::bind("[::]:443").expect("bind :443"))
            });
            let log = self.log.clone();
            serve_tcp(http, side, log.clone(), |stream, ctx| {
                serve_http(BufReader::new(stream), &ctx);
            });
            let certs = certs.clone();
            serve_tcp(tls, side, log, move |stream, ctx| serve_tls(stream, &ctx, &certs));
        }
        self.start_other_servers();
        let (udp, tcp) = in_netns(self.internet_pid, || {
            let addr = format!("{RESOLVER}:53");
            (UdpSocket::bind(&addr).expect("bind dns/udp"), TcpListener::bind(&addr).expect("bind dns/tcp"))
        });
        let log = self.log.clone();
        std::thread::spawn(move || dns_udp(udp, log));
        serve_tcp(tcp, Side::Internet, self.log.clone(), |stream, ctx| dns_tcp(stream, &ctx.log));
    }

    /// In I, on every address: a line server on port 22 that greets like an SSH server, records
    /// what it gets and echoes it; a server on port 2323 that resets every connection after
    /// its first bytes; UDP servers on ports 443 (QUIC) and 123 (NTP) that record datagrams.
    fn start_other_servers(&self) {
        let (lines, resets, quic, ntp) = in_netns(self.internet_pid, || {
            (
                TcpListener::bind("[::]:22").expect("bind :22"),
                TcpListener::bind("[::]:2323").expect("bind :2323"),
                UdpSocket::bind("[::]:443").expect("bind udp :443"),
                UdpSocket::bind("[::]:123").expect("bind udp :123"),
            )
        });
        serve_tcp(lines, Side::Internet, self.log.clone(), |mut stream, ctx| {
            let _ = stream.write_all(b"SSH-2.0-ringfence-lab\r\n");
            let mut buf = [0u8; 4096];
            let mut entry = None;
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                    break;
                }
                let mut log = ctx.log.lock().unwrap();
                let at = *entry.get_or_insert_with(|| {
                    log.lines.push((ctx.local, Vec::new()));
                    log.lines.len() - 1
                });
                let seen = &mut log.lines[at].1;
                if seen.len() < 4096 {
                    seen.extend_from_slice(&buf[..n]);
                }
            }
        });
        serve_tcp(resets, Side::Internet, self.log.clone(), |mut stream, _| {
            let mut buf = [0u8; 5];
            let _ = stream.read(&mut buf);
            let _ = linger_zero(&stream);
        });
        for socket in [quic, ntp] {
            let log = self.log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((n, _)) = socket.recv_from(&mut buf) {
                    let local = socket.local_addr().unwrap();
                    log.lock().unwrap().udp.push((local, buf[..n].to_vec()));
                }
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Running things in H.

    /// The prefix that enters H (network and mount namespaces) in `env`'s workspace; with
    /// `files`, in a mount namespace of its own where each `(file, path)` is mounted over H's
    /// `path` (say, another /etc/resolv.conf), for this command alone.
    fn enter(&self, env: &Env, files: &[(&Path, &str)]) -> Vec<String> {
        let pid = self.host_pid;
        let mut prefix = vec![
            "nsenter".into(),
            format!("--net=/proc/{pid}/ns/net"),
            format!("--mount=/proc/{pid}/ns/mnt"),
            format!("--wd={}", env.ws.display()),
            "--".into(),
        ];
        if !files.is_empty() {
            let mounts: String =
                files.iter().map(|(file, path)| format!("mount --bind '{}' '{path}' && ", file.display())).collect();
            prefix.extend(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c"].map(String::from));
            prefix.extend([format!("{mounts}exec \"$@\""), "sh".into()]);
        }
        prefix
    }

    /// `argv` in H as `env`'s identity, with the harness's clean environment (and `files` as
    /// in [`Lab::enter`]).
    pub fn in_host(&self, env: &Env, files: &[(&Path, &str)], argv: &[&OsStr]) -> Command {
        let prefix = self.enter(env, files);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        env.command_via(&prefix, argv)
    }

    /// `ringfence ARGS...` in H as `env`'s identity.
    pub fn ringfence(&self, env: &Env, args: &[&str]) -> Command {
        let mut cmd = self.in_host(env, &[], &[crate::common::binary().as_os_str()]);
        cmd.args(args);
        cmd
    }

    /// `ringfence run ARGS -- python3 -c CODE ARGV...` in H (with `files` as in
    /// [`Lab::enter`]), bounded by [`RUN_LIMIT`].
    pub fn run_py(&self, env: &Env, files: &[(&Path, &str)], args: &[&str], code: &str, argv: &[&str]) -> Output {
        let mut cmd = self.in_host(env, files, &[crate::common::binary().as_os_str()]);
        cmd.arg("run").args(args).args(["--", "python3", "-c", code]).args(argv);
        bounded_output(cmd, RUN_LIMIT)
    }

    /// `sh -c SCRIPT` in H, NOT sandboxed, as `env`'s identity: the control that shows what a
    /// probe does without ringfence.
    pub fn host_sh(&self, env: &Env, script: &str) -> Output {
        let argv = ["sh", "-c", script].map(OsStr::new);
        bounded_output(self.in_host(env, &[], &argv), RUN_LIMIT)
    }

    /// `python3 -c CODE ARGV...` in H (with `files` as in [`Lab::enter`]), NOT sandboxed, as
    /// `env`'s identity.
    pub fn host_py(&self, env: &Env, files: &[(&Path, &str)], code: &str, argv: &[&str]) -> Output {
        let mut all = vec!["python3", "-c", code];
        all.extend(argv);
        let all: Vec<&OsStr> = all.into_iter().map(OsStr::new).collect();
        bounded_output(self.in_host(env, files, &all), RUN_LIMIT)
    }

    /// A plain `GET /hello` to `addr`, sent from a socket in `side`'s namespace; returns the
    /// response body. For the controls that prove a listener answers.
    pub fn probe(&self, side: Side, addr: SocketAddr, marker: &str) -> io::Result<String> {
        let pid = match side {
            Side::Host => self.host_pid,
            Side::Internet => self.internet_pid,
        };
        let marker = marker.to_string();
        in_netns(pid, move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET /hello?m={marker} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or(out))
        })
    }

    // -----------------------------------------------------------------------------------------
    // What the servers saw.

    /// Connections accepted so far on `side` at `ip` (any port).
    pub fn connections_to(&self, side: Side, ip: IpAddr) -> usize {
        self.log.lock().unwrap().conns.iter().filter(|c| c.side == side && c.local.ip() == ip).count()
    }

    /// Connections accepted so far anywhere in `side`.
    pub fn connections_on(&self, side: Side) -> usize {
        self.log.lock().unwrap().conns.iter().filter(|c| c.side == side).count()
    }

    /// HTTP requests whose target or Host header contains `marker`.
    pub fn requests_with(&self, marker: &str) -> Vec<Request> {
        let log = self.log.lock().unwrap();
        log.requests.iter().filter(|r| r.target.contains(marker) || r.host.contains(marker)).cloned().collect()
    }

    /// ClientHellos whose SNI contains `fragment` (case-insensitive).
    pub fn hellos_with(&self, fragment: &str) -> Vec<Hello> {
        let fragment = fragment.to_ascii_lowercase();
        let log = self.log.lock().unwrap();
        log.hellos.iter().filter(|h| h.sni.as_deref().is_some_and(|s| s.contains(&fragment))).cloned().collect()
    }

    /// ClientHellos whose bytes contain `fragment` (case-insensitive) anywhere, whichever
    /// entry of their server_name list a server would use.
    pub fn hellos_mentioning(&self, fragment: &str) -> Vec<Hello> {
        let fragment = fragment.to_ascii_lowercase();
        let log = self.log.lock().unwrap();
        log.hellos
            .iter()
            .filter(|h| h.raw.to_ascii_lowercase().windows(fragment.len()).any(|w| w == fragment.as_bytes()))
            .cloned()
            .collect()
    }

    /// How many TLS connections received bytes containing `fragment` (case-insensitive).
    pub fn tls_bytes_mentioning(&self, fragment: &str) -> usize {
        let fragment = fragment.to_ascii_lowercase();
        let log = self.log.lock().unwrap();
        log.tls_bytes
            .iter()
            .filter(|b| b.to_ascii_lowercase().windows(fragment.len()).any(|w| w == fragment.as_bytes()))
            .count()
    }

    /// What the line server (port 22) got on connections whose bytes contain `fragment`.
    pub fn lines_with(&self, fragment: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let texts = log.lines.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned());
        texts.filter(|t| t.contains(fragment)).collect()
    }

    /// Datagrams the UDP servers got whose bytes contain `fragment`.
    pub fn datagrams_with(&self, fragment: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.udp.iter().filter(|(_, b)| String::from_utf8_lossy(b).contains(fragment)).count()
    }

    /// Questions (and stray datagrams) the resolver got that contain `fragment`.
    pub fn queries_with(&self, fragment: &str) -> Vec<Query> {
        let fragment = fragment.to_ascii_lowercase();
        let log = self.log.lock().unwrap();
        let mut out: Vec<Query> = log.queries.iter().filter(|q| q.name.contains(&fragment)).cloned().collect();
        for d in &log.datagrams {
            let text = String::from_utf8_lossy(d).to_ascii_lowercase();
            if text.contains(&fragment) {
                out.push(Query { name: text, qtype: "datagram".into(), tcp: false });
            }
        }
        out
    }
}

/// Writes a file every identity can read.
fn write_public(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Starts the holders of H (network and private mount namespace) and I (network namespace).
/// They are spawned from a thread that never ends, because PR_SET_PDEATHSIG fires when the
/// spawning thread exits: they die with this process and no sooner.
fn spawn_holders() -> (u32, u32) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("netlab-holders".into())
        .spawn(move || {
            let holder = |ns: &[&str]| {
                Command::new("setpriv")
                    .args(["--pdeathsig", "KILL", "--", "unshare"])
                    .args(ns)
                    .args(["--", "sleep", "1000000"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawning a namespace holder (setpriv, unshare)")
            };
            let host = holder(&["--net", "--mount", "--propagation", "private"]);
            let internet = holder(&["--net"]);
            tx.send((host.id(), internet.id())).unwrap();
            let _keep = (host, internet);
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    let (host, internet) = rx.recv().unwrap();
    // The holders are ready once `unshare` has exec'd `sleep`.
    for pid in [host, internet] {
        let ready = crate::common::poll_until(Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        assert!(ready, "the namespace holder {pid} did not start");
    }
    (host, internet)
}

/// Runs a root shell script in `pid`'s network namespace (and mount namespace with `mount`).
#[track_caller]
fn sh_in(pid: u32, mount: bool, script: &str) {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{pid}/ns/net"));
    if mount {
        cmd.arg(format!("--mount=/proc/{pid}/ns/mnt"));
    }
    let out = cmd.args(["--", "sh", "-c", script]).output().expect("nsenter");
    assert!(
        out.status.success(),
        "setting up the network lab failed:\n{script}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a fresh thread inside `pid`'s network namespace (namespaces are per thread, so
/// the rest of the process stays where it was). Sockets `f` creates belong to that namespace.
fn in_netns<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("opening the lab's namespace");
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("the lab thread panicked")
}

/// What a connection handler knows about its connection.
#[derive(Clone)]
struct Ctx {
    side: Side,
    local: SocketAddr,
    tls: bool,
    log: Arc<Mutex<Log>>,
}

/// Accepts connections forever, recording each one, and handles each on its own thread.
fn serve_tcp<F>(listener: TcpListener, side: Side, log: Arc<Mutex<Log>>, handle: F)
where
    F: Fn(TcpStream, Ctx) + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Ok(local) = stream.local_addr() else { continue };
            let local = SocketAddr::new(local.ip().to_canonical(), local.port());
            log.lock().unwrap().conns.push(Conn { side, local });
            // Bounds every handler thread, whatever the client does.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
            let ctx = Ctx { side, local, tls: false, log: log.clone() };
            let handle = handle.clone();
            std::thread::spawn(move || handle(stream, ctx));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1: keep-alive, Content-Length and chunked request bodies, Expect: 100-continue.
//
//   GET /bytes?n=N   N bytes (the letters a..z over and over)
//   any /upload...   `len=N sha256=HEX` of the request body
//   anything else    `hello from IP host=HOST tls=BOOL path=TARGET`

/// Reads up to a request line, as a lenient line-oriented server does: a line that is not a
/// request line (say, a TLS ClientHello) gets a 400 answer, at its first byte when that can't
/// start a request, and the server reads on at the next line. `None` at the end of the
/// connection.
fn read_request_line<S: Read + Write>(r: &mut BufReader<S>) -> io::Result<Option<String>> {
    const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    loop {
        let first = match r.fill_buf()?.first() {
            None => return Ok(None),
            Some(b) => *b,
        };
        if !(first.is_ascii_uppercase() || first == b'\r' || first == b'\n') {
            r.get_mut().write_all(BAD)?;
            r.get_mut().flush()?;
            let mut noise = Vec::new();
            r.read_until(b'\n', &mut noise)?;
            continue;
        }
        let mut raw = Vec::new();
        if r.read_until(b'\n', &mut raw)? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.is_empty() {
            continue;
        }
        if words.len() == 3 && words[2].starts_with("HTTP/") {
            return Ok(Some(line));
        }
        r.get_mut().write_all(BAD)?;
        r.get_mut().flush()?;
    }
}

/// Reads the rest of a request head after its request line `first`.
fn read_head(r: &mut impl BufRead, first: String) -> io::Result<Vec<String>> {
    let mut lines = vec![first];
    let mut total = 0;
    loop {
        let mut raw = Vec::new();
        let n = r.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        total += n;
        if total > 256 * 1024 {
            return Err(io::Error::other("request head too large"));
        }
        let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Reads a request body into a hash; returns its length and SHA-256.
fn read_body(r: &mut impl BufRead, chunked: bool, length: u64) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut copy = |r: &mut dyn BufRead, mut n: u64| -> io::Result<()> {
        while n > 0 {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = buf.len().min(n.try_into().unwrap_or(usize::MAX));
            hasher.update(&buf[..take]);
            r.consume(take);
            n -= take as u64;
            total += take as u64;
        }
        Ok(())
    };
    if chunked {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            // The size's hex digits; an extension starts at `;` or at whitespace.
            let size = line.trim().split([';', ' ', '\t']).next().unwrap_or("");
            let size = u64::from_str_radix(size, 16).map_err(|_| io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            copy(r, size)?;
            let mut crlf = String::new();
            r.read_line(&mut crlf)?;
        }
    } else {
        copy(r, length)?;
    }
    let digest = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((total, digest))
}

/// Serves requests until the client closes, asks to close, or errs; returns the stream.
fn serve_http<S: Read + Write>(mut r: BufReader<S>, ctx: &Ctx) -> BufReader<S> {
    while let Ok(Some(first)) = read_request_line(&mut r) {
        let Ok(lines) = read_head(&mut r, first) else { break };
        let mut words = lines[0].split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("").to_string();
        let version = words.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let host = header(&headers, "host").unwrap_or("").to_string();
        let chunked = header(&headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let expect_continue = header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let length = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let close = version == "HTTP/1.0"
            || header(&headers, "connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        ctx.log.lock().unwrap().requests.push(Request {
            side: ctx.side,
            local: ctx.local,
            tls: ctx.tls,
            method: method.clone(),
            target: target.clone(),
            host: host.clone(),
            expect_continue,
            chunked,
        });
        if expect_continue
            && r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n").and_then(|_| r.get_mut().flush()).is_err()
        {
            break;
        }
        let Ok((len, sha)) = read_body(&mut r, chunked, length) else { break };

        // The path, also from an absolute-form target.
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target.as_str(),
        };
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let param = |name: &str| {
            query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
        };
        let head = |n: u64| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {n}\r\n{}\r\n",
                if close { "Connection: close\r\n" } else { "" }
            )
        };
        let w = r.get_mut();
        let sent = if path == "/bytes" {
            let n: u64 = param("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            let block: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
            let mut result = w.write_all(head(n).as_bytes());
            let mut left = n;
            while result.is_ok() && left > 0 {
                let take = left.min(block.len() as u64) as usize;
                result = w.write_all(&block[..take]);
                left -= take as u64;
            }
            result
        } else {
            let body = if path.starts_with("/upload") {
                format!("len={len} sha256={sha}\n")
            } else {
                format!("hello from {} host={host} tls={} path={target}\n", ctx.local.ip(), ctx.tls)
            };
            w.write_all(head(body.len() as u64).as_bytes()).and_then(|_| w.write_all(body.as_bytes()))
        };
        if sent.and_then(|_| w.flush()).is_err() || close {
            break;
        }
    }
    r
}

// ---------------------------------------------------------------------------------------------
// TLS: a test CA, and a leaf certificate for whatever name the ClientHello asks for (for the
// address connected to when it names none).

struct Certs {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    configs: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl Certs {
    fn new() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "ringfence test CA");
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = params.self_signed(&key).unwrap();
        Certs { ca_pem: ca.pem(), issuer: rcgen::Issuer::new(params, key), configs: Mutex::default() }
    }

    /// A server configuration whose certificate is valid for `name` (a DNS name or an IP).
    fn config_for(&self, name: &str) -> Arc<rustls::ServerConfig> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
        let mut configs = self.configs.lock().unwrap();
        if let Some(c) = configs.get(name) {
            return c.clone();
        }
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let config = Arc::new(config);
        configs.insert(name.to_string(), config.clone());
        config
    }
}

fn serve_tls(tcp: TcpStream, ctx: &Ctx, certs: &Certs) {
    let mut tcp = HelloTap {
        tcp,
        ctx: ctx.clone(),
        bytes: None,
        records: Vec::new(),
        handshake: Vec::new(),
        hellos: 0,
        done: false,
    };
    let mut acceptor = rustls::server::Acceptor::default();
    let accepted = loop {
        match acceptor.read_tls(&mut tcp) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => {}
            Err((_, mut alert)) => {
                let _ = alert.write_all(&mut tcp);
                return;
            }
        }
    };
    let sni = accepted.client_hello().server_name().map(str::to_ascii_lowercase);
    let config = certs.config_for(&sni.unwrap_or_else(|| ctx.local.ip().to_string()));
    let conn = match accepted.into_connection(config) {
        Ok(conn) => conn,
        Err((_, mut alert)) => {
            let _ = alert.write_all(&mut tcp);
            return;
        }
    };
    let ctx = Ctx { tls: true, ..ctx.clone() };
    let mut stream = serve_http(BufReader::new(rustls::StreamOwned::new(conn, tcp)), &ctx).into_inner();
    stream.conn.send_close_notify();
    // Only what is queued (an alert, the close_notify): flushing the stream would go on with a
    // handshake that failed, and wait for the client.
    while stream.conn.wants_write() && stream.conn.write_tls(&mut stream.sock).is_ok_and(|n| n > 0) {}
}

/// The client's half of a TLS connection, read through: each ClientHello in it (the first, and
/// a second one after a HelloRetryRequest) is recorded as it arrives, until the client sends
/// anything but handshake and ChangeCipherSpec records.
struct HelloTap {
    tcp: TcpStream,
    ctx: Ctx,
    /// This connection's entry in the log's `tls_bytes`, from its first read on.
    bytes: Option<usize>,
    /// Bytes of a record not yet complete.
    records: Vec<u8>,
    /// Handshake bytes not yet a whole message (a message may span records).
    handshake: Vec<u8>,
    hellos: usize,
    done: bool,
}

impl HelloTap {
    fn scan(&mut self) {
        while !self.done && self.records.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([self.records[3], self.records[4]]));
            if self.records.len() < 5 + len {
                break;
            }
            let record: Vec<u8> = self.records.drain(..5 + len).collect();
            match record[0] {
                0x16 => self.handshake.extend_from_slice(&record[5..]),
                0x14 => continue,
                _ => self.done = true,
            }
            while !self.done && self.handshake.len() >= 4 {
                let len = u32::from_be_bytes([0, self.handshake[1], self.handshake[2], self.handshake[3]]) as usize;
                if self.handshake.len() < 4 + len {
                    break;
                }
                let message: Vec<u8> = self.handshake.drain(..4 + len).collect();
                if message[0] != 1 {
                    self.done = true;
                    break;
                }
                let hello = Hello {
                    side: self.ctx.side,
                    local: self.ctx.local,
                    sni: hello_server_name(&message),
                    retry: self.hellos > 0,
                    raw: message,
                };
                self.ctx.log.lock().unwrap().hellos.push(hello);
                self.hellos += 1;
            }
        }
        if self.records.len() + self.handshake.len() > 1 << 18 {
            self.done = true;
        }
    }
}

/// How many bytes of each TLS connection the log keeps.
const TLS_BYTES_KEPT: usize = 256 * 1024;

impl Read for HelloTap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        let mut log = self.ctx.log.lock().unwrap();
        let index = *self.bytes.get_or_insert_with(|| {
            log.tls_bytes.push(Vec::new());
            log.tls_bytes.len() - 1
        });
        let kept = &mut log.tls_bytes[index];
        kept.extend_from_slice(&buf[..n.min(TLS_BYTES_KEPT.saturating_sub(kept.len()))]);
        drop(log);
        if !self.done {
            self.records.extend_from_slice(&buf[..n]);
            self.scan();
        }
        Ok(n)
    }
}

impl Write for HelloTap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// The server name rustls reads from a ClientHello handshake message (None also when rustls
/// refuses the hello).
fn hello_server_name(message: &[u8]) -> Option<String> {
    let mut wire = Vec::new();
    for part in message.chunks(16 * 1024) {
        wire.extend([0x16, 0x03, 0x01]);
        wire.extend((part.len() as u16).to_be_bytes());
        wire.extend(part);
    }
    let mut wire = &wire[..];
    let mut acceptor = rustls::server::Acceptor::default();
    loop {
        if acceptor.read_tls(&mut wire).ok()? == 0 {
            return None;
        }
        if let Some(accepted) = acceptor.accept().ok()? {
            return accepted.client_hello().server_name().map(str::to_ascii_lowercase);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DNS.

/// The lab's zone: the addresses for `name`, or `None` when the name does not exist. An A
/// question (`a_question`) moves a `*.rebind.test` name on to its next answer.
fn answers(name: &str, log: &mut Log, a_question: bool) -> Option<Vec<IpAddr>> {
    let v4 = |s: &str| IpAddr::V4(s.parse::<Ipv4Addr>().unwrap());
    let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
    Some(match name {
        "allowed.test" => vec![v4("192.0.2.10")],
        "other.test" => vec![v4("192.0.2.11")],
        "far.test" => vec![v4("203.0.113.10")],
        "v6.test" => vec![v6("2001:db8::10")],
        "loop.test" => vec![v4("127.0.0.1")],
        "loop6.test" => vec![v6("::1")],
        "self.test" => vec![v4(HOST_ADDR)],
        "meta.test" => vec![v4("169.254.169.254")],
        "meta6.test" => vec![v6("fd00:ec2::254")],
        "lan.test" => vec![v4("10.0.0.1")],
        "mapped.test" => vec![v6("::ffff:127.0.0.1")],
        "nat64.test" => vec![v6("64:ff9b::7f00:1")],
        "mixed.test" => vec![v4("192.0.2.10"), v4("127.0.0.1")],
        "anyip.test" => vec![v4("203.0.113.200")],
        // Coding agents' API hosts, for the stand-in agents of the agent-profile tests.
        "api.anthropic.com" | "api.openai.com" | "generativelanguage.googleapis.com" => vec![v4("192.0.2.13")],
        n if n.ends_with(".corp.test") => vec![v4("192.0.2.12")],
        n if n.ends_with(".wild.test") => vec![v4("192.0.2.10")],
        n if n.ends_with(".rebind.test") => {
            let count = log.rebinds.entry(n.to_string()).or_default();
            *count += u32::from(a_question);
            vec![if *count % 2 == 1 { v4("192.0.2.10") } else { v4("127.0.0.1") }]
        }
        _ => return None,
    })
}

/// Answers one DNS message, recording its question; `None` for what is not a DNS query.
fn dns_answer(packet: &[u8], log: &Mutex<Log>, tcp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let mut resp = Message::new();
    resp.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    let mut log = log.lock().unwrap();
    for q in query.queries() {
        resp.add_query(q.clone());
        let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        log.queries.push(Query { name: name.clone(), qtype: q.query_type().to_string(), tcp });
        let Some(ips) = answers(&name, &mut log, q.query_type() == RecordType::A) else {
            resp.set_response_code(ResponseCode::NXDomain);
            continue;
        };
        for ip in ips {
            let rdata = match (ip, q.query_type()) {
                (IpAddr::V4(a), RecordType::A) => RData::A(A(a)),
                (IpAddr::V6(a), RecordType::AAAA) => RData::AAAA(AAAA(a)),
                _ => continue,
            };
            // Rebinding names must not be cached, so each lookup gets the next answer.
            let ttl = if name.ends_with(".rebind.test") { 0 } else { 5 };
            resp.add_answer(Record::from_rdata(q.name().clone(), ttl, rdata));
        }
    }
    resp.to_vec().ok()
}

/// Closes a connection with a reset (SO_LINGER 0).
fn linger_zero(stream: &TcpStream) -> io::Result<()> {
    let value = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &value).map_err(io::Error::from)
}

fn dns_udp(socket: UdpSocket, log: Arc<Mutex<Log>>) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
        match dns_answer(&buf[..n], &log, false) {
            Some(reply) => {
                let _ = socket.send_to(&reply, peer);
            }
            None => log.lock().unwrap().datagrams.push(buf[..n].to_vec()),
        }
    }
}

fn dns_tcp(mut stream: TcpStream, log: &Mutex<Log>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut packet).is_err() {
            return;
        }
        let Some(reply) = dns_answer(&packet, log, true) else { return };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend(reply);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}
