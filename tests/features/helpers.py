"""Helpers for the feature tests: in-memory DuckDB tables typed from ingest/schema.py, the
reference implementation run over whole tables, and a NaN-aware comparison."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import duckdb

from slotml.features.contract import FEATURES, frac_ms
from slotml.features.reference import features_at
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS, Table

DUCK_TYPES = {"int": "INTEGER", "bigint": "BIGINT", "tinyint": "TINYINT", "double": "DOUBLE",
              "bool": "BOOLEAN", "str": "VARCHAR"}


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty slot_snapshots / slot_resolutions with ingest/schema.py's columns and types."""
    for t in (SNAPSHOTS, RESOLUTIONS):
        cols = ", ".join(f"{c.name} {DUCK_TYPES[c.kind]}" for c in t.columns)
        con.execute(f"CREATE OR REPLACE TABLE {t.name} ({cols})")


def insert(con: duckdb.DuckDBPyConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert dict rows (missing columns -> NULL, id/updated_at filled in)."""
    names = table.names
    for i, row in enumerate(rows):
        full = {"id": i + 1, "updated_at": 0.0, **row}
        vals = [full.get(n) for n in names]
        con.execute(f"INSERT INTO {table.name} VALUES ({', '.join('?' * len(names))})", vals)


def snap(symbol: str, slot_ts: int, tick_ms: int, window_s: int = 900, **kw: Any) -> dict[str, Any]:
    """A plausible snapshot row; override any column by keyword."""
    row = {
        "symbol": symbol, "window_s": window_s, "slot_ts": slot_ts, "tick_ms": tick_ms,
        "captured_at": tick_ms / 1000 + 0.01, "minutes_into_slot": (tick_ms / 1000 - slot_ts) / 60,
        "bid_up": 0.55, "ask_up": 0.56, "bid_down": 0.44, "ask_down": 0.45,
        "bid_size_up": 100.0, "ask_size_up": 50.0, "bid_size_down": 80.0, "ask_size_down": 120.0,
        "spread_up": 0.01, "spread_down": 0.01, "chainlink_price": 100.0, "chainlink_twap": 100.0,
        "dir_move_pct": 0.01, "abs_move_pct": 0.01, "spot_move_pct": 0.02, "book_age_s": 1.0,
        "hour_utc": 0, "day_of_week": 0,
    }
    row.update(kw)
    return row


def rows_by_window(con: duckdb.DuckDBPyConnection) -> tuple[dict, dict]:
    """(snapshot dict rows grouped by window key, resolution rows by window key)."""
    snaps: dict[tuple, list[dict]] = defaultdict(list)
    for r in con.sql("SELECT * FROM slot_snapshots").to_arrow_table().to_pylist():
        snaps[(r["symbol"], r["window_s"], r["slot_ts"])].append(r)
    res = {(r["symbol"], r["window_s"], r["slot_ts"]): r
           for r in con.sql("SELECT * FROM slot_resolutions").to_arrow_table().to_pylist()}
    return snaps, res


def reference_set(con: duckdb.DuckDBPyConnection, points: tuple[float, ...], stats: Any,
                  **kw: Any) -> dict[tuple, dict[str, Any]]:
    """The reference features for every window and point, keyed (symbol, window_s, slot_ts, point)."""
    snaps, res = rows_by_window(con)
    out: dict[tuple, dict[str, Any]] = {}
    for (sym, w, slot), rows in snaps.items():
        prev = res.get((sym, w, slot - w))
        earlier = [x for j in range(1, 5) for x in snaps.get((sym, w, slot - j * w), [])]
        for p in points:
            d = slot * 1000 + frac_ms(p, w)
            f = features_at(rows, prev, d, stats, earlier_rows=earlier, **kw)
            if f is not None:
                out[(sym, w, slot, p)] = f
    return out


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def diff_features(sql_rows: dict[tuple, dict], ref_rows: dict[tuple, dict],
                  tol: float = 1e-9) -> list[str]:
    """Human-readable differences (empty = identical within tol)."""
    out = []
    for k in sorted(set(sql_rows) ^ set(ref_rows)):
        out.append(f"{k}: only in {'sql' if k in sql_rows else 'reference'}")
    for k in sorted(set(sql_rows) & set(ref_rows)):
        s, r = sql_rows[k], ref_rows[k]
        if s["tick_ms"] != r["tick_ms"]:
            out.append(f"{k}: tick_ms sql={s['tick_ms']} ref={r['tick_ms']}")
        for name in FEATURES:
            if not close(s[name], r[name], tol):
                out.append(f"{k}: {name} sql={s[name]!r} ref={r[name]!r}")
    return out


def keyed(table: Any) -> dict[tuple, dict[str, Any]]:
    return {(r["symbol"], r["window_s"], r["slot_ts"], r["point"]): r for r in table.to_pylist()}
