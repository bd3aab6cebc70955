"""The depth of the sim's quoted books for many ticks at once: the backfill's view of the levels
the live sim publishes (``WindowBooks.levels``), vectorised.

Same shape as ``levels``: from the best, one cent per level away from the touch, up to
``maker.LEVELS`` levels inside [1, 99] cents; sizes are the market's level weights times the
top-5 size (rounded to the cent as ``levels`` does); asks and the Down bids carry the weights
rotated by one. Kept apart from ``backfill`` so neither module outgrows the layout limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slotml.ingest.schema import DEPTH_LEVELS
from slotml.sim.maker import LEVELS, WindowBooks

# (token, side) -> (best quote attribute of WindowBooks, step in cents away from the touch, rotated)
SIDES = {("up", "bid"): ("up_bid", -1, False), ("up", "ask"): ("up_ask", +1, True),
         ("down", "bid"): ("down_bid", -1, True), ("down", "ask"): ("down_ask", +1, False)}

Depth = dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]]


def book_depth(books: WindowBooks, level_w: list[np.ndarray]) -> Depth:
    """Per (token, side), DEPTH_LEVELS pairs (cents, size) of arrays over the ticks; cents 0 =
    no level. ``level_w`` holds each tick's market level weights (Draws.level_w)."""
    lw = np.array(level_w, dtype=np.float64).reshape(-1, LEVELS)
    size = np.round(books.top5[:, None] * lw, 2)  # same numbers as WindowBooks.levels
    rot = np.roll(size, -1, axis=1)  # rot[k] = size[(k + 1) % LEVELS]
    out: Depth = {}
    for key, (attr, step, rotated) in SIDES.items():
        best = getattr(books, attr).astype(np.int64)
        sz = rot if rotated else size
        pairs = []
        for k in range(DEPTH_LEVELS):
            c = best + step * k
            ok = (best > 0) & (c >= 1) & (c <= 99) & (k < LEVELS)
            pairs.append((np.where(ok, c, 0), sz[:, k] if k < LEVELS else np.zeros(len(best))))
        out[key] = pairs
    return out


def depth_columns(depth: Depth) -> dict[str, list[Any]]:
    """The 40 depth columns as lists (make_snapshot's values: price = cents / 100, NULL pairs)."""
    cols: dict[str, list[Any]] = {}
    for token in ("up", "down"):
        for side in ("bid", "ask"):
            for k, (cents, size) in enumerate(depth[(token, side)], start=1):
                cl = cents.tolist()
                cols[f"{side}_{token}_l{k}"] = [c / 100 if c else None for c in cl]
                cols[f"{side}_size_{token}_l{k}"] = [s if c else None
                                                     for c, s in zip(cl, size.tolist(), strict=True)]
    return cols


def levels_at(depth: Depth, token: str, side: str, i: int) -> tuple[tuple[float, float], ...]:
    """Tick i's levels of one side, best first, as BookTop carries them."""
    out = []
    for cents, size in depth[(token, side)]:
        c = int(cents[i])
        if not c:
            break
        out.append((c / 100, float(size[i])))
    return tuple(out)
