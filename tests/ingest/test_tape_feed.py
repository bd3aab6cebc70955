"""The tape recorder's bookkeeping: which prints are stored, counted or skipped, and its gaps."""

from __future__ import annotations

import json

from slotml.ingest.books import BookStore
from slotml.ingest.feeds.clob_market import ClobFeed
from slotml.ingest.metrics import Metrics
from slotml.ingest.tape_feed import TapeRecorder, WindowKeys

T0 = 1_800_000_000
UP = WindowKeys("BTC", 900, T0, "Up")
DOWN = WindowKeys("BTC", 900, T0, "Down")


def ev(token: str, ts_ms: int, price: str = "0.5", size: str = "10", side: str = "BUY",
       **kw: str) -> dict:
    return {"event_type": "last_trade_price", "asset_id": token, "market": "0xc", "price": price,
            "size": size, "side": side, "fee_rate_bps": "0", "timestamp": str(ts_ms), **kw}


def recorder() -> tuple[TapeRecorder, list[dict], list[dict], Metrics]:
    m = Metrics()
    trades: list[dict] = []
    gaps: list[dict] = []
    return TapeRecorder(m, trades.append, gaps.append), trades, gaps, m


def test_prints_are_stored_counted_or_skipped() -> None:
    tape, trades, gaps, m = recorder()
    tape.opened(T0 - 10)
    tape.subscribed({"u": UP, "d": DOWN}, T0 - 10, on_open=True)
    assert gaps == []  # the window had not started: no start gap
    same = ev("u", T0 * 1000 + 5, transaction_hash="0x1")
    tape.events([same, ev("d", T0 * 1000 + 5, side="SELL"), {"event_type": "book"}, same,
                 ev("x", T0 * 1000), ev("u", T0 * 1000, price="1.5"), ev("u", T0 * 1000, size="0"),
                 ev("u", T0 * 1000, side="HOLD")], T0 + 0.1)
    assert [(r["token_id"], r["outcome"], r["occurrence"], r["frame_index"]) for r in trades] == \
        [("u", "Up", 0, 0), ("d", "Down", 0, 1), ("u", "Up", 1, 3)]
    assert trades[0] == {**trades[0], "symbol": "BTC", "window_s": 900, "slot_ts": T0,
                         "tx_hash": "0x1", "condition_id": "0xc", "received_at": T0 + 0.1,
                         "price": 0.5, "size": 10.0, "side": "BUY", "fee_rate_bps": 0.0,
                         "ts_ms": T0 * 1000 + 5}
    assert m.get("trades_received") == 4 and m.get("trades_accepted") == 3
    assert m.get("trades_untracked") == 1
    assert m.by_label("trades_skipped", "reason") == {
        "trade_bad_price": 1, "trade_bad_size": 1, "trade_bad_side": 1}
    tape.forget(["u"])
    tape.events([same], T0 + 0.2)
    assert len(trades) == 3 and m.get("trades_untracked") == 2


def test_start_and_reconnect_gaps() -> None:
    tape, _, gaps, m = recorder()
    tape.opened(T0 + 3)
    tape.subscribed({"u": UP}, T0 + 3, on_open=True)  # in progress: a start gap
    assert [(g["token_id"], g["from_ts"], g["to_ts"], g["reason"]) for g in gaps] == \
        [("u", T0, T0 + 3, "start")]
    tape.subscribed({"d": DOWN}, T0 + 4, on_open=False)  # added later, still in progress
    assert gaps[-1]["token_id"] == "d" and gaps[-1]["to_ts"] == T0 + 4
    gaps.clear()
    tape.closed(T0 + 7.5)  # last frame at 7.5
    tape.opened(T0 + 8)
    tape.closed(None)  # the reopen died before subscribing: the gap still starts at 7.5
    tape.opened(T0 + 9)
    tape.subscribed({"u": UP, "d": DOWN}, T0 + 9, on_open=True)
    assert sorted((g["token_id"], g["from_ts"], g["to_ts"], g["reason"]) for g in gaps) == \
        [("d", T0 + 7.5, T0 + 9, "reconnect"), ("u", T0 + 7.5, T0 + 9, "reconnect")]
    gaps.clear()
    tape.closed(T0 + 5)  # nothing received on this connection: known alive since its open
    tape.opened(T0 + 10)
    tape.subscribed({"u": UP}, T0 + 10, on_open=True)
    assert [(g["from_ts"], g["to_ts"]) for g in gaps] == [(T0 + 9, T0 + 10)]
    assert m.by_label("tape_gaps", "reason") == {"start": 2, "reconnect": 3}


def test_clob_feed_decodes_once_and_feeds_books_and_tape() -> None:
    m = Metrics()
    trades: list[dict] = []
    tape = TapeRecorder(m, trades.append, lambda _g: None)
    feed = ClobFeed("ws://x", BookStore(m), m, tape=tape)
    tape.subscribed({"u": UP}, T0, on_open=True)
    book = {"event_type": "book", "asset_id": "u", "bids": [{"price": "0.4", "size": "5"}],
            "asks": [{"price": "0.6", "size": "5"}], "timestamp": str(T0 * 1000)}
    assert feed.on_frame(json.dumps([book, ev("u", T0 * 1000 + 1)]), T0 + 1.0)
    assert feed.books.top("u").bid == 0.4 and len(trades) == 1
    assert feed.on_frame("{not json", T0 + 2.0)
    assert m.get("frames_rejected", reason="malformed_json") == 1
    off = ClobFeed("ws://x", BookStore(Metrics()), Metrics())  # --no-trades
    assert off.on_frame(json.dumps(ev("u", T0 * 1000 + 1)), T0 + 1.0) and off.tape is None
