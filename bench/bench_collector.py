"""Issues 5 and the trade tape: the collector far past the design's 4 assets, with and without prints.

The sim serves 200 concurrent 15m markets (4 real + 196 synthetic assets: 400 tokens), each
token's book changing 5 times a second (2,000 book changes/s, sent as ``price_change`` frames,
one per market per change and socket, plus a ``best_bid_ask`` per token changed) and 0.5 ``last_trade_price``
prints per token per second (~200 prints/s). Two collectors (``slotml collect``, real processes
with their SQLite stores) follow exactly those (``--lookahead 0``) and snapshot every second,
SIDE BY SIDE against the one sim: one with the tape (the default), one with ``--no-trades``
(the baseline: the same frames arrive, prints are dropped unparsed). Both subscribe the same
tokens, so the sim sends both the same frames at the same moments: the two are compared at
EQUAL message rates by construction (the msgs/s row shows it), under the same machine load.
The collectors share one core, the sim has the other; each process's CPU is its own, from
/proc. Measured from /proc, the collectors' /metrics and databases and the sim's
/_sim/stats: CPU per 1,000 websocket messages and share of one core, resident memory at the
start and the end (10 minutes; 60 s with --quick; ``--minutes``), prints sent, in the database
and counted by the writer per second, commits per second, the p50/p99 spread of capture times
within one tick (the collector reads every window's state in one synchronous pass; its duration
over the last 1,000 ticks, from /metrics) and how late after the grid instant the pass ran
(from the rows). The load average (mean of samples every 15 s) is in the rows' names.
"""

from __future__ import annotations

import json
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
from typing import Any

from bench import Row

ISSUE = 5
TAPE_ISSUE = ISSUE  # the trade tape (no number of its own in the tree): shown under the collector
ASSETS = 200
BOOK_RATE = 5.0  # per token per second: 400 tokens x 5 = 2,000 book changes/s
PRINT_RATE = 0.5  # per token per second: 400 tokens x 0.5 = 200 prints/s


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


def _collect_cmd(slotml: str, tmp: Path, sim_port: int, health_port: int, syms: list[str],
                 trades: bool, extra: tuple[str, ...] = (), family: str = "15m",
                 lookahead: int | None = 0) -> list[str]:
    """``lookahead`` None: the collector's default (windows ahead, as run for real)."""
    base = f"http://127.0.0.1:{sim_port}"
    return [slotml, "collect", "--db", f"sqlite:///{tmp}/bench.db", "--data-dir", str(tmp),
            "--family", family, "--symbols", ",".join(syms), "--snapshot-interval", "1",
            "--discovery-interval", "5", "--resolution-interval", "30",
            *([] if lookahead is None else ["--lookahead", str(lookahead)]),
            "--health-port", str(health_port), "--gamma-url", f"{base}/gamma",
            "--clob-url", f"{base}/clob", "--clob-ws-url", f"ws://127.0.0.1:{sim_port}/ws/market",
            "--rtds-ws-url", f"ws://127.0.0.1:{sim_port}/rtds", "--log-level", "WARNING",
            *([] if trades else ["--no-trades"]), *extra]


def _stop(p: subprocess.Popen | None) -> None:
    if p is None:
        return
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()


def _sim_stats(base: str) -> dict[str, float]:
    return json.loads(_get(f"{base}/_sim/stats"))["stats"]


class _Run:
    """One collector process against the running sim, and its /metrics and /proc readings."""

    def __init__(self, slotml: str, tmp: Path, sim_port: int, syms: list[str], trades: bool,
                 extra: tuple[str, ...] = (), family: str = "15m", lookahead: int | None = 0,
                 windows: int = ASSETS) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp, self.trades, self.windows = tmp, trades, windows  # windows: ready at this many
        self.health_port = _port()
        self.metrics_url = f"http://127.0.0.1:{self.health_port}/metrics"
        self.proc = subprocess.Popen(
            _collect_cmd(slotml, tmp, sim_port, self.health_port, syms, trades, extra, family,
                         lookahead),
            preexec_fn=_pinned(0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.samples: list[tuple[float, float]] = []  # (s since t0, RSS MB)

    def ready(self) -> bool:
        return _metric(_get(self.metrics_url), "slotml_windows_tracked") >= self.windows

    def mark(self) -> tuple[float, float, str]:
        """(CPU s, RSS MB, /metrics text) now."""
        return _cpu_s(self.proc.pid), _rss_mb(self.proc.pid), _get(self.metrics_url)


def _measure(runs: list[_Run], sim_port: int, sim_pid: int, duration: float
             ) -> list[dict[str, Any]]:
    """Both collectors side by side over the same ``duration``: the same sim sends both the
    same frames (each subscribes the same tokens), so their message rates are equal by
    construction and CPU compares directly. Each process's CPU is its own (/proc)."""
    base = f"http://127.0.0.1:{sim_port}"
    _wait(lambda: all(r.ready() for r in runs), 120, "all windows discovered")
    time.sleep(10)  # warm-up: books and prices flowing
    t0, sim0, s0, load = time.time(), _cpu_s(sim_pid), _sim_stats(base), [os.getloadavg()[0]]
    m0 = [r.mark() for r in runs]
    for r, (_, rss, _) in zip(runs, m0, strict=True):
        r.samples.append((0.0, rss))
    while time.time() < t0 + duration:
        time.sleep(min(15.0, max(0.0, t0 + duration - time.time())))
        for r in runs:  # RSS over time: warm-up growth vs a leak's steady slope
            r.samples.append((time.time() - t0, _rss_mb(r.proc.pid)))
        load.append(os.getloadavg()[0])
    m1 = [r.mark() for r in runs]
    t1, sim1, s1 = time.time(), _cpu_s(sim_pid), _sim_stats(base)
    elapsed = t1 - t0

    def rate(a: float, b: float) -> float:
        return (b - a) / elapsed

    out = []
    for r, (cpu0, rss0, mt0), (cpu1, rss1, mt1) in zip(runs, m0, m1, strict=True):
        if os.environ.get("BENCH_VERBOSE"):
            print(f"rss samples, trades={r.trades} (s, MB):",
                  [(round(t), round(x, 1)) for t, x in r.samples], file=sys.stderr)
        msgs = sum(_metric(mt1, f"slotml_{s}_frames") - _metric(mt0, f"slotml_{s}_frames")
                   for s in ("clob", "rtds", "polybolt", "binance"))
        con = sqlite3.connect(r.tmp / "bench.db")
        late = [x[0] * 1000 for x in con.execute(
            "select captured_at - tick_ms / 1000.0 from slot_snapshots where tick_ms >= ? and "
            "tick_ms <= ?", (int(t0 * 1000), int(t1 * 1000)))]
        # prints in the database with receipt times in the window: what was really stored
        in_db = con.execute("select count(*) from slot_trades where received_at >= ? and "
                            "received_at < ?", (t0, t1 - 2.0)).fetchone()[0]
        con.close()

        def mrate(name: str, a: str = mt0, b: str = mt1) -> float:
            return rate(_metric(a, name), _metric(b, name))

        out.append({
            "elapsed": elapsed, "msgs": msgs, "msg_s": msgs / elapsed,
            "windows": int(_metric(mt0, "slotml_windows_tracked")),
            "share": (cpu1 - cpu0) / elapsed, "sim_share": (sim1 - sim0) / elapsed,
            "cpu_per_k": (cpu1 - cpu0) / max(msgs, 1) * 1e6,
            "rss0": rss0, "rss1": rss1,
            "rss_mid": min((x for t, x in r.samples if t >= elapsed / 2), default=rss1),
            "prints_sent_s": rate(s0.get("last_trade_price_events", 0),
                                  s1.get("last_trade_price_events", 0)),
            "price_change_s": rate(s0.get("price_change_events", 0),
                                   s1.get("price_change_events", 0)) / len(runs),
            "prints_received_s": mrate("slotml_trades_received_total"),
            "prints_accepted_s": mrate("slotml_trades_accepted_total"),
            "prints_stored_s": mrate("slotml_trades_stored_total"),
            "prints_in_db_s": in_db / (elapsed - 2.0),
            "prints_lost": _metric(mt1, "slotml_trades_dropped_total")
            + _metric(mt1, "slotml_trades_rejected_total"),
            "commits_s": mrate("slotml_writer_commits"),
            "spread": (_metric(mt1, "slotml_capture_spread_p50_seconds") * 1000,
                       _metric(mt1, "slotml_capture_spread_p99_seconds") * 1000),
            "late": (_pct(late, 0.5), _pct(late, 0.99)),
            "load": sum(load) / len(load),
        })
    return out


def start_sim(slotml: str, sim_port: int, tmp: Path) -> subprocess.Popen:
    """The sim serving ASSETS concurrent 15m markets on its own core (bench_collector_sources
    reuses it)."""
    return subprocess.Popen(
        [slotml, "sim", "serve", "--port", str(sim_port), "--family", "15m",
         "--synthetic-assets", str(ASSETS - 4), "--book-rate", str(BOOK_RATE),
         "--print-rate", str(PRINT_RATE),
         "--data-dir", str(tmp / "sim"), "--log-level", "WARNING"],
        preexec_fn=_pinned(1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SYMBOLS = ["BTC", "ETH", "SOL", "XRP"] + [f"SYN{i}" for i in range(ASSETS - 4)]


def run(quick: bool, minutes: float | None = None) -> list[Row]:
    duration = 60.0 * minutes if minutes else 60.0 if quick else 600.0
    slotml = str(Path(sys.executable).parent / "slotml")
    sim_port = _port()
    tmp = Path(tempfile.mkdtemp(prefix="bench_collector_"))
    syms = SYMBOLS
    sim = start_sim(slotml, sim_port, tmp)
    runs: list[_Run] = []
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{sim_port}/_sim/health"), 60, "sim")
        runs = [_Run(slotml, tmp / "tape", sim_port, syms, True),
                _Run(slotml, tmp / "no_trades", sim_port, syms, False)]
        on, off = _measure(runs, sim_port, sim.pid, duration)
    finally:
        for r in runs:
            _stop(r.proc)
        _stop(sim)
    return _rows(on, off)


def _rows(on: dict[str, Any], off: dict[str, Any]) -> list[Row]:
    """The tape run's rows, each beside the --no-trades run where one applies.

    Rows comparing the two show the ratio tape / no-trades (``higher_is_better=True`` makes
    ``Row.ratio`` figure / baseline), so 1.2x means the tape costs 20% more.
    """
    mins = on["elapsed"] / 60
    ld = f"load {on['load']:.1f}"
    nt = "--no-trades"
    return [
        # book changes per token: 400 x 5 = 2,000/s by construction; frames depend on how the
        # collector spreads the tokens over its sockets (one frame per market per socket)
        Row(ISSUE, f"sim price_change frames/s ({on['windows']} markets, {2 * on['windows']} "
            f"tokens x book rate {BOOK_RATE:g} = {2 * on['windows'] * BOOK_RATE:,.0f} changes/s)",
            on["price_change_s"], "frames/s", aim=">= 1,000/s (one per market per change)"),
        Row(TAPE_ISSUE, f"sim prints sent/s (print rate {PRINT_RATE:g}/token/s, to both)",
            on["prints_sent_s"], "prints/s", aim="~200/s"),
        Row(TAPE_ISSUE, "collector prints in the database/s (tape on; by receipt time)",
            on["prints_in_db_s"], "prints/s", baseline=on["prints_sent_s"], baseline_name="sent",
            aim="= sent",
            met=abs(on["prints_in_db_s"] - on["prints_sent_s"]) <= 0.02 * on["prints_sent_s"]),
        Row(TAPE_ISSUE, "collector prints stored/s by the writer's count (trades_stored)",
            on["prints_stored_s"], "prints/s", baseline=on["prints_accepted_s"],
            baseline_name="accepted", aim="= accepted, none dropped or rejected",
            met=abs(on["prints_stored_s"] - on["prints_accepted_s"])
            <= 0.02 * on["prints_accepted_s"] and on["prints_lost"] == 0),
        Row(TAPE_ISSUE, "collector writer commits/s, tape on (paced: 0.25 s apart at most)",
            on["commits_s"], "commits/s", baseline=off["commits_s"], baseline_name=nt),
        Row(ISSUE, "sim share of its core, serving both (near 100%: it falls behind)",
            on["sim_share"] * 100, "%"),
        Row(ISSUE, f"collector msgs/s received, side by side from one sim ({ld})", on["msg_s"],
            "msg/s", baseline=off["msg_s"], baseline_name=nt, aim="equal (same frames)",
            met=abs(on["msg_s"] - off["msg_s"]) <= 0.01 * off["msg_s"]),
        Row(ISSUE, f"collector share of one core, tape on ({ld})", on["share"] * 100, "%",
            baseline=off["share"] * 100, baseline_name=nt, aim="< 25%", met=on["share"] < 0.25),
        Row(ISSUE, f"collector share of one core, {nt}", off["share"] * 100, "%",
            higher_is_better=False, aim="< 25%", met=off["share"] < 0.25),
        Row(ISSUE, "collector CPU per 1,000 messages, tape on", on["cpu_per_k"], "CPU ms",
            baseline=off["cpu_per_k"], baseline_name=nt),
        Row(ISSUE, f"collector RSS at start, tape on ({ASSETS} windows discovered + 10 s)",
            on["rss0"], "MB", baseline=off["rss0"], baseline_name=nt),
        Row(ISSUE, f"collector RSS after {mins:.0f} min, tape on (baseline: at half time)",
            on["rss1"], "MB", baseline=on["rss_mid"], baseline_name="at half time",
            higher_is_better=False, aim="flat (< +5% over the 2nd half)",
            met=on["rss1"] <= on["rss_mid"] * 1.05),
        Row(ISSUE, f"collector RSS after {mins:.0f} min, {nt} (baseline: at half time)",
            off["rss1"], "MB", baseline=off["rss_mid"], baseline_name="at half time",
            higher_is_better=False, aim="flat (< +5% over the 2nd half)",
            met=off["rss1"] <= off["rss_mid"] * 1.05),
        Row(ISSUE, "capture-time spread within one tick, p50, tape on", on["spread"][0], "ms",
            higher_is_better=False),
        Row(ISSUE, f"capture-time spread within one tick, p99, tape on ({ld})", on["spread"][1],
            "ms", baseline=off["spread"][1], baseline_name=nt, aim="< 50 ms",
            met=on["spread"][1] < 50),
        Row(ISSUE, "capture lateness after the grid instant, p50, tape on", on["late"][0], "ms",
            higher_is_better=False),
        Row(ISSUE, "capture lateness after the grid instant, p99, tape on", on["late"][1], "ms",
            baseline=off["late"][1], baseline_name=nt),
    ]
