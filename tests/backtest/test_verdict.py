"""The verdict's statistics: day-block bootstrap CIs, the paired difference and the one line."""

from __future__ import annotations

import numpy as np

from slotml.backtest.simulate import Entry, PolicyResult
from slotml.backtest.verdict import BacktestResult, daily


def _result(policy: str, fill: str, per_day: list[list[float]]) -> PolicyResult:
    """per_day[d]: the PnL of each 1-share entry at price 0.5 on day d."""
    es = []
    for d, pnls in enumerate(per_day):
        for k, pnl in enumerate(pnls):
            es.append(Entry(policy, fill, "BTC", d * 86400 + k * 900, 0.5, (d * 86400 + k * 900) * 1000,
                            "Up", 1.0, 0.5, 0.0, None, True, pnl > 0, pnl, shares=1.0))
    return PolicyResult(policy, fill, sum(map(len, per_day)), es, {})


def _backtest(edge: list[list[float]], filters: list[list[float]], **kw) -> BacktestResult:
    rs = [_result("edge", "maker-queue", edge), _result("filters", "maker-queue", filters)]
    return BacktestResult(rs, 0, 0, {}, None, None, "m.onnx", list(range(len(edge))), **kw)


def test_daily_sums_and_ci_resample_whole_days() -> None:
    rng = np.random.default_rng(1)
    days = [[float(x) for x in rng.choice([0.5, -0.5], 8, p=[0.6, 0.4])] for _ in range(30)]
    bt = _backtest(days, days)
    pnl, staked = daily(bt.results[0], bt.days)
    assert staked.tolist() == [4.0] * 30 and pnl.sum() == bt.results[0].pnl
    lo, hi = bt.cell("edge", "maker-queue").ci
    assert lo < bt.results[0].pnl_per_staked < hi
    d = bt.difference()
    assert d["difference"] == 0 and d["ci95"] == (0.0, 0.0)  # paired: identical days cancel
    assert "inconclusive" in bt.verdict() or "no" in bt.verdict()


def test_verdict_words() -> None:
    good = [[0.5] * 6 + [-0.5] * 2 for _ in range(20)]
    bad = [[0.5] * 2 + [-0.5] * 6 for _ in range(20)]
    assert _backtest(good, bad).verdict().startswith("model beats filters as a maker: yes (difference +")
    assert _backtest(bad, good).verdict().startswith("model beats filters as a maker: no")
    # one lucky day is not a result: a day-level CI straddles zero
    lucky = [[0.5] * 8] + [[0.5, -0.5] for _ in range(19)]
    flat = [[0.5, -0.5] for _ in range(20)]
    assert "inconclusive" in _backtest(lucky, flat).verdict()
    un = _backtest(good, bad, unavailable={"maker-queue": "no prints"})
    assert un.verdict() == ("model beats filters as a maker: inconclusive (maker-queue unavailable: "
                            "no prints)")
