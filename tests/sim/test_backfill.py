"""History generator: collector-identical rows, deterministic, the same world the server serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from slotml.cli import main
from slotml.errors import UserError
from slotml.ingest.schema import DEPTH_COLUMNS, RESOLUTIONS, SNAPSHOTS
from slotml.ingest.store import open_store
from slotml.sim.backfill import generate
from slotml.sim.config import SimConfig
from slotml.sim.maker import BOOKS, SHARP_LEAD_S, SHRINK
from slotml.sim.world import World

END = 1795000000  # 2026-11-18T09:46:40Z (floored to the window by the generator)


def test_fast_rows_equal_make_snapshot() -> None:
    """The vectorised rows are exactly what ingest.snapshot.make_snapshot builds."""
    for cfg in (SimConfig(seed=4), SimConfig(seed=4, settlement="spot", efficient_book=True)):
        fast = generate(cfg, days=0.25, end=END)
        exact = generate(cfg, days=0.25, end=END, exact=True)
        assert len(fast.snapshots) > 1000
        assert fast.snapshots == exact.snapshots
        for a, b in zip(fast.snapshots[:50], exact.snapshots[:50], strict=True):
            assert all(type(a[k]) is type(b[k]) for k in a)


def test_rows_carry_every_column_and_are_deterministic() -> None:
    a = generate(SimConfig(seed=9), days=0.5, end=END)
    b = generate(SimConfig(seed=9), days=0.5, end=END)
    c = generate(SimConfig(seed=10), days=0.5, end=END)
    assert a.snapshots == b.snapshots and a.resolutions == b.resolutions and a.oracle == b.oracle
    assert a.snapshots != c.snapshots
    # every column, the depth ones too (the levels the live sim would publish)
    assert set(a.snapshots[0]) == {col.name for col in SNAPSHOTS.data_columns}
    assert all(a.snapshots[0][c] is not None for c in ("bid_up_l1", "ask_size_down_l1"))
    assert set(a.resolutions[5]) <= {col.name for col in RESOLUTIONS.data_columns}
    assert a.t_end == END // 900 * 900 and a.t_end - a.t_start == 43200


def test_collector_semantics() -> None:
    """What a live collector would have: no base before it is relayed, missing ticks, the venue's
    publication delays, nothing published after T known, the outcome from the path."""
    cfg = SimConfig(seed=5, unresolved_fraction=0.05)
    bf = generate(cfg, days=2, end=END, missing_fraction=0.01)
    world = World(cfg)
    rows = bf.snapshots
    first = [r for r in rows if r["tick_ms"] == r["slot_ts"] * 1000]
    later = [r for r in rows if r["minutes_into_slot"] >= 1]
    assert first and all(r["dir_move_pct"] is None and r["spot_move_pct"] is None for r in first)
    assert all(r["dir_move_pct"] is not None for r in later)
    assert bf.missing_ticks > 0
    n_ticks = 2 * 86400 // 30
    assert len(rows) == 4 * (n_ticks - bf.missing_ticks)
    # every row's price is the relayed observation stamped two seconds before the tick
    r = later[100]
    path = world.path(r["symbol"])
    t = r["tick_ms"] // 1000
    assert r["chainlink_price"] == path.spot_at(t - 2)
    assert r["chainlink_twap"] == path.twap_at(t - 2)
    res = bf.resolutions

    def path_of(x):
        return world.path(x["symbol"])

    assert len(res) == 4 * 2 * 96
    old = [x for x in res if x["end_ts"] < bf.t_end - 3600]
    unresolved = [x for x in old if "resolved_up" not in x]
    assert 0 < len(unresolved) < 0.12 * len(old)
    for x in old:
        if "resolved_up" in x:
            assert x["resolved_up"] == (x["final_price"] >= x["price_to_beat"])  # ties Up
            assert 311 <= x["resolved_at"] - x["end_ts"] <= 660  # venue 311-600 s + polling lag
        assert 1.2 <= x["final_seen_at"] - x["end_ts"] <= 1.81
    for x in old[::9]:
        m = world.market(x["symbol"], x["slot_ts"])
        wd = world.window(m)
        # bit-identical to what Gamma publishes and the relay streams (no float drift)
        assert x["price_to_beat"] == x["official_price_to_beat"] == wd.p2b == path_of(x).twap_at(x["slot_ts"])
        assert x["final_price"] == x["official_final_price"] == wd.final == path_of(x).twap_at(x["end_ts"])
    recent = [x for x in res if x["end_ts"] > bf.t_end - 1000]
    assert all("official_final_price" not in x for x in recent)  # published up to ~22 min late
    assert all("resolved_up" not in x for x in recent if x["end_ts"] > bf.t_end - 300)
    # prev_resolved_up follows the chain
    by_key = {(x["symbol"], x["slot_ts"]): x for x in res}
    for x in res:
        prev = by_key.get((x["symbol"], x["slot_ts"] - 900))
        if prev is not None and "resolved_up" in prev:
            assert x["prev_resolved_up"] == prev["resolved_up"]


@pytest.mark.parametrize("book", ["default", "efficient", "sharp", "shrunk"])
def test_backfill_equals_the_served_world(book: str) -> None:
    """The server's book/prices at a tick second are what the backfill wrote for that tick, and
    its prints are the world's order flow, every book regime."""
    cfg = SimConfig(seed=12, book=book)
    bf = generate(cfg, days=0.25, end=END)
    world = World(cfg)
    for r in bf.snapshots[::37]:
        m = world.market(r["symbol"], r["slot_ts"])
        t = r["tick_ms"] // 1000
        up, down = world.book_levels(m, t)
        for book, pre in ((up, "up"), (down, "down")):
            bid = book["bids"][0] if book["bids"] else (None, None)
            ask = book["asks"][0] if book["asks"] else (None, None)
            assert r[f"bid_{pre}"] == (None if bid[0] is None else bid[0] / 100)
            assert r[f"ask_{pre}"] == (None if ask[0] is None else ask[0] / 100)
            assert r[f"bid_size_{pre}"] == bid[1] and r[f"ask_size_{pre}"] == ask[1]
    o = pl.DataFrame(bf.oracle)
    row = o.row(77, named=True)
    m = world.market(row["symbol"], row["slot_ts"])
    assert row["p_up"] == pytest.approx(world.window(m).oracle_at(row["tick_ms"] // 1000), abs=1e-12)
    tr = [t for t in bf.trades if t["symbol"] == "ETH" and t["slot_ts"] == bf.t_start + 900]
    f = world.flow(world.market("ETH", bf.t_start + 900))
    assert len(tr) == len(f) > 0
    assert [(t["ts_ms"], t["price"], t["size"]) for t in tr] == list(zip(
        f.t_ms.tolist(), (f.cents / 100).tolist(), f.size.tolist(), strict=True))


def test_efficient_book_is_an_alias_and_regimes_differ() -> None:
    assert SimConfig(efficient_book=True).book == "efficient"
    assert SimConfig(book="efficient").efficient_book
    with pytest.raises(UserError):
        SimConfig(book="sharpest")
    with pytest.raises(UserError):
        SimConfig(book="sharp", efficient_book=True)
    m = World(SimConfig(seed=3)).market("BTC", END // 900 * 900)
    p = {b: World(SimConfig(seed=3, book=b)).window(m).books.p for b in BOOKS}
    o = World(SimConfig(seed=3)).window(m).oracle
    assert np.array_equal(p["efficient"][1:], o)
    assert np.allclose(p["shrunk"][1:] - 0.5, (1 - SHRINK) * (o - 0.5))
    assert np.array_equal(p["sharp"][1:-SHARP_LEAD_S], o[SHARP_LEAD_S:])
    assert not np.allclose(p["default"], p["efficient"])


def test_cli_writes_store_and_oracle(tmp_path: Path, any_db) -> None:
    data = tmp_path / "data"
    args = ["sim", "backfill", "--days", "0.2", "--end", str(END), "--seed", "3",
            "--db", any_db.raw, "--data-dir", str(data), "--log-level", "WARNING"]
    assert main(args) == 0
    bf = generate(SimConfig(seed=3, unresolved_fraction=0.003), days=0.2, end=END)

    async def read():
        store = open_store(any_db)
        await store.connect()
        try:
            return (await store.count("slot_snapshots"), await store.count("slot_resolutions"),
                    await store.fetch_snapshots(symbol="ETH"), await store.fetch_resolutions(symbol="SOL"))
        finally:
            await store.close()

    n_snap, n_res, eth, sol = asyncio.run(read())
    assert n_snap == len(bf.snapshots) and n_res == len(bf.resolutions)
    mine = sorted((r for r in bf.snapshots if r["symbol"] == "ETH"), key=lambda r: (r["slot_ts"], r["tick_ms"]))
    for a, b in zip(eth, mine, strict=True):
        for k, v in b.items():
            assert a[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k
    assert {r["slot_ts"] for r in sol} == {r["slot_ts"] for r in bf.resolutions if r["symbol"] == "SOL"}
    assert main(args) == 0  # idempotent: same rows again are no-ops
    assert asyncio.run(read())[:2] == (n_snap, n_res)
    df = pl.read_parquet(data / "sim" / "oracle.parquet")
    assert df.columns[:4] == ["symbol", "window_s", "slot_ts", "tick_ms"]
    assert df.height == n_snap and df.select(pl.struct(df.columns[:4]).is_unique().all()).item()
    assert df["p_up"].is_between(0, 1).all()


def test_sixty_days_shape_is_cheap_per_day() -> None:
    """Not a timing test: the generator is vectorised per asset (row count scales with days)."""
    bf = generate(SimConfig(seed=1, symbols=("BTC",)), days=3, end=END)
    assert len(bf.snapshots) == 3 * 2880 - bf.missing_ticks
    assert np.isfinite([r["chainlink_price"] for r in bf.snapshots]).all()


def test_depth_is_the_book_the_sim_publishes() -> None:
    """Every row's five levels a side are the world's book at the tick (what the live sim
    publishes), level 1 is the best level, absent levels are NULL pairs."""
    cfg = SimConfig(seed=12)
    bf = generate(cfg, days=0.1, end=END, missing_fraction=0.0)
    world = World(cfg)
    n_deep = 0
    for r in bf.snapshots[::7]:
        m = world.market(r["symbol"], r["slot_ts"])
        for token, book in zip(("up", "down"), world.book_levels(m, r["tick_ms"] // 1000), strict=True):
            for side, key in (("bid", "bids"), ("ask", "asks")):
                want = [(c / 100, s) for c, s in book[key]] + [(None, None)] * (5 - len(book[key]))
                got = [(r[f"{side}_{token}_l{k}"], r[f"{side}_size_{token}_l{k}"]) for k in range(1, 6)]
                assert got == want, (r["symbol"], r["tick_ms"], token, side)
                assert got[0] == (r[f"{side}_{token}"], r[f"{side}_size_{token}"])
                n_deep += got[4][0] is not None
    assert n_deep > 100
    assert all(c in bf.snapshots[0] for c in DEPTH_COLUMNS)
