"""Scoring rules for probabilities of Up (plain numpy): Brier, log loss, reliability bins, ECE.

One definition for the two places that score a model: train's evaluation on its test days
(``train/metrics.py``) and the live calibration monitor on resolved windows
(``web/monitor_stats.py``), so a model's live numbers read exactly as its card's.

Log loss clips probabilities to [``EPS``, 1 - ``EPS``]. ECE: ``ECE_BINS`` equal-width bins of
the predicted P(Up) ([0, 0.1), ..., [0.9, 1.0]), sum over bins of (rows in bin / rows) x |mean
predicted - observed Up rate|. On no rows every score is NaN.
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 10
EPS = 1e-15


def brier(y: np.ndarray, p: np.ndarray) -> float:
    if not len(y):
        return math.nan
    return float(np.mean((np.asarray(p, np.float64) - np.asarray(y, np.float64)) ** 2))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    if not len(y):
        return math.nan
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width bin: rows, mean predicted, observed Up rate (None for empty bins)."""
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    sp = np.bincount(idx, weights=p, minlength=bins)
    sy = np.bincount(idx, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp, my = sp / count, sy / count
    return {
        "edges": [i / bins for i in range(bins + 1)],
        "count": [int(c) for c in count],
        "mean_pred": [None if c == 0 else float(v) for c, v in zip(count, mp, strict=True)],
        "observed": [None if c == 0 else float(v) for c, v in zip(count, my, strict=True)],
    }


def ece(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    r = reliability(y, p, bins)
    n = sum(r["count"])
    if n == 0:
        return math.nan
    return float(sum(c * abs(m - o) for c, m, o in zip(r["count"], r["mean_pred"], r["observed"],
                                                       strict=True) if c) / n)
