"""Issue 23: every Up/Down family x 7 assets with every price source, in ONE collector process.

One sim (``slotml sim serve --family 5m,15m,1h,4h,1d``, the 7 assets BTC, ETH, SOL, XRP, DOGE,
BNB, HYPE, at the venue's real lengths: time scale 1) on its own core, each token's book changing
5 times a second and 0.5 prints per token per second (bench_collector's rates). The measured
collector follows all five families for the 7 assets in one process (``--symbols all``: what the
sim's Gamma lists), with the collector's default lookahead (the current window and the ones it
discovers ahead, as run for real), ``--price-source auto`` (the live-data relay and PolyBolt)
and the Binance kline stream the hourly and daily windows settle on. The baseline, side by side
against the same sim and on the same core: the design's collector, 15m only, BTC/ETH/SOL/XRP,
the relay alone. Both keep the tape. Readings (bench_collector's runner): share of one core,
messages/s received (book, relay, PolyBolt and Binance frames), windows tracked, RSS at the end
and over the second half of the run (flat: < +5%, and its slope), and from the measured
collector's store, which (family, asset) pairs were snapshotted and whether the hourly and daily
windows carry a move on their Binance-candle rule.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import Row
from bench.bench_collector import (
    BOOK_RATE,
    PRINT_RATE,
    _get,
    _measure,
    _metric,
    _pinned,
    _port,
    _Run,
    _stop,
    _wait,
)
from bench.bench_collector_sources import auto_args

ISSUE = 23
FAMILIES = ("5m", "15m", "1h", "4h", "1d")
WINDOW_S = {"5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "HYPE")
BASE_SYMBOLS = ["BTC", "ETH", "SOL", "XRP"]
SOURCES = ("clob", "rtds", "polybolt", "binance")


def start_sim(slotml: str, sim_port: int, tmp: Path) -> subprocess.Popen:
    """Every family for the 7 assets at real lengths, on its own core."""
    return subprocess.Popen(
        [slotml, "sim", "serve", "--port", str(sim_port), "--family", ",".join(FAMILIES),
         "--symbols", ",".join(SYMBOLS), "--time-scale", "1", "--book-rate", str(BOOK_RATE),
         "--print-rate", str(PRINT_RATE), "--data-dir", str(tmp / "sim"),
         "--log-level", "WARNING"],
        preexec_fn=_pinned(1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _slope_mb_h(samples: list[tuple[float, float]], since: float) -> float:
    """Least-squares slope of RSS over the samples from ``since`` s on, MB per hour."""
    pts = [(t, x) for t, x in samples if t >= since]
    if len(pts) < 2:
        return float("nan")
    mt = sum(t for t, _ in pts) / len(pts)
    mx = sum(x for _, x in pts) / len(pts)
    var = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (x - mx) for t, x in pts) / var * 3600 if var else float("nan")


def _coverage(db: Path, since_ms: int) -> dict[str, dict[str, int]]:
    """Per family: assets snapshotted, windows snapshotted, rows, rows with a settlement move."""
    con = sqlite3.connect(db)
    try:
        got = {w: (syms, wins, rows, moved) for w, syms, wins, rows, moved in con.execute(
            "select window_s, count(distinct symbol), count(distinct symbol || slot_ts), "
            "count(*), sum(dir_move_pct is not null) from slot_snapshots where tick_ms >= ? "
            "group by window_s", (since_ms,))}
    finally:
        con.close()
    return {f: dict(zip(("assets", "windows", "rows", "moved"), got.get(w, (0, 0, 0, 0)),
                        strict=True)) for f, w in WINDOW_S.items()}


def run(quick: bool, minutes: float | None = None) -> list[Row]:
    duration = 60.0 * minutes if minutes else 60.0 if quick else 600.0
    slotml = str(Path(sys.executable).parent / "slotml")
    sim_port = _port()
    tmp = Path(tempfile.mkdtemp(prefix="bench_families_"))
    every = (*auto_args(tmp, sim_port),
             "--binance-ws-url", f"ws://127.0.0.1:{sim_port}/binance/stream")
    sim = start_sim(slotml, sim_port, tmp)
    runs: list[_Run] = []
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{sim_port}/_sim/health"), 120, "sim")
        # ready once every (family, asset) has its current window: the lookahead adds more
        runs = [_Run(slotml, tmp / "families", sim_port, ["all"], True, every,
                     family=",".join(FAMILIES), lookahead=None,
                     windows=len(FAMILIES) * len(SYMBOLS)),
                _Run(slotml, tmp / "baseline", sim_port, BASE_SYMBOLS, True, lookahead=None,
                     windows=len(BASE_SYMBOLS))]
        _wait(lambda: all(r.ready() for r in runs), 180, "every family's windows discovered")
        fam = runs[0]
        ta, ma, start_ms = time.time(), _get(fam.metrics_url), int(time.time() * 1000)
        all_, base = _measure(runs, sim_port, sim.pid, duration)
        tb, mb = time.time(), _get(fam.metrics_url)
    finally:
        for r in runs:
            _stop(r.proc)
        _stop(sim)
    per_source = {s: (_metric(mb, f"slotml_{s}_frames") - _metric(ma, f"slotml_{s}_frames"))
                  / (tb - ta) for s in SOURCES}
    cov = _coverage(fam.tmp / "bench.db", start_ms)
    for r, res in zip(runs, (all_, base), strict=True):
        half = res["elapsed"] / 2
        res["slope"] = _slope_mb_h(r.samples, half)
    print(f"bench_collector_families: frames/s by source {per_source}; coverage {cov}",
          file=sys.stderr)
    return _rows(all_, base, per_source, cov)


def _rows(a: dict, b: dict, per_source: dict[str, float], cov: dict[str, dict[str, int]]
          ) -> list[Row]:
    mins = a["elapsed"] / 60
    ld = f"load {a['load']:.1f}"
    bn = "15m x 4, relay"
    pairs = sum(c["assets"] for c in cov.values())
    h = cov["1h"]
    moved = ", ".join(f"{f} {100 * c['moved'] / c['rows']:.0f}%" if c["rows"] else f"{f} -"
                      for f, c in cov.items())
    return [
        Row(ISSUE, f"collector windows tracked, 5 families x 7 assets ({a['windows']} with "
            "the lookahead)", a["windows"], "windows", baseline=b["windows"], baseline_name=bn),
        Row(ISSUE, "(family, asset) pairs snapshotted in the run, "
            + ", ".join(f"{f} {cov[f]['assets']}" for f in FAMILIES), pairs, "pairs",
            aim=f"= {len(FAMILIES) * len(SYMBOLS)}", met=pairs == len(FAMILIES) * len(SYMBOLS)),
        # a window begun before the collector has no price to beat unless the source still
        # carried its first second (ingest/collector.py): the 1h strike is the kline's open,
        # sent with every event of the candle, so 1h rows have moves mid-window; the daily
        # strike (the 1m candle at noon ET) and the 15m/4h Chainlink ones only from the
        # next window on. Rows with a move by family (run's rows): {moved}
        Row(ISSUE, f"1h rows with a move on the Binance-candle rule (all families: {moved})",
            h["moved"], "rows", baseline=h["rows"], baseline_name="1h rows", aim="= rows",
            met=h["rows"] > 0 and h["moved"] >= 0.95 * h["rows"]),
        Row(ISSUE, "collector msgs/s received, every family and source (book "
            f"{per_source['clob']:.0f}, relay {per_source['rtds']:.0f}, PolyBolt "
            f"{per_source['polybolt']:.0f}, Binance {per_source['binance']:.0f})", a["msg_s"],
            "msg/s", baseline=b["msg_s"], baseline_name=bn),
        Row(ISSUE, f"collector share of one core, every family x 7, all sources ({ld})",
            a["share"] * 100, "%", baseline=b["share"] * 100, baseline_name=bn,
            higher_is_better=False, aim="< 25%", met=a["share"] < 0.25),
        Row(ISSUE, "collector CPU per 1,000 messages, every family", a["cpu_per_k"], "CPU ms",
            baseline=b["cpu_per_k"], baseline_name=bn, higher_is_better=False),
        Row(ISSUE, f"collector RSS after {mins:.0f} min, every family", a["rss1"], "MB",
            baseline=b["rss1"], baseline_name=bn, higher_is_better=False),
        Row(ISSUE, f"collector RSS after {mins:.0f} min vs at half time, every family",
            a["rss1"], "MB", baseline=a["rss_mid"], baseline_name="at half time",
            higher_is_better=False, aim="flat (< +5% over the 2nd half)",
            met=a["rss1"] <= a["rss_mid"] * 1.05),
        # a slope's ratio to another slope near 0 means nothing: the baseline's is in the name
        Row(ISSUE, f"collector RSS slope over the 2nd half, every family (baseline "
            f"{b['slope']:+.1f} MB/h)", a["slope"], "MB/h"),
        Row(ISSUE, "sim share of its core (every family x 7, serving both)",
            a["sim_share"] * 100, "%"),
    ]
