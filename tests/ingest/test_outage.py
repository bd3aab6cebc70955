"""Outages between the writer and MariaDB, made by a TCP proxy of our own (tests/tcp_proxy.py):
a reset in the middle of a batch, a reset after COMMIT reached the server (the reply is
lost), refused connections, a hang; and a SQLite store locked by another connection. After
each, every accepted row (snapshots and trade-tape prints) is there exactly once, in the
accepted order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slotml.ingest.store import open_store
from slotml.ingest.store.writer import DurableWriter
from tests.ingest import test_store as _fx
from tests.ingest.test_store import SLOT, snap
from tests.ingest.test_store_tape import assert_trades_exactly_in_order, trade
from tests.ingest.test_writer import assert_exactly_in_order, ticks_of
from tests.tcp_proxy import TcpProxy
from tests.util import async_wait_for

mysql_db = _fx.mysql_db  # the store suite's own database


@pytest.fixture
async def rig(mysql_db, tmp_path: Path):
    direct = open_store(mysql_db)
    await direct.connect()
    await direct.ensure_schema()
    proxy = await TcpProxy(mysql_db.host, mysql_db.port).start()
    via = open_store(dataclasses.replace(mysql_db, host="127.0.0.1", port=proxy.port),
                     connect_timeout=1.0, op_timeout=1.5)
    await via.connect()
    rig = dataclasses.make_dataclass("Rig", ["direct", "proxy", "via", "spool"])(
        direct, proxy, via, tmp_path / "spool")
    yield rig
    await proxy.stop()
    await via.close()
    await direct.close()


async def writer(rig, **kw) -> DurableWriter:
    w = DurableWriter(rig.via, rig.spool, retry_min_s=0.05, retry_max_s=0.3, **kw)
    await w.start()
    return w


@pytest.mark.mysql
async def test_reset_mid_batch(rig) -> None:
    w = await writer(rig, batch_max=1000)
    rig.proxy.reset_after(60_000)  # a 1000-row INSERT is ~0.5 MB: cut inside it
    for i in range(1000):  # the cut falls inside the prints' INSERT
        w.put_trade(trade(i))
    for i in range(3000):
        w.put_snapshot(snap(i))
    for i in range(1000, 2000):
        w.put_trade(trade(i))
    assert await w.flush(30)
    assert rig.proxy.resets >= 1
    st = w.stats()
    assert st["db_errors"] >= 1 and st["reconnects"] >= 1 and st["db_up"] == 1
    await assert_exactly_in_order(rig.direct, ticks_of(range(3000)))
    await assert_trades_exactly_in_order(rig.direct, range(2000))
    await w.close()


@pytest.mark.mysql
async def test_reply_lost_after_commit(rig) -> None:
    w = await writer(rig, batch_max=200)
    rig.proxy.reset_on_reply_after(b"COMMIT")  # committed on the server, the client never knows
    for i in range(400):
        if i % 20 == 0:  # the first commit is of prints: their replay must store nothing twice
            for k in range(i, i + 20):
                w.put_trade(trade(k))
        w.put_snapshot(snap(i))
        if i % 20 == 0:
            w.put_resolution({"symbol": "ETH", "window_s": 900, "slot_ts": SLOT + 45 * i,
                              "price_to_beat": 3000 + i / 1000})
    assert await w.flush(30)
    assert rig.proxy.resets == 1 and w.stats()["db_errors"] >= 1
    await assert_exactly_in_order(rig.direct, ticks_of(range(400)))
    await assert_trades_exactly_in_order(rig.direct, range(400))
    res = await rig.direct.fetch_resolutions()
    assert [r["price_to_beat"] for r in res] == [3000 + i / 1000 for i in range(0, 400, 20)]
    await w.close()


@pytest.mark.mysql
async def test_refused_then_restored(rig) -> None:
    w = await writer(rig)
    await rig.proxy.refuse()
    for i in range(200):
        w.put_snapshot(snap(i))
    await async_wait_for(lambda: w.stats()["db_up"] == 0, what="the writer to notice")
    for i in range(200, 400):
        w.put_snapshot(snap(i))
        w.put_trade(trade(i))
    assert w.stats()["queue_depth"] == 600
    await rig.proxy.restore()
    assert await w.flush(30)
    assert w.stats()["reconnects"] == 1
    await assert_exactly_in_order(rig.direct, ticks_of(range(400)))
    await assert_trades_exactly_in_order(rig.direct, range(200, 400))
    await w.close()


@pytest.mark.mysql
async def test_hang_then_restored(rig) -> None:
    w = await writer(rig)
    rig.proxy.hang()  # accepts, forwards nothing: only the store's deadlines notice
    for i in range(200):
        w.put_trade(trade(i))
        w.put_snapshot(snap(i))
    await async_wait_for(lambda: w.stats()["db_errors"] >= 1, timeout=10,
                         what="a timed-out attempt")
    for i in range(200, 300):
        w.put_snapshot(snap(i))
    assert await rig.direct.count("slot_snapshots") == 0
    assert await rig.direct.count("slot_trades") == 0
    await rig.proxy.restore()
    assert await w.flush(30)
    await assert_exactly_in_order(rig.direct, ticks_of(range(300)))
    await assert_trades_exactly_in_order(rig.direct, range(200))
    await w.close()


@pytest.mark.mysql
async def test_close_while_down_keeps_rows_for_the_next_run(rig) -> None:
    w = await writer(rig)
    await rig.proxy.refuse()
    for i in range(100):
        w.put_snapshot(snap(i))
        w.put_trade(trade(i))
    await w.close(timeout=1.0)
    await rig.proxy.restore()
    w2 = await writer(rig)
    assert w2.stats()["replayed"] == 200
    assert await w2.flush(20)
    await assert_exactly_in_order(rig.direct, ticks_of(range(100)))
    await assert_trades_exactly_in_order(rig.direct, range(100))
    await w2.close()


async def test_sqlite_locked_then_released(sqlite_db, tmp_path: Path) -> None:
    """SQLite's outage: another connection holds the write lock; rows wait in the spool."""
    import sqlite3

    direct = open_store(sqlite_db)
    await direct.connect()
    await direct.ensure_schema()
    s = open_store(sqlite_db, busy_timeout=0.2)
    await s.connect()
    w = DurableWriter(s, tmp_path / "spool", retry_min_s=0.05, retry_max_s=0.3)
    await w.start()
    lock = sqlite3.connect(str(sqlite_db.path), isolation_level=None)
    try:
        for i in range(100):
            w.put_trade(trade(i))
            w.put_snapshot(snap(i))
        assert await w.flush(20)
        lock.execute("BEGIN EXCLUSIVE")
        for i in range(100, 300):
            w.put_trade(trade(i))
            if i % 2:
                w.put_snapshot(snap(i))
        await async_wait_for(lambda: w.stats()["db_up"] == 0, what="the writer to notice")
        assert await direct.count("slot_trades") == 100  # WAL: readers go on reading
        lock.execute("COMMIT")
        assert await w.flush(30)
        await assert_exactly_in_order(direct, ticks_of([*range(100), *range(101, 300, 2)]))
        await assert_trades_exactly_in_order(direct, range(300))
    finally:
        lock.close()
        await w.close()
        await s.close()
        await direct.close()
