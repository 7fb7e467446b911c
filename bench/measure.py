#!/usr/bin/env python3
"""Time sandbox runners on small workloads; print a Markdown table.

Normally started by bench/run, which installs the peers and builds ringfence.
Standard library only, so it runs on a bare Debian python3.

Environment:
  BENCH_RUNS     timed runs per runner x workload (default 50)
  BENCH_WARMUP   untimed warm-up runs before them (default 3)
  RINGFENCE_BIN  the ringfence binary to measure
  RINGFENCE_NOTE why ringfence is missing, when bench/run could not build it
  BENCH_PEERS    where bench/run installed the npm peers (default bench/.peers)
  BENCH_TMP      where the throwaway workspace repo lives (default $TMPDIR)
"""

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PEERS_DIR = Path(os.environ.get("BENCH_PEERS", BENCH_DIR / ".peers")).resolve()
NODE_BIN = PEERS_DIR / "node_modules" / ".bin"
# The npm `codex` is a Node launcher that execve()s this native binary; we call
# the binary directly so the numbers are the sandbox's, not Node's start-up.
# (Falls back to the launcher if the platform package is laid out otherwise.)
CODEX_NATIVE = next(iter(sorted((PEERS_DIR / "node_modules" / "@openai").glob(
    "codex-linux-*/vendor/*/bin/codex"))), NODE_BIN / "codex")
# Codex writes helper links (codex-linux-sandbox, apply_patch) under
# $CODEX_HOME/tmp and refuses to put them under /tmp, so keep its home here.
CODEX_HOME = PEERS_DIR / "codex-home"
SRT_SETTINGS = PEERS_DIR / "srt-settings.json"

# Absolute, because every command runs with cwd = the workspace.
RINGFENCE_BIN = os.path.abspath(os.environ["RINGFENCE_BIN"]) if os.environ.get("RINGFENCE_BIN") else ""
RUNS = int(os.environ.get("BENCH_RUNS", "50"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "3"))
REPO_FILES = 2000

# An agent's turn: twenty short commands, each started on its own (a sandbox each).
AGENT_SCRIPT = [
    ["ls"], ["git", "status", "--short"], ["git", "log", "-1", "--oneline"], ["cat", ".gitignore"],
    ["rg", "-l", "file 1"], ["ls", "src"], ["head", "-n", "3", "src/mod00/file0000.txt"],
    ["wc", "-l", "src/mod01/file0050.txt"], ["git", "diff", "--stat"], ["find", "src/mod02", "-name", "*.txt"],
    ["grep", "-c", "x", "src/mod03/file0150.txt"], ["sh", "-c", "echo hi > out.txt"], ["cat", "out.txt"],
    ["git", "diff"], ["pwd"], ["true"], ["test", "-f", "out.txt"], ["stat", "-c", "%s", "out.txt"],
    ["git", "rev-parse", "HEAD"], ["rg", "-c", "xxxx", "src/mod04"],
]

WORKLOADS = {
    "true": ["true"],
    "git status": ["git", "status"],
    "write file": ["sh", "-c", "echo hi > out.txt"],
    "rg": ["rg", "-l", "file 1"],
    "agent script (20 commands)": AGENT_SCRIPT,
}


def steps(cmd):
    """A workload's commands: one, or a script's each."""
    return cmd if isinstance(cmd[0], list) else [cmd]


# ---------------------------------------------------------------- workspace

def workspace() -> Path:
    """A git repo with ~2000 committed files, made once and reused.

    It is the cwd (and the writable directory) for every workload, as an
    agent's workspace would be. out.txt is ignored so the write workload does
    not change what `git status` has to report.
    """
    base = Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir()) / f"ringfence-bench-{os.getuid()}"
    repo = base / "repo"
    done = base / "repo.ok"
    if done.exists():
        return repo
    shutil.rmtree(base, ignore_errors=True)
    repo.mkdir(parents=True)
    for i in range(REPO_FILES):
        d = repo / "src" / f"mod{i // 50:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:04d}.txt").write_text(f"file {i}\n" + "x" * (i % 200) + "\n")
    (repo / ".gitignore").write_text("out.txt\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
           "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench repo"],
                 ["status", "-s"]):  # last one refreshes the index stat cache
        subprocess.run(git + args, cwd=repo, check=True, stdout=subprocess.DEVNULL)
    done.touch()
    return repo


# ---------------------------------------------------------------- runners

def find(name):
    return shutil.which(name)


def runners(ws: Path):
    """name -> (argv prefix, extra env, or a string saying why it can't run)."""
    out = {"bare": ([], {})}

    bwrap = find("bwrap")
    out["bwrap"] = ([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                     "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                     "--bind", str(ws), str(ws), "--chdir", str(ws), "--"], {}) \
        if bwrap else "not installed (bwrap not on PATH)"

    rf = RINGFENCE_BIN
    if rf and os.access(rf, os.X_OK) and not os.environ.get("RINGFENCE_NOTE"):
        out["ringfence"] = ([rf, "run", "--"], {})
        out["ringfence session"] = session_runner(rf, ws)
    else:
        out["ringfence"] = os.environ.get("RINGFENCE_NOTE") or (f"not found: {rf}" if rf else "RINGFENCE_BIN unset")
        out["ringfence session"] = out["ringfence"]

    if CODEX_NATIVE.exists():
        CODEX_HOME.mkdir(parents=True, exist_ok=True)
        # The default sandbox is read-only; workspace-write lets it write the
        # cwd (and /tmp) with the network off, which matches the other runners.
        out["codex"] = ([str(CODEX_NATIVE), "sandbox", "-c", 'sandbox_mode="workspace-write"', "--"],
                        {"CODEX_HOME": str(CODEX_HOME)})
    else:
        out["codex"] = "not installed (npm i @openai/codex failed; see bench/.peers/npm.log)"

    srt = NODE_BIN / "srt"
    if srt.exists():
        # An explicit settings file: srt would otherwise read ~/.srt-settings.json.
        # Writable cwd, no network, reads unrestricted -- the same policy as above.
        SRT_SETTINGS.write_text(json.dumps({
            "filesystem": {"denyRead": [], "allowWrite": ["."], "denyWrite": []},
            "network": {"allowedDomains": [], "deniedDomains": []},
        }) + "\n")
        missing = [t for t in ("bwrap", "socat", "rg") if not find(t)]
        out["srt"] = f"cannot run: needs {', '.join(missing)}" if missing else \
            ([str(srt), "--settings", str(SRT_SETTINGS), "--"], {})
    else:
        out["srt"] = "not installed (npm i @anthropic-ai/sandbox-runtime failed; see bench/.peers/npm.log)"
    return out


def session_runner(rf, ws):
    """`ringfence session exec` in one session, started now and owned by this process (it
    ends when the benchmark exits), with the same policy as `ringfence run`."""
    p = subprocess.run([rf, "session", "start"], cwd=ws, capture_output=True, text=True)
    if p.returncode != 0:
        return f"failed: session start: exit {p.returncode}: {first_line(p.stderr)}"
    return ([rf, "session", "exec", p.stdout.strip(), "--"], {})


# ---------------------------------------------------------------- measuring

def run_steps(prefix, cmd, ws, env, capture=False):
    """Each command of the workload, one after the other, each under `prefix`; the total time,
    the first non-zero exit (or 0), and that run's stderr."""
    total, rc, err = 0, 0, ""
    for step in steps(cmd):
        ns, code, stderr = run_once(prefix + step, ws, env, capture)
        total += ns
        if code != 0 and rc == 0:
            rc, err = code, stderr
    return total, rc, err


def run_once(argv, ws, env, capture=False):
    """One fork+exec+wait; returns (ns, returncode, stderr)."""
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(argv, cwd=ws, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE if capture else subprocess.DEVNULL)
    _, stderr = p.communicate()
    t1 = time.perf_counter_ns()
    if argv[0].endswith("/srt"):
        # srt's CLI exits without closing its proxy, leaving one
        # $TMPDIR/srt-mux-<its pid>-N.sock per run; remove ours (untimed).
        for f in Path(env.get("TMPDIR", "/tmp")).glob(f"srt-mux-{p.pid}-*.sock"):
            f.unlink(missing_ok=True)
    return t1 - t0, p.returncode, (stderr or b"").decode(errors="replace")


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:160]
    return "(no stderr)"


def p90(samples):
    s = sorted(samples)
    return s[max(0, -(-len(s) * 9 // 10) - 1)]  # nearest rank


def measure(ws: Path):
    base_env = dict(os.environ)
    specs = runners(ws)
    results = []  # one dict per runner x workload
    for wname, cmd in WORKLOADS.items():
        live = {}
        for rname, spec in specs.items():
            row = {"runner": rname, "workload": wname}
            results.append(row)
            if isinstance(spec, str):
                row["status"] = spec
                continue
            prefix, extra = spec
            argv, env = prefix + steps(cmd)[0], {**base_env, **extra}
            row["argv"] = argv
            out_txt = ws / "out.txt"
            out_txt.unlink(missing_ok=True)
            err = None
            for _ in range(max(1, WARMUP)):
                _, rc, stderr = run_steps(prefix, cmd, ws, env, capture=True)
                if rc != 0:
                    err = f"failed: exit {rc}: {first_line(stderr)}"
                    break
            if err is None and wname in ("write file", "agent script (20 commands)") and not out_txt.exists():
                # A sandbox that exits 0 but writes to a private copy would
                # otherwise look like a pass.
                err = "failed: exit 0 but out.txt did not appear in the workspace"
            if err:
                row["status"] = err
                continue
            row["status"] = "ok"
            row["samples_ns"] = []
            row["nonzero_exits"] = 0
            live[rname] = (prefix, env, row)
        # Interleave runners so slow drift on the machine hits them all alike.
        for _ in range(RUNS):
            for prefix, env, row in live.values():
                ns, rc, _ = run_steps(prefix, cmd, ws, env)
                row["samples_ns"].append(ns)
                row["nonzero_exits"] += rc != 0
    for row in results:
        if row.get("samples_ns"):
            row["median_ms"] = statistics.median(row["samples_ns"]) / 1e6
            row["p90_ms"] = p90(row["samples_ns"]) / 1e6
            if row["nonzero_exits"]:
                row["status"] = f"ok, but {row['nonzero_exits']}/{RUNS} timed runs exited non-zero"
    by_key = {(r["runner"], r["workload"]): r for r in results}
    for row in results:
        for ref in ("bare", "bwrap"):
            other = by_key.get((ref, row["workload"]), {})
            if "median_ms" in row and other.get("median_ms"):
                row[f"x_{ref}"] = row["median_ms"] / other["median_ms"]
    return results


# ---------------------------------------------------------------- reporting

def version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return first_line(p.stdout or p.stderr) if p.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rf = RINGFENCE_BIN
    if os.environ.get("RINGFENCE_NOTE"):
        rf_info = os.environ["RINGFENCE_NOTE"]
    elif rf:
        rf_info = f"{version([rf, '--version'])} ({rf})"
    else:
        rf_info = "RINGFENCE_BIN unset"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "kernel": platform.release(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "uid": os.getuid(),
        "python": platform.python_version(),
        "bwrap": version(["bwrap", "--version"]),
        "codex": version([str(CODEX_NATIVE), "--version"]),
        "srt": version([str(NODE_BIN / "srt"), "--version"]),
        "node": version(["node", "--version"]),
        "git": version(["git", "--version"]),
        "ringfence": rf_info,
    }


def fmt(v, unit=""):
    return f"{v:.2f}{unit}" if isinstance(v, float) else "–"


def markdown(info, results, ws):
    lines = ["# ringfence benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- workspace: {ws} ({REPO_FILES} files, git repo)",
              f"- runs: {RUNS} timed after {WARMUP} warm-up, interleaved across runners",
              "", "| workload | runner | median ms | p90 ms | × bare | × bwrap | status |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        status = r["status"].replace("|", "\\|")
        lines.append(f"| {r['workload']} | {r['runner']} | {fmt(r.get('median_ms'))} | "
                     f"{fmt(r.get('p90_ms'))} | {fmt(r.get('x_bare'), '×')} | "
                     f"{fmt(r.get('x_bwrap'), '×')} | {status} |")
    lines += ["", "Commands (prefix + workload, cwd = workspace):", ""]
    lines += command_lines(results, lambda r: r["argv"][:len(r["argv"]) - len(steps(WORKLOADS[r["workload"]])[0])], "CMD")
    return "\n".join(lines) + "\n"


def command_lines(results, prefix_of, what):
    """One line per runner: the command prefix it ran `what` with."""
    lines, seen = [], set()
    for r in results:
        if "argv" in r and r["runner"] not in seen:
            seen.add(r["runner"])
            prefix = prefix_of(r)
            lines.append(f"- {r['runner']}: `{(shlex.join(prefix) + ' ') if prefix else ''}{what}`")
    return lines


def main():
    if "-h" in sys.argv or "--help" in sys.argv:
        print(__doc__)
        return 0
    ws = workspace()
    info = machine()
    results = measure(ws)
    md = markdown(info, results, ws)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text(md)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(
        {"machine": info, "runs": RUNS, "warmup": WARMUP, "workspace": str(ws),
         "results": results}, indent=1) + "\n")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
