"""ONE aiohttp app on ONE port: Gamma (/gamma), CLOB REST (/clob), the CLOB market websocket
(/ws/market), the live-data relay (/rtds) and the control API (/_sim).

Time is real (nothing advances it). The book of second s is published at s - BOOK_LEAD_S so a
collector capturing at the tick instant s sees exactly the state a backfill computes for s;
between publications, ``book_rate`` size changes per token per second touch only levels below
the top (the row columns never see them). A live-data observation stamped s is relayed at
s + relay_delay_s +- 0.3 s, as the real relay lags (~1.5 s).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import random
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from aiohttp import WSMsgType, web

from slotml.sim import render
from slotml.sim.faults import KINDS, Faults
from slotml.sim.prices import twap_of
from slotml.sim.world import Market, World

log = logging.getLogger(__name__)

BOOK_LEAD_S = 0.25
RTDS_TOPICS = ("crypto_prices_chainlink", "crypto_prices_twap_sixty", "crypto_prices_twap_thirty",
               "crypto_prices")
RTDS_BACKFILL_POINTS = 60


def book_second(now: float) -> int:
    """The second whose book state is on display at wall time ``now``."""
    return int(math.floor(now + BOOK_LEAD_S))


class _Client:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request, kind: str) -> None:
        self.ws = ws
        self.transport = request.transport
        self.kind = kind  # "market" | "rtds"
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.assets: set[str] = set()
        self.custom = False
        self.topics: dict[str, set[str] | None] = {}  # rtds topic -> symbol filter (None = all)
        self.connection_id = base64.b64encode(os.urandom(13)).decode()[:18] + "=="
        self.closing = False

    def send(self, obj: Any, control: bool = False) -> None:
        if self.closing:
            return
        text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
        self.queue.put_nowait(("control" if control else "data", text))


class SimServer:
    def __init__(self, world: World) -> None:
        self.world = world
        self.config = world.config
        self.faults = Faults()
        self.clients: set[_Client] = set()
        self.stats: Counter = Counter()
        self._sent: dict[str, dict[str, dict[str, dict[int, float]]]] = {}  # cond -> token -> side -> {c: size}
        self._resolved_sent: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self._rng = random.Random(self.config.seed)
        self._held: list[tuple[_Client, str]] = []  # out-of-order fault
        self._prefetched = 0
        self.host = self.config.host
        self.port = self.config.port
        for f in self.config.faults:
            self.faults.add(f, {"duration_s": 1e9})

    # ---- lifecycle ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_mw])
        r = app.router
        r.add_get("/gamma/events/slug/{slug}", self.gamma_event_slug)
        r.add_get("/gamma/events", self.gamma_events)
        r.add_get("/gamma/markets/slug/{slug}", self.gamma_market_slug)
        r.add_get("/gamma/markets", self.gamma_markets)
        r.add_get("/clob/book", self.clob_book)
        r.add_post("/clob/books", self.clob_books)
        r.add_get("/clob/markets/{condition_id}", self.clob_market)
        r.add_get("/clob/midpoint", self.clob_midpoint)
        r.add_get("/clob/price", self.clob_price)
        r.add_get("/ws/market", self.ws_market)
        r.add_get("/rtds", self.ws_rtds)
        r.add_get("/_sim/health", self.sim_health)
        r.add_get("/_sim/config", self.sim_config)
        r.add_get("/_sim/markets", self.sim_markets)
        r.add_get("/_sim/oracle", self.sim_oracle)
        r.add_get("/_sim/quote", self.sim_quote)
        r.add_get("/_sim/prices", self.sim_prices)
        r.add_get("/_sim/outcome", self.sim_outcome)
        r.add_get("/_sim/stats", self.sim_stats)
        r.add_get("/_sim/faults", self.sim_faults)
        r.add_post("/_sim/faults", self.sim_fault_add)
        r.add_delete("/_sim/faults", self.sim_fault_clear)
        return app

    async def start(self) -> None:
        now = time.time()
        self.world_listing(now)
        w = self.world.window_s
        cur = int(now // w) * w
        self.world.prefetch(cur)  # builds every asset's regime chain before serving
        self._prefetched = cur
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._tasks = [asyncio.create_task(self._book_loop(), name="sim-books"),
                       asyncio.create_task(self._rtds_loop(), name="sim-rtds")]
        log.info("sim serving on http://%s:%d (family %s, seed %d)", self.host, self.port,
                 self.config.family, self.config.seed)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for c in list(self.clients):
            c.closing = True
            with contextlib.suppress(Exception):
                await c.ws.close(code=1001, message=b"server shutdown")
        if self._runner:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def world_listing(self, now: float) -> list[Market]:
        """Create (register) every market listed by ``now``; returns those newly created."""
        w = self.world
        before = len(w.by_condition)
        lo = w.window_s * (int(now // w.window_s) - 2)
        w.markets_between(lo, w.listed_horizon(now))
        if len(w.by_condition) == before:
            return []
        return list(w.by_condition.values())[before:]

    # ---- HTTP fault middleware -----------------------------------------------------------
    @web.middleware
    async def _fault_mw(self, request: web.Request, handler):
        path = request.path
        if not path.startswith("/_sim") and not path.startswith("/ws") and path != "/rtds":
            self.stats["http_requests"] += 1
            f = self.faults.find("slow")
            if f and path.startswith(str(f.params.get("prefix", "/"))):
                self.faults.use(f)
                await asyncio.sleep(float(f.params.get("delay_s", 5.0)))
            f = self.faults.find("http_status")
            if f and path.startswith(str(f.params.get("prefix", "/"))):
                self.faults.use(f)
                status = int(f.params.get("status", 500))
                headers = {}
                if status == 429 or "retry_after" in f.params:
                    headers["Retry-After"] = str(f.params.get("retry_after", 1))
                return web.json_response({"error": f"sim fault {status}"}, status=status, headers=headers)
            resp = await handler(request)
            f = self.faults.find("extra_fields", "http")
            if f and isinstance(resp, web.Response) and resp.content_type == "application/json":
                body = json.loads(resp.body)
                body = _with_extra(body)
                self.faults.use(f)
                return web.json_response(body, status=resp.status)
            return resp
        return await handler(request)

    # ---- Gamma ------------------------------------------------------------------------------
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
        sym = next((s for s in w.symbols if str(w.series_id(s)) == request.query["series_id"]), None)
        if sym is None:
            return []
        try:
            limit = max(1, min(500, int(request.query.get("limit", 20))))
        except ValueError:
            limit = 20
        q = request.query.get("closed")
        want_closed = True if q is None else q.lower() == "true"
        cur = int(now // w.window_s) * w.window_s
        out: list[dict[str, Any]] = []
        if want_closed:
            start = cur - w.window_s
            while len(out) < limit and start > cur - 2000 * w.window_s:
                m = w.market(sym, start)
                if w.is_resolved(m, now):
                    out.append(render.gamma_event(w, m, now, book_second(now)))
                start -= w.window_s
        else:
            start = cur - 20 * w.window_s
            while len(out) < limit and start <= w.listed_horizon(now):
                m = w.market(sym, start)
                if not w.is_resolved(m, now) and w.is_listed(m, now):
                    out.append(render.gamma_event(w, m, now, book_second(now)))
                start += w.window_s
        return out

    async def gamma_markets(self, request: web.Request) -> web.Response:
        now = time.time()
        out = []
        for slug in request.query.getall("slug", []):
            m = self._listed(slug, now)
            if m is not None and self._closed_filter(request, m, now, default=False):
                out.append(render.gamma_market(self.world, m, now, book_second(now)))
        return web.json_response(out)

    # ---- CLOB REST --------------------------------------------------------------------------
    def _rest_book(self, token: str, now: float) -> tuple[Market, dict] | None:
        got = self.world.by_token.get(token)
        if got is None:
            return None
        m, _ = got
        if self.world.is_resolved(m, now) or not self.world.is_listed(m, now):
            return None
        book = self._book_now(m, token, book_second(now))
        f = self.faults.find("ghost_book")
        if f:
            self.faults.use(f)
            book = {"bids": [(1, 500.0)], "asks": [(99, 500.0)]}
        return m, book

    def _book_now(self, m: Market, token: str, second: int) -> dict:
        """What the websocket last published for this token if tracked, else the world's book."""
        sent = self._sent.get(m.condition_id)
        if sent is not None and token in sent:
            s = sent[token]
            return {"bids": sorted(s["bids"].items(), reverse=True), "asks": sorted(s["asks"].items())}
        return self._faulted(m, token, self.world.token_book(token, second) or {"bids": [], "asks": []})

    def _faulted(self, m: Market, token: str, book: dict) -> dict:
        f = self.faults.find("crossed_book")
        if f and token == m.up_token and f.params.get("token_id", token) in (token, m.down_token):
            if book["asks"]:
                best_ask = book["asks"][0][0]
                if best_ask <= 99:
                    book = {"bids": [(best_ask, 123.0)] + [lv for lv in book["bids"] if lv[0] < best_ask],
                            "asks": book["asks"]}
        return book

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

    # ---- CLOB market websocket -------------------------------------------------------------
    async def ws_market(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_ws(request, "market")

    async def ws_rtds(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_ws(request, "rtds")

    async def _serve_ws(self, request: web.Request, kind: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        c = _Client(ws, request, kind)
        self.clients.add(c)
        self.stats[f"{kind}_connections"] += 1
        writer = asyncio.create_task(self._writer(c))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                text = msg.data.strip()
                if text in ("PING", "ping"):
                    c.send("PONG" if text == "PING" else "pong", control=True)
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    if kind == "rtds":
                        c.send({"message": "Invalid request body", "connectionId": c.connection_id,
                                "requestId": c.connection_id[:8]}, control=True)
                    else:
                        c.send("INVALID OPERATION", control=True)
                    continue
                if kind == "market":
                    self._market_msg(c, obj)
                else:
                    self._rtds_msg(c, obj)
        finally:
            self.clients.discard(c)
            c.closing = True
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        return ws

    async def _writer(self, c: _Client) -> None:
        while True:
            kind, text = await c.queue.get()
            if kind == "data":
                f = self.faults.find("ws_silent", c.kind)
                if f:
                    self.faults.use(f)
                    continue
                f = self.faults.find("extra_fields", c.kind)
                if f and text[:1] in "[{":
                    text = json.dumps(_with_extra(json.loads(text)), separators=(",", ":"))
                    self.faults.use(f)
            if kind == "close":
                c.closing = True
                with contextlib.suppress(Exception):
                    await c.ws.close(code=1000, message=text.encode())
                return
            try:
                await c.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            self.stats[f"{c.kind}_frames"] += 1

    def _market_msg(self, c: _Client, obj: Any) -> None:
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
            self._track(m, second)
            books.append(render.ws_book(m, token, self._book_now(m, token, second), int(now * 1000)))
        if books:
            c.send(books)
            self.stats["book_events"] += len(books)

    def _track(self, m: Market, second: int) -> None:
        if m.condition_id in self._sent:
            return
        up, down = self.world.book_levels(m, second)
        self._sent[m.condition_id] = {
            m.up_token: {"bids": dict(up["bids"]), "asks": dict(up["asks"])},
            m.down_token: {"bids": dict(down["bids"]), "asks": dict(down["asks"])},
        }

    async def _book_loop(self) -> None:
        s = book_second(time.time()) + 1
        last = time.time()
        while True:
            await _sleep_until(s - BOOK_LEAD_S)
            now = time.time()
            if now - (s - BOOK_LEAD_S) > 2.0:  # fell behind (suspended): skip ahead
                s = book_second(now)
            try:
                self._lifecycle(last, now)
                self._publish_books(s, now)
            except Exception:  # noqa: BLE001 - the venue keeps running whatever happens
                log.exception("book loop")
            last = now
            self._maybe_prefetch(now)
            rate = self.config.book_rate
            n_flicker = int(rate) + (1 if self._rng.random() < rate - int(rate) else 0)
            for j in range(1, n_flicker):
                await _sleep_until(s - BOOK_LEAD_S + j / n_flicker)
                self._flicker()
            s += 1

    def _maybe_prefetch(self, now: float) -> None:
        """Compute the next window of every asset in a worker thread before it is needed, so a
        rollover with hundreds of assets does not stall the event loop."""
        w = self.world.window_s
        nxt = (int(now // w) + 1) * w
        if nxt > self._prefetched and nxt - now < max(2.0, 0.3 * w):
            self._prefetched = nxt
            fut = asyncio.get_running_loop().run_in_executor(None, self.world.prefetch, nxt)
            fut.add_done_callback(lambda f: f.exception() and log.error("prefetch: %r", f.exception()))

    def _publish_books(self, s: int, now: float) -> None:
        subscribed: set[str] = set()
        for c in self.clients:
            if c.kind == "market":
                subscribed |= c.assets
        t_ms = str(int(now * 1000))
        for cond, sent in list(self._sent.items()):
            m = self.world.by_condition[cond]
            if not (subscribed & set(sent)):
                del self._sent[cond]
                continue
            if self.world.is_resolved(m, now):
                continue
            up, down = self.world.book_levels(m, s)
            up = self._faulted(m, m.up_token, up)
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
        sent = self._sent[m.condition_id]
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
        for c in list(self.clients):
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
        if not self._sent:
            return
        t_ms = str(int(time.time() * 1000))
        for cond, sent in list(self._sent.items()):
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
        for m in self.world_listing(now):
            if last < m.listed_at <= now:
                ev = render.new_market_event(m, t_ms)
                for c in self.clients:
                    if c.kind == "market" and c.custom:
                        c.send(ev)
        for c in list(self.clients):
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

    # ---- live-data relay ------------------------------------------------------------------
    def _rtds_msg(self, c: _Client, obj: Any) -> None:
        if not isinstance(obj, dict) or obj.get("action") not in ("subscribe", "unsubscribe"):
            c.send({"message": "Invalid request body", "connectionId": c.connection_id,
                    "requestId": c.connection_id[:8]}, control=True)
            return
        subs = obj.get("subscriptions") or []
        for sub in subs:
            topic = str(sub.get("topic", ""))
            typ = str(sub.get("type", "update"))
            if topic not in RTDS_TOPICS:
                msg = (f"topic: {topic} and type: {typ} not found")
                c.send({"body": {"message": f"leger GetTopics error: rpc error: code = NotFound desc = "
                                            f"{msg}, status: rpc error: code = NotFound desc = {msg}, "
                                            f"message: {msg}"}, "statusCode": 401}, control=True)
                continue
            if obj["action"] == "unsubscribe":
                c.topics.pop(topic, None)
                continue
            flt = sub.get("filters")
            syms: set[str] | None = None
            if flt:
                try:
                    fv = json.loads(flt) if isinstance(flt, str) and flt.startswith("{") else flt
                    if isinstance(fv, dict):
                        syms = {str(fv.get("symbol", "")).lower()}
                    else:
                        syms = {x.strip().lower() for x in str(fv).split(",")}
                except (json.JSONDecodeError, AttributeError):
                    syms = None
            c.topics[topic] = syms
            self._rtds_backfill(c, topic, syms)

    def _rtds_symbol(self, topic: str, sym: str) -> str:
        return f"{sym.lower()}usdt" if topic == "crypto_prices" else f"{sym.lower()}/usd"

    def _rtds_value(self, topic: str, sym: str, s: int) -> float:
        path = self.world.path(sym)
        if topic == "crypto_prices_chainlink":
            return path.spot_at(s)
        if topic == "crypto_prices_twap_sixty":
            return path.twap_at(s)
        if topic == "crypto_prices_twap_thirty":
            return float(twap_of(path.spot(s - 29, s), 30)[0])
        return round(path.spot_at(s) * 1.0001, 2)  # "Binance": a small basis, 2 decimals

    def _rtds_point(self, topic: str, sym: str, s: int) -> dict[str, Any]:
        v = self._rtds_value(topic, sym, s)
        if topic == "crypto_prices":
            return {"timestamp": s * 1000, "value": v, "full_accuracy_value": f"{v:.8f}"}
        return {"timestamp": s * 1000, "value": v, "full_accuracy_value": render.chainlink_value(v)}

    def _relay_delay(self, s: int) -> float:
        return self.world.relay_delay(s)

    def _last_published(self, now: float) -> int:
        s = int(now - self.config.relay_delay_s - 0.3) - 1
        while s + 1 + self._relay_delay(s + 1) <= now:
            s += 1
        return s

    def _rtds_backfill(self, c: _Client, topic: str, syms: set[str] | None) -> None:
        now = time.time()
        last = self._last_published(now)
        for sym in self.world.symbols:
            wire = self._rtds_symbol(topic, sym)
            if syms is not None and wire not in syms:
                continue
            data = [self._rtds_point(topic, sym, s) for s in range(last - RTDS_BACKFILL_POINTS + 1, last + 1)]
            if topic == "crypto_prices":
                data = [{"timestamp": d["timestamp"], "value": d["value"]} for d in data]
            payload: dict[str, Any] = {"data": data, "symbol": wire}
            if "twap" in topic:
                payload["window_s"] = 60 if topic.endswith("sixty") else 30
            c.send({"payload": payload, "timestamp": int(now * 1000), "topic": topic, "type": "subscribe"})
            self.stats["rtds_backfill_frames"] += 1

    async def _rtds_loop(self) -> None:
        s = self._last_published(time.time()) + 1
        while True:
            await _sleep_until(s + self._relay_delay(s))
            now = time.time()
            if now - s > 10:
                s = self._last_published(now)
            try:
                self._publish_rtds(s, now)
            except Exception:  # noqa: BLE001
                log.exception("rtds loop")
            s += 1

    def _publish_rtds(self, s: int, now: float) -> None:
        clients = [c for c in self.clients if c.kind == "rtds" and c.topics]
        if not clients:
            return
        dup = self.faults.find("duplicate", "rtds")
        ooo = self.faults.find("out_of_order", "rtds")
        held, self._held = self._held, []
        cache: dict[tuple[str, str], dict] = {}
        for c in clients:
            frames = []
            for topic, syms in list(c.topics.items()):
                for sym in self.world.symbols:
                    wire = self._rtds_symbol(topic, sym)
                    if syms is not None and wire not in syms:
                        continue
                    key = (topic, sym)
                    if key not in cache:
                        cache[key] = self._rtds_point(topic, sym, s)
                    payload = {**cache[key], "symbol": wire}
                    if "twap" in topic:
                        payload["window_s"] = 60 if topic.endswith("sixty") else 30
                    frames.append({"connection_id": c.connection_id, "payload": payload,
                                   "timestamp": int(now * 1000), "topic": topic, "type": "update"})
            for fr in frames:
                text = json.dumps(fr, separators=(",", ":"))
                if ooo:
                    self._held.append((c, text))
                else:
                    c.send(text)
                if dup:
                    c.send(text)
            self.stats["rtds_updates"] += len(frames)
        for c, text in held:  # the previous second's frames, after this second's
            c.send(text)
        if dup:
            self.faults.use(dup)
        if ooo:
            self.faults.use(ooo)

    # ---- control API -------------------------------------------------------------------------
    async def sim_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "now": time.time(), "family": self.config.family})

    async def sim_config(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.config))

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
        })

    async def sim_prices(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol", "BTC").upper()
        if sym not in self.world.symbols:
            return web.json_response({"error": "unknown symbol"}, status=404)
        t = int(float(request.query.get("t", time.time())))
        p = self.world.path(sym)
        return web.json_response({"symbol": sym, "t": t, "spot": p.spot_at(t), "twap": p.twap_at(t)})

    async def sim_outcome(self, request: web.Request) -> web.Response:
        m = self.world.market_by_slug(request.query.get("slug", ""))
        if m is None:
            return web.json_response({"error": "unknown slug"}, status=404)
        wd = self.world.window(m)
        return web.json_response({"slug": m.slug, "up": wd.up, "price_to_beat": wd.p2b,
                                  "final_price": wd.final, "spot_price_to_beat": wd.spot_p2b})

    async def sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"stats": dict(self.stats), "faults_emitted": dict(self.faults.emitted),
                                  "clients": {"market": sum(c.kind == "market" for c in self.clients),
                                              "rtds": sum(c.kind == "rtds" for c in self.clients)}})

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
        hit = [c for c in self.clients if target in ("all", c.kind)]
        if kind == "ws_drop":
            for c in hit:
                c.closing = True
                if c.transport is not None:
                    c.transport.abort()
            self.faults.note(kind, len(hit))
        elif kind in ("malformed", "truncated", "unknown_event"):
            n = int(params.get("count", 1))
            for c in hit:
                for _ in range(n):
                    c.send(self._bad_frame(kind, c, now_ms))
            self.faults.note(kind, len(hit) * n)
        elif kind == "resolve_close":
            hit = [c for c in self.clients if c.kind == "market"]
            for c in hit:
                c.queue.put_nowait(("close", "all subscribed assets resolved"))
            self.faults.note(kind, len(hit))
        elif kind == "tick_size_change":
            n = 0
            for c in self.clients:
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

    def _bad_frame(self, kind: str, c: _Client, now_ms: int) -> str:
        if c.kind == "market":
            good = {"event_type": "price_change", "market": "0x00", "price_changes": [],
                    "timestamp": str(now_ms)}
        else:
            good = {"topic": "crypto_prices_chainlink", "type": "update", "timestamp": now_ms,
                    "payload": {"symbol": "btc/usd", "timestamp": now_ms // 1000 * 1000, "value": 1.0}}
        if kind == "malformed":
            return "{this is not json" + str(now_ms)
        text = json.dumps(good, separators=(",", ":"))
        if kind == "truncated":
            return text[: len(text) // 2]
        if c.kind == "market":
            return json.dumps({**good, "event_type": "sim_unknown_event", "whatever": 1})
        return json.dumps({**good, "type": "sim_unknown_type"})


def _with_extra(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {**obj, "sim_extra_field": {"note": "unknown field", "n": 1}}
    if isinstance(obj, list):
        return [_with_extra(x) for x in obj]
    return obj


async def _sleep_until(t: float) -> None:
    d = t - time.time()
    if d > 0:
        await asyncio.sleep(d)
