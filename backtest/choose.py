"""Choosing the edge policy's thresholds on the policy slice (train's ``--policy edge``).

The slice lies after the calibration slice and before the test days (``train/split.py``):
isotonic calibration is in-sample on its own days, so those cannot choose thresholds, and the
test days must not. Every (min_edge, Kelly fraction) of the grid is backtested on the slice
through maker-queue fills (a maker's edge against its own bid is at least half a spread where
the book is fair, and adverse selection takes it back: only queue-aware fills see that); the
pair with the largest PnL among those with at least ``MIN_FILLS`` fills wins (ties: the higher
min_edge, the smaller fraction). Without a trade tape nothing is chosen (the model keeps the
design's rule) and the reason is returned.

At the default sizes (order 10 shares, market minimum 5) the fractions cannot differ: Kelly's
f* = edge / (1 - cost) is at most 1, so 10 x 0.5 x f* <= 5 and every order is raised to the
minimum. The grid's fractions then tie and the tie rule keeps the smallest; they matter once a
bot's ``--order-size`` is large against the minimum (seen on every card of issue 20's runs).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from slotml.backtest.fills import MakerQueue
from slotml.backtest.policies import Precomputed
from slotml.backtest.simulate import group, simulate
from slotml.serve.gate import EntryGate, GateConfig
from slotml.serve.scorer import Scorer

MIN_EDGES = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.16, 0.20, 0.25)
KELLY_FRACTIONS = (0.1, 0.25, 0.5)
MIN_FILLS = 20


def choose_policy(model_path: Path | str, lake_dir: Path | str | None, slot_from: int,
                  slot_to: int, config: GateConfig | None = None,
                  min_edges: tuple[float, ...] = MIN_EDGES,
                  kelly_fractions: tuple[float, ...] = KELLY_FRACTIONS) -> dict[str, Any]:
    """{"chosen": {name, min_edge, kelly_fraction, grid, slice, fill} | None, "reason": str}."""
    from slotml.backtest.replay import has_prints, load_rows
    from slotml.lake import connect

    scorer = Scorer.load(model_path)
    config = replace(config or GateConfig(), decision_log=None, policy="edge")
    con = connect(lake_dir)
    try:
        if not has_prints(con):
            return {"chosen": None, "reason": "the lake has no slot_trades: maker-queue fills are "
                    "unavailable, so no threshold was chosen (the model keeps the design's rule)"}
        # the policy slice is in the model's splits: do not skip it as "seen"
        rows, windows, _ = load_rows(con, scorer, slot_from, slot_to, tape=True, skip_seen=False)
    finally:
        con.close()
    fill = MakerQueue()
    scored = Precomputed(scorer, [r.vector for r in rows])
    grouped = group(rows, windows)
    grid = []
    for e in min_edges:
        for f in kelly_fractions:
            gate = EntryGate(replace(config, min_edge=e, kelly_fraction=f), scored)
            r = simulate(grouped, windows, gate, fill, "edge")
            grid.append({"min_edge": e, "kelly_fraction": f, "entries": r.n_entries,
                         "fills": r.n_fills, "pnl": round(r.pnl, 4),
                         "pnl_per_staked": None if r.pnl_per_staked is None else round(r.pnl_per_staked, 5),
                         "markout_60s": r.markouts()["markout_60s"]})
    ok = [g for g in grid if g["fills"] >= MIN_FILLS]
    span = {"from": slot_from, "to": slot_to - 1, "windows": len(windows)}
    if not ok:
        return {"chosen": None, "grid": grid, "reason": f"no grid point reached {MIN_FILLS} "
                "maker-queue fills on the policy slice (the model keeps the design's rule)"}
    best = max(ok, key=lambda g: (g["pnl"], g["min_edge"], -g["kelly_fraction"]))
    chosen = {"name": "edge", "min_edge": best["min_edge"], "kelly_fraction": best["kelly_fraction"],
              "fill": fill.name, "objective": "PnL on the policy slice", "slice": span, "grid": grid}
    return {"chosen": chosen, "reason": "chosen on the policy slice through maker-queue fills"}

