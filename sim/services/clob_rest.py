"""CLOB REST (``/clob``): book, books, market, midpoint, price.

Books come from ``Books``, so REST answers what the market channel last published for a tracked
token; a resolved or unlisted market has no book (404). The ``ghost_book`` fault applies here.
"""

from __future__ import annotations

import time

from aiohttp import web

from slotml.sim import render
from slotml.sim.faults import Faults
from slotml.sim.services.books import Books, book_second
from slotml.sim.world import Market, World


class ClobRest:
    def __init__(self, world: World, faults: Faults, books: Books) -> None:
        self.world = world
        self.faults = faults
        self.books = books

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/clob/book", self.clob_book),
                web.post("/clob/books", self.clob_books),
                web.get("/clob/markets/{condition_id}", self.clob_market),
                web.get("/clob/midpoint", self.clob_midpoint),
                web.get("/clob/price", self.clob_price)]

    def _rest_book(self, token: str, now: float) -> tuple[Market, dict] | None:
        got = self.world.by_token.get(token)
        if got is None:
            return None
        m, _ = got
        if self.world.is_resolved(m, now) or not self.world.is_listed(m, now):
            return None
        book = self.books.book_now(m, token, book_second(now))
        f = self.faults.find("ghost_book")
        if f:
            self.faults.use(f)
            book = {"bids": [(1, 500.0)], "asks": [(99, 500.0)]}
        return m, book

    async def clob_book(self, request: web.Request) -> web.Response:
        token = request.query.get("token_id")
        if not token:
            return web.json_response({"error": "Invalid payload"}, status=400)
        now = time.time()
        got = self._rest_book(token, now)
        if got is None:
            return web.json_response({"error": "No orderbook exists for the requested token id"}, status=404)
        m, book = got
        return web.json_response(render.clob_book(m, token, book, int(now * 1000)))

    async def clob_books(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            tokens = [str(x["token_id"]) for x in body]
        except Exception:  # noqa: BLE001
            return web.json_response({"error": "Invalid payload"}, status=400)
        now = time.time()
        out = []
        for token in tokens:
            got = self._rest_book(token, now)
            if got is not None:
                out.append(render.clob_book(got[0], token, got[1], int(now * 1000)))
        return web.json_response(out)

    async def clob_market(self, request: web.Request) -> web.Response:
        m = self.world.by_condition.get(request.match_info["condition_id"])
        now = time.time()
        if m is None or not self.world.is_listed(m, now):
            return web.json_response({"error": "market not found"}, status=404)
        return web.json_response(render.clob_market(self.world, m, now))

    async def clob_midpoint(self, request: web.Request) -> web.Response:
        got = self._rest_book(request.query.get("token_id", ""), time.time())
        if got is None:
            return web.json_response({"error": "No orderbook exists for the requested token id"}, status=404)
        bid, ask = render.top(got[1])
        if bid is None or ask is None:
            return web.json_response({"error": "No orderbook exists for the requested token id"}, status=404)
        return web.json_response({"mid": f"{(bid + ask) / 200:.3f}".rstrip("0").rstrip(".")})

    async def clob_price(self, request: web.Request) -> web.Response:
        side = request.query.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            return web.json_response({"error": "Invalid side"}, status=400)
        got = self._rest_book(request.query.get("token_id", ""), time.time())
        if got is None:
            return web.json_response({"error": "No orderbook exists for the requested token id"}, status=404)
        bid, ask = render.top(got[1])
        c = bid if side == "BUY" else ask  # live wire: BUY = best bid, SELL = best ask
        if c is None:
            return web.json_response({"error": "No orderbook exists for the requested token id"}, status=404)
        return web.json_response({"price": render.px(c)})
