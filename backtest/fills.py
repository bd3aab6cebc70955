"""Fill models: small swappable classes, as hftbacktest's are. A fill model says at which limit a
policy's order goes in (``price``) and what it got (``execute``: a ``Fill`` or None);
``simulate`` does the rest (one entry a window).

- ``Taker`` (``taker``): buys at the side's best ask, walking the recorded top-five ask depth of
  the decision tick for the order's size (a book thinner than the order fills what it shows);
  pays the market's taker fee per level, ``rate x (p(1 - p))^exponent`` (``FeeSchedule``).
- ``MakerQueue`` (``maker-queue``, the default): a bid at the side's best bid joins the BACK of
  the visible queue at that price ``latency_ms`` after the decision. It moves forward only on
  prints at its price (hftbacktest's conservative queue model), counting complementary prints:
  a Down BUY at q is matched against Up bids at 1 - q, so for an Up bid at P the prints that
  reach it are Up SELLs at P and Down BUYs at 1 - P. A print THROUGH the price fills the rest;
  a print at the price fills what is left of it once the queue ahead is gone. A BOOK through
  the price fills the rest too, as in hftbacktest's exchange models (a buy fills in full once
  the best ask is at or below it): the snapshots' touch range since the previous tick (schema
  5) shows the side's ask at or below P, or the other token's bid at or above 1 - P, between two
  ticks a 30 s grid would never show; the fill is dated at that tick. The order is
  cancelled ``cancel_before_s`` before the window's end. It needs the window's tape: a window
  whose tape has a recorded gap is excluded (``simulate`` counts it), and a lake without
  prints makes the model unavailable.
- ``MakerOptimistic`` (``maker-optimistic``): the old rule, an upper bound: filled in full if a
  LATER snapshot shows the side's best ask at or below the bid.

Makers pay no fee. A maker rebate is credited per filled share only where the market's schedule
gives a rebate share (``FeeSchedule.rebate_share`` x the fee a taker would pay at that price);
otherwise there is none, never a constant.

A new fill model is one class here and one entry in ``FILL_MODELS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from slotml.backtest.rows import DecisionRow, Tape, WindowInfo
from slotml.serve.gate import UP

EPS = 1e-9
DEFAULT_LATENCY_MS = 250
DEFAULT_CANCEL_BEFORE_S = 30.0


@dataclass(frozen=True, slots=True)
class Fill:
    """What an order got: shares, average price, fee and rebate per share, and when."""

    shares: float
    price: float
    fee_per_share: float
    rebate_per_share: float
    ms: int


class FillModel(Protocol):
    name: ClassVar[str]
    taker: ClassVar[bool]  # pays the taker fee (the gate's edge counts it)
    needs_tape: ClassVar[bool]

    def price(self, row: DecisionRow, side: str) -> float | None: ...

    def execute(self, row: DecisionRow, info: WindowInfo, side: str, price: float,
                size: float) -> Fill | None: ...


def rebate_per_share(info: WindowInfo, price: float) -> float:
    """The maker rebate the market's schedule gives per share at ``price`` (0 without a share)."""
    share = float(getattr(info.fee, "rebate_share", 0.0) or 0.0)
    return share * info.fee.per_share(price, True) if share > 0 else 0.0


class Taker:
    name: ClassVar[str] = "taker"
    taker: ClassVar[bool] = True
    needs_tape: ClassVar[bool] = False

    def price(self, row: DecisionRow, side: str) -> float | None:
        return row.ask(side)

    def execute(self, row: DecisionRow, info: WindowInfo, side: str, price: float,
                size: float) -> Fill | None:
        levels = row.ask_depth(side)
        if not levels:  # no recorded depth: the best ask for the whole size
            return Fill(size, price, info.fee.per_share(price, True), 0.0, row.tick_ms)
        left, cost, fee = size, 0.0, 0.0
        for p, q in levels:
            take = min(left, q)
            cost += take * p
            fee += take * info.fee.per_share(p, True)
            left -= take
            if left <= EPS:
                break
        got = size - max(left, 0.0)
        if got <= EPS:
            return None
        return Fill(got, cost / got, fee / got, 0.0, row.tick_ms)


class MakerQueue:
    name: ClassVar[str] = "maker-queue"
    taker: ClassVar[bool] = False
    needs_tape: ClassVar[bool] = True

    def __init__(self, latency_ms: int = DEFAULT_LATENCY_MS,
                 cancel_before_s: float = DEFAULT_CANCEL_BEFORE_S) -> None:
        self.latency_ms = int(latency_ms)
        self.cancel_before_s = float(cancel_before_s)

    def price(self, row: DecisionRow, side: str) -> float | None:
        return row.bid(side)

    def window(self, row: DecisionRow, info: WindowInfo) -> tuple[int, int]:
        """(placement, cancel) times of an order decided at ``row``, epoch ms."""
        end = info.end_ms if info.end_ms is not None else (row.slot_ts + row.window_s) * 1000
        return row.tick_ms + self.latency_ms, int(end - self.cancel_before_s * 1000)

    def execute(self, row: DecisionRow, info: WindowInfo, side: str, price: float,
                size: float) -> Fill | None:
        tape = info.tape
        if tape is None:
            return None
        placed, cancel = self.window(row, info)
        if cancel <= placed:
            return None
        bid = row.bid(side)
        ahead = float(row.bid_size(side) or 0.0) if bid is not None and abs(bid - price) < EPS else 0.0
        through = info.through_ms(side, price, placed, cancel)  # the book through our bid
        ts, at, sizes = _bid_hits(tape, side)
        lo = ts.searchsorted(placed, side="left")
        hi = ts.searchsorted(cancel if through is None else min(cancel, through), side="left")
        left, first = size, None
        for x, q, t in zip(at[lo:hi].tolist(), sizes[lo:hi].tolist(), ts[lo:hi].tolist(), strict=True):
            if x < price - EPS:  # through our price: the rest fills
                first = t if first is None else first
                left = 0.0
                break
            if x <= price + EPS:  # at our price: the queue ahead goes first
                ahead -= q
                if ahead < 0:
                    take = min(left, -ahead)
                    ahead = 0.0
                    if take > 0:
                        first = t if first is None else first
                        left -= take
                        if left <= EPS:
                            break
        if through is not None and left > EPS:
            first = through if first is None else first
            left = 0.0
        got = size - max(left, 0.0)
        if got <= EPS or first is None:
            return None
        return Fill(got, price, 0.0, rebate_per_share(info, price), int(first))


def _bid_hits(tape: Tape, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The prints that meet a bid of ``side`` (its own token sold into bids, or the other token
    bought: a complementary match), as (ts_ms, price in the side's terms, size); built once per
    window and side."""
    cache = tape.__dict__.setdefault("_hits", {})
    got = cache.get(side)
    if got is None:
        up, buy = tape.up.astype(bool, copy=False), tape.buy.astype(bool, copy=False)
        mine = up if side == UP else ~up
        idx = np.flatnonzero((mine & ~buy) | (~mine & buy))
        px = tape.price[idx]
        got = cache[side] = (tape.ts_ms.astype(np.int64, copy=False)[idx],
                             np.where(mine[idx], px, 1.0 - px), tape.size[idx])
    return got


class MakerOptimistic:
    name: ClassVar[str] = "maker-optimistic"
    taker: ClassVar[bool] = False
    needs_tape: ClassVar[bool] = False

    def price(self, row: DecisionRow, side: str) -> float | None:
        return row.bid(side)

    def execute(self, row: DecisionRow, info: WindowInfo, side: str, price: float,
                size: float) -> Fill | None:
        """Filled in full at the first later snapshot whose ask is at or below the bid."""
        ticks = np.asarray(info.ticks, dtype=np.int64)
        asks = info.asks(side)
        asks = asks if isinstance(asks, np.ndarray) else np.array(
            [np.nan if a is None else a for a in asks], dtype=np.float64)
        i = int(np.searchsorted(ticks, row.tick_ms, side="right"))
        hit = np.flatnonzero(asks[i:len(ticks)] <= price + 1e-12)
        if hit.size == 0:
            return None
        return Fill(size, price, 0.0, rebate_per_share(info, price), int(ticks[i + hit[0]]))


FILL_MODELS: dict[str, type] = {m.name: m for m in (Taker, MakerQueue, MakerOptimistic)}
FILLS = tuple(FILL_MODELS)
DEFAULT_FILL = MakerQueue.name


def make_fill(name: str, *, latency_ms: int = DEFAULT_LATENCY_MS,
              cancel_before_s: float = DEFAULT_CANCEL_BEFORE_S) -> FillModel:
    """A fill model by name (ValueError for an unknown one)."""
    if name not in FILL_MODELS:
        raise ValueError(f"fill must be one of {FILLS}, got {name!r}")
    if name == MakerQueue.name:
        return MakerQueue(latency_ms, cancel_before_s)
    return FILL_MODELS[name]()
