"""Issue 3: rows/s of the store's batched multi-row inserts against a naive one-INSERT-per-row
autocommit loop, measured in the same run on the same database; plus the durable writer end
to end (put -> spool -> batched commit). MariaDB: SLOTML_TEST_MYSQL_URL (default: the test
server) with ``_bench`` appended to the database name; its tables are dropped before and after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import tempfile
import time
import warnings
from pathlib import Path

from bench import Row
from slotml.ingest.schema import SNAPSHOTS, TABLES
from slotml.ingest.snapshot import BookTop, WindowRef, make_snapshot
from slotml.ingest.store import coerce_row, ddl, open_store
from slotml.settings import DbUrl

DEFAULT_URL = "mysql://slotml:slotml@127.0.0.1:3306/slotml_test"
SLOT = 1_767_200_400
NAMES = [c.name for c in SNAPSHOTS.data_columns]


def rows(n: int, offset: int = 0) -> list[dict]:
    out = []
    for k in range(offset, offset + n):
        sym = ("BTC", "ETH", "SOL", "XRP")[k % 4]
        tick = (SLOT + 30 * (k // 4)) * 1000
        r, _ = make_snapshot(WindowRef(sym, 900, SLOT + 900 * (k // 120), price_to_beat=100.0,
                                       spot_price_to_beat=100.0), tick, tick / 1000 + 0.2,
                             BookTop(0.49, 0.51, 100.0, 120.0, tick / 1000),
                             BookTop(0.48, 0.52, 90.0, 80.0, tick / 1000), 100.5, 100.4)
        out.append(r)
    return out


def bench_url() -> DbUrl:
    base = DbUrl.parse(os.environ.get("SLOTML_TEST_MYSQL_URL", DEFAULT_URL))
    return dataclasses.replace(base, database=base.database + "_bench")


async def _mysql_reset(url: DbUrl) -> None:
    import aiomysql

    conn = await aiomysql.connect(host=url.host, port=url.port, user=url.user,
                                  password=url.password, autocommit=True)
    async with conn.cursor() as cur:
        with warnings.catch_warnings():  # "unknown table" notes from IF EXISTS
            warnings.simplefilter("ignore")
            await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
            await cur.execute(f"USE `{url.database}`")
            for t in (*TABLES, "schema_version"):
                await cur.execute(f"DROP TABLE IF EXISTS `{t}`")
    conn.close()


async def _mysql_naive(url: DbUrl, data: list[dict]) -> float:
    import aiomysql

    conn = await aiomysql.connect(host=url.host, port=url.port, user=url.user,
                                  password=url.password, db=url.database, autocommit=True)
    sql = (f"INSERT INTO slot_snapshots ({', '.join(NAMES)}, updated_at) VALUES ("
           + ", ".join(["%s"] * len(NAMES)) + f", {ddl.NOW_SQL['mysql']})")
    t0 = time.perf_counter()
    async with conn.cursor() as cur:
        for r in data:
            c = coerce_row(SNAPSHOTS, r)
            await cur.execute(sql, [c.get(k) for k in NAMES])
    dt = time.perf_counter() - t0
    conn.close()
    return len(data) / dt


async def _store_batched(url: DbUrl, data: list[dict], batch: int) -> float:
    store = open_store(url)
    await store.connect()
    await store.ensure_schema()
    t0 = time.perf_counter()
    for i in range(0, len(data), batch):
        await store.insert_snapshots(data[i:i + batch])
    dt = time.perf_counter() - t0
    await store.close()
    return len(data) / dt


async def _writer_end_to_end(url: DbUrl, data: list[dict], spool: Path) -> tuple[float, float]:
    from slotml.ingest.store.writer import DurableWriter

    store = open_store(url)
    await store.connect()
    await store.ensure_schema()
    w = DurableWriter(store, spool, queue_max=1000, batch_max=500)
    await w.start()
    t0 = time.perf_counter()
    for r in data:
        w.put_snapshot(r)
    t_put = time.perf_counter() - t0
    assert await w.flush(120)
    dt = time.perf_counter() - t0
    await w.close()
    await store.close()
    return len(data) / dt, t_put / len(data) * 1e6


def _sqlite_naive(path: Path, data: list[dict]) -> float:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the store's setting
    sql = (f"INSERT INTO slot_snapshots ({', '.join(NAMES)}, updated_at) VALUES ("
           + ", ".join(["?"] * len(NAMES)) + f", {ddl.NOW_SQL['sqlite']})")
    t0 = time.perf_counter()
    for r in data:
        c = coerce_row(SNAPSHOTS, r)
        conn.execute(sql, [c.get(k) for k in NAMES])  # absent (depth): NULL
    dt = time.perf_counter() - t0
    conn.close()
    return len(data) / dt


def run(quick: bool) -> list[Row]:
    n_batch = 5_000 if quick else 20_000
    n_naive = 300 if quick else 1_000
    out: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        # SQLite
        sq = DbUrl(scheme="sqlite", path=tmpd / "bench.db")
        fast = asyncio.run(_store_batched(sq, rows(n_batch), 500))
        naive = _sqlite_naive(sq.path, rows(n_naive, offset=n_batch))
        out.append(Row(3, "SQLite batched insert_snapshots (500/stmt, WAL, sync=FULL)", fast,
                       "rows/s", naive, "1 INSERT/row autocommit", aim="(no aim; embedded)"))
        # MariaDB
        url = bench_url()
        try:
            asyncio.run(_mysql_reset(url))
        except Exception as e:  # noqa: BLE001 - no server: say so in the table
            out.append(Row(3, f"MariaDB batched insert: SKIPPED ({type(e).__name__}: {e})"[:90],
                           0.0, "rows/s", aim=">= 10x naive", met=None))
            return out
        try:
            fast = asyncio.run(_store_batched(url, rows(n_batch), 500))
            naive = asyncio.run(_mysql_naive(url, rows(n_naive, offset=n_batch)))
            out.append(Row(3, "MariaDB batched insert_snapshots (500/stmt)", fast, "rows/s",
                           naive, "1 INSERT/row autocommit", aim=">= 10x naive",
                           met=fast >= 10 * naive))
            asyncio.run(_mysql_reset(url))
            e2e, put_us = asyncio.run(_writer_end_to_end(url, rows(n_batch), tmpd / "spool"))
            out.append(Row(3, "MariaDB DurableWriter put->spool->commit", e2e, "rows/s",
                           naive, "1 INSERT/row autocommit", aim="(design: ~11k rows/day)"))
            out.append(Row(3, "DurableWriter.put_snapshot (validate + spool append)", put_us,
                           "us/row", higher_is_better=False, aim="never blocks"))
        finally:
            asyncio.run(_mysql_reset(url))
    return out
