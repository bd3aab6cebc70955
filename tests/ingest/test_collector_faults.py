"""Every sim fault against one running collector: it keeps running, writes nothing wrong,
recovers within its timeouts, and its counters say what happened.

One sim and one ~50 s collector run with a fault schedule per backend (SQLite and MariaDB, side
by side); the tests then read the store, the counters and the sim's own record of what it
emitted (``/_sim/stats``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slotml.settings import DbUrl
from slotml.sim.config import SimConfig
from slotml.sim.runner import sim_in_thread
from tests.ingest.collector_harness import (
    BACKENDS,
    PRICE_COLS,
    CollectorThread,
    backend_run,
    book_second,
    collector_config,
    first_price_seen,
    get_json,
    last_published,
    read_tables,
    runs_on_backends,
    sim_truth,
)
from tests.util import wait_for

SYMBOLS = ("BTC", "ETH")
STALE = 3.0
# offset (s after start), kind, params, seconds during which data may be stale-but-undetected
SCHEDULE: list[tuple[float, str, dict[str, Any]]] = [
    (4, "ws_drop", {"target": "all"}),
    (8, "malformed", {"target": "all", "count": 2}),
    (8, "truncated", {"target": "all", "count": 2}),
    (8, "unknown_event", {"target": "all"}),
    (8, "extra_fields", {"target": "all", "duration_s": 3}),
    (8, "tick_size_change", {}),
    (12, "http_status", {"status": 500, "count": 3, "prefix": "/gamma"}),
    (13, "http_status", {"status": 425, "count": 2, "prefix": "/gamma", "retry_after": 0.5}),
    (14, "http_status", {"status": 429, "count": 2, "prefix": "/gamma", "retry_after": 1}),
    (15, "duplicate", {"target": "rtds", "count": 3}),
    (17, "out_of_order", {"target": "rtds", "count": 3}),
    (19, "crossed_book", {"duration_s": 3}),  # 3 publishes: a loaded CI box once snapshotted none of 2
    (23, "ws_silent", {"target": "market", "duration_s": 6}),
    (32, "ws_silent", {"target": "rtds", "duration_s": 6}),
    (36.5, "_health", {}),  # not a fault: read /health while the relay is silent
    (41, "resolve_close", {}),
    (44, "slow", {"prefix": "/gamma", "delay_s": 3, "count": 2}),
]
RUN_S = 49.0


@dataclass
class FaultRun:
    t0: float
    t_stop: float
    injected: dict[tuple[float, str], float]  # (offset, kind) -> wall time injected
    snaps: list[dict]
    res: list[dict]
    quotes: dict
    prices: dict
    outcomes: dict
    markets: dict
    relay_delay: Any
    metrics: Any
    sim_stats: dict
    alive_at_end: bool
    silent_health: tuple[int, Any]
    final_health: tuple[int, Any]


@pytest.fixture(scope="module")
def fruns(request, tmp_path_factory) -> dict:
    return runs_on_backends(request, tmp_path_factory, "faults", fault_run)


@pytest.fixture(scope="module", params=BACKENDS)
def frun(request, fruns) -> FaultRun:
    return backend_run(request, fruns)


def fault_run(db: DbUrl, tmp: Path) -> FaultRun:
    """The schedule against a sim of its own (each backend's run beside the other's)."""
    with sim_in_thread(SimConfig(family="5s", symbols=SYMBOLS, seed=5)) as sim:
        cfg = collector_config(sim, tmp, db, stale_after=STALE, http_timeout=1.5)
        injected: dict[tuple[float, str], float] = {}
        with CollectorThread(cfg) as c:
            t0 = time.time()
            wait_for(lambda: c.metrics.get("snapshots_written") > 0, timeout=15,
                     what="first snapshots")
            health_url = f"http://127.0.0.1:{cfg.health_port}/health"
            for offset, kind, params in SCHEDULE:
                time.sleep(max(0.0, t0 + offset - time.time()))
                if kind == "_health":
                    silent_health = get_json(health_url)
                else:
                    sim.inject(kind, **params)
                injected[(offset, kind)] = time.time()
            time.sleep(max(0.0, t0 + RUN_S - time.time()))
            final_health = get_json(health_url)
            alive = all(not t.done() for t in c.collector._tasks)
            metrics = c.metrics
            t_stop = time.time()
        snaps, res = read_tables(cfg.common.db)
        quotes, prices = sim_truth(sim, snaps)
        outcomes, markets = {}, {}
        for r in res:
            m = sim.market(r["symbol"], r["slot_ts"])
            markets[(r["symbol"], r["slot_ts"])] = m
            outcomes[m.slug] = get_json(f"{sim.control_url}/outcome?slug={m.slug}")[1]
        stats = get_json(f"{sim.control_url}/stats")[1]
    return FaultRun(t0, t_stop, injected, snaps, res, quotes, prices, outcomes, markets,
                    sim.world.relay_delay, metrics, stats, alive, silent_health, final_health)


def _at(fr: FaultRun, offset: float, kind: str) -> float:
    return fr.injected[(offset, kind)]


def _in(t: float, lo: float, hi: float) -> bool:
    return lo <= t < hi


def test_daemon_survived_every_fault(frun: FaultRun) -> None:
    assert frun.alive_at_end
    assert frun.metrics.get("loop_errors") == 0
    emitted = frun.sim_stats["faults_emitted"]
    for kind in ("ws_drop", "malformed", "truncated", "unknown_event", "extra_fields",
                 "http_status", "duplicate", "out_of_order", "crossed_book", "ws_silent",
                 "resolve_close", "slow"):
        assert emitted.get(kind, 0) >= 1, f"sim never emitted {kind}: {emitted}"


def test_no_book_is_ever_written_wrong(frun: FaultRun) -> None:
    """NULL is allowed around faults; a value must always be what the sim quoted."""
    silent = _at(frun, 23, "ws_silent")
    for r in frun.snaps:
        cap = r["captured_at"]
        if _in(cap, silent, silent + STALE + 0.3):
            continue  # silent but not yet past the stale limit: the last book is what we have
        m = frun.markets[(r["symbol"], r["slot_ts"])]
        second = book_second(r["tick_ms"] / 1000)
        for tok, side in ((m.up_token, "up"), (m.down_token, "down")):
            got = (r[f"bid_{side}"], r[f"ask_{side}"], r[f"bid_size_{side}"], r[f"ask_size_{side}"])
            if got == (None, None, None, None):
                continue
            q = frun.quotes[(tok, second)]
            assert got == (q["bid"], q["ask"], q["bid_size"], q["ask_size"]), (r, side, q)
            if got[0] is not None and got[1] is not None:
                assert got[0] < got[1]  # never crossed


def test_stale_books_and_prices_are_nulled_and_counted(frun: FaultRun) -> None:
    silent_m = _at(frun, 23, "ws_silent")
    silent_r = _at(frun, 32, "ws_silent")
    mid_m = [r for r in frun.snaps if _in(r["captured_at"], silent_m + STALE + 0.5, silent_m + 5.5)]
    mid_r = [r for r in frun.snaps if _in(r["captured_at"], silent_r + STALE + 0.5, silent_r + 5.5)]
    assert mid_m and mid_r
    assert all(r["bid_up"] is None and r["ask_down"] is None for r in mid_m)
    assert all(r["chainlink_price"] is None and r["chainlink_twap"] is None for r in mid_r)
    m = frun.metrics
    assert m.get("stalls", stream="clob") >= 1 and m.get("stalls", stream="rtds") >= 1
    assert m.get("snapshot_nulls", column="book") >= len(mid_m)
    assert m.get("snapshot_nulls", column="spot", reason="stale") >= 1


def test_recovery_within_timeouts(frun: FaultRun) -> None:
    """Shortly after each outage ends, rows carry books and prices again."""
    ends = [(_at(frun, 4, "ws_drop"), "all"), (_at(frun, 23, "ws_silent") + 6, "book"),
            (_at(frun, 32, "ws_silent") + 6, "price"), (_at(frun, 41, "resolve_close"), "book")]
    for end, what in ends:
        after = [r for r in frun.snaps if _in(r["captured_at"], end + 2.5, end + 4.0)]
        assert after, f"no rows after {what} outage"
        for r in after:
            if what in ("all", "book"):
                assert r["bid_up"] is not None or r["ask_up"] is not None, \
                    (what, r["captured_at"] - end, r["tick_ms"], r["slot_ts"])
            if what in ("all", "price"):
                assert r["chainlink_price"] is not None and r["chainlink_twap"] is not None, r
    m = frun.metrics
    assert m.get("reconnects", stream="clob") >= 3 and m.get("reconnects", stream="rtds") >= 2
    assert m.get("closed_all_resolved", stream="clob") == 1
    assert m.get("close_all_resolved_unexpected") == 1


def test_prices_are_never_wrong(frun: FaultRun) -> None:
    """Every price written is one the relay published; a NULL is one the collector can explain.

    Spot and TWAP are separate relay frames, so at start-up one can arrive before the other: a
    column is NULL (counted ``no_data``) until its symbol's first frame of that topic. Outside
    the start-up and the relay's silence, a NULL must be one the collector counted stale.
    """
    silent = _at(frun, 32, "ws_silent")
    m = frun.metrics
    first = first_price_seen(frun.snaps)
    unexplained = dict.fromkeys(PRICE_COLS, 0)
    for r in frun.snaps:
        if _in(r["captured_at"], silent, silent + STALE + 0.3):
            continue
        s = last_published(frun.relay_delay, r["captured_at"])
        allowed = [frun.prices[(r["symbol"], x)] for x in (s, s - 1)]
        for col, (key, _) in PRICE_COLS.items():
            if r[col] is not None:
                assert r[col] in [p[key] for p in allowed], (col, r)
            elif r["captured_at"] > first.get((r["symbol"], col), float("inf")):
                unexplained[col] += 1
    for col, (_, series) in PRICE_COLS.items():
        assert unexplained[col] <= m.get("snapshot_nulls", column=series, reason="stale"), col
        # the start-up race is a frame or two, not a missing topic
        assert all((sym, col) in first for sym in SYMBOLS), (col, first)
    assert m.get("price_anomalies", kind="duplicate") >= 1
    assert m.get("price_anomalies", kind="out_of_order") >= 1


def test_bad_frames_and_crossed_books_are_counted(frun: FaultRun) -> None:
    m = frun.metrics
    assert m.get("frames_rejected", stream="clob", reason="malformed_json") >= 4  # 2 + 2 truncated
    assert m.get("frames_rejected", stream="rtds", reason="malformed_json") >= 4
    assert m.get("unknown_event_types", stream="clob") >= 1
    assert m.get("unknown_event_types", stream="rtds") >= 1
    assert m.get("book_rejects", side="up", reason="crossed") >= 1
    assert m.get("http_responses", status="500") >= 3
    assert m.get("http_responses", status="425") >= 2
    assert m.get("http_responses", status="429") >= 2
    assert m.get("http_retries") >= 5
    assert m.get("http_errors", reason="TimeoutError") >= 1


def test_windows_discovered_and_resolved_despite_faults(frun: FaultRun) -> None:
    got = {(r["symbol"], r["slot_ts"]) for r in frun.res}
    first = int(frun.t0 // 5) * 5 + 5
    last = int(frun.t_stop // 5) * 5 - 5
    assert {(s, t) for s in SYMBOLS for t in range(first, last + 1, 5)} <= got
    resolved = 0
    for r in frun.res:
        if r["resolved_up"] is not None:
            assert r["resolved_up"] is frun.outcomes[r["slug"]]["up"]
            resolved += 1
        if r["price_to_beat"] is not None:
            assert r["price_to_beat"] == pytest.approx(frun.outcomes[r["slug"]]["price_to_beat"],
                                                       rel=1e-12)
    assert resolved >= 8
    assert frun.metrics.get("disagreements") == 0, frun.metrics.by_label("disagreements", "kind")


def test_health_answers_503_while_chainlink_is_stale(frun: FaultRun) -> None:
    status, body = frun.silent_health
    assert status == 503 and body["ok"] is False
    assert any("chainlink data stale" in p for p in body["problems"])
    assert body["streams"]["rtds"]["reconnects"] >= 1
    status, body = frun.final_health
    assert status == 200 and body["ok"] is True, body
    assert body["frames_rejected"].get("malformed_json", 0) >= 8
    assert body["unknown_event_types"]
