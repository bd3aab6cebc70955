"""Issue 20's walk-forward acceptance, measured with the real ``slotml walkforward`` (minutes, not a
unit test; not in ``make bench``)::

    python -m bench.acceptance_walkforward [--seeds 42,7,5] [--shift none|lag|unlag|backload]
                                           [--sliding DAYS]
                                           [--split-layout standard|recent|latest]
                                           [--half-life-days D] [--es-days D]
                                           [--refit-booster] [--params JSON]
                                           [--fit-points LIST] [--reference] [--days 90]
                                           [--shift-day 60] [--work DIR] [--jobs N]

Per seed: the history of ``bench.acceptance_shift`` (4 assets, 15-minute windows, no trade
prints, the sim's oracle beside it; ``--shift lag`` changes the world from ``--shift-day``),
then ``slotml walkforward --initial-days 30 --every 7`` (expanding unless ``--sliding``; the
split layout of ``--split-layout``, passed through) over its lake as a subprocess, exactly as a
user runs it. Its periods' ``rows.npz`` (every out-of-sample
row: y, model, book, oracle) are pooled here:

- ``none``: the issue's "pooled out-of-sample Brier over days 31-90 within 3% of the oracle's on
  the same rows" (the periods cover day 30 on: day 30 is the first out-of-sample day);
- a shift (``lag``, ``unlag``, ``backload``): Brier per period for the walk-forward and for a model frozen at day ``shift-1``
  (``acceptance_shift.train_and_predict``, fitted and calibrated on the days before the shift),
  on the same rows from the shift on; and the walk-forward's pooled Brier over days shift+14 to
  the end against the oracle's, the frozen model's beside it.

Each aim's ratio is printed with its 90% CI over resampled days (``walkforward_report.brier_ratio``):
how far one history's reading moves with its days. With several seeds, the ratio across them
last: mean, standard deviation, the 95% t-interval of the mean, seeds within the aim.

``--reference`` (a shift): the same walk over the world shifted from day 0, scored on the same
days: the walk's Brier above the oracle there is what all of the shifted world's data buys, and
the shift world's excess minus it is the retrain loop's own cost of the shift.

Work dirs are kept (``--work``; a finished history and walk are reused: the walk resumes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.acceptance_shift import DAY, brier, history, line, set_backload_x, train_and_predict
from slotml.train.split import LAYOUTS
from slotml.train.walkforward_report import brier_ratio

AIM = 1.03  # the issue's "within 3% of the oracle"
COLUMNS = ("symbol", "slot_ts", "point", "y", "model", "oracle", "book")  # of a period's rows.npz


def walk(h: dict[str, Any], out: Path, a: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """Run (or resume) ``slotml walkforward`` over the history's lake; its periods' rows."""
    data = Path(h["data"])
    cmd = [sys.executable, "-m", "slotml.cli", "walkforward", "--lake", str(data / "lake"),
           "--oracle", str(data / "sim" / "oracle.parquet"), "--out", str(out),
           "--initial-days", "30", "--every", "7"]
    if a.sliding:
        cmd += ["--sliding", f"{a.sliding:g}"]
    if a.jobs:
        cmd += ["--jobs", str(a.jobs)]
    if a.split_layout != "standard":
        cmd += ["--split-layout", a.split_layout]
    if a.half_life_days:
        cmd += ["--half-life-days", f"{a.half_life_days:g}"]
    if a.es_days:
        cmd += ["--es-days", f"{a.es_days:g}"]
    if a.refit_booster:
        cmd += ["--refit-booster"]
    if a.params:
        cmd += ["--params", a.params]
    if a.fit_points:
        cmd += ["--fit-points", a.fit_points]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    print(f"   walkforward in {wall:.0f} s", file=sys.stderr, flush=True)
    parts = []
    for d in sorted(out.glob("period_*")):
        if not (d / "done.json").exists():
            raise SystemExit(f"{d}: no done.json after the walk")
        done = json.loads((d / "done.json").read_text())
        z = np.load(d / "rows.npz")
        parts.append({"name": d.name, "period": done["period"],
                      **{k: z[k] for k in COLUMNS}})
    return parts, wall


def pooled(parts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in COLUMNS}


def with_ci(rows: dict[str, np.ndarray], keep: np.ndarray, b: dict[str, Any]) -> str:
    """Adds the walk's Brier / oracle CI over resampled days (the rows ``brier`` kept) to ``b``;
    returns it as text. One history's ratio moves by about this much with its days."""
    keep = keep & np.isfinite(rows["oracle"])
    r = brier_ratio(rows["y"][keep].astype(float), rows["model"][keep],
                    np.clip(rows["oracle"][keep], 0.0, 1.0), rows["slot_ts"][keep])
    b["ratio_ci"], b["excess_ci"] = r["ratio_ci"], r["excess_ci"]
    if not r["ratio_ci"]:
        return ""
    return (f" ({r['level']:.0%} CI over {r['days']} resampled days "
            f"{r['ratio_ci'][0]:.4f}-{r['ratio_ci'][1]:.4f}x)")


def frozen_on(rows: dict[str, np.ndarray], fz: dict[str, Any]) -> np.ndarray:
    """The frozen model's P(Up) on ``rows`` (NaN where it has no such row)."""
    key = {(str(s), int(t), round(float(p), 6)): float(m)
           for s, t, p, m in zip(fz["symbol"], fz["slot_ts"], fz["point"], fz["model"], strict=True)}
    return np.array([key.get((str(s), int(t), round(float(p), 6)), np.nan)
                     for s, t, p in zip(rows["symbol"], rows["slot_ts"], rows["point"], strict=True)])


def one_seed(seed: int, a: argparse.Namespace) -> dict[str, Any]:
    D, S = a.days, a.shift_day
    late = S + 14
    h = history(a.work, a.shift, D, S, seed)
    t0 = h["t_start"]
    tag = (f"wf-{a.shift}-seed{seed}-{D}d" + (f"-sliding{a.sliding:g}" if a.sliding else "")
           + (f"-{a.split_layout}" if a.split_layout != "standard" else "")
           + (f"-hl{a.half_life_days:g}" if a.half_life_days else "")
           + (f"-es{a.es_days:g}" if a.es_days else "") + ("-refit" if a.refit_booster else "")
           + (f"-p{hashlib.sha256(a.params.encode()).hexdigest()[:8]}" if a.params else "")
           + (f"-fp{hashlib.sha256(a.fit_points.encode()).hexdigest()[:8]}" if a.fit_points else ""))
    parts, wall = walk(h, a.work / tag, a)
    rep: dict[str, Any] = {"seed": seed, "shift": a.shift, "sliding": a.sliding,
                           "split_layout": a.split_layout,
                           "half_life_days": a.half_life_days, "es_days": a.es_days,
                           "refit_booster": a.refit_booster, "params": a.params,
                           "fit_points": a.fit_points,
                           "walk_seconds": round(wall, 1),
                           "periods": {}}
    lines = [f"== seed {seed}, shift {a.shift}, {'sliding ' + format(a.sliding, 'g') + ' d' if a.sliding else 'expanding'}, "
             f"split layout {a.split_layout} (walk {wall:.0f} s)",
             f"{'':<34} {'rows':>7} {'model':>6} {'oracle':>6} {'book':>6} {'model/oracle':>8}"]
    for p in parts:
        d0 = (int(p["slot_ts"].min()) - t0) // DAY if len(p["slot_ts"]) else -1
        d1 = (int(p["slot_ts"].max()) - t0) // DAY if len(p["slot_ts"]) else -1
        b = brier(p, np.ones(len(p["y"]), bool))
        rep["periods"][p["name"]] = {"days": [int(d0), int(d1)], **b}
        lines.append(line(f"{p['name']} days {d0}-{d1}", b))
    allr = pooled(parts)
    day = (allr["slot_ts"] - t0) // DAY
    first = int(day.min())
    b = brier(allr, day >= first)
    rep[f"pooled {first}-{D - 1}"] = b
    lines.append(line(f"pooled days {first}-{D - 1}", b))
    if a.shift == "none":
        rep["aim_ratio"] = b["ratio"]
        rep["met"] = bool(b["ratio"] <= AIM)
        ci = with_ci(allr, day >= first, b)
        lines.append(f"aim: within {AIM - 1:.0%} of the oracle over days {first}-{D - 1}: "
                     f"{b['ratio']:.3f}x -> {'met' if rep['met'] else 'NOT met'}{ci}")
        return {"report": rep, "lines": lines}
    # the shift: the frozen model beside the walk-forward, on the same rows from the shift on
    fz = train_and_predict(h, test_days=D - S)
    allr["frozen"] = frozen_on(allr, fz)
    lines.append(f"-- from the shift (day {S}): walk-forward vs a model frozen at day {S - 1}, same rows")
    lines.append(f"{'':<34} {'rows':>7} {'wf':>6} {'frozen':>6} {'oracle':>6} {'wf/or':>6} {'fz/or':>6}")
    rep["after_shift"] = {}
    spans = [(p["name"], (allr["slot_ts"] >= p["slot_ts"].min()) & (allr["slot_ts"] <= p["slot_ts"].max()))
             for p in parts if len(p["slot_ts"])]
    spans += [(f"pooled days {S}-{D - 1}", day >= S), (f"pooled days {late}-{D - 1}", day >= late)]
    for name, m in spans:
        m = m & (day >= S) & np.isfinite(allr["frozen"])
        if not m.any():
            continue
        w, f = brier(allr, m), brier(allr, m, "frozen")
        rep["after_shift"][name] = {"walkforward": w, "frozen": f}
        lines.append(f"{name:<34} {w['rows']:>7} {w['model']:.4f} {f['frozen']:.4f} {w['oracle']:.4f} "
                     f"{w['ratio']:>5.3f}x {f['ratio']:>5.3f}x")
    w = rep["after_shift"][f"pooled days {late}-{D - 1}"]["walkforward"]
    rep["aim_ratio"] = w["ratio"]
    rep["met"] = bool(w["ratio"] <= AIM)
    ci = with_ci(allr, (day >= late) & np.isfinite(allr["frozen"]), w)
    lines.append(f"aim: walk-forward within {AIM - 1:.0%} of the oracle over days {late}-{D - 1}: "
                 f"{w['ratio']:.3f}x -> {'met' if rep['met'] else 'NOT met'}{ci}")
    rep["excess"] = w["model"] - w["oracle"]  # the same, in Brier above the oracle
    lines.append(f"   in Brier above the oracle: {rep['excess']:.5f}")
    if a.reference:
        lines += reference(seed, a, tag, w, rep)
    return {"report": rep, "lines": lines}


def reference(seed: int, a: argparse.Namespace, tag: str, w: dict[str, float],
              rep: dict[str, Any]) -> list[str]:
    """``--reference``: the same walk over the world shifted from day 0 (the same spot paths),
    scored over the same days: what the walk reaches with all of the shifted world's data. The
    shift world's walk minus it is the retrain loop's own cost of the shift, in Brier."""
    D, late = a.days, a.shift_day + 14
    h0 = history(a.work, a.shift, D, 0, seed)
    parts, _ = walk(h0, a.work / (tag + "-always"), a)
    allr = pooled(parts)
    b = brier(allr, (allr["slot_ts"] - h0["t_start"]) // DAY >= late)
    cost = rep["excess"] - (b["model"] - b["oracle"])
    rep["reference_always"] = {**b, "excess": b["model"] - b["oracle"], "loop_cost": cost}
    return [f"reference, the world shifted from day 0, days {late}-{D - 1}: {b['ratio']:.4f}x, "
            f"{b['model'] - b['oracle']:.5f} above the oracle; the loop's own cost: {cost:+.5f} "
            f"(walk {w['ratio']:.4f}x)"]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.acceptance_walkforward")
    ap.add_argument("--seeds", default="42,7,5")
    ap.add_argument("--shift", choices=["none", "lag", "unlag", "backload"], default="none")
    ap.add_argument("--sliding", type=float, default=None, help="walkforward --sliding DAYS")
    ap.add_argument("--half-life-days", type=float, default=None,
                    help="walkforward --half-life-days (work dirs kept apart)")
    ap.add_argument("--es-days", type=float, default=None,
                    help="walkforward --es-days (work dirs kept apart)")
    ap.add_argument("--refit-booster", action="store_true",
                    help="walkforward --refit-booster (work dirs kept apart)")
    ap.add_argument("--params", default=None,
                    help="walkforward --params JSON (work dirs kept apart; the frozen model keeps "
                         "the defaults)")
    ap.add_argument("--fit-points", default=None,
                    help="walkforward --fit-points LIST (work dirs kept apart; the frozen model "
                         "keeps the defaults)")
    ap.add_argument("--reference", action="store_true",
                    help="also walk the world shifted from day 0 and report the loop's own cost")
    ap.add_argument("--split-layout", choices=LAYOUTS, default="standard",
                    help="walkforward --split-layout (work dirs of another layout are kept apart)")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--shift-day", type=int, default=60)
    ap.add_argument("--work", type=Path, default=Path("/tmp/slotml-shift"))
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--out", type=Path, help="JSON report")
    ap.add_argument("--backload-x", type=float, default=None,
                    help="experiment: another BACKLOAD_X than sim/shift.py's (patched in-process)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not set_backload_x(a.backload_x):
        return 2
    if a.shift != "none" and not 0 < a.shift_day < a.shift_day + 14 < a.days:
        print(f"--shift-day {a.shift_day}: needs 14 days after it within --days {a.days}", file=sys.stderr)
        return 2
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        print(f"--seeds: not a comma-separated list of integers: {a.seeds!r}", file=sys.stderr)
        return 2
    out = []
    for s in seeds:
        r = one_seed(s, a)
        print("\n".join(r["lines"]), flush=True)
        out.append(r["report"])
    if len(out) > 1:
        print(across_seeds(out), flush=True)
    if a.out:
        a.out.write_text(json.dumps(out, indent=1, default=float))
    return 0


def across_seeds(reports: list[dict[str, Any]], level: float = 0.95) -> str:
    """The aim's ratio over seeds: mean, standard deviation, the t-interval of the mean and how
    many seeds read within the aim (the seeds are independent worlds; their days are not)."""
    from scipy import stats

    x = np.array([r["aim_ratio"] for r in reports])
    n, m, sd = len(x), float(x.mean()), float(x.std(ddof=1))
    lo, hi = stats.t.interval(level, n - 1, loc=m, scale=sd / np.sqrt(n))
    return (f"across {n} seeds: mean {m:.4f}x, sd {sd:.4f}, {level:.0%} t-interval of the mean "
            f"{lo:.4f}-{hi:.4f}x; {int((x <= AIM).sum())} of {n} seeds within {AIM - 1:.0%}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
