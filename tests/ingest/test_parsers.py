"""The live-data relay parser against the real frames: series by observation stamp."""

from __future__ import annotations

import json

from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import SPOT, TWAP60, PriceBook
from tests.conftest import FIXTURES

FRAMES = (FIXTURES / "ingest" / "rtds_frames.jsonl").read_text().splitlines()


def book() -> PriceBook:
    return PriceBook(("BTC", "ETH"), Metrics())


def test_real_relay_frames() -> None:
    pb = book()
    for i, f in enumerate(FRAMES):
        pb.apply_frame(f, 1788600390.0 + i)
    spot = pb.at("BTC", SPOT, 1788600388)
    twap = pb.at("BTC", TWAP60, 1788600388)
    assert spot.value == 79696.94817428796 and spot.obs_ts == 1788600388.0
    assert twap.value == 79697.57531747443
    # the last frame is an older day's spot update: stored at its stamp, latest unchanged
    assert pb.latest("BTC", SPOT).obs_ts == 1788600388.0
    assert pb.at("BTC", SPOT, 1783369349).value == 63621.393086946046
    assert pb.metrics.get("price_anomalies", stream="rtds", kind="out_of_order") == 1
    # Binance and 30 s TWAP are ignored (not our series), the error answer is counted
    assert pb.latest("BTC", TWAP60).value == 79697.57531747443
    assert pb.metrics.get("relay_errors") == 1
    assert pb.metrics.get("frames_rejected") == 0
    assert pb.metrics.get("unknown_event_types") == 0
    assert pb.last_offset is not None


def test_subscribe_backfill_fills_each_second() -> None:
    pb = book()
    frame = json.loads(FRAMES[4])  # the 30 s TWAP backfill, relabelled as the 60 s topic
    frame["topic"] = "crypto_prices_twap_sixty"
    pb.apply_frame(json.dumps(frame), 5.0)
    for ts in (1788600329, 1788600330, 1788600331):
        assert pb.at("BTC", TWAP60, ts) is not None
    assert pb.latest("BTC", TWAP60).obs_ts == 1788600331
    assert pb.at("BTC", TWAP60, 1788600332) is None  # never interpolated


def test_chainlink_backfill_labelled_crypto_prices_routes_by_symbol() -> None:
    pb = book()
    pb.apply_frame(json.dumps({"topic": "crypto_prices", "type": "subscribe", "timestamp": 1,
                               "payload": {"symbol": "eth/usd", "data": [
                                   {"timestamp": 1000, "value": 3000.5}]}}), 2.0)
    assert pb.at("ETH", SPOT, 1).value == 3000.5


def test_duplicates_conflicts_and_array_frames() -> None:
    pb = book()
    upd = {"topic": "crypto_prices_chainlink", "type": "update", "timestamp": 5000,
           "payload": {"symbol": "btc/usd", "timestamp": 4000, "value": 100.0}}
    pb.apply_frame(json.dumps([upd, upd]), 5.0)
    conflict = json.loads(json.dumps(upd))
    conflict["payload"]["value"] = 101.0
    pb.apply_frame(json.dumps(conflict), 6.0)
    assert pb.at("BTC", SPOT, 4).value == 100.0  # first one wins
    assert pb.at("BTC", SPOT, 4).recv_ts == 5.0
    assert pb.metrics.get("price_anomalies", kind="duplicate") == 1
    assert pb.metrics.get("price_anomalies", kind="conflict") == 1


def test_other_symbols_are_filtered_locally() -> None:
    pb = book()
    pb.apply_frame(json.dumps({"topic": "crypto_prices_chainlink", "type": "update",
                               "timestamp": 2, "payload": {"symbol": "doge/usd",
                                                           "timestamp": 1000, "value": 0.2}}), 1)
    assert pb.latest("BTC", SPOT) is None and pb.metrics.get("frames_rejected") == 0


def test_bad_payloads_are_counted() -> None:
    pb = book()
    bad = [
        '{"topic": "crypto_prices_chainlink", "type": "update", "payload": {"symbol": "btc/usd", "timestamp": "x", "value": 1}}',
        '{"topic": "crypto_prices_chainlink", "type": "update", "payload": {"symbol": "btc/usd", "timestamp": 1000, "value": -1}}',
        '{"topic": "crypto_prices_chainlink", "type": "update", "payload": {"symbol": "btc/usd", "timestamp": 1000, "value": "NaN"}}',
        '{"topic": "crypto_prices_chainlink", "type": "update"}',
        '{"topic": "crypto_prices_chainlink", "type": "upd',
    ]
    for f in bad:
        assert pb.apply_frame(f, 1.0) is False
    # a well-formed but impossible price is the bound's: counted by reason, not as a bad frame
    assert pb.metrics.get("prices_rejected", reason="non_positive") == 1
    assert pb.metrics.get("frames_rejected") == len(bad) - 1
    assert pb.latest("BTC", SPOT) is None
    assert pb.apply_frame('{"topic": "crypto_prices_mystery", "payload": {}}', 1.0) is False
    assert pb.metrics.get("unknown_event_types", type="crypto_prices_mystery") == 1


def test_full_accuracy_value_fallback() -> None:
    pb = book()
    pb.apply_frame(json.dumps({"topic": "crypto_prices_chainlink", "type": "update",
                               "payload": {"symbol": "btc/usd", "timestamp": 1000,
                                           "full_accuracy_value": "79696948174287960000000"}}), 1)
    assert pb.at("BTC", SPOT, 1).value == 79696.94817428796


def test_unknown_message_type_is_skipped_not_trusted() -> None:
    pb = book()
    assert pb.apply_frame(json.dumps({"topic": "crypto_prices_chainlink", "type": "mystery",
                                      "timestamp": 2, "payload": {"symbol": "btc/usd",
                                                                  "timestamp": 1000,
                                                                  "value": 1.0}}), 1) is False
    assert pb.latest("BTC", SPOT) is None
    assert pb.metrics.get("unknown_event_types", stream="rtds") == 1
