#!/usr/bin/env python3
"""The two ends of the network benchmark: servers for the lab's "internet", and
the client that runs inside each sandbox. Standard library only.

    net_peer.py serve ADDR CERT KEY
        Bulk server on ADDR:9000, HTTP/1.1 on ADDR:8080, HTTPS on ADDR:8443.
        Prints "ready" once listening; exits when its stdin closes, so it can't
        outlive bench/net.py, however that ends.

    net_peer.py bulk up|down HOST PORT BYTES REPS
    net_peer.py rr http|tls HOST PORT COUNT WARMUP
        The client. Prints one JSON object on stdout. With a proxy in the
        environment (http_proxy, or HTTP_PROXY; credentials in it are sent as
        Proxy-Authorization) it goes through the proxy, otherwise straight to
        HOST:PORT.

Bulk protocol (port 9000): the client sends a minimal TLS ClientHello record
(gateways that check SNI need one; the server skips it), then "UP" or "DN" and a
64-bit big-endian byte count. UP: the client sends that many bytes and shuts
down its write side; the server answers with {"bytes": N, "seconds": S}, timed
from the first data byte to the end of stream. DN: the server sends that many
bytes and closes; the client times it from sending the request to the end of
stream.
"""

import base64
import json
import os
import signal
import socket
import ssl
import statistics
import struct
import sys
import threading
import time
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 20
BULK_PORT, HTTP_PORT, TLS_PORT = 9000, 8080, 8443
BODY = b"ok\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(BODY)) + BODY


# ---------------------------------------------------------------- both ends

def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise ConnectionError(f"end of stream after {len(buf)} of {n} bytes")
        buf += got
    return bytes(buf)


def read_head(sock):
    """Reads up to the blank line after the headers; returns (head, extra bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = sock.recv(65536)
        if not got:
            raise ConnectionError(f"end of stream in the headers: {buf[:80]!r}")
        buf += got
        if len(buf) > 65536:
            raise ConnectionError("headers too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


# ---------------------------------------------------------------- servers

def send_zeros(sock, count):
    """Sends `count` zero bytes in CHUNK-sized writes."""
    buf = memoryview(bytes(CHUNK))
    while count:
        n = min(count, CHUNK)
        sock.sendall(buf[:n])
        count -= n


# A ServerHello-shaped record (version, a random that is not a HelloRetryRequest's, no session
# id, one cipher suite, no compression): the bulk tunnel's stand-in for a server's first flight,
# which a gateway may wait for before it relays more of the client's bytes.
SERVER_HELLO = bytes([0x16, 3, 3, 0, 42, 2, 0, 0, 38, 3, 3]) + bytes(32) + bytes([0, 0xc0, 0x2f, 0])


def serve_bulk(conn):
    rec = read_exact(conn, 5)
    if rec[0] == 0x16:  # skip the ClientHello record and answer it, as a TLS server would
        read_exact(conn, struct.unpack("!H", rec[3:5])[0])
        conn.sendall(SERVER_HELLO)
        req = read_exact(conn, 10)
    else:
        req = rec + read_exact(conn, 5)
    op, count = req[:2], struct.unpack("!Q", req[2:])[0]
    # Both directions count bytes instead of waiting for an end of stream, so a
    # proxy that mishandles half-closed connections still gets measured.
    if op == b"UP":
        buf = memoryview(bytearray(CHUNK))
        total = n = conn.recv_into(buf, min(CHUNK, count))
        t0 = time.perf_counter()
        while n and total < count:
            n = conn.recv_into(buf, min(CHUNK, count - total))
            total += n
        secs = time.perf_counter() - t0
        conn.sendall(json.dumps({"bytes": total, "seconds": secs}).encode() + b"\n")
    elif op == b"DN":
        send_zeros(conn, count)
    conn.recv(1)  # until the client closes, so nothing is cut short


def serve_http(conn):
    _head, _ = read_head(conn)
    conn.sendall(RESPONSE)


def listener(addr, port, handler, tls=None):
    srv = socket.create_server((addr, port), backlog=512)

    def one(conn):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                conn = tls.wrap_socket(conn, server_side=True)
            handler(conn)
        except (OSError, ConnectionError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def loop():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def serve(addr, cert, key):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is bench/net.py's to handle
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    listener(addr, BULK_PORT, serve_bulk)
    listener(addr, HTTP_PORT, serve_http)
    listener(addr, TLS_PORT, serve_http, tls)
    print("ready", flush=True)
    sys.stdin.read()  # until bench/net.py goes away
    return 0


# ---------------------------------------------------------------- client

def client_hello():
    """A minimal TLS 1.2-style ClientHello without SNI (the target is an IP literal)."""
    ext = bytes([0, 13, 0, 6, 0, 4, 0x08, 0x04, 0x04, 0x03])  # signature_algorithms
    ext += bytes([0, 10, 0, 4, 0, 2, 0, 29])                   # supported_groups: x25519
    ext += bytes([0, 11, 0, 2, 1, 0])                          # ec_point_formats: uncompressed
    body = b"\x03\x03" + os.urandom(32) + b"\x00"              # version, random, no session id
    body += b"\x00\x02\xc0\x2f" + b"\x01\x00"                  # one cipher suite, null compression
    body += struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


class Route:
    """Direct, or through the HTTP proxy named in the environment."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        url = os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY")
        self.auth = b""
        if url:
            u = urlsplit(url)
            # Resolve once, so per-connection timings don't include getaddrinfo.
            self.addr = socket.getaddrinfo(u.hostname, u.port or 80, type=socket.SOCK_STREAM)[0]
            if u.username is not None:
                cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
                self.auth = b"Proxy-Authorization: Basic " + base64.b64encode(cred) + b"\r\n"
            self.proxy = f"{u.hostname}:{u.port or 80}"
        else:
            self.addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            self.proxy = None

    def dial(self):
        family, kind, proto, _, sockaddr = self.addr
        s = socket.socket(family, kind, proto)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect(sockaddr)
        return s

    def tunnel(self):
        """A TCP stream to host:port (CONNECT through the proxy, if there is one)."""
        s = self.dial()
        if self.proxy:
            target = f"{self.host}:{self.port}".encode()
            s.sendall(b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n" + self.auth + b"\r\n")
            head, extra = read_head(s)
            status = head.split(b"\r\n", 1)[0]
            if b" 200" not in status or extra:
                raise ConnectionError(f"CONNECT refused: {status.decode(errors='replace')}")
        return s

    def get(self, path="/"):
        """One GET on a new connection (absolute-form through the proxy); returns the status."""
        s = self.dial()
        try:
            hostport = f"{self.host}:{self.port}".encode()
            target = b"http://" + hostport + path.encode() if self.proxy else path.encode()
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: " + hostport + b"\r\n" + self.auth +
                      b"Connection: close\r\n\r\n")
            return read_response(s)
        finally:
            s.close()


def read_response(s):
    head, body = read_head(s)
    status = head.split(b"\r\n", 1)[0]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        got = s.recv(65536)
        if not got:
            break
        body += got
    if b" 200" not in status or len(body) != length:
        raise ConnectionError(f"bad response: {status.decode(errors='replace')}, {len(body)}/{length} body bytes")
    return status


def bulk(direction, host, port, nbytes, reps):
    route = Route(host, int(port))
    nbytes, rates, secs = int(nbytes), [], []
    for _ in range(int(reps)):
        s = route.tunnel()
        try:
            s.sendall(client_hello())
            read_exact(s, len(SERVER_HELLO))
            if direction == "up":
                s.sendall(b"UP" + struct.pack("!Q", nbytes))
                send_zeros(s, nbytes)
                reply = b""
                while not reply.endswith(b"\n"):
                    got = s.recv(4096)
                    if not got:
                        raise ConnectionError(f"no report from the sink (got {reply!r})")
                    reply += got
                r = json.loads(reply)
                got_bytes, t = r["bytes"], r["seconds"]
            else:
                s.sendall(b"DN" + struct.pack("!Q", nbytes))
                buf = memoryview(bytearray(CHUNK))
                t0 = time.perf_counter()
                got_bytes, n = 0, 1
                while n and got_bytes < nbytes:
                    n = s.recv_into(buf, min(CHUNK, nbytes - got_bytes))
                    got_bytes += n
                t = time.perf_counter() - t0
        finally:
            s.close()
        if got_bytes != nbytes:
            raise ConnectionError(f"moved {got_bytes} of {nbytes} bytes")
        rates.append(nbytes / t)
        secs.append(t)
    return {"bytes": nbytes, "reps": len(rates), "rates_Bps": rates, "seconds": secs,
            "median_Bps": statistics.median(rates), "via": route.proxy or "direct"}


def rr(kind, host, port, count, warmup):
    route = Route(host, int(port))
    ctx = None
    if kind == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the lab's self-signed certificate

    def once():
        if kind == "http":
            route.get()
            return
        s = route.tunnel()
        try:
            # No server_hostname: an IP literal gets no SNI, as the gateway expects.
            t = ctx.wrap_socket(s)
            t.sendall(b"GET / HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\nConnection: close\r\n\r\n")
            read_response(t)
            t.close()
        finally:
            s.close()

    for _ in range(int(warmup)):
        once()
    samples = []
    for _ in range(int(count)):
        t0 = time.perf_counter_ns()
        once()
        samples.append(time.perf_counter_ns() - t0)
    return {"count": len(samples), "samples_ns": samples,
            "median_ms": statistics.median(samples) / 1e6, "via": route.proxy or "direct"}


def main(argv):
    if len(argv) >= 2 and argv[1] == "serve":
        return serve(*argv[2:5])
    if len(argv) == 7 and argv[1] == "bulk" and argv[2] in ("up", "down"):
        out = bulk(*argv[2:])
    elif len(argv) == 7 and argv[1] == "rr" and argv[2] in ("http", "tls"):
        out = rr(*argv[2:])
    else:
        sys.stderr.write(__doc__)
        return 2
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
