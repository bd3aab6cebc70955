"""The websocket feeds over real loopback sockets: subscribe, keepalive, stall, close 1000.

A tiny scripted websockets server plays the venue side with the real fixture frames; it is
not a venue model (the sim is), just enough to drive each reconnect path deterministically.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import serve

from slotml.ingest.books import BookStore
from slotml.ingest.feeds.clob_market import ClobFeed
from slotml.ingest.feeds.rtds import RtdsRelay
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import SPOT, TWAP60
from tests.conftest import FIXTURES
from tests.util import async_wait_for

CLOB = (FIXTURES / "ingest" / "clob_market_frames.jsonl").read_text().splitlines()
RTDS = (FIXTURES / "ingest" / "rtds_frames.jsonl").read_text().splitlines()
UP = "36058180106267309416569886113196185744009788380740653016655476166674199848738"


class Venue:
    """Records what clients send; ``script(ws, n)`` decides what connection n does."""

    def __init__(self, script) -> None:
        self.script = script
        self.received: list[list[str]] = []
        self.server = None
        self.url = ""

    async def handler(self, ws) -> None:
        got: list[str] = []
        self.received.append(got)
        n = len(self.received)

        async def reader() -> None:
            async for m in ws:
                got.append(m)
                if m == "PING":
                    await ws.send("PONG")

        tasks = [asyncio.create_task(reader()), asyncio.create_task(self.script(ws, n, got)),
                 asyncio.create_task(ws.wait_closed())]
        try:
            await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Venue:
        self.server = await serve(self.handler, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_clob_subscribe_ping_stall_and_resubscribe() -> None:
    async def script(ws, n, got) -> None:
        await async_wait_for(lambda: got, what="subscribe message")
        await ws.send(CLOB[0])  # initial dump (array)
        if n == 1:
            await asyncio.sleep(30)  # then silent, answering PINGs only: a stall
        else:
            await ws.send(CLOB[1])
            await asyncio.sleep(30)

    m = Metrics()
    books = BookStore(m)
    async with Venue(script) as v:
        feed = ClobFeed(v.url, books, m, ping_interval=0.2, stall_after=1.0, backoff_max=0.2)
        feed.add_tokens([UP])
        feed.start()
        try:
            await async_wait_for(lambda: books.top(UP) is not None, what="book")
            sub = json.loads(v.received[0][0])
            assert sub == {"type": "market", "assets_ids": [UP], "custom_feature_enabled": True}
            feed.add_tokens(["other"])  # a new window's token on the open socket
            await async_wait_for(lambda: any('"operation"' in x for x in v.received[0]),
                                 what="operation subscribe")
            op = json.loads(next(x for x in v.received[0] if '"operation"' in x))
            assert op == {"operation": "subscribe", "assets_ids": ["other"],
                          "custom_feature_enabled": True}
            await async_wait_for(lambda: "PING" in v.received[0], what="text PING")
            # PONGs keep coming but carry no data: the watchdog reconnects
            await async_wait_for(lambda: m.get("stalls", stream="clob") >= 1, timeout=5,
                                 what="stall detected")
            await async_wait_for(lambda: len(v.received) >= 2 and v.received[1], timeout=5,
                                 what="reconnect")
            assert sorted(json.loads(v.received[1][0])["assets_ids"]) == sorted([UP, "other"])
            assert feed.reconnects >= 1 and m.get("reconnects", stream="clob") >= 1
            await async_wait_for(lambda: books.top(UP) is not None, what="book after reconnect")
        finally:
            await feed.stop()


async def test_clob_close_1000_all_resolved_is_normal_and_waits_for_new_tokens() -> None:
    async def script(ws, n, got) -> None:
        await async_wait_for(lambda: got, what="subscribe")
        await ws.send(CLOB[0])
        await ws.close(1000, "all subscribed assets resolved")

    m = Metrics()
    books = BookStore(m)
    async with Venue(script) as v:
        feed = ClobFeed(v.url, books, m, ping_interval=5, stall_after=5, backoff_max=0.1)
        feed.add_tokens([UP])
        feed.start()
        try:
            await async_wait_for(lambda: m.get("closed_all_resolved") == 1, what="clean close")
            await asyncio.sleep(0.5)
            assert len(v.received) == 1, "must not reconnect into a resolved subscription"
            assert m.get("disconnects") == 0 and m.get("connect_errors") == 0
            assert feed.tokens == set() and books.top(UP) is None
            feed.add_tokens(["next-window"])
            await async_wait_for(lambda: len(v.received) == 2 and v.received[1], what="reconnect")
            assert json.loads(v.received[1][0])["assets_ids"] == ["next-window"]
        finally:
            await feed.stop()


async def test_clob_unexpected_close_reconnects_with_backoff() -> None:
    async def script(ws, n, got) -> None:
        await async_wait_for(lambda: got, what="subscribe")
        if n <= 3:
            await ws.close(1011, "internal error")
        else:
            await ws.send(CLOB[0])
            await asyncio.sleep(30)

    m = Metrics()
    books = BookStore(m)
    async with Venue(script) as v:
        feed = ClobFeed(v.url, books, m, ping_interval=5, stall_after=5, backoff_max=0.2)
        feed.add_tokens([UP])
        feed.start()
        try:
            await async_wait_for(lambda: books.top(UP) is not None, timeout=10, what="recovery")
            assert m.get("disconnects", stream="clob") == 3 and feed.connects == 4
        finally:
            await feed.stop()


async def test_connection_refused_is_retried_forever() -> None:
    m = Metrics()
    feed = ClobFeed("ws://127.0.0.1:9/nothing", BookStore(m), m, backoff_max=0.05)
    feed.add_tokens(["t"])
    feed.start()
    try:
        await async_wait_for(lambda: m.get("connect_errors") >= 3, what="retries")
    finally:
        await feed.stop()


async def test_rtds_unfiltered_subscribe_backfill_and_updates() -> None:
    async def script(ws, n, got) -> None:
        await async_wait_for(lambda: got, what="subscribe")
        for f in RTDS:
            await ws.send(f)
        await asyncio.sleep(30)

    m = Metrics()
    async with Venue(script) as v:
        relay = RtdsRelay(v.url, ("BTC",), m, ping_interval=0.2, stall_after=5)
        relay.start()
        try:
            await async_wait_for(lambda: relay.latest("BTC", TWAP60) is not None, what="twap")
            sub = json.loads(v.received[0][0])
            assert sub["action"] == "subscribe"
            assert {s["topic"] for s in sub["subscriptions"]} == {"crypto_prices_chainlink",
                                                                "crypto_prices_twap_sixty"}
            assert all("filters" not in s for s in sub["subscriptions"])  # filter locally
            await async_wait_for(lambda: relay.at("BTC", SPOT, 1788600388) is not None,
                                 what="spot")
            await async_wait_for(lambda: "PING" in v.received[0], what="PING")
            assert relay.connected is True
        finally:
            await relay.stop()


@pytest.mark.parametrize("frame", ["not json at all", '{"topic": "crypto_prices_chainlink"',
                                   "[1,2,3]"])
async def test_rtds_malformed_frames_do_not_kill_the_feed(frame: str) -> None:
    async def script(ws, n, got) -> None:
        await async_wait_for(lambda: got, what="subscribe")
        await ws.send(frame)
        await ws.send(RTDS[1])
        await asyncio.sleep(30)

    m = Metrics()
    async with Venue(script) as v:
        relay = RtdsRelay(v.url, ("BTC",), m, stall_after=5)
        relay.start()
        try:
            await async_wait_for(lambda: relay.latest("BTC", SPOT) is not None, what="update")
            assert m.get("frames_rejected", stream="rtds") == 1 and relay.connects == 1
        finally:
            await relay.stop()


async def test_clob_gap_is_resynced_on_the_same_socket() -> None:
    a = "25245433628208476987364023432306599125597948324625578977436890641930158259698"
    bad = json.loads(CLOB[1])
    bad["price_changes"][0]["best_bid"] = "0.48"  # disagrees with our book: we missed something

    async def script(ws, n, got) -> None:
        await async_wait_for(lambda: got, what="subscribe")
        await ws.send(CLOB[3])
        await ws.send(json.dumps(bad))
        await async_wait_for(lambda: any('"subscribe"' in x and '"operation"' in x for x in got),
                             what="resubscribe")
        await ws.send(CLOB[3])  # the fresh snapshot a subscribe brings
        await asyncio.sleep(30)

    m = Metrics()
    books = BookStore(m)
    async with Venue(script) as v:
        feed = ClobFeed(v.url, books, m, ping_interval=5, stall_after=5)
        feed.add_tokens([a])
        feed.start()
        try:
            await async_wait_for(lambda: m.get("book_resyncs") == 1, what="resync")
            ops = [json.loads(x) for x in v.received[0] if '"operation"' in x]
            assert [o["operation"] for o in ops] == ["unsubscribe", "subscribe"]
            assert all(o["assets_ids"] == [a] for o in ops)
            await async_wait_for(lambda: books.top(a) is not None, what="fresh book")
            assert books.top(a).bid == 0.49 and feed.connects == 1
        finally:
            await feed.stop()
