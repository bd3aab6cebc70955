"""Issue 16: the backfill with the order flow's prints, and the shadow-order engine.

Aim: 60 days x 4 assets of 15m history with prints "well under a minute or two". Measured: the
generator over 60 days x 4 assets (``--quick``: 6 days, projected) with prints, against the
baseline of the same generator without prints (``trades=False``) in the same run; and the batch
shadow-order API's orders per second (one best-bid order per window and token, efficient book).
"""

from __future__ import annotations

import time

from bench import Row

ISSUE = 16
END = 1795000000


def run(quick: bool) -> list[Row]:
    from slotml.sim.backfill import generate_parts
    from slotml.sim.config import SimConfig
    from slotml.sim.shadow import ShadowOrder, shadow_fills
    from slotml.sim.world import World

    days = 6.0 if quick else 60.0
    cfg = SimConfig(seed=1)

    def gen(trades: bool) -> tuple[float, int]:
        t = time.perf_counter()
        n = 0
        for part in generate_parts(cfg, days, END, trades=trades):  # one asset at a time
            n += len(part.trades)
            del part
        return time.perf_counter() - t, n

    list(generate_parts(cfg, 0.2, END))  # warm the coarse chains / imports
    base, _ = gen(False)
    with_prints, n_prints = gen(True)
    scale = 60.0 / days
    rows = [
        Row(ISSUE, f"backfill generate with prints ({days:g} d x 4 assets), 60 d x 4 assets",
            with_prints * scale, "s", baseline=base * scale, baseline_name="without prints",
            higher_is_better=False, aim="well under a minute or two", met=with_prints * scale < 90),
        Row(ISSUE, "  prints generated per 60 d x 4 assets", n_prints * scale, "prints"),
    ]
    world = World(SimConfig(seed=1, book="efficient"))
    t1 = END // 900 * 900
    orders = []
    for s in range(t1 - int(min(days, 2) * 86400), t1, 900):
        for sym in world.symbols:
            m = world.market(sym, s)
            world.window(m)
            up, down = world.book_levels(m, s)
            for token, book in ((m.up_token, up), (m.down_token, down)):
                if book["bids"]:
                    orders.append(ShadowOrder(token, book["bids"][0][0] / 100, 100.0, s - 1.0))
    t = time.perf_counter()
    fills = shadow_fills(world, orders)
    dt = time.perf_counter() - t
    rows.append(Row(ISSUE, "shadow orders (whole-window best bids), batch API", len(orders) / dt,
                    "orders/s", aim="months of orders in seconds"))
    rows.append(Row(ISSUE, "  fills per order", sum(len(f) for f in fills) / len(orders), "fills"))
    return rows
