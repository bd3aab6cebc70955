"""The booster: XGBoost binary classifier on float32 arrays, early-stopped out of time.

Arrays, never DataFrames: the booster then carries no feature names, so the ONNX converter sees
plain ``f0..fN`` and the column order is ours alone (the feature contract's). The returned
booster is cut at the best iteration, so what is exported is exactly what was selected.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slotml.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "eval_metric": "logloss",
    # Chosen on the sim's 60-day history (test Brier vs the oracle's, see the README); the
    # spread across sensible settings (depth 3-6, eta 0.03-0.1) was within seed noise (~0.2%).
    "max_depth": 5,
    "eta": 0.1,  # 0.05 matched it with twice the trees (twice the fit time)
    "min_child_weight": 50,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "max_bin": 256,
    "seed": 0,
}
# Not booster parameters but accepted in --params too.
DEFAULT_ROUNDS = 2000
DEFAULT_EARLY_STOPPING = 50
_TRAIN_KEYS = ("num_boost_round", "early_stopping_rounds")


def default_nthread() -> int:
    """Cores not already busy (1-minute load average), at least 1.

    XGBoost's OpenMP threads spin-wait: on a loaded box more threads are SLOWER (measured on
    the 1-year bench at load 5 on 2 cores: 2 threads 54 s, 1 thread 19 s). ``--params
    '{"nthread": N}'`` overrides.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def parse_params(text: str | None) -> dict[str, Any]:
    """``--params``: a JSON object, or ``@path`` to a JSON file; UserError otherwise."""
    if not text:
        return {}
    src = text
    if text.startswith("@"):
        try:
            src = Path(text[1:]).read_text()
        except OSError as e:
            raise UserError(f"--params {text}: cannot read ({e.strerror})") from None
    try:
        params = json.loads(src)
    except ValueError as e:
        raise UserError(f"--params is not valid JSON ({e}); e.g. '{{\"max_depth\": 6}}'") from None
    if not isinstance(params, dict):
        raise UserError("--params must be a JSON object, e.g. '{\"max_depth\": 6, \"eta\": 0.1}'")
    obj = params.get("objective", "binary:logistic")
    if obj != "binary:logistic":
        raise UserError(f"--params: objective must stay binary:logistic (got {obj!r})")
    for k in _TRAIN_KEYS:
        if k in params and (not isinstance(params[k], int) or params[k] < 1):
            raise UserError(f"--params: {k} must be a positive integer")
    return params


@dataclass
class FitResult:
    booster: Any  # xgboost.Booster cut at the best iteration
    best_iteration: int
    rounds_trained: int
    params: dict[str, Any]  # effective booster params + round settings
    es_logloss: float  # early-stopping slice log loss at the best iteration
    seconds: float


def fit_booster(
    X_fit: np.ndarray, y_fit: np.ndarray, X_es: np.ndarray, y_es: np.ndarray,
    params: dict[str, Any] | None = None, w_fit: np.ndarray | None = None,
) -> FitResult:
    """Train with early stopping on the (out-of-time) ``X_es`` slice; ``w_fit``: per-row weights
    of the fit rows (``--half-life-days``), None for equal weights."""
    import xgboost as xgb

    t0 = time.perf_counter()
    user = dict(params or {})
    rounds = int(user.pop("num_boost_round", DEFAULT_ROUNDS))
    patience = int(user.pop("early_stopping_rounds", DEFAULT_EARLY_STOPPING))
    p = {**DEFAULT_PARAMS, "nthread": default_nthread(), **user}
    X_fit = np.ascontiguousarray(X_fit, dtype=np.float32)
    X_es = np.ascontiguousarray(X_es, dtype=np.float32)
    history: dict[str, dict[str, list[float]]] = {}
    try:
        dfit = _matrix(X_fit, y_fit, p, w_fit)
        des = xgb.QuantileDMatrix(X_es, label=y_es.astype(np.float32), ref=dfit,
                                  max_bin=int(p["max_bin"]))
        booster = xgb.train(
            p, dfit, num_boost_round=rounds, evals=[(des, "early_stop")],
            early_stopping_rounds=patience, evals_result=history, verbose_eval=False,
        )
    except (xgb.core.XGBoostError, ValueError, TypeError) as e:
        raise UserError(f"XGBoost refused the parameters: {str(e).splitlines()[0]}") from None
    best = int(booster.best_iteration)
    trained = int(booster.num_boosted_rounds())
    cut = booster[: best + 1]
    losses = history.get("early_stop", {}).get("logloss", [])
    es_loss = float(losses[best]) if len(losses) > best else float("nan")
    secs = time.perf_counter() - t0
    log.info("booster: %d rounds trained, best %d (early-stop log loss %.5f) in %.2fs, %d thread(s)",
             trained, best + 1, es_loss, secs, p["nthread"])
    return FitResult(booster=cut, best_iteration=best, rounds_trained=trained,
                     params={**p, "num_boost_round": rounds, "early_stopping_rounds": patience},
                     es_logloss=es_loss, seconds=secs)


def _matrix(X: np.ndarray, y: np.ndarray, p: dict[str, Any], w: np.ndarray | None) -> Any:
    """The training rows as XGBoost's quantised matrix (``w``: per-row weights or None)."""
    import xgboost as xgb

    return xgb.QuantileDMatrix(X, label=y.astype(np.float32), max_bin=int(p["max_bin"]),
                               weight=None if w is None else w.astype(np.float32))


def refit_booster(X: np.ndarray, y: np.ndarray, rounds: int, params: dict[str, Any],
                  w: np.ndarray | None = None) -> Any:
    """``--refit-booster``: the early-stopped fit's parameters (``FitResult.params``) for a
    fixed ``rounds`` (its best) on more rows, with nothing held out: the early-stopping days
    were only needed to choose that number."""
    import xgboost as xgb

    p = {k: v for k, v in params.items() if k not in _TRAIN_KEYS}
    t0 = time.perf_counter()
    d = _matrix(np.ascontiguousarray(X, dtype=np.float32), y, p, w)
    booster = xgb.train(p, d, num_boost_round=rounds, verbose_eval=False)
    log.info("booster refitted on %d rows for %d rounds in %.2fs", len(y), rounds,
             time.perf_counter() - t0)
    return booster


def booster_predict(booster: Any, X: np.ndarray) -> np.ndarray:
    """XGBoost's own probabilities on float32 inputs (the reference for the ONNX check)."""
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(np.ascontiguousarray(X, dtype=np.float32)))
