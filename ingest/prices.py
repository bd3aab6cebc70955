"""Chainlink prices, whatever stream brings them: ``PriceSource`` and the ``PriceBook`` state.

The venue settles on observations stamped exactly at the window's start and end, so prices are
kept by their OBSERVATION time (``payload.timestamp``, whole seconds), not by arrival: a late,
duplicated or out-of-order update lands in its own second and never moves "latest" backwards.
The relay (``feeds.rtds``) is subscribed unfiltered, so ``PriceBook`` filters on
``payload.symbol``. The venue announced an authenticated successor (PolyBolt); a second source
is one more ``PriceSource`` subclass in ``feeds/`` and one more ``--price-source`` value.
Not a stream itself: ``slotml rederive`` replays relay frames through the same ``PriceBook``.

Bounds (``PriceGuard``): a price that is not finite, not positive, or more than ``MAX_RATIO``
(2x) above or below the last accepted price of the same asset is rejected and counted in
``prices_rejected{reason}`` (``non_finite``, ``non_positive``, ``out_of_bounds``). ln 2 = 0.69
is ~19x the worst real 1-minute move (3.7%, log 0.036, ETH) and 2.6x the worst real 24-hour
move (30%, log 0.263, XRP) in the one-minute candles of May-June 2025, so no real observation
of a live stream comes near it, while 1e308 or a decimal-point slip (10x) does. ``REANCHOR``
(5) consecutive rejected prices that agree with one another (each within the bound of the
first) are a real regime change, not noise: they are all accepted and become the anchor, so a
genuine jump can never lock the feed out. The first price seen for an asset anchors it.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slotml.ingest.books import decode_frame
from slotml.ingest.metrics import Metrics
from slotml.ingest.wire import ParseError

MAX_RATIO = 2.0  # a price beyond 2x / below 1/2 of the asset's last accepted one is rejected
REANCHOR = 5  # that many agreeing consecutive rejected prices re-anchor the asset
SPOT = "spot"
TWAP60 = "twap60"
TOPICS = {"crypto_prices_chainlink": SPOT, "crypto_prices_twap_sixty": TWAP60}
IGNORED_TOPICS = {"crypto_prices", "crypto_prices_twap_thirty"}
MAX_STAMP_MS = 10**14  # year 5138: anything later is not a stamp in milliseconds

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Observation:
    value: float
    obs_ts: float  # epoch s the venue stamped (whole seconds)
    recv_ts: float  # epoch s we first received it


class PriceSeries:
    """One symbol's one series: observations by stamp (ms).

    Memory stays flat whatever the number of assets: only the last ``recent_s`` seconds are
    kept in full; older observations survive only on window boundaries (multiples of
    ``boundary_s``: every start and end the collector may still ask for), for ``retention_s``.
    """

    __slots__ = ("obs", "latest", "retention_ms", "recent_ms", "boundary_ms")

    def __init__(self, retention_s: float, boundary_s: float | None = None,
                 recent_s: float = 180.0) -> None:
        self.obs: dict[int, Observation] = {}
        self.latest: Observation | None = None
        self.retention_ms = int(retention_s * 1000)
        self.recent_ms = int(min(recent_s, retention_s) * 1000)
        self.boundary_ms = int(boundary_s * 1000) if boundary_s else 0

    def add(self, ts_ms: int, value: float, recv_ts: float) -> str | None:
        """Returns None, or what was odd about it: "duplicate", "conflict", "out_of_order"."""
        old = self.obs.get(ts_ms)
        if old is not None:
            return "duplicate" if old.value == value else "conflict"  # first one wins
        o = Observation(value, ts_ms / 1000.0, recv_ts)
        self.obs[ts_ms] = o
        odd = None
        if self.latest is None or o.obs_ts > self.latest.obs_ts:
            self.latest = o
        else:
            odd = "out_of_order"
        if len(self.obs) % 64 == 0:
            self._prune()
        return odd

    def _prune(self) -> None:
        now_ms = int(self.latest.obs_ts * 1000)
        recent, old = now_ms - self.recent_ms, now_ms - self.retention_ms
        b = self.boundary_ms
        for k in [k for k in self.obs
                  if k < old or (k < recent and not (b and k % b == 0))]:
            del self.obs[k]

    def at(self, ts_s: float) -> Observation | None:
        return self.obs.get(int(round(ts_s * 1000)))


class PriceGuard:
    """One asset's plausibility bound (module docstring): the anchor is its last accepted price;
    a run of agreeing rejected prices (distinct observations) re-anchors it."""

    __slots__ = ("anchor", "run")

    def __init__(self) -> None:
        self.anchor: float | None = None
        self.run: dict[tuple[str, int], float] = {}  # (series, stamp ms) -> value, in order

    def check(self, value: float) -> str | None:
        """None if ``value`` is acceptable now, else the reason it is not."""
        if not math.isfinite(value):
            return "non_finite"
        if value <= 0:
            return "non_positive"
        if self.anchor is not None and not _near(value, self.anchor):
            return "out_of_bounds"
        return None

    def accepted(self, value: float) -> None:
        self.anchor = value
        self.run.clear()

    def rejected(self, series: str, ts_ms: int, value: float) -> dict[tuple[str, int], float]:
        """Record an out-of-bounds price; returns the run to accept when it re-anchors (else
        an empty dict). A price that disagrees with the run starts a new one."""
        first = next(iter(self.run.values()), None)
        if first is not None and not _near(value, first):
            self.run.clear()
        self.run[(series, ts_ms)] = value
        if len(self.run) < REANCHOR:
            return {}
        run = dict(self.run)
        self.accepted(value)
        return run


def _near(a: float, b: float) -> bool:
    return b / MAX_RATIO <= a <= b * MAX_RATIO


class PriceSource(ABC):
    """What the collector needs from a price feed (spot and the 60 s TWAP, per asset).

    Spot is read through ``spot_book(source)``: each window pins the spot source it starts
    with (``pin_spot``, the ``spot_source`` column), so a composite source (``feeds.failover``)
    never measures one window's spot move across two series."""

    name = "prices"
    spot_name = "chainlink"  # what ``spot_source`` says of this source's spot series

    @abstractmethod
    def latest(self, symbol: str, series: str) -> Observation | None: ...

    @abstractmethod
    def at(self, symbol: str, series: str, ts_s: float) -> Observation | None:
        """The observation stamped exactly at ``ts_s`` (no interpolation), if seen."""

    @abstractmethod
    def start(self) -> Any: ...

    @abstractmethod
    async def stop(self) -> None: ...

    def pin_spot(self, symbol: str, now: float) -> str:
        """The spot source a window of ``symbol`` starting now keeps to its end."""
        return self.spot_name

    def spot_book(self, source: str | None) -> Any:
        """What reads spot observations of ``source`` (``latest``/``at``)."""
        return self

    def streams(self) -> dict[str, Any]:
        """Its websockets by the name /health shows them under."""
        return {"rtds": self}

    def carries(self, series: str) -> bool:
        """Whether it carries the ``series`` a market may settle on (Chainlink's: spot and
        the 60 s TWAP; the Binance candles are ``feeds.binance``'s)."""
        return series in (SPOT, TWAP60)

    def health(self) -> tuple[list[str], list[str]]:
        """(problems: /health answers 503, warnings: /health says degraded)."""
        return [], []


class PriceBook:
    """Observations of every (symbol, series), fed from decoded relay messages. Pure state,
    shared by the live relay and ``slotml rederive``."""

    def __init__(self, symbols: tuple[str, ...], metrics: Metrics, retention_s: float = 3600.0,
                 stream: str = "rtds", boundary_s: float | None = None) -> None:
        self.metrics = metrics
        self.stream = stream
        self.spot_name = "pyth" if stream == "polybolt" else "chainlink"
        self.by_wire = {f"{s.lower()}/usd": s.upper() for s in symbols}
        self.series: dict[tuple[str, str], PriceSeries] = {
            (s.upper(), k): PriceSeries(retention_s, boundary_s)
            for s in symbols for k in (SPOT, TWAP60)}
        self.last_offset: float | None = None  # receipt - relay publish stamp, seconds
        self.guards: dict[str, PriceGuard] = {s.upper(): PriceGuard() for s in symbols}
        # called with (symbol, series, stamp ms, value) for each stored observation (failover)
        self.on_store: Callable[[str, str, int, float], None] | None = None

    def apply_frame(self, text: str, recv_ts: float) -> bool:
        """Decode and apply one relay frame. Returns True if it carried price data."""
        try:
            msgs = decode_frame(text)
        except ParseError as e:
            self.metrics.inc("frames_rejected", stream=self.stream, reason=e.reason)
            return False
        data = False
        for m in msgs:
            data = self.apply(m, recv_ts) or data
        return data

    def apply(self, m: dict[str, Any], recv_ts: float) -> bool:
        topic = m.get("topic")
        payload = m.get("payload")
        if topic is None:
            if "statusCode" in m or "message" in m or "body" in m:
                self.metrics.inc("relay_errors", stream=self.stream)
            else:
                self.metrics.inc("frames_rejected", stream=self.stream, reason="no_topic")
            return False
        series = TOPICS.get(topic)
        if topic == "crypto_prices" and isinstance(payload, dict) \
                and "/" in str(payload.get("symbol", "")):
            series = SPOT  # a chainlink backfill was once seen labelled crypto_prices ("x/usd")
        elif topic in IGNORED_TOPICS:
            return True  # Binance / 30 s TWAP: not subscribed by us, harmless
        if series is None:
            self.metrics.inc("unknown_event_types", stream=self.stream, type=str(topic)[:40])
            return False
        mtype = m.get("type")
        if mtype not in ("update", "subscribe"):  # never guess what an unknown type carries
            self.metrics.inc("unknown_event_types", stream=self.stream, type=f"{topic}:{mtype}"[:60])
            return False
        if not isinstance(payload, dict):
            self.metrics.inc("frames_rejected", stream=self.stream, reason="no_payload")
            return False
        try:
            pub = m.get("timestamp")
            if isinstance(pub, int | float) and not isinstance(pub, bool):
                self.last_offset = recv_ts - pub / 1000.0
            symbol = self.by_wire.get(str(payload.get("symbol", "")).lower())
            if symbol is None:
                return True  # another asset (we subscribe unfiltered)
            points = payload.get("data") if mtype == "subscribe" else [payload]
            if not isinstance(points, list):
                raise ParseError("bad_payload", "data")
            kept = not points  # an empty backfill is still a live answer
            for p in points:
                ts_ms, value = _point(p)
                kept = self.add_point(symbol, series, ts_ms, value, recv_ts) or kept
        except ParseError as e:
            self.metrics.inc("frames_rejected", stream=self.stream, reason=e.reason)
            return False
        self.metrics.inc("events", stream=self.stream, type=series)
        return kept  # only rejected prices: not data (stall detection, /health)

    def add_point(self, symbol: str, series: str, ts_ms: int, value: float,
                  recv_ts: float) -> bool:
        """Store one observation if it passes the asset's bound (else count why not); True if
        it was stored. Every stream's decoder ends here (the relay's above, PolyBolt's)."""
        ps = self.series[(symbol, series)]
        guard = self.guards[symbol]
        why = guard.check(value)
        if why is None:
            guard.accepted(value)
            self._store(ps, ts_ms, value, recv_ts)
            if self.on_store is not None:
                self.on_store(symbol, series, ts_ms, value)
            return True
        self.metrics.inc("prices_rejected", stream=self.stream, symbol=symbol, reason=why)
        if why != "out_of_bounds":
            return False
        run = guard.rejected(series, ts_ms, value)
        if run:
            self.metrics.inc("prices_reanchored", stream=self.stream, symbol=symbol)
            log.warning("%s: %d consecutive agreeing prices %.6g beyond 2x of the last accepted "
                        "one: re-anchored there (a real move, not noise)", symbol, len(run), value)
            for (ser, ms), v in run.items():
                self._store(self.series[(symbol, ser)], ms, v, recv_ts)
        return bool(run)

    def _store(self, ps: PriceSeries, ts_ms: int, value: float, recv_ts: float) -> None:
        odd = ps.add(ts_ms, value, recv_ts)
        if odd:
            self.metrics.inc("price_anomalies", stream=self.stream, kind=odd)

    def latest(self, symbol: str, series: str) -> Observation | None:
        ps = self.series.get((symbol, series))
        return ps.latest if ps else None

    def pin_spot(self, symbol: str, now: float) -> str:
        return self.spot_name

    def spot_book(self, source: str | None) -> PriceBook:
        return self

    def carries(self, series: str) -> bool:
        """As ``PriceSource.carries``: the TWAP always, spot only when it is Chainlink's (the
        relay's book; a PolyBolt book's spot is Pyth's). ``slotml rederive`` asks it too."""
        return series == TWAP60 or (series == SPOT and self.spot_name == "chainlink")

    def at(self, symbol: str, series: str, ts_s: float) -> Observation | None:
        ps = self.series.get((symbol, series))
        return ps.at(ts_s) if ps else None


def _point(p: Any) -> tuple[int, float]:
    if not isinstance(p, dict):
        raise ParseError("bad_payload", "point")
    ts, v = p.get("timestamp"), p.get("value")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not 0 < ts < MAX_STAMP_MS:
        raise ParseError("bad_payload", "timestamp")  # NaN fails the comparison too
    if v is None and p.get("full_accuracy_value") is not None:
        try:
            v = int(p["full_accuracy_value"]) / 10**18
        except OverflowError:
            v = math.inf  # counted by the bound as non_finite
        except (TypeError, ValueError) as e:
            raise ParseError("bad_payload", "full_accuracy_value") from e
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ParseError("bad_payload", "value")
    try:
        return int(ts), float(v)  # range and finiteness: PriceGuard, counted by reason
    except OverflowError:  # an int beyond float
        return int(ts), math.inf
