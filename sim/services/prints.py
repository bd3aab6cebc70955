"""The market channel's trade prints (``last_trade_price``): the order flow's trades, on the wire.

The trades of a window are ``World.flow`` (``sim/flow.py``: takers against the maker's queues, a
pure function of the seed and the window), so the backfill writes the same prints into
``slot_trades``. After each book publication (second s, on display from s - BOOK_LEAD_S),
``schedule(s)`` sets timers for the frames of that second of every tracked, still trading market.
Frames are arrays (sometimes several prints at one instant), sometimes a bare object as in the real
capture; most prints carry a ``transaction_hash``, some none, and one taker against two makers
gives two prints sharing a hash. ``sent`` keeps every print sent, per token, for tests
(``GET /_sim/prints?token_id=``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from slotml.sim import render
from slotml.sim.flow import frames_of_second
from slotml.sim.services.books import Books
from slotml.sim.services.connections import Connections
from slotml.sim.world import Market, World

KEEP_TOKENS = 2000  # tokens whose sent prints are kept (oldest dropped first)
KEEP_PER_TOKEN = 20000


@dataclass(frozen=True)
class Frame:
    t_ms: int
    events: tuple[dict[str, Any], ...]
    bare: bool  # a single print sent as an object, not an array


def plan(world: World, m: Market, second: int) -> list[Frame]:
    """The print frames of market ``m`` during the display of second ``second`` (pure, seeded)."""
    if not m.start <= second <= m.end or world.config.print_rate == 0:
        return []
    f = world.flow(m)
    out = []
    for j in frames_of_second(f, m.start, m.window_s, second):
        idx = [int(i) for i in (f.frame == j).nonzero()[0]]
        evs = tuple(render.last_trade_price_event(
            m, m.tokens[int(f.token[i])], int(f.cents[i]), render.sz(float(f.size[i])),
            "BUY" if f.side[i] == 0 else "SELL", int(f.t_ms[i]), f.tx[i] or None) for i in idx)
        out.append(Frame(int(f.frame_t_ms[j]), evs, bool(f.frame_bare[j])))
    return out


class Prints:
    """Schedules and sends the prints of tracked markets; remembers what it sent."""

    def __init__(self, world: World, conns: Connections, books: Books, stats: Counter) -> None:
        self.world = world
        self.config = world.config
        self.conns = conns
        self.books = books
        self.stats = stats
        self.sent: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._timers: dict[int, asyncio.TimerHandle] = {}  # pending emissions (cancelled on stop)
        self._ids = itertools.count()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/_sim/prints", self.sim_prints)]

    async def sim_prints(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.sent.get(request.query.get("token_id", ""), ())))

    def schedule(self, second: int, now: float) -> None:
        """Set the timers of second ``second``'s prints (called right after its publication)."""
        if self.config.print_rate == 0 or not self.books.sent:
            return
        loop = asyncio.get_running_loop()
        for cond in list(self.books.sent):
            m = self.world.by_condition[cond]
            for f in plan(self.world, m, second):
                if not self._trading(m, f.t_ms / 1000):
                    continue
                key = next(self._ids)
                self._timers[key] = loop.call_later(max(0.0, f.t_ms / 1000 - now), self._fire, key, m, f)

    def stop(self) -> None:
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()

    def _fire(self, key: int, m: Market, f: Frame) -> None:
        self._timers.pop(key, None)
        self._emit(m, f)

    def _trading(self, m: Market, t: float) -> bool:
        """Orders are accepted until the market closes (books keep showing until it resolves)."""
        return t < m.closed_at and not self.world.is_resolved(m, t)

    def _emit(self, m: Market, f: Frame) -> None:
        if m.condition_id not in self.books.sent or not self._trading(m, time.time()):
            return  # unsubscribed or closed since scheduling
        events = f.events
        delivered: set[int] = set()
        for c in list(self.conns.clients):
            if c.kind != "market":
                continue
            mine = [i for i, e in enumerate(events) if e["asset_id"] in c.assets]
            if not mine:
                continue
            c.send(events[mine[0]] if f.bare and len(mine) == 1 else [events[i] for i in mine])
            delivered.update(mine)
        for i in sorted(delivered):
            self._record(events[i])
        self.stats["last_trade_price_events"] += len(delivered)

    def _record(self, ev: dict[str, Any]) -> None:
        token = ev["asset_id"]
        got = self.sent.get(token)
        if got is None:
            got = self.sent[token] = deque(maxlen=KEEP_PER_TOKEN)
            while len(self.sent) > KEEP_TOKENS:
                self.sent.popitem(last=False)
        got.append(ev)
