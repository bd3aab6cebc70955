"""Start the sim in-process: ``async with running_sim(SimConfig(...)) as sim`` (or the
thread-based ``with sim_in_thread(...) as sim`` for synchronous tests)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

from slotml.sim.config import SimConfig
from slotml.sim.server import SimServer
from slotml.sim.world import Market, World


@dataclass
class SimHandle:
    """A running sim. URLs point at loopback; ``world`` answers anything (deterministically)."""

    server: SimServer
    loop: asyncio.AbstractEventLoop

    @property
    def config(self) -> SimConfig:
        return self.server.config

    @property
    def world(self) -> World:
        return self.server.world

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def gamma_url(self) -> str:
        return self.base_url + "/gamma"

    @property
    def clob_url(self) -> str:
        return self.base_url + "/clob"

    @property
    def ws_market_url(self) -> str:
        return f"ws://{self.server.host}:{self.port}/ws/market"

    @property
    def rtds_url(self) -> str:
        return f"ws://{self.server.host}:{self.port}/rtds"

    @property
    def binance_url(self) -> str:
        return f"ws://{self.server.host}:{self.port}/binance/stream"

    @property
    def polybolt_url(self) -> str:
        return f"ws://{self.server.host}:{self.port}/polybolt"

    @property
    def control_url(self) -> str:
        return self.base_url + "/_sim"

    def market(self, symbol: str, start: int) -> Market:
        return self.world.market(symbol, start)

    def current_market(self, symbol: str = "BTC", now: float | None = None, ahead: int = 0) -> Market:
        """The market whose window contains ``now`` (or ``ahead`` windows later)."""
        import time

        w = self.world.window_s
        t = time.time() if now is None else now
        return self.world.market(symbol, int(t // w) * w + ahead * w)

    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        """Inject a fault (same as POST /_sim/faults). Thread-safe."""
        return self._call(self.server.inject, kind, **params)

    def clear_faults(self) -> int:
        return self._call(self.server.faults.clear)

    def emitted(self) -> dict[str, int]:
        """What the faults actually emitted so far, per kind."""
        return dict(self.server.faults.emitted)

    def _call(self, fn, *args, **kw):
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return fn(*args, **kw)

        async def _go():
            return fn(*args, **kw)

        return asyncio.run_coroutine_threadsafe(_go(), self.loop).result(10)


def _config(config: SimConfig | None, overrides: dict[str, Any]) -> SimConfig:
    cfg = config or SimConfig()
    return replace(cfg, **overrides) if overrides else cfg


@contextlib.asynccontextmanager
async def running_sim(config: SimConfig | None = None, **overrides: Any) -> AsyncIterator[SimHandle]:
    """Serve the sim on a free loopback port for the duration of the block."""
    server = SimServer(World(_config(config, overrides)))
    await server.start()
    try:
        yield SimHandle(server, asyncio.get_running_loop())
    finally:
        await server.stop()


@contextlib.contextmanager
def sim_in_thread(config: SimConfig | None = None, **overrides: Any) -> Iterator[SimHandle]:
    """Same as ``running_sim`` for synchronous code: the sim runs its own loop in a thread."""
    cfg = _config(config, overrides)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        server = SimServer(World(cfg))
        try:
            await server.start()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e
            ready.set()
            return
        box["server"] = server
        box["stop"] = asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await server.stop()

    th = threading.Thread(target=lambda: loop.run_until_complete(main()), name="sim", daemon=True)
    th.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield SimHandle(box["server"], loop)
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        th.join(10)
        loop.close()
