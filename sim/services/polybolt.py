"""PolyBolt, the relay's authenticated successor (``/polybolt``), as protocol.md §4.2 specifies.

``op: auth`` with the L2 key, secret and passphrase the sim is configured with (anything else:
close 4001), then ``op: subscribe`` to ``price.crypto.twap`` (Chainlink 60 s TWAP: the very
series the relay publishes) and ``price.crypto`` (Pyth spot: Chainlink's spot ``PYTH_LAG_S``
seconds earlier times ``1 + PYTH_BASIS``, so a collector that mixes it with Chainlink spot gets
rows that differ visibly). Each subscription is answered with a ``snapshot`` frame (the last
``SNAPSHOT_POINTS`` seconds); every data frame carries the connection's ``seq``. The server
pings (``{"op": "ping"}``) every ``polybolt_ping_s`` and closes 4008 when the previous ping went
unanswered. More than ``MAX_SUBSCRIPTIONS`` on one connection: 4008. Faults, as the relay's:
the shared socket ones (``ws_drop``, ``ws_silent``, ``service_down``, ``extra_fields``), the bad
frames (``malformed``, ``truncated``, ``unknown_event`` in PolyBolt's shape:
``sim.faults.bad_frame``), ``duplicate`` (a data frame sent twice, the same ``seq``: a
redelivery) and ``out_of_order`` (one second's observations delivered after the next second's;
``seq`` numbers frames in the order they are sent, so the stream has no gap, only the stamps
are out of order), all with target ``polybolt`` (or ``all``); and its own ``pb_close`` (close
every socket with a given code: 4002 slow, 4003 drain, 4008 policy) and ``pb_revoke`` (the
credentials stop working: authed sockets closed 4001, new auths refused).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from slotml.sim.faults import Faults
from slotml.sim.prices import AssetPath
from slotml.sim.services.connections import Client, Connections, sleep_until
from slotml.sim.world import World

log = logging.getLogger(__name__)

TWAP_CHANNEL = "price.crypto.twap"
SPOT_CHANNEL = "price.crypto"
CHANNELS = (TWAP_CHANNEL, SPOT_CHANNEL)
MAX_SUBSCRIPTIONS = 64
SNAPSHOT_POINTS = 120  # "2 min" of 1 Hz points
PYTH_LAG_S = 2  # Pyth's spot is Chainlink's of two seconds before ...
PYTH_BASIS = 0.0003  # ... times 1 + 3 bp (a different venue mix)


def pyth_at(path: AssetPath, s: int) -> float:
    """The sim's Pyth spot observation stamped at second ``s``."""
    return path.spot_at(s - PYTH_LAG_S) * (1.0 + PYTH_BASIS)


def wire_symbol(symbol: str) -> str:
    return f"{symbol.lower()}usd"


@dataclass
class PbState:
    """One socket's protocol state."""

    authed: bool = False
    subs: list[tuple[str, str]] = field(default_factory=list)  # (channel, SYMBOL)
    seq: int = 0
    ping_pending: bool = False

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class PolyBolt:
    def __init__(self, world: World, faults: Faults, conns: Connections, stats: Counter) -> None:
        self.world = world
        self.config = world.config
        self.faults = faults
        self.conns = conns
        self.stats = stats
        self.state: dict[Client, PbState] = {}
        self.by_wire = {wire_symbol(s): s for s in world.symbols}
        # out-of-order fault: (socket, its state, frame, send it twice) for the next second
        self._held: list[tuple[Client, PbState, dict[str, Any], bool]] = []

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/polybolt", self.ws_polybolt)]

    async def ws_polybolt(self, request: web.Request) -> web.WebSocketResponse:
        return await self.conns.serve(request, "polybolt", self._msg, self._invalid)

    # ---- what a client says -------------------------------------------------------------------
    def _invalid(self, c: Client, rid: Any = None, why: str = "invalid request") -> None:
        c.send({"op": "error", "rid": rid, "message": why}, control=True)

    def _credentials_ok(self, auth: Any) -> bool:
        if self.faults.find("pb_revoke", "polybolt") or not isinstance(auth, dict):
            return False
        cfg = self.config
        return (auth.get("apiKey") == cfg.polybolt_key and auth.get("secret") == cfg.polybolt_secret
                and auth.get("passphrase") == cfg.polybolt_passphrase)

    def _msg(self, c: Client, obj: Any) -> None:
        st = self.state.setdefault(c, PbState())
        if not isinstance(obj, dict):
            self._invalid(c)
            return
        op, rid = obj.get("op"), obj.get("rid")
        if op == "pong":
            st.ping_pending = False
        elif op == "auth":
            if self._credentials_ok(obj.get("auth")):
                st.authed = True
                c.send({"op": "authed", "rid": rid}, control=True)
            else:
                self.stats["polybolt_auth_failures"] += 1
                c.closing = True
                c.queue.put_nowait(("close:4001", "auth failed"))
        elif op == "subscribe":
            if not st.authed:
                c.closing = True
                c.queue.put_nowait(("close:4001", "not authenticated"))
                return
            self._subscribe(c, st, obj.get("subscriptions"), rid)
        else:
            self._invalid(c, rid, f"unknown op {str(op)[:40]!r}")

    def _subscribe(self, c: Client, st: PbState, subs: Any, rid: Any) -> None:
        if not isinstance(subs, list):
            self._invalid(c, rid, "subscriptions must be a list")
            return
        new: list[tuple[str, str]] = []
        for sub in subs:
            ch = sub.get("channel") if isinstance(sub, dict) else None
            flt = sub.get("filter") if isinstance(sub, dict) else None
            sym = self.by_wire.get(str((flt or {}).get("symbol", "")).lower()) \
                if isinstance(flt, dict) else None
            if ch not in CHANNELS or sym is None or (
                    ch == TWAP_CHANNEL and flt.get("window_seconds", 60) != 60):
                self._invalid(c, rid, f"unknown subscription {str(sub)[:80]}")
                continue
            if (ch, sym) not in st.subs and (ch, sym) not in new:
                new.append((ch, sym))
        if len(st.subs) + len(new) > MAX_SUBSCRIPTIONS:
            self.stats["polybolt_policy_closes"] += 1
            c.closing = True
            c.queue.put_nowait(("close:4008", f"subscription limit {MAX_SUBSCRIPTIONS}"))
            return
        st.subs.extend(new)
        c.send({"op": "subscribed", "rid": rid, "count": len(st.subs)}, control=True)
        last = self._last_published(time.time())
        for ch, sym in new:
            data = [self._point(ch, sym, s) for s in range(last - SNAPSHOT_POINTS + 1, last + 1)]
            payload: dict[str, Any] = {"symbol": wire_symbol(sym), "data": data}
            if ch == TWAP_CHANNEL:
                payload["window_seconds"] = 60
            c.send({"v": 1, "channel": ch, "seq": st.next_seq(), "ts": int(time.time() * 1000),
                    "snapshot": True, "payload": payload})
            self.stats["polybolt_snapshot_frames"] += 1

    # ---- what the server publishes ------------------------------------------------------------
    def _value(self, ch: str, sym: str, s: int) -> float:
        path = self.world.path(sym)
        return path.twap_at(s) if ch == TWAP_CHANNEL else pyth_at(path, s)

    def _point(self, ch: str, sym: str, s: int) -> dict[str, Any]:
        v = self._value(ch, sym, s)
        return {"timestamp": s * 1000, "value": v, "full_accuracy_value": repr(v)}

    def delay(self, s: int) -> float:
        """Seconds after its stamp s that PolyBolt publishes an observation (0.8 +- 0.2 s)."""
        u = ((s * 2246822519 + self.config.seed * 3266489917) % 1000003) / 1000003.0
        return self.config.polybolt_delay_s + (u - 0.5) * 0.4

    def _last_published(self, now: float) -> int:
        s = int(now - self.config.polybolt_delay_s - 0.2) - 1
        while s + 1 + self.delay(s + 1) <= now:
            s += 1
        return s

    def _clients(self) -> list[tuple[Client, PbState]]:
        live = {c for c in self.conns.clients if c.kind == "polybolt"}
        for c in [c for c in self.state if c not in live]:
            del self.state[c]
        return [(c, st) for c, st in self.state.items() if st.authed and not c.closing]

    async def run(self) -> None:
        """Publish each observation once its delay has passed; ping every ``polybolt_ping_s``."""
        s = self._last_published(time.time()) + 1
        next_ping = time.time() + self.config.polybolt_ping_s
        while True:
            await sleep_until(min(s + self.delay(s), next_ping))
            now = time.time()
            try:
                if now >= next_ping:
                    next_ping = now + self.config.polybolt_ping_s
                    self._ping(now)
                if now >= s + self.delay(s):
                    if now - s > 10:
                        s = self._last_published(now)
                    self._publish(s, now)
                    s += 1
            except Exception:  # noqa: BLE001
                log.exception("polybolt loop")

    def _ping(self, now: float) -> None:
        for c, st in self._clients():
            if st.ping_pending:
                self.stats["polybolt_ping_timeouts"] += 1
                c.closing = True
                c.queue.put_nowait(("close:4008", "ping not answered"))
                continue
            st.ping_pending = True
            c.send({"op": "ping", "ts": int(now * 1000)}, control=True)

    def _publish(self, s: int, now: float) -> None:
        clients = self._clients()
        held, self._held = self._held, []
        if not clients and not held:
            return
        dup = self.faults.find("duplicate", "polybolt")
        ooo = self.faults.find("out_of_order", "polybolt")
        cache: dict[tuple[str, str], dict] = {}
        ts = int(now * 1000)
        n = 0
        for c, st in clients:
            for ch, sym in st.subs:
                key = (ch, sym)
                if key not in cache:
                    cache[key] = self._point(ch, sym, s)
                payload = {**cache[key], "symbol": wire_symbol(sym)}
                if ch == TWAP_CHANNEL:
                    payload["window_seconds"] = 60
                frame = {"v": 1, "channel": ch, "seq": 0, "ts": ts, "payload": payload}
                if ooo:
                    self._held.append((c, st, frame, bool(dup)))
                else:
                    self._send(c, st, frame, bool(dup))
                n += 1
        for c, st, frame, twice in held:  # the previous second's frames, after this second's
            self._send(c, st, frame, twice)
        self.stats["polybolt_updates"] += n
        if dup and clients:
            self.faults.use(dup)
        if ooo and clients:
            self.faults.use(ooo)

    def _send(self, c: Client, st: PbState, frame: dict[str, Any], twice: bool) -> None:
        """One data frame, numbered as it is sent (``twice``: the same text again, seq and all)."""
        frame["seq"] = st.next_seq()
        text = json.dumps(frame, separators=(",", ":"))
        c.send(text)
        if twice:
            c.send(text)

    # ---- one-shot faults (control.inject) -----------------------------------------------------
    def next_seq(self, c: Client) -> int:
        """The next ``seq`` of socket ``c`` (an injected data frame takes its place in it)."""
        return self.state.setdefault(c, PbState()).next_seq()

    def close_all(self, code: int, reason: str) -> int:
        """Close every PolyBolt socket with ``code`` (``pb_close``, ``pb_revoke``)."""
        hit = [c for c in self.conns.clients if c.kind == "polybolt" and not c.closing]
        for c in hit:
            c.closing = True
            c.queue.put_nowait((f"close:{code}", reason))
        return len(hit)
