"""The walk-forward's report: scores per period and pooled over ALL out-of-sample rows (not an
average of periods), the policy table per period and summed, the text summary and the plot.

Scores (``metrics.score``: log loss, Brier, ECE, AUC) of the model beside the book's mid on the
same rows, and beside the sim's oracle on the rows it covers (``model_same_rows`` there). Policy
cells (policy x fill model) come from each period's replay over its test days (the backtest's
policy table, as ``slotml train`` computes it): entries, fills, PnL, staked, and summed over
periods PnL / staked, what the scheduled retrain would have earned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slotml.train import metrics as M

SCORES = ("n", "log_loss", "brier", "ece", "auc")
PLOT_FILL = "maker-queue"  # the verdict's fill model, as in backtest/verdict.py
RATIO_DRAWS = 2000  # day bootstrap draws for the Brier ratios' CIs (as train --challenge)
RATIO_LEVEL = 0.90
DAY_S = 86_400


def _short(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s.get(k) for k in SCORES}


def brier_ratio(y: np.ndarray, p: np.ndarray, ref: np.ndarray, slot_ts: np.ndarray, *,
                n_boot: int = RATIO_DRAWS, level: float = RATIO_LEVEL, seed: int = 0) -> dict[str, Any]:
    """Brier of ``p`` over Brier of ``ref`` on the same rows, and ``p``'s Brier above ``ref``'s,
    each with a CI that resamples whole UTC days (``backtest.verdict.resample``): a day's rows
    share its prices, so they are not independent draws. A single history's ratio moves by
    about this much from one set of days to another."""
    from slotml.backtest.verdict import interval, resample

    days, inv = np.unique(np.asarray(slot_ts, dtype=np.int64) // DAY_S, return_inverse=True)
    k = len(days)
    se_p = np.bincount(inv, (p - y) ** 2, minlength=k)
    se_r = np.bincount(inv, (ref - y) ** 2, minlength=k)
    n = np.bincount(inv, minlength=k).astype(np.float64)
    out: dict[str, Any] = {
        "rows": int(len(y)), "days": int(k),
        "ratio": float(se_p.sum() / se_r.sum()) if se_r.sum() > 0 else None,
        "excess": float((se_p.sum() - se_r.sum()) / n.sum()) if k else None,
        "level": level, "draws": n_boot, "ratio_ci": None, "excess_ci": None}
    if k < 2 or out["ratio"] is None:
        return out
    idx = resample(k, n_boot, seed)
    sp, sr = se_p[idx].sum(axis=1), se_r[idx].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_ci = interval(sp / sr, level)
    excess_ci = interval((sp - sr) / n[idx].sum(axis=1), level)
    out["ratio_ci"] = list(ratio_ci) if ratio_ci else None
    out["excess_ci"] = list(excess_ci) if excess_ci else None
    return out


def score_rows(rows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Model and book on all rows; oracle, model and book on the rows the oracle covers; the
    model's Brier over the book's and the oracle's with day-resampled CIs."""
    y = rows["y"]
    out = {"rows": int(len(y)), "model": _short(M.score(y, rows["model"])),
           "book_mid": _short(M.score(y, rows["book"]))}
    slot_ts = rows.get("slot_ts")
    book = np.isfinite(rows["book"])
    if slot_ts is not None and book.any():
        out["model_over_book"] = brier_ratio(y[book], rows["model"][book], rows["book"][book],
                                             slot_ts[book])
    o = rows.get("oracle")
    have = np.isfinite(o) if o is not None else np.zeros(len(y), bool)
    if have.any():
        oc = np.clip(o[have], 0.0, 1.0)
        out["oracle"] = {"coverage": float(have.mean()),
                         "oracle": _short(M.score(y[have], oc)),
                         "model_same_rows": _short(M.score(y[have], rows["model"][have])),
                         "book_mid_same_rows": _short(M.score(y[have], rows["book"][have]))}
        if slot_ts is not None:
            out["oracle"]["model_over_oracle"] = brier_ratio(y[have], rows["model"][have], oc,
                                                             slot_ts[have])
    return out


def sum_cells(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Policy x fill cells summed over periods (PnL / staked from the sums)."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for d in periods:
        for c in (d.get("policy_table") or {}).get("cells") or []:
            a = acc.setdefault((c["policy"], c["fill"]), {
                "policy": c["policy"], "fill": c["fill"], "periods": 0, "windows": 0,
                "entries": 0, "fills": 0, "pnl": 0.0, "staked": 0.0, "rebates": 0.0})
            a["periods"] += 1
            for k in ("windows", "entries", "fills", "pnl", "staked", "rebates"):
                a[k] += c[k]
    for a in acc.values():
        a["pnl_per_staked"] = a["pnl"] / a["staked"] if a["staked"] > 0 else None
    return list(acc.values())


def build_report(out_dir: Path, plan: dict[str, Any], done: dict[int, dict[str, Any]],
                 rows_of: dict[int, dict[str, np.ndarray]]) -> dict[str, Any]:
    """report.json's content over the finished periods (``done``: their done.json, ``rows_of``:
    their test rows); writes the plot beside it."""
    per: list[dict[str, Any]] = []
    pooled: dict[str, list[np.ndarray]] = {}
    for i in sorted(done):
        d = done[i]
        rows = rows_of[i]
        for k, v in rows.items():
            pooled.setdefault(k, []).append(v)
        per.append({"period": d["period"], "model": d["model"], "trained_to": d["trained_to"],
                    "entry_policy": d.get("entry_policy"), "seconds": d.get("seconds"),
                    "cpu_seconds": d.get("cpu_seconds"),
                    "scores": score_rows(rows),
                    "policy_cells": (d.get("policy_table") or {}).get("cells"),
                    "policy_unavailable": (d.get("policy_table") or {}).get("unavailable")
                    or (d.get("policy_table") or {}).get("reason")})
    all_rows = {k: np.concatenate(v) for k, v in pooled.items()}
    report = {
        "plan_id": plan["plan_id"], "lake_manifest_id": plan["lake_manifest_id"],
        "options": plan["options"], "split_layout": plan.get("split_layout", "standard"),
        "periods_planned": len(plan["periods"]),
        "periods_finished": len(per),
        "pooled": score_rows(all_rows) if all_rows else None,
        "policy_pooled": sum_cells([done[i] for i in sorted(done)]),
        "periods": per,
    }
    if per:
        report["plot"] = plot(out_dir / "report.png", per).name
    return report


def plot(path: Path, per: list[dict[str, Any]]) -> Path:
    """Brier per period (model, book mid, oracle) and cumulative PnL per policy by period."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(per))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    series = {"model": [s["scores"]["model"]["brier"] for s in per],
              "book mid": [s["scores"]["book_mid"]["brier"] for s in per]}
    if all("oracle" in s["scores"] for s in per):
        series["oracle"] = [s["scores"]["oracle"]["oracle"]["brier"] for s in per]
    for name, ys in series.items():
        a1.plot(x, ys, marker="o", markersize=3, label=name)
    a1.set_ylabel("Brier (out of sample)")
    a1.set_title("walk-forward: each period scored by the model trained before it")
    a1.legend()
    fills = {c["fill"] for s in per for c in (s["policy_cells"] or [])}
    fill = PLOT_FILL if PLOT_FILL in fills else (sorted(fills)[0] if fills else None)
    if fill is not None:
        policies = sorted({c["policy"] for s in per for c in (s["policy_cells"] or [])
                           if c["fill"] == fill})
        for pol in policies:
            pnl = [sum(c["pnl"] for c in (s["policy_cells"] or [])
                       if c["fill"] == fill and c["policy"] == pol) for s in per]
            a2.plot(x, np.cumsum(pnl), marker="o", markersize=3, label=pol)
        a2.axhline(0, color="grey", linewidth=0.8)
        a2.legend()
    a2.set_ylabel(f"cumulative PnL $ ({fill or 'no policy table'})")
    a2.set_xlabel("period")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _f(v: float | None, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def render(report: dict[str, Any]) -> str:
    """The text summary the command prints."""
    lines = [f"walk-forward: {report['periods_finished']} of {report['periods_planned']} periods "
             f"finished (split layout {report.get('split_layout', 'standard')})"]
    p = report.get("pooled")
    if p:
        lines.append(f"pooled over {p['rows']:,} out-of-sample rows:")
        lines.append(f"  {'':22s} {'log loss':>9s} {'Brier':>8s} {'ECE':>8s}")
        named = [("model", p["model"]), ("book mid", p["book_mid"])]
        if "oracle" in p:
            o = p["oracle"]
            named += [(f"oracle ({o['coverage']:.0%} rows)", o["oracle"]),
                      ("model, same rows", o["model_same_rows"])]
        for name, s in named:
            lines.append(f"  {name:22s} {_f(s.get('log_loss')):>9s} {_f(s.get('brier')):>8s} "
                         f"{_f(s.get('ece')):>8s}")
        for name, r in (("book mid", p.get("model_over_book")),
                        ("oracle", p.get("oracle", {}).get("model_over_oracle"))):
            if r and r["ratio"] is not None:
                ci = r["ratio_ci"]
                lines.append(f"  model Brier / {name}: {r['ratio']:.4f}x" + (
                    f" ({r['level']:.0%} CI over {r['days']} resampled days {ci[0]:.4f}-{ci[1]:.4f}x)"
                    if ci else ""))
    lines.append("per period (Brier model / book / oracle):")
    for s in report["periods"]:
        sc = s["scores"]
        orc = sc.get("oracle", {}).get("oracle", {}).get("brier")
        lines.append(f"  {s['period']['index']:3d}  {sc['rows']:7,d} rows  {_f(sc['model']['brier'])} "
                     f"/ {_f(sc['book_mid']['brier'])} / {_f(orc)}")
    cells = report.get("policy_pooled") or []
    if cells:
        lines.append("policy table summed over periods:")
        lines.append(f"  {'policy':12s} {'fill':17s} {'entries':>8s} {'fills':>7s} {'PnL $':>10s} "
                     f"{'staked $':>10s} {'PnL/staked':>10s}")
        for c in cells:
            r = c["pnl_per_staked"]
            pct = "-" if r is None else f"{r * 100:+.2f}%"
            lines.append(f"  {c['policy']:12s} {c['fill']:17s} {c['entries']:8d} {c['fills']:7d} "
                         f"{c['pnl']:+10.2f} {c['staked']:10.2f} {pct:>10s}")
    return "\n".join(lines)
