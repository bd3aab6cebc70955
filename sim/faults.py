"""Faults on demand: what the real venue does to a collector, injected through ``/_sim/faults``.

A fault is a kind plus parameters; it is either a one-shot action (drop the sockets now, send one
malformed frame) or a condition that lasts ``duration_s`` seconds or ``count`` uses (HTTP 429s,
a silent feed, duplicate updates). The registry counts what was actually EMITTED per kind so a
test can check the collector was exposed to it (``GET /_sim/stats``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# kind -> (what it does, targets it accepts)
KINDS: dict[str, str] = {
    "ws_drop": "abort websocket connections without a close frame (target: market|rtds|polybolt|all)",
    "service_down": "a dead service: abort the target's sockets now and refuse new ones (503) "
                    "for duration_s (target: market|rtds|polybolt|all)",
    "pb_close": "close every PolyBolt socket now with `code` (4002 slow, 4003 drain, 4008 policy, "
                "4001 auth)",
    "pb_revoke": "PolyBolt credentials revoked for duration_s: authed sockets closed 4001 now, "
                 "every auth refused with 4001",
    "ws_silent": "stay connected and answer PING, send no data for duration_s (target)",
    "malformed": "send `count` frames that are not JSON (target: market|rtds|polybolt|all)",
    "truncated": "send `count` JSON frames cut in half, each in its socket's shape (target; a "
                 "PolyBolt one takes its socket's next seq: the lost frame is a seq gap)",
    "unknown_event": "send an event of an unknown type, in the target's shape (target: market, "
                     "rtds, or polybolt: an unknown channel with the socket's next seq)",
    "extra_fields": "add unknown fields to every frame/response for duration_s "
                    "(target: market|rtds|polybolt|http|all)",
    "http_status": "answer the next `count` HTTP requests under `prefix` with `status` "
                   "(500, 425, 429 + Retry-After: retry_after)",
    "slow": "delay the next `count` HTTP responses under `prefix` by delay_s (a client timeout)",
    "out_of_order": "deliver the next `count` seconds of price updates in swapped order "
                    "(target: rtds|polybolt|all; PolyBolt's seq stays in sending order)",
    "duplicate": "send the next `count` seconds of price updates twice (target: rtds|polybolt|"
                 "all; PolyBolt repeats the frame, seq and all)",
    "crossed_book": "cross the Up book of `token_id` (or every subscribed market) for duration_s",
    "ghost_book": "REST /book answers a ghost 0.01/0.99 book for `count` requests",
    "resolve_close": "close market websockets now with 1000 'all subscribed assets resolved'",
    "tick_size_change": "send a tick_size_change event to market subscribers",
}
ONE_SHOT = {"ws_drop", "pb_close", "malformed", "truncated", "unknown_event", "resolve_close", "tick_size_change"}


@dataclass
class Fault:
    id: int
    kind: str
    params: dict[str, Any]
    created: float
    until: float | None = None
    remaining: int | None = None
    emitted: int = 0

    @property
    def target(self) -> str:
        return str(self.params.get("target", "all"))

    def hits(self, target: str) -> bool:
        return self.target in ("all", target)

    def live(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "params": self.params, "until": self.until,
                "remaining": self.remaining, "emitted": self.emitted}


@dataclass
class Faults:
    """The active faults and the per-kind count of what was emitted."""

    active: list[Fault] = field(default_factory=list)
    emitted: Counter = field(default_factory=Counter)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add(self, kind: str, params: dict[str, Any] | None = None) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        params = dict(params or {})
        now = time.time()
        f = Fault(next(self._ids), kind, params, now)
        if "duration_s" in params:
            f.until = now + float(params["duration_s"])
        if "count" in params:
            f.remaining = int(params["count"])
        elif kind in ("http_status", "slow", "ghost_book", "out_of_order", "duplicate") and f.until is None:
            f.remaining = 1
        elif kind in ("ws_silent", "extra_fields", "crossed_book", "service_down",
                      "pb_revoke") and f.until is None:
            f.until = now + 5.0
        if kind not in ONE_SHOT:
            self.active.append(f)
        return f

    def clear(self, fault_id: int | None = None) -> int:
        before = len(self.active)
        self.active = [f for f in self.active if fault_id is not None and f.id != fault_id]
        return before - len(self.active)

    def find(self, kind: str, target: str | None = None, now: float | None = None) -> Fault | None:
        now = time.time() if now is None else now
        self.active = [f for f in self.active if f.live(now)]
        for f in self.active:
            if f.kind == kind and (target is None or f.hits(target)):
                return f
        return None

    def use(self, f: Fault, n: int = 1) -> None:
        """Record that a fault was emitted (and consume one use of a counted fault)."""
        f.emitted += n
        self.emitted[f.kind] += n
        if f.remaining is not None:
            f.remaining -= 1

    def note(self, kind: str, n: int = 1) -> None:
        """Count a one-shot fault's emission."""
        self.emitted[kind] += n


def with_extra(obj: Any) -> Any:
    """The ``extra_fields`` payload: every object gains a field the client does not know."""
    if isinstance(obj, dict):
        return {**obj, "sim_extra_field": {"note": "unknown field", "n": 1}}
    if isinstance(obj, list):
        return [with_extra(x) for x in obj]
    return obj


def bad_frame(kind: str, channel: str, now_ms: int, seq: int | None = None) -> str:
    """One ``malformed``/``truncated``/``unknown_event`` frame for a ``market``, ``rtds`` or
    ``polybolt`` socket (``seq``: the PolyBolt socket's next, for the last two kinds)."""
    if channel == "market":
        good = {"event_type": "price_change", "market": "0x00", "price_changes": [],
                "timestamp": str(now_ms)}
    elif channel == "polybolt":
        good = {"v": 1, "channel": "price.crypto.twap", "seq": seq, "ts": now_ms,
                "payload": {"symbol": "btcusd", "timestamp": now_ms // 1000 * 1000, "value": 1.0,
                            "window_seconds": 60}}
    else:
        good = {"topic": "crypto_prices_chainlink", "type": "update", "timestamp": now_ms,
                "payload": {"symbol": "btc/usd", "timestamp": now_ms // 1000 * 1000, "value": 1.0}}
    if kind == "malformed":
        return "{this is not json" + str(now_ms)
    text = json.dumps(good, separators=(",", ":"))
    if kind == "truncated":
        return text[: len(text) // 2]
    if channel == "market":
        return json.dumps({**good, "event_type": "sim_unknown_event", "whatever": 1})
    if channel == "polybolt":
        return json.dumps({**good, "channel": "price.crypto.sim_unknown"})
    return json.dumps({**good, "type": "sim_unknown_type"})
