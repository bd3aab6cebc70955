"""The snapshot row: a pure function from book and price state to one ``slot_snapshots`` row.

One implementation shared by the live collector, the sim's history generator (``slotml sim
backfill``), ``slotml rederive`` and serve/'s online feature builder, so the four can never
disagree on what a row means. No I/O, no clock: every time is passed in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from slotml.ingest.schema import DEPTH_LEVELS

SNAPSHOT_INTERVAL_S = 30.0
GHOST_BID = 0.01  # a REST/WS book whose only levels are 0.01 bid / 0.99 ask carries no information
GHOST_ASK = 0.99


@dataclass(frozen=True, slots=True)
class BookTop:
    """Top of one token's book. None = that side is empty (never 0)."""

    bid: float | None
    ask: float | None
    bid_size: float | None = None
    ask_size: float | None = None
    updated_at: float | None = None  # epoch s of the last change applied to this book
    # the top levels of each side, best first, as (price, size): bids descending, asks ascending,
    # level 1 == (bid, bid_size). Read with the best levels (same state); None = no depth captured
    bids: tuple[tuple[float, float], ...] | None = None
    asks: tuple[tuple[float, float], ...] | None = None
    # the touch's range since the token's previous row, this state included (None: not followed)
    ask_low: float | None = None
    bid_high: float | None = None


@dataclass(frozen=True, slots=True)
class WindowRef:
    """What a snapshot needs to know about its window."""

    symbol: str
    window_s: int
    slot_ts: int
    settlement: str = "twap60"  # "twap60", "spot", a Binance candle rule, or "unknown"
    price_to_beat: float | None = None  # settlement-series value stamped at slot_ts
    spot_price_to_beat: float | None = None  # spot value stamped at slot_ts
    spot_source: str | None = None  # whose spot series: chainlink | pyth (None: not known)


def grid_tick_ms(now: float, interval_s: float = SNAPSHOT_INTERVAL_S) -> int:
    """The latest grid instant at or before ``now`` (epoch s), in ms; all assets share it."""
    step = round(interval_s * 1000)
    return (int(now * 1000) // step) * step


def _depth_ok(levels: tuple[tuple[float, float], ...] | None, best: float | None,
              best_size: float | None, descending: bool) -> bool:
    """Best first, strictly ordered, sizes > 0, and level 1 is the best level itself."""
    if levels is None:
        return True
    if not levels:
        return best is None
    if levels[0] != (best, best_size):
        return False
    prev = None
    for p, s in levels:
        if s is None or not s > 0 or (prev is not None and (p >= prev if descending else p <= prev)):
            return False
        prev = p
    return True


def check_top(top: BookTop | None) -> tuple[BookTop | None, str | None]:
    """Validate one token's top of book. Returns (top or None, reject reason or None).

    A book with a price outside [0, 1], a crossed book (bid >= ask) or a ghost 0.01/0.99 book
    is rejected whole: its columns become NULL and the caller counts the reason.
    """
    if top is None:
        return None, None
    for p in (top.bid, top.ask):
        if p is not None and not (0.0 <= p <= 1.0):
            return None, "price_out_of_range"
    for s in (top.bid_size, top.ask_size):
        if s is not None and s < 0:
            return None, "negative_size"
    if (top.ask_low is not None and not (0.0 <= top.ask_low <= 1.0)) or \
            (top.bid_high is not None and not (0.0 <= top.bid_high <= 1.0)):
        return None, "price_out_of_range"
    if top.bid is not None and top.ask is not None:
        if top.bid >= top.ask:
            return None, "crossed"
        if top.bid <= GHOST_BID and top.ask >= GHOST_ASK:
            return None, "ghost"
    if not (_depth_ok(top.bids, top.bid, top.bid_size, True)
            and _depth_ok(top.asks, top.ask, top.ask_size, False)):
        return None, "depth_mismatch"  # levels that disagree with the best: trust neither
    return top, None


# (price column, size column) of levels 1..DEPTH_LEVELS per (token, side), schema order
_DEPTH_COLS = {(token, side): tuple((f"{side}_{token}_l{k}", f"{side}_size_{token}_l{k}")
                                    for k in range(1, DEPTH_LEVELS + 1))
               for token in ("up", "down") for side in ("bid", "ask")}


def depth_columns(token: str, top: BookTop | None, row: dict[str, Any]) -> None:
    """Fill the depth columns of one token into ``row``: level k absent -> price and size NULL."""
    for side in ("bid", "ask"):
        levels = (top.bids if side == "bid" else top.asks) if top is not None else None
        levels = levels or ()
        for k, (pc, sc) in enumerate(_DEPTH_COLS[(token, side)]):
            if k < len(levels):
                row[pc], row[sc] = levels[k]
            else:
                row[pc] = row[sc] = None


def move_pct(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return (value / base - 1.0) * 100.0


def make_snapshot(
    window: WindowRef,
    tick_ms: int,
    captured_at: float,
    up: BookTop | None,
    down: BookTop | None,
    spot: float | None,
    twap: float | None,
    settle: float | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Build one ``slot_snapshots`` row (all columns but id and updated_at).

    Returns the row and the list of reject reasons (``"up:crossed"`` ...) for the caller's
    counters. The move columns use the market's settlement series (``twap`` for ``twap60``,
    ``spot`` for ``spot``) against ``price_to_beat``; ``spot_move_pct`` always uses the spot
    stream against ``spot_price_to_beat``. A missing base leaves the moves NULL. The depth
    columns come from the tops' ``bids``/``asks`` (the same read as the best levels), so a
    rejected or missing book NULLs its depth exactly as it NULLs its best levels. A caller that
    captures no depth (no top carries levels) gets a row without the depth keys: the store
    writes them NULL and leaves them out of its INSERT (cheaper). The touch's range columns
    come from the tops' ``ask_low``/``bid_high`` (NULL where a top has none).
    """
    rejects: list[str] = []
    has_depth = any(t is not None and (t.bids is not None or t.asks is not None) for t in (up, down))
    up, r = check_top(up)
    if r:
        rejects.append(f"up:{r}")
    down, r = check_top(down)
    if r:
        rejects.append(f"down:{r}")

    # ``settle``: the live value of a rule neither Chainlink series is (a Binance candle's close)
    settle_value = {"twap60": twap, "spot": spot}.get(window.settlement, settle)
    dir_move = move_pct(settle_value, window.price_to_beat)
    tick_s = tick_ms / 1000.0
    tm = time.gmtime(tick_s)
    ages = [captured_at - t.updated_at for t in (up, down) if t is not None and t.updated_at is not None]

    def side(top: BookTop | None, attr: str) -> float | None:
        return None if top is None else getattr(top, attr)

    def spread(top: BookTop | None) -> float | None:
        if top is None or top.bid is None or top.ask is None:
            return None
        return round(top.ask - top.bid, 10)

    row = {
        "symbol": window.symbol,
        "window_s": int(window.window_s),
        "slot_ts": int(window.slot_ts),
        "tick_ms": int(tick_ms),
        "captured_at": float(captured_at),
        "minutes_into_slot": (tick_s - window.slot_ts) / 60.0,
        "bid_up": side(up, "bid"),
        "ask_up": side(up, "ask"),
        "bid_down": side(down, "bid"),
        "ask_down": side(down, "ask"),
        "bid_size_up": side(up, "bid_size") if side(up, "bid") is not None else None,
        "ask_size_up": side(up, "ask_size") if side(up, "ask") is not None else None,
        "bid_size_down": side(down, "bid_size") if side(down, "bid") is not None else None,
        "ask_size_down": side(down, "ask_size") if side(down, "ask") is not None else None,
        "spread_up": spread(up),
        "spread_down": spread(down),
        "chainlink_price": spot,
        "chainlink_twap": twap,
        "dir_move_pct": dir_move,
        "abs_move_pct": None if dir_move is None else abs(dir_move),
        "spot_move_pct": move_pct(spot, window.spot_price_to_beat),
        "book_age_s": max(ages) if ages else None,
        "hour_utc": tm.tm_hour,
        "day_of_week": tm.tm_wday,  # time.struct_time: 0 = Monday
    }
    if has_depth:  # after check_top: a rejected (crossed, ...) book has no depth
        depth_columns("up", up, row)
        depth_columns("down", down, row)
    row["spot_source"] = window.spot_source
    for token, top in (("up", up), ("down", down)):  # the readers' ranges hold the state itself
        row[f"ask_{token}_low"] = None if top is None else top.ask_low
        row[f"bid_{token}_high"] = None if top is None else top.bid_high
    return row, rejects
