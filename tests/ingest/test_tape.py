"""The trade tape parser: real ``last_trade_price`` frames, array frames, keys, bad prints."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotml.ingest.books import BookStore, decode_frame
from slotml.ingest.metrics import Metrics
from slotml.ingest.tape import (
    TRADE_COLUMNS,
    Occurrences,
    Print,
    has_prints,
    parse_prints,
    trade_row,
)
from tests.conftest import FIXTURES

FRAMES = (FIXTURES / "ingest" / "clob_market_frames.jsonl").read_text().splitlines()
REAL = json.loads(FRAMES[2])  # the real last_trade_price (a bare object, no transaction_hash)
TOKEN = "114122071509644379678018727908709560226618148003371446110114509806601493071694"
COND = "0x6a67b9d828d53862160e470329ffea5246f338ecfffdf2cab45211ec578b0347"
TX = "0x" + "ab" * 32
DROP = object()  # a key to leave out


def trade(**over) -> dict:
    ev = dict(REAL)
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not DROP}


def keys(prints: list[Print], keyer: Occurrences) -> list[tuple]:
    return [(*p.key, keyer.next(p)) for p in prints]


def test_real_frame_field_by_field() -> None:
    assert REAL["event_type"] == "last_trade_price"
    prints, bad = parse_prints(REAL, 1750428146.5)
    assert bad == [] and len(prints) == 1
    p = prints[0]
    assert p.token_id == TOKEN
    assert p.condition_id == COND
    assert p.price == 0.456
    assert p.size == 219.217767
    assert p.side == "BUY"
    assert p.fee_rate_bps == 0.0
    assert p.ts_ms == 1750428146322
    assert p.tx_hash == ""  # this capture carries none
    assert p.frame_index == 0
    assert p.received_at == 1750428146.5
    # the decoded text frame gives the same print
    assert parse_prints(decode_frame(FRAMES[2]), 1750428146.5)[0] == prints


def test_books_ignore_prints() -> None:
    """The book store takes a print as a known event and leaves every book alone."""
    s = BookStore(Metrics())
    s.apply_frame(FRAMES[3], 10.0)
    before = {t: s.top(t) for t in s.books}
    assert s.apply_frame(FRAMES[2], 11.0) == 1
    assert {t: s.top(t) for t in s.books} == before
    assert s.metrics.get("frames_rejected") == 0 and s.metrics.get("unknown_event_types") == 0


def test_array_frame_with_book_and_two_prints() -> None:
    book = json.loads(FRAMES[0])[0]
    frame = [book, trade(price="0.5", transaction_hash=TX), {"event_type": "best_bid_ask"},
             trade(side="SELL", size="3")]
    prints, bad = parse_prints(frame, 2.0)
    assert bad == []
    assert [p.frame_index for p in prints] == [1, 3]
    assert [(p.price, p.side, p.size, p.tx_hash) for p in prints] == [
        (0.5, "BUY", 219.217767, TX), (0.456, "SELL", 3.0, "")]


def test_with_and_without_hash() -> None:
    (a,), _ = parse_prints(trade(transaction_hash=TX), 1.0)
    (b,), _ = parse_prints(trade(), 1.0)
    (c,), _ = parse_prints(trade(transaction_hash=None), 1.0)
    assert a.tx_hash == TX and b.tx_hash == "" and c.tx_hash == ""
    assert a.key != b.key and b.key == c.key


def test_two_fills_of_one_transaction_have_distinct_keys() -> None:
    frame = [trade(transaction_hash=TX, size="10"), trade(transaction_hash=TX, size="25.5")]
    prints, _ = parse_prints(frame, 1.0)
    ks = keys(prints, Occurrences())
    assert ks[0][:-1] != ks[1][:-1] and [k[-1] for k in ks] == [0, 0]


def test_identical_prints_in_one_ms_count_up_and_replay_the_same() -> None:
    frames = [[trade(), trade()], trade(), [trade(size="1")], trade(timestamp="1750428146323")]
    keyer = Occurrences()
    got = [k for f in frames for k in keys(parse_prints(f, 1.0)[0], keyer)]
    assert [k[-1] for k in got] == [0, 1, 2, 0, 0]
    assert len(set(got)) == len(got)
    again = Occurrences()
    assert [k for f in frames for k in keys(parse_prints(f, 9.0)[0], again)] == got


def test_keyer_forgets_old_keys_but_not_recent_ones() -> None:
    keyer = Occurrences(horizon_ms=1000)
    (p,), _ = parse_prints(trade(), 1.0)
    assert keyer.next(p) == 0 and keyer.next(p) == 1
    (later,), _ = parse_prints(trade(timestamp=str(p.ts_ms + 999)), 1.0)
    keyer.next(later)
    assert keyer.next(p) == 2  # still within the horizon of the newest print
    (much_later,), _ = parse_prints(trade(timestamp=str(p.ts_ms + 5000)), 1.0)
    keyer.next(much_later)
    assert len(keyer) == 1  # only the newest key is remembered
    keyer.forget([TOKEN])
    assert len(keyer) == 0 and keyer.next(p) == 0


@pytest.mark.parametrize("over, reason", [
    ({"price": "1.01"}, "trade_bad_price"),
    ({"price": "-0.1"}, "trade_bad_price"),
    ({"price": "nan"}, "trade_bad_price"),
    ({"price": "inf"}, "trade_bad_price"),
    ({"price": "abc"}, "trade_bad_price"),
    ({"price": ""}, "trade_bad_price"),
    ({"price": None}, "trade_bad_price"),
    ({"price": True}, "trade_bad_price"),
    ({"size": "0"}, "trade_bad_size"),
    ({"size": "-5"}, "trade_bad_size"),
    ({"size": "1e400"}, "trade_bad_size"),
    ({"size": float("nan")}, "trade_bad_size"),
    ({"size": [1]}, "trade_bad_size"),
    ({"side": "HOLD"}, "trade_bad_side"),
    ({"side": 1}, "trade_bad_side"),
    ({"timestamp": "1750428146.322"}, "trade_bad_ts"),
    ({"timestamp": "1750428146"}, "trade_bad_ts"),  # seconds, not ms
    ({"timestamp": "17504281463220000"}, "trade_bad_ts"),  # microseconds
    ({"timestamp": 1750428146322.0}, "trade_bad_ts"),
    ({"timestamp": "soon"}, "trade_bad_ts"),
    ({"fee_rate_bps": "free"}, "trade_bad_fee"),
    ({"fee_rate_bps": -1}, "trade_bad_fee"),
    ({"asset_id": DROP}, "trade_malformed"),
    ({"asset_id": ""}, "trade_malformed"),
    ({"asset_id": 123}, "trade_malformed"),
    ({"market": 5}, "trade_malformed"),
    ({"price": DROP}, "trade_malformed"),
    ({"size": DROP}, "trade_malformed"),
    ({"side": DROP}, "trade_malformed"),
    ({"timestamp": DROP}, "trade_malformed"),
    ({"transaction_hash": 7}, "trade_malformed"),
])
def test_bad_print_skipped_with_reason(over: dict, reason: str) -> None:
    frame = [trade(size="1"), trade(**over), trade(size="2")]
    prints, bad = parse_prints(frame, 1.0)
    assert bad == [reason]
    assert [(p.size, p.frame_index) for p in prints] == [(1.0, 0), (2.0, 2)]


def test_lenient_where_the_venue_varies() -> None:
    """'.48' (a doc version), numbers, lower-case side, no market/fee: still a print."""
    ev = trade(price=".48", size=12, side="sell", timestamp=1750428146322, market=DROP,
               fee_rate_bps="")
    (p,), bad = parse_prints(ev, 1.0)
    assert bad == [] and (p.price, p.size, p.side, p.ts_ms) == (0.48, 12.0, "SELL", 1750428146322)
    assert p.condition_id == "" and p.fee_rate_bps is None


def test_other_events_are_not_prints_nor_bad() -> None:
    frame = [json.loads(FRAMES[1]), "text", 5, None, {"event_type": "book"}, {}]
    assert parse_prints(frame, 1.0) == ([], [])
    assert parse_prints("PONG", 1.0) == ([], [])
    # the recorder's quick test agrees: no print, nothing to parse; any print, parse it all
    assert not has_prints(frame) and not has_prints("PONG") and not has_prints(frame[0])
    assert has_prints(REAL) and has_prints([*frame, trade(price="7")])


def test_trade_row_columns() -> None:
    (p,), _ = parse_prints([{"event_type": "book"}, trade(transaction_hash=TX)], 7.25)
    row = trade_row(p, 3, symbol="BTC", window_s=900, slot_ts=1750427100, outcome="Down")
    assert tuple(row) == TRADE_COLUMNS
    assert row == {"symbol": "BTC", "window_s": 900, "slot_ts": 1750427100, "token_id": TOKEN,
                   "outcome": "Down", "condition_id": COND, "price": 0.456, "size": 219.217767,
                   "side": "BUY", "fee_rate_bps": 0.0, "ts_ms": 1750428146322,
                   "received_at": 7.25, "tx_hash": TX, "frame_index": 1, "occurrence": 3}
    with pytest.raises(ValueError):
        trade_row(p, 0, symbol="BTC", window_s=900, slot_ts=0, outcome="Yes")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
FIELD = st.one_of(
    JSONISH,
    st.sampled_from(["0.5", ".48", "1", "0", "1.0001", "-0", "219.217767", "1e-3", "BUY", "SELL",
                     "buy", "1750428146322", "", "nan", "0x" + "ab" * 32]),
    st.integers(min_value=-10**20, max_value=10**20))
VALID = {"asset_id": st.sampled_from([TOKEN, "1"]), "market": st.just(COND),
         "price": st.sampled_from(["0.5", ".48", "1", "0", "0.456"]) | st.floats(0, 1),
         "size": st.sampled_from(["219.217767", "5", "1e-3"]) | st.floats(1e-6, 1e6),
         "side": st.sampled_from(["BUY", "SELL", "sell"]), "fee_rate_bps": st.sampled_from(["0", "", None]),
         "timestamp": st.sampled_from(["1750428146322", "1775740020016"]),
         "transaction_hash": st.sampled_from([TX, None])}
# each field valid, garbage or absent: most examples are near-misses of a real print
TRADEISH = st.fixed_dictionaries(
    {"event_type": st.just("last_trade_price"),
     **{k: st.integers(0, 11).flatmap(lambda i, v=v: v if i < 10 else FIELD if i == 10 else st.just(DROP))
        for k, v in VALID.items()}},
).map(lambda ev: {k: x for k, x in ev.items() if x is not DROP})


@settings(max_examples=400, deadline=None)
@given(st.lists(TRADEISH | st.dictionaries(st.text(max_size=10), JSONISH, max_size=4) | JSONISH,
                max_size=5))
def test_arbitrary_events_never_raise_and_prints_are_in_range(frame: list) -> None:
    prints, bad = parse_prints(frame, 1.0)
    n_trades = sum(isinstance(e, dict) and e.get("event_type") == "last_trade_price" for e in frame)
    assert len(prints) + len(bad) == n_trades
    assert all(r.startswith("trade_") for r in bad)
    keyer = Occurrences()
    for p in prints:
        assert isinstance(p.token_id, str) and p.token_id
        assert isinstance(p.condition_id, str) and isinstance(p.tx_hash, str)
        assert math.isfinite(p.price) and 0.0 <= p.price <= 1.0
        assert math.isfinite(p.size) and p.size > 0
        assert p.side in ("BUY", "SELL")
        assert p.fee_rate_bps is None or (math.isfinite(p.fee_rate_bps) and p.fee_rate_bps >= 0)
        assert isinstance(p.ts_ms, int) and 1_577_836_800_000 <= p.ts_ms < 4_102_444_800_000
        assert isinstance(frame[p.frame_index], dict)
        assert keyer.next(p) >= 0
