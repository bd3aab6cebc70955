"""The Binance kline feed's parser (``ingest/feeds/binance.py``) and its place beside the
Chainlink source. The frame shape is Binance's documented kline event (developers.binance.com,
"Kline/Candlestick Streams"), in the combined stream's ``{"stream", "data"}`` envelope."""

from __future__ import annotations

import json

from slotml.ingest.feeds.binance import (
    B1H_CLOSE,
    B1H_OPEN,
    B1M_CLOSE,
    B_LAST,
    BinanceKlines,
    WithCandles,
)
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import SPOT, TWAP60, PriceSource
from slotml.ingest.window import final_lookup, reading, settle_series

H = 1790611200  # 2026-09-28 16:00Z: the hourly payload's window (docs/venue.md §2.2)


def kline(interval: str, t: int, o: str, c: str, closed: bool, e_ms: int, sym: str = "BTCUSDT"):
    n = 3600 if interval == "1h" else 60
    k = {"t": t * 1000, "T": (t + n) * 1000 - 1, "s": sym, "i": interval, "f": 100, "L": 200,
         "o": o, "c": c, "h": c, "l": o, "v": "1000", "n": 100, "x": closed, "q": "1.0",
         "V": "500", "Q": "0.500", "B": "123456"}
    return json.dumps({"stream": f"{sym.lower()}@kline_{interval}",
                       "data": {"e": "kline", "E": e_ms, "s": sym, "k": k}})


def feed() -> BinanceKlines:
    return BinanceKlines("ws://127.0.0.1:1/binance/stream", ("BTC", "ETH"), ("1h", "1m"), Metrics())


def test_the_hourly_candle_is_open_and_final_close_by_its_open_time() -> None:
    f = feed()
    assert f.on_frame('{"result":null,"id":1}', 0.0) is False  # the SUBSCRIBE answer
    assert f.on_frame(kline("1h", H, "83370.00", "83400.10", False, (H + 10) * 1000), H + 10.1)
    assert f.at("BTC", B1H_OPEN, H).value == 83370.0
    assert f.at("BTC", B1H_CLOSE, H) is None  # not final yet
    assert f.latest("BTC", B_LAST).value == 83400.1
    f.on_frame(kline("1h", H, "83370.00", "83723.10", True, (H + 3599) * 1000), H + 3599.2)
    # the venue's eventMetadata of that window: priceToBeat 83370, finalPrice 83723.1
    assert (f.at("BTC", B1H_OPEN, H).value, f.at("BTC", B1H_CLOSE, H).value) == (83370.0, 83723.1)
    assert f.latest("ETH", B_LAST) is None


def test_the_noon_candles_and_the_rule_readings() -> None:
    f = feed()
    noon = 1790524800  # 2026-09-27 12:00 EDT, the daily window's start
    f.on_frame(kline("1m", noon, "84480.00", "84487.11", False, (noon + 30) * 1000), noon + 30.0)
    assert f.at("BTC", B1M_CLOSE, noon) is None
    f.on_frame(kline("1m", noon, "84480.00", "84487.11", True, (noon + 59) * 1000), noon + 59.1)
    assert f.at("BTC", B1M_CLOSE, noon).value == 84487.11
    assert settle_series("binance_noon") == B1M_CLOSE
    assert final_lookup("binance_noon", noon, noon + 86400) == (B1M_CLOSE, noon + 86400)
    assert final_lookup("binance1h", H, H + 3600) == (B1H_CLOSE, H)  # the window's own candle
    assert final_lookup("twap60", H, H + 900) == (TWAP60, H + 900)
    assert reading("binance1h_perp") is None and reading("unknown") is None


def test_bad_frames_are_counted_never_stored() -> None:
    f = feed()
    for text, reason in (("not json", "malformed_json"), ("[1]", "not_an_object"),
                         (kline("1h", H, "x", "1", False, 1), "bad_kline")):
        assert f.on_frame(text, 0.0) is False
        assert f.metrics.get("frames_rejected", stream="binance", reason=reason) == 1
    assert f.on_frame(kline("1h", H, "-1", "1", False, 1), 0.0) is False
    assert f.metrics.get("prices_rejected", stream="binance", symbol="BTC",
                         reason="non_positive") == 1
    assert f.on_frame(json.dumps({"e": "trade"}), 0.0) is False
    assert f.on_frame(kline("1h", H, "1", "1", False, 1, sym="DOGEUSDT"), 0.0)  # not ours
    assert f.latest("BTC", B_LAST) is None


class _Base(PriceSource):
    def latest(self, symbol, series):
        return None

    def at(self, symbol, series, ts_s):
        return None

    def start(self):
        return []

    async def stop(self):
        return None


def test_beside_the_chainlink_source() -> None:
    f = feed()
    both = WithCandles(_Base(), f)
    assert both.carries(B1H_OPEN) and both.carries(TWAP60) and both.carries(SPOT)
    assert not _Base().carries(B1H_OPEN)  # the relay alone does not: counted, NULL prices
    f.on_frame(kline("1h", H, "83370.00", "83400.10", False, (H + 10) * 1000), H + 10.1)
    assert both.at("BTC", B1H_OPEN, H).value == 83370.0
    assert set(both.streams()) == {"rtds", "binance"}
    assert both.health()[1]  # not connected: a warning, not a 503
