"""Hypothesis-generated frames into every feed parser: malformed JSON, wrong types, extreme
numbers (NaN, inf, 1e308, ints beyond float), unknown events, deep nesting.

Nothing raises past a parser, and nothing that comes out breaks the schema's rules: books give
snapshot rows with bid < ask and prices in [0, 1] (or NULL), the relay stores only finite
positive prices, prints have a price in [0, 1] and a finite positive size, and Gamma's market
metadata has finite numbers and end > start.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slotml.ingest.books import KNOWN_EVENTS, BookStore
from slotml.ingest.feeds.gamma import parse_market
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import SPOT, TWAP60, PriceBook
from slotml.ingest.snapshot import WindowRef, make_snapshot
from slotml.ingest.tape import parse_prints
from slotml.ingest.wire import ParseError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKENS = ["tok-up", "tok-down"]
T0 = 1_788_600_000

# the numbers a hostile or broken feed sends, as JSON numbers or strings
EXTREME = st.sampled_from([0, -1, 1, 0.5, 1.0000001, -0.0, 1e308, -1e308, 1e-320, 10**400,
                           -(10**30), float("nan"), float("inf"), float("-inf"), 2**63, 2**64])
NUMBER = st.one_of(EXTREME, st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-(10**20), 10**20), st.floats(0, 1))
NUMERIC_TEXT = st.one_of(NUMBER.map(str), st.sampled_from(["", "NaN", "1e999", ".48", "0x10", "1,5",
                                                            "٣", " 0.5 ", "9" * 400]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, NUMERIC_TEXT, st.text(max_size=6))
JSONISH = st.recursive(SCALAR, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.text(max_size=5), c, max_size=3), max_leaves=8)
VALUE = st.one_of(NUMBER, NUMERIC_TEXT, JSONISH)


def dumps(v: Any) -> str:
    return json.dumps(v, allow_nan=True)  # NaN / Infinity tokens: Python's json reads them back


def mangle(text: str) -> st.SearchStrategy[str]:
    """A frame as sent, cut short, or wrapped in garbage."""
    return st.sampled_from([text, text[: len(text) // 2], "[" + text, text + "}", "PONG",
                            "", "[" * 3000 + "]" * 3000, "\x00" + text])


# ---- CLOB market channel ---------------------------------------------------------------------

levels = st.lists(st.fixed_dictionaries({"price": VALUE, "size": VALUE}), max_size=4)
good_levels = st.lists(st.fixed_dictionaries({
    "price": st.floats(0.01, 0.99).map(lambda x: f"{x:.2f}"),
    "size": st.floats(0, 1e6).map(lambda x: f"{x:.2f}")}), max_size=4)
book_ev = st.fixed_dictionaries({
    "event_type": st.just("book"), "asset_id": st.sampled_from(TOKENS) | SCALAR,
    "bids": good_levels | levels | VALUE, "asks": good_levels | levels | VALUE,
    "timestamp": VALUE, "tick_size": st.sampled_from(["0.01", None]) | VALUE})
change = st.fixed_dictionaries({
    "asset_id": st.sampled_from(TOKENS), "side": st.sampled_from(["BUY", "SELL", "buy", "x"]) | SCALAR,
    "price": st.floats(0.01, 0.99).map(lambda x: f"{x:.2f}") | VALUE,
    "size": st.floats(0, 1e6).map(str) | VALUE,
    "best_bid": VALUE, "best_ask": VALUE})
price_change_ev = st.fixed_dictionaries({
    "event_type": st.just("price_change"), "price_changes": st.lists(change, max_size=3) | VALUE,
    "timestamp": VALUE})
trade_ev = st.fixed_dictionaries({
    "event_type": st.just("last_trade_price"), "asset_id": st.sampled_from(TOKENS) | SCALAR,
    "market": st.just("0xc") | SCALAR, "price": VALUE, "size": VALUE,
    "side": st.sampled_from(["BUY", "SELL"]) | SCALAR, "timestamp": VALUE,
    "fee_rate_bps": VALUE, "transaction_hash": st.just("0xabc") | SCALAR})
other_ev = st.fixed_dictionaries({
    "event_type": st.sampled_from(sorted(KNOWN_EVENTS) + ["mystery", ""]) | SCALAR,
    "asset_id": st.sampled_from(TOKENS), "market": VALUE, "winning_asset_id": VALUE,
    "new_tick_size": VALUE, "timestamp": VALUE})
clob_event = st.one_of(book_ev, price_change_ev, trade_ev, other_ev)
clob_frame = st.one_of(clob_event.map(dumps), st.lists(clob_event, max_size=4).map(dumps),
                       JSONISH.map(dumps), st.text(max_size=30)).flatmap(mangle)


def _assert_rows_sane(books: BookStore) -> None:
    up, down = books.top(TOKENS[0], depth=5), books.top(TOKENS[1], depth=5)
    row, _rejects = make_snapshot(WindowRef("BTC", 900, T0), T0 * 1000, T0 + 1.0, up, down,
                                  90_000.0, 90_000.0)
    for side in ("up", "down"):
        bid, ask = row.get(f"bid_{side}"), row.get(f"ask_{side}")
        for p in (bid, ask):
            assert p is None or (math.isfinite(p) and 0.0 <= p <= 1.0), row
        if bid is not None and ask is not None:
            assert bid < ask, row
    for k, v in row.items():
        if isinstance(v, float):
            assert math.isfinite(v), (k, v)
        if "size" in k and v is not None:
            assert v >= 0, (k, v)


@FUZZ
@given(frames=st.lists(clob_frame, min_size=1, max_size=6))
def test_clob_frames_never_raise_and_rows_keep_the_rules(frames: list[str]) -> None:
    books = BookStore(Metrics(), on_resolved=lambda *_: None)
    for i, f in enumerate(frames):
        books.apply_frame(f, T0 + i)
        _assert_rows_sane(books)
        events = books.decode(f)
        prints, _bad = parse_prints(events, T0 + i)
        for p in prints:
            assert 0.0 <= p.price <= 1.0 and math.isfinite(p.size) and p.size > 0
            assert p.fee_rate_bps is None or (math.isfinite(p.fee_rate_bps) and p.fee_rate_bps >= 0)


# ---- the live-data relay ---------------------------------------------------------------------

point = st.fixed_dictionaries({"timestamp": st.integers(0, 2 * 10**12) | VALUE,
                               "value": st.floats(1, 1e6) | VALUE},
                              optional={"full_accuracy_value": NUMERIC_TEXT | VALUE})
relay_msg = st.fixed_dictionaries({
    "topic": st.sampled_from(["crypto_prices_chainlink", "crypto_prices_twap_sixty", "crypto_prices",
                              "crypto_prices_twap_thirty", "mystery"]) | SCALAR,
    "type": st.sampled_from(["update", "subscribe", "other"]) | SCALAR,
    "timestamp": VALUE,
    "payload": st.one_of(
        st.fixed_dictionaries({"symbol": st.sampled_from(["btc/usd", "eth/usd", "doge/usd"]) | SCALAR,
                               "timestamp": st.integers(0, 2 * 10**12) | VALUE,
                               "value": st.floats(1, 1e6) | VALUE,
                               "data": st.lists(point, max_size=4) | VALUE}),
        VALUE)})
relay_frame = st.one_of(relay_msg.map(dumps), st.lists(relay_msg, max_size=3).map(dumps),
                        JSONISH.map(dumps), st.text(max_size=30)).flatmap(mangle)


@FUZZ
@given(frames=st.lists(relay_frame, min_size=1, max_size=8))
def test_relay_frames_never_raise_and_store_only_real_prices(frames: list[str]) -> None:
    pb = PriceBook(("BTC", "ETH"), Metrics())
    for i, f in enumerate(frames):
        assert pb.apply_frame(f, T0 + i) in (True, False)
    for (sym, series), ps in pb.series.items():
        for o in ps.obs.values():
            assert math.isfinite(o.value) and o.value > 0 and math.isfinite(o.obs_ts), (sym, o)
        got = pb.latest(sym, series)
        assert got is None or got.value > 0
    assert set(pb.metrics.by_label("prices_rejected", "reason")) <= {
        "non_finite", "non_positive", "out_of_bounds"}
    assert pb.latest("BTC", SPOT) is None or pb.at("BTC", SPOT, pb.latest("BTC", SPOT).obs_ts)
    assert pb.latest("BTC", TWAP60) is None or pb.latest("BTC", TWAP60).value > 0


# ---- Gamma -----------------------------------------------------------------------------------

GOOD_MARKET = {
    "slug": f"btc-updown-15m-{T0}", "eventStartTime": T0 * 1000, "endDate": (T0 + 900) * 1000,
    "outcomes": '["Up", "Down"]', "clobTokenIds": '["1", "2"]', "conditionId": "0xc",
    "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "closed": True,
    "feeSchedule": {"rate": 0.02, "exponent": 1, "takerOnly": True},
    "umaResolutionStatus": "resolved", "outcomePrices": '["1", "0"]',
    "resolutionSource": "https://data.chain.link/streams/btc-usd-twap-60s-streams",
    "cryptoMarketConfig": {"twapEnabled": True, "twapLookbackSeconds": 60}}


@st.composite
def gamma_event(draw) -> dict[str, Any]:
    """A valid event with a few of its fields replaced by hostile values."""
    m = dict(GOOD_MARKET)
    numeric = ["orderPriceMinTickSize", "orderMinSize", "eventStartTime", "endDate"]
    for k in draw(st.lists(st.sampled_from(numeric), max_size=3, unique=True)):
        m[k] = draw(NUMBER | NUMERIC_TEXT)
    for k in draw(st.lists(st.sampled_from(sorted(GOOD_MARKET)), max_size=1)):
        m[k] = draw(VALUE)
    m["feeSchedule"] = draw(st.just(m["feeSchedule"]) | st.fixed_dictionaries(
        {"rate": VALUE, "exponent": VALUE, "takerOnly": VALUE}))
    meta = draw(st.fixed_dictionaries({"priceToBeat": VALUE, "finalPrice": VALUE}) | VALUE)
    return {"markets": [m], "eventMetadata": meta}


@FUZZ
@given(event=gamma_event() | JSONISH)
def test_gamma_metadata_raises_only_parse_errors_and_keeps_numbers_finite(event: Any) -> None:
    try:
        info = parse_market(json.loads(dumps(event)), "15m", 900)
    except ParseError:
        return
    assert info.end_ts > info.slot_ts
    for v in (info.tick_size, info.min_order_size, info.fee_rate, info.fee_exponent,
              info.official_price_to_beat, info.official_final_price):
        assert v is None or math.isfinite(v)



def test_gamma_fuzz_starts_from_a_market_that_parses() -> None:
    """Not vacuous: the base the fuzz mutates parses all the way (so mutations reach deep)."""
    info = parse_market({"markets": [GOOD_MARKET]}, "15m", 900)
    assert info.slot_ts == T0 and info.settlement == "twap60" and info.resolved_up is True
