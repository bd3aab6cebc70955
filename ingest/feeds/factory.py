"""Builds the collector's feeds from its config: the one place that picks the price source.

``CollectorConfig.price_source`` (``--price-source``) names the price feed; each name in
``config.PRICE_SOURCES`` has a builder here. ``Collector`` gets its books, CLOB feed, price
source and HTTP client from ``build_feeds`` instead of constructing them itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slotml.errors import UserError
from slotml.ingest.books import BookStore
from slotml.ingest.config import PRICE_SOURCES, CollectorConfig
from slotml.ingest.feeds.clob_market import ClobFeed
from slotml.ingest.feeds.rtds import RtdsRelay
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import PriceSource
from slotml.ingest.tape_feed import TapeRecorder
from slotml.ingest.transport.http import HttpClient
from slotml.ingest.transport.ws import RawHook


@dataclass(frozen=True, slots=True)
class Feeds:
    """What the collector reads the venue through."""

    books: BookStore
    clob: ClobFeed
    prices: PriceSource
    http: HttpClient
    tape: TapeRecorder | None = None  # None: --no-trades (or no writer to store prints in)


def _relay(cfg: CollectorConfig, metrics: Metrics, on_raw: RawHook | None) -> PriceSource:
    # boundaries (window starts/ends) are kept until the retry limit has passed
    retention = max(600.0, cfg.retry_limit + 2 * cfg.window_s)
    return RtdsRelay(
        cfg.rtds_ws_url, cfg.symbols, metrics, ping_interval=cfg.rtds_ping_interval,
        stall_after=cfg.stale_after, backoff_max=cfg.backoff_max, retention_s=retention,
        on_raw=on_raw, boundary_s=cfg.window_s)


ResolvedHook = Callable[[str, str, dict], None]  # BookStore's market_resolved callback
PriceBuilder = Callable[[CollectorConfig, Metrics, RawHook | None], PriceSource]
_PRICE_BUILDERS: dict[str, PriceBuilder] = {"relay": _relay}


def build_price_source(cfg: CollectorConfig, metrics: Metrics,
                       on_raw: RawHook | None = None) -> PriceSource:
    """The price feed ``cfg.price_source`` names (not started)."""
    build = _PRICE_BUILDERS.get(cfg.price_source)
    if build is None:
        raise UserError(f"price source {cfg.price_source!r}: use one of "
                        f"{', '.join(PRICE_SOURCES)}")
    return build(cfg, metrics, on_raw)


def build_feeds(cfg: CollectorConfig, metrics: Metrics, *, on_resolved: ResolvedHook | None = None,
                on_raw: RawHook | None = None, prices: PriceSource | None = None,
                writer: Any = None) -> Feeds:
    """Every feed the collector needs (not started). ``prices`` replaces the configured price
    source (tests hand in their own). The trade tape goes to ``writer`` (``put_trade``,
    ``put_tape_gap``) unless ``cfg.trades`` is off or the writer is a sink without them (serve's
    live features keep no tape)."""
    books = BookStore(metrics, on_resolved=on_resolved)
    put_trade = getattr(writer, "put_trade", None)
    put_gap = getattr(writer, "put_tape_gap", None)
    tape = (TapeRecorder(metrics, put_trade, put_gap)
            if cfg.trades and put_trade is not None and put_gap is not None else None)
    clob = ClobFeed(cfg.clob_ws_url, books, metrics, ping_interval=cfg.clob_ping_interval,
                    stall_after=cfg.stale_after, backoff_max=cfg.backoff_max, on_raw=on_raw,
                    tape=tape)
    http = HttpClient(metrics, timeout=cfg.http_timeout, backoff_max=cfg.backoff_max,
                      on_body=on_raw)
    return Feeds(books, clob, prices or build_price_source(cfg, metrics, on_raw), http, tape)
