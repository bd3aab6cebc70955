"""``recent_rows``: the rows a bot warms its online features from, on both backends: the
windows starting in [now - span, now], snapshots ticked by ``now``, every resolution row of
those windows, with the same Python types as the store's other reads."""

from __future__ import annotations

import asyncio

from slotml.ingest.store import open_store
from slotml.ingest.store.query import recent_rows
from slotml.settings import DbUrl
from slotml.sim.backfill import generate, write_store
from slotml.sim.config import SimConfig

END = 1_795_000_200


def test_recent_rows_reads_the_span_before_now(any_db: DbUrl) -> None:
    asyncio.run(write_store(generate(SimConfig(family="15m", symbols=("BTC", "ETH"), seed=2),
                                     0.2, END, trades=False), any_db))

    async def everything() -> tuple[list[dict], list[dict]]:
        async with open_store(any_db) as store:
            return await store.fetch_snapshots(), await store.fetch_resolutions()

    all_snaps, all_res = asyncio.run(everything())
    now, span = END - 2000.5, 4500
    snaps, res = recent_rows(any_db, now, span, window_s=900)
    want = [r for r in all_snaps if now - span <= r["slot_ts"] <= now and r["tick_ms"] <= now * 1000]
    key = lambda r: (r["symbol"], r["slot_ts"], r["tick_ms"])  # noqa: E731
    assert sorted(snaps, key=key) == sorted(want, key=key) and len(want) > 200
    assert {r["slot_ts"] for r in snaps} == {r["slot_ts"] for r in res}
    assert sorted((r["symbol"], r["slot_ts"]) for r in res) == sorted(
        (r["symbol"], r["slot_ts"]) for r in all_res if now - span <= r["slot_ts"] <= now)
    assert max(r["slot_ts"] for r in snaps) == int(now // 900) * 900  # the current window
    assert min(r["slot_ts"] for r in snaps) == int(now // 900) * 900 - 4 * 900
    assert recent_rows(any_db, now, span, window_s=300) == ([], [])
