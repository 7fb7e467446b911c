//! Threat 4, path-based Unix sockets that the mount view can't mask because they did not exist
//! (or were not visible) at launch: bound by a host process after the sandbox started (in the
//! workspace, in $HOME, in a folder outside every root), bound before the launch in another
//! network namespace (a container), reached through links, relative paths and `..`, or raced by
//! rewriting the address (and the socket behind the descriptor) while the supervisor checks
//! it, or sidestepped with a seccomp listener of the sandbox's own. Every refusal is checked
//! from the listener's side: it accepted nothing, while the same probe run unconfined on the
//! host does connect (control). The sandbox's own sockets keep working (control), Unix datagram
//! sockets, whose destinations the supervisor can't see, are refused, netlink connects that
//! need a capability stay refused although the supervisor makes them, hostile arguments get
//! the kernel's own errors, blocked connects stall nothing, and a kernel that can't supervise
//! connect refuses the run unless --allow-degraded. Host sockets that come and go while the
//! view is built fail no run, and those that stay are masked.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use nix::sys::socket::{accept, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Python helpers for the sandbox and the controls: `serve(path, ty)` runs a listener on a
/// thread, `wait_for(path)` waits until a path exists, `probe(label, path, ty, where)` connects
/// from folder `where` and prints `CONNECTED label` or `FAILED label ERRNO`.
const PY_UNIX: &str = r#"
import errno, os, socket, sys, threading, time
TYPES = {'stream': socket.SOCK_STREAM, 'seqpacket': socket.SOCK_SEQPACKET}
def serve(path, ty='stream'):
    l = socket.socket(socket.AF_UNIX, TYPES[ty])
    l.bind(path)
    l.listen(4096)
    def loop():
        while True:
            l.accept()[0].close()
    threading.Thread(target=loop, daemon=True).start()
def wait_for(path, where='.'):
    deadline = time.time() + 20
    while not os.path.lexists(os.path.join(where, path)) and time.time() < deadline:
        time.sleep(0.02)
def probe(label, path, ty='stream', where='.'):
    start = os.getcwd()
    os.chdir(where)
    s = socket.socket(socket.AF_UNIX, TYPES[ty])
    s.settimeout(2)
    try:
        s.connect(path)
        print('CONNECTED', label, flush=True)
    except OSError as e:
        print('FAILED', label, errno.errorcode.get(e.errno, e.errno), flush=True)
    try:
        s.send(b'exfil')  # A server of the sandbox's may have closed it already.
    except OSError:
        pass
    os.chdir(start)
    s.close()
"#;

/// `label -> CONNECTED or the errno name` from the probe lines.
fn verdicts(out: &Output) -> BTreeMap<String, String> {
    stdout(out)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            match (words.next()?, words.next()?) {
                ("CONNECTED", label) => Some((label.to_string(), "CONNECTED".to_string())),
                ("FAILED", label) => Some((label.to_string(), words.next()?.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// A listening Unix socket the host binds, non-blocking, owned by the run's identity (so file
/// permissions would let the sandbox connect); removed on drop.
struct HostListener {
    fd: OwnedFd,
    path: PathBuf,
}

impl HostListener {
    fn bind(env: &Env, path: &Path, ty: SockType) -> HostListener {
        let _ = std::fs::remove_file(path);
        let fd = socket(AddressFamily::Unix, ty, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        listen(&fd, Backlog::new(64).unwrap()).unwrap();
        env.give(path);
        HostListener { fd, path: path.to_path_buf() }
    }

    /// Whether a connection waits (taking it).
    fn accepted(&self) -> bool {
        match accept(&self.fd) {
            Ok(_) => true,
            Err(nix::Error::EAGAIN) => false,
            Err(e) => panic!("accept on {}: {e}", self.path.display()),
        }
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts `code` (after [`PY_UNIX`]) in the sandbox, waits until it has created `.ready` in
/// the workspace, calls `then` (which binds the host's listeners), and collects the run.
fn run_then<T>(env: &Env, args: &[&str], code: &str, then: impl FnOnce() -> T) -> (Output, T) {
    let ready = env.ws.join(".ready");
    let _ = std::fs::remove_file(&ready);
    let script = format!("{PY_UNIX}\nopen('.ready', 'w').close()\n{code}");
    let mut cmd = env.run_command(args, &["python3", "-c", &script]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_until("the sandbox's python to start", RUN_LIMIT, || ready.exists());
    let value = then();
    (collect_within(child, RUN_LIMIT), value)
}

/// The same probes, unconfined on the host as the run's identity (the control).
fn host_probe(env: &Env, code: &str) -> Output {
    env.host(&["python3", "-c", &format!("{PY_UNIX}\n{code}")])
}

/// Listeners a host process binds after the sandbox started, in the workspace, in $HOME and in
/// a folder outside every root, stream and seqpacket alike: the sandbox's connects are refused
/// with ECONNREFUSED and no listener sees a connection; unconfined, the same probes connect to
/// every one of them (control).
#[test]
fn sockets_bound_after_launch_are_refused() {
    for who in identities() {
        let env = Env::new(who);
        let places = [("ws", env.ws.clone()), ("home", env.home.clone()), ("outside", env.outside.clone())];
        let mut specs = Vec::new();
        for (place, dir) in &places {
            for (ty, name) in [(SockType::Stream, "stream"), (SockType::SeqPacket, "seqpacket")] {
                specs.push((format!("{place}-{name}"), name, ty, dir.join(format!("late-{name}.sock"))));
            }
        }
        let code: String = specs
            .iter()
            .map(|(label, ty, _, path)| {
                let p = path_str(path);
                format!("wait_for('{p}')\nprobe('{label}', '{p}', '{ty}')\n")
            })
            .collect();
        let (out, listeners) = run_then(&env, &[], &code, || {
            specs.iter().map(|(_, _, ty, path)| HostListener::bind(&env, path, *ty)).collect::<Vec<_>>()
        });
        let got = verdicts(&out);
        for ((label, ..), listener) in specs.iter().zip(&listeners) {
            assert_eq!(got.get(label).map(String::as_str), Some("ECONNREFUSED"), "{who:?}: {label}:\n{}", both(&out));
            assert!(!listener.accepted(), "{who:?}: {label}: the host listener got a connection");
        }
        let control = host_probe(&env, &code);
        for ((label, ..), listener) in specs.iter().zip(&listeners) {
            assert!(listener.accepted(), "{who:?}: {label}: unconfined, no connection (control):\n{}", both(&control));
        }
    }
}

/// A process in another network namespace (a container) binds a socket before the launch:
/// /proc/net/unix of ringfence's namespace doesn't list it, so no mask covers it, yet the
/// sandbox's connect is refused and the listener sees nothing; unconfined, the host connects
/// (control).
#[test]
fn sockets_of_another_network_namespace_are_refused() {
    if !is_root() {
        return; // `unshare -n` for the listener needs root.
    }
    const BINDER: &str = r#"
import os, socket, sys
os.umask(0)
l = socket.socket(socket.AF_UNIX)
l.bind(sys.argv[1])
l.listen(16)
print('READY', flush=True)
while True:
    c = l.accept()[0]
    print('ACCEPTED', c.recv(64).decode(errors='replace'), flush=True)
    c.close()
"#;
    for who in identities() {
        let env = Env::new(who);
        let path = env.outside.join("container.sock");
        let mut binder = std::process::Command::new("unshare")
            .args(["-n", "python3", "-c", BINDER])
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = follow_lines(&mut binder);
        wait_until("the listener in its own network namespace", RUN_LIMIT, || seen.lock().unwrap().contains("READY"));
        let code = format!("probe('container', '{}')", path_str(&path));
        let out = env.run_py(&[], &format!("{PY_UNIX}\n{code}"));
        let control = env.host(&[
            "python3",
            "-c",
            &format!(
                "{PY_UNIX}\nimport socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('{}')\ns.send(b'control')",
                path_str(&path)
            ),
        ]);
        wait_until("the control connection", RUN_LIMIT, || seen.lock().unwrap().contains("ACCEPTED control"));
        let _ = binder.kill();
        let _ = binder.wait();
        let log = seen.lock().unwrap().clone();
        assert_eq!(
            verdicts(&out).get("container").map(String::as_str),
            Some("ECONNREFUSED"),
            "{who:?}:\n{}",
            both(&out)
        );
        assert!(
            !log.contains("exfil"),
            "{who:?}: the listener got the sandbox's connection:\n{log}\n{}",
            both(&control)
        );
    }
}

/// Collects a child's stdout lines on a thread.
fn follow_lines(child: &mut Child) -> Arc<Mutex<String>> {
    let seen = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().unwrap();
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    seen
}

/// Links, relative paths and `..` lead nowhere the sandbox did not bind: an absolute link in
/// the workspace to a host socket (connected by relative and absolute name), `../late.sock`
/// from a subfolder, `sub/../late.sock`, and the working directory's magic link are refused
/// with the listeners seeing nothing. The sandbox's own sockets are reached the same ways:
/// `../own.sock` from a subfolder, `./own.sock`, and a link to its own socket in /tmp.
#[test]
fn links_and_relative_paths_lead_only_to_own_sockets() {
    for who in identities() {
        let env = Env::new(who);
        let late = env.ws.join("late.sock");
        let outside = env.outside.join("linked.sock");
        let ws = path_str(&env.ws);
        let code = format!(
            "serve('own.sock')\nserve('/tmp/own2.sock')\nos.mkdir('sub')\n\
             os.symlink('{o}', 'link-abs.sock')\nos.symlink('/tmp/own2.sock', 'own-link.sock')\n\
             wait_for('late.sock')\nwait_for('{o}')\n\
             probe('link_relative', 'link-abs.sock')\nprobe('link_absolute', '{ws}/link-abs.sock')\n\
             probe('dotdot', '../late.sock', where='sub')\nprobe('sub_dotdot', 'sub/../late.sock')\n\
             probe('proc_cwd', '/proc/self/cwd/late.sock')\n\
             probe('own_dotdot', '../own.sock', where='sub')\nprobe('own_dot', './own.sock')\n\
             probe('own_link', 'own-link.sock')\nprobe('own_absolute', '{ws}/own.sock')\n",
            o = path_str(&outside)
        );
        let (out, listeners) = run_then(&env, &[], &code, || {
            [HostListener::bind(&env, &late, SockType::Stream), HostListener::bind(&env, &outside, SockType::Stream)]
        });
        let got = verdicts(&out);
        let text = both(&out);
        for label in ["link_relative", "link_absolute", "dotdot", "sub_dotdot", "proc_cwd"] {
            let v = got.get(label).map(String::as_str);
            assert!(v.is_some() && v != Some("CONNECTED"), "{who:?}: {label} gave {v:?}:\n{text}");
        }
        for label in ["own_dotdot", "own_dot", "own_link", "own_absolute"] {
            assert_eq!(got.get(label).map(String::as_str), Some("CONNECTED"), "{who:?}: {label}:\n{text}");
        }
        assert!(!listeners.iter().any(HostListener::accepted), "{who:?}: a host listener got a connection:\n{text}");
        let control = host_probe(
            &env,
            &format!("probe('late', '{}')\nprobe('linked', '{}')", path_str(&late), path_str(&outside)),
        );
        assert!(
            listeners.iter().all(HostListener::accepted),
            "{who:?}: unconfined, no connection (control):\n{}",
            both(&control)
        );
    }
}

/// Racing the check. Phase 1: a second process sharing the address's memory flips it between
/// the sandbox's own socket and a host socket bound after the launch, while connects run in a
/// loop. Phase 2: the descriptor being connected is a TCP or a Unix socket in turn, and a
/// thread keeps swapping it for the other, while the address flips between the sandbox's own
/// TCP listener and the host socket
/// (the attack on a supervisor that lets TCP connects continue after checking the family).
/// The host listener never sees a connection; the sandbox's own listeners are reached and both
/// sockets were behind the descriptor (control: the loops ran and the flips happened).
#[test]
fn racing_the_address_or_the_descriptor_never_reaches_the_host() {
    const RACE: &str = r#"
import ctypes, mmap, struct
HOST = sys.argv[1].encode()
libc = ctypes.CDLL(None, use_errno=True)
serve('/tmp/own.sock')
def unix(p):
    return struct.pack('H', socket.AF_UNIX) + p + b'\0' * (108 - len(p))
tcp = socket.socket()
tcp.bind(('127.0.0.1', 0))
tcp.listen(4096)
port = tcp.getsockname()[1]
threading.Thread(target=lambda: [tcp.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
INET = (struct.pack('HH4s', socket.AF_INET, socket.htons(port), socket.inet_aton('127.0.0.1'))).ljust(110, b'\0')
socket.create_connection(('127.0.0.1', port)).close()
print('TCP-OK', flush=True)
mm = mmap.mmap(-1, 4096)
def flip(a, b):
    mm[0:110] = a
    pid = os.fork()
    if pid == 0:
        while True:
            mm[0:110] = b
            mm[0:110] = a
    return pid
buf = ctypes.c_char.from_buffer(mm)
wait_for(HOST.decode())
counts = {}
pid = flip(unix(b'/tmp/own.sock'), unix(HOST))
for _ in range(1500):
    s = socket.socket(socket.AF_UNIX)
    r = libc.connect(s.fileno(), ctypes.byref(buf), 110)
    key = 'own' if r == 0 else errno.errorcode.get(ctypes.get_errno(), '?')
    counts[key] = counts.get(key, 0) + 1
    s.close()
os.kill(pid, 9)
print('PHASE1', sorted(counts.items()), flush=True)
sys.setswitchinterval(1e-5)
pid = flip(INET, unix(HOST))
target = os.dup(0)
socks = [None, None]
stop = False
def swap():
    while not stop:
        for s in socks:
            if s is not None:
                os.dup2(s.fileno(), target)
threading.Thread(target=swap, daemon=True).start()
counts = {}
for i in range(1500):
    socks[:] = [socket.socket(socket.AF_UNIX), socket.socket()]
    os.dup2(socks[i % 2].fileno(), target)
    r = libc.connect(target, ctypes.byref(buf), 110)
    key = 'connected' if r == 0 else errno.errorcode.get(ctypes.get_errno(), '?')
    counts[key] = counts.get(key, 0) + 1
    for s in socks:
        s.close()
stop = True
os.kill(pid, 9)
print('PHASE2', sorted(counts.items()), flush=True)
"#;
    for who in identities() {
        let env = Env::new(who);
        let host = env.outside.join("race.sock");
        let ready = env.ws.join(".ready");
        let script = format!("{PY_UNIX}\nopen('.ready', 'w').close()\n{RACE}");
        let mut cmd = env.run_command(&[], &["python3", "-c", &script, path_str(&host)]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        wait_until("the race to start", RUN_LIMIT, || ready.exists());
        let listener = HostListener::bind(&env, &host, SockType::Stream);
        let out = collect_within(child, Duration::from_secs(120));
        let text = both(&out);
        let phase1 = text.lines().find(|l| l.starts_with("PHASE1")).unwrap_or_else(|| panic!("{who:?}:\n{text}"));
        let phase2 = text.lines().find(|l| l.starts_with("PHASE2")).unwrap_or_else(|| panic!("{who:?}:\n{text}"));
        assert!(!listener.accepted(), "{who:?}: the host listener got a connection:\n{text}");
        assert!(phase1.contains("'own'") && phase1.contains("ECONNREFUSED"), "{who:?}: no race happened: {phase1}");
        // Both sockets were behind the descriptor during the loop: the Unix one was refused or
        // given the TCP address (EINVAL), the TCP one connected, was connected already, or was
        // given the Unix address (EAFNOSUPPORT).
        let unix = ["ECONNREFUSED", "EINVAL"].iter().any(|e| phase2.contains(e));
        let tcp = ["'connected'", "EISCONN", "EAFNOSUPPORT"].iter().any(|e| phase2.contains(e));
        assert!(unix && tcp, "{who:?}: the descriptor was not swapped: {phase2}");
        assert!(text.contains("TCP-OK"), "{who:?}: the sandbox's TCP listener was not reached:\n{text}");
        let control = host_probe(&env, &format!("probe('race', '{}')", path_str(&host)));
        assert!(listener.accepted(), "{who:?}: unconfined, no connection (control):\n{}", both(&control));
    }
}

/// With `--network host` the network namespace is the host's, so a listener must be held by a
/// process of the sandbox: the sandbox's own path sockets (workspace, /tmp) and abstract ones
/// work, a host socket bound after the launch and a host abstract socket are refused, and
/// neither host listener sees a connection.
#[test]
fn host_network_allows_only_sockets_the_sandbox_holds() {
    for who in identities() {
        let env = Env::new(who);
        let late = env.outside.join("late-host.sock");
        let name = marker("abs");
        let abstract_host = {
            let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).unwrap();
            bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).unwrap()).unwrap();
            listen(&fd, Backlog::new(16).unwrap()).unwrap();
            fd
        };
        let code = format!(
            "serve('own.sock')\nserve('/tmp/own.sock')\nserve('\\0own-{name}')\nwait_for('{l}')\n\
             probe('own_ws', 'own.sock')\nprobe('own_tmp', '/tmp/own.sock')\nprobe('own_abstract', '\\0own-{name}')\n\
             probe('host_late', '{l}')\nprobe('host_abstract', '\\0{name}')\n",
            l = path_str(&late)
        );
        let (out, listener) =
            run_then(&env, &["--network", "host"], &code, || HostListener::bind(&env, &late, SockType::Stream));
        let got = verdicts(&out);
        let text = both(&out);
        for label in ["own_ws", "own_tmp", "own_abstract"] {
            assert_eq!(got.get(label).map(String::as_str), Some("CONNECTED"), "{who:?}: {label}:\n{text}");
        }
        for label in ["host_late", "host_abstract"] {
            let v = got.get(label).map(String::as_str);
            assert!(v.is_some() && v != Some("CONNECTED"), "{who:?}: {label} gave {v:?}:\n{text}");
        }
        assert!(!listener.accepted(), "{who:?}: the late host listener got a connection:\n{text}");
        assert!(matches!(accept(&abstract_host), Err(nix::Error::EAGAIN)), "{who:?}: the abstract listener got one");
        let control = host_probe(&env, &format!("probe('late', '{}')", path_str(&late)));
        assert!(listener.accepted(), "{who:?}: unconfined, no connection (control):\n{}", both(&control));
    }
}

/// The sandbox's own sockets work as before: a server and a client inside, over stream and
/// seqpacket sockets in the workspace and in /tmp, abstract sockets, and TCP on its loopback.
#[test]
fn the_sandboxs_own_sockets_work() {
    for who in identities() {
        let env = Env::new(who);
        let code = "serve('ws.sock')\nserve('/tmp/tmp.sock')\nserve('ws-seq.sock', 'seqpacket')\n\
                    serve('/tmp/tmp-seq.sock', 'seqpacket')\nserve('\\0own')\n\
                    probe('ws', 'ws.sock')\nprobe('tmp', '/tmp/tmp.sock')\nprobe('ws_seq', 'ws-seq.sock', 'seqpacket')\n\
                    probe('tmp_seq', '/tmp/tmp-seq.sock', 'seqpacket')\nprobe('abstract', '\\0own')\n\
                    probe('missing', 'missing.sock')\n\
                    t = socket.socket(); t.bind(('127.0.0.1', 0)); t.listen()\n\
                    c = socket.create_connection(t.getsockname()); print('CONNECTED tcp', flush=True)\n";
        let out = env.run_py(&[], &format!("{PY_UNIX}\n{code}"));
        let got = verdicts(&out);
        for label in ["ws", "tmp", "ws_seq", "tmp_seq", "abstract", "tcp"] {
            assert_eq!(got.get(label).map(String::as_str), Some("CONNECTED"), "{who:?}: {label}:\n{}", both(&out));
        }
        assert_eq!(got.get("missing").map(String::as_str), Some("ENOENT"), "{who:?}:\n{}", both(&out));
    }
}

/// Unix datagram sockets (SOCK_DGRAM, and SOCK_RAW, which AF_UNIX treats as datagram) are
/// refused with EPERM, by socket and socketpair alike; stream and seqpacket ones work.
/// Unconfined, datagram sockets work (control).
#[test]
fn unix_datagram_sockets_are_refused() {
    const PY: &str = r#"
import errno, socket
def attempt(name, f):
    try:
        f()
        print(name, 'OK', 0, flush=True)
    except OSError as e:
        print(name, 'ERR', errno.errorcode.get(e.errno, e.errno), flush=True)
U = socket.AF_UNIX
attempt('dgram', lambda: socket.socket(U, socket.SOCK_DGRAM))
attempt('dgram_cloexec', lambda: socket.socket(U, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK))
attempt('raw', lambda: socket.socket(U, socket.SOCK_RAW))
attempt('pair_dgram', lambda: socket.socketpair(U, socket.SOCK_DGRAM))
attempt('pair_stream', lambda: socket.socketpair(U, socket.SOCK_STREAM))
attempt('seqpacket', lambda: socket.socket(U, socket.SOCK_SEQPACKET))
attempt('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
"#;
    for who in identities() {
        let env = Env::new(who);
        let host = probe_results(&stdout(&env.host(&["python3", "-c", PY])));
        assert_eq!(host.get("dgram").map(String::as_str), Some("OK"), "{who:?}: unconfined dgram (control)");
        let out = env.run_py(&[], PY);
        let got = probe_results(&stdout(&out));
        for name in ["dgram", "dgram_cloexec", "raw", "pair_dgram"] {
            assert_eq!(got.get(name).map(String::as_str), Some("EPERM"), "{who:?}: {name}:\n{}", both(&out));
        }
        for name in ["pair_stream", "seqpacket", "udp"] {
            assert_eq!(got.get(name).map(String::as_str), Some("OK"), "{who:?}: {name}:\n{}", both(&out));
        }
    }
}

/// The guard is a recorded layer: run.start lists it as enforced, `ringfence check` reports
/// it, and `explain` names what enforces Unix sockets.
#[test]
fn the_guard_is_reported() {
    for who in identities() {
        let env = Env::new(who);
        let events = env.outside.join("events.jsonl");
        let out = env.run_sh(&["--events", path_str(&events)], "true");
        assert_code(&out, 0);
        let text = std::fs::read_to_string(&events).unwrap();
        assert_events_match_schema(&text);
        let start = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["type"] == "run.start")
            .unwrap_or_else(|| panic!("{who:?}: no run.start: {text}"));
        let enforced = start["enforced"].as_array().unwrap();
        assert!(enforced.iter().any(|l| l["name"] == "unix socket guard"), "{who:?}: {text}");
        assert!(stdout(&env.ringfence(&["check"])).contains("[ok  ] unix sockets"), "{who:?}");
        let explain = stdout(&env.ringfence(&["explain"]));
        assert!(explain.contains("Unix sockets: connect only to sockets listening in the sandbox's own"), "{explain}");
    }
}

/// The supervisor connects on the sandbox's behalf with its own credentials, so it carries out
/// only connects that check no capability: a netlink socket may connect to the kernel, not to
/// a peer port or a multicast group (both need CAP_NET_ADMIN, which root's supervisor has in
/// the host's network namespace). Control: root, unconfined, can do both.
#[test]
fn netlink_peers_and_groups_stay_out_of_reach() {
    const PY: &str = r#"
import errno, socket
def attempt(name, addr):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        s.connect(addr)
        print(name, 'OK', 0, flush=True)
    except OSError as e:
        print(name, 'ERR', errno.errorcode.get(e.errno, e.errno), flush=True)
attempt('kernel', (0, 0))
attempt('peer', (4242, 0))
attempt('group', (0, 1))
"#;
    for who in identities() {
        let env = Env::new(who);
        if who == Who::Me && is_root() {
            let host = probe_results(&stdout(&env.host(&["python3", "-c", PY])));
            assert_eq!(host.get("peer").map(String::as_str), Some("OK"), "root can't connect unconfined (control)");
        }
        for args in [&[][..], &["--network", "host"][..]] {
            let out = env.run_py(args, PY);
            let got = probe_results(&stdout(&out));
            assert_eq!(got.get("kernel").map(String::as_str), Some("OK"), "{who:?} {args:?}:\n{}", both(&out));
            for name in ["peer", "group"] {
                assert_eq!(
                    got.get(name).map(String::as_str),
                    Some("EPERM"),
                    "{who:?} {args:?} {name}:\n{}",
                    both(&out)
                );
            }
        }
    }
}

/// A process of the sandbox installs a seccomp filter of its own that traps connect to a
/// listener of its own, answers every call with CONTINUE from a thread, and connects to a host
/// socket bound after the launch: the kernel refuses a second listener in the filter chain
/// (EBUSY), and the host listener sees nothing. Unconfined, the same program gets its listener
/// and connects (control).
#[test]
fn an_own_seccomp_listener_cannot_wave_connects_through() {
    const INNER: &str = r#"
import ctypes, errno, socket, struct, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
ins = b''.join(struct.pack('HBBI', *i) for i in [(0x20, 0, 0, 0), (0x15, 0, 1, 42), (0x06, 0, 0, 0x7fc00000), (0x06, 0, 0, 0x7fff0000)])
prog = ctypes.create_string_buffer(ins, len(ins))
fprog = ctypes.create_string_buffer(struct.pack('HxxxxxxQ', 4, ctypes.addressof(prog)), 16)
box = {}
def answer():
    while 'fd' not in box:
        pass
    notif = ctypes.create_string_buffer(80)
    while True:
        ctypes.memset(notif, 0, 80)
        if libc.ioctl(box['fd'], ctypes.c_ulong(0xc0502100), notif) != 0:
            continue
        nid = struct.unpack_from('Q', notif.raw, 0)[0]
        resp = ctypes.create_string_buffer(struct.pack('QqiI', nid, 0, 0, 1), 24)
        libc.ioctl(box['fd'], ctypes.c_ulong(0xc0182101), resp)
threading.Thread(target=answer, daemon=True).start()
fd = libc.syscall(317, 1, 8, fprog)  # seccomp(SET_MODE_FILTER, NEW_LISTENER)
if fd < 0:
    print('LISTENER', 'ERR', errno.errorcode.get(ctypes.get_errno()), flush=True)
    sys.exit(0)
print('LISTENER', 'OK', fd, flush=True)
box['fd'] = fd
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print('INNER', 'OK', 0, flush=True)
except OSError as e:
    print('INNER', 'ERR', errno.errorcode.get(e.errno), flush=True)
"#;
    for who in identities() {
        let env = Env::new(who);
        let host = env.outside.join("inner.sock");
        let code = format!("wait_for('{0}')\nsys.argv[1:] = ['{0}']\n{INNER}", path_str(&host));
        let (out, listener) = run_then(&env, &[], &code, || HostListener::bind(&env, &host, SockType::Stream));
        let got = probe_results(&stdout(&out));
        assert_eq!(got.get("LISTENER").map(String::as_str), Some("EBUSY"), "{who:?}:\n{}", both(&out));
        assert!(!listener.accepted(), "{who:?}: the host listener got a connection:\n{}", both(&out));
        let control = env.host(&["python3", "-c", INNER, path_str(&host)]);
        let got = probe_results(&stdout(&control));
        assert_eq!(
            got.get("INNER").map(String::as_str),
            Some("OK"),
            "{who:?}: unconfined (control):\n{}",
            both(&control)
        );
        assert!(listener.accepted(), "{who:?}: unconfined, no connection (control)");
    }
}

/// Hostile connect arguments (bad descriptors, a non-socket, a null or unreadable address,
/// lengths out of range, wrong or missing families, paths without or with an early NUL,
/// missing abstract names, a regular file, a listening socket) get exactly the errors the
/// kernel gives unconfined (control: the same program run on the host).
#[test]
fn hostile_connect_arguments_get_the_kernels_own_errors() {
    const HOSTILE: &str = r#"
import ctypes, errno, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
def c(name, fd, addr, length):
    ctypes.set_errno(0)
    r = libc.connect(fd, addr, ctypes.c_uint(length & 0xffffffff))
    print(name, 'OK' if r == 0 else 'ERR', errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()) if r else 0, flush=True)
U = lambda p: struct.pack('H', socket.AF_UNIX) + p
u = socket.socket(socket.AF_UNIX); t = socket.socket()
f = os.open('hostile-file', os.O_CREAT | os.O_RDWR, 0o644)
b = lambda x: ctypes.create_string_buffer(x, len(x))
c('bad_fd', -1, b(U(b'x')), 3)
c('big_fd', 99999, b(U(b'x')), 3)
c('not_socket', f, b(U(b'x')), 3)
c('null_addr', u.fileno(), None, 16)
c('too_long', u.fileno(), b(U(b'x') * 100), 129)
c('negative_len', u.fileno(), b(U(b'x')), -1)
c('zero_len', u.fileno(), None, 0)
c('family_only', u.fileno(), b(U(b'')), 2)
c('wrong_family', u.fileno(), b(struct.pack('HH4s', socket.AF_INET, 80, b'\x7f\0\0\1') + b'\0' * 8), 16)
c('no_nul_108', u.fileno(), b(U(b'a' * 108)), 110)
c('embedded_nul', u.fileno(), b(U(b'missing\0/etc/passwd')), 22)
c('abstract_missing', u.fileno(), b(U(b'\0nobody-here-x')), 17)
c('regular_file', u.fileno(), b(U(b'hostile-file\0')), 15)
c('tcp_unix_addr', t.fileno(), b(U(b'x\0')), 4)
c('tcp_short', t.fileno(), b(struct.pack('HH', socket.AF_INET, 80)), 4)
t2 = socket.socket()
c('unspec_tcp', t2.fileno(), b(struct.pack('H', 0) + b'\0' * 14), 16)
l = socket.socket(socket.AF_UNIX); l.bind('hostile.sock'); l.listen()
c('listening', l.fileno(), b(U(b'hostile.sock\0')), 15)
"#;
    for who in identities() {
        let env = Env::new(who);
        let control = env.host(&["python3", "-c", HOSTILE]);
        let expected = probe_results(&stdout(&control));
        assert_eq!(expected.len(), 17, "{who:?}: the probe did not run unconfined:\n{}", both(&control));
        for name in ["hostile-file", "hostile.sock"] {
            std::fs::remove_file(env.ws.join(name)).unwrap();
        }
        let out = env.run_py(&[], HOSTILE);
        assert_eq!(probe_results(&stdout(&out)), expected, "{who:?}:\n{}", both(&out));
    }
}

/// Blocking connects that can't complete (100 threads against a listener of the sandbox's
/// that never accepts, more than the supervisor's workers) stall neither the handler, which
/// still answers a non-blocking connect at once, nor the end of the run, which comes as soon
/// as the command exits.
#[test]
fn blocked_connects_stall_neither_the_handler_nor_the_end_of_the_run() {
    const FILL: &str = r#"
l = socket.socket(socket.AF_UNIX)
l.bind('/tmp/full.sock')
l.listen(1)
def stuck():
    s = socket.socket(socket.AF_UNIX)
    s.connect('/tmp/full.sock')
    time.sleep(60)
for _ in range(100):
    threading.Thread(target=stuck, daemon=True).start()
time.sleep(1)
t = socket.socket()
t.bind(('127.0.0.1', 0))
t.listen()
c = socket.socket()
c.setblocking(False)
started = time.time()
c.connect_ex(t.getsockname())
print('NONBLOCKING', round(time.time() - started, 3), flush=True)
os._exit(0)
"#;
    for who in identities() {
        let env = Env::new(who);
        let started = std::time::Instant::now();
        let out = env.run_py(&[], &format!("{PY_UNIX}\n{FILL}"));
        let took = started.elapsed();
        let text = both(&out);
        let line = text.lines().find(|l| l.starts_with("NONBLOCKING")).unwrap_or_else(|| panic!("{who:?}:\n{text}"));
        let secs: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(secs < 1.0, "{who:?}: the non-blocking connect waited {secs}s");
        assert!(took < Duration::from_secs(10), "{who:?}: the run took {took:?} to end:\n{text}");
    }
}

/// A path the sandbox connected to its own socket at, then removed, where a host process binds
/// a socket of its own meanwhile: the second connect is refused (what was verified was the
/// old file, not the path) and the host listener sees nothing.
#[test]
fn a_host_socket_in_place_of_an_own_one_is_refused() {
    for who in identities() {
        let env = Env::new(who);
        let path = env.ws.join("swapped.sock");
        let turn = env.ws.join(".rebound");
        let code = "serve('swapped.sock')\nprobe('own', 'swapped.sock')\nos.unlink('swapped.sock')\n\
                    open('.removed', 'w').close()\nwait_for('.rebound')\nprobe('host', 'swapped.sock')\n";
        let removed = env.ws.join(".removed");
        let (out, listener) = run_then(&env, &[], code, || {
            wait_until("the sandbox to remove its socket", RUN_LIMIT, || removed.exists());
            let listener = HostListener::bind(&env, &path, SockType::Stream);
            std::fs::write(&turn, "").unwrap();
            listener
        });
        let got = verdicts(&out);
        assert_eq!(got.get("own").map(String::as_str), Some("CONNECTED"), "{who:?}:\n{}", both(&out));
        assert_eq!(got.get("host").map(String::as_str), Some("ECONNREFUSED"), "{who:?}:\n{}", both(&out));
        assert!(!listener.accepted(), "{who:?}: the host listener got a connection");
        let control = host_probe(&env, &format!("probe('host', '{}')", path_str(&path)));
        assert!(listener.accepted(), "{who:?}: unconfined, no connection (control):\n{}", both(&control));
    }
}

/// A kernel that can't supervise connect (here: pidfd_getfd answered with ENOSYS, as before
/// Linux 5.6, by a filter the test puts around ringfence): the run is refused with exit 122
/// naming what is missing and the remedy; `check` marks the line MISS; with --allow-degraded
/// the run goes on, warns, records the guard in run.start's not_enforced, and Unix datagram
/// sockets are no longer refused (nothing would watch their destinations anyway).
#[test]
fn a_kernel_without_the_guard_refuses_the_run_unless_degraded() {
    const OLD_KERNEL: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ins = b''.join(struct.pack('HBBI', *i) for i in [(0x20, 0, 0, 0), (0x15, 0, 1, 438), (0x06, 0, 0, 0x50000 | 38), (0x06, 0, 0, 0x7fff0000)])
prog = ctypes.create_string_buffer(ins, len(ins))
fprog = ctypes.create_string_buffer(struct.pack('HxxxxxxQ', 4, ctypes.addressof(prog)), 16)
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.syscall(317, 1, 0, fprog) == 0
os.execvp(sys.argv[1], sys.argv[1:])
"#;
    for who in identities() {
        let env = Env::new(who);
        let rf = binary().as_os_str();
        let old_kernel = |args: &[&str]| {
            let argv: Vec<&std::ffi::OsStr> =
                std::iter::once(rf).chain(args.iter().map(std::ffi::OsStr::new)).collect();
            bounded_output(env.command_via(&["python3", "-c", OLD_KERNEL], &argv), RUN_LIMIT)
        };
        let refused = old_kernel(&["run", "--", "true"]);
        assert_code(&refused, 122);
        let text = stderr(&refused);
        assert!(text.contains("pidfd_getfd (Linux 5.6+)") && text.contains("--allow-degraded"), "{who:?}: {text}");
        assert!(stdout(&old_kernel(&["check"])).contains("[MISS] unix sockets"), "{who:?}");

        let events = env.outside.join("degraded.jsonl");
        let dgram = "import socket\nsocket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\nprint('DGRAM-OK')";
        let out = old_kernel(&["run", "--allow-degraded", "--events", path_str(&events), "--", "python3", "-c", dgram]);
        assert_code(&out, 0);
        assert!(stdout(&out).contains("DGRAM-OK"), "{who:?}:\n{}", both(&out));
        assert!(
            stderr(&out).contains("not enforced (--allow-degraded): unix socket guard"),
            "{who:?}:\n{}",
            both(&out)
        );
        let log = std::fs::read_to_string(&events).unwrap();
        assert_events_match_schema(&log);
        let start = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["type"] == "run.start")
            .unwrap_or_else(|| panic!("{who:?}: no run.start: {log}"));
        let missing = start["not_enforced"].as_array().unwrap();
        assert!(missing.iter().any(|l| l["name"] == "unix socket guard"), "{who:?}: {log}");
    }
}

/// Launches while host sockets come and go: how many, per identity.
const CHURN_RUNS: usize = 100;

/// Binds and removes Unix sockets in `dir` until `stop`, about 200 at a time, the way busy
/// host processes do.
fn churn_sockets(dir: &Path, stop: &std::sync::atomic::AtomicBool) {
    let mut live: Vec<(PathBuf, std::os::unix::net::UnixListener)> = Vec::new();
    let mut n: u64 = 1;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let path = dir.join(format!("s{}", (n >> 33) % 400));
        if let Ok(listener) = std::os::unix::net::UnixListener::bind(&path) {
            live.push((path, listener));
        }
        if live.len() > 200 {
            let (gone, _) = live.swap_remove((n >> 17) as usize % live.len());
            let _ = std::fs::remove_file(gone);
        }
    }
    for (path, _) in live {
        let _ = std::fs::remove_file(path);
    }
}

/// Every host socket present at the launch is masked in the view, and host processes remove
/// theirs at any moment: one that goes away while the view is built (after the plan, before or
/// during its mask) must not fail the run, and one that stays is masked. With sockets churning
/// in a folder the sandbox sees, every run exits 0, and a socket that stays is no socket inside
/// (on the host it is one: control).
#[test]
fn sockets_that_come_and_go_during_the_launch_fail_no_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    for who in identities() {
        let env = Env::new(who);
        let steady = HostListener::bind(&env, &env.outside.join("steady.sock"), SockType::Stream);
        let churn = env.outside.join("churn");
        std::fs::create_dir_all(&churn).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let churner = {
            let (stop, churn) = (stop.clone(), churn.clone());
            std::thread::spawn(move || churn_sockets(&churn, &stop))
        };
        wait_until("the churn to start", RUN_LIMIT, || std::fs::read_dir(&churn).is_ok_and(|d| d.count() > 100));
        let failed: Vec<String> = (0..CHURN_RUNS)
            .map(|_| env.run_argv(&[], &["true"]))
            .filter(|o| o.status.code() != Some(0))
            .map(|o| both(&o))
            .collect();
        let is_socket = format!("import os, stat; print(stat.S_ISSOCK(os.lstat({:?}).st_mode))", steady.path);
        let inside = env.run_py(&[], &is_socket);
        stop.store(true, Ordering::Relaxed);
        churner.join().unwrap();
        assert!(
            failed.is_empty(),
            "{who:?}: {} of {CHURN_RUNS} runs failed, first: {:?}",
            failed.len(),
            failed.first()
        );
        assert_eq!(stdout(&inside), "False\n", "{who:?}: {}", both(&inside));
        let host = env.host(&["python3", "-c", &is_socket]);
        assert_eq!(stdout(&host), "True\n", "{who:?}: {}", both(&host));
    }
}
