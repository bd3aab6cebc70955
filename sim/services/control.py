"""The control API (``/_sim``): ground truth for tests (markets, oracle, quote, prices, outcome),
stats, and fault switching.

``inject`` is where a fault is switched on (``POST /_sim/faults`` and ``SimHandle.inject``); it
fires the one-shot faults on the open sockets now. Lasting faults are applied by the service
they affect.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from aiohttp import web

from slotml.sim import render
from slotml.sim.faults import KINDS, Faults, bad_frame
from slotml.sim.services.books import Books
from slotml.sim.services.connections import Connections
from slotml.sim.services.polybolt import PolyBolt, pyth_at
from slotml.sim.world import Market, World

SECRET_KEYS = ("order_key", "polybolt_key", "polybolt_secret", "polybolt_passphrase")


class Control:
    def __init__(self, world: World, faults: Faults, conns: Connections, stats: Counter,
                 polybolt: PolyBolt | None = None, books: Books | None = None) -> None:
        self.polybolt = polybolt
        self.books = books
        self.world = world
        self.config = world.config
        self.faults = faults
        self.conns = conns
        self.stats = stats

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/_sim/health", self.sim_health),
                web.get("/_sim/config", self.sim_config),
                web.get("/_sim/markets", self.sim_markets),
                web.get("/_sim/oracle", self.sim_oracle),
                web.get("/_sim/quote", self.sim_quote),
                web.get("/_sim/prices", self.sim_prices),
                web.get("/_sim/outcome", self.sim_outcome),
                web.get("/_sim/books_sent", self.sim_books_sent),
                web.get("/_sim/stats", self.sim_stats),
                web.get("/_sim/faults", self.sim_faults),
                web.post("/_sim/faults", self.sim_fault_add),
                web.delete("/_sim/faults", self.sim_fault_clear)]

    async def sim_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "now": time.time(), "family": self.config.family})

    async def sim_config(self, request: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in asdict(self.config).items()
                                  if k not in SECRET_KEYS})

    def _market_info(self, m: Market) -> dict[str, Any]:
        return {"symbol": m.symbol, "family": m.family, "slug": m.slug, "start": m.start, "end": m.end,
                "condition_id": m.condition_id, "up_token": m.up_token, "down_token": m.down_token,
                "settlement": m.settlement, "listed_at": m.listed_at, "p2b_at": m.p2b_at,
                "closed_at": m.closed_at, "resolved_at": m.resolved_at, "winner_at": m.winner_at,
                "final_at": m.final_at}

    async def sim_markets(self, request: web.Request) -> web.Response:
        now = time.time()
        w = self.world.window_s
        cur = int(now // w) * w
        t0 = float(request.query.get("start_min", cur))
        t1 = float(request.query.get("start_max", cur + w))
        syms = request.query.get("symbols")
        ms = self.world.markets_between(t0, t1, tuple(syms.upper().split(",")) if syms else None)
        return web.json_response([self._market_info(m) for m in ms])

    def _token_t(self, request: web.Request) -> tuple[Market, int, int] | web.Response:
        token = request.query.get("token_id", "")
        got = self.world.by_token.get(token)
        if got is None:
            return web.json_response({"error": "unknown token"}, status=404)
        t = int(float(request.query.get("t", time.time())))
        return got[0], got[1], t

    async def sim_oracle(self, request: web.Request) -> web.Response:
        got = self._token_t(request)
        if isinstance(got, web.Response):
            return got
        m, idx, t = got
        p = self.world.window(m).oracle_at(t)
        return web.json_response({"slug": m.slug, "t": t, "p_up": p, "p_token": p if idx == 0 else 1 - p})

    async def sim_quote(self, request: web.Request) -> web.Response:
        got = self._token_t(request)
        if isinstance(got, web.Response):
            return got
        m, idx, t = got
        book = self.world.book_levels(m, t)[idx]
        bid, ask = render.top(book)
        return web.json_response({
            "slug": m.slug, "t": t, "bid": bid / 100 if bid else None, "ask": ask / 100 if ask else None,
            "bid_size": book["bids"][0][1] if book["bids"] else None,
            "ask_size": book["asks"][0][1] if book["asks"] else None,
            "maker_p_up": float(self.world.window(m).books.p[self.world.window(m).at(t)]),
            # the levels published for second t, best first (between publications book_rate
            # flickers may change the sizes below the top)
            "bids": [[c / 100, z] for c, z in book["bids"]],
            "asks": [[c / 100, z] for c, z in book["asks"]],
        })

    async def sim_prices(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol", "BTC").upper()
        if sym not in self.world.symbols:
            return web.json_response({"error": "unknown symbol"}, status=404)
        t = int(float(request.query.get("t", time.time())))
        p = self.world.path(sym)
        return web.json_response({"symbol": sym, "t": t, "spot": p.spot_at(t), "twap": p.twap_at(t),
                                  "pyth": pyth_at(p, t)})

    async def sim_books_sent(self, request: web.Request) -> web.Response:
        """Every book state the market channel sent for one market (``slug``), oldest first, as
        ``{"t": epoch s, "books": {token: {"bids": [[price, size]...], "asks": ...}}}`` (top 5
        levels, the last ``SENT_HISTORY_S``; ``Books.note``; empty unless the sim runs with
        ``SimConfig.keep_sent_books``).

        Why: the flicker between publications is random, so ``/_sim/quote`` (the world's book of
        a second) cannot say which sizes below the top a collector saw at an instant; this can.
        A test of two collectors capturing one tick a moment apart checks each side against it."""
        m = self.world.market_by_slug(request.query.get("slug", ""))
        if m is None or self.books is None:
            return web.json_response({"error": "unknown slug"}, status=404)
        def wire(levels: list) -> list:  # as the collector reads the wire's strings
            return [[c / 100, float(render.sz(z))] for c, z in levels]

        out = [{"t": t_ms / 1000, "books": {tok: {"bids": wire(bids), "asks": wire(asks)}
                                           for tok, (bids, asks) in state.items()}}
               for t_ms, cond, state in list(self.books.history) if cond == m.condition_id]
        return web.json_response(out)

    async def sim_outcome(self, request: web.Request) -> web.Response:
        m = self.world.market_by_slug(request.query.get("slug", ""))
        if m is None:
            return web.json_response({"error": "unknown slug"}, status=404)
        wd = self.world.window(m)
        return web.json_response({"slug": m.slug, "up": wd.up, "price_to_beat": wd.p2b,
                                  "final_price": wd.final, "spot_price_to_beat": wd.spot_p2b})

    async def sim_stats(self, request: web.Request) -> web.Response:
        clients = self.conns.clients
        return web.json_response({"stats": dict(self.stats), "faults_emitted": dict(self.faults.emitted),
                                  "clients": {"market": sum(c.kind == "market" for c in clients),
                                              "rtds": sum(c.kind == "rtds" for c in clients),
                                              "polybolt": sum(c.kind == "polybolt"
                                                              for c in clients)}})

    async def sim_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"kinds": KINDS, "active": [f.as_dict() for f in self.faults.active]})

    async def sim_fault_add(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            kind = str(body.pop("kind"))
        except Exception:  # noqa: BLE001
            return web.json_response({"error": "POST {\"kind\": ..., params...}"}, status=400)
        try:
            f = self.inject(kind, **body)
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(f)

    async def sim_fault_clear(self, request: web.Request) -> web.Response:
        fid = request.query.get("id")
        return web.json_response({"cleared": self.faults.clear(int(fid) if fid else None)})

    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        """Inject a fault now (the control API and ``SimHandle.inject`` both land here)."""
        f = self.faults.add(kind, params)
        target = f.target
        now_ms = int(time.time() * 1000)
        clients = self.conns.clients
        hit = [c for c in clients if target in ("all", c.kind)]
        if kind in ("ws_drop", "service_down"):
            for c in hit:
                c.closing = True
                if c.transport is not None:
                    c.transport.abort()
            self.faults.note(kind, len(hit))
        elif kind in ("malformed", "truncated", "unknown_event"):
            n = int(params.get("count", 1))
            for c in hit:
                for _ in range(n):
                    seq = (self.polybolt.next_seq(c) if c.kind == "polybolt" and kind != "malformed"
                           and self.polybolt is not None else None)
                    c.send(bad_frame(kind, c.kind, now_ms, seq))
            self.faults.note(kind, len(hit) * n)
        elif kind in ("pb_close", "pb_revoke") and self.polybolt is not None:
            code = 4001 if kind == "pb_revoke" else int(params.get("code", 4003))
            reason = {4001: "auth revoked", 4002: "slow consumer", 4003: "server draining",
                      4008: "policy violation"}.get(code, "sim fault")
            self.faults.note(kind, self.polybolt.close_all(code, reason))
        elif kind == "resolve_close":
            hit = [c for c in clients if c.kind == "market"]
            for c in hit:
                c.queue.put_nowait(("close", "all subscribed assets resolved"))
            self.faults.note(kind, len(hit))
        elif kind == "tick_size_change":
            n = 0
            for c in clients:
                if c.kind != "market":
                    continue
                for token in sorted(c.assets):
                    m = self.world.by_token.get(token, (None,))[0]
                    if m is None:
                        continue
                    c.send({"event_type": "tick_size_change", "asset_id": token, "market": m.condition_id,
                            "old_tick_size": "0.01", "new_tick_size": "0.001", "timestamp": str(now_ms)})
                    n += 1
            self.faults.note(kind, n)
        return f.as_dict()
