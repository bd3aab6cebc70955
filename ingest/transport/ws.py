"""The websocket base every venue stream runs on: ``WsFeed``, kept open forever.

Every venue socket needs the same care: text ``PING`` keepalives (the answer ``PONG`` is not
JSON), capped exponential backoff with jitter, resubscribing everything on every connection,
and a data-stall watchdog, because a socket can stay open and answer pings while delivering
nothing. ``PONG`` does not count as data. The CLOB closes with 1000 "all subscribed assets
resolved" when every token we follow has settled: that is normal, and the feed waits for new
tokens instead of reconnecting into it (``on_all_resolved``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from slotml.ingest.metrics import Metrics

log = logging.getLogger(__name__)

ALL_RESOLVED = "all subscribed assets resolved"
RawHook = Callable[[str, str, float], None]


class WsFeed:
    """One websocket, kept open forever. Subclasses say what to send on open and how to eat frames."""

    name = "ws"
    keepalive: str | None = "PING"  # text sent every ping_interval (None: the server pings)

    def __init__(self, url: str, metrics: Metrics, ping_interval: float, stall_after: float,
                 backoff_max: float = 30.0, on_raw: RawHook | None = None) -> None:
        self.url = url
        self.metrics = metrics
        self.ping_interval = ping_interval
        self.stall_after = stall_after
        self.backoff_base = 0.25
        self.backoff_max = backoff_max
        self.on_raw = on_raw
        self.connected = False
        self.connects = 0
        self.frames = 0  # every frame received (the benchmark's message count)
        self.last_message_at: float | None = None  # any frame, PONG included
        self.last_data_at: float | None = None  # frames with data (the watchdog's clock)
        self._ws: Any = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- for subclasses ------------------------------------------------------------------
    def wanted(self) -> bool:
        """Whether there is anything to subscribe to (else the feed stays closed)."""
        return True

    async def on_open(self, ws: Any) -> None:  # send subscriptions
        raise NotImplementedError

    def on_close(self) -> None:
        """Connection lost: forget state that only the next connection can rebuild."""

    def on_frame(self, text: str, recv_ts: float) -> bool:
        """Handle one frame; return True if it carried data (resets the stall watchdog)."""
        raise NotImplementedError

    def on_close_code(self, code: int, reason: str) -> float | None:
        """The server closed with ``code``: seconds to wait before reconnecting, or None for
        the usual backoff (a venue's own close codes: PolyBolt's 4001 auth, 4003 drain)."""
        return None

    # -- life cycle ----------------------------------------------------------------------
    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def start(self) -> asyncio.Task:
        self._task = asyncio.create_task(self.run(), name=f"feed-{self.name}")
        return self._task

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 2.0)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def force_reconnect(self, reason: str) -> None:
        """Drop the current connection (the run loop reconnects)."""
        ws = self._ws
        if ws is not None:
            log.warning("%s: forcing reconnect (%s)", self.name, reason)
            asyncio.ensure_future(ws.close(code=4000, reason=reason[:100]))

    async def send(self, payload: dict | str) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(payload if isinstance(payload, str) else json.dumps(payload))
            return True
        except Exception as e:  # noqa: BLE001 - the run loop notices the dead socket
            log.info("%s: send failed: %s", self.name, type(e).__name__)
            return False

    def _frame(self, msg: str | bytes) -> bool:
        """One received frame: counted, captured, handed on. True if it was data."""
        now = time.time()
        self.last_message_at = now
        self.frames += 1
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        if self.on_raw is not None:
            self.on_raw(self.name, msg, now)
        if self.on_frame(msg, now):
            self.last_data_at = now
            return True
        return False

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            if not self.wanted():
                self._wake.clear()
                await self._wake.wait()
                continue
            normal_close = False
            got_data = False
            wait: float | None = None
            try:
                async with connect(self.url, ping_interval=None, open_timeout=10,
                                   close_timeout=2, max_size=2**24, max_queue=4096) as ws:
                    self._ws = ws
                    self.connected = True
                    self.connects += 1
                    if self.connects > 1:
                        self.metrics.inc("reconnects", stream=self.name)
                    log.info("%s: connected to %s (connection %d)", self.name, self.url,
                             self.connects)
                    self.last_data_at = time.time()
                    if self.on_raw is not None:  # lets a replay see connection boundaries
                        self.on_raw(f"{self.name}:open", "", self.last_data_at)
                    await self.on_open(ws)
                    pinger = asyncio.create_task(self._pinger(ws)) if self.keepalive \
                        else asyncio.create_task(self._stop.wait())
                    try:
                        while True:
                            left = self.last_data_at + self.stall_after - time.time()
                            if left <= 0:
                                self.metrics.inc("stalls", stream=self.name)
                                log.warning("%s: no data for %.0f s, reconnecting", self.name,
                                            self.stall_after)
                                break
                            # One stall deadline for many frames, moved at most once a second
                            # (it only ever moves later): a wait_for per frame cost a task and
                            # a timer each, ~10% of the collector's CPU at 3,500 frames/s.
                            # recv() is cancellation-safe: a timeout loses no message.
                            try:
                                async with asyncio.timeout(left) as deadline:
                                    while True:
                                        msg = await ws.recv()
                                        if self._frame(msg) and not got_data:
                                            got_data = True
                                            attempt = 0
                                        due = deadline.when() or 0.0
                                        ahead = self.last_data_at + self.stall_after - time.time()
                                        if loop.time() + ahead - due > 1.0:
                                            deadline.reschedule(loop.time() + ahead)
                            except TimeoutError:
                                if not deadline.expired():
                                    raise  # not the stall deadline: a real error
                    finally:
                        pinger.cancel()
            except ConnectionClosed as e:
                rcvd = e.rcvd
                if rcvd is not None and rcvd.code == 1000 and ALL_RESOLVED in (rcvd.reason or ""):
                    normal_close = True
                    self.metrics.inc("closed_all_resolved", stream=self.name)
                    log.info("%s: server closed: %s", self.name, rcvd.reason)
                elif not self._stop.is_set():
                    self.metrics.inc("disconnects", stream=self.name)
                    if rcvd is not None:
                        wait = self.on_close_code(rcvd.code, rcvd.reason or "")
                    if wait is None:
                        log.warning("%s: connection closed (%s)", self.name,
                                    f"{rcvd.code} {rcvd.reason}" if rcvd else "no close frame")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure: back off and retry, forever
                self.metrics.inc("connect_errors", stream=self.name, error=type(e).__name__)
                log.warning("%s: %s: %s", self.name, type(e).__name__, str(e)[:200])
            finally:
                self._ws = None
                if self.connected:
                    self.connected = False
                    self.on_close()
                    if self.on_raw is not None:
                        self.on_raw(f"{self.name}:close", "", time.time())
            if self._stop.is_set():
                break
            if normal_close:
                self.on_all_resolved()  # then back off as usual: a repeated close must not spin
            delay = min(self.backoff_max, self.backoff_base * 2 ** attempt)
            delay *= 0.5 + random.random() / 2
            attempt = min(attempt + 1, 20)
            if wait is not None:
                delay = wait
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    def on_all_resolved(self) -> None:
        """The venue said every subscribed asset resolved: forget them, wait for new ones."""

    async def _pinger(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await ws.send(self.keepalive)
            except Exception:  # noqa: BLE001 - the receive loop sees the closed socket
                return
