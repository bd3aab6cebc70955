"""The same store suite on SQLite and MariaDB (``any_db``): keys, fill-NULL upserts, the DB's
clock on updated_at, and exact round trips of every type."""

from __future__ import annotations

import asyncio
import dataclasses

import pymysql
import pytest

from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
from slotml.ingest.snapshot import BookTop, WindowRef, make_snapshot
from slotml.ingest.store import RowRejected, open_store
from slotml.settings import DbUrl
from tests.conftest import drop_all_tables

SLOT = 1_767_200_400


# The store's tests use a database of their own (<test db>_store, covered by the test user's
# `slotml_test_%` grant) so they never collide with other suites sharing the test server.
# Same names as the conftest fixtures: the other store/writer modules import these.
@pytest.fixture
def mysql_db(mysql_server: DbUrl) -> DbUrl:
    url = dataclasses.replace(mysql_server, database=mysql_server.database + "_store")
    conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
    except pymysql.err.OperationalError:  # no right to create it: share the test database
        url = mysql_server
    finally:
        conn.close()
    drop_all_tables(url)
    return url


@pytest.fixture(params=["sqlite", "mysql"])
def any_db(request: pytest.FixtureRequest, tmp_path) -> DbUrl:
    if request.param == "sqlite":
        return DbUrl(scheme="sqlite", path=tmp_path / "store.db")
    return request.getfixturevalue("mysql_db")


def snap(i: int, symbol: str = "BTC", window_s: int = 900, slot_ts: int = SLOT) -> dict:
    tick = (slot_ts + 30 * i) * 1000
    row, _ = make_snapshot(
        WindowRef(symbol, window_s, slot_ts, price_to_beat=100.0, spot_price_to_beat=100.0),
        tick, tick / 1000 + 0.25,
        BookTop(0.501 + i * 0.001, 0.512 + i * 0.001, 10.0, 20.5, tick / 1000),
        BookTop(0.488, 0.499, 5.0, None, tick / 1000 - 1),
        100.0 + i, 99.5,
    )
    return row


@pytest.fixture
async def store(any_db):
    s = open_store(any_db)
    await s.connect()
    first = await s.ensure_schema()
    assert "created table slot_snapshots" in first
    yield s
    await s.close()


async def db_now(store) -> float:
    sql = ("SELECT UNIX_TIMESTAMP(NOW(6))" if store.url.scheme == "mysql"
           else "SELECT (julianday('now') - 2440587.5) * 86400.0")
    return float((await store.execute(sql))[0][0])


async def test_ensure_schema_is_idempotent(store) -> None:
    assert await store.ensure_schema() == []
    assert await store.count("slot_snapshots") == 0
    assert await store.count("slot_resolutions") == 0


async def test_insert_and_duplicate_is_noop(store) -> None:
    rows = [snap(i) for i in range(30)]
    assert await store.insert_snapshots(rows) == 30
    assert await store.insert_snapshots(rows[5:10] + [snap(30)]) == 1
    assert await store.count("slot_snapshots") == 31
    got = await store.fetch_snapshots(symbol="BTC")
    assert [r["tick_ms"] for r in got] == sorted(r["tick_ms"] for r in [*rows, snap(30)])
    # the same tick in another family or asset is a different row
    assert await store.insert_snapshots([snap(0, window_s=300), snap(0, symbol="ETH")]) == 2
    assert len(await store.fetch_snapshots(window_s=900)) == 32  # 31 BTC + 1 ETH


async def test_snapshot_round_trip_is_exact(store) -> None:
    rows = [snap(i) for i in range(12)]
    rows[3]["bid_up"] = None  # NULLs stay NULL
    rows[4]["chainlink_price"] = 97_123.4567891234
    await store.insert_snapshots(rows)
    got = await store.fetch_snapshots()
    assert len(got) == 12
    for want, have in zip(rows, got, strict=True):
        for k, v in want.items():
            assert have[k] == v, k  # doubles exact: 0.001 ticks survive
            assert type(have[k]) is type(v), k
        assert isinstance(have["id"], int)
        assert isinstance(have["updated_at"], float)
    ticks = [round(0.001 * k, 3) for k in range(1, 1000, 37)]
    # (bid_up NULL: a bid above these asks would be a crossed book, which the store rejects)
    await store.insert_snapshots([{**snap(100 + i), "ask_up": t, "bid_up": None}
                                  for i, t in enumerate(ticks)])
    back = [r["ask_up"] for r in await store.fetch_snapshots() if r["tick_ms"] >= (SLOT + 3000) * 1000]
    assert back == ticks


async def test_updated_at_is_the_databases_clock(store) -> None:
    before = await db_now(store)
    await store.insert_snapshots([{**snap(0), "updated_at": 1.0}])  # a writer's value is ignored
    await store.upsert_resolutions([{"symbol": "BTC", "window_s": 900, "slot_ts": SLOT,
                                     "updated_at": 2.0}])
    after = await db_now(store)
    s = (await store.fetch_snapshots())[0]["updated_at"]
    r = (await store.fetch_resolutions())[0]["updated_at"]
    for v in (s, r):
        assert before - 0.01 <= v <= after + 0.01


async def test_upsert_fills_nulls_and_never_blanks(store) -> None:
    key = {"symbol": "ETH", "window_s": 900, "slot_ts": SLOT}
    assert await store.upsert_resolutions([{**key, "slug": "eth-updown-15m-1", "price_to_beat": 3000.5,
                                            "fee_taker_only": True}]) == 1
    (r0,) = await store.fetch_resolutions()
    assert r0["resolved_up"] is None and r0["fee_taker_only"] is True
    # NULL / missing never blanks; a known value is not overwritten; NULLs are filled
    n = await store.upsert_resolutions([{**key, "slug": None, "price_to_beat": 1.0,
                                         "resolved_up": False, "final_price": 2999.25}])
    assert n == 1
    (r1,) = await store.fetch_resolutions()
    assert r1["slug"] == "eth-updown-15m-1"
    assert r1["price_to_beat"] == 3000.5
    assert r1["resolved_up"] is False
    assert r1["final_price"] == 2999.25
    assert r1["id"] == r0["id"]
    assert await store.fetch_resolutions(unresolved_only=True) == []


async def test_updated_at_moves_only_on_real_change(store) -> None:
    key = {"symbol": "SOL", "window_s": 900, "slot_ts": SLOT}
    await store.upsert_resolutions([{**key, "end_ts": SLOT + 900}])
    (a,) = await store.fetch_resolutions()
    await asyncio.sleep(0.02)  # the DB clock must be able to move
    assert await store.upsert_resolutions([{**key, "end_ts": SLOT + 900}, key]) == 0
    (b,) = await store.fetch_resolutions()
    assert b["updated_at"] == a["updated_at"]
    assert await store.upsert_resolutions([{**key, "resolved_up": True}]) == 1
    (c,) = await store.fetch_resolutions()
    assert c["updated_at"] > a["updated_at"]
    assert c["resolved_up"] is True and c["end_ts"] == SLOT + 900


async def test_upsert_batch_counts_and_filters(store) -> None:
    rows = [{"symbol": s, "window_s": w, "slot_ts": SLOT + 900 * i, "resolved_up": i % 2 == 0}
            for s in ("BTC", "ETH") for w in (300, 900) for i in range(5)]
    rows[0]["resolved_up"] = None
    assert await store.upsert_resolutions(rows) == 20
    # one new row, one changed (fills resolved_up), 18 untouched
    again = [*rows, {"symbol": "XRP", "window_s": 900, "slot_ts": SLOT},
             {**rows[0], "resolved_up": True}]
    assert await store.upsert_resolutions(again) == 2
    assert await store.count("slot_resolutions") == 21
    got = await store.fetch_resolutions(symbol="BTC", window_s=300, slot_ts_min=SLOT + 900,
                                        slot_ts_max=SLOT + 2700)
    assert [r["slot_ts"] for r in got] == [SLOT + 900, SLOT + 1800, SLOT + 2700]
    assert [r["resolved_up"] for r in got] == [False, True, False]
    assert len(await store.fetch_resolutions(unresolved_only=True)) == 1


async def test_bad_rows_are_rejected_clearly(store) -> None:
    with pytest.raises(RowRejected, match="tick_ms"):
        await store.insert_snapshots([{k: v for k, v in snap(0).items() if k != "tick_ms"}])
    with pytest.raises(RowRejected, match="slug"):
        await store.upsert_resolutions([{"symbol": "BTC", "window_s": 900, "slot_ts": SLOT,
                                         "slug": "x" * 200}])
    with pytest.raises(RowRejected, match="bid_up"):
        await store.insert_snapshots([{**snap(0), "bid_up": "n/a"}])
    # NaN is "no value", not an error
    assert await store.insert_snapshots([{**snap(1), "bid_up": float("nan")}]) == 1
    assert (await store.fetch_snapshots())[0]["bid_up"] is None
    assert await store.count("slot_snapshots") == 1


def test_schema_doc_covers_every_column() -> None:
    from slotml.ingest.schema import docs
    text = docs()
    for t in (SNAPSHOTS, RESOLUTIONS):
        for c in t.columns:
            assert f"`{c.name}`" in text


async def test_strings_round_trip_with_quotes_and_unicode(store) -> None:
    nasty = "a'b\\c\"d;-- é%s%%"
    await store.upsert_resolutions([{"symbol": "BTC", "window_s": 900, "slot_ts": SLOT,
                                     "slug": nasty, "condition_id": "0x" + "ab" * 32}])
    (r,) = await store.fetch_resolutions()
    assert r["slug"] == nasty and r["condition_id"] == "0x" + "ab" * 32
