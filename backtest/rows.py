"""What a replay reads from the lake, as plain rows: decision rows and what each window's market
said. The fill models and the simulation read these; only ``replay.py`` knows the lake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from slotml.serve.gate import UP, FeeSchedule

# the lake's touch-range columns (``ingest.schema.TOUCH_COLUMNS``, schema 5; a test pins the two)
TOUCH_COLUMNS = ("ask_up_low", "bid_up_high", "ask_down_low", "bid_down_high")


@dataclass
class DecisionRow:
    """One window at one decision point: the contract's vector and the quotes behind it."""

    symbol: str
    window_s: int
    slot_ts: int
    point: float  # fraction of the window
    tick_ms: int  # the decision row's snapshot tick
    vector: np.ndarray  # float32, contract order
    bid_up: float | None
    ask_up: float | None
    bid_down: float | None
    ask_down: float | None
    spot_move_pct: float | None
    dir_move_pct: float | None
    # the recorded top-five depth at the decision tick: ((price, size), ...) best first
    ask_depth_up: tuple[tuple[float, float], ...] = ()
    ask_depth_down: tuple[tuple[float, float], ...] = ()
    bid_size_up: float | None = None  # size resting at the best bid (the queue a bid joins)
    bid_size_down: float | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.symbol, self.window_s, self.slot_ts)

    def bid(self, side: str) -> float | None:
        return self.bid_up if side == UP else self.bid_down

    def ask(self, side: str) -> float | None:
        return self.ask_up if side == UP else self.ask_down

    def ask_depth(self, side: str) -> tuple[tuple[float, float], ...]:
        return self.ask_depth_up if side == UP else self.ask_depth_down

    def bid_size(self, side: str) -> float | None:
        return self.bid_size_up if side == UP else self.bid_size_down


@dataclass
class Tape:
    """A window's trade prints (both tokens), time-ordered, as arrays."""

    ts_ms: np.ndarray  # int64
    up: np.ndarray  # bool: the Up token printed (else Down)
    price: np.ndarray  # float64
    size: np.ndarray  # float64
    buy: np.ndarray  # bool: the taker bought (lifted an ask), else sold into a bid


@dataclass
class WindowInfo:
    """What the market said about one window: outcome, fees, minimum size, the snapshots' tops
    (fill rules and markouts), its end, and its trade tape (None: the lake has no prints;
    ``tape_gap``: a recorded gap overlaps the window, so its tape is incomplete)."""

    resolved_up: bool
    fee: FeeSchedule = field(default_factory=FeeSchedule)
    min_order_size: float | None = None
    ticks: Sequence[int] = ()  # snapshot ticks, ascending
    asks_up: Sequence[float | None] = ()
    asks_down: Sequence[float | None] = ()
    bids_up: Sequence[float | None] = ()
    bids_down: Sequence[float | None] = ()
    end_ms: int | None = None
    tape: Tape | None = None
    tape_gap: bool = False
    up_token_id: str | None = None
    down_token_id: str | None = None
    # the touch's range since the previous snapshot, per tick (schema 5; () in older lakes):
    # the lowest best ask and highest best bid of each token, NaN where unknown
    ask_lows_up: Sequence[float] = ()
    ask_lows_down: Sequence[float] = ()
    bid_highs_up: Sequence[float] = ()
    bid_highs_down: Sequence[float] = ()

    def through_ms(self, side: str, price: float, after_ms: int, until_ms: int) -> int | None:
        """The first snapshot tick in (after_ms, until_ms] whose range since the previous tick
        shows the book through a bid of ``side`` at ``price``: the side's ask at or below it, or
        the other token's bid at or above 1 - price (the venue matches complementary bids). The
        range covers (previous tick, tick], so the tick is when the fill is known at the latest."""
        got = self._touch(side)
        if got is None:
            return None
        ticks, cross = got
        i, j = ticks.searchsorted((after_ms, until_ms), side="right").tolist()
        hit = np.flatnonzero(cross[i:j] <= price + 1e-9)  # NaN: never
        return int(ticks[i + hit[0]]) if hit.size else None

    def _touch(self, side: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(ticks, the lowest price a bid of ``side`` was crossed at per tick: min(its ask's
        low, 1 - the other bid's high)), once per window and side; None without a range (a lake
        before schema 5 or a writer that does not record it: every value NaN)."""
        cache = self.__dict__.setdefault("_touch_cache", {})
        if side not in cache:
            lows = self.ask_lows_up if side == UP else self.ask_lows_down
            highs = self.bid_highs_down if side == UP else self.bid_highs_up
            got = None
            n = min(len(self.ticks), len(lows), len(highs))
            if n:
                cross = np.fmin(_floats(lows)[:n], 1.0 - _floats(highs)[:n])
                if not np.isnan(cross).all():
                    got = (np.asarray(self.ticks, dtype=np.int64)[:n], cross)
            cache[side] = got
        return cache[side]

    def bids(self, side: str) -> Sequence[float | None]:
        return self.bids_up if side == UP else self.bids_down

    def mid_at(self, side: str, ms: int) -> float | None:
        """The side's mid at the first snapshot at or after ``ms`` (None: no two-sided quote)."""
        ticks, mids = self._mids(side)
        i = int(ticks.searchsorted(ms, side="left"))
        if i >= len(mids):
            return None
        m = float(mids[i])
        return None if m != m else m

    def mids_at(self, side: str, a_ms: int, b_ms: int) -> tuple[float | None, float | None]:
        """``mid_at`` for two times in one lookup (the markouts' 10 s and 60 s)."""
        ticks, mids = self._mids(side)
        n = len(mids)
        i, j = ticks.searchsorted((a_ms, b_ms), side="left").tolist()
        x = float(mids[i]) if i < n else float("nan")
        y = float(mids[j]) if j < n else float("nan")
        return (None if x != x else x), (None if y != y else y)

    def _mids(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(ticks, mids) as arrays, built once per window and side (NaN: no two-sided quote)."""
        cache = self.__dict__.setdefault("_mid_cache", {})
        got = cache.get(side)
        if got is None:
            ticks = np.asarray(self.ticks, dtype=np.int64)
            b, a = _floats(self.bids(side)), _floats(self.asks(side))
            n = min(len(ticks), len(b), len(a))
            got = cache[side] = (ticks[:n], (b[:n] + a[:n]) / 2.0)
        return got

    def asks(self, side: str) -> Sequence[float | None]:
        return self.asks_up if side == UP else self.asks_down


def _floats(xs: Sequence[float | None]) -> np.ndarray:
    if isinstance(xs, np.ndarray):
        return xs.astype(np.float64, copy=False)
    return np.array([np.nan if x is None else x for x in xs], dtype=np.float64)
