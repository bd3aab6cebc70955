"""The books on display: what the market channel last published, which CLOB REST answers too.

The book of second s is published at s - BOOK_LEAD_S so a collector capturing at the tick instant s
sees exactly the state a backfill computes for s (``sim/backfill.py`` imports BOOK_LEAD_S from
here). REST and the websocket share this state so they never disagree about a tracked book.
"""

from __future__ import annotations

import math
import time
from collections import deque

from slotml.sim.faults import Faults
from slotml.sim.world import Market, World

BOOK_LEAD_S = 0.25
SENT_HISTORY_S = 120.0  # how long ``Books.history`` keeps the states sent
DEPTH = 5  # levels a side it keeps (the collector records 5)


def book_second(now: float) -> int:
    """The second whose book state is on display at wall time ``now``."""
    return int(math.floor(now + BOOK_LEAD_S))


class Books:
    """Per tracked market, the levels last sent on the wire (``sent``), and the crossed-book fault."""

    def __init__(self, world: World, faults: Faults) -> None:
        self.world = world
        self.faults = faults
        self.sent: dict[str, dict[str, dict[str, dict[int, float]]]] = {}  # cond -> token -> side -> {c: size}
        # (t_ms, cond, {token: (bids, asks)}): every state ``sent`` took, see ``note``
        self.history: deque[tuple[int, str, dict[str, tuple[list, list]]]] = deque()

    def track(self, m: Market, second: int) -> None:
        if m.condition_id in self.sent:
            return
        up, down = self.world.book_levels(m, second)
        self.sent[m.condition_id] = {
            m.up_token: {"bids": dict(up["bids"]), "asks": dict(up["asks"])},
            m.down_token: {"bids": dict(down["bids"]), "asks": dict(down["asks"])},
        }
        self.note(m, int(time.time() * 1000))

    def note(self, m: Market, t_ms: int) -> None:
        """Keep the state ``sent`` now holds for ``m`` (top DEPTH levels), stamped ``t_ms``, for
        the last SENT_HISTORY_S (``/_sim/books_sent`` answers it).

        Why: the book loop's flicker changes sizes below the top at random, so what the venue
        showed at an instant cannot be recomputed from the world afterwards; a test comparing two
        collectors that captured the same tick a moment apart checks each one's book against
        these states. Debug only: nothing in the sim reads it back; off unless
        ``SimConfig.keep_sent_books`` (a many-market run would keep ~100 MB)."""
        sent = self.sent.get(m.condition_id)
        if sent is None or not self.world.config.keep_sent_books:
            return
        h = self.history
        h.append((t_ms, m.condition_id,
                  {tok: (sorted(b["bids"].items(), reverse=True)[:DEPTH],
                         sorted(b["asks"].items())[:DEPTH]) for tok, b in sent.items()}))
        while h[0][0] < t_ms - SENT_HISTORY_S * 1000:
            h.popleft()

    def book_now(self, m: Market, token: str, second: int) -> dict:
        """What the websocket last published for this token if tracked, else the world's book."""
        sent = self.sent.get(m.condition_id)
        if sent is not None and token in sent:
            s = sent[token]
            return {"bids": sorted(s["bids"].items(), reverse=True), "asks": sorted(s["asks"].items())}
        return self.faulted(m, token, self.world.token_book(token, second) or {"bids": [], "asks": []})

    def faulted(self, m: Market, token: str, book: dict) -> dict:
        """Apply ``crossed_book``: a bid at the best ask on the Up book of the targeted market."""
        f = self.faults.find("crossed_book")
        if f and token == m.up_token and f.params.get("token_id", token) in (token, m.down_token):
            if book["asks"]:
                best_ask = book["asks"][0][0]
                if best_ask <= 99:
                    book = {"bids": [(best_ask, 123.0)] + [lv for lv in book["bids"] if lv[0] < best_ask],
                            "asks": book["asks"]}
        return book
