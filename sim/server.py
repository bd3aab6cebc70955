"""ONE aiohttp app on ONE port: Gamma (/gamma), CLOB REST (/clob), the CLOB market websocket
(/ws/market), the live-data relay (/rtds), its successor PolyBolt (/polybolt), Binance's kline
stream (/binance/stream) and the control API (/_sim), one module each under
``sim/services/``.

``SimServer`` owns what the services share (the World, the Faults, the socket registry, the
stats), assembles their routes behind the HTTP fault middleware, and runs the three publishing loops
(books, relay, PolyBolt). Time is real (nothing advances it); the publication timing lives with each loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from slotml.sim.faults import Faults, with_extra
from slotml.sim.services.binance import Binance
from slotml.sim.services.books import Books
from slotml.sim.services.clob_rest import ClobRest
from slotml.sim.services.connections import Connections
from slotml.sim.services.control import Control
from slotml.sim.services.gamma import Gamma
from slotml.sim.services.market_ws import MarketWs
from slotml.sim.services.orders import Orders
from slotml.sim.services.polybolt import PolyBolt
from slotml.sim.services.relay import Relay
from slotml.sim.world import World

log = logging.getLogger(__name__)


class SimServer:
    def __init__(self, world: World, sock: socket.socket | None = None) -> None:
        self.world = world
        self.sock = sock  # already bound and listening (slotml.net.bind_listener), or None
        self.config = world.config
        self.faults = Faults()
        self.stats: Counter = Counter()
        self.conns = Connections(self.faults, self.stats)
        books = Books(world, self.faults)
        self.gamma = Gamma(world)
        self.clob = ClobRest(world, self.faults, books)
        self.market_ws = MarketWs(world, self.faults, self.conns, books, self.stats)
        self.relay = Relay(world, self.faults, self.conns, self.stats)
        self.polybolt = PolyBolt(world, self.faults, self.conns, self.stats)
        self.binance = Binance(world, self.faults, self.conns, self.stats)
        self.control = Control(world, self.faults, self.conns, self.stats, self.polybolt, books)
        self.orders = Orders(world)
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self.host = self.config.host
        self.port = self.config.port
        for f in self.config.faults:
            self.faults.add(f, {"duration_s": 1e9})

    # ---- lifecycle ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_mw])
        for service in (self.gamma, self.clob, self.market_ws, self.market_ws.prints, self.relay,
                        self.polybolt, self.binance, self.control, self.orders):
            app.router.add_routes(service.routes())
        return app

    async def start(self) -> None:
        self.market_ws.warm_up(time.time())
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = (web.SockSite(self._runner, self.sock) if self.sock is not None
                else web.TCPSite(self._runner, self.host, self.port))
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._tasks = [asyncio.create_task(self.market_ws.run(), name="sim-books"),
                       asyncio.create_task(self.relay.run(), name="sim-rtds"),
                       asyncio.create_task(self.polybolt.run(), name="sim-polybolt"),
                       asyncio.create_task(self.binance.run(), name="sim-binance")]
        log.info("sim serving on http://%s:%d (family %s, seed %d)", self.host, self.port,
                 self.config.family, self.config.seed)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self.market_ws.prints.stop()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.conns.close_all()
        if self._runner:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        """Inject a fault now (``SimHandle.inject``; same as ``POST /_sim/faults``)."""
        return self.control.inject(kind, **params)

    # ---- HTTP fault middleware (Gamma and CLOB REST) ---------------------------------------
    @web.middleware
    async def _fault_mw(self, request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
        path = request.path
        if not path.startswith("/_sim") and not path.startswith("/ws") \
                and path not in ("/rtds", "/polybolt", "/binance/stream"):
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
                body = with_extra(body)
                self.faults.use(f)
                return web.json_response(body, status=resp.status)
            return resp
        return await handler(request)
