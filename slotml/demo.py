"""``slotml demo``: the whole pipeline on this machine, offline, in a few minutes.

Runs the real commands a trader would run, as subprocesses, so every line it prints can be
copied: the local exchange (sim) and the collector over loopback into an embedded SQLite store,
then 60 days of sim history into a data dir of its own (one lake never mixes two stores),
export, train, backtest. Re-running is safe: the demo's data dirs are rebuilt from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STAGES = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _stage(n: int, title: str) -> float:
    _say(f"\n[{n}/{STAGES}] {title}")
    return time.monotonic()


def _done(t0: float) -> None:
    _say(f"      done in {time.monotonic() - t0:.1f}s")


def _slotml(*args: str) -> list[str]:
    return [sys.executable, "-m", "slotml.cli", *args]


def _run(cmd: list[str], log: Path) -> None:
    """Run one pipeline command; its output goes to a log file, a failure shows its tail."""
    _say("      $ slotml " + " ".join(cmd[3:]))
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = log.read_text().splitlines()[-25:]
        _say("\n".join("      | " + line for line in tail))
        raise SystemExit(f"demo: `{' '.join(cmd[3:])}` failed (exit {rc}); full log: {log}")


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except Exception as e:  # noqa: BLE001 - 503 carries a body too
        body = getattr(e, "read", None)
        if body:
            try:
                return json.loads(body())
            except Exception:  # noqa: BLE001
                return None
        return None


def _store_counts(db: Path) -> tuple[int, int, int]:
    """(snapshot rows, windows discovered, windows resolved) read from the SQLite store."""
    if not db.exists():
        return 0, 0, 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            snaps = con.execute("SELECT count(*) FROM slot_snapshots").fetchone()[0]
            wins, res = con.execute(
                "SELECT count(*), count(resolved_up) FROM slot_resolutions").fetchone()
        finally:
            con.close()
        return snaps, wins, res
    except sqlite3.Error:
        return 0, 0, 0


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except Exception:  # noqa: BLE001
            time.sleep(0.2)
    raise SystemExit(f"demo: {url} did not come up within {timeout:.0f}s")


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def live_stage(root: Path, seconds: float) -> Path:
    """Sim with 10 s windows + the real collector into the embedded store."""
    live = root / "live"
    logs = root / "logs"
    sim_port, health_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{sim_port}"
    sim = subprocess.Popen(
        _slotml("sim", "serve", "--family", "10s", "--port", str(sim_port), "--seed", "7"),
        stdout=(logs / "sim.log").open("w"), stderr=subprocess.STDOUT)
    collector = None
    try:
        _wait_http(f"{base}/_sim/markets", 30)
        _say(f"      sim serving Gamma, CLOB and live-data on {base}")
        cmd = _slotml(
            "collect", "--data-dir", str(live), "--family", "10s",
            "--gamma-url", f"{base}/gamma", "--clob-url", f"{base}/clob",
            "--clob-ws-url", f"ws://127.0.0.1:{sim_port}/ws/market",
            "--rtds-ws-url", f"ws://127.0.0.1:{sim_port}/rtds",
            "--snapshot-interval", "1", "--discovery-interval", "2",
            "--resolution-interval", "1", "--stale-after", "10", "--retry-limit", "120",
            "--health-port", str(health_port))
        _say("      $ slotml " + " ".join(cmd[3:]))
        collector = subprocess.Popen(cmd, stdout=(logs / "collect.log").open("w"),
                                     stderr=subprocess.STDOUT)
        db = live / "slotml.db"
        t_end = time.monotonic() + seconds
        health = None
        while time.monotonic() < t_end:
            time.sleep(min(10.0, max(0.0, t_end - time.monotonic())))
            if collector.poll() is not None:
                raise SystemExit(f"demo: the collector exited ({collector.returncode}); "
                                 f"see {logs / 'collect.log'}")
            snaps, wins, res = _store_counts(db)
            health = _get_json(f"http://127.0.0.1:{health_port}/health") or {}
            _say(f"      t+{seconds - (t_end - time.monotonic()):4.0f}s  rows written {snaps:5d}  "
                 f"windows discovered {wins:3d}  resolved {res:3d}  "
                 f"health ok={health.get('ok')} queue={health.get('queue_depth')} "
                 f"dropped={health.get('rows_dropped')}")
        if health:
            streams = health.get("streams", {})
            _say("      /health: " + ", ".join(
                f"{k} connected={v.get('connected')} reconnects={v.get('reconnects')}"
                for k, v in streams.items()) + f", windows tracked {health.get('windows_tracked')}")
    finally:
        if collector is not None:
            _stop(collector)
        _stop(sim)
    return live / "slotml.db"


def build_parser() -> argparse.ArgumentParser:
    from slotml.argtypes import OneLineParser, integer, output_dir, seconds

    ap = OneLineParser(prog="slotml demo")
    ap.add_argument("--data-dir", type=output_dir,
                    default=os.environ.get("SLOTML_DEMO_HOME", "./data/demo"))
    ap.add_argument("--live-seconds", type=seconds(5, 86400), default=60.0,
                    help="seconds of live collection, 5..86400 (default 60)")
    ap.add_argument("--days", type=integer(20, 3650, "days"), default=60,
                    help="days of history, 20..3650 (default 60)")
    ap.add_argument("--test-days", type=integer(1, 3650, "days"), default=10,
                    help="held-out days, 1..3650 (default 10)")
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # one line and 2 on bad input (0 for --help)
        return e.code if isinstance(e.code, int) else 2

    root = Path(args.data_dir)
    t_all = time.monotonic()
    if root.exists():
        shutil.rmtree(root)  # a fresh data dir every run: re-running is safe
    (root / "logs").mkdir(parents=True)
    logs = root / "logs"
    hist = root / "history"

    t0 = _stage(1, f"live: sim (10 s windows) + collector into SQLite for {args.live_seconds:.0f}s")
    live_db = live_stage(root, args.live_seconds)
    _done(t0)

    t0 = _stage(2, f"history: {args.days} days of 15-minute sim markets into {hist}")
    _run(_slotml("sim", "backfill", "--data-dir", str(hist), "--family", "15m",
                 "--days", str(args.days), "--seed", "42"), logs / "backfill.log")
    _done(t0)

    t0 = _stage(3, "export the lake, build features, train, calibrate, write the ONNX model")
    _run(_slotml("export", "--data-dir", str(hist), "--grace", "0"), logs / "export.log")
    _run(_slotml("train", "--data-dir", str(hist), "--test-days", str(args.test_days),
                 "--promote"), logs / "train.log")
    _say("\n".join("      " + line for line in (logs / "train.log").read_text().splitlines()
                   if not line[:4].isdigit()))
    _done(t0)

    t0 = _stage(4, "backtest the held-out days: policies x fill models, the maker verdict")
    model = hist / "models" / "current"
    _run(_slotml("backtest", "--data-dir", str(hist), "--model-path", str(model)),
         logs / "backtest.log")
    _say("\n".join("      " + line for line in (logs / "backtest.log").read_text().splitlines()
                   if not line[:4].isdigit()))
    _done(t0)

    _stage(5, "where everything is")
    models = sorted((hist / "models").glob("*.onnx"))
    cards = sorted((hist / "models").glob("*.json"))
    pngs = sorted(hist.rglob("*.png"))
    _say(f"      live store     {live_db}")
    _say(f"      history store  {hist / 'slotml.db'}")
    _say(f"      lake           {hist / 'lake'}")
    _say(f"      model          {models[-1] if models else '-'} (current -> {model})")
    _say(f"      model card     {cards[-1] if cards else '-'}")
    for p in pngs:
        _say(f"      plot           {p}")
    _say(f"      logs           {logs}")
    _say("\n      next:")
    _say(f"        .venv/bin/slotml sql --data-dir {hist} "
         "\"SELECT symbol, count(*) AS windows, avg(resolved_up::INT) AS up_rate "
         "FROM slot_resolutions GROUP BY 1\"")
    _say(f"        .venv/bin/slotml api --data-dir {hist}         # /slots on 127.0.0.1:8000")
    _say(f"        .venv/bin/slotml dashboard --data-dir {hist}   # Streamlit")
    _say(f"\ndemo finished in {time.monotonic() - t_all:.0f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
