"""Where a long-running collector's RSS goes (issue 23's unexplained +3 MB/h): a diagnosis, not a
benchmark row.

``python -m bench.trace_memory --minutes 70 --out DIR`` runs the families benchmark's sim (every
family x 7 assets at real lengths, every price source) and three collectors on it, side by side:
- ``traced``: ``slotml collect`` under ``tracemalloc`` (10 frames), dumping a snapshot every
  ``--every`` minutes into DIR (compare two with ``--compare A B``);
- ``plain``: the same command as the benchmark's measured collector (as shipped: glibc's mmap
  threshold fixed at 128 KiB, ingest/heap.py);
- ``dynamic``: the same with ``--mmap-threshold-kib 0``, glibc's dynamic threshold (the collector
  before the fix: its main heap crept with its in-use bytes flat, fragmentation);
- ``arena2``: ``dynamic`` with ``MALLOC_ARENA_MAX=2`` (glibc's per-thread arenas fragment under
  the store's worker threads; if this one stays flat the growth is the arenas', not a leak).

``--runs`` picks which of them run (default all four).

Every minute it writes one JSON line per collector to DIR/samples.jsonl: RssAnon / RssFile /
RssShmem from ``/proc``, and for ``traced`` the bytes Python has allocated. Python's allocations
flat while RssAnon climbs means the growth is below Python (allocator, C extensions); both climbing
together, the snapshots name the lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.bench_collector import _collect_cmd, _get, _metric, _port, _stop, _wait
from bench.bench_collector_families import FAMILIES, SYMBOLS, start_sim
from bench.bench_collector_sources import auto_args

_WRAPPER = """
import os, sys, threading, time, tracemalloc
tracemalloc.start(10)
out, every = sys.argv.pop(1), float(sys.argv.pop(1))
def dump():
    i = 0
    while True:
        time.sleep(every)
        tracemalloc.take_snapshot().dump(os.path.join(out, f"snap{i:02d}.pickle"))
        with open(os.path.join(out, "traced.txt"), "a") as f:
            f.write(f"{time.time():.0f} {tracemalloc.get_traced_memory()[0]}\\n")
        i += 1
threading.Thread(target=dump, daemon=True).start()
from slotml.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _rss(pid: int) -> dict[str, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(m.group(1)) / 1024 for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem")
            if (m := re.search(rf"{k}:\s+(\d+) kB", text))}


DYNAMIC = ["--mmap-threshold-kib", "0"]
RUNS: dict[str, tuple[dict[str, str], list[str]]] = {  # name: (environment, extra flags)
    "traced": ({}, []), "plain": ({}, []), "dynamic": ({}, DYNAMIC),
    "arena2": ({"MALLOC_ARENA_MAX": "2"}, DYNAMIC)}


def run(minutes: float, every_min: float, out: Path, runs: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    slotml = str(Path(sys.executable).parent / "slotml")
    sim_port = _port()
    tmp = Path(tempfile.mkdtemp(prefix="trace_memory_"))
    extra = (*auto_args(tmp, sim_port), "--binance-ws-url", f"ws://127.0.0.1:{sim_port}/binance/stream")
    sim = start_sim(slotml, sim_port, tmp)
    procs: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{sim_port}/_sim/health"), 120, "sim")
        for name in runs:
            (tmp / name).mkdir()
            hp = _port()
            cmd = _collect_cmd(slotml, tmp / name, sim_port, hp, ["all"], True, extra,
                               ",".join(FAMILIES), None) + RUNS[name][1]
            env = {**os.environ, **RUNS[name][0]}
            if name == "traced":
                cmd = [sys.executable, "-c", _WRAPPER, str(out), str(60 * every_min), *cmd[1:]]
            procs[name] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL),
                           f"http://127.0.0.1:{hp}/metrics")
        want = len(FAMILIES) * len(SYMBOLS)
        _wait(lambda: all(_metric(_get(u), "slotml_windows_tracked") >= want
                          for _, u in procs.values()), 180, "every family's windows")
        t0 = time.time()
        with (out / "samples.jsonl").open("a") as f:
            while time.time() < t0 + 60 * minutes:
                for name, (p, _) in procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"trace_memory: collector {name} exited {p.returncode}")
                    f.write(json.dumps({"t": round(time.time() - t0), "run": name, **_rss(p.pid)})
                            + "\n")
                f.flush()
                time.sleep(60)
    finally:
        for p, _ in procs.values():
            _stop(p)
        _stop(sim)


def compare(a: Path, b: Path, top: int = 25) -> None:
    """The lines whose allocations grew most from snapshot ``a`` to ``b``."""
    sa, sb = tracemalloc.Snapshot.load(str(a)), tracemalloc.Snapshot.load(str(b))
    for stat in sb.compare_to(sa, "traceback")[:top]:
        print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
              f"{stat.size / 1024:9.1f} KiB now")
        for line in stat.traceback.format()[-6:]:
            print("     ", line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.trace_memory", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=70.0)
    ap.add_argument("--every", type=float, default=10.0, help="minutes between snapshots")
    ap.add_argument("--out", type=Path, default=Path("trace_memory"))
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    ap.add_argument("--runs", default=",".join(RUNS), help="collectors to run, of " + ", ".join(RUNS))
    args = ap.parse_args(argv)
    if args.compare:
        compare(*args.compare)
    else:
        runs = args.runs.split(",")
        if not runs or any(r not in RUNS for r in runs):
            ap.error(f"--runs {args.runs!r}: pick from {', '.join(RUNS)}")
        run(args.minutes, args.every, args.out, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
