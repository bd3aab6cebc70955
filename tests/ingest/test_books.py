"""Order books from the real CLOB frames: max/min tops, updates, empty sides, rejects."""

from __future__ import annotations

import json

import pytest

from slotml.ingest.books import BookStore, decode_frame
from slotml.ingest.metrics import Metrics
from slotml.ingest.wire import ParseError
from tests.conftest import FIXTURES

FRAMES = (FIXTURES / "ingest" / "clob_market_frames.jsonl").read_text().splitlines()
INIT_UP = "36058180106267309416569886113196185744009788380740653016655476166674199848738"
INIT_DOWN = "11354133371126376784835090753308106986806090783788568298339951440339753418311"
A = "25245433628208476987364023432306599125597948324625578977436890641930158259698"
B = "20168250870314270898487593595943592687458358996170785976290704639743788087191"


def store() -> BookStore:
    return BookStore(Metrics())


def test_initial_dump_array_levels_worst_to_best() -> None:
    s = store()
    assert s.apply_frame(FRAMES[0], 100.0) == 2
    up, down = s.top(INIT_UP), s.top(INIT_DOWN)
    # levels arrive worst-to-best: the top is the LAST level, found by max/min
    assert (up.bid, up.bid_size, up.ask, up.ask_size) == (0.07, 100.0, 0.8, 5.0)
    assert (down.bid, down.bid_size, down.ask, down.ask_size) == (0.2, 5.0, 0.93, 100.0)
    assert up.updated_at == 100.0
    assert s.books[INIT_UP].tick_size == 0.01


def test_full_depth_book_then_price_change_agrees_with_venue_top() -> None:
    s = store()
    s.apply_frame(FRAMES[3], 10.0)
    assert s.top(A).bid == 0.49 and s.top(A).bid_size == 60.0 and s.top(A).ask == 0.5
    assert s.apply_frame(FRAMES[1], 11.0) == 1
    a, b = s.top(A), s.top(B)
    assert (a.bid, a.bid_size, a.ask, a.ask_size, a.updated_at) == (0.49, 55.0, 0.5, 16.0, 11.0)
    assert (b.bid, b.ask, b.ask_size) == (0.5, 0.51, 55.0)
    assert s.metrics.get("top_mismatch") == 0  # our max/min equals the venue's stated top
    assert s.metrics.get("events", stream="clob", type="price_change") == 1


def test_removing_best_level_rescans_and_empty_side_is_none() -> None:
    s = store()
    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "1000",
             "bids": [{"price": "0.3", "size": "1"}, {"price": ".48", "size": "2"}],
             "asks": [{"price": "0.52", "size": "3"}]}, 1.0)
    assert s.top("t").bid == 0.48

    def pc(price: str, size: str, side: str) -> dict:
        return {"event_type": "price_change", "market": "m", "timestamp": "1001",
                "price_changes": [{"asset_id": "t", "price": price, "size": size, "side": side}]}

    s.apply(pc("0.48", "0", "BUY"), 2.0)
    assert s.top("t").bid == 0.3 and s.top("t").bid_size == 1.0
    s.apply(pc("0.52", "0", "SELL"), 3.0)
    top = s.top("t")
    assert top.ask is None and top.ask_size is None  # empty side: None, never 0
    s.apply(pc("0.31", "7", "BUY"), 4.0)
    s.apply(pc("0.45", "4", "SELL"), 4.0)
    assert (s.top("t").bid, s.top("t").ask, s.top("t").ask_size) == (0.31, 0.45, 4.0)


def test_legacy_price_change_schema() -> None:
    s = store()
    s.apply({"event_type": "book", "asset_id": "t", "bids": [], "asks": [], "timestamp": "1"}, 1)
    s.apply({"event_type": "price_change", "asset_id": "t", "market": "m", "timestamp": "2",
             "changes": [{"price": "0.4", "side": "SELL", "size": "3300"}]}, 2)
    assert s.top("t").ask == 0.4 and s.top("t").bid is None


def test_price_change_before_book_is_ignored_and_counted() -> None:
    s = store()
    s.apply_frame(FRAMES[1], 1.0)
    assert s.top(A) is None
    assert s.metrics.get("price_change_without_book") == 2


def test_tick_size_change_and_other_known_events() -> None:
    s = store()
    s.apply_frame(FRAMES[0], 1.0)
    s.apply({"event_type": "tick_size_change", "asset_id": INIT_UP, "market": "m",
             "old_tick_size": "0.01", "new_tick_size": "0.001", "timestamp": "1757908892351"}, 2)
    assert s.books[INIT_UP].tick_size == 0.001
    assert s.apply_frame(FRAMES[2], 3.0) == 1  # last_trade_price: known, no book change
    assert s.metrics.get("unknown_event_types") == 0


def test_market_resolved_callback() -> None:
    got = []
    s = BookStore(Metrics(), on_resolved=lambda cid, win, ev: got.append((cid, win)))
    s.apply({"event_type": "market_resolved", "market": "0xabc", "winning_asset_id": "up",
             "winning_outcome": "Up", "assets_ids": ["up", "down"], "timestamp": "1"}, 1)
    assert got == [("0xabc", "up")]


@pytest.mark.parametrize("frame,reason", [
    ('{"event_type": "book", "asset_id": "t", "bids": [{"price": "x", "size": "1"}], "asks": []}',
     "bad_level"),
    ('{"event_type": "book", "asset_id": "t", "bids": [{"price": "1.5", "size": "1"}], "asks": []}',
     "bad_level"),
    ('{"event_type": "book", "asset_id": "t", "bids": [{"price": "0.5", "size": "-1"}], "asks": []}',
     "bad_level"),
    ('{"event_type": "book", "bids": [], "asks": []}', "no_asset_id"),
    ('{"event_type": "price_change", "market": "m", "price_changes": [{"asset_id": "t", '
     '"price": "0.5", "size": "1", "side": "HOLD"}]}', "bad_side"),
    ('{"event_type": "book", "asset_id": "t", "bids": [', "malformed_json"),
    ('[1, 2]', "not_an_object"),
    ('"hello"', "not_an_object"),
])
def test_malformed_frames_are_counted_never_raise(frame: str, reason: str) -> None:
    s = store()
    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "1",
             "bids": [{"price": "0.4", "size": "1"}], "asks": [{"price": "0.6", "size": "1"}]}, 1)
    assert s.apply_frame(frame, 2.0) == 0
    assert s.metrics.get("frames_rejected", stream="clob", reason=reason) == 1
    assert s.top("t").bid == 0.4 and s.top("t").ask == 0.6  # a bad event changes nothing


def test_unknown_event_type_and_extra_fields() -> None:
    s = store()
    assert s.apply_frame('{"event_type": "brand_new", "x": 1}', 1) == 0
    assert s.metrics.get("unknown_event_types", stream="clob", type="brand_new") == 1
    ev = json.loads(FRAMES[0])[0] | {"surprise_field": {"a": 1}}
    assert s.apply(ev, 1) == 1


def test_book_without_event_type_is_detected_by_levels() -> None:
    s = store()
    ev = json.loads(FRAMES[0])[0]
    del ev["event_type"]
    assert s.apply(ev, 1) == 1 and s.top(INIT_UP).bid == 0.07


def test_older_book_snapshot_does_not_replace_newer() -> None:
    s = store()
    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "2000",
             "bids": [{"price": "0.4", "size": "1"}], "asks": []}, 1)
    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "1000",
             "bids": [{"price": "0.2", "size": "1"}], "asks": []}, 2)
    assert s.top("t").bid == 0.4 and s.metrics.get("stale_events") == 1


def test_decode_frame_shapes() -> None:
    assert decode_frame("PONG") == [] and decode_frame("  ") == []
    assert decode_frame('{"a": 1}') == [{"a": 1}]
    assert decode_frame(b'[{"a": 1}, {"b": 2}]') == [{"a": 1}, {"b": 2}]
    with pytest.raises(ParseError):
        decode_frame("{not json")


def test_top_mismatch_drops_the_book_until_a_fresh_snapshot() -> None:
    s = store()
    s.apply_frame(FRAMES[3], 10.0)
    ev = json.loads(FRAMES[1])
    ev["price_changes"][0]["best_bid"] = "0.48"  # the venue's top disagrees with ours: a gap
    s.apply(ev, 11.0)
    assert s.top(A) is None and s.top(B) is not None
    assert s.suspect == {A} and s.metrics.get("top_mismatch") == 1
    s.apply_frame(FRAMES[3], 12.0)
    assert s.top(A).bid == 0.49


def test_several_levels_of_one_token_in_one_event_check_the_final_top() -> None:
    s = store()
    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "1",
             "bids": [{"price": "0.4", "size": "1"}], "asks": [{"price": "0.6", "size": "1"}]}, 1)
    s.apply({"event_type": "price_change", "market": "m", "timestamp": "2", "price_changes": [
        {"asset_id": "t", "price": "0.45", "size": "3", "side": "BUY", "best_bid": "0.46",
         "best_ask": "0.6"},
        {"asset_id": "t", "price": "0.46", "size": "2", "side": "BUY", "best_bid": "0.46",
         "best_ask": "0.6"}]}, 2)
    assert s.top("t").bid == 0.46 and s.metrics.get("top_mismatch") == 0


def test_retired_tokens_keep_no_book() -> None:
    s = store()
    s.apply_frame(FRAMES[3], 1.0)
    s.retire([A])
    s.apply_frame(FRAMES[3], 2.0)
    s.apply_frame(FRAMES[1], 3.0)
    assert s.top(A) is None and s.top(B) is not None
    assert s.metrics.get("price_change_without_book") == 0
    s.drop([A])
    s.apply_frame(FRAMES[3], 4.0)
    assert s.top(A) is not None


def test_feed_forgets_retired_tokens_after_an_all_resolved_close() -> None:
    """Close 1000 ("all resolved") forgets the ended tokens; the collector's later untrack
    (and a retire in between) must not leave them in the store's retired set for good."""
    from slotml.ingest.feeds.clob_market import ClobFeed

    books = store()
    feed = ClobFeed("ws://127.0.0.1:1/ws/market", books, Metrics())
    feed.add_tokens([A, B])
    books.retire([A, B])
    feed._resynced[A] = 1.0
    feed.on_all_resolved()
    assert feed.tokens == set() and books.retired == set() and feed._resynced == {}
    books.retire([A, B])  # a resolve attempt after the close marks them again
    feed.remove_tokens([A, B])  # the collector untracks the resolved window
    assert books.retired == set()


def test_depth_levels_stay_ordered_through_removals_and_re_adds() -> None:
    s = store()
    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "1000",  # worst to best, as the wire
             "bids": [{"price": p, "size": z} for p, z in
                      (("0.2", "9"), ("0.4", "4"), ("0.3", "3"), ("0.45", "2"), ("0.47", "1"),
                       ("0.1", "8"))],
             "asks": [{"price": p, "size": z} for p, z in (("0.6", "6"), ("0.5", "5"))]}, 1.0)
    top = s.top("t", 5)
    assert top.bids == ((0.47, 1.0), (0.45, 2.0), (0.4, 4.0), (0.3, 3.0), (0.2, 9.0))
    assert top.asks == ((0.5, 5.0), (0.6, 6.0))
    assert top.bids[0] == (top.bid, top.bid_size) and top.asks[0] == (top.ask, top.ask_size)

    def pc(*changes: tuple[str, str, str]) -> dict:
        return {"event_type": "price_change", "market": "m", "timestamp": "1001",
                "price_changes": [{"asset_id": "t", "price": p, "size": z, "side": sd}
                                  for p, z, sd in changes]}

    s.apply(pc(("0.47", "0", "BUY"), ("0.4", "0", "BUY"), ("0.5", "0", "SELL")), 2.0)
    top = s.top("t", 5)
    assert top.bids == ((0.45, 2.0), (0.3, 3.0), (0.2, 9.0), (0.1, 8.0))  # 4 left: no padding
    assert top.asks == ((0.6, 6.0),) and (top.bid, top.ask) == (0.45, 0.6)
    s.apply(pc(("0.4", "11", "BUY"), ("0.48", "12", "BUY"), ("0.3", "13", "BUY"),
               ("0.55", "1.5", "SELL"), ("0.58", "2", "SELL")), 3.0)
    top = s.top("t", 5)
    assert top.bids == ((0.48, 12.0), (0.45, 2.0), (0.4, 11.0), (0.3, 13.0), (0.2, 9.0))
    assert top.asks == ((0.55, 1.5), (0.58, 2.0), (0.6, 6.0))
    assert (top.bid, top.bid_size, top.ask, top.ask_size) == (0.48, 12.0, 0.55, 1.5)
    s.apply(pc(("0.55", "0", "SELL"), ("0.58", "0", "SELL"), ("0.6", "0", "SELL")), 4.0)
    top = s.top("t", 5)
    assert top.asks == () and top.ask is None  # an empty side: no levels, never a 0
    assert s.top("t").bids is None  # depth only when asked for


def test_touch_range_since_the_last_row() -> None:
    """The lowest ask and highest bid over every whole event since the last ``roll`` read,
    the current state included; a state inside one event, or a crossed one, is never noted;
    a fresh ``book`` snapshot keeps the range; a roll starts it again from the current state."""
    s = store()

    def change(*levels: tuple[str, str, str], ts: str) -> None:
        s.apply({"event_type": "price_change", "market": "m", "timestamp": ts, "price_changes": [
            {"asset_id": "t", "price": p, "size": z, "side": side} for p, z, side in levels]}, 1.0)

    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "1000",
             "bids": [{"price": "0.48", "size": "10"}], "asks": [{"price": "0.52", "size": "10"}]}, 1.0)
    top = s.top("t", roll=True)
    assert (top.ask_low, top.bid_high) == (0.52, 0.48)
    # one event moves the ask through a 0.49 bid and back: the intermediate 0.47 ask never showed
    change(("0.47", "5", "SELL"), ("0.47", "0", "SELL"), ts="1001")
    change(("0.50", "5", "SELL"), ts="1002")  # the ask dips to 0.50 ...
    change(("0.50", "0", "SELL"), ("0.51", "3", "BUY"), ts="1003")  # ... and is gone; a bid 0.51
    change(("0.45", "8", "SELL"), ts="1004")  # crossed (0.45 < bid 0.51): not a book state
    change(("0.45", "0", "SELL"), ts="1005")
    top = s.top("t", roll=True)
    assert (top.ask, top.bid) == (0.52, 0.51)
    assert (top.ask_low, top.bid_high) == (0.50, 0.51)
    again = s.top("t")  # the range restarted at the state of the roll
    assert (again.ask_low, again.bid_high) == (0.52, 0.51)
    change(("0.51", "0", "BUY"), ts="1006")
    s.apply({"event_type": "book", "asset_id": "t", "timestamp": "1007",  # a fresh snapshot
             "bids": [{"price": "0.40", "size": "10"}], "asks": [{"price": "0.44", "size": "10"}]}, 2.0)
    top = s.top("t", roll=True)
    assert (top.ask_low, top.bid_high) == (0.44, 0.51)
