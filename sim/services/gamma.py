"""Gamma REST (``/gamma``): events and markets by slug or series, as the venue lists them.

Only listed markets exist; outcome prices come from the book on display (``book_second``).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from slotml.sim import render
from slotml.sim.services.books import book_second
from slotml.sim.world import Market, World


class Gamma:
    def __init__(self, world: World) -> None:
        self.world = world

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/gamma/events/slug/{slug}", self.gamma_event_slug),
                web.get("/gamma/events", self.gamma_events),
                web.get("/gamma/markets/slug/{slug}", self.gamma_market_slug),
                web.get("/gamma/markets", self.gamma_markets)]

    def _listed(self, slug: str, now: float) -> Market | None:
        m = self.world.market_by_slug(slug)
        if m is None or not self.world.is_listed(m, now):
            return None
        return m

    async def gamma_event_slug(self, request: web.Request) -> web.Response:
        now = time.time()
        m = self._listed(request.match_info["slug"], now)
        if m is None:
            return web.json_response({"type": "not found error", "error": "not found"}, status=404)
        return web.json_response(render.gamma_event(self.world, m, now, book_second(now)))

    async def gamma_market_slug(self, request: web.Request) -> web.Response:
        now = time.time()
        m = self._listed(request.match_info["slug"], now)
        if m is None:
            return web.json_response({"type": "not found error", "error": "not found"}, status=404)
        return web.json_response(render.gamma_market(self.world, m, now, book_second(now)))

    def _closed_filter(self, request: web.Request, m: Market, now: float, default: bool | None) -> bool:
        """The venue's caveat: /events without `closed` returns only closed events, /markets
        without it only open ones."""
        q = request.query.get("closed")
        want = default if q is None else q.lower() == "true"
        return want is None or self.world.is_resolved(m, now) == want

    async def gamma_events(self, request: web.Request) -> web.Response:
        now = time.time()
        out = []
        if "series_id" in request.query:
            return web.json_response(self._series_events(request, now))
        for slug in request.query.getall("slug", []):
            m = self._listed(slug, now)
            if m is not None and self._closed_filter(request, m, now, default=True):
                out.append(render.gamma_event(self.world, m, now, book_second(now)))
        return web.json_response(out)

    def _series_events(self, request: web.Request, now: float) -> list[dict[str, Any]]:
        """``/events?series_id=&closed=false&limit=N``: a series' open windows, soonest first
        (``closed=true``: resolved ones, latest first; without ``closed`` only closed ones)."""
        w = self.world
        want = request.query["series_id"]
        fam, sym = next(((f, s) for f in w.families for s in w.symbols
                         if str(w.series_id(s, f)) == want), (None, None))
        if fam is None or sym is None:
            return []
        try:
            limit = max(1, min(500, int(request.query.get("limit", 20))))
        except ValueError:
            limit = 20
        q = request.query.get("closed")
        want_closed = True if q is None else q.lower() == "true"
        cur = w.bounds(now, fam)[0]
        out: list[dict[str, Any]] = []
        if want_closed:
            start, n = w.bounds(cur - 1, fam)[0], 0
            while len(out) < limit and n < 2000:
                m = w.market(sym, start, fam)
                if w.is_resolved(m, now):
                    out.append(render.gamma_event(w, m, now, book_second(now)))
                start, n = w.bounds(start - 1, fam)[0], n + 1
        else:
            start = cur
            for _ in range(20):
                start = w.bounds(start - 1, fam)[0]
            while len(out) < limit and start <= w.listed_horizon(now, fam):
                m = w.market(sym, start, fam)
                if not w.is_resolved(m, now) and w.is_listed(m, now):
                    out.append(render.gamma_event(w, m, now, book_second(now)))
                start = w.bounds(start, fam)[1]
        return out

    async def gamma_markets(self, request: web.Request) -> web.Response:
        now = time.time()
        out = []
        for slug in request.query.getall("slug", []):
            m = self._listed(slug, now)
            if m is not None and self._closed_filter(request, m, now, default=False):
                out.append(render.gamma_market(self.world, m, now, book_second(now)))
        return web.json_response(out)
