"""bench/challenge_rate.py's expanded-percentile reading of a stored week: with 7 day blocks a
90% percentile CI is too narrow, and the reading widens both tails to small-sample coverage
(Hesterberg 2015) before deciding the same pair again."""

from __future__ import annotations

from typing import Any

from bench.challenge_rate import expanded_ok


def _week(promoted: bool = True, over: float | None = 0.0, worse: float | None = 0.5,
          days: int | None = 7) -> dict[str, Any]:
    return {"promoted": promoted, "brier_share_over_margin": over, "brier_days": days,
            "pnl_share_worse": worse, "pnl_days": days}


def test_seven_days_widen_the_brier_tail() -> None:
    # 3% of draws over the margin: the 90% percentile CI (5% a tail) passes it; the
    # expanded tail for n = 7 is ~1.8%, so it does not.
    assert not expanded_ok(_week(over=0.03))
    assert expanded_ok(_week(over=0.01))


def test_seven_days_widen_the_pnl_tail() -> None:
    # 97% of draws worse: the percentile CI is entirely below 0 (refused); expanded, it is not.
    assert expanded_ok(_week(worse=0.97))
    assert not expanded_ok(_week(worse=0.99))


def test_many_days_approach_the_plain_percentile() -> None:
    assert expanded_ok(_week(over=0.045, days=2000))
    assert not expanded_ok(_week(over=0.055, days=2000))


def test_no_ci_keeps_the_weeks_own_decision() -> None:
    assert expanded_ok(_week(promoted=True, over=None, days=None))
    assert not expanded_ok(_week(promoted=False, over=None, days=None))
    assert not expanded_ok(_week(promoted=False, over=0.0, days=1))
