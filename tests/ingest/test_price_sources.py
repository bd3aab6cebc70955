"""The price sources as plain objects (never started: observations fed to their books directly):
which source a settlement series is read from, and ``--price-source auto``'s TWAP comparison."""

from __future__ import annotations

import pytest

from slotml.ingest.books import BookStore
from slotml.ingest.credentials import Credentials
from slotml.ingest.feeds.failover import TWAP_TOLERANCE, Failover
from slotml.ingest.feeds.gamma import MarketInfo
from slotml.ingest.feeds.polybolt import PolyBolt
from slotml.ingest.feeds.rtds import RtdsRelay
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import SPOT, TWAP60
from slotml.ingest.raw import Replay
from slotml.ingest.window import Window, build_row, capture, fill_bases, settle_at

T0 = 1_796_598_000  # a 15-minute (and hourly) boundary
CHAINLINK, PYTH = 90_000.0, 90_027.0


def sources(metrics: Metrics | None = None) -> tuple[RtdsRelay, PolyBolt, Failover]:
    m = metrics or Metrics()
    relay = RtdsRelay("ws://127.0.0.1:9/rtds", ("BTC",), m)
    pb = PolyBolt("ws://127.0.0.1:9/polybolt", ("BTC",), m,
                  Credentials("k", "s", "p", origin="test"), required=False)
    return relay, pb, Failover(relay, pb, m, stale_after=3.0)


def window(settlement: str, window_s: int = 900) -> Window:
    family = {900: "15m", 3600: "1h"}[window_s]
    return Window(MarketInfo(symbol="BTC", family=family, window_s=window_s, slot_ts=T0,
                             end_ts=T0 + window_s, slug=f"btc-updown-{family}-{T0}",
                             condition_id="0xc", up_token_id="u", down_token_id="d",
                             settlement=settlement))


def row(win: Window, prices, at: float) -> dict:
    m = Metrics()
    return build_row(capture(win, at, BookStore(m), prices, False, 30.0, m), int(at * 1000), m)


def test_polybolt_alone_never_reads_its_pyth_spot_as_a_spot_settlement() -> None:
    _, pb, _ = sources()
    for s in (T0, T0 + 10):
        pb.prices.add_point("BTC", SPOT, s * 1000, PYTH + s - T0, s)
        pb.prices.add_point("BTC", TWAP60, s * 1000, CHAINLINK + s - T0, s)
    assert pb.at("BTC", SPOT, T0).value == PYTH  # it answers for spot: Pyth's ...
    assert not pb.carries(SPOT) and settle_at(pb, "BTC", SPOT, T0) is None  # ... not settled on
    win = window("spot")
    assert fill_bases(win, pb, T0) == {"spot_source": "pyth", "spot_price_to_beat": PYTH}
    assert win.price_to_beat is None
    r = row(win, pb, T0 + 10)
    assert r["dir_move_pct"] is None and r["abs_move_pct"] is None
    assert r["spot_move_pct"] is not None and r["chainlink_price"] == PYTH + 10
    pb.prices.add_point("BTC", SPOT, (T0 + 900) * 1000, PYTH, T0 + 900)
    assert settle_at(pb, "BTC", SPOT, T0 + 900) is None  # the final price: NULL too
    twap = window("twap60")  # the TWAP it does carry
    fill_bases(twap, pb, T0)
    assert twap.price_to_beat == CHAINLINK and row(twap, pb, T0 + 10)["dir_move_pct"] is not None


def test_auto_reads_chainlink_spot_from_the_relay_and_no_move_across_series() -> None:
    relay, pb, auto = sources()
    pb.prices.add_point("BTC", SPOT, T0 * 1000, PYTH, T0)
    pinned_pyth = window("spot")  # the relay is silent at the start: Pyth pinned
    fill_bases(pinned_pyth, auto, T0)
    assert pinned_pyth.spot_source == "pyth" and pinned_pyth.price_to_beat is None
    relay.prices.add_point("BTC", SPOT, T0 * 1000, CHAINLINK, T0 + 2)  # the relay is back
    for s in (T0 + 1, T0 + 10):
        relay.prices.add_point("BTC", SPOT, s * 1000, CHAINLINK + 5, s)
        pb.prices.add_point("BTC", SPOT, s * 1000, PYTH + 5, s)
    fill_bases(pinned_pyth, auto, T0 + 2)
    assert pinned_pyth.price_to_beat == CHAINLINK  # Chainlink's, through the relay
    r = row(pinned_pyth, auto, T0 + 10)
    assert r["chainlink_price"] == PYTH + 5 and r["spot_move_pct"] is not None
    assert r["dir_move_pct"] is None  # Pyth now against Chainlink's start: never measured
    pinned_chainlink = window("spot")
    fill_bases(pinned_chainlink, auto, T0 + 1)
    assert pinned_chainlink.spot_source == "chainlink"
    assert row(pinned_chainlink, auto, T0 + 10)["dir_move_pct"] == pytest.approx(
        (CHAINLINK + 5) / CHAINLINK * 100 - 100)


def test_rederive_reads_the_relays_spot_and_no_candle_it_lacks() -> None:
    rp = Replay("1h", ("BTC",), 30.0)
    assert rp.prices.carries(SPOT) and rp.prices.carries(TWAP60)
    assert not rp.prices.carries("binance1h_open")
    win = window("binance1h", 3600)
    rp.windows[("BTC", T0)] = win
    rows = rp.rows_at((T0 + 30) * 1000, None, T0 + 30.0)  # was an AttributeError
    assert len(rows) == 1 and rows[0]["dir_move_pct"] is None and win.price_to_beat is None


def test_twap_disagreement_beyond_the_tolerance_is_counted() -> None:
    m = Metrics()
    relay, pb, _ = sources(m)
    v = 90_000.123456789
    relay.prices.add_point("BTC", TWAP60, T0 * 1000, v, T0)
    assert m.get("twap_compared") == 0  # PolyBolt has no such stamp yet
    pb.prices.add_point("BTC", TWAP60, T0 * 1000, v * (1 + 0.5 * TWAP_TOLERANCE), T0)
    assert m.get("twap_compared") == 1 and m.get("twap_disagreements") == 0  # within: rounding
    pb.prices.add_point("BTC", TWAP60, (T0 + 1) * 1000, v * (1 + 3 * TWAP_TOLERANCE), T0 + 1)
    relay.prices.add_point("BTC", TWAP60, (T0 + 1) * 1000, v, T0 + 1)  # either order
    assert m.get("twap_compared") == 2
    assert m.get("twap_disagreements", symbol="BTC") == 1
    relay.prices.add_point("BTC", TWAP60, (T0 + 2) * 1000, v, T0 + 2)
    pb.prices.add_point("BTC", TWAP60, (T0 + 2) * 1000, v * (1 - 3 * TWAP_TOLERANCE), T0 + 2)
    assert m.get("twap_compared") == 3 and m.get("twap_disagreements") == 2  # below, too
    for s in (T0 + 3, T0 + 4):  # another stamp each: nothing to compare, nothing counted
        relay.prices.add_point("BTC", TWAP60, s * 1000, v, s)
        pb.prices.add_point("BTC", TWAP60, (s + 100) * 1000, 1.5 * v, s)
    relay.prices.add_point("BTC", SPOT, (T0 + 5) * 1000, v, T0 + 5)  # spot: two series, never
    pb.prices.add_point("BTC", SPOT, (T0 + 5) * 1000, 1.1 * v, T0 + 5)  # compared
    assert m.get("twap_compared") == 3 and m.get("twap_disagreements") == 2
