"""The touch's range between two snapshot ticks, from a window's 1 s books.

A collector applies every book update and keeps, per token, the lowest best ask and highest best
bid since its previous row (``ingest.books``: ``ask_low`` / ``bid_high``). Capturing at tick g
(within ~50 ms of it), it has seen the books of seconds g - step .. g: the one its previous row
read (on display until g - step + 0.75) through the one on display now. The backfill writes the
same values from the same books, so a live window and its backfilled twin still agree.
"""

from __future__ import annotations

import numpy as np

from slotml.ingest.schema import TOUCH_COLUMNS

# (column, book attribute, lowest?) in schema order
_SOURCES = tuple(zip(TOUCH_COLUMNS, ("up_ask", "up_bid", "down_ask", "down_bid"),
                     (True, False, True, False), strict=True))


def touch_ranges(books, start: int, ticks: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """Per tick (epoch s) of one window: each touch column in cents (0: no quote was seen).
    ``books``: the window's ``WindowBooks`` at 1 s (index 0 = every second before the start)."""
    n = len(books.up_ask)
    k_hi = np.clip(np.asarray(ticks, dtype=np.int64) - start + 1, 0, n - 1)
    # segments [k - step, k] of the books padded with step copies of book 0 in front (every
    # second before the start shows it): [k_hi, k_hi + step + 1) there, reduced in one call
    # (reduceat over interleaved bounds; the odd results are discarded)
    idx = np.empty(2 * len(k_hi), dtype=np.int64)
    idx[0::2], idx[1::2] = k_hi, k_hi + step + 1
    out = {}
    for col, attr, lowest in _SOURCES:
        a = getattr(books, attr).astype(np.float64)
        a[a == 0] = np.inf if lowest else -np.inf  # an empty side is no quote
        padded = np.concatenate([np.full(step, a[0]), a, a[-1:]])  # the last: a valid end bound
        r = (np.minimum if lowest else np.maximum).reduceat(padded, idx)[0::2]
        out[col] = np.where(np.isfinite(r), r, 0.0)
    return out
