"""Markets that settle on the Chainlink SPOT stream (the rule before August 2026): the
collector reads the rule from the metadata and measures moves, strike and outcome on spot."""

from __future__ import annotations

import time

import pytest

from slotml.sim.config import SimConfig
from slotml.sim.runner import sim_in_thread
from tests.ingest.collector_harness import CollectorThread, collector_config, get_json, read_tables
from tests.util import wait_for


def test_spot_settled_markets(tmp_path) -> None:
    with sim_in_thread(SimConfig(family="5s", symbols=("SOL",), seed=2, settlement="spot")) as sim:
        cfg = collector_config(sim, tmp_path)
        with CollectorThread(cfg) as c:
            t0 = time.time()
            wait_for(lambda: c.metrics.get("windows_resolved") >= 2, timeout=30,
                     what="two windows resolved")
            assert time.time() - t0 < 30
        snaps, res = read_tables(cfg.common.db)
        outcomes = {r["slug"]: get_json(f"{sim.control_url}/outcome?slug={r['slug']}")[1]
                    for r in res}
    assert res and all(r["settlement"] == "spot" for r in res)
    by = {r["slot_ts"]: r for r in res}
    moved = 0
    for s in snaps:
        w = by[s["slot_ts"]]
        if s["dir_move_pct"] is not None:
            assert w["price_to_beat"] == w["spot_price_to_beat"]
            assert s["dir_move_pct"] == pytest.approx(
                (s["chainlink_price"] / w["price_to_beat"] - 1) * 100)
            assert s["dir_move_pct"] == pytest.approx(s["spot_move_pct"])
            moved += 1
    assert moved >= 5
    resolved = [r for r in res if r["resolved_up"] is not None]
    assert len(resolved) >= 2
    for r in res:
        o = outcomes[r["slug"]]
        if r["price_to_beat"] is not None:
            assert r["price_to_beat"] == pytest.approx(o["price_to_beat"], rel=1e-12)
        if r["resolved_up"] is not None:
            assert r["resolved_up"] is o["up"]
            if r["final_price"] is not None and r["price_to_beat"] is not None:
                assert (r["final_price"] >= r["price_to_beat"]) is o["up"]
    assert c.metrics.get("disagreements") == 0
