"""Issue 6: export of N snapshot rows from MariaDB into the lake vs pandas read_sql + to_parquet.

Both sides run in their own subprocess, each reporting its wall time and peak RSS, so the
memory figures are comparable and one does not inherit the other's heap. Peak RSS is the
process's own VmHWM (exact, per address space) or the sampled RSS of its process tree (the
mariadb client, for the CLI reader), whichever is larger. Not ru_maxrss: Linux carries the
parent's high-water mark into a forked child across exec (a child of a parent that once held
2.4 GB reports 2.4 GB while using 10 MB), so it measured whatever the bench process had held.
A reader-only comparison on a slice of the table records the alternatives the design chose
between (connectorx by id range, client TSV, PyMySQL streaming).

Data: one realistic day (4 assets x 96 windows x 30 ticks, with NULLs) inserted once, then
doubled with INSERT ... SELECT shifted by whole days until N rows; kept between runs in
``slotml_test_lakebench`` (``slotml_test_lakebench_quick`` for --quick) when the row count matches.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

from bench import Row
from slotml.settings import DbUrl

ISSUE = 6
DB_NAME = "slotml_test_lakebench"  # bench_store owns slotml_test_bench (and drops its tables)
FULL_ROWS = 5_000_000
QUICK_ROWS = 200_000
SLOT0 = 1_767_225_600  # 2026-01-01 00:00 UTC
DAY_ROWS = 4 * 96 * 30


def bench_url(quick: bool = False) -> DbUrl:
    base = DbUrl.parse(os.environ.get("SLOTML_TEST_MYSQL_URL",
                                      "mysql://slotml:slotml@127.0.0.1:3306/slotml_test"))
    return DbUrl(scheme="mysql", user=base.user, password=base.password, host=base.host,
                 port=base.port, database=DB_NAME + ("_quick" if quick else ""))


def _connect(url: DbUrl, database: str | None = None):
    import pymysql

    return pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                           database=database, autocommit=True, charset="utf8mb4",
                           local_infile=False)


def _day_rows() -> list[tuple]:
    from slotml.ingest.schema import SNAPSHOTS

    rnd = random.Random(6)
    names = [c.name for c in SNAPSHOTS.data_columns]
    rows = []
    for k in range(96):
        slot = SLOT0 + k * 900
        for t in range(30):
            tick_ms = (slot + 30 * t) * 1000
            for s in ("BTC", "ETH", "SOL", "XRP"):
                bid = None if rnd.random() < 0.05 else round(rnd.random() * 0.98, 2)
                ask = None if bid is None else round(bid + 0.01, 2)
                r = {"symbol": s, "window_s": 900, "slot_ts": slot, "tick_ms": tick_ms,
                     "captured_at": tick_ms / 1000 + rnd.random() / 5, "minutes_into_slot": t / 2,
                     "bid_up": bid, "ask_up": ask,
                     "bid_down": None if ask is None else round(1 - ask, 2),
                     "ask_down": None if bid is None else round(1 - bid, 2),
                     "bid_size_up": round(rnd.random() * 1e3, 2),
                     "ask_size_up": round(rnd.random() * 1e3, 2),
                     "bid_size_down": round(rnd.random() * 1e3, 2),
                     "ask_size_down": round(rnd.random() * 1e3, 2),
                     "spread_up": None if bid is None else 0.01, "spread_down": 0.01,
                     "chainlink_price": 90_000 + rnd.random() * 500,
                     "chainlink_twap": 90_000 + rnd.random() * 500,
                     "dir_move_pct": rnd.gauss(0, 0.2), "abs_move_pct": rnd.random() / 5,
                     "spot_move_pct": rnd.gauss(0, 0.2), "book_age_s": rnd.random() * 3,
                     "hour_utc": (slot // 3600) % 24, "day_of_week": ((slot // 86400) + 3) % 7}
                rows.append(tuple(r.get(n) for n in names))  # no depth: NULL
    return rows


def prepare(n_rows: int) -> DbUrl:
    """Make the bench database's ``slot_snapshots`` hold exactly n_rows (reused when it does)."""
    from slotml.ingest.schema import SNAPSHOTS, TABLES

    url = bench_url(quick=n_rows < FULL_ROWS)
    conn = _connect(url)
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
    cur.execute(f"USE `{url.database}`")
    try:
        for t in TABLES.values():  # every table, with this schema's columns (else rebuild)
            cur.execute(f"SELECT {', '.join(f'`{n}`' for n in t.names)} FROM `{t.name}` LIMIT 0")
        cur.execute("SELECT COUNT(*) FROM slot_snapshots")
        if cur.fetchone()[0] == n_rows:
            return url
    except Exception:  # noqa: BLE001 - no table yet, or an older schema's
        pass
    from slotml.ingest.store.ddl import create_table  # the store's own DDL

    for t in TABLES.values():  # the tape tables stay empty: the export reads every table
        cur.execute(f"DROP TABLE IF EXISTS `{t.name}`")
        for stmt in create_table(t, "mysql"):
            cur.execute(stmt)
    names = [c.name for c in SNAPSHOTS.data_columns]
    cols = ", ".join(f"`{n}`" for n in names)
    one = "(" + ", ".join(["%s"] * len(names)) + ", UNIX_TIMESTAMP(NOW(6)))"
    day = _day_rows()[:n_rows]
    for i in range(0, len(day), 1000):
        part = day[i:i + 1000]
        cur.execute(f"INSERT INTO slot_snapshots ({cols}, updated_at) VALUES "
                    + ", ".join([one] * len(part)), [v for r in part for v in r])
    have = len(day)
    shift_days = 1
    while have < n_rows:
        take = min(have, n_rows - have)
        sel = ", ".join(
            f"`{n}` + {shift_days * 86400}" if n == "slot_ts" else
            f"`{n}` + {shift_days * 86400000}" if n == "tick_ms" else
            f"`{n}` + {shift_days * 86400}" if n == "captured_at" else
            f"MOD(`{n}` + {shift_days}, 7)" if n == "day_of_week" else f"`{n}`"
            for n in names)
        cur.execute(f"INSERT INTO slot_snapshots ({cols}, updated_at) SELECT {sel}, "
                    f"UNIX_TIMESTAMP(NOW(6)) FROM slot_snapshots ORDER BY id LIMIT {take}")
        have += take
        shift_days *= 2
    conn.close()
    return url


_OURS = """
import json, sys, time, logging
from pathlib import Path
from slotml.lake.export import ExportConfig, run_export
from slotml.settings import DbUrl
logging.basicConfig(level=logging.WARNING)
url = DbUrl.parse(sys.argv[1]); lake = Path(sys.argv[2])
t0 = time.perf_counter()
r = run_export(ExportConfig(db=url, lake_dir=lake, grace_s=0, reader=sys.argv[3],
                            tables=("slot_snapshots",)))
dt = time.perf_counter() - t0
rows = r.tables["slot_snapshots"].rows_read
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(json.dumps({"rows": rows, "seconds": dt, "files": r.files_written, "hwm_kb": hwm}))
"""

_PANDAS = """
import json, sys, time, warnings
import pandas as pd, pymysql
from slotml.settings import DbUrl
warnings.simplefilter("ignore")
url = DbUrl.parse(sys.argv[1])
t0 = time.perf_counter()
conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                       database=url.database)
df = pd.read_sql("SELECT * FROM slot_snapshots", conn)
df.to_parquet(sys.argv[2], compression="zstd")
dt = time.perf_counter() - t0
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(json.dumps({"rows": len(df), "seconds": dt, "hwm_kb": hwm}))
"""


def _tree_rss_kb(pid: int) -> int:
    """Current RSS of pid and its descendants (0 once gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(x.split()[1]) for x in f if x.startswith("VmRSS")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def _run(code: str, *args: str) -> dict:
    """Run a bench side in its own process; add ``peak_mb`` (see the module docstring)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, err = proc.communicate(timeout=3600)
    finally:
        done.set()
        th.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"bench subprocess failed: {err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_mb"] = max(res["hwm_kb"], peak[0]) / 1024
    return res


def run(quick: bool) -> list[Row]:
    n = QUICK_ROWS if quick else FULL_ROWS
    url = prepare(n)
    with tempfile.TemporaryDirectory(prefix="slotml-bench-lake-") as tmp:
        ours = _run(_OURS, url.raw, str(Path(tmp) / "lake"), "auto")
        base = _run(_PANDAS, url.raw, str(Path(tmp) / "pandas.parquet"))
    assert ours["rows"] == n and base["rows"] == n, (ours, base)
    ours_rps = n / ours["seconds"]
    base_rps = n / base["seconds"]
    ours_mb = ours["peak_mb"]
    base_mb = base["peak_mb"]
    label = f"{n / 1e6:g}M snapshot rows"
    aim_note = " (at 5M; quick = smoke)" if quick else ""
    return [
        Row(ISSUE, f"lake export {label}, MariaDB (connectorx -> Arrow -> Parquet)", ours_rps,
            "rows/s", baseline=base_rps, baseline_name="pandas read_sql+to_parquet",
            aim=">= 5x" + aim_note, met=None if quick else ours_rps >= 5 * base_rps),
        Row(ISSUE, f"lake export {label}: peak RSS", ours_mb, "MiB", baseline=base_mb,
            baseline_name="pandas", higher_is_better=False, aim="< 1/10" + aim_note,
            met=None if quick else ours_mb * 10 < base_mb),
    ] + _readers()


def _readers() -> list[Row]:
    """Read-only rows/s of each MySQL reader over the quick table (one process, same data)."""
    import time

    from slotml.ingest.schema import SNAPSHOTS
    from slotml.lake.readers import ConnectorxSource, MysqlCliSource, PyMysqlSource, normalize

    url = prepare(QUICK_ROWS)
    rates: dict[str, float] = {}
    for name, make in (("connectorx", lambda: ConnectorxSource(url)),
                       ("cli", lambda: MysqlCliSource(url, "mariadb")),
                       ("pymysql", lambda: PyMysqlSource(url))):
        src = make()
        try:
            t0 = time.perf_counter()
            n = sum(normalize(c, SNAPSHOTS).num_rows for c in src.read(SNAPSHOTS, None))
            rates[name] = n / (time.perf_counter() - t0)
        finally:
            src.close()
    return [
        Row(ISSUE, f"MySQL reader {name}, {QUICK_ROWS // 1000}k rows (read only)", rates[name],
            "rows/s", baseline=rates["pymysql"], baseline_name="PyMySQL SSCursor")
        for name in ("connectorx", "cli")
    ]
