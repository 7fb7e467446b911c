#!/usr/bin/env python3
"""What the exec monitor costs: the same commands under ringfence with the monitor on (the
default) and off (--no-exec-monitor); prints a Markdown table of medians and ratios.

  bench/exec.py                 # RINGFENCE_BIN, or target/release/ringfence
  BENCH_RUNS=20 bench/exec.py   # timed runs for the short workloads (default 50; the storm and
                                # the build take a fifth and a tenth of that, at least 5)

Workloads (all run with the workspace under $BENCH_TMP or /var/tmp as cwd):
  true        ringfence run -- true: the per-launch cost
  exec storm  a shell loop starting 1,000 short processes (/bin/true): the per-exec cost
  make -j2    a clean parallel build of a small C project (40 files): a real build

Standard library only, like bench/measure.py.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RUNS = int(os.environ.get("BENCH_RUNS", "50"))
BIN = os.path.abspath(os.environ.get("RINGFENCE_BIN") or BENCH_DIR.parent / "target/release/ringfence")
STORM = "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"
SOURCES = 40


def project(root: Path) -> Path:
    """A small C project: SOURCES files with a few functions each, and a Makefile."""
    ws = root / "exec-bench"
    if (ws / "Makefile").exists():
        return ws
    ws.mkdir(parents=True, exist_ok=True)
    for n in range(SOURCES):
        body = "".join(f"int f{n}_{k}(int x) {{ return x * {k} + {n}; }}\n" for k in range(200))
        (ws / f"m{n}.c").write_text(body)
    (ws / "main.c").write_text("int main(void) { return 0; }\n")
    objs = " ".join(f"m{n}.o" for n in range(SOURCES))
    (ws / "Makefile").write_text(
        f"prog: main.o {objs}\n\tcc -o $@ $^\n%.o: %.c\n\tcc -O1 -c $< -o $@\nclean:\n\trm -f *.o prog\n"
    )
    return ws


def run_once(argv, cwd: Path) -> float:
    """Wall time in milliseconds of one run, which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        sys.exit(f"bench/exec.py: {argv} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def timed(argvs, cwd: Path, runs: int):
    """Median wall time in milliseconds of each argv over `runs` runs, taken in turns (so a
    change in the machine's load hits all alike), after one untimed warm-up round."""
    samples = [[] for _ in argvs]
    for n in range(runs + 1):
        for argv, out in zip(argvs, samples):
            elapsed = run_once(argv, cwd)
            if n:
                out.append(elapsed)
    return [statistics.median(s) for s in samples]


def main() -> None:
    if not os.access(BIN, os.X_OK):
        sys.exit(f"bench/exec.py: no ringfence at {BIN}; build it or set RINGFENCE_BIN")
    if not shutil.which("make") or not shutil.which("cc"):
        sys.exit("bench/exec.py: make and cc are needed for the build workload")
    ws = project(Path(os.environ.get("BENCH_TMP", "/var/tmp")) / f"ringfence-bench-{os.getuid()}")
    workloads = [
        ("`ringfence run -- true`", ["true"], RUNS),
        ("exec storm (1,000 processes)", ["sh", "-c", STORM], max(5, RUNS // 5)),
        ("`make -j2` (41 C files)", ["sh", "-c", "make -s clean && make -s -j2"], max(5, RUNS // 10)),
    ]
    print(f"ringfence {BIN}, {os.cpu_count()} CPUs, medians of the timed runs\n")
    print("| workload | runs | monitor off | monitor on | on / off | added |")
    print("|---|---|---|---|---|---|")
    for name, argv, runs in workloads:
        off, on = timed([[BIN, "run", "--no-exec-monitor", "--", *argv], [BIN, "run", "--", *argv]], ws, runs)
        print(f"| {name} | {runs} | {off:.1f} ms | {on:.1f} ms | {on / off:.3f} | {on - off:+.1f} ms |")


if __name__ == "__main__":
    main()
