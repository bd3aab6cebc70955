"""The sim's trade prints: the real ``last_trade_price`` shape, at the book's prices, on both
tokens, recorded exactly as sent, seeded; parsed with the collector's own tape parser."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import aiohttp
import pytest

from slotml.errors import UserError
from slotml.ingest.books import BookStore
from slotml.ingest.metrics import Metrics
from slotml.ingest.tape import Print, parse_prints
from slotml.sim import SimConfig, running_sim
from slotml.sim.services.books import book_second
from slotml.sim.services.prints import plan
from slotml.sim.world import Market, World
from tests.util import async_wait_for


def _content(p: Print) -> tuple:
    """A print without where and when it was received."""
    return (p.token_id, p.condition_id, p.price, p.size, p.side, p.fee_rate_bps, p.ts_ms, p.tx_hash)


class Client:
    """A market-channel subscriber that keeps books (ingest's BookStore) and every print."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.books = BookStore(Metrics())
        self.events: dict[str, list[dict]] = defaultdict(list)  # token -> print events as received
        self.prints: dict[str, list[Print]] = defaultdict(list)
        self.frames: list[list[dict] | dict] = []  # frames that carried prints
        self.off_top: list[tuple] = []  # prints not at the top shown when they arrived

    async def pump(self) -> None:
        """Read one frame: check its prints against the books as they stand, then apply it."""
        msg = await self.ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        prints, bad = parse_prints(frame, time.time())
        assert bad == []
        for p in prints:
            top = self.books.top(p.token_id)
            if top is None or p.price != (top.ask if p.side == "BUY" else top.bid):
                self.off_top.append((p, top))
            self.events[p.token_id].append((frame if isinstance(frame, list) else [frame])[p.frame_index])
            self.prints[p.token_id].append(p)
        if prints:
            self.frames.append(frame)
        self.books.apply_frame(msg.data, time.time())


def _varied_plan(world: World, m: Market) -> bool:
    """Whether market ``m``'s seeded prints hold every variety the test checks (read from the plan,
    so the choice of window is not left to chance)."""
    frames = [fr for s in range(m.start, m.end + 1) for fr in plan(world, m, s)]
    hashes = [e.get("transaction_hash") for fr in frames for e in fr.events]
    given = [h for h in hashes if h]
    return ({e["asset_id"] for fr in frames for e in fr.events} == set(m.tokens)
            and len(given) < len(hashes) and len(set(given)) < len(given)
            and any(fr.bare for fr in frames) and any(len(fr.events) > 1 for fr in frames))


async def test_prints_shape_prices_record_and_seed(clob_frames: list) -> None:
    real = next(f for f in clob_frames if isinstance(f, dict) and f.get("event_type") == "last_trade_price")
    world = World(SimConfig(family="10s", seed=5, print_rate=20))
    async with running_sim(SimConfig(family="10s", seed=5, print_rate=20)) as sim:
        # the first window from the next one whose plan has every variety (a window without, or
        # a window cut short by a loaded box, once timed out in CI)
        m = next(mk for mk in (sim.current_market("BTC", ahead=k) for k in range(1, 30))
                 if _varied_plan(world, mk))
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.ws_market_url)
            await ws.send_str(json.dumps({"type": "market", "assets_ids": [m.up_token, m.down_token],
                                          "custom_feature_enabled": True}))
            c = Client(ws)

            async def varied() -> bool:
                await c.pump()
                evs = [e for t in m.tokens for e in c.events[t]]
                hashes = [e["transaction_hash"] for e in evs if "transaction_hash" in e]
                seconds = {book_second(p.ts_ms / 1000) for t in m.tokens for p in c.prints[t]}
                return (all(c.prints[t] for t in m.tokens) and len(hashes) < len(evs)
                        and len(seconds) >= 3  # a whole second between the first and the last
                        and len(set(hashes)) < len(hashes)  # one taker, two makers
                        and any(isinstance(f, dict) for f in c.frames)
                        and any(isinstance(f, list) and len(f) > 1 for f in c.frames))

            await async_wait_for(varied, timeout=max(20.0, m.end + 10 - time.time()), interval=0,
                                 what="prints of every variety")
            # everything the sim recorded so far reaches the client, in order
            sent = {t: list(sim.server.market_ws.prints.sent[t]) for t in m.tokens}

            async def caught_up() -> bool:
                if all(len(c.events[t]) >= len(sent[t]) for t in m.tokens):
                    return True
                await c.pump()
                return False

            await async_wait_for(caught_up, timeout=10, interval=0, what="the client to catch up")
            r = await s.get(f"{sim.control_url}/prints", params={"token_id": m.up_token})
            over_http = await r.json()
            await ws.close()

    assert c.off_top == []  # BUY at the best ask, SELL at the best bid, of the book shown
    for t in m.tokens:
        assert c.events[t][: len(sent[t])] == sent[t]
        got = [_content(p) for p in c.prints[t][: len(sent[t])]]
        want = [_content(p) for e in sent[t] for p in parse_prints(e, 0.0)[0]]
        assert got == want and len(want) == len(sent[t])
    assert over_http[: len(sent[m.up_token])] == sent[m.up_token]

    # the venue's shape: the real frame's keys (+ transaction_hash, sometimes), all strings
    for ev in (e for t in m.tokens for e in c.events[t]):
        assert set(ev) - {"transaction_hash"} == set(real), ev
        assert all(isinstance(v, str) for v in ev.values())
        assert ev["market"] == m.condition_id and ev["side"] in ("BUY", "SELL")
        assert ev["timestamp"].isdigit() and len(ev["timestamp"]) == 13
        assert 0 < float(ev["price"]) < 1 and float(ev["size"]) > 0
        assert ev.get("transaction_hash", "0x" + "0" * 64).startswith("0x")
        assert len(ev.get("transaction_hash", "0x" + "0" * 64)) == 66

    # seeded: the prints of each whole second are the plan of (seed, market, second)
    by_second: dict[int, list[tuple]] = defaultdict(list)
    for t in m.tokens:
        for p in c.prints[t]:
            by_second[book_second(p.ts_ms / 1000)].append((p.token_id, p.side, p.size, p.tx_hash, p.ts_ms))
    seconds = sorted(by_second)[1:-1]  # the first and last may be cut by subscribe / close
    assert len(seconds) >= 1
    for sec in seconds:
        want = sorted((e["asset_id"], e["side"], float(e["size"]), e.get("transaction_hash", ""),
                       int(e["timestamp"])) for fr in plan(world, m, sec) for e in fr.events)
        assert sorted(by_second[sec]) == want


def test_same_seed_same_plan_other_seed_another() -> None:
    cfg = SimConfig(family="10s", seed=7, print_rate=5)
    a, b = World(cfg), World(cfg)
    start = int(time.time() // 10) * 10
    ma, mb = a.market("ETH", start), b.market("ETH", start)
    assert ma == mb
    pa = [plan(a, ma, s) for s in range(start, start + 11)]
    assert pa == [plan(b, mb, s) for s in range(start, start + 11)]
    assert sum(len(f.events) for fs in pa for f in fs) > 20
    other = World(SimConfig(family="10s", seed=8, print_rate=5))
    assert [[f.t_ms for f in fs] for fs in pa] != [[f.t_ms for f in plan(other, other.market("ETH", start), s)]
                                                   for s in range(start, start + 11)]
    none = World(SimConfig(family="10s", seed=7, print_rate=0))
    assert all(plan(none, none.market("ETH", start), s) == [] for s in range(start, start + 11))
    # every print of a second falls inside that second's display, and inside the window
    for s, frames in zip(range(start, start + 11), pa, strict=True):
        assert all(book_second(f.t_ms / 1000) == s and start <= f.t_ms / 1000 < start + 10 for f in frames)
    for bad in (-1, 101, float("nan")):
        with pytest.raises(UserError):
            SimConfig(print_rate=bad)


async def test_prints_stop_at_the_window_end_and_rate_zero_sends_none() -> None:
    async with running_sim(SimConfig(family="5s", seed=11, print_rate=10, symbols=("SOL",))) as sim:
        m = sim.current_market("SOL", ahead=1)  # its whole window
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.ws_market_url)
            await ws.send_str(json.dumps({"type": "market", "assets_ids": list(m.tokens)}))
            c = Client(ws)

            async def past_close() -> bool:
                await c.pump()
                # takers trade inside the window; the socket closes once resolved (>= end + 1.7 s)
                return time.time() > m.end + 0.5 and bool(c.prints[m.up_token])

            await async_wait_for(past_close, timeout=20, interval=0, what="the window's end")
            await ws.close()
        sent = [e for t in m.tokens for e in sim.server.market_ws.prints.sent[t]]
    assert sent and all(m.start * 1000 <= int(e["timestamp"]) < m.end * 1000 for e in sent)

    async with running_sim(SimConfig(family="10s", seed=11, print_rate=0)) as sim:
        m = sim.current_market("BTC", ahead=1)
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(sim.ws_market_url)
            await ws.send_str(json.dumps({"type": "market", "assets_ids": list(m.tokens)}))
            c = Client(ws)
            await async_wait_for(lambda: _pumped(c, sim), timeout=15, interval=0,
                                 what="three book updates")
            await ws.close()
        assert sim.server.stats["last_trade_price_events"] == 0 and not c.frames


async def _pumped(c: Client, sim) -> bool:
    await c.pump()
    return sim.server.stats["price_change_events"] >= 3
