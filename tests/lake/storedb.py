"""Test-side access to a store: rows go in through the real store interface
(``slotml.ingest.store``: ensure_schema, insert_snapshots, upsert_resolutions), and come back
out with direct SQL (every column, id and updated_at included) to compare with the lake.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from slotml.ingest.schema import Table
from slotml.settings import DbUrl


class StoreDb:
    def __init__(self, url: DbUrl) -> None:
        self.url = url
        self.dialect = url.scheme
        if self.dialect == "sqlite":
            self.conn: Any = sqlite3.connect(str(url.path), isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
        else:
            import pymysql

            self.conn = pymysql.connect(host=url.host, port=url.port, user=url.user,
                                        password=url.password, database=url.database,
                                        autocommit=True, charset="utf8mb4")

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if self.dialect == "sqlite":
            return self.conn.execute(sql, params).fetchall()
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)
            return list(cur.fetchall())

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """Every row ordered by id, bools as bool (the lake's types)."""
        out = []
        for values in self.execute(f"SELECT {', '.join(table.names)} FROM `{table.name}` ORDER BY id"):
            r = {}
            for c, v in zip(table.columns, values, strict=True):
                if v is not None and c.kind == "bool":
                    v = bool(v)
                elif v is not None and c.kind == "double":
                    v = float(v)
                r[c.name] = v
            out.append(r)
        return out

    def count(self, table: Table) -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM `{table.name}`")[0][0])


SYMBOLS = ("BTC", "ETH", "SOL", "XRP")
BASE_SLOT = 1_795_000_500 - 1_795_000_500 % 900  # a 15-minute boundary in Nov 2026


def snapshot_rows(n_slots: int, ticks: int = 3, slot0: int = BASE_SLOT, step_s: int = 900,
                  seed: int = 1, symbols: Sequence[str] = SYMBOLS) -> list[dict[str, Any]]:
    """Snapshot rows with a realistic share of NULLs (empty book sides)."""
    rnd = random.Random(seed)
    out = []
    for k in range(n_slots):
        slot = slot0 + k * step_s
        for t in range(ticks):
            tick_ms = (slot + 30 * t) * 1000
            for s in symbols:
                bid = None if rnd.random() < 0.1 else round(rnd.random() * 0.98, 3)
                ask = None if bid is None or rnd.random() < 0.1 else round(min(0.999, bid + 0.01), 3)
                out.append({
                    "symbol": s, "window_s": 900, "slot_ts": slot, "tick_ms": tick_ms,
                    "captured_at": tick_ms / 1000 + rnd.random() / 7, "minutes_into_slot": t / 2,
                    "bid_up": bid, "ask_up": ask, "bid_down": None if ask is None else 1 - ask,
                    "ask_down": None if bid is None else 1 - bid,
                    "bid_size_up": None if bid is None else rnd.random() * 1e4,
                    "ask_size_up": None if ask is None else rnd.random() * 1e4,
                    "bid_size_down": None, "ask_size_down": rnd.random() / 3,
                    "spread_up": None if bid is None or ask is None else ask - bid,
                    "spread_down": None, "chainlink_price": 90_000 + rnd.random() * 1e3,
                    "chainlink_twap": 90_000 + rnd.random() / 3, "dir_move_pct": rnd.gauss(0, 0.1),
                    "abs_move_pct": rnd.random(), "spot_move_pct": None if t == 0 else rnd.gauss(0, 1),
                    "book_age_s": rnd.random() * 5, "hour_utc": (slot // 3600) % 24,
                    "day_of_week": ((slot // 86400) + 3) % 7,
                })
    return out


def resolution_rows(n_slots: int, slot0: int = BASE_SLOT, seed: int = 2,
                    symbols: Sequence[str] = SYMBOLS) -> list[dict[str, Any]]:
    """Resolutions in every state: unresolved (NULL bools), Up, Down; odd strings on purpose."""
    rnd = random.Random(seed)
    odd = ["NULL", "tab\there", "back\\slash", "new\nline", "", "ünï", 'quo"te']
    out = []
    for k in range(n_slots):
        slot = slot0 + k * 900
        for i, s in enumerate(symbols):
            state = (k + i) % 3
            out.append({
                "symbol": s, "window_s": 900, "slot_ts": slot, "end_ts": slot + 900,
                "slug": f"{s.lower()}-updown-15m-{slot}" if k % 5 else odd[(k // 5) % len(odd)],
                "condition_id": None if k % 4 == 0 else f"0x{rnd.getrandbits(64):016x}",
                "up_token_id": str(rnd.getrandbits(60)), "down_token_id": str(rnd.getrandbits(60)),
                "settlement": "twap60" if k % 2 else "spot", "tick_size": 0.01,
                "min_order_size": 5.0, "fee_rate": None if k % 3 == 0 else 0.25,
                "fee_exponent": 2.0, "fee_taker_only": [None, True, False][k % 3],
                "price_to_beat": 90_000 + rnd.random(), "spot_price_to_beat": 90_000 + rnd.random(),
                "final_price": None if state == 0 else 90_000 + rnd.random(),
                "final_seen_at": None if state == 0 else slot + 905.5,
                "official_price_to_beat": None, "official_final_price": None,
                "resolved_up": [None, True, False][state],
                "prev_resolved_up": [True, None, False][k % 3], "resolved_at": None,
            })
    return out


async def _write(url: DbUrl, snapshots: Sequence[Mapping[str, Any]],
                 resolutions: Sequence[Mapping[str, Any]]) -> None:
    from slotml.ingest.store import open_store

    store = open_store(url)
    await store.connect()
    try:
        await store.ensure_schema()
        if snapshots:
            assert await store.insert_snapshots(snapshots) == len(snapshots)
        if resolutions:
            await store.upsert_resolutions(resolutions)
    finally:
        await store.close()


def write(url: DbUrl, snapshots: Sequence[Mapping[str, Any]] = (),
          resolutions: Sequence[Mapping[str, Any]] = ()) -> None:
    """Write through the store interface (as the collector does)."""
    asyncio.run(_write(url, snapshots, resolutions))


def populate(url: DbUrl, n_slots: int = 50) -> StoreDb:
    write(url, snapshot_rows(n_slots), resolution_rows(n_slots))
    return StoreDb(url)
