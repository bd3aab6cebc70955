"""``--shift backload`` (sim/shift.py, issue 20): from the shift on each 15-minute block's
diffusion variance sits mostly in its last BACKLOAD_S seconds. The block totals (the coarse chain)
and everything before the shift are unchanged; the oracle, in closed form, matches a Monte Carlo
of the profiled process (that it is the truth on the shifted outcomes is checked with the lag's
in test_shift.py); the served world still equals the backfilled one."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from slotml.errors import UserError
from slotml.sim.backfill import generate
from slotml.sim.config import SimConfig
from slotml.sim.oracle import p_up
from slotml.sim.prices import EPOCH, AssetPath
from slotml.sim.shift import BACKLOAD_S, BACKLOAD_X, Shift, backload_profile, backload_weights
from slotml.sim.world import World

END = 1795000000
T_END = END // 900 * 900
AT = T_END - 3 * 86400  # window-aligned (900 | 86400)
V = (0.0006**2) / 60 * 0.8


def test_profile_keeps_the_block_total() -> None:
    g = backload_profile()
    assert g.shape == (900,) and g.mean() == pytest.approx(1.0)
    early = (900 - BACKLOAD_X * BACKLOAD_S) / (900 - BACKLOAD_S)
    assert g[-BACKLOAD_S:].tolist() == [BACKLOAD_X] * BACKLOAD_S and g[0] == pytest.approx(early)
    assert 0 < early < 1 < BACKLOAD_X
    late_s, late_x, early_x = backload_weights()
    assert (late_s, late_x) == (BACKLOAD_S, BACKLOAD_X) and early_x == pytest.approx(g[0])
    s = Shift("backload", AT)
    assert not s.backloaded(AT - 900) and s.backloaded(AT) and s.lag(AT + 5) == 0
    assert s.backloaded(np.array([AT - 900, AT, AT + 900])).tolist() == [False, True, True]
    assert not Shift().backloaded(np.array([AT])).any()


def test_path_same_before_same_block_ends_variance_moved_to_the_end() -> None:
    plain, back = AssetPath(5, "BTC"), AssetPath(5, "BTC", Shift("backload", AT))
    lo, hi = AT - 86400, T_END
    a, b = plain.log_spot(lo, hi), back.log_spot(lo, hi)
    k = AT - lo
    assert np.array_equal(a[: k + 1], b[: k + 1])  # byte-identical up to the shift second
    starts = np.arange(k, hi - lo, 900)
    assert np.allclose(a[starts], b[starts], rtol=0, atol=1e-12)  # the same block totals
    assert not np.array_equal(a[k + 1:], b[k + 1:])

    def late_share(x: np.ndarray, first: int) -> float:
        inc = np.diff(x[first: first + (len(x) - first) // 900 * 900 + 1]).reshape(-1, 900) ** 2
        return float(inc[:, -BACKLOAD_S:].sum() / inc.sum())

    # diffusion: BACKLOAD_X * 300 / 900 of the variance in the last 300 s (1/3 without), jumps
    # (BTC: 20%) uniform over the block
    js, third = plain.p.jump_share, BACKLOAD_S / 900
    before, after = late_share(a, 0), late_share(b, k)
    expected = (1 - js) * BACKLOAD_X * third + js * third
    print(f"late share of the variance: plain {late_share(a, k):.3f}, backloaded {after:.3f} "
          f"(expected {expected:.3f})")
    assert abs(before - third) < 0.08 and abs(after - expected) < 0.08, (before, after, expected)


def _mc(rule: str, spot_t: float, past: np.ndarray, m: int, p2b: float, n: int, rng) -> float:
    """The remaining m seconds one by one, no jumps, variance early_x * V before the last
    BACKLOAD_S seconds and BACKLOAD_X * V in them."""
    late_s, late_x, early_x = backload_weights()
    g = np.where(np.arange(m, 0, -1) <= late_s, late_x, early_x)  # increment i seconds before T
    logp = np.log(spot_t) + np.cumsum(rng.standard_normal((n, m)) * np.sqrt(V * g), axis=1)
    if rule == "spot":
        return float((np.exp(logp[:, -1]) >= p2b).mean())
    k = min(m, 60)
    final = (past.sum() + np.exp(logp[:, -k:]).sum(axis=1)) / 60.0
    return float((final >= p2b).mean())


@pytest.mark.parametrize("rule,m,z", [("twap60", 600, 1.0), ("twap60", 450, -0.6), ("twap60", 200, 0.6),
                                      ("twap60", 30, -0.5), ("spot", 600, 1.0)])
def test_profiled_oracle_matches_monte_carlo(rule: str, m: int, z: float) -> None:
    """|closed form - MC| < 0.01 with 40k paths (MC standard error <= 0.0025), and the profile
    moves the probability by more than that: the test can tell."""
    rng = np.random.default_rng(zlib.crc32(f"backload{rule}{m}".encode()))
    spot_t = 100.0
    past = spot_t * np.exp(rng.standard_normal(max(0, 60 - m)) * 1e-4)
    sd = np.sqrt(V * m)
    if rule == "spot":
        p2b, known = spot_t * np.exp(-z * sd), 0.0
    else:
        flat = (past.sum() + spot_t * min(m, 60)) / 60.0
        p2b, known = flat * (1 - z * sd * min(m, 60) / 60.0), past.sum()
    kw = dict(rule=rule, spot_t=spot_t, m=float(m), v=V, lam=0.0, jvar=0.0, p2b=p2b, known_sum=known)
    closed = float(p_up(**kw, profile=backload_weights()))
    flat_rule = float(p_up(**kw))
    mc = _mc(rule, spot_t, past, m, p2b, 40000, rng)
    assert abs(closed - mc) < 0.01, (closed, mc, flat_rule)
    assert abs(flat_rule - mc) > 0.02, (closed, mc, flat_rule)
    off = float(p_up(**kw, profile=backload_weights(), profile_on=False))
    assert off == flat_rule  # profile_on=False is the plain rule, bit for bit


def test_backfill_equals_the_served_world_and_is_unchanged_before() -> None:
    syms = ("BTC",)
    days = 0.5
    at = T_END - 6 * 3600
    off = generate(SimConfig(seed=21, symbols=syms), days=days, end=END)
    bk = generate(SimConfig(seed=21, symbols=syms, shift="backload", shift_at=at), days=days, end=END)
    assert [r for r in bk.snapshots if r["slot_ts"] < at] == [r for r in off.snapshots if r["slot_ts"] < at]
    after = [r for r in bk.snapshots if r["slot_ts"] >= at + 900]
    assert after != [r for r in off.snapshots if r["slot_ts"] >= at + 900] and len(after) > 100
    world = World(SimConfig(seed=21, symbols=syms, shift="backload", shift_at=at))
    n = 0
    for i in range(0, len(bk.oracle["p_up"]), 7):
        m = world.market(bk.oracle["symbol"][i], bk.oracle["slot_ts"][i])
        assert bk.oracle["p_up"][i] == pytest.approx(world.window(m).oracle_at(bk.oracle["tick_ms"][i] // 1000), abs=1e-9)
        n += bk.oracle["slot_ts"][i] >= at
    assert n > 50
    for r in after[::29]:
        t = r["tick_ms"] // 1000
        assert r["chainlink_twap"] == world.path(r["symbol"]).twap_at(t - 2)
        up, _ = world.book_levels(world.market(r["symbol"], r["slot_ts"]), t)
        assert r["bid_up"] == (up["bids"][0][0] / 100 if up["bids"] else None)


@pytest.mark.parametrize("kw", [dict(family="5m"), dict(families=("15m", "1h")), dict(time_scale=10)])
def test_backload_needs_the_15m_family_alone_at_real_time(kw) -> None:
    with pytest.raises(UserError, match="needs the 15m family alone"):
        SimConfig(shift="backload", shift_at=EPOCH + 86400 * 900, **kw)
