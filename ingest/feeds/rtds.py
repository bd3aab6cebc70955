"""The live-data relay ("RTDS"): Chainlink spot and 60 s TWAP prices over a websocket.

Subscribed unfiltered (its filtered subscriptions were seen to go silent after the backfill);
``PriceBook`` keeps what it sends by observation time and filters on the symbol.
"""

from __future__ import annotations

from typing import Any

from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import Observation, PriceBook, PriceSource
from slotml.ingest.transport.ws import RawHook, WsFeed


class RtdsRelay(WsFeed, PriceSource):
    """The live-data relay (``wss://ws-live-data.polymarket.com``), unfiltered, PING every 5 s."""

    name = "rtds"
    spot_name = "chainlink"

    def __init__(self, url: str, symbols: tuple[str, ...], metrics: Metrics,
                 ping_interval: float = 5.0, stall_after: float = 30.0, backoff_max: float = 30.0,
                 retention_s: float = 3600.0, on_raw: RawHook | None = None,
                 boundary_s: float | None = None) -> None:
        WsFeed.__init__(self, url, metrics, ping_interval, stall_after, backoff_max, on_raw)
        self.prices = PriceBook(symbols, metrics, retention_s, stream=self.name,
                                boundary_s=boundary_s)

    async def on_open(self, ws: Any) -> None:
        await ws.send('{"action": "subscribe", "subscriptions": ['
                      '{"topic": "crypto_prices_chainlink", "type": "*"}, '
                      '{"topic": "crypto_prices_twap_sixty", "type": "*"}]}')

    def on_frame(self, text: str, recv_ts: float) -> bool:
        return self.prices.apply_frame(text, recv_ts)  # PONG/empty: no events, no data

    def latest(self, symbol: str, series: str) -> Observation | None:
        return self.prices.latest(symbol, series)

    def at(self, symbol: str, series: str, ts_s: float) -> Observation | None:
        return self.prices.at(symbol, series, ts_s)
