"""The lake mirrors the trade tape and the depth columns like the other tables (incremental,
manifest-committed), and still reads a lake written before schema version 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from slotml.ingest.schema import (
    DEPTH_COLUMNS,
    RESOLUTIONS,
    SNAPSHOTS,
    TAPE_GAPS,
    TRADES,
    Table,
)
from slotml.lake import connect, read_manifest
from slotml.lake.arrow_schema import fingerprint
from slotml.lake.manifest import MANIFEST_NAME
from slotml.settings import DbUrl
from tests.lake.storedb import BASE_SLOT, StoreDb, populate, snapshot_rows, write
from tests.lake.test_export import export, files_on_disk, lake_rows


def trades(n: int, start: int = 0, day: int = 0) -> list[dict[str, Any]]:
    """Prints over two symbols; every third without a hash, pairs sharing one transaction."""
    out = []
    for i in range(start, start + n):
        slot = BASE_SLOT + day * 86400 + (i % 8) * 900
        out.append({"symbol": ("BTC", "ETH")[i % 2], "window_s": 900, "slot_ts": slot,
                    "token_id": str(10**70 + i % 4), "outcome": ("Up", "Down")[i % 4 // 2],
                    "condition_id": f"0x{i % 8:064x}", "price": round(0.01 + (i % 97) / 100, 2),
                    "size": 5.0 + i, "side": ("BUY", "SELL")[i % 3 == 0],
                    "fee_rate_bps": None if i % 5 == 0 else 0.0, "ts_ms": (slot + i % 900) * 1000,
                    "received_at": slot + i % 900 + 0.25,
                    "tx_hash": "" if i % 3 == 0 else f"0x{i // 2:064x}", "frame_index": i % 2,
                    "occurrence": 0})
    return out


def gaps(n: int, day: int = 0) -> list[dict[str, Any]]:
    return [{"symbol": "BTC", "window_s": 900, "slot_ts": BASE_SLOT + day * 86400 + k * 900,
             "token_id": str(10**70), "from_ts": BASE_SLOT + day * 86400 + k * 900 + 10.5,
             "to_ts": BASE_SLOT + day * 86400 + k * 900 + 14.0, "reason": "reconnect"}
            for k in range(n)]


def with_depth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill two levels of the Up bids (the rest of the depth stays NULL)."""
    out = []
    for r in rows:
        if r["bid_up"] is None:
            out.append(r)
            continue
        out.append({**r, "bid_up_l1": r["bid_up"], "bid_size_up_l1": r["bid_size_up"],
                    "bid_up_l2": round(r["bid_up"] - 0.01, 3), "bid_size_up_l2": 42.5})
    return out


def write_tape(url: DbUrl, t: list[dict], g: list[dict]) -> None:
    import asyncio

    from slotml.ingest.store import open_store

    async def go() -> None:
        store = open_store(url)
        await store.connect()
        try:
            await store.ensure_schema()
            assert await store.insert_trades(t) == len(t)
            assert await store.insert_tape_gaps(g) == len(g)
        finally:
            await store.close()

    asyncio.run(go())


def assert_table_equals_store(lake: Path, db: StoreDb, table: Table) -> None:
    assert lake_rows(lake, table) == db.rows(table), table.name


def test_tape_and_depth_are_exported_incrementally(any_db: DbUrl, tmp_path: Path) -> None:
    write(any_db, with_depth(snapshot_rows(6)))
    write_tape(any_db, trades(60), gaps(3))
    db = StoreDb(any_db)
    lake = tmp_path / "lake"
    r1 = export(any_db, lake)
    assert r1.tables[TRADES.name].rows_written == 60 and r1.tables[TAPE_GAPS.name].rows_written == 3
    for t in (SNAPSHOTS, RESOLUTIONS, TRADES, TAPE_GAPS):
        assert_table_equals_store(lake, db, t)
    snaps = lake_rows(lake, SNAPSHOTS)
    assert any(r["bid_up_l2"] is not None for r in snaps)
    assert all(r["ask_down_l1"] is None for r in snaps)  # an empty level is NULL
    assert {r["tx_hash"] for r in lake_rows(lake, TRADES)} >= {""}
    m1 = read_manifest(lake)
    assert {f.symbol for f in m1.files(TRADES.name)} == {"BTC", "ETH"}

    # new prints for a later day: only they are written, into new partitions
    write_tape(any_db, trades(10, start=60, day=3), gaps(1, day=3))
    r2 = export(any_db, lake)
    assert r2.tables[TRADES.name].rows_written == 10
    assert r2.tables[TAPE_GAPS.name].rows_written == 1
    assert r2.tables[SNAPSHOTS.name].rows_written == 0
    assert r2.tables[TRADES.name].partitions_rewritten == 0
    m2 = read_manifest(lake)
    assert {f.path for f in m1.files(TRADES.name)} < {f.path for f in m2.files(TRADES.name)}
    for t in (TRADES, TAPE_GAPS):
        assert_table_equals_store(lake, db, t)
    con = connect(lake)
    try:  # DuckDB reads the tape per window like the snapshots
        per_window = con.execute("SELECT symbol, slot_ts, count(*) FROM slot_trades "
                                 "GROUP BY ALL ORDER BY ALL").fetchall()
    finally:
        con.close()
    assert sum(n for _, _, n in per_window) == 70


def _make_version_1_lake(lake: Path) -> None:
    """What the previous slotml left: snapshot files without the depth columns, a manifest
    with the version-1 fingerprint and no tape tables."""
    v1 = Table(SNAPSHOTS.name, tuple(c for c in SNAPSHOTS.columns if c.name not in DEPTH_COLUMNS),
               SNAPSHOTS.unique, SNAPSHOTS.indexes, SNAPSHOTS.doc)
    m = read_manifest(lake)
    for f in m.files(SNAPSHOTS.name):
        t = pq.read_table(lake / f.path)
        pq.write_table(t.drop_columns(list(DEPTH_COLUMNS)), lake / f.path)
    d = json.loads((lake / MANIFEST_NAME).read_text())
    d["tables"][SNAPSHOTS.name]["fingerprint"] = fingerprint(v1)
    for name in (TRADES.name, TAPE_GAPS.name):
        for f in m.files(name):
            (lake / f.path).unlink()
        del d["tables"][name]
    (lake / MANIFEST_NAME).write_text(json.dumps(d))


def test_a_lake_from_before_version_2_still_reads(sqlite_db: DbUrl, tmp_path: Path) -> None:
    db = populate(sqlite_db, n_slots=8)
    lake = tmp_path / "lake"
    export(sqlite_db, lake)
    before = lake_rows(lake, SNAPSHOTS)
    _make_version_1_lake(lake)
    assert TRADES.name not in read_manifest(lake).tables

    # connect() works: the depth columns read as NULL, the tape tables as empty views
    assert lake_rows(lake, SNAPSHOTS) == before
    assert lake_rows(lake, TRADES) == [] and lake_rows(lake, TAPE_GAPS) == []
    con = connect(lake)
    try:  # features-style reads over the old files keep working
        n, nulls = con.execute("SELECT count(*), count(*) FILTER (WHERE bid_up_l1 IS NULL) "
                               "FROM slot_snapshots").fetchone()
    finally:
        con.close()
    assert n == nulls == len(before)

    # the next export rebuilds the snapshots with the new schema and adds the tape
    write_tape(sqlite_db, trades(12), gaps(2))
    r = export(sqlite_db, lake)
    assert r.tables[SNAPSHOTS.name].rows_written == len(before)
    m = read_manifest(lake)
    assert m.tables[SNAPSHOTS.name].fingerprint == fingerprint(SNAPSHOTS)
    for t in (SNAPSHOTS, RESOLUTIONS, TRADES, TAPE_GAPS):
        assert_table_equals_store(lake, db, t)
    assert files_on_disk(lake) == m.live_paths()
