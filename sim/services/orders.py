"""The shadow-order endpoint (``/clob/order``): a bot paper-trades against the sim's true queues.

``POST /clob/order`` with header ``POLY_API_KEY: <SimConfig.order_key>`` and a JSON body
``{"token_id", "price", "size", "side": "BUY"|"SELL" (default BUY), "cancel_at": epoch s
(optional)}`` places a shadow order at the server's receipt time: it rests as if it were in the
queue (``sim/shadow.py``) and changes nothing anyone else sees. ``GET /clob/order/{id}`` answers
the order with the fills it has had so far; ``DELETE /clob/order/{id}`` cancels it now. No key or
a wrong one: 401; a bad order (price outside (0, 1) or off the tick, size <= 0, unknown token, bad
side, malformed JSON): 400 with one line saying why. The batch API (``shadow.fills_over_history``)
computes the same fills for the same orders.
"""

from __future__ import annotations

import hmac
import itertools
import math
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from slotml.sim.shadow import ShadowOrder, check_order, order_fills
from slotml.sim.world import World

KEY_HEADER = "POLY_API_KEY"


class Orders:
    def __init__(self, world: World) -> None:
        self.world = world
        self.key = world.config.order_key
        self.orders: dict[str, ShadowOrder] = {}
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/clob/order", self.place),
                web.get("/clob/order/{order_id}", self.get),
                web.delete("/clob/order/{order_id}", self.cancel)]

    def _authorised(self, request: web.Request) -> bool:
        got = request.headers.get(KEY_HEADER, "")
        return bool(self.key) and hmac.compare_digest(got.encode(), self.key.encode())

    @staticmethod
    def _bad(why: str, status: int = 400) -> web.Response:
        return web.json_response({"error": why}, status=status)

    def _view(self, o: ShadowOrder, now: float) -> dict[str, Any]:
        fills = [f for f in order_fills(self.world, o) if f.t <= now]
        return {"orderID": o.order_id, "token_id": o.token, "price": o.price, "size": o.size,
                "side": o.side, "placed_at": o.placed_at,
                "cancel_at": o.cancel_at if math.isfinite(o.cancel_at) else None,
                "size_matched": round(sum(f.size for f in fills), 6),
                "fills": [{"t": f.t, "size": f.size, "price": f.price, "through": f.through}
                          for f in fills]}

    async def place(self, request: web.Request) -> web.Response:
        now = time.time()
        if not self._authorised(request):
            return self._bad(f"missing or wrong {KEY_HEADER}", 401)
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001 - whatever the body is, it is not an order
            return self._bad("body must be a JSON object")
        if not isinstance(body, dict):
            return self._bad("body must be a JSON object")
        try:
            price, size = float(body.get("price")), float(body.get("size"))
            cancel_at = float(body["cancel_at"]) if body.get("cancel_at") is not None else math.inf
        except (TypeError, ValueError):
            return self._bad("price, size (and cancel_at) must be numbers")
        o = ShadowOrder(token=str(body.get("token_id", "")), price=price, size=size, placed_at=now,
                        cancel_at=cancel_at, side=str(body.get("side", "BUY")).upper())
        why = check_order(self.world, o)
        if why:
            return self._bad(why)
        o = replace(o, order_id=f"sim-{next(self._ids)}")
        self.orders[o.order_id] = o
        return web.json_response({"orderID": o.order_id, "status": "live", "placed_at": now})

    async def get(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._bad(f"missing or wrong {KEY_HEADER}", 401)
        o = self.orders.get(request.match_info["order_id"])
        if o is None:
            return self._bad("no such order", 404)
        return web.json_response(self._view(o, time.time()))

    async def cancel(self, request: web.Request) -> web.Response:
        now = time.time()
        if not self._authorised(request):
            return self._bad(f"missing or wrong {KEY_HEADER}", 401)
        o = self.orders.get(request.match_info["order_id"])
        if o is None:
            return self._bad("no such order", 404)
        if now < o.cancel_at:
            o = self.orders[o.order_id] = replace(o, cancel_at=now)
        return web.json_response(self._view(o, now))
