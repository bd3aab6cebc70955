"""The ``Store`` interface both backends implement, and the row rules they share.

Coercion and validation (``coerce_row``), the fill-NULL merge of resolution rows, typed reads
(``from_db``) and the portable WHERE clause live here once, so SQLite and MySQL cannot drift.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from slotml.errors import UserError
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS, TABLES, TAPE_GAPS, TRADES, Column, Table
from slotml.ingest.store import ddl
from slotml.settings import DbUrl

CHUNK_ROWS = 500  # rows per multi-row statement
_DATA_COLUMNS = {t.name: tuple(t.data_columns) for t in TABLES.values()}
_KINDS = {t.name: {c.name: c.kind for c in t.columns} for t in TABLES.values()}
# Tables written once per key (a replayed row is a no-op); resolutions are upserted instead.
INSERT_ONCE = frozenset(t.name for t in (SNAPSHOTS, TRADES, TAPE_GAPS))


class StoreUnavailable(Exception):
    """The database cannot be reached right now (refused, reset, timed out): retry later."""


class StoreUnreachable(UserError):
    """``connect()`` found the server unreachable (refused, reset, no answer): waiting may fix
    it, unlike a wrong password or a missing database. A ``UserError`` (one line, exit 2) for
    commands that need the database now; the collector catches it and spools instead."""


class RowRejected(ValueError):
    """A row the store cannot take (missing key, wrong type, too long): retrying cannot help."""


def _coerce(table: Table, col: Column, value: Any) -> Any:
    name = col.name
    if value is None:
        return None
    kind = col.kind
    try:
        if kind == "double":
            if isinstance(value, bool):
                raise TypeError("bool")
            v = float(value)
            return v if math.isfinite(v) else None  # NaN/inf: no value (MySQL cannot hold them)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float) and value in (0, 1):
                return bool(value)
            raise TypeError(type(value).__name__)
        if kind in ("int", "bigint", "tinyint"):
            if isinstance(value, bool):
                raise TypeError("bool")
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{value!r} is not integral")
                return int(value)
            return int(value)
        if kind == "str":
            s = str(value)
            if len(s) > col.length:
                raise ValueError(f"{len(s)} characters > {col.length}")
            return s
    except (TypeError, ValueError, OverflowError) as e:
        raise RowRejected(f"{table.name}.{name}: bad value {value!r} ({e})") from None
    raise RowRejected(f"{table.name}.{name}: unknown kind {kind}")  # pragma: no cover


def _check(table: Table, col: Column, v: Any) -> None:
    """The column's value checks (schema.Column lo/hi/choices): a row breaking one is rejected
    rather than stored corrupt."""
    if v is None:
        return
    if col.choices and v not in col.choices:
        raise RowRejected(f"{table.name}.{col.name}: {v!r} is not one of {', '.join(col.choices)}")
    if col.lo is not None and (v <= col.lo if col.lo_open else v < col.lo):
        raise RowRejected(f"{table.name}.{col.name}: {v!r} is "
                          f"{'<=' if col.lo_open else '<'} {col.lo:g}")
    if col.hi is not None and v > col.hi:
        raise RowRejected(f"{table.name}.{col.name}: {v!r} is > {col.hi:g}")


# Per table, per data column: what ``coerce_row`` needs, looked up once instead of per value.
# (name, column, Python type a value may already have, checked, default when absent, NOT NULL,
# in the key). The "already typed" fast path returns what ``_coerce`` would for that type.
_FAST_TYPE = {"double": float, "int": int, "bigint": int, "tinyint": int, "str": str,
              "bool": bool}
_Plan = tuple[tuple[str, Column, type, bool, Any, bool, bool], ...]
_PLANS: dict[str, _Plan] = {
    t.name: tuple(
        (c.name, c, _FAST_TYPE[c.kind], bool(c.choices) or c.lo is not None or c.hi is not None,
         c.default_value if c.default is not None and not c.nullable else None,
         not c.nullable, c.name in t.unique)
        for c in t.data_columns)
    for t in TABLES.values()}


def coerce_row(table: Table, row: Mapping[str, Any], partial: bool = False) -> dict[str, Any]:
    """Validate and normalise one row to the table's data columns (unknown keys are ignored).

    ``partial``: only the key columns are required (resolution upserts); otherwise every NOT
    NULL data column must be present. Raises ``RowRejected``. Called once per row the
    collector writes (the durable writer stores the result as is), so values that already
    have their column's type skip ``_coerce``.
    """
    out: dict[str, Any] = {}
    for name, col, fast, checked, absent, required, keyed in _PLANS[table.name]:
        if name in row:
            v = row[name]
            if v is not None:
                t = type(v)
                if t is not fast:
                    v = _coerce(table, col, v)
                elif t is float:
                    if not math.isfinite(v):
                        v = None  # NaN/inf: no value (MySQL cannot hold them)
                elif t is str and len(v) > col.length:
                    v = _coerce(table, col, v)  # raises: too long
            if v is None:
                if col.null_is_default:
                    v = col.default_value
            if checked and v is not None:
                _check(table, col, v)
            out[name] = v
        elif absent is not None:
            v = out[name] = absent
        else:
            v = None
        if v is None and required and (not partial or keyed):
            raise RowRejected(f"{table.name}: {name} is required")
    if table is SNAPSHOTS:
        _check_book(out)
    if table is TAPE_GAPS and out["to_ts"] < out["from_ts"]:
        raise RowRejected(f"{table.name}: to_ts {out['to_ts']!r} is before from_ts {out['from_ts']!r}")
    return out


_BOOK_PRICES = tuple(c.name for c in SNAPSHOTS.columns
                     if c.kind == "double" and c.name.startswith(("bid_", "ask_"))
                     and "_size_" not in c.name)
_BOOK_SIZES = tuple(c.name for c in SNAPSHOTS.columns if "_size_" in c.name)


def _check_book(row: Mapping[str, Any]) -> None:
    """What a live snapshot row always satisfies (``snapshot.check_top`` NULLs any book that
    does not), checked again on every row from the spool or a rederive: book prices in
    [0, 1], sizes not negative, a token's best bid not above its best ask (the collector's
    own rule is stricter, bid < ask; a backfill may write a locked book)."""
    for name in _BOOK_PRICES:
        v = row.get(name)
        if v is not None and not 0.0 <= v <= 1.0:
            raise RowRejected(f"{SNAPSHOTS.name}.{name}: {v!r} is outside [0, 1]")
    for name in _BOOK_SIZES:
        v = row.get(name)
        if v is not None and v < 0:
            raise RowRejected(f"{SNAPSHOTS.name}.{name}: {v!r} is negative")
    for tok in ("up", "down"):
        bid, ask = row.get(f"bid_{tok}"), row.get(f"ask_{tok}")
        if bid is not None and ask is not None and bid > ask:
            raise RowRejected(f"{SNAPSHOTS.name}: crossed {tok} book, bid {bid!r} > ask {ask!r}")


def present_columns(table: Table, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The data columns any of these coerced rows carries, in table order. ``coerce_row`` leaves
    out a nullable column the writer did not send; an INSERT without it stores the same NULL,
    so rows without depth cost what they cost before the 40 depth columns existed."""
    keys: set[str] = set()
    for r in rows:
        keys.update(r)
    return [c.name for c in _DATA_COLUMNS[table.name] if c.name in keys]


def merge_resolutions(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fold rows sharing a key into one, first known value per column wins (the upsert rule)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = tuple(r[c] for c in RESOLUTIONS.unique)
        cur = merged.get(key)
        if cur is None:
            merged[key] = dict(r)
        else:
            for k, v in r.items():
                if cur.get(k) is None and v is not None:
                    cur[k] = v
    return list(merged.values())


def from_db(table: Table, names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """A fetched row with Python types (bool/None, int, float, str) on both backends."""
    out: dict[str, Any] = {}
    kinds = _KINDS[table.name]
    for n, v in zip(names, values, strict=True):
        if v is not None:
            kind = kinds[n]
            if kind == "bool":
                v = bool(v)
            elif kind == "double":
                v = float(v)
            elif kind != "str":
                v = int(v)
        out[n] = v
    return out


def where_clause(*, symbol: str | None, window_s: int | None, slot_ts_min: int | None,
                 slot_ts_max: int | None, mark: str, dialect: str) -> tuple[str, list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    for col, op, v in (("symbol", "=", symbol), ("window_s", "=", window_s),
                       ("slot_ts", ">=", slot_ts_min), ("slot_ts", "<=", slot_ts_max)):
        if v is not None:
            conds.append(f"{ddl.q(dialect, col)} {op} {mark}")
            params.append(v)
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


class Store(ABC):
    """One database holding the tables of ``ingest.schema`` and schema_version."""

    url: DbUrl

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection(s). UserError (one line, password masked) if that fails."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ensure_schema(self) -> list[str]:
        """Create or upgrade the tables idempotently; returns what it did (empty: nothing)."""

    @abstractmethod
    async def _insert_once(self, table: Table, rows: list[dict[str, Any]]) -> int:
        """Insert coerced rows of ``table`` (a duplicate key is a no-op); how many were new."""

    async def insert_snapshots(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows (a duplicate key is a no-op); returns how many were new."""
        return await self.insert_once(SNAPSHOTS, rows)

    async def insert_trades(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert ``slot_trades`` rows, insert-once like snapshots; returns how many were new."""
        return await self.insert_once(TRADES, rows)

    async def insert_tape_gaps(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert ``slot_tape_gaps`` rows, insert-once on their key; how many were new."""
        return await self.insert_once(TAPE_GAPS, rows)

    async def insert_once(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
        """Validate (``coerce_row``: RowRejected on a bad row, nothing written) and insert."""
        return await self.insert_clean(table, [coerce_row(table, r) for r in rows])

    async def insert_clean(self, table: Table, rows: list[dict[str, Any]]) -> int:
        """Insert rows that are ``coerce_row``'s output already (the durable writer coerces
        each row once, when it accepts it): the same as ``insert_once`` without a second
        coercion per row. A row the database refuses still raises ``RowRejected``."""
        if table.name not in INSERT_ONCE:
            raise ValueError(f"{table.name} is not an insert-once table")
        return await self._insert_once(table, rows) if rows else 0

    @abstractmethod
    async def upsert_resolutions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Fill-NULL upsert; returns how many rows were inserted or really changed."""

    # The backend's placeholder for the shared reads below (identifiers: ddl.q by url.scheme).
    MARK: str = "?"

    @abstractmethod
    async def _select(self, table: Table, where: str, params: list[Any], order: str
                      ) -> list[dict[str, Any]]:
        """SELECT every column of ``table`` with a WHERE suffix, as Python-typed dicts."""

    def _order(self, *cols: str) -> str:
        return ", ".join(ddl.q(self.url.scheme, c) for c in cols)

    async def fetch_resolutions(self, *, symbol: str | None = None, window_s: int | None = None,
                                slot_ts_min: int | None = None, slot_ts_max: int | None = None,
                                unresolved_only: bool = False) -> list[dict[str, Any]]:
        """Ordered by symbol, window_s, slot_ts."""
        where, params = where_clause(symbol=symbol, window_s=window_s, slot_ts_min=slot_ts_min,
                                     slot_ts_max=slot_ts_max, mark=self.MARK, dialect=self.url.scheme)
        if unresolved_only:
            where += (" AND " if where else " WHERE ") + f"{self._order('resolved_up')} IS NULL"
        return await self._select(RESOLUTIONS, where, params,
                                  self._order("symbol", "window_s", "slot_ts"))

    async def fetch_snapshots(self, *, symbol: str | None = None, window_s: int | None = None,
                              slot_ts_min: int | None = None, slot_ts_max: int | None = None
                              ) -> list[dict[str, Any]]:
        """Ordered by symbol, window_s, slot_ts, tick_ms."""
        where, params = where_clause(symbol=symbol, window_s=window_s, slot_ts_min=slot_ts_min,
                                     slot_ts_max=slot_ts_max, mark=self.MARK, dialect=self.url.scheme)
        return await self._select(SNAPSHOTS, where, params,
                                  self._order("symbol", "window_s", "slot_ts", "tick_ms"))

    async def fetch_trades(self, *, symbol: str | None = None, window_s: int | None = None,
                           slot_ts_min: int | None = None, slot_ts_max: int | None = None
                           ) -> list[dict[str, Any]]:
        """Ordered by symbol, window_s, slot_ts, ts_ms, id (the tape in the venue's order)."""
        where, params = where_clause(symbol=symbol, window_s=window_s, slot_ts_min=slot_ts_min,
                                     slot_ts_max=slot_ts_max, mark=self.MARK, dialect=self.url.scheme)
        return await self._select(TRADES, where, params,
                                  self._order("symbol", "window_s", "slot_ts", "ts_ms", "id"))

    async def fetch_tape_gaps(self, *, symbol: str | None = None, window_s: int | None = None,
                              slot_ts_min: int | None = None, slot_ts_max: int | None = None
                              ) -> list[dict[str, Any]]:
        """Ordered by symbol, window_s, slot_ts, from_ts, id."""
        where, params = where_clause(symbol=symbol, window_s=window_s, slot_ts_min=slot_ts_min,
                                     slot_ts_max=slot_ts_max, mark=self.MARK, dialect=self.url.scheme)
        return await self._select(TAPE_GAPS, where, params,
                                  self._order("symbol", "window_s", "slot_ts", "from_ts", "id"))

    @abstractmethod
    async def count(self, table: str) -> int: ...

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url})"

    # helpers shared by the backends
    @staticmethod
    def _table(name: str) -> Table:
        if name not in TABLES and name != "schema_version":
            raise ValueError(f"unknown table {name!r}")
        return TABLES.get(name, SNAPSHOTS)

    @staticmethod
    def _resolution_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return merge_resolutions([coerce_row(RESOLUTIONS, r, partial=True) for r in rows])
