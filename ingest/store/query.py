"""Read queries over the store in portable SQL (SQLite and MySQL/MariaDB): the /slots listing,
and the recent rows a bot warms its online features from (``recent_rows``).

The lake answers analytical questions in DuckDB; the read API answers "what was collected"
from the STORE, which is fresh and indexed, but cannot run DuckDB's ASOF join. So the feature
contract's decision-row pick is written here in SQL both backends run unchanged:

    the latest window row (tick_ms >= slot_ts*1000) with tick_ms <= D, kept only if
    D - tick_ms <= tolerance, where D = slot_ts*1000 + offset

as a range test plus ``NOT EXISTS`` (a later row in the same range), evaluated per candidate row
through the unique key (symbol, window_s, slot_ts, tick_ms): a page costs work proportional to the
page, not to the table. The offsets come in as integers per window length (``PickSpec``), computed
by the caller with ``features.contract.frac_ms`` (the store layer does not import features; the
contract's float arithmetic stays in one place and the SQL only compares integers, so MySQL's
DECIMAL literals and SQLite's REALs cannot round differently).

Pages are keyset-paginated on (slot_ts, id): the (slot_ts) and (symbol, slot_ts) indexes carry
the primary key, so both backends walk an index in that order and stop at the limit. Every value
is a bound parameter; only identifiers from ``ingest/schema.py`` are spliced into the text.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS, Column
from slotml.ingest.store.base import Store

# The resolution columns a /slots row carries beside its snapshot's (names do not clash).
RESOLUTION_FIELDS: tuple[str, ...] = (
    "end_ts", "slug", "settlement", "price_to_beat", "spot_price_to_beat", "final_price",
    "official_price_to_beat", "official_final_price", "resolved_up", "resolved_at",
)


def slot_columns() -> list[Column]:
    """Columns of one /slots row, in order: every snapshot column, then RESOLUTION_FIELDS."""
    return [*SNAPSHOTS.columns, *(RESOLUTIONS.column(n) for n in RESOLUTION_FIELDS)]


@dataclass(frozen=True)
class PickSpec:
    """A decision point per window length: window_s -> (offset_ms, tolerance_ms).

    offset_ms = ms(point) of the window start, tolerance_ms = ms(tolerance), both from
    ``features.contract.frac_ms``. Windows of any other length are left out.
    """

    offsets: Mapping[int, tuple[int, int]]

    def __post_init__(self) -> None:
        if not self.offsets:
            raise ValueError("a pick needs at least one window length")
        for w, (off, tol) in self.offsets.items():
            if int(w) <= 0 or int(off) < 0 or int(tol) < 0:
                raise ValueError(f"bad pick for window_s={w}: offset {off}, tolerance {tol}")


@dataclass(frozen=True)
class SlotQuery:
    """What /slots asks for. Times are window starts (slot_ts), epoch seconds, [from, to)."""

    symbol: str | None = None
    window_s: int | None = None
    slot_from: int | None = None
    slot_to: int | None = None
    resolved: bool | None = None  # True: outcome known; False: not yet (or no row); None: any
    pick: PickSpec | None = None  # None: every snapshot; else one row per window
    after: tuple[int, int] | None = None  # keyset cursor: (slot_ts, id) of the last row served
    limit: int = 1000


def _case(column: str, values: Mapping[int, int], params: list[Any]) -> str:
    """``CASE column WHEN ? THEN ? ... END`` with the pairs bound as parameters."""
    parts = []
    for w in sorted(values):
        parts.append("WHEN ? THEN ?")
        params += [int(w), int(values[w])]
    return f"CASE {column} " + " ".join(parts) + " END"


def pick_condition(pick: PickSpec, params: list[Any], alias: str = "s") -> str:
    """The decision-row test for the row ``alias`` of slot_snapshots (appends its params).

    True exactly when the row is the contract's decision row of its window: inside
    [max(S, D - tolerance), D] and no later row of the window in that range.
    """
    lo = {w: max(0, off - tol) for w, (off, tol) in pick.offsets.items()}
    hi = {w: off for w, (off, _tol) in pick.offsets.items()}
    a = alias
    ws = sorted(pick.offsets)
    cond = [f"{a}.window_s IN ({', '.join('?' for _ in ws)})"]
    params += ws
    cond.append(f"{a}.tick_ms >= {a}.slot_ts * 1000 + {_case(f'{a}.window_s', lo, params)}")
    cond.append(f"{a}.tick_ms <= {a}.slot_ts * 1000 + {_case(f'{a}.window_s', hi, params)}")
    later = (f"NOT EXISTS (SELECT 1 FROM {SNAPSHOTS.name} t WHERE t.symbol = {a}.symbol "
             f"AND t.window_s = {a}.window_s AND t.slot_ts = {a}.slot_ts "
             f"AND t.tick_ms > {a}.tick_ms "
             f"AND t.tick_ms <= {a}.slot_ts * 1000 + {_case(f'{a}.window_s', hi, params)})")
    cond.append(later)
    return " AND ".join(cond)


def slots_sql(q: SlotQuery, dialect: str) -> tuple[str, list[Any]]:
    """(SQL, params) of one /slots page for ``dialect`` ("sqlite" or "mysql").

    Rows: ``slot_columns()`` in order, ordered by (slot_ts, id), at most ``q.limit``.
    """
    if dialect not in ("sqlite", "mysql"):
        raise ValueError(f"unknown dialect {dialect!r}")
    params: list[Any] = []
    cols = [f"s.{c.name}" for c in SNAPSHOTS.columns] + [f"r.{n}" for n in RESOLUTION_FIELDS]
    where: list[str] = []
    if q.symbol is not None:
        where.append("s.symbol = ?")
        params.append(q.symbol)
    if q.window_s is not None:
        where.append("s.window_s = ?")
        params.append(int(q.window_s))
    if q.slot_from is not None:
        where.append("s.slot_ts >= ?")
        params.append(int(q.slot_from))
    if q.slot_to is not None:
        where.append("s.slot_ts < ?")
        params.append(int(q.slot_to))
    if q.after is not None:
        slot, last_id = q.after
        where.append("s.slot_ts >= ? AND (s.slot_ts > ? OR s.id > ?)")
        params += [int(slot), int(slot), int(last_id)]
    if q.resolved is True:
        where.append("r.resolved_up IS NOT NULL")
    elif q.resolved is False:
        where.append("r.resolved_up IS NULL")
    if q.pick is not None:
        where.append(pick_condition(q.pick, params))
    sql = (f"SELECT {', '.join(cols)} FROM {SNAPSHOTS.name} s "
           f"LEFT JOIN {RESOLUTIONS.name} r ON r.symbol = s.symbol AND r.window_s = s.window_s "
           f"AND r.slot_ts = s.slot_ts"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY s.slot_ts, s.id LIMIT ?")
    params.append(int(q.limit))
    if dialect == "mysql":
        sql = sql.replace("?", "%s")  # no literal ? or % anywhere in the text above
    return sql, params


def convert_row(values: Sequence[Any], columns: Sequence[Column]) -> dict[str, Any]:
    """A fetched tuple with Python types on both backends (bool/None, int, float, str)."""
    out: dict[str, Any] = {}
    for c, v in zip(columns, values, strict=True):
        if v is not None:
            if c.kind == "bool":
                v = bool(v)
            elif c.kind == "double":
                v = float(v)
            elif c.kind != "str":
                v = int(v)
        out[c.name] = v
    return out


async def fetch_slots(store: Store, q: SlotQuery) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """One page of /slots from ``store``: (rows, cursor of the next page or None at the end).

    Uses the backends' raw ``execute`` (both have it); errors surface as the store's own
    ``StoreUnavailable``.
    """
    sql, params = slots_sql(q, store.url.scheme)
    raw = await store.execute(sql, params)  # type: ignore[attr-defined]
    columns = slot_columns()
    rows = [convert_row(r, columns) for r in raw]
    nxt = (rows[-1]["slot_ts"], rows[-1]["id"]) if len(rows) == q.limit and rows else None
    return rows, nxt


async def window_lengths(store: Store) -> list[int]:
    """The window lengths (families) the store knows, from slot_resolutions (one row per window)."""
    raw = await store.execute(f"SELECT DISTINCT window_s FROM {RESOLUTIONS.name}")  # type: ignore[attr-defined]
    return sorted(int(r[0]) for r in raw if r[0] is not None)


async def latest_slot(store: Store) -> tuple[int | None, float | None]:
    """(newest slot_ts, its newest captured_at) of slot_snapshots: the (slot_ts) index's tail."""
    raw = await store.execute(  # type: ignore[attr-defined]
        f"SELECT MAX(slot_ts) FROM {SNAPSHOTS.name}")
    slot = raw[0][0] if raw else None
    if slot is None:
        return None, None
    raw = await store.execute(  # type: ignore[attr-defined]
        f"SELECT MAX(captured_at) FROM {SNAPSHOTS.name} WHERE slot_ts = {store.MARK}", [int(slot)])
    cap = raw[0][0] if raw else None
    return int(slot), None if cap is None else float(cap)


async def fetch_recent(store: Store, now: float, span: float, *, window_s: int | None = None,
                       symbol: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(snapshot rows, resolution rows) of the windows starting in [now - span, now] (epoch s),
    snapshots ticked at or before ``now``: what ``OnlineFeatures.warm`` takes (it applies the
    point-in-time rule: captured and known by ``now``). ``span``: ``serve.online.warm_span``."""
    lo, hi = math.floor(now - span), math.floor(now)
    snaps = await store.fetch_snapshots(symbol=symbol, window_s=window_s, slot_ts_min=lo, slot_ts_max=hi)
    res = await store.fetch_resolutions(symbol=symbol, window_s=window_s, slot_ts_min=lo, slot_ts_max=hi)
    return [r for r in snaps if r["tick_ms"] <= now * 1000], res


def recent_rows(url: Any, now: float, span: float, *, window_s: int | None = None,
                symbol: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``fetch_recent`` from the store at ``url`` (a ``DbUrl`` or its text), opened and closed
    here: the loader a bot calls once at start. Safe to call from inside an event loop (it then
    runs on a worker thread). A missing SQLite file or an unreachable store is a ``UserError``.
    """
    from slotml.errors import UserError
    from slotml.ingest.store import StoreUnavailable, open_store
    from slotml.settings import DbUrl

    url = DbUrl.parse(url) if isinstance(url, str) else url
    if url.scheme == "sqlite" and url.path is not None and not url.path.is_file():
        raise UserError(f"warm start: no store at {url} (no such file)")

    async def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        store = open_store(url)
        await store.connect()
        try:
            return await fetch_recent(store, now, span, window_s=window_s, symbol=symbol)
        finally:
            await store.close()

    try:
        return _run(load())
    except StoreUnavailable as e:
        raise UserError(f"warm start: {e}") from None


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # a loop is running here: run ours beside it
        return pool.submit(asyncio.run, coro).result()


__all__ = ["PickSpec", "fetch_recent", "recent_rows", "RESOLUTION_FIELDS", "SlotQuery", "fetch_slots", "latest_slot",
           "pick_condition", "slot_columns", "slots_sql", "window_lengths"]
