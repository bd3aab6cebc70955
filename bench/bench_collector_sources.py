"""Issue 22: the collector at 200 markets with both price sources (``--price-source auto``:
the live-data relay and PolyBolt, 400 PolyBolt subscriptions over 7 authenticated sockets)
against the relay alone, side by side against one sim (bench_collector's sim, runner and
/proc readings: 200 concurrent 15m markets, 2,000 book changes/s, ~200 prints/s). Both
collectors keep the tape; they differ only in the price source. Aim: auto under 25% of a core.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench import Row
from bench.bench_collector import SYMBOLS, _get, _measure, _port, _Run, _stop, _wait, start_sim

ISSUE = 22
# the sim's defaults (sim/config.py): what its PolyBolt service accepts
SIM_CREDENTIALS = {"key": "sim-pb-key", "secret": "sim-pb-secret",
                   "passphrase": "sim-pb-passphrase"}


def auto_args(tmp: Path, sim_port: int) -> tuple[str, ...]:
    """``--price-source auto`` against the sim's PolyBolt, with its credentials in a 0600 file."""
    creds = tmp / "polybolt.json"
    creds.write_text(json.dumps(SIM_CREDENTIALS))
    creds.chmod(0o600)
    return ("--price-source", "auto", "--polybolt-credentials", str(creds),
            "--polybolt-ws-url", f"ws://127.0.0.1:{sim_port}/polybolt")


def run(quick: bool, minutes: float | None = None) -> list[Row]:
    duration = 60.0 * minutes if minutes else 60.0 if quick else 600.0
    slotml = str(Path(sys.executable).parent / "slotml")
    sim_port = _port()
    tmp = Path(tempfile.mkdtemp(prefix="bench_sources_"))
    auto = auto_args(tmp, sim_port)
    sim = start_sim(slotml, sim_port, tmp)
    runs: list[_Run] = []
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{sim_port}/_sim/health"), 60, "sim")
        runs = [_Run(slotml, tmp / "auto", sim_port, SYMBOLS, True, auto),
                _Run(slotml, tmp / "relay", sim_port, SYMBOLS, True)]
        both, relay = _measure(runs, sim_port, sim.pid, duration)
    finally:
        for r in runs:
            _stop(r.proc)
        _stop(sim)
    ld = f"load {both['load']:.1f}"
    return [
        Row(ISSUE, f"collector msgs/s received, --price-source auto ({both['windows']} markets)",
            both["msg_s"], "msg/s", baseline=relay["msg_s"], baseline_name="relay alone"),
        Row(ISSUE, f"collector share of one core, --price-source auto ({ld})",
            both["share"] * 100, "%", baseline=relay["share"] * 100,
            baseline_name="relay alone", higher_is_better=False, aim="< 25%",
            met=both["share"] < 0.25),
        Row(ISSUE, "collector RSS at the end, --price-source auto", both["rss1"], "MB",
            baseline=relay["rss1"], baseline_name="relay alone", higher_is_better=False),
        Row(ISSUE, "capture-time spread within one tick, p99, --price-source auto",
            both["spread"][1], "ms", baseline=relay["spread"][1], baseline_name="relay alone",
            higher_is_better=False, aim="< 50 ms", met=both["spread"][1] < 50),
    ]
