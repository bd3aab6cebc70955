"""Every fault is reachable through POST /_sim/faults and is actually emitted on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
import pytest

from slotml.sim import SimConfig, running_sim
from slotml.sim.faults import KINDS


async def _inject(s: aiohttp.ClientSession, sim, **body) -> dict:
    r = await s.post(f"{sim.control_url}/faults", json=body)
    assert r.status == 200, await r.text()
    return await r.json()


async def _market_ws(s: aiohttp.ClientSession, sim, custom: bool = True):
    m = sim.current_market("BTC", ahead=1)
    ws = await s.ws_connect(sim.ws_market_url)
    await ws.send_str(json.dumps({"type": "market", "assets_ids": [m.up_token, m.down_token],
                                  "custom_feature_enabled": custom}))
    first = await ws.receive(timeout=5)
    assert isinstance(json.loads(first.data), list)
    return m, ws


async def _rtds_ws(s: aiohttp.ClientSession, sim, topics=("crypto_prices_chainlink",)):
    ws = await s.ws_connect(sim.rtds_url)
    await ws.send_str(json.dumps({"action": "subscribe",
                                  "subscriptions": [{"topic": t, "type": "update"} for t in topics]}))
    return ws


PB_AUTH = {"apiKey": "sim-pb-key", "secret": "sim-pb-secret", "passphrase": "sim-pb-passphrase"}


async def _pb_ws(s: aiohttp.ClientSession, sim, symbol: str = "btcusd"):
    """A PolyBolt socket, authed and subscribed to one asset's TWAP and spot."""
    ws = await s.ws_connect(sim.polybolt_url)
    await ws.send_json({"op": "auth", "rid": "a", "auth": PB_AUTH})
    await ws.send_json({"op": "subscribe", "rid": "s", "subscriptions": [
        {"channel": "price.crypto.twap", "filter": {"symbol": symbol, "window_seconds": 60}},
        {"channel": "price.crypto", "filter": {"symbol": symbol}}]})
    return ws


async def _ws(s: aiohttp.ClientSession, sim, target: str):
    if target == "market":
        return (await _market_ws(s, sim))[1]
    return await (_pb_ws(s, sim) if target == "polybolt" else _rtds_ws(s, sim))


async def _until(ws, pred, timeout: float = 6.0):
    """Receive until pred(msg) is truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("expected frame never came")
        msg = await ws.receive(timeout=left)
        v = pred(msg)
        if v:
            return v
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise AssertionError(f"socket closed: {msg}")


def _json(msg):
    if msg.type != aiohttp.WSMsgType.TEXT or msg.data in ("PONG", "pong"):
        return None
    try:
        return json.loads(msg.data)
    except json.JSONDecodeError:
        return None


def test_every_kind_has_a_test() -> None:
    here = open(__file__).read()
    for kind in KINDS:
        assert f'"{kind}"' in here[here.index("async def test_unknown_kind_is_400"):], kind


async def test_unknown_kind_is_400() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        r = await s.post(f"{sim.control_url}/faults", json={"kind": "meteor"})
        assert r.status == 400 and "unknown fault kind" in (await r.json())["error"]


@pytest.mark.parametrize("target", ["market", "rtds"])
async def test_ws_drop(target: str) -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        ws = (await _market_ws(s, sim))[1] if target == "market" else await _rtds_ws(s, sim)
        await _inject(s, sim, kind="ws_drop", target=target)
        msg = await _until(ws, lambda m: m if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                          aiohttp.WSMsgType.ERROR) else None)
        assert msg.type != aiohttp.WSMsgType.CLOSE or msg.data != 1000  # not a clean close
        assert sim.emitted()["ws_drop"] == 1


async def test_ws_silent_still_answers_ping() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        ws = await _rtds_ws(s, sim)
        await _until(ws, lambda m: (_json(m) or {}).get("type") == "update")
        # silent 3 s from the sim's side, looked at for 2 s from when the injection's reply
        # came back: 1 s for that reply's latency on a loaded box (with 2.5 s, and receives of
        # 0.3 s running past the 2 s, that slack was 0.2 s)
        await _inject(s, sim, kind="ws_silent", target="rtds", duration_s=3.0)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:  # drain what was already on the wire
            with contextlib.suppress(asyncio.TimeoutError):
                await ws.receive(timeout=0.1)
        await ws.send_str("PING")
        data_during = 0
        pong = False
        while (left := t0 + 2.0 - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=min(0.3, left))
            except TimeoutError:
                continue
            if msg.data == "PONG":
                pong = True
            elif _json(msg) is not None:
                data_during += 1
        assert pong and data_during == 0
        await _until(ws, lambda m: (_json(m) or {}).get("type") == "update", timeout=5)
        assert sim.emitted()["ws_silent"] > 0


@pytest.mark.parametrize("kind", ["malformed", "truncated", "unknown_event"])
@pytest.mark.parametrize("target", ["market", "rtds", "polybolt"])
async def test_bad_frames(kind: str, target: str) -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        ws = await _ws(s, sim, target)
        if target == "polybolt":  # authed and subscribed before the fault
            await _until(ws, lambda m: (_json(m) or {}).get("snapshot"))
        await _inject(s, sim, kind=kind, target=target, count=2)
        seen = []

        def bad(msg):
            if msg.type != aiohttp.WSMsgType.TEXT or msg.data in ("PONG", "pong"):
                return None
            try:
                v = json.loads(msg.data)
            except json.JSONDecodeError:
                seen.append(msg.data)
                return kind in ("malformed", "truncated") and len(seen) == 2
            if kind == "unknown_event":
                evs = v if isinstance(v, list) else [v]
                for e in evs:
                    if e.get("event_type") == "sim_unknown_event" or e.get("type") == "sim_unknown_type" \
                            or e.get("channel") == "price.crypto.sim_unknown":
                        seen.append(e)
                return len(seen) == 2
            return None

        assert await _until(ws, bad)
        if kind == "truncated":
            assert all(x.startswith("{") for x in seen)
            if target == "polybolt":  # PolyBolt's shape: a data frame cut in half
                assert all(x.startswith('{"v":1,"channel":"price.crypto.twap"') for x in seen)
        if target == "polybolt" and kind == "unknown_event":  # numbered in the socket's stream
            assert all(e["v"] == 1 and isinstance(e["seq"], int) for e in seen)
            assert seen[1]["seq"] == seen[0]["seq"] + 1
        assert sim.emitted()[kind] == 2


async def test_extra_fields_ws_and_http() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        m, ws = await _market_ws(s, sim)
        await _inject(s, sim, kind="extra_fields", target="all", duration_s=3)
        v = await _until(ws, lambda msg: _json(msg))
        evs = v if isinstance(v, list) else [v]
        assert all("sim_extra_field" in e for e in evs)
        r = await s.get(f"{sim.gamma_url}/events/slug/{m.slug}")
        assert "sim_extra_field" in await r.json()
        assert sim.emitted()["extra_fields"] >= 2


@pytest.mark.parametrize("status", [500, 425, 429])
async def test_http_status(status: int) -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        m = sim.current_market("ETH")
        await _inject(s, sim, kind="http_status", status=status, count=2, prefix="/gamma", retry_after=3)
        for _ in range(2):
            r = await s.get(f"{sim.gamma_url}/events/slug/{m.slug}")
            assert r.status == status
            if status == 429:
                assert r.headers["Retry-After"] == "3"
        r = await s.get(f"{sim.gamma_url}/events/slug/{m.slug}")
        assert r.status == 200
        assert sim.emitted()["http_status"] == 2


async def test_slow_response_times_out_client() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        m = sim.current_market("ETH")
        await _inject(s, sim, kind="slow", delay_s=1.0, count=1, prefix="/clob")
        with pytest.raises(asyncio.TimeoutError):
            await s.get(f"{sim.clob_url}/book", params={"token_id": m.up_token},
                        timeout=aiohttp.ClientTimeout(total=0.3))
        assert sim.emitted()["slow"] == 1


async def test_rtds_duplicate_and_out_of_order() -> None:
    async with running_sim(SimConfig(family="10s", symbols=("BTC",))) as sim, aiohttp.ClientSession() as s:
        ws = await _rtds_ws(s, sim)
        await _until(ws, lambda m: (_json(m) or {}).get("type") == "update")
        await _inject(s, sim, kind="duplicate", count=1)
        await _inject(s, sim, kind="out_of_order", count=1)
        stamps: list[int] = []
        raw: list[str] = []

        def collect(msg):
            v = _json(msg)
            if v and v.get("type") == "update":
                stamps.append(v["payload"]["timestamp"])
                raw.append(msg.data)
            return len(stamps) >= 4

        await _until(ws, collect, timeout=10)
        assert len(set(raw)) < len(raw)  # a frame sent twice
        assert any(b < a for a, b in zip(stamps, stamps[1:], strict=False))  # a later stamp first
        assert sim.emitted()["duplicate"] == 1 and sim.emitted()["out_of_order"] == 1


async def test_polybolt_duplicate_and_out_of_order() -> None:
    """As the relay's: a frame sent twice (the same seq: a redelivery), a second's
    observations after the next second's (seq in sending order: no gap, only the stamps)."""
    async with running_sim(SimConfig(family="10s", symbols=("BTC",))) as sim, \
            aiohttp.ClientSession() as s:
        ws = await _pb_ws(s, sim)
        await _until(ws, lambda m: (v := _json(m)) and "channel" in v and not v.get("snapshot"))
        await _inject(s, sim, kind="duplicate", target="polybolt", count=1)
        await _inject(s, sim, kind="out_of_order", target="polybolt", count=1)
        frames: list[dict] = []
        raw: list[str] = []

        def collect(msg):
            v = _json(msg)
            if v and "channel" in v and not v.get("snapshot"):
                frames.append(v)
                raw.append(msg.data)
            return len(frames) >= 10

        await _until(ws, collect, timeout=10)
        assert len(set(raw)) < len(raw)  # a frame sent twice, seq and all
        stamps = [f["payload"]["timestamp"] for f in frames if f["channel"] == "price.crypto.twap"]
        assert any(b < a for a, b in zip(stamps, stamps[1:], strict=False))  # a later stamp first
        seqs = [f["seq"] for f in frames]
        steps = {b - a for a, b in zip(seqs, seqs[1:], strict=False)}
        assert steps == {0, 1}, seqs  # repeats (the duplicates) but neither a hole nor a step back
        path = sim.world.path("BTC")
        assert all(f["payload"]["value"] == path.twap_at(f["payload"]["timestamp"] // 1000)
                   for f in frames if f["channel"] == "price.crypto.twap")  # under its own stamp
        assert sim.emitted()["duplicate"] == 1 and sim.emitted()["out_of_order"] == 1


async def test_crossed_book_on_ws_and_rest() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        m, ws = await _market_ws(s, sim)
        await _inject(s, sim, kind="crossed_book", duration_s=3)

        def crossed(msg):
            v = _json(msg)
            if not v or isinstance(v, list) or v.get("event_type") != "price_change":
                return None
            for e in v["price_changes"]:
                if e["asset_id"] == m.up_token and float(e["best_bid"]) >= float(e["best_ask"]):
                    return True
            return None

        assert await _until(ws, crossed)
        r = await s.get(f"{sim.clob_url}/book", params={"token_id": m.up_token})
        b = await r.json()
        assert max(float(x["price"]) for x in b["bids"]) >= min(float(x["price"]) for x in b["asks"])
        assert sim.emitted()["crossed_book"] >= 1


async def test_ghost_book_rest() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        m = sim.current_market("SOL")
        await _inject(s, sim, kind="ghost_book", count=1)
        b = await (await s.get(f"{sim.clob_url}/book", params={"token_id": m.up_token})).json()
        assert [x["price"] for x in b["bids"]] == ["0.01"] and [x["price"] for x in b["asks"]] == ["0.99"]
        b = await (await s.get(f"{sim.clob_url}/book", params={"token_id": m.up_token})).json()
        ghost = ([x["price"] for x in b["bids"]], [x["price"] for x in b["asks"]]) == (["0.01"], ["0.99"])
        assert not ghost  # back to normal (a real book is never 0.01/0.99: spreads are 1-5 cents)
        assert sim.emitted()["ghost_book"] == 1


async def test_resolve_close_and_tick_size_change() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        m, ws = await _market_ws(s, sim)
        await _inject(s, sim, kind="tick_size_change")
        ev = await _until(ws, lambda msg: (lambda v: v if isinstance(v, dict) and
                                           v.get("event_type") == "tick_size_change" else None)(_json(msg)))
        assert ev["new_tick_size"] == "0.001" and ev["asset_id"] in m.tokens
        await _inject(s, sim, kind="resolve_close")
        msg = await _until(ws, lambda x: x if x.type == aiohttp.WSMsgType.CLOSE else None)
        assert msg.data == 1000 and msg.extra == "all subscribed assets resolved"
        st = await (await s.get(f"{sim.control_url}/stats")).json()
        assert st["faults_emitted"]["resolve_close"] == 1 and st["faults_emitted"]["tick_size_change"] == 2


async def test_service_down_kills_the_relay_for_its_duration() -> None:
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        ws = await _rtds_ws(s, sim)
        # down 2 s, not 1: the refusal below comes after the injection's reply, the close and a
        # new handshake, on one event loop with the sim (a loaded box can take most of a second)
        await _inject(s, sim, kind="service_down", target="rtds", duration_s=2.0)
        msg = await _until(ws, lambda m: m if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                          aiohttp.WSMsgType.ERROR) else None)
        assert msg.type != aiohttp.WSMsgType.CLOSE or msg.data != 1000
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(sim.rtds_url)  # refused while it lasts
        market = await s.ws_connect(sim.ws_market_url)  # other services live on
        await market.close()
        deadline = time.monotonic() + 5
        while True:  # back after duration_s
            try:
                ws = await s.ws_connect(sim.rtds_url)
                break
            except aiohttp.WSServerHandshakeError:
                assert time.monotonic() < deadline, "relay never came back"
                await asyncio.sleep(0.1)
        await ws.close()
        assert sim.emitted()["service_down"] == 1


async def test_polybolt_faults_are_counted() -> None:
    """``pb_close`` and ``pb_revoke`` on the wire: tests/sim/test_polybolt.py; here, counting."""
    auth = {"apiKey": "sim-pb-key", "secret": "sim-pb-secret", "passphrase": "sim-pb-passphrase"}
    async with running_sim(SimConfig(family="10s")) as sim, aiohttp.ClientSession() as s:
        for kind in ("pb_close", "pb_revoke"):
            ws = await s.ws_connect(sim.polybolt_url)
            await ws.send_json({"op": "auth", "rid": "a", "auth": auth})
            await ws.receive(timeout=5)
            await _inject(s, sim, kind=kind, code=4003, duration_s=0.5)
            msg = await _until(ws, lambda m: m if m.type == aiohttp.WSMsgType.CLOSE else None)
            assert msg.data == (4003 if kind == "pb_close" else 4001)
            assert sim.emitted()[kind] == 1
