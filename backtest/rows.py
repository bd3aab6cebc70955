"""What a replay reads from the lake, as plain rows: decision rows and what each window's market
said. The fill models and the simulation read these; only ``replay.py`` knows the lake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from slotml.serve.gate import UP, FeeSchedule


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

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.symbol, self.window_s, self.slot_ts)

    def bid(self, side: str) -> float | None:
        return self.bid_up if side == UP else self.bid_down

    def ask(self, side: str) -> float | None:
        return self.ask_up if side == UP else self.ask_down


@dataclass
class WindowInfo:
    """What the market said about one window: outcome, fees, minimum size, later asks."""

    resolved_up: bool
    fee: FeeSchedule = field(default_factory=FeeSchedule)
    min_order_size: float | None = None
    ticks: Sequence[int] = ()  # snapshot ticks, ascending
    asks_up: Sequence[float | None] = ()
    asks_down: Sequence[float | None] = ()

    def asks(self, side: str) -> Sequence[float | None]:
        return self.asks_up if side == UP else self.asks_down
