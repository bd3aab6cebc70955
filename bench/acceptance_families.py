"""Issue 23's acceptance at full length: 5m + 15m + 1h in ONE ``slotml collect`` process (the
real CLI, a child process) against the sim serving all three on its one port, at time scale 300
(windows of 1 s, 3 s and 12 s), for ``--hours`` (default 20) windows of the longest family.

Checks and prints, per family: every window of the span discovered for every asset, snapshotted
on its own grid (rows per window, ticks missed), resolved with the sim's outcome and official
prices, its measured ``price_to_beat``/``final_price`` equal to the sim's truth (the 1h ones from
the sim's Binance kline stream, by the 1H-candle rule), and the collector's CPU (share of one
core, from /proc) and RSS at the start and the end of the span. The sim runs in this process.

``python -m bench.acceptance_families [--hours 20] [--symbols BTC,ETH,SOL,XRP]``; exit 1 when a
check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
K = 300
FAMS = ("5m", "15m", "1h")
PER_WINDOW = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:")) / 1024
    return cpu, rss


async def _read(db: str) -> tuple[list[dict], list[dict]]:
    from slotml.ingest.store import open_store
    from slotml.settings import DbUrl

    s = open_store(DbUrl.parse(db))
    await s.connect()
    try:
        return await s.fetch_snapshots(), await s.fetch_resolutions()
    finally:
        await s.close()


def main(argv: list[str] | None = None) -> int:
    import json

    from slotml import venue
    from slotml.sim.config import SimConfig
    from slotml.sim.runner import sim_in_thread

    ap = argparse.ArgumentParser(prog="python -m bench.acceptance_families")
    ap.add_argument("--hours", type=int, default=20, help="1h windows collected in full")
    ap.add_argument("--symbols", default="BTC,ETH,SOL,XRP")
    a = ap.parse_args(argv)
    symbols = tuple(a.symbols.split(","))
    home = Path(tempfile.mkdtemp(prefix="slotml-families-"))
    db = f"sqlite:///{home / 'store.db'}"
    length = {f: venue.scaled_seconds(f, K) for f in FAMS}
    # the relay's lag scaled with the windows (0.3 +- 0.3 s): see tests/ingest/test_collector_families.py
    with sim_in_thread(SimConfig(family=FAMS[0], families=FAMS, time_scale=K, symbols=symbols,
                                 seed=23, relay_delay_s=0.3)) as sim:
        args = ["--db", db, "--data-dir", str(home), "--family", ",".join(FAMS),
                "--symbols", a.symbols, "--time-scale", str(K),
                "--snapshots-per-window", str(PER_WINDOW), "--gamma-url", sim.gamma_url,
                "--clob-url", sim.clob_url, "--clob-ws-url", sim.ws_market_url,
                "--rtds-ws-url", sim.rtds_url, "--binance-ws-url", sim.binance_url,
                "--discovery-interval", "0.5", "--resolution-interval", "0.25",
                "--stale-after", "3", "--retry-limit", "40", "--health-port", str(_free_port())]
        log = open(home / "collect.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "slotml.cli", "collect", *args],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        time.sleep(3)
        first = venue.window_end(venue.window_start(time.time() + 1, "1h", K), "1h", K)
        last = first
        for _ in range(a.hours):
            last = venue.window_end(last, "1h", K)
        print(f"families {','.join(FAMS)} x {len(symbols)} assets at time scale {K}: "
              f"{a.hours} hourly windows, {last - first} s", flush=True)
        time.sleep(max(0.0, first - time.time()))
        cpu0, rss0 = _cpu_rss(proc.pid)
        t0 = time.time()
        time.sleep(max(0.0, last - time.time()))
        cpu1, rss1 = _cpu_rss(proc.pid)
        t1 = time.time()
        time.sleep(25)  # the last hour's official prices (~17 s after its end)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
        snaps, res = asyncio.run(_read(db))
        ok = code == 0
        print(f"collector: {100 * (cpu1 - cpu0) / (t1 - t0):.1f}% of a core over the span, "
              f"RSS {rss0:.0f} -> {rss1:.0f} MB, exit {code}")
        for fam in FAMS:
            w = length[fam]
            rs = [r for r in res if r["window_s"] == w and first <= r["slot_ts"]
                  and r["slot_ts"] + w <= last]
            ss = [r for r in snaps if r["window_s"] == w and first <= r["slot_ts"]
                  and r["slot_ts"] + w <= last]
            want = len(symbols) * (last - first) // w
            bad = 0
            for r in rs:
                url = f"{sim.control_url}/outcome?slug={r['slug']}"
                with urllib.request.urlopen(url, timeout=5) as f:
                    t = json.loads(f.read())
                bad += not (r["resolved_up"] is t["up"] and r["price_to_beat"] == t["price_to_beat"]
                            and r["final_price"] == t["final_price"]
                            and r["official_final_price"] == t["final_price"])
            missed = want * PER_WINDOW - len(ss)
            off_grid = sum(r["tick_ms"] % (w * 1000 // PER_WINDOW) != 0 for r in ss)
            print(f"  {fam}: {len(rs)}/{want} windows, {bad} differing from the sim's truth, "
                  f"{len(ss)} snapshots ({missed} ticks missed, {off_grid} off the grid), "
                  f"rules {sorted({r['settlement'] for r in rs})}")
            ok &= len(rs) == want and bad == 0 and off_grid == 0 and missed <= 0.02 * want * PER_WINDOW
    print("PASS" if ok else "FAIL", f"(store {db})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
