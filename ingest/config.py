"""The collector's typed configuration (``slotml collect``), logged once at start-up.

Precedence: flag > environment variable > default (the real venue's endpoints), so the same
supervisor program file points at production or at the sim by environment alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from slotml import venue
from slotml.errors import UserError
from slotml.ingest.credentials import Credentials, load_credentials
from slotml.settings import CommonSettings

REAL_GAMMA_URL = "https://gamma-api.polymarket.com"
REAL_CLOB_URL = "https://clob.polymarket.com"
REAL_CLOB_WS_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/market"
REAL_RTDS_WS_URL = "wss://ws-live-data.polymarket.com"
REAL_POLYBOLT_WS_URL = "wss://ws-live-v2.polymarket.com/ws"
REAL_BINANCE_WS_URL = "wss://stream.binance.com:9443/stream"  # public klines (1h, 1d families)

ENV_URLS = {
    "gamma_url": ("SLOTML_GAMMA_URL", REAL_GAMMA_URL),
    "clob_url": ("SLOTML_CLOB_URL", REAL_CLOB_URL),
    "clob_ws_url": ("SLOTML_CLOB_WS_URL", REAL_CLOB_WS_URL),
    "rtds_ws_url": ("SLOTML_RTDS_WS_URL", REAL_RTDS_WS_URL),
    "polybolt_ws_url": ("SLOTML_POLYBOLT_WS_URL", REAL_POLYBOLT_WS_URL),
    "binance_ws_url": ("SLOTML_BINANCE_WS_URL", REAL_BINANCE_WS_URL),
}
DEFAULT_SYMBOLS = ("BTC", "ETH", "SOL", "XRP")
# --price-source values (``feeds.factory`` builds each; the first is the default).
# relay: the live-data relay alone; polybolt: PolyBolt alone; auto: both, failing over
PRICE_SOURCES = ("relay", "polybolt", "auto")

@dataclass(frozen=True)
class CollectorConfig:
    common: CommonSettings
    family: str = "15m"  # the first of ``families`` (what one-family callers read)
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    families: tuple[str, ...] = ()  # --family 5m,15m,1h: every family in one process
    all_symbols: bool = False  # --symbols all: every asset of venue.ASSETS that Gamma lists
    time_scale: int = 1  # families' lengths divided by this (tests, demos; slotml/venue.py)
    snapshots_per_window: int | None = None  # each family at window_s / this (else the interval)
    gamma_url: str = REAL_GAMMA_URL
    clob_url: str = REAL_CLOB_URL
    clob_ws_url: str = REAL_CLOB_WS_URL
    rtds_ws_url: str = REAL_RTDS_WS_URL
    price_source: str = PRICE_SOURCES[0]  # where Chainlink prices come from (feeds.factory)
    polybolt_ws_url: str = REAL_POLYBOLT_WS_URL
    binance_ws_url: str = REAL_BINANCE_WS_URL
    polybolt_credentials: Credentials | None = None  # prints masked (ingest.credentials)
    polybolt_auth_retry: float = 300.0  # s to wait after a 4001 before authenticating again
    snapshot_interval: float = 30.0
    discovery_interval: float = 60.0
    resolution_interval: float = 60.0
    stale_after: float = 30.0
    retry_limit: float = 3600.0
    health_port: int = 9108
    raw_dir: Path | None = None
    raw_keep_days: float | None = None  # delete raw capture hours older than this (None: keep)
    queue_max: int = 1000  # DurableWriter: rows cached in memory (the rest is read from the spool)
    spool_max_mb: float = 512.0  # DurableWriter: spool size beyond which the oldest rows drop
    clob_ping_interval: float = 10.0
    rtds_ping_interval: float = 5.0
    http_timeout: float = 10.0
    backoff_max: float = 30.0
    max_clock_offset: float = 5.0  # /health answers 503 beyond this (seconds vs venue stamps)
    lookahead_windows: int | None = None  # None = derived from the discovery interval
    trades: bool = True  # record the trade tape (slot_trades, slot_tape_gaps); --no-trades
    mmap_threshold_kib: int = 128  # glibc's mmap threshold, fixed (ingest/heap.py); 0 = dynamic

    @property
    def fams(self) -> tuple[str, ...]:
        """The families collected, in the order given."""
        return self.families or (self.family,)

    def length(self, family: str) -> int:
        """A family's (scaled) nominal window length: its ``window_s`` in the store."""
        return venue.scaled_seconds(family, self.time_scale)

    @property
    def window_s(self) -> int:
        return self.length(self.family)

    @property
    def candles(self) -> tuple[str, ...]:
        """The Binance kline intervals the collected families settle on (none: no socket)."""
        return tuple(sorted({venue.family(f).candle for f in self.fams} - {""}))

    @property
    def boundary_s(self) -> int:
        """Every window start and end of every family is a multiple of this (the price feeds
        keep their observations at these seconds): the lengths' gcd, an Eastern-grid family
        counting as its hour (its starts are whole hours)."""
        import math

        return math.gcd(*(min(self.length(f), venue.scaled_seconds("1h", self.time_scale))
                          if venue.family(f).anchor != "utc" else self.length(f)
                          for f in self.fams))

    @property
    def max_window_s(self) -> int:
        return max(self.length(f) for f in self.fams) + 3600 // self.time_scale  # DST: +1 h

    def cadence(self, family: str) -> float:
        """The snapshot interval of ``family``: its window over --snapshots-per-window, else
        --snapshot-interval."""
        if self.snapshots_per_window:
            return self.length(family) / self.snapshots_per_window
        return self.snapshot_interval

    def lookahead_of(self, family: str) -> int:
        """How many windows ahead discovery looks: enough to cover one discovery interval."""
        if self.lookahead_windows is not None:
            return self.lookahead_windows
        return max(3, int(self.discovery_interval // self.length(family)) + 2)

    @property
    def lookahead(self) -> int:
        return self.lookahead_of(self.family)


def _env_or(value: str | None, key: str) -> str:
    """The flag, else the environment (checked like the flag: a URL that cannot be parsed is
    refused at start, not retried forever), else the real venue's."""
    import argparse

    from slotml.argtypes import http_url, ws_url

    env, default = ENV_URLS[key]
    if value:
        return value.rstrip("/")
    if os.environ.get(env):
        try:
            return (ws_url if key.endswith("ws_url") else http_url)(os.environ[env])
        except argparse.ArgumentTypeError as e:
            raise UserError(f"env {env}: {e}") from None
    return default


def _keep_days(v: float | None) -> float | None:
    if v is not None and not v > 0:
        raise UserError("--raw-keep-days must be positive (days of raw capture to keep)")
    return v


def config_from_args(args) -> CollectorConfig:  # noqa: ANN001 - argparse.Namespace
    common = CommonSettings.from_args(args)
    symbols = tuple(s.strip().upper() for s in (args.symbols or "").split(",") if s.strip())
    if not symbols:
        raise UserError("--symbols: name at least one asset, e.g. BTC,ETH, or all")
    every = symbols == ("ALL",)
    if every:
        symbols = tuple(venue.ASSETS)
    fams = tuple(f.strip() for f in str(args.family or "").split(",") if f.strip())
    if not fams or len(set(fams)) != len(fams):
        raise UserError("--family: name each family once, e.g. 15m or 5m,15m,1h")
    scale = getattr(args, "time_scale", 1)
    try:
        for f in fams:
            venue.family(f)
            venue.scaled_seconds(f, venue.check_scale(scale))
    except UserError as e:
        raise UserError(f"--family: {e}") from None
    # numbers are range-checked by their argparse types (slotml/argtypes.py), in one place
    return CollectorConfig(
        common=common,
        family=fams[0],
        families=fams,
        symbols=symbols,
        all_symbols=every,
        time_scale=scale,
        snapshots_per_window=getattr(args, "snapshots_per_window", None),
        gamma_url=_env_or(args.gamma_url, "gamma_url"),
        clob_url=_env_or(args.clob_url, "clob_url"),
        clob_ws_url=_env_or(args.clob_ws_url, "clob_ws_url"),
        rtds_ws_url=_env_or(args.rtds_ws_url, "rtds_ws_url"),
        price_source=args.price_source,
        polybolt_ws_url=_env_or(getattr(args, "polybolt_ws_url", None), "polybolt_ws_url"),
        binance_ws_url=_env_or(getattr(args, "binance_ws_url", None), "binance_ws_url"),
        polybolt_credentials=load_credentials(
            getattr(args, "polybolt_credentials", None),
            needed=args.price_source in ("polybolt", "auto"), source=args.price_source),
        polybolt_auth_retry=getattr(args, "polybolt_auth_retry", 300.0),
        snapshot_interval=args.snapshot_interval,
        discovery_interval=args.discovery_interval,
        resolution_interval=args.resolution_interval,
        stale_after=args.stale_after,
        retry_limit=args.retry_limit,
        health_port=args.health_port,
        raw_dir=Path(args.raw_dir) if args.raw_dir else None,
        raw_keep_days=_keep_days(getattr(args, "raw_keep_days", None)),
        lookahead_windows=args.lookahead,
        queue_max=args.queue_max,
        spool_max_mb=args.spool_max_mb,
        trades=not getattr(args, "no_trades", False),
        mmap_threshold_kib=getattr(args, "mmap_threshold_kib", 128),
    )
