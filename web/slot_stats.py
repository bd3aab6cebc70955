"""Aggregates of the collected data over the lake, in DuckDB: the API's daily summary and the
dashboard's data-health views (snapshots per window, collection gaps, feed outages, unresolved
windows).

Each function takes a DuckDB connection with ``slot_snapshots`` / ``slot_resolutions``
(``slotml.lake.connect()``) and returns plain dict rows, so the API serialises them, the
dashboard tables them and tests compare them with their own queries. Filters are bound
parameters; the aggregation stays in DuckDB (a year is millions of rows).
"""

from __future__ import annotations

from typing import Any

# A UTC date from epoch seconds without a session time zone: 1970-01-01 + whole days.
DAY_SQL = "CAST(DATE '1970-01-01' + CAST({col} // 86400 AS INTEGER) AS VARCHAR)"
# A snapshot stamped inside its own window (all the collector writes: one row per window in
# progress per tick). Ticks and outage runs use only these, so every tick of an asset and
# family has one row and one order (no ties between overlapping windows' rows).
IN_WINDOW_SQL = ("tick_ms >= CAST(slot_ts AS BIGINT) * 1000 "
                 "AND tick_ms < (CAST(slot_ts AS BIGINT) + window_s) * 1000")


def rows(con: Any, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Run ``sql`` and return dict rows (DuckDB types -> Python)."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def window_filter(symbol: str | None = None, window_s: int | None = None,
                  slot_from: int | None = None, slot_to: int | None = None,
                  alias: str = "") -> tuple[str, list[Any]]:
    """A WHERE predicate on (symbol, window_s, slot_ts in [from, to)) and its params."""
    a = f"{alias}." if alias else ""
    conds, params = ["TRUE"], []
    for cond, v in ((f"{a}symbol = ?", symbol), (f"{a}window_s = ?", window_s),
                    (f"{a}slot_ts >= ?", slot_from), (f"{a}slot_ts < ?", slot_to)):
        if v is not None:
            conds.append(cond)
            params.append(v)
    return " AND ".join(conds), params


def _windows_cte(where: str) -> str:
    """Every window seen in either table, with its snapshot count and resolution fields."""
    return f"""
snaps AS (
  SELECT symbol, window_s, slot_ts, count(*) AS n
  FROM slot_snapshots WHERE {where} GROUP BY symbol, window_s, slot_ts
),
res AS (
  SELECT symbol, window_s, slot_ts, resolved_up, final_price, price_to_beat, official_final_price
  FROM slot_resolutions WHERE {where}
),
win AS (
  SELECT coalesce(s.symbol, r.symbol) AS symbol, coalesce(s.window_s, r.window_s) AS window_s,
         coalesce(s.slot_ts, r.slot_ts) AS slot_ts, coalesce(s.n, 0) AS n,
         r.resolved_up, r.final_price >= r.price_to_beat AS measured_up,
         r.final_price, r.official_final_price
  FROM snaps s FULL OUTER JOIN res r
    ON r.symbol = s.symbol AND r.window_s = s.window_s AND r.slot_ts = s.slot_ts
)"""


def summary_rows(con: Any, *, symbol: str | None = None, window_s: int | None = None,
                 slot_from: int | None = None, slot_to: int | None = None) -> list[dict[str, Any]]:
    """Per (symbol, window_s, UTC day of the window start): windows, snapshots, snapshots per
    window, windows without any snapshot, resolved windows and rate, and measured-vs-official
    disagreements (outcome, and the largest final-price difference in basis points)."""
    where, params = window_filter(symbol, window_s, slot_from, slot_to)
    sql = f"""
WITH {_windows_cte(where)}
SELECT symbol, window_s, {DAY_SQL.format(col="slot_ts")} AS day,
  count(*) AS windows,
  CAST(sum(n) AS BIGINT) AS snapshots,
  avg(n) FILTER (WHERE n > 0) AS snapshots_per_window,
  count(*) FILTER (WHERE n = 0) AS windows_without_snapshots,
  count(resolved_up) AS resolved,
  count(resolved_up) / count(*) AS resolution_rate,
  count(*) FILTER (WHERE resolved_up IS NOT NULL AND measured_up IS NOT NULL) AS compared,
  count(*) FILTER (WHERE resolved_up IS NOT NULL AND measured_up IS NOT NULL
                   AND resolved_up <> measured_up) AS disagreements,
  max(abs(final_price / nullif(official_final_price, 0) - 1)) * 10000 AS max_final_diff_bp
FROM win
GROUP BY ALL
ORDER BY day, symbol, window_s
"""
    # the filter appears twice (snaps, res)
    return rows(con, sql, params + params)


def grid_interval_ms(con: Any, window_s: int, slot_from: int | None = None,
                     slot_to: int | None = None) -> int | None:
    """The family's snapshot cadence: the most common step between consecutive distinct ticks
    (in-window rows; on a tie the shorter step)."""
    where, params = window_filter(None, window_s, slot_from, slot_to)
    r = con.execute(f"""
SELECT d FROM (
  SELECT tick_ms - lag(tick_ms) OVER (ORDER BY tick_ms) AS d
  FROM (SELECT DISTINCT tick_ms FROM slot_snapshots WHERE {where} AND {IN_WINDOW_SQL})
) WHERE d > 0 GROUP BY d ORDER BY count(*) DESC, d LIMIT 1""", params).fetchone()
    return None if r is None or r[0] is None else int(r[0])


def snapshots_per_window(con: Any, window_s: int, slot_from: int | None = None,
                         slot_to: int | None = None) -> list[dict[str, Any]]:
    """Per (UTC day, symbol): windows with snapshots, mean snapshots per window, the expected
    count (window / cadence) and the windows short of it (gaps inside windows)."""
    step = grid_interval_ms(con, window_s, slot_from, slot_to)
    if not step:
        return []
    expected = max(1, (window_s * 1000) // step)
    where, params = window_filter(None, window_s, slot_from, slot_to)
    return rows(con, f"""
WITH w AS (
  SELECT symbol, slot_ts, count(*) AS n FROM slot_snapshots
  WHERE {where} AND {IN_WINDOW_SQL}
  GROUP BY symbol, slot_ts
)
SELECT {DAY_SQL.format(col="slot_ts")} AS day, symbol, count(*) AS windows,
  round(avg(n), 2) AS snapshots_per_window, CAST(? AS INTEGER) AS expected,
  count(*) FILTER (WHERE n < ?) AS windows_short
FROM w GROUP BY ALL ORDER BY day, symbol""", [*params, expected, expected])


def collection_gaps(con: Any, window_s: int, slot_from: int | None = None,
                    slot_to: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Stretches with no snapshot of ANY asset of the family (the collector was down or cut
    off): consecutive distinct (in-window) ticks more than 1.5 cadences apart, longest first."""
    step = grid_interval_ms(con, window_s, slot_from, slot_to)
    if not step:
        return []
    where, params = window_filter(None, window_s, slot_from, slot_to)
    return rows(con, f"""
WITH t AS (
  SELECT tick_ms, lag(tick_ms) OVER (ORDER BY tick_ms) AS prev
  FROM (SELECT DISTINCT tick_ms FROM slot_snapshots WHERE {where} AND {IN_WINDOW_SQL})
)
SELECT epoch_ms(prev) AS last_before, epoch_ms(tick_ms) AS first_after,
  CAST(round((tick_ms - prev) / ?) - 1 AS INTEGER) AS missing_ticks,
  (tick_ms - prev) / 1000.0 AS seconds
FROM t WHERE tick_ms - prev > 1.5 * ?
ORDER BY tick_ms - prev DESC, prev LIMIT ?""", [*params, step, step, int(limit)])


def feed_outages(con: Any, window_s: int, slot_from: int | None = None,
                 slot_to: int | None = None, *, stale_book_s: float = 60.0, min_ticks: int = 2,
                 limit: int = 50) -> list[dict[str, Any]]:
    """Runs of consecutive snapshots (per asset) where a feed failed: ``price`` (no Chainlink
    value), ``book`` (all four best prices NULL) or ``stale book`` (book_age_s above
    ``stale_book_s``). Runs of at least ``min_ticks`` snapshots, longest first. In-window rows
    only, so an asset's rows of a family are one sequence in tick order."""
    where, params = window_filter(None, window_s, slot_from, slot_to)
    return rows(con, f"""
WITH s AS (
  SELECT symbol, tick_ms,
    CASE WHEN chainlink_price IS NULL THEN 'price'
         WHEN bid_up IS NULL AND ask_up IS NULL AND bid_down IS NULL AND ask_down IS NULL THEN 'book'
         WHEN book_age_s > ? THEN 'stale book' END AS kind
  FROM slot_snapshots WHERE {where} AND {IN_WINDOW_SQL}
),
runs AS (
  SELECT *, row_number() OVER (PARTITION BY symbol ORDER BY tick_ms)
          - row_number() OVER (PARTITION BY symbol, kind ORDER BY tick_ms) AS run
  FROM s
)
SELECT symbol, kind, epoch_ms(min(tick_ms)) AS start, epoch_ms(max(tick_ms)) AS "end",
  count(*) AS snapshots, (max(tick_ms) - min(tick_ms)) / 1000.0 AS seconds
FROM runs WHERE kind IS NOT NULL
GROUP BY symbol, kind, run HAVING count(*) >= ?
ORDER BY count(*) DESC, min(tick_ms), symbol, kind LIMIT ?""", [float(stale_book_s), *params, int(min_ticks),
                                                  int(limit)])


def unresolved_windows(con: Any, window_s: int, slot_from: int | None = None,
                       slot_to: int | None = None, *, grace_windows: float = 8.0
                       ) -> list[dict[str, Any]]:
    """Per (UTC day, symbol): windows that ended more than ``grace_windows`` windows before the
    newest data and still have no official outcome (including windows with snapshots but no
    resolution row at all)."""
    where, params = window_filter(None, window_s, slot_from, slot_to)
    return rows(con, f"""
WITH {_windows_cte(where)},
newest AS (SELECT max(slot_ts) AS t FROM win)
SELECT {DAY_SQL.format(col="slot_ts")} AS day, symbol, count(*) AS windows,
  count(*) FILTER (WHERE resolved_up IS NULL) AS unresolved,
  count(*) FILTER (WHERE resolved_up IS NULL AND final_price IS NULL) AS no_final_price
FROM win, newest
WHERE slot_ts + window_s * (1 + ?) <= newest.t + window_s
GROUP BY ALL HAVING count(*) FILTER (WHERE resolved_up IS NULL) > 0
ORDER BY day, symbol""", [*params, *params, float(grace_windows)])


def families(con: Any) -> list[dict[str, Any]]:
    """(symbol, window_s, windows) present in the lake, for the dashboard's pickers."""
    return rows(con, """
SELECT symbol, window_s, count(DISTINCT slot_ts) AS windows
FROM slot_snapshots GROUP BY ALL ORDER BY window_s DESC, symbol""")
