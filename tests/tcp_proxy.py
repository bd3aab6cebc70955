"""A small asyncio TCP proxy the outage tests put between a client and MariaDB.

Faults, each reversible with ``restore()``:
* ``reset()``: abort every open connection with a TCP RST (SO_LINGER 0);
* ``reset_after(n)``: forward n more client->server bytes, then reset (mid-statement);
* ``reset_on_reply_after(b"COMMIT")``: once the client sent the pattern, forward it, then
  reset when the server answers (committed on the server, but the client never hears so);
* ``refuse()``: stop listening (connection refused) and reset open connections;
* ``hang()``: keep accepting but forward nothing, in either direction.
Runs in the test's event loop, or in its own thread via ``ThreadedProxy`` for subprocesses.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port
        self.mode = "up"  # up | hang
        self._flowing: asyncio.Event | None = None  # set while up (created on the proxy's loop)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._budget: int | None = None  # client->server bytes left before a reset
        self._pattern: bytes | None = None
        self._armed = False  # pattern seen: reset on the next server->client bytes
        self.resets = 0
        self.accepted = 0

    async def start(self) -> TcpProxy:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # --- faults -------------------------------------------------------------------------------
    def reset(self) -> None:
        for w in list(self._conns):
            _rst(w)
        self._conns.clear()
        self.resets += 1

    def reset_after(self, client_bytes: int) -> None:
        self._budget = client_bytes

    def reset_on_reply_after(self, pattern: bytes) -> None:
        self._pattern, self._armed = pattern, False

    async def refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.reset()

    def hang(self) -> None:
        self.mode = "hang"
        assert self._flowing is not None
        self._flowing.clear()

    async def restore(self) -> None:
        self.mode = "up"
        assert self._flowing is not None
        self._flowing.set()
        self._budget = None
        self._pattern, self._armed = None, False
        if self._server is None:
            await self.start()

    # --- plumbing -----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._conns.add(writer)
        up_w = None
        try:
            if self.mode == "hang":
                await reader.read()  # hold the client until it gives up
                return
            up_r, up_w = await asyncio.open_connection(*self.target)
            self._conns.add(up_w)
            await asyncio.gather(self._pipe(reader, up_w, upstream=True, pair=writer),
                                 self._pipe(up_r, writer, upstream=False, pair=up_w))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_w):
                if w is not None:
                    self._conns.discard(w)
                    if not w.is_closing():
                        w.close()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, upstream: bool,
                    pair: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                assert self._flowing is not None
                await self._flowing.wait()  # hung: hold the bytes, forward nothing
                if upstream and self._budget is not None:
                    if len(data) >= self._budget:
                        w.write(data[: self._budget])
                        self._budget = None
                        _rst(w)
                        _rst(pair)
                        self.resets += 1
                        return
                    self._budget -= len(data)
                if not upstream and self._armed:
                    self._armed = False
                    self._pattern = None
                    _rst(w)
                    _rst(pair)
                    self.resets += 1
                    return
                w.write(data)
                await w.drain()
                if upstream and self._pattern is not None and self._pattern in data:
                    self._armed = True
        except (OSError, RuntimeError):
            pass
        finally:
            if not w.is_closing():
                w.close()


def _rst(w: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: what a dropped link or a killed server looks like."""
    sock = w.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    w.transport.abort()


class ThreadedProxy:
    """A TcpProxy on its own event loop thread, for tests that drive a subprocess."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = TcpProxy(target_host, target_port)
        self.call(self.proxy.start())

    @property
    def port(self) -> int:
        return self.proxy.port

    def call(self, coro):  # noqa: ANN001
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def refuse(self) -> None:
        self.call(self.proxy.refuse())

    def restore(self) -> None:
        self.call(self.proxy.restore())

    def close(self) -> None:
        self.call(self.proxy.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
