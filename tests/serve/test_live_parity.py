"""Live parity: sim running, the collector recording, the online builder fed by its own live
subscription (serve.live.LiveFeatures); at each decision tick its features equal those built
later from the collector's store by features/'s SQL. (And the store replayed through the online
builder reproduces the SQL on every decision row.)

Every difference must be explained: a quote that changed between the two processes' captures of
the same tick, a tick one process's snapshot loop skipped, or the previous window's outcome
known to one process at its decision and not yet to the other (each learns it by its own
polling; the 5 s sim family puts that moment among the decision points far more often than
15-minute markets do). Excluding that last kind, >= 99% of rows are equal on every feature,
a row after a tick one process skipped counting as equal when the live vector equals the same
SQL over the rows the live process itself took."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from slotml.features.build import build_training_set
from slotml.features.contract import FEATURES, frac_ms
from slotml.ingest.collector import Collector
from slotml.ingest.config import CollectorConfig
from slotml.ingest.credentials import Credentials
from slotml.ingest.store import open_store
from slotml.serve.live import LiveFeatures
from slotml.serve.online import OnlineFeatures
from slotml.settings import CommonSettings, DbUrl
from slotml.sim.config import SimConfig
from slotml.sim.runner import running_sim
from tests.util import async_wait_for

SYMBOLS = ("BTC", "ETH", "SOL", "XRP")
POINTS = tuple(k / 15 for k in range(1, 15))  # 14 decision points per window
WINDOW_S = 5
# The relay dies (the sim's service_down, both processes at once) and stays dead once it has
# published the observation stamped this far into the first whole window, halfway to the next
# one's publication (a frame in flight at the kill could reach one process and not the other).
# The next window still pins Chainlink's spot (its last observation is 2 s old at its start),
# the ones after it Pyth's (7 s > --stale-after 5 s): no window start is near the threshold.
KILL_AFTER_S = 3
# Columns of a snapshot row that come from the venue at capture time (not the tick itself).
QUOTE_COLS = ("bid_up", "ask_up", "bid_down", "ask_down", "bid_size_up", "ask_size_up",
              "bid_size_down", "ask_size_down", "chainlink_price", "chainlink_twap",
              "dir_move_pct", "spot_move_pct")


class BufferedWriter:
    """The recorder's writer: rows kept in order, committed to the real store at the end
    (the durable spool is ingest's concern and tested there)."""

    def __init__(self) -> None:
        self.snapshots: list[dict] = []
        self.resolutions: list[dict] = []

    def put_snapshot(self, row) -> None:
        self.snapshots.append(dict(row))

    def put_resolution(self, row) -> None:
        self.resolutions.append(dict(row))

    def stats(self) -> dict:
        return {"snapshots": len(self.snapshots), "resolutions": len(self.resolutions)}

    async def commit(self, store) -> None:
        await store.insert_snapshots(self.snapshots)
        for row in self.resolutions:  # in order: the store fills NULLs, never blanks a value
            await store.upsert_resolutions([row])


def load_store(con, path: Path) -> None:
    """The SQLite store's two tables as DuckDB tables (what the lake mirrors)."""
    import pyarrow as pa

    from slotml.ingest.schema import TABLES
    from slotml.lake.arrow_schema import arrow_schema

    db = sqlite3.connect(path)
    try:
        for name, table in TABLES.items():
            cur = db.execute(f"SELECT {', '.join(table.names)} FROM {name}")
            bools = {c.name for c in table.columns if c.kind == "bool"}
            rows = [{k: (bool(v) if k in bools and v is not None else v)
                     for k, v in zip(table.names, r, strict=True)} for r in cur.fetchall()]
            con.register("_t", pa.Table.from_pylist(rows, schema=arrow_schema(table)))
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM _t")
            con.unregister("_t")
    finally:
        db.close()


def _dicts(con, sql: str, *params) -> list[dict]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def load_rows(con, rows: list[dict]) -> None:
    """``rows`` (snapshot dicts as the collector makes them) as ``con``'s slot_snapshots."""
    import pyarrow as pa

    from slotml.ingest.schema import TABLES
    from slotml.lake.arrow_schema import arrow_schema

    table = TABLES["slot_snapshots"]
    con.execute("DELETE FROM slot_snapshots")
    con.register("_t", pa.Table.from_pylist([{c: r.get(c) for c in table.names} for r in rows],
                                            schema=arrow_schema(table)))
    con.execute("INSERT INTO slot_snapshots SELECT * FROM _t")
    con.unregister("_t")


def own_rows_agree(v, i, cols, skip) -> bool:
    """The live vector ``v`` equals row ``i`` of ``cols`` (both absent counts) on every
    feature but ``skip``."""
    if v is None or i is None:
        return v is None and i is None
    return all((math.isnan(float(np.float32(cols[name][i]))) and math.isnan(v[j]))
               or abs(float(v[j]) - float(np.float32(cols[name][i])))
               <= 1e-6 * max(1.0, abs(float(np.float32(cols[name][i]))))
               for j, name in enumerate(FEATURES) if name not in skip)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


class WholeWindows(OnlineFeatures):
    """The live builder fed the snapshots of whole windows only (from ``first_slot``), as the
    offline side reads them (the store's earlier rows are deleted before the SQL).

    Why: prev_vol_k and lead_blend_z's prior pool the earlier windows' rows, and the rows of the
    window in progress at the start depend on when each process got its first books and prices
    (one had a tick the other had not, or a NULL book where the other had one): on a loaded box
    that changed lead_blend_z on most rows of the run, a difference of the start, not of the
    features."""

    def __init__(self, first_slot: int) -> None:
        super().__init__(None, keep_windows=1000)
        self.first_slot = first_slot

    def add_snapshot(self, row) -> bool:
        return row["slot_ts"] >= self.first_slot and super().add_snapshot(row)


@pytest.mark.parametrize("price_source", ["auto"])
async def test_live_online_features_match_the_store(tmp_path: Path, price_source: str) -> None:
    """``auto``: both price sources (relay and PolyBolt) in both processes. The relay-only run
    (``relay``, the default) is left out of ``make test`` for time: the auto capture reads the
    relay's TWAP and spot while the relay is fresh, then the relay is killed (``KILL_AFTER_S``) and
    the later windows pin Pyth's spot and read PolyBolt's TWAP, so rows of both sources are
    compared."""
    url = DbUrl(scheme="sqlite", path=tmp_path / "store.db")
    async with running_sim(SimConfig(family="5s", symbols=SYMBOLS, seed=5,
                                            relay_delay_s=0.05)) as sim:
        c = sim.config
        creds = Credentials(c.polybolt_key, c.polybolt_secret, c.polybolt_passphrase, "test")
        cfg = CollectorConfig(
            common=CommonSettings(data_dir=tmp_path, db=url), family="5s", symbols=SYMBOLS,
            gamma_url=sim.gamma_url, clob_url=sim.clob_url, clob_ws_url=sim.ws_market_url,
            rtds_ws_url=sim.rtds_url, snapshot_interval=0.25, discovery_interval=1.0,
            resolution_interval=0.1, stale_after=5.0, retry_limit=60.0, health_port=0,
            price_source=price_source, polybolt_ws_url=sim.polybolt_url,
            polybolt_credentials=creds)
        store = open_store(url)
        await store.connect()
        await store.ensure_schema()
        writer = BufferedWriter()
        recorder = Collector(cfg, store, writer)

        live_rows: dict[tuple[str, int], list[dict]] = {}
        started = time.time()
        first_slot = (int(started + 1.0) // WINDOW_S + 1) * WINDOW_S  # the first whole window
        online = WholeWindows(first_slot)
        decided: dict[tuple[str, int, int], np.ndarray | None] = {}
        decided_at: dict[tuple[str, int, int], float] = {}
        step_ms = int(cfg.snapshot_interval * 1000)

        def on_snapshot(row) -> None:
            """The bot, at each snapshot tick: decide for the decision instants this tick
            covers (D in [tick, next tick)), with the row just taken."""
            sym, slot, tick = row["symbol"], row["slot_ts"], row["tick_ms"]
            live_rows.setdefault((sym, slot), []).append(dict(row))
            if slot < first_slot:
                return
            for p in POINTS:
                d_ms = slot * 1000 + frac_ms(p, WINDOW_S)
                key = (sym, slot, d_ms)
                if key not in decided and d_ms < tick + step_ms:
                    v = online.vector_at(sym, WINDOW_S, slot, d_ms)
                    decided[key] = None if v is None else v.copy()
                    decided_at[key] = time.time()

        learnt: dict[tuple[str, int, str], float] = {}  # when the live process got each field

        def on_resolution(row) -> None:
            for f in ("resolved_up", "final_price"):
                if row.get(f) is not None:
                    learnt.setdefault((row["symbol"], row["slot_ts"], f), time.time())

        live = LiveFeatures(cfg, online, on_snapshot=on_snapshot, on_resolution=on_resolution)
        tasks = [asyncio.create_task(recorder.run()), asyncio.create_task(live.run())]
        published = [s + sim.world.relay_delay(s) for s in (first_slot + KILL_AFTER_S,
                                                            first_slot + KILL_AFTER_S + 1)]
        await asyncio.sleep(sum(published) / 2 - time.time())
        sim.inject("service_down", target="rtds", duration_s=600)
        # Run until every symbol has decided in the window after the first Pyth one: the
        # compared windows (first_slot .. first_slot + 10 s) are then whole whatever the start's
        # phase in the 5 s grid and the box's load. (A fixed 21 s from `started` ended before the
        # Pyth window was whole when the first whole window began > 5.67 s after `started`:
        # {'pyth': 0}, about 1 run in 15, more under load.)
        end_slot = first_slot + 3 * WINDOW_S
        await async_wait_for(
            lambda: {k[0] for k in decided if k[1] >= end_slot} == set(SYMBOLS),
            timeout=end_slot + 10.0 - time.time(), interval=0.05,
            what=f"a decision of every symbol in window {end_slot}")
        last_slot = max((k[1] for k in decided), default=first_slot)
        live.stop()
        recorder.stop()
        await asyncio.gather(*tasks)
        await writer.commit(store)
        await store.close()

    # later, offline: the store's tables -> DuckDB -> the training set's SQL
    con = duckdb.connect()
    load_store(con, url.path)
    # the start's partial window is neither process's history (see WholeWindows)
    con.execute("DELETE FROM slot_snapshots WHERE slot_ts < ?", [first_slot])
    table = build_training_set(con, POINTS, None, float64=True, window_s=WINDOW_S,
                               slot_from=first_slot, slot_to=last_slot)  # whole windows only
    stored: dict[tuple[str, int], dict[int, dict]] = {}
    for row in _dicts(con, "SELECT * FROM slot_snapshots WHERE window_s = ?", WINDOW_S):
        stored.setdefault((row["symbol"], row["slot_ts"]), {})[row["tick_ms"]] = row
    resolutions = {(r["symbol"], r["slot_ts"]): r for r in
                   _dicts(con, "SELECT * FROM slot_resolutions WHERE window_s = ?", WINDOW_S)}
    con.close()
    # the same SQL over the rows the live process itself took (a tick one process skipped)
    con_mine = duckdb.connect()
    load_store(con_mine, url.path)
    load_rows(con_mine, [r for (_, slot), rows in live_rows.items() if slot >= first_slot
                     for r in rows])
    cols_mine = build_training_set(con_mine, POINTS, None, float64=True, window_s=WINDOW_S,
                                   slot_from=first_slot, slot_to=last_slot).to_pydict()
    con_mine.close()
    offline_mine = {(cols_mine["symbol"][i], cols_mine["slot_ts"][i],
                     round(cols_mine["decision_ts"][i] * 1000)): i
                    for i in range(len(cols_mine["symbol"]))}

    cols = table.to_pydict()

    # 1. replaying the collected store through the online builder reproduces the training set's
    #    every feature on every decision row (the same rows, so no timing can differ)
    replayed = OnlineFeatures(None, keep_windows=1000)
    for r in resolutions.values():
        replayed.add_resolution(r)
    for r in sorted((r for rows in stored.values() for r in rows.values()),
                    key=lambda r: (r["tick_ms"], r["symbol"])):
        replayed.add_snapshot(r)
    for i in range(table.num_rows):
        got = replayed.vector_at(cols["symbol"][i], WINDOW_S, cols["slot_ts"][i],
                                 round(cols["decision_ts"][i] * 1000))
        want = np.array([cols[f][i] for f in FEATURES], dtype=np.float64).astype(np.float32)
        assert got is not None and np.allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True), \
            f"replayed store differs on row {i}"

    # 2. live: what the bot saw at each decision tick
    offline = {(cols["symbol"][i], cols["slot_ts"][i], round(cols["decision_ts"][i] * 1000)): i
               for i in range(table.num_rows)}
    keys = [k for k in decided if first_slot <= k[1] < last_slot]
    assert len(keys) >= 100, f"only {len(keys)} live decisions"
    source = {k: r["spot_source"] for k, r in resolutions.items()}
    by_source = {s: [k for k in keys if source.get(k[:2]) == s] for s in ("chainlink", "pyth")}
    # both sources' rows are compared: a whole window of each per symbol at least
    assert min(len(v) for v in by_source.values()) >= len(POINTS) * len(SYMBOLS), \
        {s: len(v) for s, v in by_source.items()}
    prev_feats = {"prev_up", "prev_known_source"}
    PREV_RACE_S = 0.25  # noqa: N806
    equal, quote_equal, unexplained, by_quote, by_prev, by_tick = 0, 0, [], [], [], []
    for key in keys:
        sym, slot, d_ms = key
        v = decided[key]
        i = offline.get(key)
        diffs = []
        if v is None or i is None:
            diffs = ["<row presence>"] if (v is None) != (i is None) else []
        else:
            for j, name in enumerate(FEATURES):
                want = np.float32(cols[name][i])
                if not ((math.isnan(want) and math.isnan(v[j]))
                        or abs(float(v[j]) - float(want)) <= 1e-6 * max(1.0, abs(float(want)))):
                    diffs.append(name)
        equal += not diffs
        quote_equal += not (set(diffs) - prev_feats)
        if not diffs:
            continue
        # a quote changed within the tick: the two processes' rows up to D differ in a quote
        mine = {r["tick_ms"]: r for r in live_rows.get((sym, slot), []) if r["tick_ms"] <= d_ms}
        theirs = {t: r for t, r in stored.get((sym, slot), {}).items() if t <= d_ms}
        quote_changed = set(mine) == set(theirs) and any(
            not _same(mine[t].get(c), theirs[t].get(c)) for t in mine for c in QUOTE_COLS)
        # the previous outcome was known to one process at its decision and not to the other
        # (live: learnt before it computed; offline: stamped before D)
        p = resolutions.get((sym, slot - WINDOW_S), {})
        branches = [
            (learnt.get((sym, slot - WINDOW_S, live_f)), p.get(store_f))
            for live_f, store_f in (("resolved_up", "resolved_at"), ("final_price", "final_seen_at"))]
        # (or learnt by either within PREV_RACE_S of D: the two processes stamp "known at" with
        # their own clocks a few ms apart, so at the boundary either answer is legitimate)
        prev_timing = set(diffs) <= prev_feats and any(
            (a is not None and a <= decided_at[key]) != (b is not None and b < d_ms / 1000)
            or any(t is not None and abs(t - d_ms / 1000) < PREV_RACE_S for t in (a, b))
            for a, b in branches)
        missed_tick = set(mine) != set(theirs)  # one process's snapshot loop skipped a tick
        if quote_changed:
            by_quote.append((key, diffs))
        elif missed_tick and own_rows_agree(v, offline_mine.get(key), cols_mine, prev_feats) \
                and (prev_timing or not set(diffs) & prev_feats):
            # One process's snapshot loop skipped a tick (a loaded box: 48 of 168 rows once,
            # all of a window after the tick). The live vector must then equal the SQL over
            # the rows the live process had (prev_* aside: timing, as above): counted equal.
            by_tick.append((key, diffs, sorted(set(mine) ^ set(theirs))))
            quote_equal += bool(set(diffs) - prev_feats)
        elif prev_timing:
            by_prev.append((key, diffs))
        else:
            unexplained.append((key, diffs, decided_at[key], branches))
    assert not unexplained, f"unexplained differences: {unexplained[:5]}"
    summary = (f"{equal}/{len(keys)} rows equal on every feature "
               f"({ {s: len(v) for s, v in by_source.items()} } by spot source); "
               f"quote changed within the tick: "
               f"{len(by_quote)}; previous outcome learnt between the two processes: {len(by_prev)}; "
               f"a tick one process skipped (load): {len(by_tick)} {by_tick[:3]}")
    print(summary)
    assert quote_equal / len(keys) >= 0.99, summary
