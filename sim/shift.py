"""A regime shift: from one second on, the world changes in a way a frozen model cannot absorb.

``--shift lag`` (the first shift measured for issue 20): after the shift second, the settlement TWAP (the published
``crypto_prices_twap_sixty`` stream, hence price_to_beat, the final price and every move the
collector records) is the 60 s TWAP of spot ``SHIFT_LAG_S`` seconds EARLIER: the oracle stream
lags spot by ~30 s + SHIFT_LAG_S instead of ~30 s. The outcome of a window then hinges on spot up
to ``end - SHIFT_LAG_S`` only, so at a decision point less variance remains than the time left
says: a model fitted before the shift (on "minutes_left" and the volatility features) is
underconfident after it, most at the late decision points.

Why a lag and not a drift: a persistent drift breaks the Up/Down symmetry, and train/ fits on
every row AND its mirror image (``features/contract.py`` MIRROR, on by default): a mirrored model
cannot learn a base rate, so a retrained (walk-forward) model could not absorb a drift either,
and the walk-forward could not come near the oracle after it. The lag keeps the symmetry; the
features still express it (``minutes_left``, the lead move, the volatilities), so retraining on
post-shift days can learn it. A plain doubling of volatility would not do: the features scale by
it.

``--shift unlag``: the same lag in the other direction of time. Up to and at the shift second
the settlement TWAP lags spot by ``SHIFT_LAG_S`` more (the world of ``lag``), after it the world
is the unshifted one (a window starting after the shift second is byte-identical to it; the
window starting AT it has a lagged base and an unlagged final). Why it exists: the lag makes the
outcome more predictable (the oracle's Brier falls by about a third), so after ``lag`` a
"within 3% of the oracle" aim leaves less absolute room than before it, and a model fitted on
74 days of the lagged world still sits 2.2-2.8% above its oracle (README "Walk-forward"). After
``unlag`` the world returns to the default one, whose walk sits ~1.5% above the oracle. Measured
on held-out seeds 44 and 45 (README "Walk-forward"): the walk is 1.5-1.6% above the oracle after
it, but a model frozen in the lagged world is only 0.2-0.5% worse than where the lag goes on,
so it is not the issue's shift (a frozen model absorbs it); ``lag`` stays.

The oracle (``oracle.p_up``) and the default book's maker both know the rule: they price the
window as ending at ``end - SHIFT_LAG_S`` (and as decided after that), so the oracle stays the
truth and the book follows. Nothing changes at or before the shift second: the same seed gives
byte-identical history there, and with ``--shift none`` (the default) everywhere.

``--shift backload`` (issue 20's shift since 2026-12-08; measured because the lag makes the world
MORE predictable, which left a "within 3% of the oracle" aim at the walk's own expected ratio):
from the shift on, each 15-minute block delivers its diffusion variance unevenly, ``BACKLOAD_X``
times the block's rate in its last ``BACKLOAD_S`` seconds and the rest (so the block's total, and
the coarse chain of ``sim/prices.py``, stay as they are) in its first 900 - BACKLOAD_S: the
window's volatility moves to its end, as around a scheduled release (2.75x the rate in the last
300 s, 0.125x before: 92% of the window's diffusion variance in its last third). The features read the
volatility of earlier windows and of the window so far, and divide the move by sqrt(time left):
a model fitted before the shift is overconfident after it (the variance still to come is larger
than the minutes say), most at the late decision points; the oracle is less sharp there than
before (the outcome is decided later), so the world becomes harder, not easier. Up/Down stays
symmetric (the mirror holds), and retraining can learn it (the profile is the same every window).
The oracle and the default maker know the profile. It is exact for 15-minute windows (one block
each); the sim refuses it for other families. Jumps stay uniform in the block.

Boundary: the lag applies to seconds strictly after the shift second ``at`` (window-aligned), so
every window that ends by ``at`` is untouched; the window starting at ``at`` keeps its
price_to_beat (the TWAP at ``at``) and settles on the lagged TWAP, like every later window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slotml.errors import UserError

SHIFTS = ("none", "lag", "unlag", "backload")
# Extra seconds the settlement TWAP lags spot after the shift: 200 s, chosen on held-out seeds
# 1 and 2 by the frozen-model aim alone, with the rule written down before the runs (the
# smallest of 200 / 220 / 240 s whose model frozen at day 59 is >= 3.5% worse against the
# oracle than the same model in the no-shift world, on both seeds): 200 s gave +3.86% / +3.66%
# (220 s: +5.21%, 240 s: +6.65% on seed 1). ``python -m bench.acceptance_shift --lag-s L``
# measures a lag; README "Regime shift" has the tables. It was 180 s, picked on seed 42, an
# acceptance seed, where it left the frozen model +2.65% / +2.77% worse on seeds 5 and 7.
# Larger lags hurt the frozen model more but leave fewer post-shift days to relearn the window's
# end (the walk-forward must come within 3% of the oracle over days 74-90).
SHIFT_LAG_S = 200
# ``backload``: the last BACKLOAD_S seconds of each 15-minute block carry BACKLOAD_X times the
# block's diffusion rate, the first 900 - BACKLOAD_S the rest (2.75x for 300 s, 0.125x before).
# Chosen by a rule written before the runs (README "Walk-forward", the backload shift): the
# smallest of 2.5 / 2.75 whose model frozen at day 59 is >= 3.5% worse than in the unshifted
# world on fresh seeds 50 and 51: 2.5 gave +3.64% / +2.73%, 2.75 +5.97% / +4.67% (2.0, on
# spent seed 31 before the rule: +1.53%, Brier forgives mild overconfidence).
BACKLOAD_S = 300
BACKLOAD_X = 2.75
BLOCK_S = 900


@dataclass(frozen=True)
class Shift:
    """The shift of one world: ``kind`` in SHIFTS, from epoch second ``at`` (exclusive)."""

    kind: str = "none"
    at: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SHIFTS:
            raise UserError(f"--shift must be one of {', '.join(SHIFTS)}, not {self.kind!r}")
        if self.kind != "none" and self.at is None:
            raise UserError(f"--shift {self.kind} needs --shift-day")

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def lag(self, t):
        """Extra seconds the settlement TWAP lags spot at epoch second(s) ``t`` (int or array):
        ``lag`` after the shift second, ``unlag`` up to and at it."""
        if self.kind not in ("lag", "unlag"):
            return np.zeros_like(t, dtype=np.int64) if isinstance(t, np.ndarray) else 0
        after = self.kind == "lag"
        if isinstance(t, np.ndarray):
            return np.where((t > self.at) == after, SHIFT_LAG_S, 0).astype(np.int64)
        return SHIFT_LAG_S if (int(t) > self.at) == after else 0

    def backloaded(self, block_start):
        """Whether the 15-minute block(s) starting at epoch second(s) ``block_start`` carry the
        ``backload`` profile: every block starting at or after the shift second."""
        if isinstance(block_start, np.ndarray):
            return np.full(block_start.shape, False) if self.kind != "backload" else block_start >= self.at
        return self.kind == "backload" and int(block_start) >= self.at

    def lagged_between(self, first: int, last: int) -> bool:
        """Whether any second of first..last is lagged."""
        if self.kind == "lag":
            return last > self.at
        return self.kind == "unlag" and first <= self.at

    def spot_from(self, first: int, last: int) -> int:
        """The earliest spot second the settlement TWAPs of seconds first..last read (each the
        mean of 60 s of spot ending ``lag(t)`` s before t)."""
        if not self.lagged_between(first, last):
            return first - 59
        if self.kind == "unlag":  # the first second is lagged
            return first - SHIFT_LAG_S - 59
        return min(first - 59, max(first, self.at + 1) - SHIFT_LAG_S - 59)


NO_SHIFT = Shift()


def backload_weights() -> tuple[float, float, float]:
    """(late seconds, late multiplier, early multiplier): the oracle's view of the profile, the
    early multiplier set so the block's total variance is kept."""
    return float(BACKLOAD_S), BACKLOAD_X, (BLOCK_S - BACKLOAD_X * BACKLOAD_S) / (BLOCK_S - BACKLOAD_S)


def backload_profile() -> np.ndarray:
    """Variance multipliers of a backloaded block's 900 increments (mean 1): increment j moves
    the price from second j to j + 1 of the block."""
    late_s, late_x, early_x = backload_weights()
    return np.where(np.arange(BLOCK_S) >= BLOCK_S - late_s, late_x, early_x)


def shift_second(anchor: float, shift_day: float, window_s: int) -> int:
    """The shift's epoch second: ``shift_day`` days after ``anchor``, rounded up to a window start."""
    t = float(anchor) + float(shift_day) * 86400.0
    return int(-(-int(np.ceil(t)) // window_s) * window_s)
