"""Binance klines (public websocket, no credentials): the candles the hourly and daily markets
settle on (docs/venue.md §2.2, §2.3).

One combined-stream socket (``wss://stream.binance.com:9443/stream``), subscribed with
``{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1h", ...]}``; Binance pings, the socket
library answers. Each kline event carries the candle in progress: open time ``t``, open ``o``,
close ``c``, and ``x`` once the candle is final. Kept per asset, each by its own stamp:

* ``binance1h_open``: a 1h candle's open, stamped at its open time (the hourly price to beat);
* ``binance1h_close``: its close once final, stamped at its **open** time (the hourly final
  price: read at the window's start, as the candle is the window);
* ``binance1m_close``: a final 1m candle's close, stamped at its open time (the daily rule
  reads the candles opening at 12:00 ET the day before and the day);
* ``binance_last``: the close of any candle in progress, stamped at the event time (the live
  price the moves use).

Binance spot only: the ``_perp`` rules (HYPE on the USDⓈ-M perpetual) are not carried.
``WithCandles`` puts this feed beside the Chainlink source behind one ``PriceSource``.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import Observation, PriceSeries, PriceSource
from slotml.ingest.transport.ws import RawHook, WsFeed

B1H_OPEN, B1H_CLOSE, B1M_CLOSE, B_LAST = ("binance1h_open", "binance1h_close", "binance1m_close",
                                          "binance_last")
SERIES = (B1H_OPEN, B1H_CLOSE, B1M_CLOSE, B_LAST)
INTERVALS = ("1h", "1m")


class BinanceKlines(WsFeed, PriceSource):
    """The kline streams of ``intervals`` for every asset of ``symbols`` (Binance spot)."""

    name = "binance"
    keepalive = None  # the server pings

    def __init__(self, url: str, symbols: tuple[str, ...], intervals: tuple[str, ...],
                 metrics: Metrics, stall_after: float = 30.0, backoff_max: float = 30.0,
                 retention_s: float = 3600.0, on_raw: RawHook | None = None,
                 boundary_s: float | None = None) -> None:
        WsFeed.__init__(self, url, metrics, 0.0, stall_after, backoff_max, on_raw)
        self.intervals = tuple(i for i in INTERVALS if i in intervals)
        self.by_wire = {f"{s.upper()}USDT": s.upper() for s in symbols}
        self.series = {(s.upper(), k): PriceSeries(retention_s, boundary_s)
                       for s in symbols for k in SERIES}
        self.last_offset: float | None = None  # receipt - event time, seconds
        self.prices = self  # /health reads ``prices.last_offset`` of each stream

    async def on_open(self, ws: Any) -> None:
        params = [f"{w.lower()}@kline_{i}" for w in self.by_wire for i in self.intervals]
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": params, "id": 1}))

    def on_frame(self, text: str, recv_ts: float) -> bool:
        try:
            m = json.loads(text)
        except (json.JSONDecodeError, RecursionError, ValueError):
            self.metrics.inc("frames_rejected", stream=self.name, reason="malformed_json")
            return False
        if isinstance(m, dict) and "data" in m and "stream" in m:
            m = m["data"]  # the combined stream's envelope
        if not isinstance(m, dict):
            self.metrics.inc("frames_rejected", stream=self.name, reason="not_an_object")
            return False
        if "result" in m and "id" in m:
            return False  # the SUBSCRIBE answer
        if m.get("e") != "kline":
            self.metrics.inc("unknown_event_types", stream=self.name, type=str(m.get("e"))[:40])
            return False
        try:
            return self._kline(m, recv_ts)
        except (TypeError, ValueError, OverflowError):
            self.metrics.inc("frames_rejected", stream=self.name, reason="bad_kline")
            return False

    def _kline(self, m: dict[str, Any], recv_ts: float) -> bool:
        k = m["k"]
        symbol = self.by_wire.get(str(k.get("s") or m.get("s") or "").upper())
        if symbol is None or k.get("i") not in self.intervals:
            return True  # another asset or interval: harmless
        t_ms, e_ms = int(k["t"]), int(m["E"])
        o, c = float(k["o"]), float(k["c"])
        if not (math.isfinite(o) and math.isfinite(c) and o > 0 and c > 0) or t_ms <= 0:
            self.metrics.inc("prices_rejected", stream=self.name, symbol=symbol,
                             reason="non_positive")
            return False
        self.last_offset = recv_ts - e_ms / 1000.0
        self._add(symbol, B_LAST, e_ms, c, recv_ts)
        if k["i"] == "1h":
            self._add(symbol, B1H_OPEN, t_ms, o, recv_ts)
            if k.get("x") is True:
                self._add(symbol, B1H_CLOSE, t_ms, c, recv_ts)
        elif k.get("x") is True:
            self._add(symbol, B1M_CLOSE, t_ms, c, recv_ts)
        self.metrics.inc("events", stream=self.name, type=f"kline_{k['i']}")
        return True

    def _add(self, symbol: str, series: str, ts_ms: int, value: float, recv_ts: float) -> None:
        odd = self.series[(symbol, series)].add(ts_ms, value, recv_ts)
        if odd == "conflict" and series != B_LAST:
            self.metrics.inc("price_anomalies", stream=self.name, kind=odd)

    # ---- PriceSource --------------------------------------------------------------------------
    def latest(self, symbol: str, series: str) -> Observation | None:
        ps = self.series.get((symbol, series))
        return ps.latest if ps else None

    def at(self, symbol: str, series: str, ts_s: float) -> Observation | None:
        ps = self.series.get((symbol, series))
        return ps.at(ts_s) if ps else None

    def carries(self, series: str) -> bool:
        return series in SERIES

    def streams(self) -> dict[str, Any]:
        return {"binance": self}


class WithCandles(PriceSource):
    """The Chainlink source (relay, PolyBolt or both) and the Binance klines, one source:
    the candle series are the klines', everything else the base's."""

    def __init__(self, base: PriceSource, klines: BinanceKlines) -> None:
        self.base = base
        self.klines = klines
        self.name = base.name
        self.spot_name = base.spot_name

    def _for(self, series: str) -> PriceSource:
        return self.klines if series in SERIES else self.base

    def latest(self, symbol: str, series: str) -> Observation | None:
        return self._for(series).latest(symbol, series)

    def at(self, symbol: str, series: str, ts_s: float) -> Observation | None:
        return self._for(series).at(symbol, series, ts_s)

    def carries(self, series: str) -> bool:
        return self._for(series).carries(series)

    def pin_spot(self, symbol: str, now: float) -> str:
        return self.base.pin_spot(symbol, now)

    def spot_book(self, source: str | None) -> Any:
        return self.base.spot_book(source)

    def start(self) -> list[Any]:
        got = self.base.start()
        return [*(got if isinstance(got, list) else [got]), self.klines.start()]

    async def stop(self) -> None:
        await asyncio.gather(self.base.stop(), self.klines.stop())

    def streams(self) -> dict[str, Any]:
        return {**self.base.streams(), **self.klines.streams()}

    def health(self) -> tuple[list[str], list[str]]:
        problems, warnings = self.base.health()
        if not self.klines.connected:
            warnings = [*warnings, "binance klines not connected: the hourly and daily "
                        "windows' measured prices stay NULL meanwhile"]
        return problems, warnings

    def __getattr__(self, name: str) -> Any:  # e.g. PolyBolt's first_auth
        return getattr(self.base, name)
