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
from slotml.ingest.feeds.binance import BinanceKlines, WithCandles
from slotml.ingest.feeds.clob_market import ClobFeed
from slotml.ingest.feeds.failover import Failover
from slotml.ingest.feeds.polybolt import PolyBolt
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
    retention = max(600.0, cfg.retry_limit + 2 * cfg.max_window_s)
    return RtdsRelay(
        cfg.rtds_ws_url, cfg.symbols, metrics, ping_interval=cfg.rtds_ping_interval,
        stall_after=cfg.stale_after, backoff_max=cfg.backoff_max, retention_s=retention,
        on_raw=on_raw, boundary_s=cfg.boundary_s)


def _polybolt(cfg: CollectorConfig, metrics: Metrics, on_raw: RawHook | None,
              required: bool = True) -> PolyBolt:
    if cfg.polybolt_credentials is None:
        raise UserError(f"--price-source {cfg.price_source} needs PolyBolt credentials")
    retention = max(600.0, cfg.retry_limit + 2 * cfg.max_window_s)
    return PolyBolt(cfg.polybolt_ws_url, cfg.symbols, metrics, cfg.polybolt_credentials,
                    stall_after=cfg.stale_after, backoff_max=cfg.backoff_max,
                    retention_s=retention, on_raw=on_raw, boundary_s=cfg.boundary_s,
                    auth_retry_s=cfg.polybolt_auth_retry, required=required)


def _auto(cfg: CollectorConfig, metrics: Metrics, on_raw: RawHook | None) -> Failover:
    return Failover(_relay(cfg, metrics, on_raw), _polybolt(cfg, metrics, on_raw, required=False),
                    metrics, cfg.stale_after)


ResolvedHook = Callable[[str, str, dict], None]  # BookStore's market_resolved callback
PriceBuilder = Callable[[CollectorConfig, Metrics, RawHook | None], PriceSource]
_PRICE_BUILDERS: dict[str, PriceBuilder] = {"relay": _relay, "polybolt": _polybolt,
                                          "auto": _auto}


def build_price_source(cfg: CollectorConfig, metrics: Metrics,
                       on_raw: RawHook | None = None) -> PriceSource:
    """The price feed ``cfg.price_source`` names (not started), with the Binance klines beside
    it when a collected family settles on Binance candles (``CollectorConfig.candles``)."""
    build = _PRICE_BUILDERS.get(cfg.price_source)
    if build is None:
        raise UserError(f"price source {cfg.price_source!r}: use one of "
                        f"{', '.join(PRICE_SOURCES)}")
    base = build(cfg, metrics, on_raw)
    if not cfg.candles:
        return base
    klines = BinanceKlines(cfg.binance_ws_url, cfg.symbols, cfg.candles, metrics,
                           stall_after=cfg.stale_after, backoff_max=cfg.backoff_max,
                           retention_s=max(600.0, cfg.retry_limit + 2 * cfg.max_window_s),
                           on_raw=on_raw, boundary_s=cfg.boundary_s)
    return WithCandles(base, klines)


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
