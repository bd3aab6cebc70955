"""The store's portable decision-row pick (ingest/store/query.py) equals features/' DuckDB pick.

Same rows on both sides: written to a real store (SQLite and MariaDB), read back, loaded into
DuckDB. Rough data on purpose: jittered ticks, missing snapshots, rows before the window start,
two window lengths, hand-made rows exactly at D, at D - tolerance and one ms outside.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from slotml.features.build import build_training_set
from slotml.features.contract import DEFAULT_TOLERANCE, frac_ms
from slotml.features.synth import SynthConfig, generate
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
from slotml.ingest.store import open_store
from slotml.ingest.store.query import PickSpec, SlotQuery, fetch_slots, slots_sql
from tests.features.helpers import create_tables, snap

POINTS = (5 / 15, 7 / 15, 10 / 15, 0.5, 0.97)
TOLERANCES = (DEFAULT_TOLERANCE, 0.02)
EDGE_SLOT = 1_767_225_600 + 900 * 400  # a 15m window after the synthetic ones


def _rows(table: pa.Table) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("id", "updated_at")} for r in table.to_pylist()]


def _edge_rows() -> list[dict]:
    """One window per point where rows sit exactly at D, at D - tol, and 1 ms past each."""
    out = []
    for i, p in enumerate(POINTS):
        slot = EDGE_SLOT + 900 * i
        d = slot * 1000 + frac_ms(p, 900)
        tol = frac_ms(DEFAULT_TOLERANCE, 900)
        if i % 3 == 0:
            ticks = [d - tol, d + 1]  # the row at D - tol is the pick (inclusive)
        elif i % 3 == 1:
            ticks = [d - tol - 1, d + 1]  # 1 ms too old: no pick
        else:
            ticks = [d - 5, d]  # exactly at D
        out += [snap("BTC", slot, t) for t in ticks]
    return out


async def _load(url) -> duckdb.DuckDBPyConnection:
    s15, r15 = generate(SynthConfig(n_windows=10, seed=3, jitter=True, p_missing=0.35,
                                    p_pre_row=0.2, p_unresolved=0.2))
    s60, r60 = generate(SynthConfig(n_windows=12, window_s=60, snaps_per_window=8, seed=4,
                                    jitter=True, p_missing=0.3, symbols=("BTC", "ETH")))
    store = open_store(url)
    await store.connect()
    try:
        await store.ensure_schema()
        await store.insert_snapshots(_rows(s15) + _rows(s60) + _edge_rows())
        await store.upsert_resolutions(_rows(r15) + _rows(r60))
        snaps = await store.fetch_snapshots()
        res = await store.fetch_resolutions()
    finally:
        await store.close()
    con = duckdb.connect()
    create_tables(con)
    for table, rows in ((SNAPSHOTS, snaps), (RESOLUTIONS, res)):
        con.register("_t", pa.Table.from_pylist(rows))
        con.execute(f"INSERT INTO {table.name} SELECT {', '.join(table.names)} FROM _t")
        con.unregister("_t")
    return con


async def test_pick_equals_features_pick(any_db) -> None:
    con = await _load(any_db)
    store = open_store(any_db)
    await store.connect()
    try:
        checked = 0
        for tol in TOLERANCES:
            for p in POINTS:
                want = {(r["symbol"], r["window_s"], r["slot_ts"], r["tick_ms"])
                        for r in build_training_set(con, [p], tolerance=tol).to_pylist()}
                pick = PickSpec({w: (frac_ms(p, w), frac_ms(tol, w)) for w in (900, 60)})
                rows, nxt = await fetch_slots(store, SlotQuery(pick=pick, limit=100_000))
                got = {(r["symbol"], r["window_s"], r["slot_ts"], r["tick_ms"]) for r in rows}
                assert nxt is None
                assert len(got) == len(rows), "one row per window"
                assert got == want, (p, tol, sorted(got ^ want)[:5])
                assert want, "a point with no decision rows proves nothing"
                checked += len(want)
        # the pick must also drop windows (missing snapshots, the 1 ms-too-old edge window)
        n_windows = con.execute("SELECT count(DISTINCT (symbol, window_s, slot_ts)) FROM slot_snapshots").fetchone()[0]
        assert checked < n_windows * len(POINTS) * len(TOLERANCES)
    finally:
        await store.close()


async def test_pick_one_family_with_filters_and_pages(any_db) -> None:
    """Filters, a single family and keyset pages still give features/' rows, each once."""
    con = await _load(any_db)
    p = 7 / 15
    want = {(r["symbol"], r["slot_ts"], r["tick_ms"])
            for r in build_training_set(con, [p], window_s=900, symbols=["ETH"],
                                        resolved_only=True).to_pylist()}
    store = open_store(any_db)
    await store.connect()
    try:
        got, after, pages = [], None, 0
        while True:
            q = SlotQuery(symbol="ETH", window_s=900, resolved=True, after=after, limit=3,
                          pick=PickSpec({900: (frac_ms(p, 900), frac_ms(DEFAULT_TOLERANCE, 900))}))
            rows, after = await fetch_slots(store, q)
            got += [(r["symbol"], r["slot_ts"], r["tick_ms"]) for r in rows]
            pages += 1
            if after is None:
                break
        assert pages > 2
        assert len(got) == len(set(got))
        assert set(got) == want and want
        assert all(r[2] >= 0 for r in got)
    finally:
        await store.close()


def test_sql_is_parameterised() -> None:
    """A hostile symbol is a bound value, never SQL text, on both dialects."""
    evil = "BTC' OR '1'='1"
    for dialect, mark in (("sqlite", "?"), ("mysql", "%s")):
        sql, params = slots_sql(SlotQuery(symbol=evil, slot_from=1, slot_to=2, limit=5), dialect)
        assert evil not in sql and evil in params
        assert sql.count(mark) == len(params)


def test_pick_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        PickSpec({})
    with pytest.raises(ValueError):
        PickSpec({900: (-1, 10)})
