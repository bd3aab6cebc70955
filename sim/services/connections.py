"""The websocket connection registry both socket services share (market channel and relay).

One read loop and one writer per socket: text PING -> PONG, JSON parsing, and the per-frame faults
(``ws_silent``, ``extra_fields``) applied as frames leave. Services decide what a message means;
``inject`` and the stats endpoint see every socket through ``Connections.clients``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from slotml.sim.faults import Faults, with_extra


class Client:
    """One accepted websocket: its send queue and what it subscribed to."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, kind: str) -> None:
        self.ws = ws
        self.transport = request.transport
        self.kind = kind  # "market" | "rtds" | "polybolt"
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


class Connections:
    """Every open socket, and the loop that serves one."""

    def __init__(self, faults: Faults, stats: Counter) -> None:
        self.faults = faults
        self.stats = stats
        self.clients: set[Client] = set()

    async def serve(self, request: web.Request, kind: str,
                    on_message: Callable[[Client, Any], None],
                    on_invalid: Callable[[Client], None]) -> web.WebSocketResponse:
        """Accept a socket and feed its JSON messages to ``on_message`` until it closes (a
        ``service_down`` fault on ``kind``: refused with 503, as a dead service would be)."""
        if self.faults.find("service_down", kind):
            self.stats[f"{kind}_refused"] += 1
            raise web.HTTPServiceUnavailable(text=f"sim fault: {kind} down")
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        c = Client(ws, request, kind)
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
                    on_invalid(c)
                    continue
                on_message(c, obj)
        finally:
            self.clients.discard(c)
            c.closing = True
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        return ws

    async def _writer(self, c: Client) -> None:
        while True:
            kind, text = await c.queue.get()
            if kind == "data":
                f = self.faults.find("ws_silent", c.kind)
                if f:
                    self.faults.use(f)
                    continue
                f = self.faults.find("extra_fields", c.kind)
                if f and text[:1] in "[{":
                    text = json.dumps(with_extra(json.loads(text)), separators=(",", ":"))
                    self.faults.use(f)
            if kind.startswith("close"):  # "close" (1000) or "close:<code>"
                c.closing = True
                code = int(kind[6:]) if kind.startswith("close:") else 1000
                with contextlib.suppress(Exception):
                    await c.ws.close(code=code, message=text.encode())
                return
            try:
                await c.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            self.stats[f"{c.kind}_frames"] += 1

    async def close_all(self) -> None:
        """Server shutdown: close every socket with 1001."""
        for c in list(self.clients):
            c.closing = True
            with contextlib.suppress(Exception):
                await c.ws.close(code=1001, message=b"server shutdown")


async def sleep_until(t: float) -> None:
    """The publishers' pacing (book loop, relay loop): sleep until wall time ``t``."""
    d = t - time.time()
    if d > 0:
        await asyncio.sleep(d)
