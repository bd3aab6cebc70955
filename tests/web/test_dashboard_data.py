"""The data-health aggregates (serve/slot_stats.py) against independent answers: plain Python
over the sim-backfilled store, and hand-made rows with known outages."""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict

import duckdb
import pytest

from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
from slotml.web import slot_stats
from tests.features.helpers import create_tables, insert, snap
from tests.serve.sim_data import shared_sim_data

W = 300


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from slotml.lake import connect

    d = shared_sim_data(tmp_path_factory.getbasetemp())
    con = connect(d["lake"])
    db = sqlite3.connect(f"file:{d['db']}?mode=ro", uri=True)
    yield {**d, "con": con, "db": db}
    con.close()
    db.close()


def test_collection_gaps_are_the_missing_ticks(data) -> None:
    ticks = sorted({t for (t,) in data["db"].execute("SELECT DISTINCT tick_ms FROM slot_snapshots")})
    want = {(a, b) for a, b in zip(ticks, ticks[1:], strict=False) if b - a > 45_000}
    got = slot_stats.collection_gaps(data["con"], W, limit=10_000)
    assert {(int(r["last_before"].timestamp() * 1000), int(r["first_after"].timestamp() * 1000))
            for r in got} == want and want
    assert all(r["missing_ticks"] == round((r["seconds"]) / 30) - 1 for r in got)


def test_snapshots_per_window_and_short_windows(data) -> None:
    n = Counter((s, t) for s, t in data["db"].execute(
        "SELECT symbol, slot_ts FROM slot_snapshots WHERE tick_ms >= slot_ts * 1000 "
        "AND tick_ms < (slot_ts + window_s) * 1000"))
    short = Counter(s for (s, _), k in n.items() if k < 10)
    got = slot_stats.snapshots_per_window(data["con"], W)
    assert {r["expected"] for r in got} == {10}
    by_sym = defaultdict(int)
    for r in got:
        by_sym[r["symbol"]] += r["windows_short"]
    assert dict(by_sym) == {s: short.get(s, 0) for s in by_sym} and sum(short.values()) > 0
    assert sum(r["windows"] for r in got) == len(n)


def test_unresolved_windows(data) -> None:
    newest = data["db"].execute("SELECT max(slot_ts) FROM slot_snapshots").fetchone()[0]
    rows = data["db"].execute(
        "SELECT s.symbol, count(*) FROM (SELECT DISTINCT symbol, slot_ts FROM slot_snapshots) s "
        "LEFT JOIN slot_resolutions r USING (symbol, slot_ts) "
        "WHERE r.resolved_up IS NULL AND s.slot_ts + 300 * 9 <= ? + 300 GROUP BY 1",
        (newest,)).fetchall()
    got = defaultdict(int)
    for r in slot_stats.unresolved_windows(data["con"], W, grace_windows=8):
        got[r["symbol"]] += r["unresolved"]
    assert dict(got) == dict(rows) and rows


def test_feed_outages_on_known_rows() -> None:
    con = duckdb.connect()
    create_tables(con)
    slot = 1_767_225_600
    rows = []
    for k in range(10):  # one 5-minute window, 10 ticks, two assets
        t = (slot + 30 * k) * 1000
        btc = snap("BTC", slot, t, window_s=W)
        eth = snap("ETH", slot, t, window_s=W)
        if 2 <= k <= 4:
            btc["chainlink_price"] = None  # price feed down for 3 ticks
        if k in (6, 7):
            eth.update(bid_up=None, ask_up=None, bid_down=None, ask_down=None)  # book feed
        if k == 9:
            eth["book_age_s"] = 120.0  # one stale tick: below min_ticks
        rows += [btc, eth]
    insert(con, SNAPSHOTS, rows)
    insert(con, RESOLUTIONS, [])
    got = [(r["symbol"], r["kind"], r["snapshots"], r["seconds"])
           for r in slot_stats.feed_outages(con, W)]
    assert got == [("BTC", "price", 3, 60.0), ("ETH", "book", 2, 30.0)]
    assert len(slot_stats.feed_outages(con, W, min_ticks=1)) == 3


def test_importance_rows_read_the_model_file(data, tmp_path) -> None:
    """The dashboard's importance table: the model file's importance key, most important first,
    one row per feature; a model file written before the key shows none."""
    from slotml.features.contract import CONTRACT_VERSION, FEATURES
    from slotml.serve.scorer import Scorer
    from slotml.web.dashboard import importance_rows
    from tests.serve.models import make_model

    rows = importance_rows(Scorer.load(data["model"]).meta)
    assert [r["feature"] for r in rows][0] == "move_z" and len(rows) == len(FEATURES)
    assert rows[0]["permutation"] == 0.031 and rows[0]["gain_share"] == 1.0
    assert sorted(r["feature"] for r in rows) == sorted(FEATURES)
    old = make_model(tmp_path / "td_model_old.onnx", list(FEATURES),
                     meta_over={"feature_contract": str(CONTRACT_VERSION), "importance": None})
    assert importance_rows(Scorer.load(old).meta) == []
