"""Issue 5: the collector far past the design's 4 assets.

The sim serves 200 concurrent 15m markets (4 real + 196 synthetic assets: 400 tokens), each
token's book changing 5 times a second; the collector (``slotml collect``, a real process with
its SQLite store) follows exactly those (``--lookahead 0``) and snapshots every second. Sim and
collector are pinned to different cores. Measured from /proc and the collector's own /metrics:
CPU per 1,000 websocket messages and share of one core, resident memory at start and at the
end (10 minutes; 60 s with --quick), the p50/p99 spread of capture times within one tick (the
collector reads every window's state in one synchronous pass; its duration over the last 1,000
ticks, from /metrics) and how late after the grid instant the pass ran (from the rows).
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import Row

ISSUE = 5
ASSETS = 200
BOOK_RATE = 5.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned(core: int):
    def pin() -> None:
        cores = os.sched_getaffinity(0)
        if len(cores) > 1:
            os.sched_setaffinity(0, {sorted(cores)[core % len(cores)]})
    return pin


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"bench_collector: timed out waiting for {what}")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))] if xs else float("nan")


def run(quick: bool) -> list[Row]:
    duration = 60.0 if quick else 600.0
    bin_dir = Path(sys.executable).parent
    slotml = str(bin_dir / "slotml")
    sim_port, health_port = _port(), _port()
    tmp = Path(tempfile.mkdtemp(prefix="bench_collector_"))
    syms = ["BTC", "ETH", "SOL", "XRP"] + [f"SYN{i}" for i in range(ASSETS - 4)]
    base = f"http://127.0.0.1:{sim_port}"
    sim = subprocess.Popen(
        [slotml, "sim", "serve", "--port", str(sim_port), "--family", "15m",
         "--synthetic-assets", str(ASSETS - 4), "--book-rate", str(BOOK_RATE),
         # no prints: the collector does not record the tape yet, and the README's figure was
         # measured without them (the tape issue's benchmark adds them, beside --no-trades)
         "--print-rate", "0",
         "--data-dir", str(tmp / "sim"), "--log-level", "WARNING"],
        preexec_fn=_pinned(1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    col = None
    try:
        _wait(lambda: _get(f"{base}/_sim/health"), 60, "sim")
        col = subprocess.Popen(
            [slotml, "collect", "--db", f"sqlite:///{tmp}/bench.db", "--data-dir", str(tmp),
             "--family", "15m", "--symbols", ",".join(syms), "--snapshot-interval", "1",
             "--discovery-interval", "5", "--resolution-interval", "30", "--lookahead", "0",
             "--health-port", str(health_port), "--gamma-url", f"{base}/gamma",
             "--clob-url", f"{base}/clob", "--clob-ws-url", f"ws://127.0.0.1:{sim_port}/ws/market",
             "--rtds-ws-url", f"ws://127.0.0.1:{sim_port}/rtds", "--log-level", "WARNING"],
            preexec_fn=_pinned(0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metrics = f"http://127.0.0.1:{health_port}/metrics"
        _wait(lambda: _metric(_get(metrics), "slotml_windows_tracked") >= ASSETS, 120,
              "all windows discovered")
        time.sleep(10)  # warm-up: books and prices flowing
        cpu0, rss0, t0 = _cpu_s(col.pid), _rss_mb(col.pid), time.time()
        m0 = _get(metrics)
        samples = [(0.0, rss0)]  # RSS over time: warm-up growth vs a leak's steady slope
        while time.time() < t0 + duration:
            time.sleep(min(15.0, max(0.0, t0 + duration - time.time())))
            samples.append((time.time() - t0, _rss_mb(col.pid)))
        if os.environ.get("BENCH_VERBOSE"):
            print("rss samples (s, MB):", [(round(t), round(r, 1)) for t, r in samples],
                  file=sys.stderr)
        cpu1, rss1, t1 = _cpu_s(col.pid), _rss_mb(col.pid), time.time()
        m1 = _get(metrics)
    finally:
        for p in (col, sim):
            if p is not None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    msgs = _metric(m1, "slotml_clob_frames") + _metric(m1, "slotml_rtds_frames") \
        - _metric(m0, "slotml_clob_frames") - _metric(m0, "slotml_rtds_frames")
    elapsed = t1 - t0
    share = (cpu1 - cpu0) / elapsed
    con = sqlite3.connect(tmp / "bench.db")
    # one synchronous read pass per tick: its duration is the spread of capture times
    spreads = (_metric(m1, "slotml_capture_spread_p50_seconds") * 1000,
               _metric(m1, "slotml_capture_spread_p99_seconds") * 1000)
    late = [r[0] * 1000 for r in con.execute(
        "select captured_at - tick_ms / 1000.0 from slot_snapshots where tick_ms >= ? and "
        "tick_ms <= ?", (int(t0 * 1000), int(t1 * 1000)))]
    con.close()
    mins = elapsed / 60
    rss_mid = min((r for t, r in samples if t >= elapsed / 2), default=rss1)
    return [
        Row(ISSUE, f"collector msgs/s ({int(_metric(m0, 'slotml_windows_tracked'))} markets in "
            f"progress, book rate {BOOK_RATE:g}/token/s)",
            msgs / elapsed, "msg/s", aim="~2,000 msg/s offered"),
        Row(ISSUE, "collector CPU per 1,000 messages", (cpu1 - cpu0) / max(msgs, 1) * 1e6,
            "CPU ms", higher_is_better=False),
        Row(ISSUE, "collector share of one core", share * 100, "%", higher_is_better=False,
            aim="< 25%", met=share < 0.25),
        Row(ISSUE, f"collector RSS at start (after {ASSETS} windows discovered + 10 s)", rss0,
            "MB", higher_is_better=False),
        Row(ISSUE, f"collector RSS after {mins:.0f} min (baseline: at half time)", rss1, "MB",
            baseline=rss_mid, baseline_name="at half time", higher_is_better=False,
            aim="flat (< +5% over the 2nd half)", met=rss1 <= rss_mid * 1.05),
        Row(ISSUE, "capture-time spread within one tick, p50", spreads[0], "ms",
            higher_is_better=False),
        Row(ISSUE, "capture-time spread within one tick, p99", spreads[1], "ms",
            higher_is_better=False, aim="< 50 ms", met=spreads[1] < 50),
        Row(ISSUE, "capture lateness after the grid instant, p50", _pct(late, 0.5), "ms",
            higher_is_better=False),
        Row(ISSUE, "capture lateness after the grid instant, p99", _pct(late, 0.99), "ms",
            higher_is_better=False),
    ]
