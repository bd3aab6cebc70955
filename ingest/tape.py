"""The trade tape: ``last_trade_price`` prints out of market-channel frames, and their keys.

Pure (no I/O, no clock): the collector and a replay of its spool or raw capture feed the same
frames in the same order and get the same rows. A print is one fill as the venue reports it
(protocol.md 3.2): string ``price``/``size``/``fee_rate_bps``, ``side``, ``timestamp`` (string of
epoch ms), ``market``, ``asset_id``, and sometimes ``transaction_hash``.

The venue gives a print no id, so a row's key is its content plus ``occurrence``: the number of
identical prints (same token, ms, price, size, side, hash) that arrived before it. Two fills of
one taker against two makers share a hash but differ in size or price, so they get different
keys; two truly identical prints get occurrences 0 and 1. Bad prints are skipped and returned
by reason (never raised), so the caller counts them like any rejected frame.
"""

from __future__ import annotations

import heapq
import math
import re
from typing import Any, NamedTuple

TRADE_EVENT = "last_trade_price"
SIDES = ("BUY", "SELL")
# Plausible venue times (epoch ms): 2020-01-01 .. 2100-01-01. Anything else is a unit or
# encoding error (seconds, microseconds), not a trade time.
TS_MIN_MS = 1_577_836_800_000
TS_MAX_MS = 4_102_444_800_000
# A decimal as the venue writes it ("0.456", ".48", "219.217767", "5"). Stricter than float():
# no "nan", "inf", "1_0", signs or blanks.
_DECIMAL = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_DIGITS = re.compile(r"\d{1,19}")

# Column names of the ``slot_trades`` table, in order (the storage side uses exactly these).
TRADE_COLUMNS = ("symbol", "window_s", "slot_ts", "token_id", "outcome", "condition_id", "price",
                 "size", "side", "fee_rate_bps", "ts_ms", "received_at", "tx_hash", "frame_index",
                 "occurrence")


class Print(NamedTuple):
    """One ``last_trade_price`` event, validated: prices in [0, 1], sizes > 0, times in ms.

    A NamedTuple (immutable, compared by value): one is made per print, and a frozen
    dataclass costs several times more to build."""

    token_id: str
    condition_id: str  # the event's ``market``; '' if the venue left it out
    price: float
    size: float
    side: str  # BUY | SELL (the taker's side)
    fee_rate_bps: float | None  # None when absent or ""
    ts_ms: int  # the venue's ``timestamp``
    tx_hash: str  # '' when the venue sent no ``transaction_hash``
    frame_index: int  # index among the frame's events (mixed types count)
    received_at: float  # epoch s, the caller's receipt time

    @property
    def key(self) -> tuple[str, int, float, float, str, str]:
        """What makes two prints identical (``occurrence`` tells identical ones apart)."""
        return (self.token_id, self.ts_ms, self.price, self.size, self.side, self.tx_hash)


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decimal(v: Any, reason: str) -> float:
    """A decimal string or JSON number -> a finite float; anything else raises ``_Bad(reason)``."""
    if isinstance(v, bool):
        raise _Bad(reason)
    if not isinstance(v, int | float) and not (isinstance(v, str) and _DECIMAL.fullmatch(v)):
        raise _Bad(reason)
    try:
        x = float(v)
    except OverflowError as e:  # an integer beyond any float
        raise _Bad(reason) from e
    if not math.isfinite(x):
        raise _Bad(reason)
    return x


def _ts_ms(v: Any) -> int:
    if isinstance(v, bool):
        raise _Bad("trade_bad_ts")
    if isinstance(v, int):
        t = v
    elif isinstance(v, str) and _DIGITS.fullmatch(v):
        t = int(v)
    else:  # floats included: the venue sends whole ms, a fraction means another unit
        raise _Bad("trade_bad_ts")
    if not TS_MIN_MS <= t < TS_MAX_MS:
        raise _Bad("trade_bad_ts")
    return t


def parse_print(ev: dict[str, Any], frame_index: int, received_at: float) -> Print:
    """One ``last_trade_price`` event -> ``Print``; raises ``_Bad`` with the skip reason."""
    token = ev.get("asset_id")
    if not isinstance(token, str) or not token:
        raise _Bad("trade_malformed")
    market = ev.get("market")
    if market is None:
        market = ""
    elif not isinstance(market, str):
        raise _Bad("trade_malformed")
    if "price" not in ev or "size" not in ev or "side" not in ev or "timestamp" not in ev:
        raise _Bad("trade_malformed")
    price = _decimal(ev["price"], "trade_bad_price")
    if not 0.0 <= price <= 1.0:
        raise _Bad("trade_bad_price")
    size = _decimal(ev["size"], "trade_bad_size")
    if not size > 0.0:
        raise _Bad("trade_bad_size")
    side = ev["side"]
    if not isinstance(side, str) or side.upper() not in SIDES:
        raise _Bad("trade_bad_side")
    fee_raw = ev.get("fee_rate_bps")
    fee: float | None = None
    if fee_raw not in (None, ""):
        fee = _decimal(fee_raw, "trade_bad_fee")  # a schema change, not a fee of 0
        if fee < 0:
            raise _Bad("trade_bad_fee")
    tx = ev.get("transaction_hash")
    if tx is None:
        tx = ""
    elif not isinstance(tx, str):
        raise _Bad("trade_malformed")
    return Print(token, market, price, size, side.upper(), fee, _ts_ms(ev["timestamp"]), tx,
                 frame_index, float(received_at))


def has_prints(frame: Any) -> bool:
    """Whether a decoded frame holds any ``last_trade_price`` event: the cheap test that spares
    the ~95% of market-channel frames without one the rest of ``parse_prints``."""
    for ev in frame if isinstance(frame, list) else (frame,):
        if isinstance(ev, dict) and ev.get("event_type") == TRADE_EVENT:
            return True
    return False


def parse_prints(frame: Any, received_at: float) -> tuple[list[Print], list[str]]:
    """The prints of one decoded frame (an event or a list of events) and the skip reasons.

    Events of other types, and list items that are not objects, are not prints and not counted.
    Never raises.
    """
    events = frame if isinstance(frame, list) else [frame]
    prints: list[Print] = []
    bad: list[str] = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or ev.get("event_type") != TRADE_EVENT:
            continue
        try:
            prints.append(parse_print(ev, i, received_at))
        except _Bad as e:
            bad.append(e.reason)
        except Exception:  # noqa: BLE001 - whatever a hostile payload does, it is one bad print
            bad.append("trade_malformed")
    return prints, bad


class Occurrences:
    """Assigns ``occurrence``: 0 for the first print with a given key, 1 for the next, ...

    Deterministic in arrival order, so a replay of the same frames gives the same keys. The key
    holds ``ts_ms``, so identical prints can only collide within one millisecond: only keys of
    recent ms need remembering. Per token, keys more than ``horizon_ms`` older than the newest
    print seen are dropped (default 60 s: far beyond any reordering on one socket, whose frames
    arrive in order, and small enough that the keys kept stay flat: at 200 prints/s about 12k
    keys, a few MB; 10 minutes grew the collector's RSS by ~90 MB in the benchmark). An identical
    print arriving later than that would start again at 0 and be taken for a duplicate by the
    store; a non-identical one is unaffected.
    """

    def __init__(self, horizon_ms: int = 60_000) -> None:
        self.horizon_ms = horizon_ms
        self._counts: dict[str, dict[tuple, int]] = {}  # token -> key -> prints seen
        self._by_ts: dict[str, list[tuple[int, tuple]]] = {}  # token -> heap of (ts_ms, key)
        self._newest: dict[str, int] = {}

    def next(self, p: Print) -> int:
        """The occurrence of ``p`` (and remember it)."""
        token = p.token_id
        counts = self._counts.setdefault(token, {})
        heap = self._by_ts.setdefault(token, [])
        key = p.key
        n = counts.get(key, 0)
        counts[key] = n + 1
        if n == 0:
            heapq.heappush(heap, (p.ts_ms, key))
        newest = max(self._newest.get(token, p.ts_ms), p.ts_ms)
        self._newest[token] = newest
        cutoff = newest - self.horizon_ms
        while heap and heap[0][0] < cutoff:
            _, old = heapq.heappop(heap)
            del counts[old]
        return n

    def forget(self, token_ids: list[str]) -> None:
        """Tokens no longer followed (their window ended): drop their keys."""
        for t in token_ids:
            self._counts.pop(t, None)
            self._by_ts.pop(t, None)
            self._newest.pop(t, None)

    def __len__(self) -> int:
        return sum(len(c) for c in self._counts.values())


def trade_row(p: Print, occurrence: int, *, symbol: str, window_s: int, slot_ts: int,
              outcome: str) -> dict[str, Any]:
    """The ``slot_trades`` row of one print (``outcome`` is 'Up' or 'Down': the token's side)."""
    if outcome not in ("Up", "Down"):
        raise ValueError(f"outcome must be Up or Down, not {outcome!r}")
    return {"symbol": symbol, "window_s": int(window_s), "slot_ts": int(slot_ts),
            "token_id": p.token_id, "outcome": outcome, "condition_id": p.condition_id,
            "price": p.price, "size": p.size, "side": p.side, "fee_rate_bps": p.fee_rate_bps,
            "ts_ms": p.ts_ms, "received_at": p.received_at, "tx_hash": p.tx_hash,
            "frame_index": p.frame_index, "occurrence": int(occurrence)}
