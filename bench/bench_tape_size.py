"""The trade tape's sizing: bytes per print and per snapshot row, per market-day, spool hours.

A real ``slotml collect`` run against the sim (4 real + 16 synthetic 15m markets, 5 prints per
token per second, snapshots every second) into SQLite, and, when the test MariaDB answers
(``SLOTML_TEST_MYSQL_URL``, as ``bench_store``; database ``<its name>_size``), a second run into it. Measured:

- bytes per ``slot_trades`` / ``slot_snapshots`` row on disk, indexes included: SQLite's
  ``dbstat`` pages of the table and its indexes / rows (as the collector left them, no VACUUM);
  MariaDB's ``information_schema`` data + index length after ``ANALYZE TABLE`` / rows;
- the 40 depth columns' cost per snapshot row: a copy of the SQLite store VACUUMed with and
  without the depth columns NULLed;
- bytes per spool record (print, snapshot): during the SQLite run another connection holds the
  write lock for a few seconds (an outage), and the spool's JSON lines are read while it lasts.

From those, per market-day (one asset's 96 windows; 2 tokens; snapshots at the production 30 s
cadence: 2,880 rows) at the sim's default 0.5 prints/token/s (86,400 prints) and at a liquid
5 prints/token/s (864,000: ~4,500 per token per 15-minute window), and how many hours of a
database outage the default ``--spool-max-mb`` holds for 4 and for 200 markets.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import Row
from bench.bench_collector import _get, _metric, _pinned, _port, _stop, _wait

ISSUE = 5  # the trade tape's sizing (shown with the collector's rows)
SYNTH = 16
MARKETS = 4 + SYNTH
PRINT_RATE = 5.0  # the run's rate; the per-row sizes do not depend on it
DAY = 86_400
SNAPSHOTS_PER_DAY = DAY // 30  # production cadence: one row per window in progress per 30 s
RATES = {"default 0.5": 0.5, "liquid 5": 5.0}  # prints per token per second


def _collector(slotml: str, db: str, data: Path, sim_port: int, health_port: int) -> subprocess.Popen:
    base = f"http://127.0.0.1:{sim_port}"
    syms = ["BTC", "ETH", "SOL", "XRP"] + [f"SYN{i}" for i in range(SYNTH)]
    return subprocess.Popen(
        [slotml, "collect", "--db", db, "--data-dir", str(data), "--family", "15m",
         "--symbols", ",".join(syms), "--snapshot-interval", "1", "--discovery-interval", "5",
         "--resolution-interval", "30", "--lookahead", "0", "--health-port", str(health_port),
         "--gamma-url", f"{base}/gamma", "--clob-url", f"{base}/clob",
         "--clob-ws-url", f"ws://127.0.0.1:{sim_port}/ws/market",
         "--rtds-ws-url", f"ws://127.0.0.1:{sim_port}/rtds", "--log-level", "WARNING"],
        preexec_fn=_pinned(0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _spool_lines(data: Path) -> dict[str, list[int]]:
    """Lengths (bytes, newline included) of the spool's JSON lines, by record kind."""
    out: dict[str, list[int]] = {}
    for f in (data / "spool").rglob("*.jsonl"):
        for line in f.read_bytes().splitlines(keepends=True):
            try:
                kind = json.loads(line)["k"]
            except (ValueError, KeyError):
                continue  # a line being written
            out.setdefault(kind, []).append(len(line))
    return out


def _run(slotml: str, db: str, data: Path, sim_port: int, duration: float,
         outage_db: Path | None) -> dict[str, list[int]]:
    """One bounded collector run; with ``outage_db``, hold its write lock mid-run and read the spool."""
    health_port = _port()
    col = _collector(slotml, db, data, sim_port, health_port)
    spool: dict[str, list[int]] = {}
    try:
        metrics = f"http://127.0.0.1:{health_port}/metrics"
        _wait(lambda: _metric(_get(metrics), "slotml_windows_tracked") >= MARKETS, 120,
              "windows discovered")
        t0 = time.time()
        time.sleep(duration / 2)
        if outage_db is not None:
            con = sqlite3.connect(outage_db, timeout=30, isolation_level=None)
            con.execute("BEGIN EXCLUSIVE")  # the collector's commits fail: rows stay in the spool
            try:
                time.sleep(8)
                spool = _spool_lines(data)
            finally:
                con.execute("ROLLBACK")
                con.close()
        time.sleep(max(0.0, t0 + duration - time.time()))
        _wait(lambda: _metric(_get(metrics), "slotml_writer_queue_depth") == 0, 60, "spool drained")
    finally:
        _stop(col)
    return spool


def _sqlite_sizes(path: Path) -> dict[str, tuple[int, int]]:
    """(bytes on disk incl. indexes, rows) per table, from dbstat."""
    con = sqlite3.connect(path)
    try:
        pages = dict(con.execute(
            "select m.tbl_name, sum(d.pgsize) from dbstat d join sqlite_master m on d.name = m.name "
            "group by m.tbl_name"))
        return {t: (int(pages.get(t, 0)), con.execute(f"select count(*) from {t}").fetchone()[0])
                for t in ("slot_trades", "slot_snapshots")}
    finally:
        con.close()


def _depth_cost(path: Path, tmp: Path) -> tuple[float, float]:
    """Bytes per snapshot row, VACUUMed, with the depth columns as captured and all NULL."""
    from slotml.ingest.schema import DEPTH_COLUMNS

    out = []
    for null in (False, True):
        copy = tmp / f"depth_{null}.db"
        shutil.copy(path, copy)
        con = sqlite3.connect(copy, isolation_level=None)
        if null:
            con.execute("update slot_snapshots set " + ", ".join(f"{c} = NULL" for c in DEPTH_COLUMNS))
        con.execute("vacuum")
        con.close()
        b, n = _sqlite_sizes(copy)["slot_snapshots"]
        out.append(b / max(n, 1))
    return out[0], out[1]


def _mysql_sizes(url: Any) -> dict[str, tuple[int, int]]:
    """(data + index length, rows) per table after ANALYZE TABLE."""
    import pymysql

    con = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                          database=url.database, autocommit=True)
    try:
        out = {}
        with con.cursor() as cur:
            for t in ("slot_trades", "slot_snapshots"):
                cur.execute(f"ANALYZE TABLE `{t}`")
                cur.fetchall()
                cur.execute("select data_length + index_length from information_schema.tables "
                            "where table_schema = %s and table_name = %s", (url.database, t))
                size = int(cur.fetchone()[0])
                cur.execute(f"select count(*) from `{t}`")
                out[t] = (size, int(cur.fetchone()[0]))
        return out
    finally:
        con.close()


def _mysql_url() -> Any | None:
    """A fresh ``<test db>_size`` database on the test server, or None when it does not answer."""
    import dataclasses

    from bench.bench_store import DEFAULT_URL
    from slotml.settings import DbUrl

    base = DbUrl.parse(os.environ.get("SLOTML_TEST_MYSQL_URL", DEFAULT_URL))
    url = dataclasses.replace(base, database=base.database + "_size")
    try:
        import pymysql

        con = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                              autocommit=True, connect_timeout=3)
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{url.database}`")
            cur.execute(f"CREATE DATABASE `{url.database}`")
        con.close()
    except Exception as e:  # noqa: BLE001 - no server: SQLite rows only
        print(f"bench_tape_size: no MariaDB ({e}); SQLite only", file=sys.stderr)
        return None
    return url


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def run(quick: bool) -> list[Row]:
    from slotml.ingest.config import CollectorConfig

    duration = 40.0 if quick else 90.0
    slotml = str(Path(sys.executable).parent / "slotml")
    tmp = Path(tempfile.mkdtemp(prefix="bench_tape_size_"))
    sim_port = _port()
    sim = subprocess.Popen(
        [slotml, "sim", "serve", "--port", str(sim_port), "--family", "15m",
         "--synthetic-assets", str(SYNTH), "--print-rate", str(PRINT_RATE),
         "--data-dir", str(tmp / "sim"), "--log-level", "WARNING"],
        preexec_fn=_pinned(1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    my = None
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{sim_port}/_sim/health"), 60, "sim")
        db = tmp / "lite" / "size.db"
        db.parent.mkdir()
        spool = _run(slotml, f"sqlite:///{db}", db.parent, sim_port, duration, db)
        url = _mysql_url()
        if url is not None:
            (tmp / "my").mkdir()
            _run(slotml, url.raw, tmp / "my", sim_port, duration, None)
            my = _mysql_sizes(url)
    finally:
        _stop(sim)
    lite = _sqlite_sizes(db)
    with_depth, without = _depth_cost(db, tmp)
    per = {"SQLite": {t: b / max(n, 1) for t, (b, n) in lite.items()}}
    if my is not None:
        per["MariaDB"] = {t: b / max(n, 1) for t, (b, n) in my.items()}
    sp_print, sp_snap = _mean(spool.get("t", [])), _mean(spool.get("s", []))
    if os.environ.get("BENCH_VERBOSE"):
        print(f"sqlite {lite} mysql {my} spool lines {({k: len(v) for k, v in spool.items()})}",
              file=sys.stderr)
    rows: list[Row] = []
    for backend, p in per.items():
        n = (lite if backend == "SQLite" else my)["slot_trades"][1]
        rows.append(Row(ISSUE, f"slot_trades bytes/row on disk, {backend} (incl. indexes; {n:,} rows)",
                        p["slot_trades"], "B", higher_is_better=False))
        rows.append(Row(ISSUE, f"slot_snapshots bytes/row on disk, {backend} (with depth)",
                        p["slot_snapshots"], "B", higher_is_better=False))
    rows.append(Row(ISSUE, "snapshot row with 40 depth columns, SQLite VACUUMed", with_depth, "B",
                    baseline=without, baseline_name="depth columns NULL", higher_is_better=True))
    rows.append(Row(ISSUE, f"spool bytes/record, print ({len(spool.get('t', []))} in an outage)",
                    sp_print, "B", higher_is_better=False))
    rows.append(Row(ISSUE, "spool bytes/record, snapshot (with depth)", sp_snap, "B",
                    higher_is_better=False))
    for name, rate in RATES.items():
        prints = rate * 2 * DAY
        for backend, p in per.items():
            mb = (prints * p["slot_trades"] + SNAPSHOTS_PER_DAY * p["slot_snapshots"]) / 1e6
            rows.append(Row(ISSUE, f"store per market-day, {backend}, {name} prints/token/s "
                            f"({prints:,.0f} prints + {SNAPSHOTS_PER_DAY:,} snapshots)", mb, "MB",
                            higher_is_better=False))
    spool_max = CollectorConfig.__dataclass_fields__["spool_max_mb"].default * 2**20
    for markets in (4, 200):
        for name, rate in RATES.items():
            per_hour = markets * (rate * 2 * 3600 * sp_print + 3600 / 30 * sp_snap)
            rows.append(Row(ISSUE, f"spool at --spool-max-mb {spool_max / 2**20:.0f} holds, {markets} "
                            f"markets, books + {name} prints/token/s", spool_max / per_hour, "hours",
                            aim="hours, not months"))
    return rows
