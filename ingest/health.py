"""The operator endpoints: ``/health`` (JSON) and ``/metrics`` (Prometheus text), and their bodies.

``health_status`` and ``metrics_text`` read the collector's state (``CollectorState``: its
feeds, writer, windows, counters) and nothing else, so what an operator sees is assembled in
one place. The server binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from slotml.ingest.books import BookStore
from slotml.ingest.config import CollectorConfig
from slotml.ingest.feeds.clob_market import ClobFeed
from slotml.ingest.metrics import Metrics, prometheus_text
from slotml.ingest.prices import SPOT, PriceSource

log = logging.getLogger(__name__)


class CollectorState(Protocol):
    """What the endpoints read from the collector (``Collector`` has all of it)."""

    cfg: CollectorConfig
    clock: Callable[[], float]
    started_at: float
    metrics: Metrics
    writer: Any  # a DurableWriter (or a sink with ``stats()``), or None
    books: BookStore
    clob: ClobFeed
    prices: PriceSource
    windows: Mapping[tuple[str, int, int], Any]
    last_tick_ms: int | None
    last_capture_spread: float | None
    pass_times: Sequence[float]


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


def stream_status(feed: Any, now: float) -> dict[str, Any]:
    """One websocket's connection state (a ``WsFeed``, or a price source that is one)."""
    return {"connected": bool(feed.connected), "reconnects": int(feed.reconnects),
            "last_message_age_s": age(feed.last_message_at, now),
            "last_data_age_s": age(feed.last_data_at, now)}


def health_status(c: CollectorState) -> tuple[bool, dict[str, Any]]:
    """The ``/health`` body, and whether all is well (else the endpoint answers 503)."""
    now = c.clock()
    problems: list[str] = []
    ages = {}
    syms = c.cfg.symbols
    if getattr(c.cfg, "all_symbols", False):  # --symbols all: the assets Gamma lists
        syms = tuple(sorted({k[0] for k in c.windows}))
    for sym in syms:
        o = c.prices.latest(sym, SPOT)
        ages[sym] = None if o is None else round(now - o.obs_ts, 3)
    stale = [s for s, a in ages.items() if a is None or a > c.cfg.stale_after]
    if stale:
        problems.append(f"chainlink data stale for {','.join(stale)}")
    http = getattr(c, "http", None)
    apis = {}
    if http is not None:
        from slotml.ingest.transport.http import FAILING_AFTER

        apis = {api: {"consecutive_failures": n, "last_error": http.last_error.get(api)}
                for api, n in http.failures.items()}
        n = http.failures.get("gamma", 0)
        if n >= FAILING_AFTER:
            problems.append(f"gamma failing: {n} requests in a row ({http.last_error.get('gamma')})")
    streams = c.prices.streams()
    offsets = {name: getattr(getattr(f, "prices", None), "last_offset", None)
               for name, f in streams.items()}
    for name, offset in offsets.items():
        if offset is not None and abs(offset) > c.cfg.max_clock_offset:
            problems.append(f"clock offset {offset:.1f}s" + ("" if name == "rtds" else f" ({name})"))
    source_problems, warnings = c.prices.health()
    problems += source_problems
    ws = c.writer.stats() if c.writer is not None else {}
    if ws.get("db_up") == 0:  # collecting into the spool meanwhile: nothing lost yet
        problems.append("database unreachable" + (f": {ws['db_error']}" if ws.get("db_error")
                                                  else ""))
    warnings += [f"settlement series {s} not carried by --price-source {c.cfg.price_source}"
                 for s in sorted(getattr(c, "uncarried", ()))]
    body = {
        "ok": not problems,
        "status": "unhealthy" if problems else "degraded" if warnings else "ok",
        "problems": problems,
        "warnings": warnings,
        "price_source": c.cfg.price_source,
        "uptime_s": round(now - c.started_at, 1),
        "streams": {"clob": stream_status(c.clob, now),
                    **{name: stream_status(f, now) for name, f in streams.items()}},
        "chainlink_age_s": ages,
        "clock_offset_s": {**offsets, "clob": c.books.last_offset},
        "polybolt": {"seq_gaps": c.metrics.get("seq_gaps", stream="polybolt"),
                     "seq_missed": c.metrics.get("seq_missed", stream="polybolt"),
                     "closes": c.metrics.by_label("polybolt_closes", "code"),
                     "twap_disagreements": c.metrics.get("twap_disagreements")}
        if c.cfg.price_source != "relay" else None,
        "queue_depth": ws.get("queue_depth"),
        "spool_bytes": ws.get("spool_bytes"),
        "rows_written": ws.get("rows_written"),
        "rows_dropped": ws.get("rows_dropped"),
        "db_up": ws.get("db_up"),
        "db_error": ws.get("db_error"),
        "ledger": c.writer.ledger() if hasattr(c.writer, "ledger") else None,
        "frames_rejected": c.metrics.by_label("frames_rejected", "reason"),
        "prices_rejected": c.metrics.by_label("prices_rejected", "reason"),
        "prices_reanchored": c.metrics.get("prices_reanchored"),
        "unknown_event_types": c.metrics.by_label("unknown_event_types", "type"),
        # received (valid prints) = accepted (handed to the writer) + untracked; the writer
        # says what became of the accepted: stored (committed), dropped (a full spool, or a
        # disk refusing it), rejected (a value the database refused), the rest still spooled
        "trades": {"on": c.cfg.trades, "received": c.metrics.get("trades_received"),
                   "accepted": c.metrics.get("trades_accepted"),
                   "stored": c.metrics.get("trades_stored"),
                   "dropped": c.metrics.get("trades_dropped"),
                   "rejected": c.metrics.get("trades_rejected"),
                   "untracked": c.metrics.get("trades_untracked"),
                   "skipped": c.metrics.by_label("trades_skipped", "reason"),
                   "gaps": c.metrics.by_label("tape_gaps", "reason")},
        "http": apis,
        "windows_tracked": len(c.windows),
        "last_tick_ms": c.last_tick_ms,
        "capture_spread_s": c.last_capture_spread,
    }
    return not problems, body


def metrics_text(c: CollectorState) -> str:
    """The ``/metrics`` text: every counter, plus gauges of the streams, writer and capture."""
    ws = c.writer.stats() if c.writer is not None else {}
    now = c.clock()
    gauges: dict[str, float | int | None] = {
        f"writer_{k}": v for k, v in ws.items() if isinstance(v, int | float)}
    gauges |= {
        "windows_tracked": len(c.windows),
        "clob_connected": int(c.clob.connected),
        "clob_frames": c.clob.frames,
        "clob_reconnects": c.clob.reconnects,
        "clob_last_data_age_seconds": age(c.clob.last_data_at, now),
        "capture_spread_seconds": c.last_capture_spread,
    }
    for name, f in c.prices.streams().items():  # rtds_*, polybolt_*
        gauges |= {f"{name}_connected": int(bool(getattr(f, "connected", False))),
                   f"{name}_frames": getattr(f, "frames", 0),
                   f"{name}_reconnects": getattr(f, "reconnects", 0),
                   f"{name}_last_data_age_seconds": age(getattr(f, "last_data_at", None), now)}
    if c.pass_times:
        xs = sorted(c.pass_times)
        gauges["capture_spread_p50_seconds"] = xs[len(xs) // 2]
        gauges["capture_spread_p99_seconds"] = xs[min(len(xs) - 1, int(0.99 * len(xs)))]
    return prometheus_text(c.metrics, gauges)
