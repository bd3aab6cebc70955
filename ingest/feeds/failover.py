"""``--price-source auto``: the relay and PolyBolt together, each filling the other's gaps.

Settlement (the Chainlink 60 s TWAP) comes from whichever source has it: each observation is
kept by its own stamp in its own source's book, ``at`` asks the relay first and PolyBolt
second, and ``latest`` is the newer stamp of the two, so while either source is alive no
settlement price goes NULL. Spot is two different series (Chainlink's through the relay,
Pyth's through PolyBolt): a window pins one at its start (``pin_spot``: the relay's if its
spot is fresh, else PolyBolt's if fresh, else the relay's) and reads only that one to its end.

When both sources carry the same TWAP stamp they must agree: a relative difference beyond
``TWAP_TOLERANCE`` (1e-9: the same Chainlink observation, rounded differently at most) is
counted in ``twap_disagreements{symbol}`` and logged once per asset; the relay's value is the
one used (it was PolyBolt's predecessor for every stored row). PolyBolt refusing the
credentials (4001) is a warning here: ``/health`` says degraded and collection goes on over
the relay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slotml.ingest.feeds.polybolt import PolyBolt
from slotml.ingest.feeds.rtds import RtdsRelay
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import SPOT, TWAP60, Observation, PriceSource

log = logging.getLogger(__name__)

TWAP_TOLERANCE = 1e-9  # relative; see the module docstring


class Failover(PriceSource):
    """Both sources, one ``PriceSource``."""

    name = "auto"

    def __init__(self, relay: RtdsRelay, polybolt: PolyBolt, metrics: Metrics,
                 stale_after: float) -> None:
        self.relay = relay
        self.polybolt = polybolt
        self.metrics = metrics
        self.stale_after = stale_after
        self.books = {"chainlink": relay, "pyth": polybolt}
        self._warned: set[str] = set()
        relay.prices.on_store = lambda *a: self._compare(polybolt, *a)
        polybolt.prices.on_store = lambda *a: self._compare(relay, *a)

    def _compare(self, other: PriceSource, symbol: str, series: str, ts_ms: int,
                 value: float) -> None:
        if series != TWAP60:
            return
        o = other.at(symbol, TWAP60, ts_ms / 1000.0)
        if o is None:
            return
        self.metrics.inc("twap_compared", symbol=symbol)
        if abs(o.value - value) > TWAP_TOLERANCE * max(abs(o.value), abs(value)):
            self.metrics.inc("twap_disagreements", symbol=symbol)
            if symbol not in self._warned:
                self._warned.add(symbol)
                log.warning("%s: relay and PolyBolt disagree on the TWAP stamped %d ms (%r vs "
                            "%r); the relay's is kept (counted in twap_disagreements)",
                            symbol, ts_ms, o.value, value)

    # ---- prices -----------------------------------------------------------------------------
    def latest(self, symbol: str, series: str) -> Observation | None:
        """The newer stamp of the two (spot: only /health asks: is any spot alive)."""
        a, b = self.relay.latest(symbol, series), self.polybolt.latest(symbol, series)
        if a is None or (b is not None and b.obs_ts > a.obs_ts):
            return b
        return a

    def at(self, symbol: str, series: str, ts_s: float) -> Observation | None:
        if series == SPOT:
            return self.relay.at(symbol, SPOT, ts_s)  # read spot through spot_book
        return self.relay.at(symbol, series, ts_s) or self.polybolt.at(symbol, series, ts_s)

    def _fresh(self, src: PriceSource, symbol: str, now: float) -> bool:
        o = src.latest(symbol, SPOT)
        return o is not None and now - o.obs_ts <= self.stale_after

    def pin_spot(self, symbol: str, now: float) -> str:
        if self._fresh(self.relay, symbol, now):
            return "chainlink"
        return "pyth" if self._fresh(self.polybolt, symbol, now) else "chainlink"

    def spot_book(self, source: str | None) -> PriceSource:
        return self.books.get(source or "chainlink", self.relay)

    # ---- life cycle and health --------------------------------------------------------------
    def start(self) -> list[Any]:
        return [self.relay.start(), *self.polybolt.start()]

    async def stop(self) -> None:
        await asyncio.gather(self.relay.stop(), self.polybolt.stop())

    def streams(self) -> dict[str, Any]:
        return {"rtds": self.relay, "polybolt": self.polybolt}

    def health(self) -> tuple[list[str], list[str]]:
        """Either source down is a warning (degraded): the other one carries the prices."""
        warnings = [f"{p}: continuing on the relay" for p in self.polybolt.health()[0]]
        for name, feed in self.streams().items():
            if not feed.connected:
                warnings.append(f"{name}: disconnected, prices from the other source")
        return [], warnings
