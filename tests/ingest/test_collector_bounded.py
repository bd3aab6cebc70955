"""The collector's per-window state stays bounded: a real collector against the sim for many fast
windows (1 s each, time scale 300), then every map and set keyed by window or token holds no more
than the windows still of use (in progress, ahead, ending within the retry limit) need.

A daemon that runs for weeks must not keep an entry per window it ever saw: before this test,
``known_keys`` and ``outcomes`` gained one per window, forever.
"""

from __future__ import annotations

import dataclasses
import math
import time

from slotml import venue
from slotml.sim.config import SimConfig
from slotml.sim.runner import sim_in_thread
from tests.ingest.collector_harness import CollectorThread, collector_config

K = 300  # 5m windows last 1 s
W = venue.scaled_seconds("5m", K)
SYMBOLS = ("BTC", "ETH")
RETRY = 2.0
RUN_S = 24.0


def test_per_window_state_stays_bounded(tmp_path) -> None:
    scfg = SimConfig(family="5m", families=("5m",), time_scale=K, symbols=SYMBOLS, seed=31,
                     relay_delay_s=0.3, print_rate=2.0)
    with sim_in_thread(scfg) as sim:
        base = collector_config(sim, tmp_path, snapshot_interval=0.25, retry_limit=RETRY,
                                discovery_interval=0.5, resolution_interval=0.25)
        cfg = dataclasses.replace(base, family="5m", families=("5m",), time_scale=K,
                                  snapshots_per_window=2)
        with CollectorThread(cfg) as ct:
            time.sleep(RUN_S)
        c = ct.collector
    now = time.time()
    ended = c.metrics.get("windows_resolved") + c.metrics.get("resolution_gave_up")
    # what the windows still of use need, per symbol: those ended within the retry limit and
    # the two windows of ``resume``'s horizon, the one in progress, discovery's lookahead, and
    # one more for a round in flight
    per_symbol = math.ceil((RETRY + 2 * W) / W) + 1 + cfg.lookahead_of("5m") + 2
    bound = per_symbol * len(SYMBOLS)
    assert ended >= 2 * bound, f"only {ended} windows ended: the run says nothing"
    sizes = {"windows": len(c.windows), "known_keys": len(c.known_keys),
             "outcomes": len(c.outcomes), "by_condition": len(c.by_condition)}
    tokens = {"by_token": len(c.by_token), "books": len(c.books.books),
              "retired": len(c.books.retired), "clob.tokens": len(c.clob.tokens),
              "resynced": len(c.clob._resynced), "tape.windows": len(c.clob.tape.windows),
              "occurrences": len(c.clob.tape.occ._counts)}
    assert all(n <= bound for n in sizes.values()), (sizes, bound, ended)
    assert all(n <= 2 * bound for n in tokens.values()), (tokens, bound, ended)
    # and by age: no key of a window long over is kept unless it (or the one before) is tracked
    slack = RETRY + 2 * W + 2.0  # the horizon plus a couple of resolution rounds
    ends = {(w.info.symbol, w.info.window_s, w.info.end_ts) for w in c.windows.values()}
    stale = [k for k in (*c.known_keys, *c.outcomes)
             if k[2] + W < now - slack and k not in c.windows and k not in ends]
    assert not stale, f"{len(stale)} keys of windows long over kept: {sorted(stale)[:4]}"
