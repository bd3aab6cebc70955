"""Honest scores on the test rows, beside the baselines on the SAME rows.

Scores: log loss (probabilities clipped to [1e-15, 1 - 1e-15]), Brier, AUC (None when the rows
hold one outcome) and expected calibration error: 10 equal-width bins of the predicted P(Up)
([0, 0.1), ..., [0.9, 1.0]), ECE = sum over bins of (rows in bin / rows) x |mean predicted -
observed Up rate|. Reported overall, per asset and per decision point.

Baselines on the same rows:
- ``base_rate``: the constant Up rate of the training slice (what was knowable at fit time);
- ``book_mid``: the book's own P(Up) (``book_probability``);
- ``oracle``: the sim's true P(Up) when given, on the rows it covers (``model_same_rows`` beside it);
- ``manual_filters``: the filters as a decision rule (``filter_rule``): per window, the first
  decision point where ``min_move_pct <= |spot move| <= max_move_pct`` and the minute is at least
  ``min_entry_minutes`` (defaults: serve/gate.py's, 0.05 %, 0.50 %, minute 5); the side the
  move favours; hit rate. The model picks the side with the
  higher P on the same rows, for comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from slotml.serve.options import (
    DEFAULT_MAX_MOVE_PCT,
    DEFAULT_MIN_ENTRY_MINUTES,
    DEFAULT_MIN_MOVE_PCT,
)
from slotml.serve.scores import (  # noqa: F401 - the scoring rules, re-exported for train's readers
    ECE_BINS,
    EPS,
    brier,
    ece,
    log_loss,
    reliability,
)


@dataclass(frozen=True)
class FilterRule:
    """The manual filters (spot move in percent, scaled minutes); defaults = serve's gate's."""

    min_move_pct: float = DEFAULT_MIN_MOVE_PCT
    max_move_pct: float = DEFAULT_MAX_MOVE_PCT
    min_entry_minutes: float = DEFAULT_MIN_ENTRY_MINUTES


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None with a single outcome."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(p, np.float64)))


def score(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """All four scores on one set of rows."""
    y = np.asarray(y)
    if len(y) == 0:
        return {"n": 0}
    return {
        "n": int(len(y)),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        "auc": auc(y, p),
        "ece": ece(y, p),
        "mean_p": float(np.mean(p)),
        "up_rate": float(np.mean(y)),
    }


def book_probability(up_mid: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """The book's P(Up) per row, clipped to [0.001, 0.999]; rows without any quote get 0.5.

    ``up_mid``: ``pipeline.book_probability_from_quotes`` (the Up mid, else 1 - the Down mid,
    else the mean of the quotes there are). Returns (probabilities, rows that had no quote).
    """
    if up_mid is None:
        return np.full(n, 0.5), n
    m = np.asarray(up_mid, np.float64)
    missing = ~np.isfinite(m)
    return np.clip(np.where(missing, 0.5, m), 0.001, 0.999), int(missing.sum())


def filter_rule(y: np.ndarray, symbol: np.ndarray, slot_ts: np.ndarray, point: np.ndarray,
                spot_move_pct: np.ndarray | None, p_model: np.ndarray,
                rule: FilterRule) -> dict[str, Any]:
    """The manual filters as a decision rule, one entry per window (the first passing point)."""
    out: dict[str, Any] = {"rule": asdict(rule)}
    if spot_move_pct is None:
        out["available"] = False
        return out
    mv = np.asarray(spot_move_pct, np.float64)
    minutes = np.asarray(point, np.float64) * 15.0  # scaled minutes, as the gate counts them
    ok = (np.isfinite(mv) & (np.abs(mv) >= rule.min_move_pct) & (np.abs(mv) <= rule.max_move_pct)
          & (minutes >= rule.min_entry_minutes - 1e-9) & (mv != 0))
    idx = np.flatnonzero(ok)
    # first passing decision point per window
    order = np.lexsort((point[idx], slot_ts[idx], symbol[idx]))
    idx = idx[order]
    key = np.char.add(symbol[idx].astype(str), slot_ts[idx].astype(str)) if len(idx) else idx
    _, first = np.unique(key, return_index=True)
    rows = idx[first]
    n_windows = len(np.unique(np.char.add(symbol.astype(str), slot_ts.astype(str)))) if len(y) else 0
    filt_side = (mv[rows] > 0).astype(np.int8)
    model_side = (p_model[rows] >= 0.5).astype(np.int8)
    yy = y[rows]
    out.update({
        "available": True,
        "windows": int(n_windows),
        "entries": int(len(rows)),
        "coverage": float(len(rows) / n_windows) if n_windows else None,
        "filter_hit_rate": float(np.mean(filt_side == yy)) if len(rows) else None,
        "model_hit_rate_same_rows": float(np.mean(model_side == yy)) if len(rows) else None,
        "agree_rate": float(np.mean(model_side == filt_side)) if len(rows) else None,
    })
    return out


def _group(y: np.ndarray, preds: dict[str, np.ndarray], keys: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in np.unique(keys):
        m = keys == k
        out[str(k)] = {name: score(y[m], p[m]) for name, p in preds.items()}
    return out


def evaluate(*, y: np.ndarray, p_model: np.ndarray, symbol: np.ndarray, slot_ts: np.ndarray,
             point: np.ndarray, base_rate: float,
             up_mid: np.ndarray | None = None, spot_move_pct: np.ndarray | None = None,
             oracle_p: np.ndarray | None = None, rule: FilterRule | None = None) -> dict[str, Any]:
    """The report's metrics dict (stored in the model file's ``metrics`` metadata)."""
    n = len(y)
    y = np.asarray(y, np.int8)
    p_model = np.asarray(p_model, np.float64)
    book, no_book = book_probability(up_mid, n)
    preds = {"model": p_model, "base_rate": np.full(n, float(base_rate)), "book_mid": book}
    point_keys = np.array([f"{x:.4f}" for x in np.round(point, 4)]) if n else np.array([], str)
    out: dict[str, Any] = {
        "rows": int(n),
        "ece_bins": ECE_BINS,
        "overall": {name: score(y, p) for name, p in preds.items()},
        "per_asset": _group(y, preds, symbol),
        "per_decision_point": _group(y, preds, point_keys),
        "book_missing_rows": no_book,
        "base_rate_value": float(base_rate),
    }
    if oracle_p is not None:
        o = np.asarray(oracle_p, np.float64)
        have = np.isfinite(o)
        out["oracle"] = {
            "coverage": float(have.mean()) if n else 0.0,
            "oracle": score(y[have], np.clip(o[have], 0.0, 1.0)),
            "model_same_rows": score(y[have], p_model[have]),
            "book_mid_same_rows": score(y[have], book[have]),
        }
    out["manual_filters"] = filter_rule(y, symbol, slot_ts, point, spot_move_pct,
                                        p_model, rule or FilterRule())
    return out
