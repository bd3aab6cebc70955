"""Shadow orders: the live order endpoint and the batch API report the same true fills; bad
orders are refused clearly; a shadow order changes nothing the recorder sees."""

from __future__ import annotations

import math
import time

import aiohttp
import pytest

from slotml.sim import SimConfig, running_sim
from slotml.sim.services.orders import KEY_HEADER
from slotml.sim.shadow import ShadowOrder, fills_over_history, jitter, order_fills
from slotml.sim.world import World
from tests.util import async_wait_for

CFG = SimConfig(family="5s", seed=41, symbols=("BTC",), print_rate=8)
KEY = {KEY_HEADER: CFG.order_key}


async def test_order_endpoint_rejects_bad_orders() -> None:
    async with running_sim(CFG) as sim:
        m = sim.current_market("BTC", ahead=1)
        url = f"{sim.clob_url}/order"
        good = {"token_id": m.up_token, "price": 0.5, "size": 10}
        async with aiohttp.ClientSession() as s:
            for headers in ({}, {KEY_HEADER: "wrong"}):
                r = await s.post(url, json=good, headers=headers)
                assert r.status == 401, await r.text()
            r = await s.get(f"{url}/sim-1")
            assert r.status == 401
            bad = [({"price": 0}, "price"), ({"price": 1}, "price"), ({"price": 1.5}, "price"),
                   ({"price": -0.2}, "price"), ({"price": 0.505}, "tick"), ({"size": 0}, "size"),
                   ({"size": -5}, "size"), ({"token_id": "123"}, "unknown token"),
                   ({"side": "HOLD"}, "side"), ({"price": "abc"}, "numbers"),
                   ({"price": float("nan")}, "numbers")]
            for change, why in bad:
                body = {**good, **change}
                if isinstance(body["price"], float) and math.isnan(body["price"]):
                    r = await s.post(url, data=f'{{"token_id": "{m.up_token}", "price": NaN, "size": 1}}',
                                     headers=KEY)
                else:
                    r = await s.post(url, json=body, headers=KEY)
                text = await r.text()
                assert r.status == 400 and "\n" not in (await r.json())["error"], (change, text)
                assert why.split()[0] in text or why == "numbers", (change, text)
            r = await s.post(url, data="not json", headers=KEY)
            assert r.status == 400
            r = await s.post(url, json=good, headers=KEY)
            assert r.status == 200 and (await r.json())["status"] == "live"
            r = await s.get(f"{url}/nope", headers=KEY)
            assert r.status == 404


async def test_live_endpoint_and_batch_api_agree() -> None:
    async with running_sim(CFG) as sim:
        m = sim.current_market("BTC", ahead=1)
        world = sim.world
        up, down = world.book_levels(m, m.start)

        def top(book: dict, side: str, off: int = 0) -> int:
            return book[side][0][0] + off if book[side] else 50

        # the touches at the start (a decided 5 s window may quote at 1 or 99 cents), one deeper
        wanted = [(m.up_token, top(up, "bids"), "BUY"), (m.down_token, top(down, "bids"), "BUY"),
                  (m.up_token, top(up, "asks"), "SELL"), (m.up_token, top(up, "bids", -1), "BUY"),
                  (m.down_token, top(down, "bids"), "BUY")]
        wanted = [(t, min(max(c, 1), 99), side) for t, c, side in wanted]
        placed = []
        async with aiohttp.ClientSession() as s:
            for i, (token, cents, side) in enumerate(wanted):
                body = {"token_id": token, "price": cents / 100, "size": 40 + i, "side": side}
                r = await s.post(f"{sim.clob_url}/order", json=body, headers=KEY)
                assert r.status == 200, await r.text()
                placed.append((body, await r.json()))
            # cancel the last one in the middle of the window
            await async_wait_for(lambda: time.time() > m.start + 2, timeout=30, what="mid-window")
            r = await s.delete(f"{sim.clob_url}/order/{placed[-1][1]['orderID']}", headers=KEY)
            cancelled_at = (await r.json())["cancel_at"]
            await async_wait_for(lambda: time.time() > m.end + 0.5, timeout=30, what="the window's end")
            live = []
            for _, got in placed:
                r = await s.get(f"{sim.clob_url}/order/{got['orderID']}", headers=KEY)
                live.append((await r.json())["fills"])
        trades = len(world.flow(m))
    orders = [ShadowOrder(token=b["token_id"], price=b["price"], size=b["size"], side=b["side"],
                          placed_at=g["placed_at"], cancel_at=cancelled_at if i == len(placed) - 1
                          else math.inf) for i, (b, g) in enumerate(placed)]
    batch = fills_over_history(CFG, orders)
    assert [[(f.t, f.size, f.price, f.through) for f in fs] for fs in batch] == \
        [[(f["t"], f["size"], f["price"], f["through"]) for f in fs] for fs in live]
    assert sum(len(fs) for fs in batch) > 0, "no order filled: the agreement says nothing"
    assert trades > 0


def test_shadow_orders_do_not_change_the_world_and_fill_in_time_priority() -> None:
    world = World(SimConfig(seed=5, book="efficient"))
    start = 1795000000 // 900 * 900
    m = world.market("ETH", start)
    before = world.flow(m)
    snapshot = (before.t_ms.copy(), before.size.copy())
    up, _ = world.book_levels(m, start)
    bid = up["bids"][0][0]
    a = order_fills(world, ShadowOrder(m.up_token, bid / 100, 100.0, start - 5.0))
    late = order_fills(world, ShadowOrder(m.up_token, bid / 100, 100.0, start + 300.0))
    after = world.flow(m)
    assert (after.t_ms == snapshot[0]).all() and (after.size == snapshot[1]).all()
    assert sum(f.size for f in a) <= 100.0 + 1e-9
    # placed earlier at the same price, it is filled no later than the same order placed later
    assert a and (not late or a[0].t <= late[0].t)
    # a world built afresh gives the same fills (deterministic: jitter from the order itself)
    again = fills_over_history(SimConfig(seed=5, book="efficient"),
                               [ShadowOrder(m.up_token, bid / 100, 100.0, start - 5.0)])
    assert again == [a]
    with pytest.raises(ValueError, match="price"):
        order_fills(world, ShadowOrder(m.up_token, 1.2, 1.0, start))


def test_an_order_of_int_numbers_is_the_same_order_as_of_floats() -> None:
    """The live endpoint parses price and size as floats; the batch API takes what the caller
    passes (JSON ints stay ints): size 42 and 42.0 must get one latency, hence the same fills."""
    start = 1795000000 // 900 * 900
    world = World(SimConfig(seed=5, book="efficient"))
    m = world.market("ETH", start)
    bid = world.book_levels(m, start)[0]["bids"][0][0]
    as_int = ShadowOrder(m.up_token, bid / 100, 42, start - 5)
    as_float = ShadowOrder(m.up_token, bid / 100, 42.0, float(start - 5))
    for what in ("place", "cancel"):
        assert jitter(5, as_int, what) == jitter(5, as_float, what)
    # and the hash still tells different orders apart
    assert jitter(5, as_int, "place") != jitter(5, ShadowOrder(m.up_token, bid / 100, 43, start - 5), "place")
    assert order_fills(world, as_int) == order_fills(world, as_float)
