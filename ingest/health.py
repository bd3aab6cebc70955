"""Counters and the operator endpoints: ``/health`` (JSON) and ``/metrics`` (Prometheus text).

Every part of the collector counts what it skipped or repaired here, by name and labels, so a
silent degradation (a stalled relay, crossed books, 429s) shows up as a number instead of a
quiet hole in the data. The server binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

LabelKey = tuple[tuple[str, str], ...]


class Metrics:
    """Monotonic counters keyed by name and labels (cheap: one dict update per event)."""

    def __init__(self) -> None:
        self._c: dict[str, dict[LabelKey, float]] = defaultdict(lambda: defaultdict(float))

    def inc(self, name: str, n: float = 1, **labels: str) -> None:
        self._c[name][tuple(sorted((k, str(v)) for k, v in labels.items()))] += n

    def get(self, name: str, **labels: str) -> float:
        """Sum of the series whose labels include ``labels`` (all series when none given)."""
        series = self._c.get(name, {})
        want = {(k, str(v)) for k, v in labels.items()}
        return sum(v for key, v in series.items() if want <= set(key))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, v in self._c.get(name, {}).items():
            lv = dict(key).get(label, "")
            out[lv] = out.get(lv, 0.0) + v
        return out

    def snapshot(self) -> dict[str, dict[LabelKey, float]]:
        return {k: dict(v) for k, v in self._c.items()}


def _labels(key: LabelKey) -> str:
    if not key:
        return ""
    esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in key) + "}"


def prometheus_text(metrics: Metrics, gauges: dict[str, float | int | None]) -> str:
    """Prometheus exposition format 0.0.4: counters get ``slotml_`` prefix and ``_total``."""
    lines: list[str] = []
    for name, series in sorted(metrics.snapshot().items()):
        full = f"slotml_{name}_total"
        lines.append(f"# TYPE {full} counter")
        for key, v in sorted(series.items()):
            lines.append(f"{full}{_labels(key)} {v:g}")
    for name, v in sorted(gauges.items()):
        if v is None:
            continue
        full = f"slotml_{name}"
        lines.append(f"# TYPE {full} gauge")
        lines.append(f"{full} {float(v):g}")
    return "\n".join(lines) + "\n"


class HealthServer:
    """aiohttp server on 127.0.0.1: ``/health`` from ``status()``, ``/metrics`` from ``metrics()``.

    ``status`` returns (ok, body); not ok answers 503 so a load balancer or supervisor check
    can act on stale Chainlink data or a drifting clock.
    """

    def __init__(self, port: int, status: Callable[[], tuple[bool, dict[str, Any]]],
                 metrics_text: Callable[[], str], host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self._status = status
        self._metrics_text = metrics_text
        self._runner = None

    async def start(self) -> None:
        from aiohttp import web

        async def health(_req: web.Request) -> web.Response:
            ok, body = self._status()
            return web.Response(text=json.dumps(body, default=str, sort_keys=True),
                                content_type="application/json", status=200 if ok else 503)

        async def metrics(_req: web.Request) -> web.Response:
            return web.Response(text=self._metrics_text(),
                                content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        if self.port == 0:  # tests: learn the port the OS chose
            self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        log.info("health endpoint on http://%s:%d/health", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def age(ts: float | None, now: float | None = None) -> float | None:
    if ts is None:
        return None
    return round((now if now is not None else time.time()) - ts, 3)
