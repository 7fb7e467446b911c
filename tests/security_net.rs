//! Threat 3, sending data out (and threat 4's socket half): with the default `none` network, the
//! host's loopback (TCP, UDP, IPv4, IPv6), its own addresses, DNS, and Unix sockets (abstract,
//! path-based, under /run, named by DOCKER_HOST or SSH_AUTH_SOCK) are unreachable. Every check
//! looks at the host side: the listener the test opened saw no connection and no datagram. The
//! positive controls prove each probe would get through: the same probe with `--network host`
//! (or unconfined on the host) does connect, and loopback inside the sandbox works.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::path::Path;
use std::time::{Duration, Instant};

/// Python that tries a TCP connection to each `host port` argument pair and prints
/// `CONNECTED host` or `FAILED host <error>`.
const PY_TCP: &str = r#"
import socket, sys
args = sys.argv[1:]
for host, port in zip(args[::2], args[1::2]):
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, int(port)))
        s.sendall(b'exfil')
        print('CONNECTED', host, flush=True)
    except Exception as e:
        print('FAILED', host, e, flush=True)
"#;

/// Python that sends a datagram to each `host port` pair.
const PY_UDP: &str = r#"
import socket, sys
args = sys.argv[1:]
for host, port in zip(args[::2], args[1::2]):
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.sendto(b'exfil', (host, int(port)))
        print('SENT', host, flush=True)
    except Exception as e:
        print('FAILED', host, e, flush=True)
"#;

/// Python that connects to each Unix socket argument (a leading '@' means abstract).
const PY_UNIX: &str = r#"
import socket, sys
for name in sys.argv[1:]:
    addr = '\0' + name[1:] if name.startswith('@') else name
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
        s.sendall(b'exfil')
        print('CONNECTED', name, flush=True)
    except Exception as e:
        print('FAILED', name, e, flush=True)
"#;

/// Loopback inside the sandbox works: a listener and a client in the same run (control).
const PY_SELF_LOOPBACK: &str = r#"
import socket
for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
    l = socket.socket(fam); l.bind((host, 0)); l.listen()
    c = socket.socket(fam); c.connect(l.getsockname()[:2]); print('SELF-OK', host, flush=True)
"#;

fn tcp_listener(addr: &str) -> TcpListener {
    let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    l.set_nonblocking(true).unwrap();
    l
}

/// Whether a connection is waiting on the listener (accepting it).
fn tcp_accepted(l: &TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

fn udp_socket(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    s.set_nonblocking(true).unwrap();
    s
}

fn udp_received(s: &UdpSocket) -> bool {
    let mut buf = [0u8; 64];
    match s.recv_from(&mut buf) {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("recv: {e}"),
    }
}

/// `host port` argument pairs for the probes.
fn targets(addrs: &[SocketAddr]) -> Vec<String> {
    addrs.iter().flat_map(|a| [a.ip().to_string(), a.port().to_string()]).collect()
}

fn py_args<'a>(code: &'a str, args: &'a [String]) -> Vec<&'a str> {
    let mut v = vec!["python3", "-c", code];
    v.extend(args.iter().map(String::as_str));
    v
}

/// Whether the IPv6 loopback is usable on this host.
fn have_ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// The host's loopback listeners (TCP on 127.0.0.1 and ::1) see no connection from the sandbox,
/// also not via 127.0.0.2 or "localhost"; the same probe with `--network host` connects
/// (control), and the sandbox's own loopback works (control).
#[test]
fn host_loopback_tcp_is_unreachable() {
    for who in identities() {
        let env = Env::new(who);
        let mut listeners = vec![tcp_listener("127.0.0.1:0")];
        if have_ipv6() {
            listeners.push(tcp_listener("[::1]:0"));
        }
        let any = tcp_listener("0.0.0.0:0");
        let mut addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut args = targets(&addrs);
        args.extend(["127.0.0.2".into(), any.local_addr().unwrap().port().to_string()]);
        args.extend(["localhost".into(), addrs[0].port().to_string()]);

        let out = env.run_argv(&[], &py_args(PY_TCP, &args));
        let text = both(&out);
        assert!(!text.contains("CONNECTED"), "{who:?}: reached the host's loopback:\n{text}");
        assert_eq!(text.matches("FAILED").count(), args.len() / 2, "{who:?}: the probe did not run:\n{text}");
        for l in listeners.iter().chain([&any]) {
            assert!(!tcp_accepted(l), "{who:?}: the host listener {:?} got a connection", l.local_addr());
        }

        let out = env.run_py(&[], PY_SELF_LOOPBACK);
        assert!(
            stdout(&out).contains("SELF-OK 127.0.0.1"),
            "{who:?}: loopback inside failed (control):\n{}",
            both(&out)
        );

        addrs.truncate(listeners.len());
        let out = env.run_argv(&["--network", "host"], &py_args(PY_TCP, &targets(&addrs)));
        let text = both(&out);
        for l in &listeners {
            assert!(tcp_accepted(l), "{who:?}: --network host did not connect (control):\n{text}");
        }
    }
}

/// Datagrams to UDP sockets on the host's 127.0.0.1 and ::1 never arrive; with
/// `--network host` they do (control).
#[test]
fn host_loopback_udp_is_unreachable() {
    for who in identities() {
        let env = Env::new(who);
        let mut sockets = vec![udp_socket("127.0.0.1:0")];
        if have_ipv6() {
            sockets.push(udp_socket("[::1]:0"));
        }
        let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        let out = env.run_argv(&[], &py_args(PY_UDP, &targets(&addrs)));
        let text = both(&out);
        std::thread::sleep(Duration::from_millis(100));
        for s in &sockets {
            assert!(!udp_received(s), "{who:?}: a datagram reached {:?}:\n{text}", s.local_addr());
        }

        let out = env.run_argv(&["--network", "host"], &py_args(PY_UDP, &targets(&addrs)));
        let text = both(&out);
        std::thread::sleep(Duration::from_millis(100));
        for s in &sockets {
            assert!(udp_received(s), "{who:?}: --network host sent nothing (control):\n{text}");
        }
    }
}

/// The host's non-loopback, non-link-local addresses, from `ip -o addr`.
fn host_addresses() -> Vec<IpAddr> {
    let out = std::process::Command::new("ip").args(["-o", "addr"]).output().unwrap();
    stdout(&out)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().skip_while(|w| *w != "inet" && *w != "inet6");
            it.next()?;
            it.next()?.split('/').next()?.parse::<IpAddr>().ok()
        })
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect()
}

/// The host's own LAN addresses (and the cloud metadata address) are unreachable: listeners on
/// 0.0.0.0 and [::] see no connection; with `--network host` the first address connects
/// (control).
#[test]
fn host_own_addresses_are_unreachable() {
    let ips = host_addresses();
    if ips.is_empty() {
        eprintln!("no non-loopback address on this host; nothing to test");
        return;
    }
    for who in identities() {
        let env = Env::new(who);
        let v4 = tcp_listener("0.0.0.0:0");
        let v6 = have_ipv6().then(|| tcp_listener("[::]:0"));
        let port = |ip: &IpAddr| match ip {
            IpAddr::V4(_) => v4.local_addr().unwrap().port(),
            IpAddr::V6(_) => v6.as_ref().map_or(9, |l| l.local_addr().unwrap().port()),
        };
        let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port(ip))).collect();
        let mut args = targets(&addrs);
        args.extend(["169.254.169.254".into(), "80".into()]);
        let out = env.run_argv(&[], &py_args(PY_TCP, &args));
        let text = both(&out);
        assert!(!text.contains("CONNECTED"), "{who:?}: reached a host address:\n{text}");
        assert_eq!(text.matches("FAILED").count(), args.len() / 2, "{who:?}: the probe did not run:\n{text}");
        assert!(!tcp_accepted(&v4), "{who:?}: the host's 0.0.0.0 listener got a connection");
        if let Some(l) = &v6 {
            assert!(!tcp_accepted(l), "{who:?}: the host's [::] listener got a connection");
        }

        let first = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).unwrap();
        let out = env.run_argv(&["--network", "host"], &py_args(PY_TCP, &targets(&[*first])));
        let listener = if first.is_ipv4() { &v4 } else { v6.as_ref().unwrap() };
        assert!(
            tcp_accepted(listener),
            "{who:?}: --network host did not connect to {first} (control):\n{}",
            both(&out)
        );
    }
}

/// Name resolution fails, and fails fast (the sandbox has no resolver to wait for), while
/// /etc/hosts names still resolve (control).
#[test]
fn dns_lookups_fail_fast() {
    for who in identities() {
        let env = Env::new(who);
        let started = Instant::now();
        let out = env.run_sh(
            &[],
            "getent hosts example.com && echo RESOLVED; \
             python3 -c 'import socket; print(\"RESOLVED\", socket.getaddrinfo(\"pypi.org\", 443))' 2>/dev/null; \
             getent hosts localhost >/dev/null && echo LOCAL-OK",
        );
        let took = started.elapsed();
        let text = both(&out);
        assert!(text.contains("LOCAL-OK"), "{who:?}: /etc/hosts lookups failed (control):\n{text}");
        assert!(!text.contains("RESOLVED"), "{who:?}: a name resolved:\n{text}");
        assert!(took < Duration::from_secs(5), "{who:?}: DNS failure took {took:?}");
    }
}

/// A listening Unix socket with the run's identity as owner, removed on drop.
struct HostUnix {
    listener: UnixListener,
    path: Option<std::path::PathBuf>,
}

impl HostUnix {
    fn at(env: &Env, path: &Path) -> HostUnix {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        env.give(path);
        HostUnix { listener, path: Some(path.to_path_buf()) }
    }

    fn abstract_named(name: &str) -> HostUnix {
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        HostUnix { listener, path: None }
    }

    fn accepted(&self) -> bool {
        match self.listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

impl Drop for HostUnix {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs the Unix-socket probe in the sandbox with `args`, then the same probe unconfined on
/// the host (control); asserts the sandbox's attempt reached nothing and the host's did.
fn assert_unix_unreachable(env: &Env, args: &[&str], sock: &HostUnix, name: &str) {
    let who = env.who;
    let names = [name.to_string()];
    let out = env.run_argv(args, &py_args(PY_UNIX, &names));
    let text = both(&out);
    assert!(text.contains("FAILED"), "{who:?}: {name}: the probe did not run or connected:\n{text}");
    assert!(!sock.accepted(), "{who:?}: {name}: the host socket got a connection:\n{text}");
    let host = env.host(&py_args(PY_UNIX, &names));
    assert!(sock.accepted(), "{who:?}: {name}: the unconfined probe did not connect (control):\n{}", both(&host));
}

/// An abstract Unix socket on the host (the kind X11, D-Bus and many agents use) is
/// unreachable, also with `--network host` (the Landlock scope is the second layer); the
/// sandbox's own abstract sockets work (control).
#[test]
fn abstract_unix_socket_is_unreachable() {
    for who in identities() {
        let env = Env::new(who);
        let name = marker("abstract");
        let sock = HostUnix::abstract_named(&name);
        assert_unix_unreachable(&env, &[], &sock, &format!("@{name}"));
        assert_unix_unreachable(&env, &["--network", "host"], &sock, &format!("@{name}"));
        let own = "import socket\nl = socket.socket(socket.AF_UNIX); l.bind('\\0own'); l.listen()\n\
                   c = socket.socket(socket.AF_UNIX); c.connect('\\0own'); print('SELF-OK')";
        let out = env.run_py(&[], own);
        assert!(stdout(&out).contains("SELF-OK"), "{who:?}: own abstract socket failed (control):\n{}", both(&out));
    }
}

/// Sockets named by DOCKER_HOST and SSH_AUTH_SOCK on ringfence's environment are masked: the
/// sandbox can't connect to either, even by the full path.
#[test]
fn docker_and_agent_sockets_are_unreachable() {
    for who in identities() {
        let env = Env::new(who);
        let docker = HostUnix::at(&env, &env.outside.join("docker.sock"));
        let agent = HostUnix::at(&env, &env.outside.join("agent.sock"));
        let dpath = env.outside.join("docker.sock").to_str().unwrap().to_string();
        let apath = env.outside.join("agent.sock").to_str().unwrap().to_string();
        let names = [dpath.clone(), apath.clone()];
        let mut cmd = env.run_command(&[], &py_args(PY_UNIX, &names));
        cmd.env("DOCKER_HOST", format!("unix://{dpath}")).env("SSH_AUTH_SOCK", &apath);
        let out = bounded_output(cmd, RUN_LIMIT);
        let text = both(&out);
        assert_eq!(text.matches("FAILED").count(), 2, "{who:?}: a socket connected or the probe failed:\n{text}");
        assert!(!docker.accepted(), "{who:?}: docker.sock got a connection:\n{text}");
        assert!(!agent.accepted(), "{who:?}: the agent socket got a connection:\n{text}");
        let host = env.host(&py_args(PY_UNIX, &names));
        assert!(
            docker.accepted() && agent.accepted(),
            "{who:?}: the unconfined probe failed (control):\n{}",
            both(&host)
        );
    }
}

/// Sockets under /run (D-Bus, systemd, $XDG_RUNTIME_DIR, docker) are out of reach: the sandbox
/// sees an empty /run.
#[test]
fn run_dir_sockets_are_unreachable() {
    if !is_root() {
        return; // Only root can make a directory in the host's /run.
    }
    for who in identities() {
        let env = Env::new(who);
        let dir = Path::new("/run").join(marker("run"));
        std::fs::create_dir_all(&dir).unwrap();
        env.give(&dir);
        let sock = HostUnix::at(&env, &dir.join("bus"));
        let path = dir.join("bus").to_str().unwrap().to_string();
        assert_unix_unreachable(&env, &[], &sock, &path);
        drop(sock);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A listening socket anywhere else the sandbox can read (here a host directory outside the
/// workspace; in real life ~/.emacs.d/server, a tmux or IDE socket under $HOME) is unreachable.
#[test]
fn path_unix_socket_outside_workspace_is_unreachable() {
    for who in identities() {
        let env = Env::new(who);
        let sock = HostUnix::at(&env, &env.outside.join("service.sock"));
        let path = env.outside.join("service.sock").to_str().unwrap().to_string();
        assert_unix_unreachable(&env, &[], &sock, &path);
    }
}
