"""The training set in DuckDB SQL: one row per (window, decision point), per ``contract.py``.

Works on any DuckDB connection that has relations named ``slot_snapshots`` and
``slot_resolutions`` with the columns of ``ingest/schema.py`` (``slotml.lake.connect()`` gives
views over the lake; tests create tables in memory). Returns a ``pyarrow.Table``.

Everything fitted (the per-asset move volatility behind ``move_z``) comes in as ``stats`` and
goes into the query as bound parameters, so the same SQL serves any split: fit on training days
with ``fit_stats``, then build every row with those stats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slotml.features.contract import (
    CONTRACT_VERSION,
    DEFAULT_LOOKBACK,
    DEFAULT_POINTS,
    DEFAULT_TOLERANCE,
    FEATURES,
    KEYS,
    LABELS,
    PREV_MEASURED,
    PREV_OFFICIAL,
    PREV_UNKNOWN,
    PRIOR_MINUTES,
    REGIME_WINDOWS,
    asset_codes,
    metadata,
)
from slotml.venue import SCALE_MINUTES

# The decision row's columns (fetched back by a hash join on its key once the ASOF found it).
_ROW_COLS = (
    "dir_move_pct", "spot_move_pct", "bid_up", "ask_up", "bid_down", "ask_down",
    "bid_size_up", "ask_size_up", "bid_size_down", "ask_size_down", "chainlink_price",
    "chainlink_twap",
)

# ms(frac) of contract.py, in the same IEEE order: floor(frac * window_s * 1000 + 0.5)
_MS = "CAST(floor({frac} * {w} * CAST(1000 AS DOUBLE) + CAST(0.5 AS DOUBLE)) AS BIGINT)"
# minutes(ms) of contract.py: SCALE_MINUTES * ms / (window_s * 1000)
_MIN = "(CAST(" + repr(SCALE_MINUTES) + " AS DOUBLE) * ({ms}) / ({w} * 1000))"

# lead_move_pct of contract.py, in the same IEEE order (NULL when a factor is missing)
_LEAD = ("((CAST(1 AS DOUBLE) + r.dir_move_pct / 100) * r.chainlink_price "
         "/ nullif(r.chainlink_twap, 0) - 1) * 100")
_INTO = _MIN.format(ms="r.tick_ms - r.slot_ts * 1000", w="r.window_s")
_LEFT = "(CAST(" + repr(SCALE_MINUTES) + " AS DOUBLE) - " + _INTO + ")"
# prev_up's two branches of contract.py: the official outcome, else the measured one, as known at D
_PREV_OFFICIAL = "p.resolved_up IS NOT NULL AND p.resolved_at < r.decision_ms / CAST(1000 AS DOUBLE)"
_PREV_MEASURED = ("p.final_price IS NOT NULL AND p.price_to_beat IS NOT NULL "
                  "AND p.final_seen_at < r.decision_ms / CAST(1000 AS DOUBLE)")

# prev_vol_k of contract.py from the regime sums g.q_k (squared increments) / g.t_k (ms spanned)
_REGIME = ("CASE WHEN v.sigma > 0 AND g.t_{k} > 0 THEN sqrt(g.q_{k} / "
           + _MIN.format(ms="g.t_{k}", w="r.window_s") + ") / v.sigma END")

# realised_vol's sums over the rows so far (0, 0 with fewer than two moves)
_HAS_CUR = "f.last_mv_tick > f.first_mv_tick"
_VOL = ("CASE WHEN " + _HAS_CUR + " THEN sqrt(f.cum_sq / "
        + _MIN.format(ms="f.last_mv_tick - f.first_mv_tick", w="r.window_s") + ") END")
_K = max(REGIME_WINDOWS)
_HAS_PRIOR = f"g.t_{_K} > 0"
# lead_blend_z's b: sqrt((Q + P * V4^2) / (T + P)), the P terms only when V4 is known
_BLEND = (
    "sqrt((CASE WHEN " + _HAS_CUR + " THEN f.cum_sq ELSE 0 END"
    f" + CASE WHEN {_HAS_PRIOR} THEN {PRIOR_MINUTES!r} * (g.q_{_K} / "
    + _MIN.format(ms=f"g.t_{_K}", w="r.window_s") + ") ELSE 0 END)"
    " / nullif(CASE WHEN " + _HAS_CUR + " THEN "
    + _MIN.format(ms="f.last_mv_tick - f.first_mv_tick", w="r.window_s") + " ELSE 0 END"
    f" + CASE WHEN {_HAS_PRIOR} THEN {PRIOR_MINUTES!r} ELSE 0 END, 0))"
)


def _lead_over(vol: str) -> str:
    """lead_move_pct in units of the volatility ``vol`` expected over the time left."""
    return (f"CASE WHEN ({vol}) > 0 AND {_LEFT} > 0 "
            f"THEN {_LEAD} / (({vol}) * sqrt({_LEFT})) END")


# One feature = one SQL expression over the decision row `r` (with the lookback row's
# r.lb_tick / r.lb_move and the instant r.decision_ms), the running sums `f`, the earlier
# windows' regime sums `g`, the previous window's resolution `p`, the asset's sigma `v` and its
# code `a`.
_FEATURE_SQL: dict[str, str] = {
    "dir_move_pct": "r.dir_move_pct",
    "abs_move_pct": "abs(r.dir_move_pct)",
    "spot_move_pct": "r.spot_move_pct",
    "minutes_into": _INTO,
    "minutes_left": _LEFT,
    "bid_up": "r.bid_up",
    "ask_up": "r.ask_up",
    "bid_down": "r.bid_down",
    "ask_down": "r.ask_down",
    "up_mid": "(r.bid_up + r.ask_up) / 2",
    "spread_up": "r.ask_up - r.bid_up",
    "spread_down": "r.ask_down - r.bid_down",
    "spread_ratio": "(r.ask_up - r.bid_up) / nullif(r.ask_down - r.bid_down, 0)",
    "imbalance_up": "(r.bid_size_up - r.ask_size_up) / nullif(r.bid_size_up + r.ask_size_up, 0)",
    "imbalance_down": "(r.bid_size_down - r.ask_size_down) / nullif(r.bid_size_down + r.ask_size_down, 0)",
    "move_velocity": "(r.dir_move_pct - r.lb_move) / "
                     + _MIN.format(ms="nullif(r.tick_ms - r.lb_tick, 0)", w="r.window_s"),
    "realised_vol": _VOL,
    "move_z": "CASE WHEN v.sigma > 0 AND " + _LEFT + " > 0 "
              "THEN r.dir_move_pct / (v.sigma * sqrt(" + _LEFT + ")) END",
    "lead_move_pct": _LEAD,
    "lead_move_z": "CASE WHEN v.sigma > 0 AND " + _LEFT + " > 0 "
                   "THEN " + _LEAD + " / (v.sigma * sqrt(" + _LEFT + ")) END",
    **{f"prev_vol_{k}": _REGIME.replace("{k}", str(k)) for k in REGIME_WINDOWS},
    "lead_rv_z": _lead_over(_VOL),
    "lead_blend_z": _lead_over(_BLEND),
    "snapshot_count": "f.n_so_far",
    "hour": "(r.tick_ms // 3600000) % 24",
    "weekday": "(r.tick_ms // 86400000 + 3) % 7",
    "asset": "a.code",
    "prev_up": f"CASE WHEN {_PREV_OFFICIAL} THEN CAST(p.resolved_up AS INTEGER) "
               f"WHEN {_PREV_MEASURED} THEN CAST(p.final_price >= p.price_to_beat AS INTEGER) END",
    "prev_known_source": f"CASE WHEN {_PREV_OFFICIAL} THEN {PREV_OFFICIAL} "
                         f"WHEN {_PREV_MEASURED} THEN {PREV_MEASURED} ELSE {PREV_UNKNOWN} END",
}
assert tuple(_FEATURE_SQL) == FEATURES, "the SQL must define exactly the contract's features, in order"


def _filters(window_s: int | None, symbols: Sequence[str] | None, slot_from: int | None,
             slot_to: int | None) -> tuple[str, dict[str, Any]]:
    """The predicate on the snapshot rows read (``slot_from`` reaches back the windows
    prev_vol_k pools; the output starts at ``$f_slot_from`` all the same) and its parameters."""
    where, params = ["tick_ms >= CAST(slot_ts AS BIGINT) * 1000"], {}
    if window_s is not None:
        where.append("window_s = $f_window_s")
        params["f_window_s"] = int(window_s)
    if symbols:
        where.append("list_contains($f_symbols, symbol)")
        params["f_symbols"] = [str(s) for s in symbols]
    params["f_slot_from"] = None if slot_from is None else int(slot_from)
    if slot_from is not None:
        back = max(REGIME_WINDOWS)
        if window_s is not None:  # a constant bound, so the lake's row-group statistics prune
            params["f_read_from"] = int(slot_from) - back * int(window_s)
            where.append("slot_ts >= $f_read_from")
        else:
            where.append(f"slot_ts + {back} * window_s >= $f_slot_from")
    if slot_to is not None:
        where.append("slot_ts < $f_slot_to")
        params["f_slot_to"] = int(slot_to)
    return " AND ".join(where), params


def training_set_sql(feature_type: str = "FLOAT", resolved_only: bool = False,
                     where: str = "TRUE") -> str:
    """The query. Named parameters: $points (DOUBLE[]), $tolerance, $lookback, $vol_symbols,
    $vol_sigmas, $default_sigma, $asset_symbols, $asset_codes, $f_slot_from (first window
    start to output, NULL = all), plus those of ``where``.

    Cost model (4.2M rows, 2 cores): sorts dominate (window functions with frames and ASOF
    joins sort), so there are two, both of narrow rows on an integer window key: a ``lag``
    pass and one ASOF join serving the decision and the lookback rows. The running sums are a
    hash aggregation; the decision row's wide columns come back by a hash join on its key.
    """
    feats = ",\n    ".join(
        f"coalesce(CAST({expr} AS {feature_type}), CAST('NaN' AS {feature_type})) AS {name}"
        for name, expr in _FEATURE_SQL.items()
    )
    row_cols = ", ".join(_ROW_COLS)
    regime_sums = ", ".join(
        f"sum(c.q) FILTER (WHERE b.j <= {k}) AS q_{k}, sum(c.t) FILTER (WHERE b.j <= {k}) AS t_{k}"
        for k in REGIME_WINDOWS)
    return f"""
WITH src AS (
  SELECT symbol, window_s, CAST(slot_ts AS BIGINT) AS slot_ts, tick_ms, {row_cols}
  FROM slot_snapshots WHERE {where}
),
syms AS (
  SELECT symbol, CAST(row_number() OVER (ORDER BY symbol) AS BIGINT) AS code
  FROM (SELECT DISTINCT symbol FROM src)
),
-- wkey: one BIGINT per window (slot_ts, window_s < 2^20 s, symbol code < 2^10)
snaps AS MATERIALIZED (
  SELECT CASE WHEN s.window_s BETWEEN 1 AND 1048575 AND y.code < 1024
              THEN (s.slot_ts * 1048576 + s.window_s) * 1024 + y.code
              ELSE error('window_s outside 1..1048575 or more than 1023 symbols') END AS wkey,
         s.*
  FROM src s JOIN syms y ON y.symbol = s.symbol
),
-- sort 1 (narrow): the change of the move since the previous non-missing move
rows AS MATERIALIZED (
  SELECT wkey, window_s, slot_ts, tick_ms, dir_move_pct,
    dir_move_pct - lag(dir_move_pct IGNORE NULLS) OVER (PARTITION BY wkey ORDER BY tick_ms) AS d_move
  FROM snaps
),
pts AS (SELECT unnest(CAST($points AS DOUBLE[])) AS point),
grid AS (
  SELECT w.wkey, w.window_s, pt.point,
    w.slot_ts * 1000 + {_MS.format(frac="pt.point", w="w.window_s")} AS decision_ms
  FROM (SELECT DISTINCT wkey, window_s, slot_ts FROM rows
        WHERE $f_slot_from IS NULL OR slot_ts >= $f_slot_from) w CROSS JOIN pts pt
),
-- sort 2: ONE ASOF join answers both lookups, the decision row (latest row at or before the
-- decision instant D; never "nearest") and the lookback row (latest at or before D - lookback)
probes AS (
  SELECT wkey, window_s, point, decision_ms, 0 AS kind, decision_ms AS at FROM grid
  UNION ALL
  SELECT wkey, window_s, point, decision_ms, 1 AS kind,
         decision_ms - {_MS.format(frac="$lookback", w="window_s")} AS at FROM grid
),
matched AS MATERIALIZED (
  SELECT g.wkey, g.window_s, g.point, g.decision_ms, g.kind, s.tick_ms, s.dir_move_pct
  FROM probes g ASOF JOIN rows s ON s.wkey = g.wkey AND g.at >= s.tick_ms
),
dec AS (
  SELECT d.wkey, d.point, d.decision_ms, d.tick_ms, l.tick_ms AS lb_tick, l.dir_move_pct AS lb_move
  FROM matched d
  LEFT JOIN matched l ON l.kind = 1 AND l.wkey = d.wkey AND l.point = d.point
  WHERE d.kind = 0
    AND d.decision_ms - d.tick_ms <= {_MS.format(frac="$tolerance", w="d.window_s")}
),
-- running quantities over the rows so far (tick_ms <= decision instant): hash aggregation
so_far AS (
  SELECT r.wkey, pt.point,
    count(*) AS n_so_far,
    sum(r.d_move * r.d_move) AS cum_sq,
    min(CASE WHEN r.dir_move_pct IS NOT NULL THEN r.tick_ms END) AS first_mv_tick,
    max(CASE WHEN r.dir_move_pct IS NOT NULL THEN r.tick_ms END) AS last_mv_tick
  FROM rows r JOIN pts pt
    ON r.tick_ms <= r.slot_ts * 1000 + {_MS.format(frac="pt.point", w="r.window_s")}
  GROUP BY r.wkey, pt.point
),
-- prev_vol_k: each window's closed rows (tick before its end) give Q (squared increments) and
-- T (ms its non-missing moves span); window j back is wkey - j * window_s * 2^30
closed AS (
  SELECT wkey, window_s, coalesce(sum(d_move * d_move), 0) AS q,
    coalesce(max(CASE WHEN dir_move_pct IS NOT NULL THEN tick_ms END)
             - min(CASE WHEN dir_move_pct IS NOT NULL THEN tick_ms END), 0) AS t
  FROM rows WHERE tick_ms < (slot_ts + window_s) * 1000 GROUP BY wkey, window_s
),
regime AS (
  SELECT w.wkey, {regime_sums}
  FROM (SELECT DISTINCT wkey, window_s FROM grid) w
  CROSS JOIN range(1, {max(REGIME_WINDOWS) + 1}) b(j)
  JOIN closed c ON c.wkey = w.wkey - b.j * w.window_s * 1073741824
  GROUP BY w.wkey
),
-- the decision row's book and moves: a hash join on its unique key
r AS (
  SELECT d.point, d.decision_ms, d.lb_move, d.lb_tick, s.*
  FROM dec d JOIN snaps s ON s.wkey = d.wkey AND s.tick_ms = d.tick_ms
),
vol AS (SELECT unnest(CAST($vol_symbols AS VARCHAR[])) AS symbol,
               unnest(CAST($vol_sigmas AS DOUBLE[])) AS sigma),
assets AS (SELECT unnest(CAST($asset_symbols AS VARCHAR[])) AS symbol,
                  unnest(CAST($asset_codes AS INTEGER[])) AS code),
sigmas AS (SELECT y.symbol, coalesce(vol.sigma, CAST($default_sigma AS DOUBLE)) AS sigma
           FROM syms y LEFT JOIN vol ON vol.symbol = y.symbol)
SELECT
    r.symbol, r.window_s, r.slot_ts, r.point, r.tick_ms,
    r.decision_ms / CAST(1000 AS DOUBLE) AS decision_ts,
    {feats},
    CAST(c.resolved_up AS TINYINT) AS resolved_up,
    CAST(c.final_price >= c.price_to_beat AS TINYINT) AS measured_up
FROM r
JOIN so_far f ON f.wkey = r.wkey AND f.point = r.point
LEFT JOIN regime g ON g.wkey = r.wkey
LEFT JOIN slot_resolutions p
  ON p.symbol = r.symbol AND p.window_s = r.window_s AND p.slot_ts = r.slot_ts - r.window_s
LEFT JOIN slot_resolutions c
  ON c.symbol = r.symbol AND c.window_s = r.window_s AND c.slot_ts = r.slot_ts
LEFT JOIN sigmas v ON v.symbol = r.symbol
LEFT JOIN assets a ON a.symbol = r.symbol
{"WHERE c.resolved_up IS NOT NULL" if resolved_only else ""}
ORDER BY r.slot_ts, r.symbol, r.window_s, r.point
"""


def _stat_params(stats: Mapping[str, Any] | None) -> dict[str, Any]:
    per = dict((stats or {}).get("move_vol_per_min") or {})
    default = (stats or {}).get("default_move_vol_per_min")
    syms = sorted(per)
    return {"vol_symbols": syms, "vol_sigmas": [float(per[s]) for s in syms],
            "default_sigma": None if default is None else float(default)}


def build_training_set(
    con: Any,
    points: Sequence[float] = DEFAULT_POINTS,
    stats: Mapping[str, Any] | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    lookback: float = DEFAULT_LOOKBACK,
    resolved_only: bool = False,
    window_s: int | None = None,
    symbols: Sequence[str] | None = None,
    slot_from: int | None = None,
    slot_to: int | None = None,
    float64: bool = False,
    contract: int | str = CONTRACT_VERSION,
) -> Any:
    """The training set as a ``pyarrow.Table``: KEYS, FEATURES (float32; ``float64=True`` for
    parity checks), LABELS; one row per window and decision point that has a decision row.

    ``stats``: from ``fit_stats`` on training days (None -> ``move_z`` is NaN).
    ``resolved_only``: keep only windows with an official outcome (the rows train fits on).
    ``slot_from``/``slot_to``: window starts in [from, to) epoch s; ``window_s``/``symbols``
    filter the family/assets. ``contract``: the feature-contract version whose asset table codes
    ``asset`` (a model's own ``feature_contract`` when scoring it; training uses the current).
    Rows come ordered by slot_ts, symbol, window_s, point.
    Raises ValueError on a lake with duplicate snapshot keys (it would duplicate rows).
    """
    if not points:
        raise ValueError("no decision points")
    for f in (*points, tolerance, lookback):
        if not 0.0 < float(f) < 1.0:
            raise ValueError(f"fractions of the window must lie in (0, 1), got {f!r}")
    codes = asset_codes(contract)  # ValueError for a version this code does not know
    where, params = _filters(window_s, symbols, slot_from, slot_to)
    sql = training_set_sql("DOUBLE" if float64 else "FLOAT", resolved_only, where)
    params.update(
        points=[float(p) for p in points], tolerance=float(tolerance), lookback=float(lookback),
        asset_symbols=list(codes), asset_codes=list(codes.values()),
        **_stat_params(stats),
    )
    try:
        table = con.sql(sql, params=params).to_arrow_table()
    except Exception as e:  # duckdb's InvalidInputException from error() in the query
        if "window_s outside" in str(e):
            raise ValueError(str(e).split("Error: ")[-1]) from None
        raise
    keys = ["symbol", "window_s", "slot_ts", "point"]
    if table.num_rows and table.select(keys).group_by(keys).aggregate([]).num_rows != table.num_rows:
        raise ValueError("slot_snapshots holds duplicate (symbol, window_s, slot_ts, tick_ms) "
                         "rows: the lake must keep one row per key (re-export it with --full)")
    return table


def fit_stats(con: Any, train_filter: str = "TRUE", params: Sequence[Any] = ()) -> dict[str, Any]:
    """Fit the contract's statistics on the snapshot rows selected by ``train_filter``.

    ``train_filter``: a SQL predicate over ``slot_snapshots`` columns chosen by the caller
    (e.g. ``"slot_ts < ?"`` with ``params=[cut]``): pass TRAINING days only. Returns a JSON-able
    dict to store in the model's metadata and pass back to ``build_training_set``:
    ``move_vol_per_min[symbol]`` = sqrt(sum of squared snapshot-to-snapshot changes of
    dir_move_pct / sum of the scaled minutes they span), pooled over the asset's windows (the
    estimator behind ``realised_vol``, over whole windows); ``default_move_vol_per_min`` pools
    all assets (used for an asset the fit never saw). Sums are compensated (fsum) but DuckDB's
    parallel order may still move the last bit or so between runs.
    """
    sql = f"""
WITH s AS (
  SELECT symbol, window_s, slot_ts, tick_ms, dir_move_pct FROM slot_snapshots
  WHERE tick_ms >= CAST(slot_ts AS BIGINT) * 1000 AND dir_move_pct IS NOT NULL AND ({train_filter})
),
d AS (
  SELECT symbol, window_s, slot_ts,
    dir_move_pct - lag(dir_move_pct) OVER w AS d,
    {_MIN.format(ms="tick_ms - lag(tick_ms) OVER w", w="window_s")} AS dt
  FROM s WINDOW w AS (PARTITION BY symbol, window_s, slot_ts ORDER BY tick_ms)
)
SELECT symbol, fsum(d * d) AS sq, fsum(dt) AS minutes, count(*) AS n,
       count(DISTINCT (window_s, slot_ts)) AS windows
FROM d WHERE d IS NOT NULL GROUP BY symbol ORDER BY symbol
"""
    rows = con.execute(sql, list(params)).fetchall()
    per = {sym: math.sqrt(sq / minutes) for sym, sq, minutes, _, _ in rows if minutes and minutes > 0}
    tot_sq = sum(r[1] for r in rows)
    tot_min = sum(r[2] for r in rows)
    return {
        "contract_version": CONTRACT_VERSION,
        "move_vol_per_min": per,
        "default_move_vol_per_min": math.sqrt(tot_sq / tot_min) if tot_min > 0 else None,
        "fit_increments": {r[0]: int(r[3]) for r in rows},
        "fit_windows": {r[0]: int(r[4]) for r in rows},
    }


def write_training_set(table: Any, path: str | Path, *, points: Sequence[float] = DEFAULT_POINTS,
                       tolerance: float = DEFAULT_TOLERANCE, lookback: float = DEFAULT_LOOKBACK,
                       stats: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write the set to Parquet with the contract and stats in the file's metadata (atomic)."""
    import pyarrow.parquet as pq

    meta = {**metadata(tuple(points), tolerance, lookback), "stats": dict(stats or {}), **dict(extra or {})}
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b"slotml.features"] = json.dumps(meta).encode()
    table = table.replace_schema_metadata(schema_meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def read_training_set(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(table, metadata) of a file written by ``write_training_set`` / ``slotml features``."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"slotml.features")
    if raw is None:
        raise ValueError(f"{path}: not a slotml training set (no slotml.features metadata)")
    return table, json.loads(raw)


__all__ = ["KEYS", "LABELS", "FEATURES", "build_training_set", "fit_stats", "read_training_set",
           "training_set_sql", "write_training_set"]
