"""Issue 20's regime shift, measured (minutes, not a unit test; not in ``make bench``):
``python -m bench.acceptance_shift [--days 90] [--shift-day 60] [--seed 42] [--shift backload|lag|unlag]
[--work DIR]``.

Two histories of the same seed (4 assets, 15m, no trade prints: the model does not read them),
the shifted world (``--shift lag``, ``unlag`` or ``backload`` from ``--shift-day``, sim/shift.py) and
its control, the world where nothing changes at the shift day (for ``lag`` and ``backload`` the
unshifted world; for
``unlag``, whose days before the shift are lagged, a world lagged throughout: ``lag`` from day
0), each
backfilled into SQLite, exported to a lake, then trained with train/'s own pipeline (defaults:
isotonic, mirror on) on spans of it:

- frozen: fitted and calibrated on the days before the shift (``--test-days`` = the days after
  it), scored on every later day: per 7-day period and pooled, beside the oracle and the book;
- before: a model frozen 21 days before the shift, scored on those 21 pre-shift days (the lag
  world): what "normal" looks like;
- retrained (a walk-forward's stand-in, not ``slotml walkforward``): fitted on everything before
  day shift+14 (``all``) or only on the post-shift days before it (``post``), scored on the
  days from shift+14 on: the issue's "within 3% of the oracle over days 74-90"; and ``weekly``:
  each 7-day period from shift+14 on scored by a model fitted on the post-shift days before it.

Brier per row set against the sim's oracle (``<data-dir>/sim/oracle.parquet``) on the same rows.
The policy steps of ``slotml train`` (backtest, replay) are skipped: only Brier is wanted.
Work dirs are kept (``--work``) and a history already exported there is reused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

END = 1793491200  # 2026-11-01T00:00:00Z: a day boundary, so day k of the history is a UTC day
DAY = 86400


def history(work: Path, shift: str, days: int, shift_day: int, seed: int) -> dict[str, Any]:
    """Backfill (no prints) + export, once per work dir; returns where it is and its span."""
    from slotml.lake.export import ExportConfig, run_export
    from slotml.settings import DbUrl
    from slotml.sim import shift as sh
    from slotml.sim.backfill import generate_parts, oracle_frame, span, write_oracle, write_store
    from slotml.sim.config import SimConfig
    from slotml.sim.shift import shift_second

    lag = (f"{sh.SHIFT_LAG_S}s-" if shift in ("lag", "unlag")
           else f"{sh.BACKLOAD_X:g}x{sh.BACKLOAD_S}s-" if shift == "backload" else "")
    data = work / f"{shift}-{lag}seed{seed}-{days}d-at{shift_day}"
    t_start, t_end = span(900, days, END)
    at = shift_second(t_start, shift_day, 900)
    info = {"data": str(data), "t_start": t_start, "t_end": t_end, "shift_at": at, "shift": shift}
    done = data / "done.json"
    key = {k: v for k, v in info.items() if k != "data"}  # the dir may move
    if done.exists() and json.loads(done.read_text()) == key:
        return info
    data.mkdir(parents=True, exist_ok=True)
    for f in ("store.db", "store.db-wal", "store.db-shm"):
        (data / f).unlink(missing_ok=True)
    db = DbUrl.parse(f"sqlite:///{data}/store.db")
    cfg = SimConfig(seed=seed, unresolved_fraction=0.003, shift=shift,
                    shift_at=at if shift != "none" else None)
    t = time.perf_counter()
    frames = []
    for part in generate_parts(cfg, days, END, 0.002, trades=False):
        asyncio.run(write_store(part, db))
        frames.append(oracle_frame(part))
    write_oracle(frames, data)
    run_export(ExportConfig(db=db, lake_dir=data / "lake", fsync=False))
    print(f"   {shift}: history + export in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    done.write_text(json.dumps(key))
    return info


def train_and_predict(h: dict[str, Any], *, test_days: float, slot_from: int | None = None,
                      slot_to: int | None = None) -> dict[str, Any]:
    """Train with train/'s pipeline on the span; the model's P(Up), the oracle's and the book's
    on every row from the test slice's start to the span's end."""
    import duckdb
    import onnx

    from slotml.lake.query import refresh
    from slotml.train import metrics as M
    from slotml.train import pipeline as P
    from slotml.train.onnx_export import OUTPUT_NAME, run_batched, session
    from slotml.train.split import SplitConfig

    def skipped(*_a, **_k):
        return {"available": False, "chosen": None, "reason": "skipped by bench.acceptance_shift"}

    P.policy_table = P.choose_policy = skipped  # Brier only: no backtest / replay
    data = Path(h["data"])
    models = data / "models"
    cfg = P.TrainConfig(data_dir=data, lake_dir=data / "lake", models_dir=models,
                        split=SplitConfig(test_days=test_days), slot_from=slot_from, slot_to=slot_to)
    con = duckdb.connect(":memory:")
    refresh(con, cfg.lake_dir)
    stages = P.Stages()
    ds, split = P.load_dataset(con, cfg, stages)
    res = P.train_on_dataset(ds, split, cfg, stages)
    test = split.test
    rows = np.flatnonzero(test.mask)
    sess = session(onnx.load(str(res.model_path)))
    p = run_batched(sess, ds.X[rows], [OUTPUT_NAME])[0].astype(np.float64)
    oracle = P.load_oracle(cfg.oracle_path, ds, rows)
    book = M.book_probability(None if ds.up_mid is None else ds.up_mid[rows], len(rows))[0]
    train_to = max(s["to"] for k, s in split.describe().items()
                   if k != "test" and isinstance(s, dict) and s.get("to") is not None)
    return {"symbol": ds.symbol[rows], "slot_ts": ds.slot_ts[rows], "point": ds.point[rows], "y": ds.y[rows].astype(float),
            "model": p, "oracle": oracle, "book": book, "test_from": test.first_slot,
            "trained_to": int(train_to), "card_overall": res.metrics.get("overall"),
            "card_oracle": res.metrics.get("oracle")}


def brier(pred: dict[str, Any], keep: np.ndarray, model: str = "model") -> dict[str, float]:
    """Brier of ``pred[model]``, the oracle and the book on the kept rows with an oracle."""
    keep = keep & np.isfinite(pred["oracle"])
    if not keep.any():
        return {model: float("nan"), "oracle": float("nan"), "book": float("nan"), "rows": 0,
                "ratio": float("nan")}
    y = pred["y"][keep].astype(float)
    out = {k: float(np.mean((pred[k][keep] - y) ** 2)) for k in (model, "oracle", "book")}
    out["rows"] = int(keep.sum())
    out["ratio"] = out[model] / out["oracle"]
    return out


def periods(pred: dict[str, Any], t_start: int, lo: int, hi: int, step: int = 7) -> list[tuple[str, dict]]:
    day = (pred["slot_ts"] - t_start) // DAY
    out = []
    for a in range(lo, hi, step):
        b = min(a + step, hi)
        out.append((f"days {a}-{b - 1}", brier(pred, (day >= a) & (day < b))))
    out.append((f"pooled {lo}-{hi - 1}", brier(pred, (day >= lo) & (day < hi))))
    return out


def by_point(pred: dict[str, Any], keep: np.ndarray, into: dict[str, Any]) -> list[str]:
    """Per decision point over ``keep`` (lines; the figures go into ``into``)."""
    out = []
    for pt in sorted(set(pred["point"].tolist())):
        b = brier(pred, keep & np.isclose(pred["point"], pt))
        into[f"point {pt * 15:.0f}/15"] = b
        out.append(line(f"  decision point {pt * 15:.0f}/15", b))
    return out


def worse_ci(shifted: dict[str, Any], control: dict[str, Any], t0: int, lo: int, hi: int,
             level: float = 0.90, n_boot: int = 2000) -> dict[str, Any]:
    """The frozen model's model/oracle Brier in the shifted world over the control's, minus 1,
    over days lo..hi-1, with a CI that resamples whole days, the same days in both worlds
    (paired: the two histories share their calendar and spot paths)."""
    from slotml.backtest.verdict import interval, resample

    def per_day(p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        day = (p["slot_ts"] - t0) // DAY
        k = (day >= lo) & (day < hi) & np.isfinite(p["oracle"])
        d = (day[k] - lo).astype(np.int64)
        y = p["y"][k].astype(float)
        return (np.bincount(d, (p["model"][k] - y) ** 2, minlength=hi - lo),
                np.bincount(d, (p["oracle"][k] - y) ** 2, minlength=hi - lo))

    (ms, os_), (mc, oc) = per_day(shifted), per_day(control)
    idx = resample(hi - lo, n_boot, 0)
    boot = (ms[idx].sum(1) / os_[idx].sum(1)) / (mc[idx].sum(1) / oc[idx].sum(1)) - 1
    ci = interval(boot, level)
    return {"worse": float((ms.sum() / os_.sum()) / (mc.sum() / oc.sum()) - 1),
            "ci": list(ci) if ci else None, "level": level, "days": hi - lo}


def set_backload_x(x: float | None) -> bool:
    """``--backload-x``: patch sim/shift.py's BACKLOAD_X in-process (an experiment); False (and
    one line on stderr) when the early rate it leaves would not be positive."""
    if x is None:
        return True
    import slotml.sim.shift as sh

    if not 1 <= x < sh.BLOCK_S / sh.BACKLOAD_S:
        print(f"--backload-x must be in [1, {sh.BLOCK_S / sh.BACKLOAD_S:g})", file=sys.stderr)
        return False
    sh.BACKLOAD_X = x
    return True


def line(name: str, b: dict[str, float]) -> str:
    return (f"{name:<34} {b['rows']:>7} {b['model']:.4f} {b['oracle']:.4f} {b['book']:.4f} "
            f"{b['ratio']:>7.3f}x")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.acceptance_shift")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--shift-day", type=int, default=60)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--shift", choices=["lag", "unlag", "backload"], default="backload")
    ap.add_argument("--work", type=Path, default=Path("/tmp/slotml-shift"))
    ap.add_argument("--out", type=Path, help="JSON report")
    ap.add_argument("--skip", action="append", default=[], choices=["frozen", "before", "retrained", "weekly"])
    ap.add_argument("--lag-s", type=int, default=None,
                    help="experiment: another SHIFT_LAG_S than sim/shift.py's (patched in-process)")
    ap.add_argument("--backload-x", type=float, default=None,
                    help="experiment: another BACKLOAD_X than sim/shift.py's (patched in-process)")
    a = ap.parse_args()
    if a.lag_s is not None:
        import slotml.sim.shift as sh

        sh.SHIFT_LAG_S = a.lag_s
    if not set_backload_x(a.backload_x):
        return 2
    logging.basicConfig(level=logging.WARNING)
    D, S = a.days, a.shift_day
    late = S + 14  # the "days 74-90" for a shift at 60 in 90 days
    report: dict[str, Any] = {"days": D, "shift_day": S, "seed": a.seed}
    lines = [f"{'rows':>42} {'model':>6} {'oracle':>6} {'book':>6} {'model/oracle':>8}"]
    control = ("lag", 0) if a.shift == "unlag" else ("none", S)  # nothing changes at day S
    frozen: dict[str, dict[str, Any]] = {}
    for shift, day0 in (control, (a.shift, S)):
        h = history(a.work, shift, D, day0, a.seed)
        assert h["shift_at"] == h["t_start"] + day0 * DAY
        t0 = h["t_start"]
        if shift != a.shift:
            shift = "control"  # the report's key, for either kind
        if "frozen" in a.skip and shift == "control":
            continue
        fz = frozen[shift] = train_and_predict(h, test_days=D - S)
        # the test slice starts a window or so before the shift (its end is the last window's
        # start): the frozen model saw nothing from the shift on, and is scored from it on
        assert fz["trained_to"] < t0 + S * DAY and fz["test_from"] <= t0 + S * DAY, fz["trained_to"]
        lines.append(f"-- {shift}: model frozen at day {S - 1} (fitted + calibrated on days 0-{S - 1})")
        rep = periods(fz, t0, S, D)
        lines += [line(n, b) for n, b in rep]
        report[f"{shift}/frozen"] = dict(rep)
        if late < D:
            b = brier(fz, (fz["slot_ts"] - t0) // DAY >= late)
            lines.append(line(f"pooled {late}-{D - 1}", b))
            report[f"{shift}/frozen"][f"pooled {late}-{D - 1}"] = b
        lines += by_point(fz, (fz["slot_ts"] - t0) // DAY >= S, report[f"{shift}/frozen"])
        if shift == "control":
            continue
        if "control" in frozen:  # the "at least 3% worse", with its spread over days
            w = report["frozen_worse"] = worse_ci(fz, frozen["control"], t0, S, D)
            ci = (f" ({w['level']:.0%} CI over {w['days']} resampled days {w['ci'][0]:+.2%} to "
                  f"{w['ci'][1]:+.2%})" if w["ci"] else "")
            lines.append(f"-- frozen at day {S - 1}, days {S}-{D - 1}: {w['worse']:+.2%} worse than "
                         f"in the control{ci}")
        if "before" not in a.skip:
            bf = train_and_predict(h, test_days=21, slot_to=h["shift_at"])
            lines.append(f"-- {a.shift}: model frozen at day {S - 22}, scored on the pre-shift days")
            rep = periods(bf, t0, S - 21, S)
            lines += [line(n, b) for n, b in rep]
            report[f"{a.shift}/before"] = dict(rep)
        if "retrained" not in a.skip:
            for name, frm in (("all", None), ("post", h["shift_at"])):
                rt = train_and_predict(h, test_days=D - late, slot_from=frm)
                span = f"0-{late - 1}" if frm is None else f"{S}-{late - 1}"
                lines.append(f"-- {a.shift}: retrained on days {span} ({name}), scored on days {late}-{D - 1}")
                rep = periods(rt, t0, late, D)
                lines += [line(n, b) for n, b in rep]
                report[f"{a.shift}/retrained_{name}"] = dict(rep)
                lines += by_point(rt, (rt["slot_ts"] - t0) // DAY >= late, report[f"{a.shift}/retrained_{name}"])
        if "weekly" not in a.skip:
            # a weekly walk-forward's stand-in: each 7-day period scored by a model fitted on the
            # post-shift days before it (expanding), the predictions pooled over days late..end
            parts = []
            for lo in range(late, D, 7):
                hi = min(lo + 7, D)
                parts.append(train_and_predict(h, test_days=hi - lo, slot_from=h["shift_at"],
                                               slot_to=t0 + hi * DAY))
            # each part's test slice starts a window before its period: keep its own days only
            keeps = [((pp["slot_ts"] - t0) // DAY >= lo) for pp, lo in zip(parts, range(late, D, 7), strict=True)]
            wk = {k: np.concatenate([pp[k][kp] for pp, kp in zip(parts, keeps, strict=True)]) for k in
                  ("slot_ts", "point", "y", "model", "oracle", "book")}
            lines.append(f"-- {a.shift}: retrained weekly on the post-shift days so far (from day {S}), "
                         f"scored on the next 7 days from day {late}")
            rep = periods(wk, t0, late, D)
            lines += [line(n, b) for n, b in rep]
            report[f"{a.shift}/retrained_weekly_post"] = dict(rep)
            lines += by_point(wk, (wk["slot_ts"] - t0) // DAY >= late, report[f"{a.shift}/retrained_weekly_post"])
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
