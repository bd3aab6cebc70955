"""Realism of the book regimes and of the order flow, on seeds OTHER than the tuning ones
(401-403), against the numbers pinned in ``sim/realism.py`` (REGIMES, FLOW) before any backtest
acceptance; and the acceptance of adverse selection: a shadow bid resting at the best bid for a
whole window on efficient-book history fills at a loss.

Tolerances come from the measured seed-to-seed spread: 3 standard deviations at this sample size
(40 days for a regime's Brier: 3 sd <= 0.01 for every minute; 4 days x 2 seeds for the flow).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from slotml.sim.config import SimConfig
from slotml.sim.realism import FLOW, REGIMES, flow_stats, mid_brier
from slotml.sim.shadow import ShadowOrder, shadow_fills
from slotml.sim.world import World

END = 1795000000 // 900 * 900
REGIME_DAYS = 40
REGIME_SEED = 11
FLOW_SEEDS = (201, 202)
FLOW_DAYS = 4


@pytest.mark.parametrize("book", ["default", "sharp", "efficient"])
def test_regime_mid_brier(book: str) -> None:
    reg = REGIMES[book]
    got = mid_brier(SimConfig(seed=REGIME_SEED, book=book), REGIME_DAYS, END)
    for i, minute in enumerate((5, 7, 10)):
        tol = 3 * reg["sd20"][i] * math.sqrt(20 / REGIME_DAYS)
        assert tol <= 0.01
        assert got[minute] == pytest.approx(reg["mean"][i], abs=tol), (minute, got)
        if reg["target"] is not None:
            assert got[minute] == pytest.approx(reg["target"][i], abs=0.01), (minute, got)


@pytest.fixture(scope="module")
def flow() -> list[dict]:
    return [flow_stats(SimConfig(seed=s), FLOW_DAYS, END) for s in FLOW_SEEDS]


def test_prints_per_window_and_volume_by_token(flow) -> None:
    scale = math.sqrt(3 / FLOW_DAYS)  # the pinned sd was measured on 3-day samples
    for st in flow:
        mean, sd = FLOW["prints_per_window"]
        assert st["prints_per_window"] == pytest.approx(mean, abs=3 * sd * scale + 0.5)
        mean, sd = FLOW["up_volume_share"]
        assert st["up_volume_share"] == pytest.approx(mean, abs=3 * sd * scale + 0.005)
        mean, sd = FLOW["down_buy_measured"]
        assert st["down_buy_share_of_bid_volume"] == pytest.approx(mean, abs=3 * sd * scale + 0.005)
        assert st["down_buy_share_of_bid_volume"] == pytest.approx(FLOW["down_buy_share"], abs=0.02)


def test_markout_of_level_emptying_fills(flow) -> None:
    """The real 0.35-0.56 cents per share against the maker, within 3 standard errors."""
    lo, hi = FLOW["markout_c"]
    m = np.mean([st["markout_c"] for st in flow])
    se = math.sqrt(sum(st["markout_se"] ** 2 for st in flow)) / len(flow)
    assert lo - 3 * se <= m <= hi + 3 * se, (m, se)
    assert m > 0  # adverse selection: the maker loses on the fills that emptied its level


def test_best_bid_shadow_order_is_adversely_selected() -> None:
    """A shadow bid at the best bid from before the start to the end of each window (both tokens,
    efficient book: no edge in the quotes) fills at a loss. The loss against the outcome is
    measured against the oracle 60 s after each fill: the oracle is the outcome's conditional
    expectation (a martingale) and the informed know at most 10 s ahead, so this estimates the
    same mean with a fraction of the outcome's variance."""
    world = World(SimConfig(seed=203, book="efficient"))  # not a tuning seed (401-403)
    loss, size, direct = [], [], []
    for s in range(END - 3 * 86400, END, 900):
        for sym in world.symbols:
            m = world.market(sym, s)
            wd = world.window(m)
            up, down = world.book_levels(m, s)
            for token, book, y in ((m.up_token, up, float(wd.up)), (m.down_token, down, 1 - float(wd.up))):
                if not book["bids"]:
                    continue
                c = book["bids"][0][0]
                for f in shadow_fills(world, [ShadowOrder(token, c / 100, 100.0, s - 1.0)])[0]:
                    p = wd.oracle_at(int(math.floor(f.t)) + 60)
                    p = p if token == m.up_token else 1 - p
                    loss.append((f.price - p) * 100)
                    direct.append((f.price - y) * 100)
                    size.append(f.size)
    w = np.array(size)
    x = np.array(loss)
    mean = float((x * w).sum() / w.sum())
    se = float(x.std() / math.sqrt(len(x)))
    print(f"best-bid shadow fills: {len(x)}, loss {mean:.3f} c/share (se {se:.3f}) against the oracle "
          f"60 s on; against the outcome {float((np.array(direct) * w).sum() / w.sum()):.2f} c/share")
    assert mean - 3 * se > 0  # a loss, significantly
    lo, hi = FLOW["markout_c"]
    assert mean - 3 * se <= hi and mean + 3 * se >= lo  # consistent with the pinned markout target
