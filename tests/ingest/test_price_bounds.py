"""The relay's price bound: impossible prices are rejected by reason; a real regime re-anchors.

Before issue 19 a relay price of 1e308 was stored and became the window's chainlink_price,
price_to_beat and final_price.
"""

from __future__ import annotations

import json

from slotml.ingest.feeds.gamma import MarketInfo
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import MAX_RATIO, REANCHOR, SPOT, TWAP60, PriceBook
from slotml.ingest.window import Window, fill_bases

T0 = 1_788_600_000  # a window start (multiple of 900)


def frame(value: object, ts: int, topic: str = "crypto_prices_chainlink", raw: bool = False) -> str:
    v = value if raw else json.dumps(value)
    ms = ts * 1000
    return (f'{{"topic": "{topic}", "type": "update", "timestamp": {ms}, "payload": '
            f'{{"symbol": "btc/usd", "timestamp": {ms}, "value": {v}}}}}')


def book() -> PriceBook:
    return PriceBook(("BTC", "ETH"), Metrics())


def rejected(pb: PriceBook, reason: str | None = None) -> float:
    return pb.metrics.get("prices_rejected", **({"reason": reason} if reason else {}))


def test_1e308_is_rejected_and_never_stored() -> None:
    pb = book()
    assert pb.apply_frame(frame(90_000.0, T0 - 1), 1.0)
    assert pb.apply_frame(frame(1e308, T0), 1.0) is False
    assert pb.at("BTC", SPOT, T0) is None and pb.latest("BTC", SPOT).value == 90_000.0
    assert rejected(pb, "out_of_bounds") == 1
    assert pb.apply_frame(frame(90_010.0, T0 + 1), 1.0)  # the next real one is fine


def test_non_finite_and_non_positive_by_reason() -> None:
    pb = book()
    pb.apply_frame(frame(90_000.0, T0 - 1), 1.0)
    # NaN / Infinity / 1e999 literals are not JSON (the frame decoder, orjson, refuses them):
    # the whole frame is malformed, counted there, and nothing is stored
    for i, v in enumerate(("NaN", "Infinity", "-Infinity", "1e999")):
        assert pb.apply_frame(frame(v, T0 + i, raw=True), 1.0) is False
    assert pb.metrics.get("frames_rejected") == 4 and rejected(pb, "non_finite") == 0
    for i, v in enumerate((0, -90_000.0)):
        assert pb.apply_frame(frame(v, T0 + 10 + i), 1.0) is False
    assert rejected(pb, "non_positive") == 2
    assert pb.latest("BTC", SPOT).obs_ts == T0 - 1
    # a huge full_accuracy_value (an int beyond float, as a string) is non-finite, not a crash
    huge = {"topic": "crypto_prices_chainlink", "type": "update",
            "payload": {"symbol": "btc/usd", "timestamp": (T0 + 20) * 1000,
                        "full_accuracy_value": "9" * 400}}
    assert pb.apply_frame(json.dumps(huge), 1.0) is False and rejected(pb, "non_finite") == 1
    assert pb.latest("BTC", SPOT).obs_ts == T0 - 1


def test_bound_is_2x_either_way_per_asset() -> None:
    pb = book()
    pb.apply_frame(frame(100.0, T0), 1.0)
    assert pb.apply_frame(frame(100.0 * MAX_RATIO * 1.01, T0 + 1), 1.0) is False
    assert pb.apply_frame(frame(100.0 / MAX_RATIO / 1.01, T0 + 2), 1.0) is False
    assert pb.apply_frame(frame(100.0 * MAX_RATIO * 0.99, T0 + 3), 1.0)  # 1.98x: accepted
    assert pb.apply_frame(frame(120.0, T0 + 4, "crypto_prices_twap_sixty"), 1.0)  # same asset
    assert rejected(pb, "out_of_bounds") == 2
    # ETH has its own anchor
    eth = frame(3_000.0, T0).replace("btc/usd", "eth/usd")
    assert pb.apply_frame(eth, 1.0) and pb.latest("ETH", SPOT).value == 3_000.0


def test_a_real_regime_change_reanchors_after_five_agreeing_prices() -> None:
    pb = book()
    pb.apply_frame(frame(100.0, T0 - 1), 1.0)
    values = [300.0, 301.0, 299.5, 302.0, 300.5]  # 3x: beyond the bound, but consistent
    for i, v in enumerate(values[:-1]):
        assert pb.apply_frame(frame(v, T0 + i), 1.0) is False
    assert pb.apply_frame(frame(values[-1], T0 + REANCHOR - 1), 1.0)
    assert pb.metrics.get("prices_reanchored") == 1
    # the whole run is stored in its seconds (the window start included), and is the anchor
    assert [pb.at("BTC", SPOT, T0 + i).value for i in range(REANCHOR)] == values
    assert pb.apply_frame(frame(305.0, T0 + 10), 1.0) and rejected(pb) == REANCHOR  # counted, then taken
    assert pb.apply_frame(frame(100.0, T0 + 11), 1.0) is False  # the old level is now the outlier


def test_garbage_never_reanchors() -> None:
    pb = book()
    pb.apply_frame(frame(100.0, T0 - 1), 1.0)
    # interleaved with real prices: every accepted price resets the run
    for i in range(40):
        pb.apply_frame(frame(1e308 if i % 2 else 100.0 + i * 0.01, T0 + i), 1.0)
    # consecutive but disagreeing garbage (each > 2x from the run's first): no run of five
    for i, v in enumerate((1e308, 1e3, 1e250, 7e5, 1e300, 1e6, 1e200, 5e7)):
        pb.apply_frame(frame(v, T0 + 100 + i), 1.0)
    # the same rejected observation resent (a subscribe backfill) counts once towards a run
    for _ in range(10):
        pb.apply_frame(frame(1e9, T0 + 200), 1.0)
    assert pb.metrics.get("prices_reanchored") == 0
    assert max(o.value for o in pb.series[("BTC", SPOT)].obs.values()) < 101.0


def test_backfill_keeps_good_points_around_a_bad_one() -> None:
    pb = book()
    pts = [{"timestamp": (T0 + i) * 1000, "value": v}
           for i, v in enumerate((90_000.0, 1e308, 90_001.0))]
    msg = {"topic": "crypto_prices_twap_sixty", "type": "subscribe",
           "payload": {"symbol": "btc/usd", "data": pts}}
    assert pb.apply_frame(json.dumps(msg), 1.0)
    assert pb.at("BTC", TWAP60, T0).value == 90_000.0 and pb.at("BTC", TWAP60, T0 + 1) is None
    assert pb.at("BTC", TWAP60, T0 + 2).value == 90_001.0


def _window() -> Window:
    info = MarketInfo(symbol="BTC", family="15m", window_s=900, slot_ts=T0, end_ts=T0 + 900,
                      slug=f"btc-updown-15m-{T0}", condition_id="0xc", up_token_id="u",
                      down_token_id="d", settlement="twap60")
    return Window(info)


def test_a_rejected_first_observation_leaves_price_to_beat_null() -> None:
    """No neighbour is substituted: the window's price_to_beat (and its moves) stay NULL."""
    pb = book()
    pb.apply_frame(frame(90_000.0, T0 - 1, "crypto_prices_twap_sixty"), 1.0)
    pb.apply_frame(frame(1e308, T0, "crypto_prices_twap_sixty"), 1.0)
    pb.apply_frame(frame(90_002.0, T0 + 1, "crypto_prices_twap_sixty"), 1.0)
    win = _window()
    assert fill_bases(win, pb) == {"spot_source": "chainlink"}  # pinned at the first look
    assert fill_bases(win, pb) == {} and win.price_to_beat is None


def test_a_reanchored_start_fills_price_to_beat_on_a_later_tick() -> None:
    pb = book()
    pb.apply_frame(frame(30_000.0, T0 - 1, "crypto_prices_twap_sixty"), 1.0)
    win = _window()
    assert fill_bases(win, pb) == {"spot_source": "chainlink"}  # pinned at the first look
    for i in range(REANCHOR):
        pb.apply_frame(frame(90_000.0 + i, T0 + i, "crypto_prices_twap_sixty"), 1.0)
        if i < REANCHOR - 1:
            assert fill_bases(win, pb) == {}
    assert fill_bases(win, pb) == {"price_to_beat": 90_000.0}
