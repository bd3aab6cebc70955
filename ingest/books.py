"""Order-book state per token from the CLOB market channel (``book`` + ``price_changes[]``).

The wire sends levels worst-to-best (bids ascending, asks descending) although the docs say the
opposite, so the top is always max(bids) / min(asks), never the first level. Updates carry the
NEW aggregate size at a price ("0" removes the level). A token's book is only trusted after a
full ``book`` snapshot on the current connection; a ``price_change`` before it is counted and
ignored. The best price is tracked incrementally (O(1) per update, a rescan only when the best
level is removed), so thousands of updates a second cost little.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from slotml.ingest.metrics import Metrics
from slotml.ingest.snapshot import BookTop
from slotml.ingest.wire import ParseError

KNOWN_EVENTS = {"book", "price_change", "tick_size_change", "last_trade_price", "best_bid_ask",
                "new_market", "market_resolved"}


def decode_frame(text: str | bytes) -> list[dict[str, Any]]:
    """A websocket text frame -> its events. Objects or arrays of objects; PONG/empty -> [].

    Raises ParseError("malformed_json" | "not_an_object") for anything else.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as e:
            raise ParseError("malformed_json", "not utf-8") from e
    s = text.strip()
    if not s or (len(s) == 4 and s.upper() in ("PONG", "PING")):
        return []
    try:
        # orjson: 3-4x faster than json on these frames, the collector's biggest single cost
        # per frame. Stricter on what is not JSON (NaN, lone surrogates: a malformed frame).
        v = orjson.loads(s)
    except (ValueError, RecursionError) as e:  # orjson.JSONDecodeError, deep nesting, huge ints
        raise ParseError("malformed_json", s[:60]) from e
    if isinstance(v, dict):
        return [v]
    if isinstance(v, list):
        if not all(isinstance(x, dict) for x in v):
            raise ParseError("not_an_object", s[:60])
        return v
    raise ParseError("not_an_object", s[:60])


def _price(v: Any) -> float:
    """A decimal string (".48" allowed) in [0, 1]."""
    try:
        p = float(v)
    except (TypeError, ValueError, OverflowError) as e:
        raise ParseError("bad_level", repr(v)[:30]) from e
    if not (0.0 <= p <= 1.0):  # NaN fails too
        raise ParseError("bad_level", f"price {p}")
    return p


def _size(v: Any) -> float:
    try:
        s = float(v)
    except (TypeError, ValueError, OverflowError) as e:
        raise ParseError("bad_level", repr(v)[:30]) from e
    if not (s >= 0.0) or s == float("inf"):
        raise ParseError("bad_level", f"size {s}")
    return s


def _venue_ts(ts: Any) -> float | None:
    """An event's ``timestamp`` (ms) as epoch seconds, or None if it is not a plausible one."""
    if isinstance(ts, bool):
        return None
    try:
        t = float(ts) / 1000.0
    except (TypeError, ValueError, OverflowError):
        return None
    return t if 0.0 < t < 1e11 else None  # NaN, inf, negative: no stamp


def _levels(raw: Any) -> dict[float, float]:
    if not isinstance(raw, list):
        raise ParseError("bad_level", "levels not a list")
    out: dict[float, float] = {}
    for lv in raw:
        if not isinstance(lv, dict):
            raise ParseError("bad_level", "level not an object")
        p, s = _price(lv.get("price")), _size(lv.get("size"))
        if s > 0:
            out[p] = s
    return out


def _top_levels(side: dict[float, float], depth: int, descending: bool
                ) -> tuple[tuple[float, float], ...]:
    """The ``depth`` best (price, size) pairs of one side, best first, without copying the book.

    A C sort of the price keys, not heapq: a side's dict is mostly in price order (wire order,
    then updates appended), which timsort takes in ~O(n) while heapq.nlargest's Python loop
    replaces its heap at nearly every key. Measured per side: 1.6 vs 11.8 us at 99 levels,
    3.9 vs 44 us at 400, 10 vs 122 us at 999 (a 1c-tick side has at most 99).
    """
    prices = sorted(side, reverse=descending)[:depth]
    return tuple(zip(prices, map(side.__getitem__, prices), strict=True))


class Book:
    """One token's two sides: price -> aggregate size, plus the cached best of each side."""

    __slots__ = ("bids", "asks", "best_bid", "best_ask", "tick_size", "updated_at", "venue_ts",
                 "ask_low", "bid_high")

    def __init__(self, bids: dict[float, float], asks: dict[float, float], updated_at: float,
                 tick_size: float | None = None, venue_ts: float | None = None) -> None:
        self.bids = bids
        self.asks = asks
        self.best_bid = max(bids) if bids else None
        self.best_ask = min(asks) if asks else None
        self.tick_size = tick_size
        self.updated_at = updated_at
        self.venue_ts = venue_ts
        # the touch's range since the last ``top(roll=True)``: a 30 s grid of rows would miss a
        # book that moves through a resting bid and back (backtest's book-through fills)
        self.ask_low: float | None = None
        self.bid_high: float | None = None
        self.note_touch()

    def note_touch(self) -> None:
        """Widen the touch's range by the current state (after a whole event: a state inside
        one event never existed on the venue); a crossed state is not a book, so not noted."""
        bb, ba = self.best_bid, self.best_ask
        if bb is not None and ba is not None and bb >= ba:
            return
        if ba is not None and (self.ask_low is None or ba < self.ask_low):
            self.ask_low = ba
        if bb is not None and (self.bid_high is None or bb > self.bid_high):
            self.bid_high = bb

    def set_level(self, is_bid: bool, price: float, size: float) -> None:
        side = self.bids if is_bid else self.asks
        if size > 0:
            side[price] = size
            if is_bid:
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            elif self.best_ask is None or price < self.best_ask:
                self.best_ask = price
        elif side.pop(price, None) is not None:
            if is_bid and price == self.best_bid:
                self.best_bid = max(side) if side else None
            elif not is_bid and price == self.best_ask:
                self.best_ask = min(side) if side else None

    def top(self, depth: int = 0, roll: bool = False) -> BookTop:
        """The best levels and, with ``depth``, the top ``depth`` levels of each side (best
        first), read from the same state in one synchronous call, so they cannot disagree.
        ``roll``: a row is made of this read, so the touch's range starts again from here."""
        bb, ba = self.best_bid, self.best_ask
        bids = asks = None
        if depth > 0:
            bids = _top_levels(self.bids, depth, True)
            asks = _top_levels(self.asks, depth, False)
        top = BookTop(
            bid=bb, ask=ba,
            bid_size=self.bids[bb] if bb is not None else None,
            ask_size=self.asks[ba] if ba is not None else None,
            updated_at=self.updated_at, bids=bids, asks=asks,
            ask_low=self.ask_low, bid_high=self.bid_high,
        )
        if roll:
            self.ask_low = self.bid_high = None
            self.note_touch()
        return top


class BookStore:
    """Books of every subscribed token, fed event by event; counts what it rejects.

    ``on_resolved(condition_id, winning_asset_id, event)`` is called for ``market_resolved``.
    """

    def __init__(self, metrics: Metrics,
                 on_resolved: Callable[[str, str, dict], None] | None = None) -> None:
        self.metrics = metrics
        self.books: dict[str, Book] = {}
        self.on_resolved = on_resolved
        self.suspect: set[str] = set()  # tokens whose book we dropped: need a fresh snapshot
        self.retired: set[str] = set()  # tokens of ended windows: followed for market_resolved only
        self.last_venue_ts: float | None = None  # epoch s from the latest event timestamp
        self.last_offset: float | None = None  # receipt - venue stamp, seconds

    def invalidate_all(self) -> None:
        """After a reconnect: nothing is trusted until the new ``book`` snapshots arrive."""
        self.books.clear()

    def drop(self, token_ids: list[str]) -> None:
        for t in token_ids:
            self.books.pop(t, None)
            self.retired.discard(t)

    def retire(self, token_ids: list[str]) -> None:
        """The window ended: no more snapshots, so stop keeping its books (memory, CPU)."""
        for t in token_ids:
            self.books.pop(t, None)
            self.retired.add(t)

    def top(self, token_id: str, depth: int = 0, roll: bool = False) -> BookTop | None:
        """One token's top (plus ``depth`` levels a side), or None without a trusted book;
        ``roll``: the read becomes a row (``Book.top``)."""
        b = self.books.get(token_id)
        return b.top(depth, roll) if b is not None else None

    def apply_frame(self, text: str | bytes, recv_ts: float) -> int:
        """Decode and apply one frame; returns the number of events applied. Never raises."""
        return self.apply_events(self.decode(text), recv_ts)

    def decode(self, text: str | bytes) -> list[dict[str, Any]]:
        """One frame's events; a malformed frame is counted and gives none (never raises).
        Callers that also hand the events on (the trade tape) decode once with this."""
        try:
            return decode_frame(text)
        except ParseError as e:
            self.metrics.inc("frames_rejected", stream="clob", reason=e.reason)
            return []

    def apply_events(self, events: list[dict[str, Any]], recv_ts: float) -> int:
        return sum(self.apply(ev, recv_ts) for ev in events)

    def apply(self, ev: dict[str, Any], recv_ts: float) -> int:
        et = ev.get("event_type")
        if et is None and "bids" in ev and "asks" in ev:
            et = "book"  # some initial snapshots lack event_type
        try:
            if et == "book":
                self._book(ev, recv_ts)
            elif et == "price_change":
                self._price_change(ev, recv_ts)
            elif et == "tick_size_change":
                b = self.books.get(str(ev.get("asset_id")))
                if b is not None:
                    b.tick_size = _price(ev.get("new_tick_size"))
            elif et == "market_resolved":
                cid, win = ev.get("market"), ev.get("winning_asset_id")
                if not isinstance(cid, str) or not isinstance(win, str):
                    raise ParseError("bad_market_resolved")
                if self.on_resolved is not None:
                    self.on_resolved(cid, win, ev)
            elif et in KNOWN_EVENTS:
                pass  # last_trade_price, best_bid_ask, new_market: not needed for snapshots
            else:
                self.metrics.inc("unknown_event_types", stream="clob", type=str(et)[:40])
                return 0
        except ParseError as e:
            self.metrics.inc("frames_rejected", stream="clob", reason=e.reason)
            return 0
        self.metrics.inc("events", stream="clob", type=et)
        self._stamp(ev.get("timestamp"), recv_ts)
        return 1

    def _stamp(self, ts: Any, recv_ts: float) -> None:
        t = _venue_ts(ts)
        if t is None:
            return
        if self.last_venue_ts is None or t > self.last_venue_ts:
            self.last_venue_ts = t
            self.last_offset = recv_ts - t

    def _book(self, ev: dict[str, Any], recv_ts: float) -> None:
        token = ev.get("asset_id")
        if not isinstance(token, str) or not token:
            raise ParseError("no_asset_id")
        if token in self.retired:
            return
        bids, asks = _levels(ev.get("bids")), _levels(ev.get("asks"))
        tick = ev.get("tick_size")
        venue_ts = _venue_ts(ev.get("timestamp"))
        old = self.books.get(token)
        if old is not None and venue_ts is not None and old.venue_ts is not None \
                and venue_ts < old.venue_ts:
            self.metrics.inc("stale_events", stream="clob", type="book")
            return
        new = self.books[token] = Book(bids, asks, recv_ts,
                                       _price(tick) if tick not in (None, "") else
                                       (old.tick_size if old else None), venue_ts)
        if old is not None:  # a fresh snapshot of a book we follow: its range goes on
            new.ask_low, new.bid_high = old.ask_low, old.bid_high
            new.note_touch()

    def _price_change(self, ev: dict[str, Any], recv_ts: float) -> None:
        changes = ev.get("price_changes")
        legacy = changes is None and isinstance(ev.get("changes"), list)
        if legacy:  # pre-2025-09-15 schema: top-level asset_id + changes[]
            changes = [dict(c, asset_id=ev.get("asset_id")) for c in ev["changes"]
                       if isinstance(c, dict)]
        if not isinstance(changes, list):
            raise ParseError("bad_price_change")
        parsed = []
        for c in changes:  # validate the whole event before touching any book
            if not isinstance(c, dict):
                raise ParseError("bad_price_change")
            side = str(c.get("side") or "").upper()
            if side not in ("BUY", "SELL"):
                raise ParseError("bad_side", side[:10])
            parsed.append((str(c.get("asset_id")), side == "BUY", _price(c.get("price")),
                           _size(c.get("size")), c))
        last: dict[str, dict[str, Any]] = {}
        for token, is_bid, price, size, c in parsed:
            b = self.books.get(token)
            if b is None:
                if token not in self.retired:
                    # an update for a token we hold no snapshot of (its snapshot was lost):
                    # ask for one rather than wait for the venue to send it
                    self.metrics.inc("price_change_without_book", stream="clob")
                    self.suspect.add(token)
                continue
            b.set_level(is_bid, price, size)
            b.updated_at = recv_ts
            last[token] = c
        # the venue states each token's top after the change; check it once the whole event
        # is applied (several levels of one token may change in one event)
        for token, c in last.items():
            b = self.books[token]
            b.note_touch()
            if "best_bid" in c and "best_ask" in c and self._check_top(b, c):
                # we missed an update: this book is wrong until a fresh snapshot arrives
                del self.books[token]
                self.suspect.add(token)

    def _check_top(self, b: Book, c: dict[str, Any]) -> bool:
        """The venue states the post-change top; disagreement means we missed something."""
        try:
            vb = float(c["best_bid"]) if c["best_bid"] not in (None, "", "0") else None
            va = float(c["best_ask"]) if c["best_ask"] not in (None, "", "0") else None
        except (TypeError, ValueError, OverflowError):
            return False
        if (vb is not None and b.best_bid is not None and abs(vb - b.best_bid) > 1e-9) or \
                (va is not None and b.best_ask is not None and abs(va - b.best_ask) > 1e-9):
            self.metrics.inc("top_mismatch", stream="clob")
            return True
        return False
