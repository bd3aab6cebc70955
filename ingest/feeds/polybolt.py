"""PolyBolt, the relay's authenticated successor (protocol.md §4.2): Chainlink's 60 s TWAP
(``price.crypto.twap``) and Pyth's spot (``price.crypto``) over authenticated websockets.

One ``PolyBolt`` price source runs as many connections as its subscriptions need (at most
``MAX_SUBSCRIPTIONS`` each: two per asset), all feeding one ``PriceBook`` kept by observation
stamp, exactly as the relay's. Each connection authenticates (``op: auth``, the L2 credentials
never logged), subscribes once ``authed``, answers the server's ``op: ping``, and counts ``seq``
gaps and the server's ``dropped``. Close codes: 4001 (credentials refused) waits
``auth_retry_s`` (doubling, at most an hour) instead of storming; 4002 (slow) and 4003 (drain)
reconnect at once; 4008 (policy) is logged as an error and counted, then the usual backoff.
Spot here is Pyth's, not Chainlink's: rows name it (``spot_source`` = ``pyth``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from slotml.ingest.books import decode_frame
from slotml.ingest.credentials import Credentials
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import MAX_STAMP_MS, SPOT, TWAP60, Observation, PriceBook, PriceSource
from slotml.ingest.transport.ws import RawHook, WsFeed
from slotml.ingest.wire import ParseError

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 64
CHANNELS = {"price.crypto.twap": TWAP60, "price.crypto": SPOT}
CLOSE_REASONS = {4001: "auth", 4002: "slow", 4003: "drain", 4008: "policy"}
AUTH_RETRY_MAX_S = 3600.0
STREAM = "polybolt"


def wire_symbol(symbol: str) -> str:
    return f"{symbol.lower()}usd"


def subscriptions(symbols: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every subscription the collector needs: the TWAP and the spot of each asset."""
    out: list[dict[str, Any]] = []
    for s in symbols:
        out.append({"channel": "price.crypto.twap",
                     "filter": {"symbol": wire_symbol(s), "window_seconds": 60}})
        out.append({"channel": "price.crypto", "filter": {"symbol": wire_symbol(s)}})
    return out


class PolyBoltConn(WsFeed):
    """One authenticated connection carrying up to ``MAX_SUBSCRIPTIONS`` subscriptions."""

    name = STREAM
    keepalive = None  # the server pings (op: ping); we answer

    def __init__(self, owner: PolyBolt, index: int, subs: list[dict[str, Any]],
                 **ws: Any) -> None:
        super().__init__(owner.url, owner.metrics, **ws)
        self.owner = owner
        self.index = index
        self.subs = subs
        self.last_seq: int | None = None
        self.auth_delay = owner.auth_retry_s

    async def on_open(self, ws: Any) -> None:
        self.last_seq = None
        self.owner.auth_sent += 1
        await ws.send(self.owner.auth_frame())

    def on_frame(self, text: str, recv_ts: float) -> bool:
        try:
            msgs = decode_frame(text)
        except ParseError as e:
            self.metrics.inc("frames_rejected", stream=STREAM, reason=e.reason)
            return False
        data = False
        for m in msgs:
            data = self._message(m, recv_ts) or data
        return data

    def _message(self, m: dict[str, Any], recv_ts: float) -> bool:
        op = m.get("op")
        if op is not None:
            self._op(str(op), m)
            return False
        channel = m.get("channel")
        series = CHANNELS.get(str(channel))
        seq = m.get("seq")
        if series is None:
            self.metrics.inc("unknown_event_types", stream=STREAM, type=str(channel)[:40])
            if isinstance(seq, int) and not isinstance(seq, bool):
                self._seq(seq)  # a numbered frame we cannot read still holds its place
            return False
        self._seq(seq)
        dropped = m.get("dropped")
        if isinstance(dropped, int) and not isinstance(dropped, bool) and dropped > 0:
            self.metrics.inc("server_dropped", dropped, stream=STREAM)
        return self.owner.apply(series, m, recv_ts)

    def _op(self, op: str, m: dict[str, Any]) -> None:
        if op == "ping":
            asyncio.ensure_future(self.send({"op": "pong", "ts": m.get("ts")}))
            self.metrics.inc("pings_answered", stream=STREAM)
        elif op == "authed":
            self.auth_delay = self.owner.auth_retry_s
            self.owner.authed(self)
            asyncio.ensure_future(self.send({"op": "subscribe", "rid": f"s{self.index}",
                                             "subscriptions": self.subs}))
        elif op == "error":
            self.metrics.inc("relay_errors", stream=STREAM)
            log.warning("polybolt: server error: %s", str(m.get("message"))[:200])
        elif op not in ("subscribed", "pong"):
            self.metrics.inc("unknown_event_types", stream=STREAM, type=f"op:{op}"[:40])

    def _seq(self, seq: Any) -> None:
        if isinstance(seq, bool) or not isinstance(seq, int):
            self.metrics.inc("seq_missing", stream=STREAM)
            return
        last, self.last_seq = self.last_seq, seq
        if last is None:
            return
        if seq > last + 1:
            self.metrics.inc("seq_gaps", stream=STREAM)
            self.metrics.inc("seq_missed", seq - last - 1, stream=STREAM)
        elif seq <= last:
            self.metrics.inc("seq_repeats", stream=STREAM)

    def on_close_code(self, code: int, reason: str) -> float | None:
        why = CLOSE_REASONS.get(code)
        if why is None:
            return None
        self.metrics.inc("polybolt_closes", stream=STREAM, code=str(code))
        if code == 4001:
            wait, self.auth_delay = self.auth_delay, min(AUTH_RETRY_MAX_S, 2 * self.auth_delay)
            self.owner.refused(wait)
            return wait
        if code == 4008:
            log.error("polybolt: closed by policy (4008 %s): reconnecting with backoff", reason)
            return None
        log.warning("polybolt: server closed %d (%s: %s): reconnecting now", code, why, reason)
        return self.backoff_base  # 4002 slow, 4003 drain: at once (the backoff's floor)


class PolyBolt(PriceSource):
    """The PolyBolt price source: TWAP (settlement) and Pyth spot, over as many connections as
    ``MAX_SUBSCRIPTIONS`` requires."""

    name = STREAM
    spot_name = "pyth"

    def __init__(self, url: str, symbols: tuple[str, ...], metrics: Metrics,
                 credentials: Credentials, stall_after: float = 30.0, backoff_max: float = 30.0,
                 retention_s: float = 3600.0, on_raw: RawHook | None = None,
                 boundary_s: float | None = None, auth_retry_s: float = 300.0,
                 required: bool = True) -> None:
        self.url = url
        self.required = required  # the only source (a refusal is an error) or one of two
        self.metrics = metrics
        self._credentials = credentials
        self.auth_retry_s = auth_retry_s
        self.prices = PriceBook(symbols, metrics, retention_s, stream=STREAM,
                                boundary_s=boundary_s)
        self.by_wire = {wire_symbol(s): s.upper() for s in symbols}
        subs = subscriptions(symbols)
        chunks = [subs[i:i + MAX_SUBSCRIPTIONS] for i in range(0, len(subs), MAX_SUBSCRIPTIONS)]
        self.conns = [PolyBoltConn(self, i, c, ping_interval=3600.0, stall_after=stall_after,
                                   backoff_max=backoff_max, on_raw=on_raw)
                      for i, c in enumerate(chunks)]
        self.auth_ok: bool | None = None  # None: no answer yet; False: 4001 (refused)
        self.auth_sent = 0
        self._first_auth: asyncio.Future[bool] | None = None

    # ---- auth -----------------------------------------------------------------------------
    def auth_frame(self) -> str:
        import json

        return json.dumps({"op": "auth", "rid": "a1", "auth": self._credentials.auth()})

    def authed(self, conn: PolyBoltConn) -> None:
        if self.auth_ok is False:
            log.info("polybolt: credentials accepted again")
        self.auth_ok = True
        self._settle_first(True)

    def refused(self, wait: float) -> None:
        first = self.auth_ok is not False
        self.auth_ok = False
        self._settle_first(False)
        if first:
            log.log(logging.ERROR if self.required else logging.WARNING,
                    "polybolt: credentials refused (4001 auth, from %s): not reconnecting for "
                    "%.0f s%s", self._credentials.origin, wait,
                    "" if self.required else "; continuing on the relay")

    def _settle_first(self, ok: bool) -> None:
        f = self._first_auth
        if f is not None and not f.done():
            f.set_result(ok)

    async def first_auth(self, timeout: float) -> bool | None:
        """The first answer to ``op: auth`` (True authed, False 4001), None if none came in
        ``timeout`` seconds (unreachable: the feeds keep trying)."""
        if self.auth_ok is not None:
            return self.auth_ok
        if self._first_auth is None:
            self._first_auth = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(self._first_auth), timeout)
        except TimeoutError:
            return None

    # ---- data -----------------------------------------------------------------------------
    def apply(self, series: str, m: dict[str, Any], recv_ts: float) -> bool:
        payload = m.get("payload")
        if not isinstance(payload, dict):
            self.metrics.inc("frames_rejected", stream=STREAM, reason="no_payload")
            return False
        ts = m.get("ts")
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            self.prices.last_offset = recv_ts - ts / 1000.0
        symbol = self.by_wire.get(str(payload.get("symbol", "")).lower())
        if symbol is None:
            self.metrics.inc("frames_rejected", stream=STREAM, reason="unknown_symbol")
            return False
        points = payload.get("data") if m.get("snapshot") else [payload]
        try:
            if not isinstance(points, list):
                raise ParseError("bad_payload", "data")
            kept = not points
            for p in points:
                ts_ms, value = _point(p)
                kept = self.prices.add_point(symbol, series, ts_ms, value, recv_ts) or kept
        except ParseError as e:
            self.metrics.inc("frames_rejected", stream=STREAM, reason=e.reason)
            return False
        self.metrics.inc("events", stream=STREAM, type=series)
        return kept

    def latest(self, symbol: str, series: str) -> Observation | None:
        return self.prices.latest(symbol, series)

    def at(self, symbol: str, series: str, ts_s: float) -> Observation | None:
        return self.prices.at(symbol, series, ts_s)

    # ---- life cycle and state (the health endpoint reads these) -----------------------------
    def start(self) -> list[asyncio.Task]:
        return [c.start() for c in self.conns]

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.conns))

    @property
    def connected(self) -> bool:
        return all(c.connected for c in self.conns)

    @property
    def reconnects(self) -> int:
        return sum(c.reconnects for c in self.conns)

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.conns)

    @property
    def last_message_at(self) -> float | None:
        return _oldest(c.last_message_at for c in self.conns)

    @property
    def last_data_at(self) -> float | None:
        return _oldest(c.last_data_at for c in self.conns)

    def streams(self) -> dict[str, Any]:
        return {STREAM: self}

    def carries(self, series: str) -> bool:
        return series == TWAP60  # its spot is Pyth's: no market settles on it

    def health(self) -> tuple[list[str], list[str]]:
        if self.auth_ok is False:
            return ["polybolt: credentials refused (4001 auth)"], []
        return [], []


def _oldest(xs: Any) -> float | None:
    xs = list(xs)
    return None if any(x is None for x in xs) or not xs else min(xs)


def _point(p: Any) -> tuple[int, float]:
    """One PolyBolt point: ``value`` (a float), else ``full_accuracy_value`` (a decimal string)."""
    if not isinstance(p, dict):
        raise ParseError("bad_payload", "point")
    ts, v = p.get("timestamp"), p.get("value")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not 0 < ts < MAX_STAMP_MS:
        raise ParseError("bad_payload", "timestamp")
    if v is None and isinstance(p.get("full_accuracy_value"), str):
        try:
            v = float(p["full_accuracy_value"])
        except ValueError as e:
            raise ParseError("bad_payload", "full_accuracy_value") from e
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ParseError("bad_payload", "value")
    try:
        return int(ts), float(v)
    except OverflowError:
        return int(ts), math.inf
