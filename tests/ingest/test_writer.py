"""The durable writer against real stores: order, trimming, read-back past the in-memory queue,
replay after a crash (with a torn last line), the spool limit, rejected rows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from slotml.errors import UserError
from slotml.ingest.store import open_store
from slotml.ingest.store.writer import DurableWriter
from tests.ingest import test_store as _fx
from tests.ingest.test_store import SLOT, snap
from tests.util import async_wait_for

# the store suite's own database (see test_store.py)
any_db = _fx.any_db
mysql_db = _fx.mysql_db


async def ready_store(url):
    s = open_store(url)
    await s.connect()
    await s.ensure_schema()
    return s


async def started(store, spool: Path, **kw) -> DurableWriter:
    w = DurableWriter(store, spool, retry_min_s=0.02, retry_max_s=0.2, **kw)
    await w.start()
    return w


async def assert_exactly_in_order(store, ticks: list[int]) -> None:
    rows = await store.fetch_snapshots()
    by_id = [r["tick_ms"] for r in sorted(rows, key=lambda r: r["id"])]
    assert by_id == ticks  # each once, committed in the accepted order


def ticks_of(idx) -> list[int]:
    return [snap(i)["tick_ms"] for i in idx]


async def test_commits_are_paced_and_flush_cuts_the_wait_short(any_db, tmp_path: Path) -> None:
    store = await ready_store(any_db)
    # a pace no test could sit out: whatever commits below was hurried by flush or a full batch
    w = await started(store, tmp_path / "spool", commit_interval_s=60.0, batch_max=50)
    w.put_snapshot(snap(0))
    assert await w.flush(10)  # the first row after a quiet spell: committed at once
    for i in range(1, 31):  # fewer than a batch, right after a commit: they wait for the pace
        w.put_snapshot(snap(i))
    await asyncio.sleep(0.3)
    assert w.stats()["rows_written"] == 1 and w.stats()["queue_depth"] == 30
    assert await w.flush(10)  # ... unless flushed
    assert w.stats()["rows_written"] == 31
    for i in range(31, 131):  # two full batches: committed without a flush
        w.put_snapshot(snap(i))
    await async_wait_for(lambda: w.stats()["rows_written"] >= 131, timeout=10,
                         what="full batches committed")
    st = w.stats()
    assert st["commits"] <= 5 and st["queue_depth"] == 0
    await assert_exactly_in_order(store, ticks_of(range(131)))
    await w.close()
    await store.close()


async def test_a_paced_writer_commits_on_its_own(any_db, tmp_path: Path) -> None:
    store = await ready_store(any_db)
    w = await started(store, tmp_path / "spool", commit_interval_s=0.25)
    t0 = time.monotonic()
    for i in range(40):  # 40 rows over ~0.8 s: a handful of commits, not 40
        w.put_snapshot(snap(i))
        await asyncio.sleep(0.02)
    await async_wait_for(lambda: w.stats()["rows_written"] == 40, timeout=10,
                         what="every row committed without a flush")
    st = w.stats()
    assert st["commits"] <= 2 + (time.monotonic() - t0) / 0.25, st
    await assert_exactly_in_order(store, ticks_of(range(40)))
    await w.close()
    await store.close()


async def test_rows_arrive_in_order_and_the_spool_is_trimmed(any_db, tmp_path: Path) -> None:
    store = await ready_store(any_db)
    w = await started(store, tmp_path / "spool", batch_max=200)
    for i in range(1200):
        w.put_snapshot(snap(i))
        if i % 100 == 0:
            w.put_resolution({"symbol": "BTC", "window_s": 900, "slot_ts": SLOT + 9 * i,
                              "resolved_up": i % 200 == 0})
    assert await w.flush(20)
    st = w.stats()
    assert st["rows_written"] == 1212 and st["queue_depth"] == 0 and st["spool_bytes"] == 0
    assert st["db_up"] == 1 and st["rows_dropped"] == 0
    await assert_exactly_in_order(store, ticks_of(range(1200)))
    res = await store.fetch_resolutions()
    assert [r["resolved_up"] for r in res] == [i % 200 == 0 for i in range(0, 1200, 100)]
    t0 = time.monotonic()
    for i in range(1200, 1500):
        w.put_snapshot(snap(i))
    await w.close()
    assert time.monotonic() - t0 < 5
    assert await store.count("slot_snapshots") == 1500
    await store.close()


async def test_queue_overflow_reads_back_from_the_spool(sqlite_db, tmp_path: Path) -> None:
    store = open_store(sqlite_db)  # not connected yet: the database is "down"
    w = await started(store, tmp_path / "spool", queue_max=20, batch_max=50)
    for i in range(300):
        w.put_snapshot(snap(i))
    await async_wait_for(lambda: w.stats()["db_errors"] > 0, what="a failed attempt")
    st = w.stats()
    assert st["db_up"] == 0 and st["queue_cached"] <= 20 and st["queue_depth"] == 300
    assert st["spool_bytes"] > 0
    await store.connect()
    await store.ensure_schema()
    assert await w.flush(20)
    await assert_exactly_in_order(store, ticks_of(range(300)))
    assert w.stats()["reconnects"] == 1 and w.stats()["db_up"] == 1
    await w.close()
    await store.close()


async def test_replay_after_restart_skips_a_torn_line(sqlite_db, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    down = open_store(sqlite_db)
    w1 = await started(down, spool)
    for i in range(50):
        w1.put_snapshot(snap(i))
    await w1.close(timeout=0.2)  # database down: everything stays spooled
    segs = sorted(spool.glob("*.jsonl"))
    assert segs
    # what a kill in the middle of a write leaves
    segs[-1].write_bytes(segs[-1].read_bytes() + b'{"n":51,"k":"s","r":{"symbol":"BT')
    store = await ready_store(sqlite_db)
    w2 = await started(store, spool)
    assert w2.stats()["replayed"] == 50 and w2.stats()["spool_corrupt"] == 1
    for i in range(50, 60):
        w2.put_snapshot(snap(i))
    assert await w2.flush(10)
    await assert_exactly_in_order(store, ticks_of(range(60)))
    await w2.close()
    # nothing left to replay
    w3 = await started(store, spool)
    assert w3.stats()["replayed"] == 0 and w3.stats()["spool_corrupt"] == 0
    await w3.close()
    await store.close()


async def test_full_spool_drops_the_oldest_rows(sqlite_db, tmp_path: Path) -> None:
    store = open_store(sqlite_db)  # down
    limit_mb = 64 / 1024
    w = await started(store, tmp_path / "spool", spool_max_mb=limit_mb, queue_max=10)
    n = 1000
    for i in range(n):
        w.put_snapshot(snap(i))
    st = w.stats()
    assert st["rows_dropped"] > 0
    assert st["spool_bytes"] <= limit_mb * 2**20
    dropped = st["rows_dropped"]
    await store.connect()
    await store.ensure_schema()
    assert await w.flush(10)
    # the newest rows survive, all of them, in order; the count of the others is exact
    await assert_exactly_in_order(store, ticks_of(range(dropped, n)))
    assert w.stats()["rows_dropped"] == dropped and w.stats()["tape_gaps"] == 0
    assert await store.count("slot_tape_gaps") == 0  # snapshots dropped: no tape gap
    await w.close()
    await store.close()


async def test_bad_rows_are_counted_never_raised(any_db, tmp_path: Path) -> None:
    store = await ready_store(any_db)
    w = await started(store, tmp_path / "spool")
    w.put_snapshot({})  # no key
    w.put_resolution({"symbol": "BTC", "window_s": 900})  # no slot_ts
    w.put_snapshot({**snap(0), "bid_up": "junk"})
    # passes the type check but MySQL's TINYINT cannot hold it: the database refuses that row
    w.put_snapshot(snap(1))
    w.put_snapshot({**snap(2), "hour_utc": 300})
    w.put_snapshot(snap(3))
    assert await w.flush(10)
    mysql = any_db.scheme == "mysql"
    assert w.stats()["rows_rejected"] == 3 + mysql
    await assert_exactly_in_order(store, ticks_of([1, 3] if mysql else [1, 2, 3]))
    await w.close()
    await store.close()


async def test_one_writer_per_spool(sqlite_db, tmp_path: Path) -> None:
    store = await ready_store(sqlite_db)
    w1 = await started(store, tmp_path / "spool")
    with pytest.raises(UserError, match="in use by another process"):
        await started(store, tmp_path / "spool")
    await w1.close()
    w2 = await started(store, tmp_path / "spool")  # free again once the first one closed
    await w2.close()
    await store.close()


async def test_backlog_across_many_segments_is_read_back_and_deleted(sqlite_db, tmp_path: Path
                                                                     ) -> None:
    spool = tmp_path / "spool"
    store = open_store(sqlite_db)  # down
    w = await started(store, spool, spool_max_mb=1.0, queue_max=5, batch_max=64)
    for i in range(700):
        w.put_snapshot(snap(i))
    assert len(list(spool.glob("*.jsonl"))) >= 5  # 64 KiB segments
    await store.connect()
    await store.ensure_schema()
    assert await w.flush(20)
    await assert_exactly_in_order(store, ticks_of(range(700)))
    assert w.stats()["rows_dropped"] == 0 and w.stats()["spool_bytes"] == 0
    assert len(list(spool.glob("*.jsonl"))) == 1  # acknowledged segments are gone
    await w.close()
    await store.close()
