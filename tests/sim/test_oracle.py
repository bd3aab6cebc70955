"""The oracle: closed form vs a Monte Carlo of the same process; the efficient book quotes it."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from slotml.sim.config import SimConfig
from slotml.sim.oracle import known_sum, p_up
from slotml.sim.world import World

V = (0.0006**2) / 60 * 0.8  # a busy regime, per second
LAM = 6 / 86400
JVAR = 0.2 * (0.0006**2 / 60) / LAM


def _mc(rule: str, spot_t: float, past: np.ndarray, m: int, p2b: float, n: int, rng) -> float:
    """Simulate the remaining m seconds: i.i.d. Gaussian increments + Poisson jumps at uniform
    seconds. Seconds before the TWAP window only matter through their sum: one aggregated step."""
    k = min(m, 60) if rule == "twap60" else 1  # seconds simulated one by one at the end
    pre = m - k
    agg = rng.standard_normal(n) * np.sqrt(V * pre)
    nj = rng.poisson(LAM * pre, n)
    agg += rng.standard_normal(n) * np.sqrt(JVAR * nj)
    inc = rng.standard_normal((n, k)) * np.sqrt(V)
    inc += (rng.random((n, k)) < LAM) * rng.standard_normal((n, k)) * np.sqrt(JVAR)
    logp = np.log(spot_t) + agg[:, None] + np.cumsum(inc, axis=1)
    if rule == "spot":
        final = np.exp(logp[:, -1])
    else:
        final = (past.sum() + np.exp(logp).sum(axis=1)) / 60.0
    return float((final >= p2b).mean())


# (rule, seconds left, move of the settlement-relevant price vs the strike, in sd of the rest)
CASES = [("twap60", 600, 0.3), ("twap60", 120, -0.5), ("twap60", 40, 0.8), ("twap60", 10, -0.2),
         ("spot", 600, 0.4), ("spot", 60, -1.0)]


@pytest.mark.parametrize("rule,m,z", CASES)
def test_closed_form_matches_monte_carlo(rule: str, m: int, z: float) -> None:
    """Stated error: |closed form - MC| < 0.01 with 100k paths (MC standard error <= 0.0016);
    the linearised TWAP and the Gaussian jump-position mixture cost < 0.005 in practice."""
    rng = np.random.default_rng(zlib.crc32(f"{rule}{m}".encode()))
    spot_t = 100.0
    n_past = max(0, 60 - m)
    past = spot_t * np.exp(rng.standard_normal(n_past) * 1e-4)
    sd = np.sqrt(V * m)
    if rule == "spot":
        p2b = spot_t * np.exp(-z * sd)
        known = 0.0
    else:
        # strike relative to the TWAP we would get if the price stayed put
        flat = (past.sum() + spot_t * min(m, 60)) / 60.0
        p2b = flat * (1 - z * sd * min(m, 60) / 60.0)
        known = past.sum()
    closed = float(p_up(rule=rule, spot_t=spot_t, m=float(m), v=V, lam=LAM, jvar=JVAR, p2b=p2b,
                        known_sum=known))
    mc = _mc(rule, spot_t, past, m, p2b, 100000, rng)
    assert abs(closed - mc) < 0.01, (closed, mc)
    assert 0.02 < closed < 0.98  # a case that can actually tell


def test_at_the_end_it_is_the_rule_with_ties_up() -> None:
    assert p_up(rule="spot", spot_t=100.0, m=0.0, v=V, lam=LAM, jvar=JVAR, p2b=100.0) == 1.0
    assert p_up(rule="spot", spot_t=99.99, m=0.0, v=V, lam=LAM, jvar=JVAR, p2b=100.0) == 0.0
    assert p_up(rule="twap60", spot_t=1.0, m=0.0, v=V, lam=LAM, jvar=JVAR, p2b=100.0,
                known_sum=6000.0) == 1.0


def test_known_sum_counts_only_the_twap_window() -> None:
    spot = np.arange(1000, dtype=float)  # spot at second t0 + i = i
    end = 900
    ks = known_sum(spot, 0, np.array([800, 841, 850, 900]), end)
    assert ks.tolist() == [0.0, 841.0, sum(range(841, 851)), sum(range(841, 901))]


def test_efficient_book_quotes_the_oracle() -> None:
    world = World(SimConfig(seed=21, efficient_book=True))
    start = 1795000000 // 900 * 900
    for sym in ("BTC", "ETH"):
        wd = world.window(world.market(sym, start))
        assert np.array_equal(wd.books.p[1:], wd.oracle)
        b = wd.books
        # two-sided and away from the clipped extremes (prices stay in [0.01, 0.99])
        two = (b.up_bid[1:] > 0) & (b.up_ask[1:] > 0) & (np.abs(wd.oracle - 0.5) < 0.45)
        assert two.sum() > 100
        mid = (b.up_bid[1:] + b.up_ask[1:]) / 200
        spread = (b.up_ask[1:] - b.up_bid[1:]) / 100
        assert np.all(np.abs(mid - wd.oracle)[two] <= spread[two] / 2 + 0.0051)
    maker = World(SimConfig(seed=21)).window(World(SimConfig(seed=21)).market("BTC", start))
    assert not np.allclose(maker.books.p[1:], maker.oracle)  # the default maker is not the oracle
