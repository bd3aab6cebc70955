"""The sim speaks the venue's protocols: shapes checked against REAL frames (tests/fixtures)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from slotml.sim import SimConfig, running_sim
from tests.util import async_wait_for


def _is_num_str(v) -> bool:
    return isinstance(v, str) and v.replace(".", "", 1).isdigit()


async def _recv_json(ws, timeout: float = 5.0):
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    if msg.data in ("PONG", "pong"):
        return msg.data
    return json.loads(msg.data)


def _book_event(frames: list) -> dict:
    return next(f for f in frames if isinstance(f, list))[0]


async def test_gamma_event_shape() -> None:
    async with running_sim(SimConfig(family="15m", seed=3)) as sim:
        m = sim.current_market("ETH", ahead=2)
        async with aiohttp.ClientSession() as s:
            r = await s.get(f"{sim.gamma_url}/events/slug/{m.slug}")
            assert r.status == 200
            ev = await r.json()
            r = await s.get(f"{sim.gamma_url}/events/slug/eth-updown-15m-{m.start + 900 * 400}")
            assert r.status == 404  # not listed yet (96 windows ahead)
            r = await s.get(f"{sim.gamma_url}/markets/slug/{m.slug}")
            mk_direct = await r.json()
    assert ev["slug"] == m.slug and len(ev["markets"]) == 1
    mk = ev["markets"][0]
    assert mk["conditionId"] == mk_direct["conditionId"]
    # JSON-encoded string fields, decoded by index of outcomes
    assert json.loads(mk["outcomes"]) == ["Up", "Down"]
    ids = json.loads(mk["clobTokenIds"])
    assert ids == [m.up_token, m.down_token] and all(i.isdigit() and len(i) == 77 for i in ids)
    prices = json.loads(mk["outcomePrices"])
    assert all(isinstance(p, str) for p in prices) and abs(sum(map(float, prices)) - 1) < 1e-9
    assert mk["eventStartTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m.start))
    assert mk["endDate"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m.end))
    assert mk["cryptoMarketConfig"] == {"asset": "eth", "duration": "15m", "twapEnabled": True,
                                        "twapLookbackSeconds": 60}
    assert mk["resolutionSource"].endswith("eth-usd-twap-60s-streams")
    assert mk["closed"] is False and "umaResolutionStatus" not in mk
    assert isinstance(mk["bestBid"], float) and isinstance(mk["volume"], str)
    assert mk["question"].startswith("Ethereum Up or Down - ") and mk["question"].endswith(" ET")
    assert "eventMetadata" not in ev  # priceToBeat is published only after the END
    assert ev["series"][0]["id"] == "10191" and ev["series"][0]["slug"] == "eth-up-or-down-15m"


async def test_gamma_series_listing() -> None:
    async with running_sim(SimConfig(family="5s", seed=3)) as sim:
        async with aiohttp.ClientSession() as s:
            sid = sim.world.series_id("BTC")
            r = await s.get(f"{sim.gamma_url}/events", params={"series_id": sid, "closed": "false", "limit": 5})
            open_ = await r.json()
            async def closed_events():
                r = await s.get(f"{sim.gamma_url}/events", params={"series_id": sid, "closed": "true",
                                                                   "limit": 3})
                return await r.json()

            closed = await async_wait_for(closed_events, timeout=12, what="a resolved window")
    assert len(open_) == 5 and all(e["closed"] is False for e in open_)
    starts = [int(e["slug"].rsplit("-", 1)[1]) for e in open_]
    assert starts == sorted(starts) and all(e["slug"].startswith("btc-updown-5s-") for e in open_)
    assert 1 <= len(closed) <= 3 and all(e["closed"] is True for e in closed)


async def test_market_ws_and_rest_shapes(clob_frames: list) -> None:
    real_book = _book_event(clob_frames)
    real_pc = next(f for f in clob_frames if isinstance(f, dict) and f.get("event_type") == "price_change")
    async with running_sim(SimConfig(family="10s", seed=5, book_rate=3)) as sim:
        m = sim.current_market("BTC", ahead=1)
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.ws_market_url)
            await ws.send_str(json.dumps({"type": "market", "assets_ids": [m.up_token, m.down_token],
                                          "custom_feature_enabled": True}))
            first = await _recv_json(ws)
            assert isinstance(first, list) and len(first) == 2  # initial dump: an array of books
            b = first[0]
            assert set(b) == set(real_book)
            for side in ("bids", "asks"):
                assert all(_is_num_str(lv["price"]) and _is_num_str(lv["size"]) for lv in b[side])
            bids = [float(lv["price"]) for lv in b["bids"]]
            asks = [float(lv["price"]) for lv in b["asks"]]
            assert bids == sorted(bids) and asks == sorted(asks, reverse=True)  # worst to best
            assert b["timestamp"].isdigit() and len(b["timestamp"]) == 13
            await ws.send_str("PING")
            seen: dict[str, dict] = {}
            pong = False
            deadline = time.time() + 8
            while time.time() < deadline and not (pong and "price_change" in seen and "best_bid_ask" in seen):
                ev = await _recv_json(ws)
                if ev == "PONG":
                    pong = True
                    continue
                for e in ev if isinstance(ev, list) else [ev]:
                    seen.setdefault(e["event_type"], e)
            assert pong
            pc = seen["price_change"]
            assert set(pc) == set(real_pc)
            assert set(pc["price_changes"][0]) == set(real_pc["price_changes"][0])
            assert pc["price_changes"][0]["side"] in ("BUY", "SELL")
            bba = seen["best_bid_ask"]
            assert set(bba) >= {"event_type", "market", "asset_id", "best_bid", "best_ask", "spread", "timestamp"}
            # REST book: same shape family, strings, worst-to-best
            r = await s.get(f"{sim.clob_url}/book", params={"token_id": m.up_token})
            rb = await r.json()
            assert set(rb) >= {"market", "asset_id", "timestamp", "hash", "bids", "asks", "min_order_size",
                               "tick_size", "neg_risk", "last_trade_price"}
            assert rb["tick_size"] == "0.01" and rb["min_order_size"] == "5"
            r = await s.get(f"{sim.clob_url}/price", params={"token_id": m.up_token, "side": "BUY"})
            best_bid = max(float(lv["price"]) for lv in rb["bids"])
            assert float((await r.json())["price"]) == pytest.approx(best_bid)
            r = await s.get(f"{sim.clob_url}/midpoint", params={"token_id": m.up_token})
            assert _is_num_str((await r.json())["mid"])
            r = await s.post(f"{sim.clob_url}/books", json=[{"token_id": m.up_token}, {"token_id": m.down_token}])
            assert [x["asset_id"] for x in await r.json()] == [m.up_token, m.down_token]
            r = await s.get(f"{sim.clob_url}/markets/{m.condition_id}")
            cm = await r.json()
            assert [t["outcome"] for t in cm["tokens"]] == ["Up", "Down"]
            assert cm["market_slug"] == m.slug and cm["tokens"][0]["winner"] is False
            # operation unsubscribe/subscribe on the same socket
            await ws.send_str(json.dumps({"operation": "unsubscribe", "assets_ids": [m.down_token]}))
            await ws.close()


async def test_rtds_shapes_and_relay_lag(rtds_frames: list) -> None:
    real_up = next(f for f in rtds_frames if f.get("topic") == "crypto_prices_twap_sixty")
    real_cl = next(f for f in rtds_frames if f.get("topic") == "crypto_prices_chainlink")
    real_sub = next(f for f in rtds_frames if f.get("type") == "subscribe" and "twap" in f["topic"])
    real_err = next(f for f in rtds_frames if "statusCode" in f)
    async with running_sim(SimConfig(family="10s", seed=5)) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.rtds_url)
            await ws.send_str(json.dumps({"action": "subscribe", "subscriptions": [
                {"topic": "crypto_prices_chainlink", "type": "*"},
                {"topic": "crypto_prices_twap_sixty", "type": "update"}]}))
            subs, updates = [], []
            await ws.send_str("PING")
            pong = False
            while len(updates) < 16 or not pong:
                f = await _recv_json(ws)
                if f == "PONG":
                    pong = True
                elif f["type"] == "subscribe":
                    subs.append(f)
                else:
                    updates.append((time.time(), f))
            await ws.send_str(json.dumps({"action": "subscribe", "subscriptions": [
                {"topic": "definitely_not_a_topic", "type": "update"}]}))
            while True:
                f = await _recv_json(ws)
                if "statusCode" in f:
                    break
    assert len(subs) == 8  # 2 topics x 4 symbols
    sub = next(x for x in subs if x["topic"] == "crypto_prices_twap_sixty")
    assert set(sub) == set(real_sub) and set(sub["payload"]) == set(real_sub["payload"])
    assert len(sub["payload"]["data"]) == 60
    assert set(sub["payload"]["data"][0]) == set(real_sub["payload"]["data"][0])
    for _, u in updates:
        real = real_up if u["topic"] == "crypto_prices_twap_sixty" else real_cl
        assert set(u) == set(real) and set(u["payload"]) == set(real["payload"])
        assert u["payload"]["timestamp"] % 1000 == 0  # whole-second observations
        assert isinstance(u["payload"]["value"], float)
        fav = u["payload"]["full_accuracy_value"]
        assert fav.isdigit() and abs(int(fav) / 1e18 / u["payload"]["value"] - 1) < 1e-12
        lag = u["timestamp"] - u["payload"]["timestamp"]
        assert 1100 <= lag <= 2000, lag  # relayed ~1.5 s late
    # values are the world's
    t = updates[-1][1]["payload"]["timestamp"] // 1000
    sym_vals = {u["payload"]["symbol"]: u["payload"]["value"] for _, u in updates
                if u["topic"] == "crypto_prices_chainlink" and u["payload"]["timestamp"] // 1000 == t}
    assert sym_vals["btc/usd"] == pytest.approx(sim.world.path("BTC").spot_at(t), rel=1e-12)
    assert set(f) == set(real_err) and "not found" in f["body"]["message"]


async def test_lifecycle_publication_resolution_and_close() -> None:
    """A 5s window: priceToBeat after the end, resolution, market_resolved, close 1000, 404."""
    async with running_sim(SimConfig(family="5s", seed=11)) as sim:
        m = sim.current_market("SOL", ahead=1)
        wd = sim.world.window(m)
        async with aiohttp.ClientSession() as s:
            async def event() -> dict:
                r = await s.get(f"{sim.gamma_url}/events/slug/{m.slug}")
                return await r.json()

            async def listed_markets(closed: str | None) -> list:
                q = {"slug": m.slug} if closed is None else {"slug": m.slug, "closed": closed}
                r = await s.get(f"{sim.gamma_url}/markets", params=q)
                return await r.json()

            ws = await s.ws_connect(sim.ws_market_url)
            await ws.send_str(json.dumps({"assets_ids": [m.up_token, m.down_token], "type": "market",
                                          "custom_feature_enabled": True}))
            r = await s.get(f"{sim.gamma_url}/events", params={"slug": m.slug})
            assert await r.json() == []  # /events without `closed`: only closed events
            assert len(await listed_markets(None)) == 1
            resolved_event = None
            close = None
            while close is None:
                msg = await ws.receive(timeout=15)
                if msg.type == aiohttp.WSMsgType.CLOSE:
                    close = msg
                    break
                for e in (lambda d: d if isinstance(d, list) else [d])(json.loads(msg.data)):
                    if e.get("event_type") == "market_resolved":
                        resolved_event = e
            assert close.data == 1000 and close.extra == "all subscribed assets resolved"
            assert time.time() >= m.resolved_at
            assert resolved_event is not None
            assert resolved_event["winning_asset_id"] == (m.up_token if wd.up else m.down_token)
            ev = await event()
            mk = ev["markets"][0]
            assert mk["closed"] is True and mk["umaResolutionStatus"] == "resolved"
            assert json.loads(mk["outcomePrices"]) == (["1", "0"] if wd.up else ["0", "1"])
            assert ev["eventMetadata"]["priceToBeat"] == wd.p2b
            assert wd.p2b == pytest.approx(sim.world.path("SOL").twap_at(m.start), rel=1e-12)
            # the outcome is the settlement rule on the path, ties Up
            assert wd.up == (sim.world.path("SOL").twap_at(m.end) >= wd.p2b)
            r = await s.get(f"{sim.clob_url}/book", params={"token_id": m.up_token})
            assert r.status == 404  # the book is gone once settled
            assert await listed_markets(None) == []  # the closed caveat
            assert len(await listed_markets("true")) == 1
            ev = await async_wait_for(lambda: _final(event), timeout=10, what="finalPrice")
            assert ev["eventMetadata"]["finalPrice"] == wd.final


async def _final(event) -> dict | None:
    ev = await event()
    return ev if "finalPrice" in ev.get("eventMetadata", {}) else None


async def test_new_market_broadcast() -> None:
    async with running_sim(SimConfig(family="5s", seed=2, list_ahead_windows=2)) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.ws_market_url)
            cur = sim.current_market("BTC")
            await ws.send_str(json.dumps({"assets_ids": [cur.up_token], "type": "market",
                                          "custom_feature_enabled": True}))
            while True:
                f = json.loads((await ws.receive(timeout=8)).data)
                evs = f if isinstance(f, list) else [f]
                nm = [e for e in evs if e.get("event_type") == "new_market"]
                if nm:
                    break
    e = nm[0]
    assert isinstance(e["assets_ids"], list) and isinstance(e["outcomes"], list)
    assert e["slug"].split("-updown-5s-")[0] in ("btc", "eth", "sol", "xrp")
    assert sim.world.by_token[e["assets_ids"][0]][0].slug == e["slug"]


def test_sync_variant_serves() -> None:
    from urllib.request import urlopen

    from slotml.sim import sim_in_thread

    with sim_in_thread(family="10s", seed=1) as sim:
        with urlopen(sim.control_url + "/health", timeout=5) as r:
            assert json.loads(r.read())["ok"] is True
        m = sim.current_market("XRP")
        with urlopen(f"{sim.gamma_url}/events/slug/{m.slug}", timeout=5) as r:
            assert json.loads(r.read())["slug"] == m.slug
        assert sim.inject("tick_size_change")["kind"] == "tick_size_change"


async def test_rtds_filter_unsubscribe_and_lowercase_ping() -> None:
    async with running_sim(SimConfig(family="10s")) as sim:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.rtds_url)
            await ws.send_str("ping")
            assert (await ws.receive(timeout=3)).data == "pong"
            await ws.send_str(json.dumps({"action": "subscribe", "subscriptions": [
                {"topic": "crypto_prices_chainlink", "type": "*", "filters": '{"symbol":"eth/usd"}'}]}))
            syms = set()
            while True:  # the backfill frame(s), then the first update: all for eth/usd only
                f = await _recv_json(ws)
                syms.add(f["payload"]["symbol"])
                if f["type"] == "update":
                    break
            assert syms == {"eth/usd"}
            await ws.send_str(json.dumps({"action": "unsubscribe", "subscriptions": [
                {"topic": "crypto_prices_chainlink", "type": "*"}]}))
            await asyncio.sleep(0.2)  # let in-flight frames land
            while True:
                try:
                    await ws.receive(timeout=0.05)
                except TimeoutError:
                    break
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=1.5)  # unsubscribed: nothing more


def test_cli_serve_subprocess(tmp_path) -> None:
    """`slotml sim serve` runs as a process (the demo and the benchmarks use it)."""
    import subprocess
    import sys
    from urllib.request import urlopen

    from tests.util import free_port, wait_for

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "slotml.cli", "sim", "serve", "--port", str(port),
                             "--family", "10s", "--symbols", "BTC,ETH", "--synthetic-assets", "2",
                             "--data-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def health():
            try:
                with urlopen(f"http://127.0.0.1:{port}/_sim/config", timeout=1) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        cfg = wait_for(health, timeout=20, what="sim serve")
        assert cfg["family"] == "10s" and cfg["symbols"] == ["BTC", "ETH"] and cfg["synthetic_assets"] == 2
        with urlopen(f"http://127.0.0.1:{port}/_sim/markets?symbols=SYN1", timeout=2) as r:
            assert json.loads(r.read())[0]["slug"].startswith("syn1-updown-10s-")
    finally:
        proc.terminate()
        proc.wait(10)
