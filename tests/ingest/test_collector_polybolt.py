"""Acceptance: ``--price-source polybolt`` against the sim over real sockets (5-second windows,
SQLite): every window's price_to_beat, moves and final_price equal the sim's Chainlink TWAP
series, as with the relay (tests/ingest/test_collector_sim.py); spot is Pyth's and says so."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pytest

from slotml.sim.config import SimConfig
from slotml.sim.runner import sim_in_thread
from slotml.sim.services.polybolt import pyth_at
from tests.ingest.collector_harness import (
    CollectorThread,
    collector_config,
    get_json,
    read_tables,
    sim_credentials,
)
from tests.util import wait_for

RUN_S = 24.0
SYMBOLS = ("BTC", "ETH", "SOL", "XRP")


@dataclass
class Run:
    t_stop: float
    snaps: list[dict]
    res: list[dict]
    outcomes: dict[str, dict]
    paths: Any
    health: tuple[int, dict]
    counters: Any
    rtds_connections: int


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("polybolt")
    scfg = SimConfig(family="5s", symbols=SYMBOLS, seed=21, polybolt_ping_s=2.0)
    with sim_in_thread(scfg) as sim:
        cfg = collector_config(sim, tmp, price_source="polybolt",
                               polybolt_credentials=sim_credentials(sim))
        t_start = time.time()
        with CollectorThread(cfg) as c:
            wait_for(lambda: c.metrics.get("snapshots_written") > 0, timeout=15,
                     what="first snapshots")
            time.sleep(max(0.0, t_start + RUN_S - time.time()))
            # The cutoff of the start-observation check below. A window that started 1.5 s
            # before it had its start observation published 0.6-1.0 s in and filled at the
            # next 0.5 s snapshot tick: no slack for a loaded box. So the collector gets up to
            # 5 s more to fill those windows (it fails only if it never does).
            t_stop = time.time()
            wait_for(lambda: all(w.price_to_beat is not None
                                 for w in list(c.collector.windows.values())
                                 if w.info.slot_ts + 1.5 < t_stop),
                     timeout=5, what="price_to_beat of the windows started before the cutoff")
            health = get_json(f"http://127.0.0.1:{cfg.health_port}/health")
            counters = c.metrics
        snaps, res = read_tables(cfg.common.db)
        outcomes = {r["slug"]: get_json(f"{sim.control_url}/outcome?slug={r['slug']}")[1]
                    for r in res}
        rtds = get_json(f"{sim.control_url}/stats")[1]["stats"].get("rtds_connections", 0)
        return Run(t_stop, snaps, res, outcomes, {s: sim.world.path(s) for s in SYMBOLS},
                   health, counters, rtds)


def test_the_relay_is_never_asked(run: Run) -> None:
    assert run.rtds_connections == 0


def test_settlement_prices_equal_the_sims_twap(run: Run) -> None:
    checked = finals = 0
    for r in run.res:
        o = run.outcomes[r["slug"]]
        assert r["spot_source"] in ("pyth", None)
        if r["price_to_beat"] is not None:
            assert r["price_to_beat"] == pytest.approx(o["price_to_beat"], rel=1e-12)
            assert r["price_to_beat"] == run.paths[r["symbol"]].twap_at(r["slot_ts"])
            # spot is Pyth's: its own series, not Chainlink's
            assert r["spot_price_to_beat"] == pytest.approx(
                pyth_at(run.paths[r["symbol"]], r["slot_ts"]), rel=1e-12)
            assert r["spot_price_to_beat"] != o["spot_price_to_beat"]
            checked += 1
        elif r["slot_ts"] + 1.5 < run.t_stop:
            pytest.fail(f"{r['slug']}: start observation was published but price_to_beat is NULL")
        if r["final_price"] is not None:
            assert r["final_price"] == pytest.approx(o["final_price"], rel=1e-12)
            finals += 1
    assert checked >= 10 and finals >= 5


def test_rows_and_moves_use_the_twap_and_name_pyth(run: Run) -> None:
    res = {(r["symbol"], r["slot_ts"]): r for r in run.res}
    moves = 0
    for r in run.snaps:
        assert r["spot_source"] == "pyth", r
        path = run.paths[r["symbol"]]
        # the latest TWAP/spot observation at capture: one of the last few seconds' values
        secs = range(int(r["captured_at"]) - 3, int(r["captured_at"]) + 1)
        if r["chainlink_twap"] is not None:
            assert r["chainlink_twap"] in [path.twap_at(s) for s in secs], r
        if r["chainlink_price"] is not None:
            assert r["chainlink_price"] in [pyth_at(path, s) for s in secs], r
        w = res[(r["symbol"], r["slot_ts"])]
        if r["dir_move_pct"] is not None:
            moves += 1
            assert r["dir_move_pct"] == pytest.approx(
                (r["chainlink_twap"] / w["price_to_beat"] - 1) * 100)
            assert r["spot_move_pct"] == pytest.approx(
                (r["chainlink_price"] / w["spot_price_to_beat"] - 1) * 100)
    assert moves >= 0.5 * len(run.snaps)


def test_counters_and_health(run: Run) -> None:
    m = run.counters
    assert m.get("frames_rejected") == 0 and m.get("unknown_event_types") == 0
    assert m.get("seq_gaps") == 0 and m.get("loop_errors") == 0
    assert m.get("disagreements") == 0, m.by_label("disagreements", "kind")
    assert m.get("pings_answered", stream="polybolt") >= 5  # 2 s pings, answered: still open
    status, body = run.health
    assert status == 200 and body["status"] == "ok", body
    assert body["streams"]["polybolt"]["connected"] and "rtds" not in body["streams"]
    assert body["polybolt"]["seq_gaps"] == 0


def test_a_spot_settled_market_stays_null_not_pyth(tmp_path, caplog) -> None:
    """A market settling on Chainlink *spot*, which PolyBolt does not carry (its spot is Pyth's):
    reported (WARNING, /health degraded, ``settlement_not_carried{spot}``) and its settlement
    prices and moves stay NULL: never Pyth's value, so no spurious disagreement either."""
    scfg = SimConfig(family="5s", symbols=("BTC", "ETH"), seed=23, settlement="spot",
                     polybolt_ping_s=2.0)
    caplog.set_level(logging.WARNING, logger="slotml.ingest.collector")
    with sim_in_thread(scfg) as sim:
        cfg = collector_config(sim, tmp_path, price_source="polybolt",
                               polybolt_credentials=sim_credentials(sim))
        with CollectorThread(cfg) as c:
            wait_for(lambda: c.metrics.get("snapshots_written") > 0, timeout=15,
                     what="first snapshots")
            # until a few windows have an official outcome and prices to cross-check against
            wait_for(lambda: c.metrics.get("windows_resolved") >= 4, timeout=20,
                     what="resolved windows")
            status, body = get_json(f"http://127.0.0.1:{cfg.health_port}/health")
            m = c.metrics
        snaps, res = read_tables(cfg.common.db)
    assert any("settles on spot" in r.getMessage() and "stay NULL" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING), caplog.text
    assert status == 200 and body["status"] == "degraded", body
    assert any("settlement series spot not carried" in w for w in body["warnings"]), body
    assert m.get("settlement_not_carried", series="spot") == 1
    assert snaps and res
    assert all(r["settlement"] == "spot" for r in res)
    for r in res:
        assert r["price_to_beat"] is None and r["final_price"] is None, r
    for r in snaps:
        assert r["dir_move_pct"] is None and r["abs_move_pct"] is None, r
        assert r["spot_source"] == "pyth"
    assert sum(r["spot_move_pct"] is not None for r in snaps) > 0  # Pyth's own move is kept
    assert sum(r["official_price_to_beat"] is not None for r in res) >= 4
    assert m.get("disagreements") == 0, m.by_label("disagreements", "kind")
