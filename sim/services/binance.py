"""Binance's public kline stream (``/binance/stream``): the candles the hourly and daily markets
settle on, built from the world's spot path (the sim's Binance price is its spot path, unrounded).

Combined-stream protocol: ``{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1h"], "id": 1}``
answered ``{"result": null, "id": 1}``; then, every second s, ``BINANCE_DELAY_S`` after it, one
event per subscribed stream for the candle containing s: open = the path at the candle's first
second, close = at s, ``x`` true on the candle's last second. A candle of interval ``1h`` is the
(scaled) hour of ``slotml/venue.py``; ``1m`` lasts max(1, round(60 / time_scale)) s. So the
hourly window's candle opens at spot[start] and closes at spot[end - 1], as ``World`` settles it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

from aiohttp import web

from slotml import venue
from slotml.sim.faults import Faults
from slotml.sim.services.connections import Client, Connections, sleep_until
from slotml.sim.world import World

log = logging.getLogger(__name__)

BINANCE_DELAY_S = 0.1  # publish lag after the second an event describes


class Binance:
    def __init__(self, world: World, faults: Faults, conns: Connections, stats: Counter) -> None:
        self.world = world
        self.faults = faults
        self.conns = conns
        self.stats = stats
        self.k = world.time_scale
        self.by_wire = {f"{s.lower()}usdt": s for s in world.symbols}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/binance/stream", self.ws_stream)]

    async def ws_stream(self, request: web.Request) -> web.WebSocketResponse:
        return await self.conns.serve(request, "binance", self._msg, self._invalid)

    def _invalid(self, c: Client) -> None:
        c.send({"error": {"code": 2, "msg": "Invalid request"}}, control=True)

    def _msg(self, c: Client, obj: Any) -> None:
        if not isinstance(obj, dict) or obj.get("method") not in ("SUBSCRIBE", "UNSUBSCRIBE") \
                or not isinstance(obj.get("params"), list):
            self._invalid(c)
            return
        for p in obj["params"]:
            wire, _, kind = str(p).lower().partition("@kline_")
            if wire not in self.by_wire or kind not in ("1h", "1m"):
                continue
            if obj["method"] == "SUBSCRIBE":
                c.topics[str(p).lower()] = None
            else:
                c.topics.pop(str(p).lower(), None)
        c.send({"result": None, "id": obj.get("id")}, control=True)

    def candle(self, interval: str, s: int) -> tuple[int, int]:
        """(first second, length) of the candle of ``interval`` containing second s."""
        if interval == "1h":
            a, b = venue.window_bounds(s, "1h", self.k)
            return a, b - a
        n = max(1, round(60 / self.k))
        return venue.SCALE_EPOCH + (s - venue.SCALE_EPOCH) // n * n, n

    def event(self, stream: str, s: int, now: float) -> dict[str, Any]:
        wire, _, interval = stream.partition("@kline_")
        t, n = self.candle(interval, s)
        prices = self.world.path(self.by_wire[wire]).spot(t, s)
        sym = wire.upper()
        k = {"t": t * 1000, "T": (t + n) * 1000 - 1, "s": sym, "i": interval, "f": 0, "L": 0,
             "o": repr(float(prices[0])), "c": repr(float(prices[-1])),
             "h": repr(float(prices.max())), "l": repr(float(prices.min())), "v": "0", "n": 0,
             "x": s == t + n - 1, "q": "0", "V": "0", "Q": "0", "B": "0"}
        return {"stream": stream, "data": {"e": "kline", "E": int(now * 1000), "s": sym, "k": k}}

    async def run(self) -> None:
        s = int(time.time())
        while True:
            await sleep_until(s + BINANCE_DELAY_S)
            now = time.time()
            if now - s > 10:
                s = int(now) - 1
            try:
                self._publish(s, now)
            except Exception:  # noqa: BLE001
                log.exception("binance loop")
            s += 1

    def _publish(self, s: int, now: float) -> None:
        cache: dict[str, str] = {}
        for c in self.conns.clients:
            if c.kind != "binance":
                continue
            for stream in list(c.topics):
                if stream not in cache:
                    cache[stream] = json.dumps(self.event(stream, s, now), separators=(",", ":"))
                c.send(cache[stream])
                self.stats["binance_events"] += 1
