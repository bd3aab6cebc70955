"""Each feature's training range, for the gate's out-of-distribution check (``serve/guards.py``).

Per feature: the 0.1% and 99.9% quantiles of its finite values and its NaN share, over the rows
the booster was FITTED on (the fit slice: not the early-stopping, calibration or test rows),
AFTER the Up/Down mirror (``train/mirror.py``) when training mirrors. Why after: the booster
was fitted on every row and its mirror image, so the space it has learnt is their union; a day
on which every asset falls is the mirror of a rising day it was fitted on, and quantiles of the
unmirrored rows alone would call such a day out of distribution although the model has seen
exactly its mirror. (The mirror's ``inv`` rule turns a 0 into NaN, so a feature may carry a
small NaN share the raw rows do not have: the booster saw those NaNs too.) With ``--no-mirror``
the rows are the fit slice's as they are.

Written as the model file's optional ``feature_ranges`` key (``slotml/model_file.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

QUANTILES = (0.001, 0.999)


def feature_ranges(X: np.ndarray, names: Sequence[str], rows_from: str) -> dict[str, Any]:
    """The ``feature_ranges`` value for the rows ``X`` (columns in ``names`` order)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"expected [N, {len(names)}] rows, got {X.shape}")
    n = X.shape[0]
    feats: dict[str, dict[str, float | None]] = {}
    for j, name in enumerate(names):
        col = X[:, j]
        finite = col[np.isfinite(col)]
        nan_share = float(np.isnan(col).sum() / n) if n else 0.0
        if finite.size:
            lo, hi = np.quantile(finite, QUANTILES)
            feats[name] = {"lo": float(lo), "hi": float(hi), "nan_share": nan_share}
        else:
            feats[name] = {"lo": None, "hi": None, "nan_share": nan_share}
    return {"quantiles": list(QUANTILES), "rows": int(n), "rows_from": rows_from,
            "features": feats}
