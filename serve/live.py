"""Live features: the online builder fed by its own venue subscription.

A bot that has no market-data plumbing of its own can run ``LiveFeatures``: the collector's own
daemon (discovery, market websocket, price relay, the one ``make_snapshot``) with its writer
replaced by a sink that feeds ``OnlineFeatures`` instead of a store. The rows are therefore
exactly the collector's rows, on the same grid, so the live vector equals the one features/
later builds from the store (the live parity test measures it), except where a quote changed
between the two processes' captures of the same tick.

Resolution updates reach the builder with the time this process learnt them (the collector
stamps ``resolved_at`` / ``final_seen_at`` with its own clock), which is what "known at the
decision tick" means live.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from slotml.serve.online import OnlineFeatures


class FeatureSink:
    """The collector's writer interface (``put_snapshot``/``put_resolution``/``stats``),
    feeding the online builder. Optional callbacks see every row after it is applied."""

    def __init__(self, online: OnlineFeatures, clock: Callable[[], float] = time.time,
                 on_snapshot: Callable[[Mapping[str, Any]], None] | None = None,
                 on_resolution: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        self.online = online
        self.clock = clock
        self.on_snapshot = on_snapshot
        self.on_resolution = on_resolution
        self.snapshots = 0
        self.resolutions = 0
        self.ignored = 0

    def put_snapshot(self, row: Mapping[str, Any]) -> None:
        if self.online.add_snapshot(row):
            self.snapshots += 1
        else:
            self.ignored += 1
        if self.on_snapshot is not None:
            self.on_snapshot(row)

    def put_resolution(self, row: Mapping[str, Any]) -> None:
        self.online.add_resolution(row, known_at=self.clock())
        self.resolutions += 1
        if self.on_resolution is not None:
            self.on_resolution(row)

    def stats(self) -> dict[str, int | float]:
        return {"snapshots": self.snapshots, "resolutions": self.resolutions,
                "ignored": self.ignored}


class _NoStore:
    """Nothing to resume from: a live feature process starts fresh."""

    async def fetch_resolutions(self, **_kw: Any) -> list[dict[str, Any]]:
        return []


class LiveFeatures:
    """Run a collector whose rows go to an ``OnlineFeatures`` (``await live.run()``; ``stop()``).

    ``cfg`` is an ``ingest.config.CollectorConfig`` (venue URLs, family, symbols, intervals).
    Its /health endpoint stays off unless ``health=True`` (the bot's collector already has one).
    """

    def __init__(self, cfg: Any, online: OnlineFeatures | None = None, *, health: bool = False,
                 **sink_kw: Any) -> None:
        import dataclasses

        from slotml.ingest.collector import Collector

        if not health:
            cfg = dataclasses.replace(cfg, health_port=0)
        self.online = online if online is not None else OnlineFeatures()
        self.sink = FeatureSink(self.online, **sink_kw)
        self.collector = Collector(cfg, _NoStore(), self.sink)
        self.sink.clock = self.collector.clock

    async def run(self) -> None:
        await self.collector.run()

    def stop(self) -> None:
        self.collector.stop()
