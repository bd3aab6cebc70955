"""The CLOB market websocket (``/ws/market``) and the book loop that feeds it.

Subscribe answers a ``book`` array; then, each second s at s - BOOK_LEAD_S, the loop diffs every
tracked book into ``price_change`` (+ ``best_bid_ask`` with ``custom_feature_enabled``), sends
``new_market``/``market_resolved`` and closes sockets whose assets all resolved. Between
publications, ``book_rate`` size changes per token per second touch only levels below the top (the
row columns never see them), and ``print_rate`` trade prints go out (``prints.py``). The loop also
prefetches the next window of every asset.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import Any

from aiohttp import web

from slotml.sim import render
from slotml.sim.faults import Faults
from slotml.sim.services.books import BOOK_LEAD_S, Books, book_second
from slotml.sim.services.connections import Client, Connections, sleep_until
from slotml.sim.services.prints import Prints
from slotml.sim.world import Market, World

log = logging.getLogger(__name__)


def world_listing(world: World, now: float) -> list[Market]:
    """Create (register) every market listed by ``now``; returns those newly created."""
    w = world
    before = len(w.by_condition)
    for fam, length in w.lengths.items():  # each family up to its own listing horizon
        w.markets_between(now - 2 * length, w.listed_horizon(now, fam), families=(fam,))
    if len(w.by_condition) == before:
        return []
    return list(w.by_condition.values())[before:]


class MarketWs:
    def __init__(self, world: World, faults: Faults, conns: Connections, books: Books,
                 stats: Counter) -> None:
        self.world = world
        self.config = world.config
        self.faults = faults
        self.conns = conns
        self.books = books
        self.stats = stats
        self._resolved_sent: set[str] = set()
        self._rng = random.Random(self.config.seed)
        self._prefetched = 0
        self.prints = Prints(world, conns, books, stats)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ws/market", self.ws_market)]

    def warm_up(self, now: float) -> None:
        """Before serving: register the listed markets and build every asset's regime chain."""
        world_listing(self.world, now)
        cur = self.world.tick_bounds(now)[0]
        self.world.prefetch(cur)
        self._prefetched = cur

    async def ws_market(self, request: web.Request) -> web.WebSocketResponse:
        return await self.conns.serve(request, "market", self._market_msg, self._invalid)

    def _invalid(self, c: Client) -> None:
        c.send("INVALID OPERATION", control=True)

    def _market_msg(self, c: Client, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        ids = [str(a) for a in obj.get("assets_ids") or []]
        op = obj.get("operation")
        if obj.get("custom_feature_enabled") is not None and op != "unsubscribe":
            c.custom = bool(obj.get("custom_feature_enabled"))
        if op == "unsubscribe":
            c.assets.difference_update(ids)
            return
        if op not in (None, "subscribe") and obj.get("type", "").lower() != "market":
            return
        now = time.time()
        second = book_second(now)
        new = [a for a in ids if a not in c.assets]
        c.assets.update(ids)
        books = []
        for token in new:
            got = self.world.by_token.get(token)
            if got is None:
                continue
            m, _ = got
            if self.world.is_resolved(m, now):
                continue
            self.books.track(m, second)
            books.append(render.ws_book(m, token, self.books.book_now(m, token, second), int(now * 1000)))
        if books:
            c.send(books)
            self.stats["book_events"] += len(books)

    async def run(self) -> None:
        """The book loop: one publication per second, plus the flicker in between."""
        s = book_second(time.time()) + 1
        last = time.time()
        while True:
            await sleep_until(s - BOOK_LEAD_S)
            now = time.time()
            if now - (s - BOOK_LEAD_S) > 2.0:  # fell behind (suspended): skip ahead
                s = book_second(now)
            try:
                self._lifecycle(last, now)
                self._publish_books(s, now)
                self.prints.schedule(s, now)
            except Exception:  # noqa: BLE001 - the venue keeps running whatever happens
                log.exception("book loop")
            last = now
            self._maybe_prefetch(now)
            rate = self.config.book_rate
            n_flicker = int(rate) + (1 if self._rng.random() < rate - int(rate) else 0)
            for j in range(1, n_flicker):
                await sleep_until(s - BOOK_LEAD_S + j / n_flicker)
                self._flicker()
            s += 1

    def _maybe_prefetch(self, now: float) -> None:
        """Compute the next window of every asset in a worker thread before it is needed, so a
        rollover with hundreds of assets does not stall the event loop."""
        w = self.world.tick_s
        nxt = self.world.tick_bounds(now)[1]
        if nxt > self._prefetched and nxt - now < max(2.0, 0.3 * w):
            self._prefetched = nxt
            fut = asyncio.get_running_loop().run_in_executor(None, self.world.prefetch, nxt)
            fut.add_done_callback(lambda f: f.exception() and log.error("prefetch: %r", f.exception()))

    def _publish_books(self, s: int, now: float) -> None:
        subscribed: set[str] = set()
        for c in self.conns.clients:
            if c.kind == "market":
                subscribed |= c.assets
        t_ms = str(int(now * 1000))
        for cond, sent in list(self.books.sent.items()):
            m = self.world.by_condition[cond]
            if not (subscribed & set(sent)):
                del self.books.sent[cond]
                continue
            if self.world.is_resolved(m, now):
                continue
            up, down = self.world.book_levels(m, s)
            up = self.books.faulted(m, m.up_token, up)
            changes = []
            for token, book in ((m.up_token, up), (m.down_token, down)):
                for side_name, wire_side in (("bids", "BUY"), ("asks", "SELL")):
                    old = sent[token][side_name]
                    new = dict(book[side_name])
                    for cents in sorted(set(old) | set(new)):
                        if old.get(cents) != new.get(cents):
                            changes.append((token, cents, new.get(cents, 0.0), wire_side))
                    sent[token][side_name] = new
            if changes:
                self._emit_changes(m, changes, t_ms)

    def _emit_changes(self, m: Market, changes: list[tuple[str, int, float, str]], t_ms: str) -> None:
        sent = self.books.sent[m.condition_id]
        self.books.note(m, int(t_ms))
        tops = {}
        for token in (m.up_token, m.down_token):
            b = sent[token]
            tops[token] = (max(b["bids"]) if b["bids"] else None, min(b["asks"]) if b["asks"] else None)
        entries = []
        for token, cents, size, side in changes:
            bb, ba = tops[token]
            entries.append({"asset_id": token, "price": render.px(cents), "size": render.sz(size),
                            "side": side, "hash": render.book_hash(token, t_ms),
                            "best_bid": render.px(bb) if bb else "0",
                            "best_ask": render.px(ba) if ba else "1"})
        f = self.faults.find("crossed_book")
        if f and any(e["asset_id"] == m.up_token for e in entries):
            bb, ba = tops[m.up_token]
            if bb is not None and ba is not None and bb >= ba:
                self.faults.use(f)
        for c in list(self.conns.clients):
            if c.kind != "market":
                continue
            mine = [e for e in entries if e["asset_id"] in c.assets]
            if not mine:
                continue
            c.send({"market": m.condition_id, "price_changes": mine, "timestamp": t_ms,
                    "event_type": "price_change"})
            self.stats["price_change_events"] += 1
            if c.custom:
                for token in {e["asset_id"] for e in mine}:
                    bb, ba = tops[token]
                    if bb is None or ba is None:
                        continue
                    c.send({"event_type": "best_bid_ask", "market": m.condition_id, "asset_id": token,
                            "best_bid": render.px(bb), "best_ask": render.px(ba),
                            "spread": render.px(ba - bb), "timestamp": t_ms})

    def _flicker(self) -> None:
        """A size change below the top of one tracked book (book_rate): the top never moves."""
        if not self.books.sent:
            return
        t_ms = str(int(time.time() * 1000))
        for cond, sent in list(self.books.sent.items()):
            m = self.world.by_condition[cond]
            if self.world.is_resolved(m, time.time()):
                continue
            changes = []
            for token in (m.up_token, m.down_token):
                for side_name, wire in (("bids", "BUY"), ("asks", "SELL")):
                    levels = sorted(sent[token][side_name], reverse=side_name == "bids")
                    if len(levels) < 2:
                        continue
                    cents = levels[self._rng.randrange(1, len(levels))]
                    size = round(sent[token][side_name][cents] * self._rng.uniform(0.7, 1.3), 2) or 1.0
                    sent[token][side_name][cents] = size
                    changes.append((token, cents, size, wire))
                    break
            if changes:
                self._emit_changes(m, changes, t_ms)

    def _lifecycle(self, last: float, now: float) -> None:
        t_ms = int(now * 1000)
        for m in world_listing(self.world, now):
            if last < m.listed_at <= now:
                ev = render.new_market_event(m, t_ms)
                for c in self.conns.clients:
                    if c.kind == "market" and c.custom:
                        c.send(ev)
        for c in list(self.conns.clients):
            if c.kind != "market" or not c.assets:
                continue
            markets = {self.world.by_token[a][0] for a in c.assets if a in self.world.by_token}
            for m in markets:
                key = f"{id(c)}:{m.condition_id}"
                if self.world.is_resolved(m, now) and key not in self._resolved_sent:
                    self._resolved_sent.add(key)
                    if c.custom:
                        c.send(render.market_resolved_event(self.world, m, t_ms))
                        self.stats["market_resolved_events"] += 1
            known = [a for a in c.assets if a in self.world.by_token]
            if known and all(self.world.is_resolved(self.world.by_token[a][0], now) for a in known):
                c.queue.put_nowait(("close", "all subscribed assets resolved"))
                c.assets = set()
