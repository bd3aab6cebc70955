"""The sim's PolyBolt service over a real socket: auth, snapshots, seq, pings, close codes, faults."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from slotml.sim.config import SimConfig
from slotml.sim.runner import running_sim
from slotml.sim.services.polybolt import MAX_SUBSCRIPTIONS, PYTH_BASIS, PYTH_LAG_S

AUTH = {"apiKey": "sim-pb-key", "secret": "sim-pb-secret", "passphrase": "sim-pb-passphrase"}


def subs(*syms: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in syms:
        out.append({"channel": "price.crypto.twap", "filter": {"symbol": s, "window_seconds": 60}})
        out.append({"channel": "price.crypto", "filter": {"symbol": s}})
    return out


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    msg = await ws.receive(timeout=timeout)
    if msg.type != aiohttp.WSMsgType.TEXT:
        return msg
    return json.loads(msg.data)


async def test_auth_snapshot_seq_and_values_match_the_world() -> None:
    async with running_sim(SimConfig(family="10s", seed=3, symbols=("BTC", "ETH"))) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.polybolt_url)
            await ws.send_json({"op": "auth", "rid": "a1", "auth": AUTH})
            assert await recv(ws) == {"op": "authed", "rid": "a1"}
            await ws.send_json({"op": "subscribe", "rid": "2", "subscriptions": subs("btcusd")})
            frames = []
            while len([f for f in frames if not f.get("snapshot")]) < 6:
                f = await recv(ws)
                if "channel" in f:
                    frames.append(f)
            await ws.close()
    snaps = [f for f in frames if f.get("snapshot")]
    assert {f["channel"] for f in snaps} == {"price.crypto.twap", "price.crypto"}
    assert all(len(f["payload"]["data"]) == 120 for f in snaps)
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))  # no gap
    path = sim.world.path("BTC")
    for f in frames:
        points = f["payload"]["data"] if f.get("snapshot") else [f["payload"]]
        for p in points:
            sec = p["timestamp"] // 1000
            if f["channel"] == "price.crypto.twap":
                assert p["value"] == path.twap_at(sec)  # the relay's series, bit for bit
            else:  # Pyth: its own lag and basis against Chainlink spot
                assert p["value"] == path.spot_at(sec - PYTH_LAG_S) * (1 + PYTH_BASIS)
                assert p["value"] != path.spot_at(sec)
            assert float(p["full_accuracy_value"]) == p["value"]


async def test_wrong_secret_and_unauthenticated_subscribe_close_4001() -> None:
    async with running_sim(SimConfig(family="10s")) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.polybolt_url)
            await ws.send_json({"op": "auth", "rid": "a", "auth": {**AUTH, "secret": "nope"}})
            msg = await recv(ws)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001
            ws = await s.ws_connect(sim.polybolt_url)
            await ws.send_json({"op": "subscribe", "rid": "b", "subscriptions": subs("btcusd")})
            msg = await recv(ws)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001


async def test_subscription_limit_closes_4008() -> None:
    syms = tuple(f"SYN{i}" for i in range(MAX_SUBSCRIPTIONS // 2 + 1))
    async with running_sim(SimConfig(family="10s", symbols=("BTC",), synthetic_assets=len(syms))) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.polybolt_url)
            await ws.send_json({"op": "auth", "rid": "a", "auth": AUTH})
            await recv(ws)
            wires = [f"{x.lower()}usd" for x in syms]
            await ws.send_json({"op": "subscribe", "rid": "b", "subscriptions": subs(*wires)})
            msg = await recv(ws)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4008


async def test_pings_unanswered_close_4008_answered_keep_open() -> None:
    async with running_sim(SimConfig(family="10s", polybolt_ping_s=0.3)) as sim:
        async with aiohttp.ClientSession() as s:
            quiet = await s.ws_connect(sim.polybolt_url)
            polite = await s.ws_connect(sim.polybolt_url)
            for ws in (quiet, polite):
                await ws.send_json({"op": "auth", "rid": "a", "auth": AUTH})
                await recv(ws)
            pings = 0
            deadline = time.time() + 5
            closed = None
            while time.time() < deadline and (pings < 4 or closed is None):
                f = await recv(polite)
                if f.get("op") == "ping":
                    pings += 1
                    await polite.send_json({"op": "pong", "ts": f["ts"]})
                if closed is None:
                    try:
                        m = await recv(quiet, timeout=0.01)
                        if not isinstance(m, dict):
                            closed = m.data
                    except TimeoutError:
                        pass
            assert pings >= 4 and closed == 4008
            assert not polite.closed


@pytest.mark.parametrize("code", [4002, 4003, 4008])
async def test_pb_close_fault_sends_the_code(code: int) -> None:
    async with running_sim(SimConfig(family="10s")) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.polybolt_url)
            await ws.send_json({"op": "auth", "rid": "a", "auth": AUTH})
            await recv(ws)
            sim.inject("pb_close", code=code)
            while True:
                m = await recv(ws)
                if not isinstance(m, dict):
                    break
            assert m.data == code


async def test_revoke_and_service_down() -> None:
    async with running_sim(SimConfig(family="10s")) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.polybolt_url)
            await ws.send_json({"op": "auth", "rid": "a", "auth": AUTH})
            await recv(ws)
            sim.inject("pb_revoke", duration_s=30)
            while isinstance(m := await recv(ws), dict):
                pass
            assert m.data == 4001
            ws = await s.ws_connect(sim.polybolt_url)  # the right secret, revoked: refused
            await ws.send_json({"op": "auth", "rid": "a", "auth": AUTH})
            assert (await recv(ws)).data == 4001
            sim.clear_faults()
            sim.inject("service_down", target="polybolt", duration_s=30)
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(sim.polybolt_url)
            assert e.value.status == 503
            rtds = await s.ws_connect(sim.rtds_url)  # only the target is down
            await rtds.close()
