"""The live-data price relay websocket (``/rtds``): chainlink, twap sixty/thirty, binance.

1 Hz whole-second observations from the world's price paths; one stamped s is relayed at
s + relay_delay_s +- 0.3 s (``World.relay_delay``), as the real relay lags (~1.5 s). A subscribe
is answered with the last RTDS_BACKFILL_POINTS observations. The ``duplicate`` and
``out_of_order`` faults apply here.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

from aiohttp import web

from slotml.sim import render
from slotml.sim.faults import Faults
from slotml.sim.prices import twap_of
from slotml.sim.services.connections import Client, Connections, sleep_until
from slotml.sim.world import World

log = logging.getLogger(__name__)

RTDS_TOPICS = ("crypto_prices_chainlink", "crypto_prices_twap_sixty", "crypto_prices_twap_thirty",
               "crypto_prices")
RTDS_BACKFILL_POINTS = 60


class Relay:
    def __init__(self, world: World, faults: Faults, conns: Connections, stats: Counter) -> None:
        self.world = world
        self.config = world.config
        self.faults = faults
        self.conns = conns
        self.stats = stats
        self._held: list[tuple[Client, str]] = []  # out-of-order fault

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/rtds", self.ws_rtds)]

    async def ws_rtds(self, request: web.Request) -> web.WebSocketResponse:
        return await self.conns.serve(request, "rtds", self._rtds_msg, self._invalid)

    def _invalid(self, c: Client) -> None:
        c.send({"message": "Invalid request body", "connectionId": c.connection_id,
                "requestId": c.connection_id[:8]}, control=True)

    def _rtds_msg(self, c: Client, obj: Any) -> None:
        if not isinstance(obj, dict) or obj.get("action") not in ("subscribe", "unsubscribe"):
            self._invalid(c)
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

    def _rtds_backfill(self, c: Client, topic: str, syms: set[str] | None) -> None:
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

    async def run(self) -> None:
        """The relay loop: publish each observation once its relay delay has passed."""
        s = self._last_published(time.time()) + 1
        while True:
            await sleep_until(s + self._relay_delay(s))
            now = time.time()
            if now - s > 10:
                s = self._last_published(now)
            try:
                self._publish_rtds(s, now)
            except Exception:  # noqa: BLE001
                log.exception("rtds loop")
            s += 1

    def _publish_rtds(self, s: int, now: float) -> None:
        clients = [c for c in self.conns.clients if c.kind == "rtds" and c.topics]
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
