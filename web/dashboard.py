"""The dashboard's numbers (DuckDB over the lake); the page is dashboard_app.py, the launcher
``dashboard_run.py``.

Three views a trader checks before trusting a model, and after:

- ``heatmap_rows``: win rate of the side the move favours (Up if the settlement move is
  positive, Down if negative: the TD maker's view) by scaled minute into the window x signed
  move bucket, counting windows: per window and minute, its last snapshot in that minute;
- ``calibration_rows``: reliability diagram of a model on its test days and on later days
  (after everything it saw), beside the book's own mid as a baseline, with counts per bin;
- ``importance_rows``: what the model leans on, from the model file's ``importance`` key
  (permutation importance on its calibration days and XGBoost gain; written by train);
- data health: ``slotml.web.slot_stats``.

Everything is aggregated in DuckDB; the page only draws and tables the returned rows (which
are also what the browser test reads back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slotml.venue import SCALE_MINUTES
from slotml.web.slot_stats import rows, window_filter

# Signed move buckets (percent of the settlement series since price_to_beat). A move of exactly
# 0 favours neither side and is left out.
MOVE_EDGES: tuple[float, ...] = (-0.3, -0.2, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3)


def bucket_labels(edges: Sequence[float] = MOVE_EDGES) -> list[str]:
    """Labels of the len(edges) + 1 buckets, most negative first."""
    e = list(edges)
    out = [f"< {e[0]:+g}"]
    out += [f"{a:+g} .. {b:+g}" for a, b in zip(e, e[1:], strict=False)]
    out.append(f"≥ {e[-1]:+g}")  # not ">": st.table renders cells as Markdown
    return out


def bucket_case(column: str, edges: Sequence[float], params: list[Any]) -> str:
    """``CASE WHEN col < ? THEN 0 ... ELSE n END`` (bucket index), edges bound as parameters."""
    parts = []
    for i, e in enumerate(edges):
        parts.append(f"WHEN {column} < ? THEN {i}")
        params.append(float(e))
    return "CASE " + " ".join(parts) + f" ELSE {len(edges)} END"


def heatmap_rows(con: Any, symbol: str, window_s: int, *, slot_from: int | None = None,
                 slot_to: int | None = None, edges: Sequence[float] = MOVE_EDGES
                 ) -> list[dict[str, Any]]:
    """Rows (minute, bucket, label, windows, wins, win_rate) for one asset and family.

    minute = floor(scaled minute of the snapshot), 0..14; a window counts once per minute (its
    last snapshot in that minute); only resolved windows with a non-zero move."""
    where, params = window_filter(symbol, window_s, slot_from, slot_to, alias="s")
    case_params: list[Any] = []
    bucket = bucket_case("dir_move_pct", edges, case_params)
    labels = bucket_labels(edges)
    sql = f"""
WITH s AS (
  SELECT s.symbol, s.window_s, s.slot_ts, s.tick_ms, s.dir_move_pct,
    CAST(floor({SCALE_MINUTES!r} * (s.tick_ms - CAST(s.slot_ts AS BIGINT) * 1000) / (s.window_s * 1000.0))
         AS INTEGER) AS minute
  FROM slot_snapshots s
  WHERE {where} AND s.tick_ms >= CAST(s.slot_ts AS BIGINT) * 1000
    AND s.dir_move_pct IS NOT NULL AND s.dir_move_pct <> 0
),
last AS (
  SELECT * FROM s WHERE minute BETWEEN 0 AND 14
  QUALIFY row_number() OVER (PARTITION BY symbol, window_s, slot_ts, minute
                             ORDER BY tick_ms DESC) = 1
),
j AS (
  SELECT l.minute, {bucket} AS bucket,
    CASE WHEN l.dir_move_pct > 0 THEN r.resolved_up ELSE NOT r.resolved_up END AS win
  FROM last l JOIN slot_resolutions r
    ON r.symbol = l.symbol AND r.window_s = l.window_s AND r.slot_ts = l.slot_ts
  WHERE r.resolved_up IS NOT NULL
)
SELECT minute, bucket, count(*) AS windows, count(*) FILTER (WHERE win) AS wins,
  count(*) FILTER (WHERE win) / count(*) AS win_rate
FROM j GROUP BY minute, bucket ORDER BY minute, bucket
"""
    out = rows(con, sql, [*params, *case_params])
    for r in out:
        r["label"] = labels[r["bucket"]]
    return out


def heatmap_table(hm: list[dict[str, Any]], edges: Sequence[float] = MOVE_EDGES) -> dict[str, Any]:
    """The heatmap as a pivot for ``st.table``: one row per bucket (largest move first), one
    column per minute, cells ``"0.623 (41)"`` = win rate (windows)."""
    labels = bucket_labels(edges)
    minutes = sorted({r["minute"] for r in hm})
    cell = {(r["bucket"], r["minute"]): f"{r['win_rate']:.3f} ({r['windows']})" for r in hm}
    return {
        "index": [labels[b] for b in reversed(range(len(labels)))],
        "columns": [str(m) for m in minutes],
        "data": [[cell.get((b, m), "") for m in minutes] for b in reversed(range(len(labels)))],
    }


# ------------------------------------------------------------------------------- importance

def importance_rows(meta: Any) -> list[dict[str, Any]]:
    """One row per model feature, most important first: feature, permutation (the calibrated
    model's Brier rise when the column is shuffled on its calibration days), permutation_std,
    gain_share (XGBoost gain over the total). Empty for a model file without the key."""
    imp = getattr(meta, "importance", None) or {}
    perm, sd, gain = (imp.get(k) or {} for k in ("permutation", "permutation_std", "gain"))
    if not perm:
        return []
    total = sum(gain.values()) or 1.0
    out = [{"feature": f, "permutation": perm.get(f), "permutation_std": sd.get(f),
            "gain_share": None if f not in gain else gain[f] / total} for f in meta.features]
    return sorted(out, key=lambda r: -(r["permutation"] if r["permutation"] is not None else -1e9))


# ------------------------------------------------------------------------------- calibration

def model_slices(meta: Any) -> tuple[int | None, int | None]:
    """(first window of the test days, last window of the test days) from the model's splits;
    without a test slice the "later" days start after everything the model saw."""
    splits = meta.splits or {}
    test = splits.get("test") or {}
    if test.get("from") is not None and test.get("to") is not None:
        return int(test["from"]), int(test["to"])
    seen = [int((splits.get(k) or {}).get("to")) for k in ("train", "early_stop", "calibration")
            if (splits.get(k) or {}).get("to") is not None]
    if not seen:
        return None, None
    after = max(seen) + int(meta.window_s)
    return after, after - 1  # an empty test slice: everything from `after` is "later"


def calibration_rows(con: Any, scorer: Any, *, bins: int = 10) -> dict[str, Any]:
    """Reliability bins of ``scorer`` on its test days and later days, and of the book's mid
    (``up_mid``) on the same decision rows.

    Returns ``{"bins": [...], "summary": [...], "test": (from, to)}``: bins have series
    (``model`` | ``book mid``), slice (``test days`` | ``later days``), bin, n, mean_p,
    observed; summary has n, Brier score and mean predicted vs observed per series and slice.
    """
    t_from, t_to = model_slices(scorer.meta)
    if t_from is None:
        return {"bins": [], "summary": [], "test": (None, None)}
    return reliability(con, scored_rows(con, scorer, t_from), t_from, t_to, bins=bins)


def scored_rows(con: Any, scorer: Any, slot_from: int) -> Any:
    """The model's decision rows of resolved windows from ``slot_from`` on, scored: a
    ``pyarrow.Table`` (slot_ts, p_model, up_mid, y). Per window, so per day (the dashboard's
    cache keeps them per day and model file)."""
    import numpy as np
    import pyarrow as pa

    from slotml.features.build import build_training_set

    meta = scorer.meta
    table = build_training_set(
        con, meta.decision_points, meta.stats, tolerance=meta.tolerance, lookback=meta.lookback,
        resolved_only=True, window_s=meta.window_s, slot_from=slot_from, float64=True,
        contract=meta.feature_contract)  # the model's own asset table
    if table.num_rows:
        X = np.column_stack([table.column(f).to_numpy(zero_copy_only=False)
                             for f in meta.features])
        p_model = scorer.p_up_batch(X.astype(np.float32))
    else:
        p_model = np.zeros(0)
    return pa.table({
        "slot_ts": table.column("slot_ts").cast(pa.int64()),
        "p_model": pa.array(p_model, type=pa.float64()),
        "up_mid": table.column("up_mid").cast(pa.float64()),
        "y": table.column("resolved_up").cast(pa.float64()),
    })


def reliability(con: Any, scored: Any, t_from: int, t_to: int, *, bins: int = 10
                ) -> dict[str, Any]:
    """``calibration_rows``' bins and summary from scored rows (see ``scored_rows``)."""
    if scored.num_rows == 0:
        return {"bins": [], "summary": [], "test": (t_from, t_to)}
    con.register("_scored", scored)
    try:
        base = """
WITH s AS (
  SELECT CASE WHEN slot_ts <= ? THEN 'test days' ELSE 'later days' END AS slice, y,
         p_model, CASE WHEN isnan(up_mid) THEN NULL ELSE up_mid END AS up_mid
  FROM _scored
),
long AS (
  SELECT 'model' AS series, slice, p_model AS p, y FROM s
  UNION ALL
  SELECT 'book mid' AS series, slice, up_mid AS p, y FROM s WHERE up_mid IS NOT NULL
)"""
        bins_out = rows(con, base + """
SELECT series, slice, least(CAST(floor(p * ?) AS INTEGER), ? - 1) AS bin, count(*) AS n,
  avg(p) AS mean_p, avg(y) AS observed
FROM long GROUP BY ALL ORDER BY series DESC, slice DESC, bin""", [t_to, bins, bins])
        summary = rows(con, base + """
SELECT series, slice, count(*) AS n, avg((p - y) * (p - y)) AS brier, avg(p) AS mean_p,
  avg(y) AS observed
FROM long GROUP BY ALL ORDER BY series DESC, slice DESC""", [t_to])
    finally:
        con.unregister("_scored")
    return {"bins": bins_out, "summary": summary, "test": (t_from, t_to)}
