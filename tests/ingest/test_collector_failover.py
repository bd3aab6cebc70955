"""Acceptance: ``--price-source auto`` against the sim over real sockets (5-second windows).

One source is killed mid-run (the sim's ``service_down`` fault): the relay in one run,
PolyBolt in the mirror run. The only NULL settlement prices are within ``--stale-after`` of
the kill, every row names its spot source, settlement prices equal the sim's TWAP whichever
source brought them, and a window's spot never mixes Chainlink's and Pyth's series. A third
run has a wrong PolyBolt secret: WARNING, /health degraded, collection on the relay, and the
secret in no log line and no /health body.
"""

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
    first_price_seen,
    get_json,
    read_tables,
    side_by_side,
    sim_credentials,
)
from tests.util import wait_for

SYMBOLS = ("BTC", "ETH")
KILL_AT_S = 9.0  # after the collector's first snapshots
RUN_S = 25.0  # a window before the kill and one after its stale span, per symbol, whatever the phase
STALE_S = 3.0


@dataclass
class Run:
    killed: str
    t_kill: float
    t_stop: float
    snaps: list[dict]
    res: list[dict]
    outcomes: dict[str, dict]
    paths: Any
    counters: Any
    health: tuple[int, dict]


def collect(tmp, kill: str | None, secret: str | None = None, seconds: float = RUN_S,
            logs: bool = True) -> tuple[Run, list[str], list[str]]:
    """One auto run; ``kill`` the relay ("rtds") or "polybolt" KILL_AT_S in. Returns the run,
    every log line (``logs``: the root logger is the process's, so only a run alone grabs
    them) and every /health body seen during it."""
    lines: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    grab = Grab(logging.DEBUG)
    grab.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    if logs:
        root.addHandler(grab)
        root.setLevel(logging.DEBUG)
    bodies: list[str] = []
    try:
        scfg = SimConfig(family="5s", symbols=SYMBOLS, seed=31, polybolt_ping_s=2.0)
        with sim_in_thread(scfg) as sim:
            cfg = collector_config(sim, tmp, price_source="auto", stale_after=STALE_S,
                                   polybolt_credentials=sim_credentials(sim, secret))
            health = f"http://127.0.0.1:{cfg.health_port}/health"
            t0 = time.time()
            t_kill = float("inf")
            with CollectorThread(cfg) as c:
                wait_for(lambda: c.metrics.get("snapshots_written") > 0, timeout=15,
                         what="first snapshots")
                while time.time() < t0 + seconds:
                    if kill and t_kill == float("inf") and time.time() >= t0 + KILL_AT_S:
                        sim.inject("service_down", target=kill, duration_s=600)
                        t_kill = time.time()
                    bodies.append(repr(get_json(health)))
                    time.sleep(0.5)
                status = get_json(health)
                bodies.append(repr(status))
                counters = c.metrics
                t_stop = time.time()
            snaps, res = read_tables(cfg.common.db)
            outcomes = {r["slug"]: get_json(f"{sim.control_url}/outcome?slug={r['slug']}")[1]
                        for r in res}
            paths = {s: sim.world.path(s) for s in SYMBOLS}
    finally:
        if logs:
            root.removeHandler(grab)
            root.setLevel(old)
    return (Run(kill or "", t_kill, t_stop, snaps, res, outcomes, paths, counters, status),
            lines, bodies)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Both kills, side by side (each its own sim and collector)."""
    tmps = {k: tmp_path_factory.mktemp(f"auto-{k}") for k in ("rtds", "polybolt")}
    return side_by_side(lambda k: collect(tmps[k], k, logs=False)[0], tmps)


@pytest.fixture(scope="module", params=["rtds", "polybolt"])
def run(request, runs) -> Run:
    return runs[request.param].result()


def near_kill(run: Run, t: float) -> bool:
    """Within --stale-after of the kill (plus the publication lag of the start observation)."""
    return run.t_kill - 2.0 <= t <= run.t_kill + STALE_S + 2.0


def test_every_row_names_its_spot_source(run: Run) -> None:
    assert run.snaps and all(r["spot_source"] in ("chainlink", "pyth") for r in run.snaps)
    snapped = {(r["symbol"], r["slot_ts"]) for r in run.snaps}
    for r in run.res:
        if (r["symbol"], r["slot_ts"]) in snapped:
            assert r["spot_source"] in ("chainlink", "pyth"), r
    res = {(r["symbol"], r["slot_ts"]): r for r in run.res}
    for r in run.snaps:  # one source per window, its rows and its resolution agree
        assert r["spot_source"] == res[(r["symbol"], r["slot_ts"])]["spot_source"], r
    after = [r for r in run.res if r["slot_ts"] > run.t_kill + STALE_S + 1
             and (r["symbol"], r["slot_ts"]) in snapped]
    assert after, "no window started after the kill"
    want = "pyth" if run.killed == "rtds" else "chainlink"
    assert all(r["spot_source"] == want for r in after), [r["spot_source"] for r in after]
    before = [r for r in run.res if (r["symbol"], r["slot_ts"]) in snapped
              and r["slot_ts"] < run.t_kill - 1]
    assert before and all(r["spot_source"] == "chainlink" for r in before)


def test_null_settlement_prices_only_near_the_kill(run: Run) -> None:
    checked = 0
    for r in run.res:
        if r["slot_ts"] + 2 > run.t_stop or r["slot_ts"] < run.t_stop - RUN_S + 1:
            continue  # not started in the run, or before the feeds were up
        o = run.outcomes[r["slug"]]
        if r["price_to_beat"] is None:
            assert near_kill(run, r["slot_ts"]), (r["slug"], r["slot_ts"] - run.t_kill)
        else:
            assert r["price_to_beat"] == pytest.approx(o["price_to_beat"], rel=1e-12)
            checked += 1
        if r["final_price"] is not None:
            assert r["final_price"] == pytest.approx(o["final_price"], rel=1e-12)
        elif r["end_ts"] + 5 < run.t_stop:  # ended long enough ago to have its final price
            # (3 s left 0.7 s of slack over the relay's delay on a loaded box)
            assert near_kill(run, r["end_ts"]), (r["slug"], r["end_ts"] - run.t_kill)
    assert checked >= 2 * len(SYMBOLS), checked
    first = first_price_seen(run.snaps)  # a TWAP frame can follow the first capture
    for r in run.snaps:
        if r["chainlink_twap"] is None and r["captured_at"] >= first.get(
                (r["symbol"], "chainlink_twap"), float("inf")):
            assert near_kill(run, r["captured_at"]), (r, r["captured_at"] - run.t_kill)
    # the start-up excuse is a frame or two, before the kill, not a missing topic
    assert all(first.get((sym, "chainlink_twap"), float("inf")) < run.t_kill
               for sym in SYMBOLS), first


def test_spot_never_mixes_series(run: Run) -> None:
    res = {(r["symbol"], r["slot_ts"]): r for r in run.res}
    moves = 0
    for r in run.snaps:
        w = res[(r["symbol"], r["slot_ts"])]
        path = run.paths[r["symbol"]]
        if w["spot_price_to_beat"] is not None:
            want = (pyth_at(path, r["slot_ts"]) if w["spot_source"] == "pyth"
                    else path.spot_at(r["slot_ts"]))
            assert w["spot_price_to_beat"] == pytest.approx(want, rel=1e-12)
        if r["chainlink_price"] is not None:
            secs = range(int(r["captured_at"]) - 4, int(r["captured_at"]) + 1)
            series = [pyth_at(path, s) if r["spot_source"] == "pyth" else path.spot_at(s)
                      for s in secs]
            assert r["chainlink_price"] in series, r
        if r["spot_move_pct"] is not None:
            moves += 1
            assert r["spot_move_pct"] == pytest.approx(
                (r["chainlink_price"] / w["spot_price_to_beat"] - 1) * 100)
    assert moves >= 0.3 * len(run.snaps)


def test_the_sources_agreed_and_health_says_degraded(run: Run) -> None:
    m = run.counters
    assert m.get("twap_compared") > 20 and m.get("twap_disagreements") == 0
    status, body = run.health
    assert status == 200 and body["status"] == "degraded", body
    assert any(run.killed in w for w in body["warnings"]), body


def test_a_wrong_secret_warns_degrades_and_is_never_printed(tmp_path) -> None:
    secret = "wrong-S3CRET-7f3a9c-never-print"
    run, lines, bodies = collect(tmp_path, None, secret=secret, seconds=10.0)
    assert lines and bodies
    for text in lines + bodies:
        assert secret not in text
    refused = [ln for ln in lines if "credentials refused" in ln]
    assert refused and all(ln.startswith("WARNING") for ln in refused), refused
    status, body = run.health
    assert status == 200 and body["status"] == "degraded", body
    assert any("4001" in w for w in body["warnings"])
    # it carried on over the relay: every row has its TWAP and Chainlink spot
    assert run.snaps and all(r["spot_source"] == "chainlink" for r in run.snaps)
    assert sum(r["chainlink_twap"] is not None for r in run.snaps) >= 0.95 * len(run.snaps)
    assert run.counters.get("polybolt_closes", code="4001") == 1  # no storm
