"""Fill models: small swappable classes, as hftbacktest's are. A fill model says at which price a
policy's order goes in and whether it fills; ``simulate`` does the rest (one entry a window).

- ``Taker``: buy at the side's best ask, pay the market's taker fee, always filled;
- ``MakerTouch``: a resting bid at the side's best bid, no fee, filled only if a LATER snapshot
  of the window shows that side's best ask at or below the bid.

A new fill model is one class here and one entry in ``FILL_MODELS``.
"""

from __future__ import annotations

from typing import ClassVar

from slotml.backtest.rows import DecisionRow, WindowInfo


class Taker:
    name: ClassVar[str] = "taker"
    taker: ClassVar[bool] = True  # pays the taker fee

    def price(self, row: DecisionRow, side: str) -> float | None:
        return row.ask(side)

    def filled(self, info: WindowInfo, side: str, price: float, after_ms: int) -> bool:
        return True


class MakerTouch:
    name: ClassVar[str] = "maker"
    taker: ClassVar[bool] = False

    def price(self, row: DecisionRow, side: str) -> float | None:
        return row.bid(side)

    def filled(self, info: WindowInfo, side: str, price: float, after_ms: int) -> bool:
        """Whether a later snapshot shows the side's best ask at or below the bid."""
        for t, a in zip(info.ticks, info.asks(side), strict=True):
            if t > after_ms and a is not None and a == a and a <= price + 1e-12:
                return True
        return False


FILL_MODELS: dict[str, Taker | MakerTouch] = {m.name: m for m in (Taker(), MakerTouch())}
FILLS = tuple(FILL_MODELS)
