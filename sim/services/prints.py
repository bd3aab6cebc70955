"""The market channel's trade prints (``last_trade_price``): a minimal, seeded stand-in for order flow.

After each book publication (second s, on display from s - BOOK_LEAD_S), ``schedule(s)`` sets
timers for that second's prints of every tracked, still trading market: ``print_rate`` fills per
token per second (Poisson), a taker BUY at the token's best ask or SELL at its best bid, a few to a
few hundred shares. Frames are arrays (sometimes several prints at one instant), sometimes a bare
object as in the real capture; most prints carry a ``transaction_hash``, some none, and now and then
one taker fills two makers: two prints sharing a hash.

Everything but the price is a pure function of (seed, market, second) (``plan``), drawn from its own
generator so the books' random stream is untouched; the price is the top on display when the print
leaves. Prints do not move the book (the order-flow issue replaces this). ``sent`` keeps every print
sent, per token, for tests (``GET /_sim/prints?token_id=``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from slotml.sim import render
from slotml.sim.services.books import BOOK_LEAD_S, Books
from slotml.sim.services.connections import Connections
from slotml.sim.world import Market, World

HASH_SHARE = 0.7  # prints that carry a transaction_hash
PAIR_SHARE = 0.1  # fills that are one taker against two makers (two prints, one hash)
JOIN_SHARE = 0.3  # a print that shares the previous print's frame (same instant)
OBJECT_SHARE = 0.5  # single-print frames sent as a bare object rather than a 1-element array
SIZE_RANGE = (2.0, 400.0)
KEEP_TOKENS = 2000  # tokens whose sent prints are kept (oldest dropped first)
KEEP_PER_TOKEN = 20000


@dataclass(frozen=True)
class Fill:
    """One planned print, before its price is known (the price is the top when it leaves)."""

    token: str
    side: str  # BUY (at the ask) | SELL (at the bid)
    size: str  # as on the wire
    tx_hash: str | None


@dataclass(frozen=True)
class Frame:
    t_ms: int
    fills: tuple[Fill, ...]
    bare: bool  # a single print sent as an object, not an array


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    n, p, limit = 0, rng.random(), math.exp(-lam)
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def _size(rng: random.Random) -> str:
    lo, hi = SIZE_RANGE
    x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    digits = rng.choice((0, 2, 6))  # whole, cents, and the 6 decimals of a USDC-derived size
    return (f"{x:.{digits}f}".rstrip("0").rstrip(".") if digits else str(round(x))) or "1"


def plan(seed: int, m: Market, second: int, rate: float) -> list[Frame]:
    """The print frames of market ``m`` during the display of second ``second`` (pure, seeded)."""
    if rate <= 0:
        return []
    rng = random.Random(f"prints:{seed}:{m.condition_id}:{second}")
    t0 = int(round((second - BOOK_LEAD_S) * 1000))
    draws: list[tuple[int, int, Fill]] = []  # (offset ms, order, fill)
    for token in m.tokens:
        for _ in range(_poisson(rng, rate)):
            offset = rng.randrange(1000)
            side = "BUY" if rng.random() < 0.5 else "SELL"
            size = _size(rng)
            pair = rng.random() < PAIR_SHARE
            tx = f"0x{rng.getrandbits(256):064x}" if pair or rng.random() < HASH_SHARE else None
            draws.append((offset, len(draws), Fill(token, side, size, tx)))
            if pair:
                other = _size(rng)
                if other == size:
                    other = render.sz(float(size) + 1.0)
                draws.append((offset, len(draws), Fill(token, side, other, tx)))
    draws.sort(key=lambda d: (d[0], d[1]))
    frames: list[tuple[int, list[Fill]]] = []
    prev_tx: str | None = None
    for offset, _, fill in draws:
        together = fill.tx_hash is not None and fill.tx_hash == prev_tx  # one taker: one instant
        if frames and (together or rng.random() < JOIN_SHARE):
            frames[-1][1].append(fill)
        else:
            frames.append((t0 + offset, [fill]))
        prev_tx = fill.tx_hash
    return [Frame(t, tuple(fs), len(fs) == 1 and rng.random() < OBJECT_SHARE) for t, fs in frames]


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
        rate = self.config.print_rate
        if rate <= 0 or not self.books.sent:
            return
        loop = asyncio.get_running_loop()
        for cond in list(self.books.sent):
            m = self.world.by_condition[cond]
            for f in plan(self.config.seed, m, second, rate):
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
        shown = self.books.sent.get(m.condition_id)
        if shown is None or not self._trading(m, time.time()):
            return  # unsubscribed or closed since scheduling
        events = []
        for fill in f.fills:
            levels = shown[fill.token]["asks" if fill.side == "BUY" else "bids"]
            if not levels:
                continue  # nothing to trade against
            cents = min(levels) if fill.side == "BUY" else max(levels)
            events.append(render.last_trade_price_event(m, fill.token, cents, fill.size, fill.side,
                                                        f.t_ms, fill.tx_hash))
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
