"""Feature importance, for the model card, ``slotml train``'s report, the model file (its
optional ``importance`` key) and the dashboard.

Two views, because they answer different questions:

- gain: XGBoost's own ``gain`` importance, the mean loss reduction of the splits on a feature
  while the booster was fitted (0 for a feature no split uses). It says what the trees leaned
  on, not what the model needs: of two copies of one signal, either may collect the gain.
- permutation: on the calibration days (out of the booster's fit and early stopping, and not
  the test days the report scores), how much the CALIBRATED model's Brier score rises when one
  feature's column is shuffled, the rest kept: the mean (and standard deviation) over
  ``REPEATS`` shuffles drawn from a fixed seed. The exported ONNX graph is what is scored, so it
  is the model a bot runs. Near 0 for a feature the model does not use (or whose information
  another feature carries too); negative values are noise.

Plain numpy (no sklearn estimator wrapper needed: the model is a function of X).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

REPEATS = 3
SEED = 0
MAX_ROWS = 10_000  # calibration rows scored per shuffle (a fixed-seed sample beyond that)
METRIC = "brier"


def gain(booster: Any, names: Sequence[str]) -> dict[str, float]:
    """{feature: XGBoost gain} for every feature (0.0 where no split uses it)."""
    score = booster.get_score(importance_type="gain")
    keys = list(booster.feature_names or []) or [f"f{i}" for i in range(len(names))]
    return {n: float(score.get(k, 0.0)) for n, k in zip(names, keys, strict=True)}


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, np.float64) - y) ** 2))


def permutation(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray,
                names: Sequence[str], *, repeats: int = REPEATS, seed: int = SEED,
                max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """Permutation importance of ``predict`` (X -> P(Up)) on rows ``X``, ``y``: per feature the
    rise of the Brier score when its column is shuffled, mean and sd over ``repeats``."""
    rng = np.random.default_rng(seed)
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64)
    if len(X) > max_rows:
        keep = np.sort(rng.choice(len(X), size=max_rows, replace=False))
        X, y = X[keep], y[keep]
    base = _brier(y, predict(X))
    rises = np.zeros((X.shape[1], repeats))
    work = X.copy()
    for j in range(X.shape[1]):
        col = X[:, j]
        for r in range(repeats):
            work[:, j] = col[rng.permutation(len(col))]
            rises[j, r] = _brier(y, predict(work)) - base
        work[:, j] = col
    mean, sd = rises.mean(axis=1), rises.std(axis=1)
    return {"metric": METRIC, "base": base, "rows": len(X), "repeats": repeats, "seed": seed,
            "mean": {n: float(m) for n, m in zip(names, mean, strict=True)},
            "std": {n: float(s) for n, s in zip(names, sd, strict=True)}}


def importance(booster: Any, predict: Callable[[np.ndarray], np.ndarray], X_cal: np.ndarray,
               y_cal: np.ndarray, names: Sequence[str], **kw: Any) -> dict[str, Any]:
    """The model file's ``importance`` value: gain, and permutation on the calibration days."""
    perm = permutation(predict, X_cal, y_cal, names, **kw)
    return {"gain": gain(booster, names), "permutation": perm["mean"],
            "permutation_std": perm["std"], "metric": perm["metric"], "slice": "calibration",
            "base": perm["base"], "rows": perm["rows"], "repeats": perm["repeats"],
            "seed": perm["seed"]}


def ranked(imp: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per feature, most important (permutation) first: feature, permutation, its sd,
    gain and the gain's share of the total (for the report and the dashboard)."""
    gains = imp.get("gain") or {}
    total = sum(gains.values()) or 1.0
    perm, sd = imp.get("permutation") or {}, imp.get("permutation_std") or {}
    rows = [{"feature": f, "permutation": perm.get(f), "permutation_std": sd.get(f),
             "gain": gains.get(f), "gain_share": None if f not in gains else gains[f] / total}
            for f in dict.fromkeys([*perm, *gains])]
    return sorted(rows, key=lambda r: -(r["permutation"] if r["permutation"] is not None else -1e9))


def format_importance(imp: dict[str, Any] | None, top: int = 12) -> str:
    """The report's table: the ``top`` features by permutation importance, and the rest summed up."""
    if not imp:
        return "feature importance: not computed"
    rows = ranked(imp)
    head = (f"feature importance: Brier rise when the column is shuffled on the calibration days "
            f"({imp['rows']:,} rows, mean ± sd of {imp['repeats']} shuffles, seed {imp['seed']}; "
            f"base Brier {imp['base']:.4f}) and XGBoost gain (share of the total)")
    lines = [head, f"  {'feature':<18} {'Brier rise':>11} {'± sd':>9} {'gain share':>10}"]
    for r in rows[:top]:
        share = "-" if r["gain_share"] is None else f"{r['gain_share']:.1%}"
        lines.append(f"  {r['feature']:<18} {r['permutation']:+11.5f} {r['permutation_std']:9.5f} "
                     f"{share:>10}")
    rest = rows[top:]
    if rest:
        hi = max(abs(r["permutation"]) for r in rest)
        lines.append(f"  ({len(rest)} more features, each |Brier rise| <= {hi:.5f})")
    return "\n".join(lines)
