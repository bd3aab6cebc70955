"""How often the gate's out-of-distribution check fires (issue 21), measured (minutes, not a
unit test): ``python -m bench.ood_rate [--days 90] [--shift-day 60] [--seed 42] [--work DIR]``.

Issue 20's two sim histories of one seed (``bench/acceptance_shift.py``'s ``history()``): the
control (``--shift none``) and the settlement-lag regime shift from ``--shift-day``. On each, a
model frozen at day ``shift-day - 1`` (train/'s own pipeline via ``train_and_predict()``:
fitted, calibrated and given its feature ranges on the days before; its test days are every
later day), then the decision rows of the days from ``shift-day`` on, built as the backtest
builds them (``backtest.replay.load_rows``: the model's own statistics, tolerance, lookback),
checked with the gate's own ``serve.guards.Ranges``. Reported: the share of decision rows the
gate declines as out of distribution at the default ``--ood-max`` (and at 0..4, for context),
per 7-day period, and per feature the share of rows outside its range. On the control those
days are the model's own test days (the "rare" half of the issue's acceptance); on the shift
history they are the days after the shift (the "must rise" half). Nothing is tuned here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.acceptance_shift import DAY, history, train_and_predict

OOD_MAXES = (0, 1, 2, 3, 4)


def model_of(data: Path) -> Path:
    got = sorted((data / "models").glob("td_model_*.onnx"), key=lambda p: p.stat().st_mtime)
    if not got:
        raise RuntimeError(f"no model in {data / 'models'}")
    return got[-1]


def measure(h: dict[str, Any], days: int, shift_day: int, ood_max: int) -> dict[str, Any]:
    """Freeze a model at day shift_day - 1 on this history; OOD shares on the later days."""
    from slotml.backtest.replay import load_rows
    from slotml.lake import connect
    from slotml.serve.guards import Ranges
    from slotml.serve.scorer import Scorer

    fz = train_and_predict(h, test_days=days - shift_day)
    assert fz["trained_to"] < h["shift_at"], fz["trained_to"]
    scorer = Scorer.load(model_of(Path(h["data"])))
    ranges = Ranges.of(scorer.meta)
    if ranges is None:
        raise RuntimeError("the frozen model carries no feature_ranges")
    con = connect(Path(h["data"]) / "lake")
    try:
        rows, windows, _ = load_rows(con, scorer, h["shift_at"], None, tape=False)
    finally:
        con.close()
    rows = [r for r in rows if r.key in windows]
    X = np.stack([r.vector for r in rows])
    day = (np.array([r.slot_ts for r in rows]) - h["t_start"]) // DAY
    out = ranges.outside(X)
    n_out = out.sum(axis=1)
    res: dict[str, Any] = {
        "model": scorer.path.name, "rows": len(rows), "ood_max": ood_max,
        "ood_rate": float(np.mean(n_out > ood_max)),
        "by_ood_max": {str(k): float(np.mean(n_out > k)) for k in OOD_MAXES},
        "periods": {}, "per_feature": {},
    }
    for a in range(shift_day, days, 7):
        b = min(a + 7, days)
        keep = (day >= a) & (day < b)
        res["periods"][f"days {a}-{b - 1}"] = {
            "rows": int(keep.sum()), "ood_rate": float(np.mean(n_out[keep] > ood_max)) if keep.any() else None}
    for j, name in enumerate(ranges.names):
        res["per_feature"][name] = float(out[:, j].mean())
    return res


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ood_rate")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--shift-day", type=int, default=60)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=Path("/tmp/slotml-ood"))
    ap.add_argument("--out", type=Path, help="JSON report")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from slotml.serve.options import DEFAULT_OOD_MAX

    report: dict[str, Any] = {"days": a.days, "shift_day": a.shift_day, "seed": a.seed}
    for shift in ("none", "lag"):
        h = history(a.work, shift, a.days, a.shift_day, a.seed)
        report[shift] = measure(h, a.days, a.shift_day, DEFAULT_OOD_MAX)
    lines = [f"model frozen at day {a.shift_day - 1} (seed {a.seed}); decision rows of days "
             f"{a.shift_day}-{a.days - 1}; declined as out_of_distribution at --ood-max "
             f"{DEFAULT_OOD_MAX}:"]
    for shift, label in (("none", "control (no shift: the model's own test days)"),
                         ("lag", f"settlement-lag shift from day {a.shift_day}")):
        r = report[shift]
        lines.append(f"  {label:<48} {r['rows']:>6} rows  {r['ood_rate'] * 100:6.3f}%")
        lines.append("    by --ood-max: " + ", ".join(
            f"{k}: {v * 100:.3f}%" for k, v in r["by_ood_max"].items()))
        lines.append("    by period:    " + ", ".join(
            f"{k}: {v['ood_rate'] * 100:.3f}%" for k, v in r["periods"].items() if v["ood_rate"] is not None))
    lines.append("  per feature, share of rows outside its training 0.1%..99.9% range (control / shift):")
    for name in report["none"]["per_feature"]:
        c, s = report["none"]["per_feature"][name], report["lag"]["per_feature"][name]
        lines.append(f"    {name:<24} {c * 100:6.3f}%  {s * 100:6.3f}%")
    print("\n".join(lines))
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
