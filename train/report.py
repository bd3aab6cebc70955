"""The training report: a printed table, the model card (JSON) and a reliability diagram (PNG).

The card is the human-facing record of a run: what data, which split, which parameters, the
export checks, the test-day metrics beside the baselines, and (for ``--final``) the evaluation
run that justified it. The same metrics travel inside the model file's metadata.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

SCORE_COLS = ("n", "log_loss", "brier", "auc", "ece")


def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def _rows(block: dict[str, Any], names: list[str], label_prefix: str = "") -> list[list[str]]:
    out = []
    for name in names:
        s = block.get(name)
        if not s:
            continue
        out.append([f"{label_prefix}{name}", *(_f(s.get(c)) for c in SCORE_COLS)])
    return out


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))  # noqa: E731
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def format_report(metrics: dict[str, Any], window_s: int = 900) -> str:
    """The printed report: overall, oracle, per asset, per decision minute, manual filters."""
    if not metrics or "overall" not in metrics:
        return "no test days (--final): see the evaluation run's card for metrics"
    head = ["", *SCORE_COLS]
    preds = ["model", "book_mid", "base_rate"]
    lines = [f"TEST DAYS: {metrics['rows']:,} rows; ECE over {metrics['ece_bins']} equal-width bins; "
             f"no quote at all on {metrics['book_missing_rows']} rows (book scored 0.5 there)", ""]
    rows = _rows(metrics["overall"], [*preds, "model_uncalibrated"])
    if "oracle" in metrics:
        o = metrics["oracle"]
        rows += _rows(o, ["oracle", "model_same_rows", "book_mid_same_rows"],
                      label_prefix="")
        lines.append(f"oracle coverage of the test rows: {o['coverage']:.1%}")
    lines += [_table(head, rows), ""]
    for title, key, fmt_key in (("per asset", "per_asset", str),
                                ("per decision minute (of 15)", "per_decision_point",
                                 lambda k: f"min {float(k) * 15:.1f}")):
        r: list[list[str]] = []
        for k, block in metrics.get(key, {}).items():
            r += _rows(block, preds, label_prefix=f"{fmt_key(k)} ")
        lines += [title, _table(head, r), ""]
    mf = metrics.get("manual_filters", {})
    if mf.get("available"):
        rule = mf["rule"]
        lines.append(
            f"manual filters as a rule (|spot move| in [{rule['min_move_pct']}, {rule['max_move_pct']}] %, "
            f"minute >= {rule['min_entry_minutes']}; first passing point per window): "
            f"{mf['entries']:,} entries in {mf['windows']:,} windows "
            f"(coverage {_f(mf['coverage'], 3)}); hit rate filters {_f(mf['filter_hit_rate'], 4)}, "
            f"model's side on the same rows {_f(mf['model_hit_rate_same_rows'], 4)}"
        )
    else:
        lines.append("manual filters: no spot move in the data")
    return "\n".join(lines)


def format_policy(policy: dict[str, Any] | None) -> str:
    if not policy or not policy.get("available"):
        reason = (policy or {}).get("reason", "not computed")
        return f"policy table (serve replay): not available ({reason})"
    table = policy.get("table")
    return "policy table (serve replay):\n" + (table if isinstance(table, str) else json.dumps(table, indent=1))


def reliability_png(path: Path, y: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10,
                    title: str = "") -> Path:
    """Reliability diagram: observed Up rate per predicted-probability bin, with row counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slotml.train.metrics import reliability

    fig, (ax, axh) = plt.subplots(2, 1, figsize=(6.5, 7.5), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for name, p in curves.items():
        r = reliability(y, p, bins)
        xs = [m for m, c in zip(r["mean_pred"], r["count"], strict=True) if c]
        ys = [o for o, c in zip(r["observed"], r["count"], strict=True) if c]
        ax.plot(xs, ys, marker="o", label=name)
        axh.hist(np.asarray(p, float), bins=bins, range=(0, 1), histtype="step", label=name)
    ax.set_ylabel("observed Up rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(title or "reliability (test days)")
    axh.set_xlabel("predicted P(Up)")
    axh.set_ylabel("rows")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_card(path: Path, card: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(card, indent=1, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def format_entry_policy(choice: dict[str, Any]) -> str:
    """The entry policy train chose (or why none): thresholds, the slice and the grid's top."""
    c = choice.get("chosen")
    if not c:
        return f"entry policy: design rule ({choice.get('reason', 'no policy chosen')})"
    sl = c.get("slice", {})
    lines = [f"entry policy: edge, min_edge {c['min_edge']:+.3f}, Kelly fraction {c['kelly_fraction']:g} "
             f"(chosen on the policy slice, {sl.get('windows', '?')} windows, through {c['fill']} fills; "
             f"objective: {c['objective']})",
             "  min_edge  kelly  fills     PnL $  PnL/staked  markout 60s c"]
    for g in sorted(c.get("grid", []), key=lambda g: -g["pnl"])[:5]:
        pps = "-" if g["pnl_per_staked"] is None else f"{g['pnl_per_staked'] * 100:+.1f}%"
        mk = "-" if g.get("markout_60s") is None else f"{g['markout_60s'] * 100:+.2f}"
        lines.append(f"  {g['min_edge']:+8.3f}  {g['kelly_fraction']:5g}  {g['fills']:5d}  "
                     f"{g['pnl']:+8.2f}  {pps:>10}  {mk:>13}")
    return "\n".join(lines)
