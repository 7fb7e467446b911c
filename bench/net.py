#!/usr/bin/env python3
"""Measure the network path of sandboxes in a private two-namespace lab; print
Markdown tables.

Normally started by bench/run. Needs root (it makes network namespaces and a
veth pair); without it, says so and exits 0. Standard library only. Nothing
leaves the lab: the "internet" is another network namespace on this machine.

Environment:
  BENCH_NET_BYTES     bytes per bulk transfer (default 2 GiB)
  BENCH_NET_REPS      bulk transfers per runner and direction (default 3)
  BENCH_NET_REQUESTS  timed requests per runner (default 200)
  BENCH_NET_WARMUP    untimed requests before them (default 20)
  BENCH_NET_MTU       MTU of the lab's link (default 65520, like loopback)
  RINGFENCE_BIN, RINGFENCE_NOTE, BENCH_PEERS, BENCH_TMP   as for measure.py
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
from measure import NODE_BIN, PEERS_DIR, RESULTS_DIR, RINGFENCE_BIN, first_line, fmt, p90

PEER = str(Path(__file__).resolve().parent / "net_peer.py")
PYTHON = sys.executable

HOST_ADDR = "198.51.100.1"     # TEST-NET-2: the "host" namespace, where sandboxes run
INET_ADDR = "198.51.100.2"     # the "internet" namespace's end of the link
SERVER = "192.0.2.10"          # TEST-NET-1: the servers, one hop away
BULK_PORT, HTTP_PORT, TLS_PORT = 9000, 8080, 8443

NBYTES = int(os.environ.get("BENCH_NET_BYTES", str(2 << 30)))
REPS = int(os.environ.get("BENCH_NET_REPS", "3"))
REQUESTS = int(os.environ.get("BENCH_NET_REQUESTS", "200"))
REQ_WARMUP = int(os.environ.get("BENCH_NET_WARMUP", "20"))
MTU = int(os.environ.get("BENCH_NET_MTU", "65520"))
RUN_TIMEOUT = 600  # seconds for one sandbox run; a hang is reported, not waited out

PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}

# name -> (client argv, unit); bulk results are rates, request results latencies.
WORKLOADS = {
    "upload": (["bulk", "up", SERVER, str(BULK_PORT), str(NBYTES), "1"], "bulk"),
    "download": (["bulk", "down", SERVER, str(BULK_PORT), str(NBYTES), "1"], "bulk"),
    "http request": (["rr", "http", SERVER, str(HTTP_PORT), str(REQUESTS), str(REQ_WARMUP)], "rr"),
    "https request": (["rr", "tls", SERVER, str(TLS_PORT), str(REQUESTS), str(REQ_WARMUP)], "rr"),
}


def log(msg):
    sys.stderr.write(f"bench: {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- the lab

class Lab:
    """Two network namespaces joined by a veth pair.

    H ("host", 198.51.100.1/24) is where the sandboxes and the bare client run;
    I ("internet", 198.51.100.2/24, plus 192.0.2.10 on its loopback, routed
    from H) runs the servers. Each namespace is held by a `cat` whose stdin is
    a pipe from this process, and the servers also stop when their stdin
    closes, so the whole lab goes away when this process does, even on
    SIGKILL. Nothing is created in the machine's own network namespace.
    """

    def __init__(self, base: Path):
        self.base = base
        self.procs = []

    def _hold(self):
        p = subprocess.Popen(["unshare", "--net", "--", "cat"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
        self.procs.append(p)
        ns = f"/proc/{p.pid}/ns/net"
        for _ in range(200):  # until unshare has exec'd cat in the new namespace
            if os.path.exists(ns) and os.readlink(ns) != os.readlink("/proc/self/ns/net"):
                return p.pid
            time.sleep(0.005)
        raise RuntimeError("unshare --net did not make a namespace")

    def _ip(self, pid, *cmds):
        for cmd in cmds:
            subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip"] + cmd.split(),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def enter(self, pid):
        return ["nsenter", f"--net=/proc/{pid}/ns/net"]

    def __enter__(self):
        try:
            self.h = self._hold()
            self.i = self._hold()
            self._ip(self.h,
                     f"link add lab-h mtu {MTU} type veth peer name lab-i mtu {MTU} netns {self.i}",
                     "link set lo up", f"addr add {HOST_ADDR}/24 dev lab-h", "link set lab-h up",
                     f"route add 192.0.2.0/24 via {INET_ADDR}")
            self._ip(self.i, "link set lo up", f"addr add {INET_ADDR}/24 dev lab-i",
                     "link set lab-i up", f"addr add {SERVER}/32 dev lo")
            cert, key = self.base / "cert.pem", self.base / "key.pem"
            if not cert.exists():
                subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
                                "-subj", f"/CN={SERVER}", "-keyout", str(key), "-out", str(cert)],
                               check=True, capture_output=True)
            srv = subprocess.Popen(self.enter(self.i) + [PYTHON, PEER, "serve", SERVER, str(cert), str(key)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.procs.append(srv)
            if srv.stdout.readline().strip() != b"ready":
                raise RuntimeError("the lab's servers did not start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_):
        for p in reversed(self.procs):
            try:
                p.stdin.close()
            except OSError:
                pass
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through Lab.__exit__


# ---------------------------------------------------------------- runners

def runners():
    """name -> argv prefix (inside H), or a string saying why it can't run."""
    out = {"bare": []}
    rf = RINGFENCE_BIN
    if rf and os.access(rf, os.X_OK) and not os.environ.get("RINGFENCE_NOTE"):
        # A rule names each port: a bare host means ports 80 and 443.
        allow = [a for port in (BULK_PORT, HTTP_PORT, TLS_PORT) for a in ("--allow-host", f"{SERVER}:{port}")]
        out["ringfence"] = [rf, "run", "--no-config", *allow, "--"]
        # The same run, with the client blind to the proxy variables: its connections take
        # the transparent path.
        out["ringfence transparent"] = out["ringfence"] + ["env", *unset_proxy_variables()]
    else:
        out["ringfence"] = os.environ.get("RINGFENCE_NOTE") or (f"not found: {rf}" if rf else "RINGFENCE_BIN unset")
        out["ringfence transparent"] = out["ringfence"]
    srt = NODE_BIN / "srt"
    if srt.exists():
        settings = PEERS_DIR / "srt-net-settings.json"
        # srt takes IP literals in allowedDomains; its proxy then dials them
        # without the resolved-address check, as ringfence does for --allow-host.
        settings.write_text(json.dumps({
            "filesystem": {"denyRead": [], "allowWrite": ["."], "denyWrite": []},
            "network": {"allowedDomains": [SERVER], "deniedDomains": []},
        }) + "\n")
        missing = [t for t in ("bwrap", "socat", "rg") if not shutil.which(t)]
        out["srt"] = f"cannot run: needs {', '.join(missing)}" if missing else \
            [str(srt), "--settings", str(settings), "--"]
    else:
        out["srt"] = "not installed (npm i @anthropic-ai/sandbox-runtime failed; see bench/.peers/npm.log)"
    return out


def unset_proxy_variables():
    """`env` arguments that remove every proxy variable, in both spellings."""
    return [a for v in sorted(PROXY_VARS) for a in ("-u", v, "-u", v.upper())]


def cpu_ticks():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return sum(vals) - idle, sum(vals)


def killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def run_client(argv, ws, env):
    """One sandbox run of the client; returns (parsed JSON, None) or (None, why)."""
    p = subprocess.Popen(argv, cwd=ws, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return None, f"failed: no answer within {RUN_TIMEOUT} s"
    except BaseException:  # Ctrl-C: its own session didn't get the SIGINT
        killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            killpg(p.pid, signal.SIGKILL)
        raise
    finally:
        if argv[2].endswith("/srt"):
            # srt's CLI leaves $TMPDIR/srt-mux-<its pid>-N.sock behind; see measure.py.
            for f in Path(env.get("TMPDIR", "/tmp")).glob(f"srt-mux-{p.pid}-*.sock"):
                f.unlink(missing_ok=True)
    if p.returncode != 0:
        # The client's own error (last line of a traceback) says the most.
        lines = [l for l in err.decode(errors="replace").splitlines() if l.strip()]
        return None, f"failed: exit {p.returncode}: {(lines[-1] if lines else '(no stderr)').strip()[:160]}"
    try:
        return json.loads(out), None
    except ValueError:
        return None, f"failed: unreadable output: {first_line(out.decode(errors='replace'))}"


def measure_all(lab: Lab, ws: Path):
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    specs = runners()
    results = []
    for wname, (args, unit) in WORKLOADS.items():
        live = {}
        for rname, spec in specs.items():
            row = {"runner": rname, "workload": wname, "unit": unit}
            results.append(row)
            if isinstance(spec, str):
                row["status"] = spec
                continue
            argv = lab.enter(lab.h) + spec + [PYTHON, PEER] + args
            row["argv"] = argv
            if unit == "bulk":
                # An untimed 16 MiB transfer first: a runner that can't do the
                # workload is reported, not timed.
                _, err = run_client(argv[:-2] + [str(16 << 20), "1"], ws, env)
                if err:
                    row["status"] = err
                    continue
                row["status"] = "ok"
                row["samples"] = []
                live[rname] = (argv, row)
            else:
                log(f"{wname}: {rname}")
                out, err = run_client(argv, ws, env)
                if err:
                    row["status"] = err
                    continue
                row["status"] = "ok"
                row["samples"] = [ns / 1e6 for ns in out["samples_ns"]]
                row["via"] = out["via"]
        # Bulk: one transfer per sandbox run, runners taking turns, so a slow
        # patch of the machine hits them all alike. Timed inside the run.
        for rep in range(REPS):
            for rname, (argv, row) in live.items():
                log(f"{wname} {rep + 1}/{REPS}: {rname}")
                busy0, total0 = cpu_ticks()
                out, err = run_client(argv, ws, env)
                busy1, total1 = cpu_ticks()
                if err:
                    row["status"] = err
                    row.pop("samples", None)
                    continue
                row["samples"].append(out["median_Bps"] / 1e9)
                row.setdefault("cpu_busy", []).append((busy1 - busy0) / max(1, total1 - total0))
                row["via"] = out["via"]
            live = {k: v for k, v in live.items() if "samples" in v[1]}
    for row in results:
        if row.get("samples"):
            row["median"] = statistics.median(row["samples"])
            if row["unit"] == "bulk":
                row["min"], row["max"] = min(row["samples"]), max(row["samples"])
                row["cpu_busy_median"] = statistics.median(row["cpu_busy"])
            else:
                row["p90"] = p90(row["samples"])
    by_key = {(r["runner"], r["workload"]): r for r in results}
    for row in results:
        bare = by_key.get(("bare", row["workload"]), {})
        if "median" in row and bare.get("median"):
            row["x_bare"] = row["median"] / bare["median"]
            if row["unit"] == "rr":
                row["added_ms"] = row["median"] - bare["median"]
    return results


# ---------------------------------------------------------------- reporting

def verdicts(results):
    by_key = {(r["runner"], r["workload"]): r for r in results}
    lines = []
    # The explicit proxy's target is 1 GB/s; the transparent path's 2 GB/s.
    for runner, target in (("ringfence", 1.0), ("ringfence transparent", 2.0)):
        for w in ("upload", "download"):
            r = by_key.get((runner, w), {})
            if "median" in r:
                ok = "meets" if r["median"] >= target else "misses"
                lines.append(f"- {runner} {w}: {r['median']:.2f} GB/s, {ok} the ≥ {target:g} GB/s target")
    for runner in ("ringfence", "ringfence transparent"):
        for w in ("http request", "https request"):
            r = by_key.get((runner, w), {})
            if "added_ms" in r:
                ok = "meets" if r["added_ms"] <= 1.0 else "misses"
                lines.append(f"- {runner} {w}: +{r['added_ms']:.2f} ms per connection over bare, "
                             f"{ok} the ≤ 1 ms target")
    return lines


def row(r, *cells):
    """A table row: workload, runner, the cells, then the status (with `|` escaped)."""
    status = r["status"].replace("|", "\\|")
    return "| " + " | ".join([r["workload"], r["runner"], *cells, status]) + " |"


def markdown(info, results):
    lines = ["# ringfence network benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- lab: sandboxes in a namespace at {HOST_ADDR}, servers at {SERVER} in another, "
              f"one veth hop (MTU {MTU}) between them",
              f"- bulk: {NBYTES / (1 << 30):g} GiB per transfer, {REPS} transfers per runner and "
              f"direction, one per sandbox run, interleaved across runners",
              f"- requests: {REQUESTS} timed after {REQ_WARMUP} warm-up, each on a new connection, "
              f"all in one sandbox run per runner",
              "", "## Bulk throughput through a tunnel", "",
              "| workload | runner | median GB/s | min | max | × bare | CPUs busy | status |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r["unit"] == "bulk":
            busy = f"{r['cpu_busy_median'] * 100:.0f}%" if "cpu_busy_median" in r else "–"
            lines.append(row(r, fmt(r.get('median')), fmt(r.get('min')), fmt(r.get('max')),
                             fmt(r.get('x_bare'), '×'), busy))
    lines += ["", "## Connection setup: one request per new connection", "",
              "| workload | runner | median ms | p90 ms | added ms | × bare | status |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        if r["unit"] == "rr":
            added = f"{r['added_ms']:+.2f}" if "added_ms" in r else "–"
            lines.append(row(r, fmt(r.get('median')), fmt(r.get('p90')), added, fmt(r.get('x_bare'), '×')))
    v = verdicts(results)
    if v:
        lines += ["", "Targets:", ""] + v
    lines += ["", "Commands (run inside the host namespace, cwd = a scratch workspace):", ""]
    # Drop nsenter and the client from each command.
    lines += measure.command_lines(results, lambda r: r["argv"][2:r["argv"].index(PYTHON)], "python3 net_peer.py …")
    return "\n".join(lines) + "\n"


def main():
    if "-h" in sys.argv or "--help" in sys.argv:
        print(__doc__)
        return 0
    if os.geteuid() != 0:
        print("network benchmark skipped: it needs root to make network namespaces "
              "(run bench/run as root, or with sudo)")
        return 0
    missing = [t for t in ("ip", "unshare", "nsenter", "openssl") if not shutil.which(t)]
    if missing:
        print(f"network benchmark skipped: needs {', '.join(missing)}")
        return 0
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    base = Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir()) / f"ringfence-bench-{os.getuid()}" / "net"
    ws = base / "ws"
    ws.mkdir(parents=True, exist_ok=True)
    info = measure.machine()
    info = {k: v for k, v in info.items() if k not in ("codex", "bwrap", "git")}
    info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log("network lab: two namespaces, servers at " + SERVER)
    try:
        with Lab(base) as lab:
            results = measure_all(lab, ws)
    except (KeyboardInterrupt, SystemExit):
        log("network benchmark interrupted; the lab is gone")
        return 130
    md = markdown(info, results)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "net-latest.md").write_text(md)
    (RESULTS_DIR / "net-latest.json").write_text(json.dumps(
        {"machine": info, "bytes": NBYTES, "reps": REPS, "requests": REQUESTS,
         "request_warmup": REQ_WARMUP, "mtu": MTU, "results": results}, indent=1) + "\n")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
