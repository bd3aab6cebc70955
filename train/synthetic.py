"""A synthetic training set with a KNOWN signal, for train/'s tests and benchmark.

Each window's move is a Brownian path with a per-window volatility regime; the window resolves
Up when the final move is >= 0, so the true P(Up) at minute t is
``Phi(move_t / (sigma_w * sqrt(15 - t)))`` (returned as the oracle). The features carry the move
and a noisy estimate of sigma_w (so a good model approaches the oracle); the "book" prices with
the asset's average volatility (so it is good but beatable). Columns use the contract's names.
"""

from __future__ import annotations

import math

import numpy as np

from slotml.features.contract import CONTRACT_VERSION, DEFAULT_POINTS, FEATURES, asset_codes
from slotml.train.dataset import TrainingSet
from slotml.venue import SCALE_MINUTES

SIGMA = {"BTC": 0.046, "ETH": 0.093, "SOL": 0.10, "XRP": 0.10}  # percent per sqrt(minute)


def _phi(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def synthetic_training_set(
    n_windows: int = 500, symbols: tuple[str, ...] = ("BTC", "ETH", "SOL", "XRP"),
    window_s: int = 900, points: tuple[float, ...] = DEFAULT_POINTS, seed: int = 0,
    start_ts: int = 1_767_225_600, p_missing: float = 0.02,
) -> tuple[TrainingSet, np.ndarray]:
    """(training set, true P(Up) per row). ``n_windows`` consecutive windows per asset."""
    rng = np.random.default_rng(seed)
    n_sym, npt = len(symbols), len(points)
    nw = n_sym * n_windows
    sym_w = np.repeat(np.arange(n_sym), n_windows)
    slot_w = start_ts + np.tile(np.arange(n_windows), n_sym).astype(np.int64) * window_s
    base_sigma = np.array([SIGMA.get(s, 0.08) for s in symbols])[sym_w]
    sigma_w = base_sigma * np.exp(0.4 * rng.standard_normal(nw))
    minutes = np.array(points) * 15.0
    # Brownian path sampled at the decision minutes and at the end (minute 15).
    grid = np.concatenate([minutes, [15.0]])
    dt = np.diff(np.concatenate([[0.0], grid]))
    steps = rng.standard_normal((nw, len(grid))) * np.sqrt(dt) * sigma_w[:, None]
    path = np.cumsum(steps, axis=1)
    y_w = (path[:, -1] >= 0).astype(np.int8)

    # rows: window-major, point-minor; then ordered by slot_ts like features/ does
    n = nw * npt
    wi = np.repeat(np.arange(nw), npt)
    pi = np.tile(np.arange(npt), nw)
    m = path[wi, pi]
    t = minutes[pi]
    left = SCALE_MINUTES - t
    sw, sb = sigma_w[wi], base_sigma[wi]
    p_true = _phi(m / (sw * np.sqrt(left)))
    book = np.clip(_phi(m / (sb * np.sqrt(left))) + 0.02 * rng.standard_normal(n), 0.01, 0.99)
    half = 0.005 + 0.005 * rng.random(n)
    slot = slot_w[wi]
    tick_ms = slot * 1000 + np.round(t * window_s / SCALE_MINUTES * 1000).astype(np.int64)
    prev = np.full(nw, np.nan)
    same = np.r_[False, sym_w[1:] == sym_w[:-1]]
    prev[same] = y_w[np.flatnonzero(same) - 1]
    # regime: the earlier windows' vol in units of the asset's norm (no extra RNG draws)
    ratio = sigma_w / base_sigma
    prev_vol = {k: np.full(nw, np.nan) for k in (1, 4)}
    for i in range(nw):
        back = [i - j for j in range(1, 5) if i - j >= 0 and sym_w[i - j] == sym_w[i]]
        for k, out in prev_vol.items():
            if back[:k]:
                out[i] = float(np.sqrt(np.mean(ratio[back[:k]] ** 2)))
    rv = sw * np.exp(0.15 * rng.standard_normal(n))
    pv4 = prev_vol[4][wi] * sb
    cols = {
        "dir_move_pct": m,
        "abs_move_pct": np.abs(m),
        "spot_move_pct": m + 0.1 * sw * rng.standard_normal(n),
        "minutes_into": t,
        "minutes_left": left,
        "bid_up": book - half, "ask_up": book + half,
        "bid_down": 1 - book - half, "ask_down": 1 - book + half,
        "up_mid": book,
        "spread_up": 2 * half, "spread_down": 2 * half, "spread_ratio": np.ones(n),
        "imbalance_up": rng.uniform(-1, 1, n), "imbalance_down": rng.uniform(-1, 1, n),
        "move_velocity": m / np.maximum(t, 1.0) + 0.05 * rng.standard_normal(n),
        "realised_vol": rv,
        "move_z": m / (sb * np.sqrt(left)),
        "lead_move_pct": m,  # the synthetic path has no TWAP lag (no extra RNG draws)
        "lead_move_z": m / (sb * np.sqrt(left)),
        "prev_vol_1": prev_vol[1][wi],
        "prev_vol_4": prev_vol[4][wi],
        "lead_rv_z": m / (rv * np.sqrt(left)),
        "lead_blend_z": m / (np.sqrt(np.where(np.isnan(pv4), rv**2, (rv**2 * t + 15 * pv4**2) / (t + 15)))
                             * np.sqrt(left)),
        "snapshot_count": np.floor(t * 2) + 1,
        "hour": ((tick_ms // 3_600_000) % 24).astype(float),
        "weekday": ((tick_ms // 86_400_000 + 3) % 7).astype(float),
        "asset": np.array([asset_codes().get(s, math.nan) for s in symbols], float)[sym_w[wi]],
        "prev_up": prev[wi],
        "prev_known_source": np.where(np.isnan(prev[wi]), 0.0, 2.0),
    }
    X = np.column_stack([cols[f] for f in FEATURES]).astype(np.float32)
    if p_missing:
        holes = rng.random(X.shape) < p_missing
        holes[:, :5] = False  # keep the move and the clock
        X[holes] = np.nan
    order = np.lexsort((pi, sym_w[wi], slot))
    ds = TrainingSet(
        X=X[order], y=y_w[wi][order], symbol=np.array(symbols)[sym_w[wi]][order],
        slot_ts=slot[order], tick_ms=tick_ms[order], point=np.array(points)[pi][order],
        feature_names=list(FEATURES), window_s=window_s, decision_points=list(points),
        up_mid=X[order, FEATURES.index("up_mid")].astype(np.float64),
        spot_move_pct=X[order, FEATURES.index("spot_move_pct")].astype(np.float64),
        stats={"synthetic": True, "move_vol_per_min": {s: SIGMA.get(s, 0.08) for s in symbols},
               "default_move_vol_per_min": 0.08},
        contract_version=str(CONTRACT_VERSION),
    )
    return ds, p_true[order]
