"""The true P(Up) under the sim's own process, in closed form (vectorised over ticks).

At second t of a window ending at T (m = T - t seconds left), the future log increments are
i.i.d. N(0, v) per second (v known: the regime is constant inside a block) plus Poisson(lam)
jumps per second with N(0, jvar) sizes. The settlement value is

- ``spot``: S_T = spot_t * exp(X_T); Up iff X_T >= ln(p2b / spot_t), X_T Gaussian given the
  jump count N: var = m v + N jvar (exact);
- ``twap60``: mean of spot over (T-60, T]. Linearised in the increments (vol is ~1e-4/s, so the
  error is second order), TWAP = known/60 + spot_t * (n_f/60 + Y) with Y = sum_j c_j eps_j / 60,
  c_j = min(T - j + 1, 60) the number of window seconds an increment at j still moves. Given N
  jumps at uniform seconds, Y ~ N(0, v sum c^2/3600 + N jvar mean(c^2)/3600) (Gaussian
  approximation of the position mixture).

P(Up) mixes over N ~ Poisson(lam m), N <= 6. ``profile`` (``--shift backload``, sim/shift.py):
the increments in the last ``late_s`` seconds before T carry ``late_x`` times v, the earlier ones
``early_x`` times (the diffusion part only; the sums of c^2 split at ``late_s``).
``tests/sim/test_oracle.py`` (and ``test_backload.py``, with the profile) check it against a
Monte Carlo of the same process.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

N_JUMPS_MAX = 6


def sum_c2(m: np.ndarray) -> np.ndarray:
    """sum_{i=1..m} min(i, 60)^2."""
    m = np.asarray(m, dtype=np.float64)
    k = np.minimum(m, 60.0)
    return k * (k + 1) * (2 * k + 1) / 6.0 + np.maximum(m - 60.0, 0.0) * 3600.0


def profiled(c2_or_m: np.ndarray, m: np.ndarray, rule: str, profile, on) -> np.ndarray:
    """The diffusion's sum of c^2 (twap60) or seconds (spot) over the m seconds left, weighted
    by a variance profile (late_s, late_x, early_x) where ``on`` (bool, broadcast)."""
    late_s, late_x, early_x = profile
    h = np.minimum(m, late_s)
    head = sum_c2(h) if rule == "twap60" else h
    return np.where(on, late_x * head + early_x * (c2_or_m - head), c2_or_m)


def p_up(*, rule: str, spot_t, m, v, lam, jvar, p2b, known_sum=0.0, profile=None,
         profile_on=True) -> np.ndarray:
    """P(settlement at T >= p2b | information at t). Arrays broadcast.

    spot_t: spot at t; m: seconds left (T - t, >= 0); v: diffusion variance per second; lam: jump
    intensity per second; jvar: jump size variance; p2b: price to beat; known_sum: for twap60, the
    sum of spot over the window seconds already seen, i.e. over [max(T-59, ...), t]; profile:
    None, or (late_s, late_x, early_x) applied where ``profile_on`` (see ``profiled``).
    """
    spot_t = np.asarray(spot_t, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    jvar = np.asarray(jvar, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    p2b = np.asarray(p2b, dtype=np.float64)
    if rule == "spot":
        ystar = np.log(p2b / spot_t)
        base_var = m * v if profile is None else profiled(m, m, rule, profile, profile_on) * v
        jump_coef = jvar
    elif rule == "twap60":
        n_f = np.minimum(m, 60.0)
        ystar = (p2b - np.asarray(known_sum, dtype=np.float64) / 60.0) / spot_t - n_f / 60.0
        c2 = sum_c2(m)
        base_var = v * (c2 if profile is None else profiled(c2, m, rule, profile, profile_on)) / 3600.0
        jump_coef = jvar * np.where(m > 0, c2 / np.maximum(m, 1.0), 0.0) / 3600.0
    else:
        raise ValueError(f"unknown settlement rule {rule!r}")
    mu = lam * m
    out = np.zeros(np.broadcast(ystar, base_var, mu).shape)
    wsum = np.zeros_like(out)
    e_mu = np.exp(-mu)
    for n in range(N_JUMPS_MAX + 1):
        w = e_mu * mu**n / math.factorial(n)  # Poisson pmf
        var = base_var + n * jump_coef
        sd = np.sqrt(np.maximum(var, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, -ystar / np.where(sd > 0, sd, 1.0), np.where(ystar <= 0, np.inf, -np.inf))
        out = out + w * ndtr(z)
        wsum = wsum + w
    return out / wsum


def known_sum(spot: np.ndarray, spot_t0: int, ts: np.ndarray, end: int) -> np.ndarray:
    """Sum of spot over the TWAP window seconds [end-59, t] already seen at each t (0 before)."""
    c = np.concatenate([[0.0], np.cumsum(spot)])
    lo = end - 59 - spot_t0
    hi = np.asarray(ts) - spot_t0 + 1
    return np.where(np.asarray(ts) >= end - 59, c[np.maximum(hi, lo)] - c[lo], 0.0)
