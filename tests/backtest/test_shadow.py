"""The shadow-order seam: maker-queue entries become orders with their life; compare() scores
the backtest's fills against a venue's answer for the same orders."""

from __future__ import annotations

import pytest

from slotml.backtest.fills import MakerOptimistic, MakerQueue
from slotml.backtest.policies import AlwaysEnter
from slotml.backtest.shadow import TruthFill, compare, shadow_orders
from slotml.backtest.simulate import simulate_fills
from slotml.serve.gate import GateConfig
from tests.backtest.test_fills import SLOT, T0, _info, _row


def test_orders_carry_their_life_and_compare_scores_them() -> None:
    cfg = GateConfig(order_size=10, min_order_size=1)
    info = _info([(1000, "Up", 0.49, 5, "SELL")], up=True, ticks=[T0 + 60_000], asks_up=[0.6])
    mq, mo = simulate_fills([_row()], {_row().key: info}, AlwaysEnter(cfg),
                            [MakerQueue(250, 30), MakerOptimistic()], "always-enter")
    (o,) = shadow_orders(mq)
    assert (o.outcome, o.price, o.size, o.placed_ms, o.cancel_ms) == (
        "Up", 0.50, 10, T0 + 250, (SLOT + 900) * 1000 - 30_000)
    assert shadow_orders(mo) == []  # no resting life: nothing to send
    # the venue filled only 4 shares at 0.50: fill rate agrees, PnL per staked agrees (a win)
    c = compare([mq], [TruthFill(o.order_id, 4.0, 0.50)])
    assert c["fill_rate"] == c["truth_fill_rate"] == 1.0 and c["fill_rate_error_pp"] == 0
    assert c["pnl_per_staked"] == pytest.approx(1.0) and c["truth_pnl_per_staked"] == pytest.approx(1.0)
    # unfilled at the venue: the optimistic model's error is its whole fill rate
    c = compare([mo], [TruthFill(o.order_id, 0.0, 0.0)])
    assert c["fill_rate"] == 0.0 and c["truth_fill_rate"] == 0.0
    c = compare([mq], [])
    assert c["fill_rate_error_pp"] == pytest.approx(100.0) and c["truth_pnl_per_staked"] is None
