"""One window's state and the row made from it: shared by the live daemon and the replay.

``Collector`` (live) and ``raw.Replay`` (``slotml rederive``) both build rows with these
functions, so a replayed capture comes out equal to the live rows; neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slotml import venue
from slotml.ingest.books import BookStore
from slotml.ingest.feeds.binance import B1H_CLOSE, B1H_OPEN, B1M_CLOSE, B_LAST
from slotml.ingest.feeds.gamma import MarketInfo
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import SPOT, TWAP60
from slotml.ingest.schema import DEPTH_LEVELS
from slotml.ingest.snapshot import BookTop, WindowRef, make_snapshot


@dataclass(frozen=True, slots=True)
class SettleReading:
    """Where a rule's prices are read: ``start`` at the window start (price_to_beat), ``final``
    at the end, or at the start for a candle keyed by its open (``final_at_start``), ``live``
    the latest value the moves use."""

    start: str
    final: str
    final_at_start: bool
    live: str


READINGS = {
    "twap60": SettleReading(TWAP60, TWAP60, False, TWAP60),
    "spot": SettleReading(SPOT, SPOT, False, SPOT),
    # feeds/binance.py: the 1h candle of the window; the 1m candles opening at each noon ET
    "binance1h": SettleReading(B1H_OPEN, B1H_CLOSE, True, B_LAST),
    "binance_noon": SettleReading(B1M_CLOSE, B1M_CLOSE, False, B_LAST),
}


def reading(settlement: str) -> SettleReading | None:
    """How the rule reads its prices (None: the 30 s TWAP, the perpetual's candles and
    ``unknown``, which no source carries: no price_to_beat, no moves)."""
    return READINGS.get(settlement)


def settle_series(settlement: str) -> str | None:
    """The series of the rule's price to beat (None: see ``reading``)."""
    r = READINGS.get(settlement)
    return r.start if r else None


def settle_at(prices: Any, symbol: str, series: str, ts_s: float) -> Any:
    """The observation of settlement ``series`` stamped at ``ts_s``, only from a source set
    that carries it (None otherwise: PolyBolt's spot is Pyth's, never a Chainlink spot
    settlement price, even though its ``at`` answers for ``spot``)."""
    if not prices.carries(series):
        return None
    return prices.at(symbol, series, ts_s)


def final_lookup(settlement: str, slot_ts: int, end_ts: int) -> tuple[str, int] | None:
    """(series, stamp) of the rule's final price."""
    r = READINGS.get(settlement)
    if r is None:
        return None
    return r.final, slot_ts if r.final_at_start else end_ts


@dataclass
class Window:
    info: MarketInfo
    price_to_beat: float | None = None
    spot_price_to_beat: float | None = None
    final_price: float | None = None
    final_seen_at: float | None = None
    resolved_up: bool | None = None
    resolved_at: float | None = None
    official_ptb: float | None = None
    official_final: float | None = None
    prev_resolved_up: bool | None = None
    spot_source: str | None = None  # pinned at the start: whose spot series the window reads
    ws_winner: bool | None = None
    clob_winner: bool | None = None
    checked: set[str] = field(default_factory=set)  # disagreement kinds already counted
    done: bool = False
    ptb_missing_counted: bool = False

    @property
    def key(self) -> tuple[str, int, int]:
        """(symbol, window_s, slot_ts): the store's key (two families may start together)."""
        return (self.info.symbol, self.info.window_s, self.info.slot_ts)

    def keycols(self) -> dict[str, Any]:
        return {"symbol": self.info.symbol, "window_s": self.info.window_s,
                "slot_ts": self.info.slot_ts}


def info_from_row(row: dict[str, Any], family: str) -> MarketInfo | None:
    """Rebuild a window's metadata from its ``slot_resolutions`` row (restart)."""
    if not row.get("up_token_id") or not row.get("down_token_id") or not row.get("end_ts"):
        return None
    return MarketInfo(
        symbol=row["symbol"], family=family, window_s=int(row["window_s"]),
        slot_ts=int(row["slot_ts"]), end_ts=int(row["end_ts"]),
        slug=row.get("slug") or venue.slug(row["symbol"], family, row["slot_ts"]),
        condition_id=row.get("condition_id") or "", up_token_id=row["up_token_id"],
        down_token_id=row["down_token_id"], settlement=row.get("settlement") or "twap60",
        resolution_source=row.get("resolution_source"),
        tick_size=row.get("tick_size"), min_order_size=row.get("min_order_size"),
        fee_rate=row.get("fee_rate"), fee_exponent=row.get("fee_exponent"),
        fee_taker_only=row.get("fee_taker_only"), slug_ts=int(row["slot_ts"]),
    )


def fill_bases(win: Window, prices: Any, now: float | None = None) -> dict[str, Any]:
    """Pin the window's spot source (once, at its first look: its start) and look for the
    observations stamped exactly at the window start (set once each)."""
    info = win.info
    changed: dict[str, Any] = {}
    if win.spot_source is None:
        win.spot_source = changed["spot_source"] = prices.pin_spot(
            info.symbol, info.slot_ts if now is None else now)
    series = settle_series(info.settlement)
    if win.price_to_beat is None and series is not None:
        o = settle_at(prices, info.symbol, series, info.slot_ts)
        if o is not None:
            win.price_to_beat = changed["price_to_beat"] = o.value
    if win.spot_price_to_beat is None:
        o = prices.spot_book(win.spot_source).at(info.symbol, SPOT, info.slot_ts)
        if o is not None:
            win.spot_price_to_beat = changed["spot_price_to_beat"] = o.value
    return changed


def fresh_price(prices: Any, symbol: str, series: str, now: float, stale_after: float,
                metrics: Metrics) -> float | None:
    """The latest observation, unless it is older than ``stale_after`` (then NULL, counted)."""
    o = prices.latest(symbol, series)
    if o is None:
        metrics.inc("snapshot_nulls", column=series, reason="no_data")
        return None
    if now - o.obs_ts > stale_after:
        metrics.inc("snapshot_nulls", column=series, reason="stale")
        return None
    return o.value


@dataclass(slots=True)
class Capture:
    """The live state one row is made of, read at ``at`` (epoch s)."""

    win: Window
    at: float
    up: BookTop | None
    down: BookTop | None
    spot: float | None
    twap: float | None
    settle: float | None = None  # the live value of a rule read elsewhere (a Binance candle)
    # False: the rule settles on Chainlink spot but the window's pinned spot is another series
    # (Pyth's, PolyBolt): no move is measured against it
    moves: bool = True


def capture(win: Window, now: float, books: BookStore, prices: Any, clob_fresh: bool,
            stale_after: float, metrics: Metrics) -> Capture:
    """Read one window's books (best levels and depth in one read per token: they cannot
    disagree) and prices, nothing else. O(levels) per token."""
    info = win.info
    up = down = None
    if clob_fresh:
        up = books.top(info.up_token_id, DEPTH_LEVELS, roll=True)
        down = books.top(info.down_token_id, DEPTH_LEVELS, roll=True)
        for t in (up, down):
            if t is None:
                metrics.inc("snapshot_nulls", column="book", reason="no_book")
    else:
        metrics.inc("snapshot_nulls", column="book", reason="stale_stream")
    r = READINGS.get(info.settlement)
    settle = None
    if r is not None and r.live not in (SPOT, TWAP60) and prices.carries(r.live):
        settle = fresh_price(prices, info.symbol, r.live, now, stale_after, metrics)
    spot_book = prices.spot_book(win.spot_source)
    moves = r is None or r.live != SPOT or spot_book.carries(SPOT)
    return Capture(win, now, up, down,
                   fresh_price(spot_book, info.symbol, SPOT, now, stale_after, metrics),
                   fresh_price(prices, info.symbol, TWAP60, now, stale_after, metrics), settle,
                   moves)


def build_row(cap: Capture, tick_ms: int, metrics: Metrics) -> dict[str, Any]:
    """The row for one capture, via the one snapshot function; rejects are counted."""
    win, info = cap.win, cap.win.info
    known = settle_series(info.settlement) is not None
    ref = WindowRef(info.symbol, info.window_s, info.slot_ts,
                    info.settlement if known else "unknown",
                    win.price_to_beat, win.spot_price_to_beat, win.spot_source)
    row, rejects = make_snapshot(ref, tick_ms, cap.at, cap.up, cap.down, cap.spot, cap.twap,
                                 settle=cap.settle)
    if not known or not cap.moves:  # e.g. a 30 s TWAP market: we do not follow its series
        row["dir_move_pct"] = row["abs_move_pct"] = None
    for r in rejects:
        side, reason = r.split(":", 1)
        metrics.inc("book_rejects", side=side, reason=reason)
    return row


def window_row(win: Window, tick_ms: int, now: float, books: BookStore, prices: Any,
               clob_fresh: bool, stale_after: float, metrics: Metrics) -> dict[str, Any]:
    """One window's snapshot row from the state at ``now`` (rederive; the daemon splits it
    into ``capture`` for all windows first, then ``build_row``)."""
    return build_row(capture(win, now, books, prices, clob_fresh, stale_after, metrics),
                     tick_ms, metrics)
