"""The books on display: what the market channel last published, which CLOB REST answers too.

The book of second s is published at s - BOOK_LEAD_S so a collector capturing at the tick instant s
sees exactly the state a backfill computes for s (``sim/backfill.py`` imports BOOK_LEAD_S from
here). REST and the websocket share this state so they never disagree about a tracked book.
"""

from __future__ import annotations

import math

from slotml.sim.faults import Faults
from slotml.sim.world import Market, World

BOOK_LEAD_S = 0.25


def book_second(now: float) -> int:
    """The second whose book state is on display at wall time ``now``."""
    return int(math.floor(now + BOOK_LEAD_S))


class Books:
    """Per tracked market, the levels last sent on the wire (``sent``), and the crossed-book fault."""

    def __init__(self, world: World, faults: Faults) -> None:
        self.world = world
        self.faults = faults
        self.sent: dict[str, dict[str, dict[str, dict[int, float]]]] = {}  # cond -> token -> side -> {c: size}

    def track(self, m: Market, second: int) -> None:
        if m.condition_id in self.sent:
            return
        up, down = self.world.book_levels(m, second)
        self.sent[m.condition_id] = {
            m.up_token: {"bids": dict(up["bids"]), "asks": dict(up["asks"])},
            m.down_token: {"bids": dict(down["bids"]), "asks": dict(down["asks"])},
        }

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
