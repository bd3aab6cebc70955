"""The dashboard's per-day aggregate cache: a page load reads a few small Parquet files instead
of re-scanning the lake.

WHY: a year of the lake is ~1,500 files per table; every aggregate over it pays their metadata
and a full scan, and a cold page load took 15-35 s. The aggregates behind the page decompose by
day (a window lives in the file of its start's UTC date), so each day is computed once and
kept; after an export only the days whose files changed are recomputed.

Where: OUTSIDE the lake (the export deletes files its manifest does not list), by default
``<lake's parent>/cache/dashboard/<lake folder name>`` (``<data-dir>/cache/dashboard/lake``).

Per UTC date (the unit; its key hashes that date's lake files in both tables: path, rows,
max_updated_at, size, mtime):

- ``windows``: one row per window seen in either table: snapshots (all / in-window), outcome,
  whether a final price exists (families, snapshots per window, unresolved windows);
- ``heatmap``: windows and wins per (symbol, family, minute, move bucket of ``MOVE_EDGES``);
- ``tick_days`` / ``tick_runs``: the family's distinct in-window ticks (all assets) as first/last
  tick per date and runs of equal steps (cadence and collection gaps, joined across dates);
- ``outage_runs`` / ``outage_edges``: per asset, runs of snapshots with the same failed feed,
  and the date's first/last tick (runs are joined across midnight when read);
- calibration: per model file (path, size, mtime) the scored decision rows of each date from
  the model's test days on (``calib/<hash>.parquet``).

A state is a generation folder named by ``CURRENT`` (written, then swapped in one rename), so a
reader never sees half an update. The reference for every number is the uncached functions
(``slotml.web.slot_stats`` / ``slotml.web.dashboard``); tests hold the two equal.

About 570 lines, one module: the build, the per-date invalidation and the readers share the
generation layout and its lock; split, each half would need the other's private details.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slotml.lake.manifest import FileEntry, Manifest, read_manifest
from slotml.lake.query import connect
from slotml.venue import SCALE_MINUTES
from slotml.web import slot_stats
from slotml.web.dashboard import MOVE_EDGES, bucket_case, bucket_labels, model_slices, reliability
from slotml.web.slot_stats import DAY_SQL, IN_WINDOW_SQL, rows

log = logging.getLogger(__name__)

CACHE_VERSION = 1
STALE_BOOK_S = 60.0  # feed_outages' default, the only threshold cached
CURRENT = "CURRENT"
TABLES = ("windows", "heatmap", "tick_days", "tick_runs", "outage_runs", "outage_edges")
BATCH_DATES = 31  # dates computed per DuckDB pass on a (re)build: bounded memory


def default_cache_dir(lake_dir: Path | str) -> Path:
    lake = Path(lake_dir).resolve()
    return lake.parent / "cache" / "dashboard" / lake.name


def _params() -> dict[str, Any]:
    return {"version": CACHE_VERSION, "edges": list(MOVE_EDGES), "stale_book_s": STALE_BOOK_S}


def date_files(manifest: Manifest) -> dict[str, dict[str, list[FileEntry]]]:
    """date -> table -> the manifest's files of that date."""
    out: dict[str, dict[str, list[FileEntry]]] = defaultdict(lambda: defaultdict(list))
    for name, state in manifest.tables.items():
        for f in state.files:
            out[f.date][name].append(f)
    return out


def date_keys(lake_dir: Path, manifest: Manifest) -> dict[str, str]:
    """date -> a hash of that date's files (a rewritten or added file changes it)."""
    keys: dict[str, str] = {}
    for date, tables in date_files(manifest).items():
        parts = []
        for name in sorted(tables):
            for f in sorted(tables[name], key=lambda f: f.path):
                try:
                    st = os.stat(lake_dir / f.path)
                    stamp = (st.st_size, st.st_mtime_ns)
                except FileNotFoundError:
                    stamp = (-1, -1)
                parts.append((name, f.path, f.rows, f.max_updated_at, *stamp))
        keys[date] = hashlib.sha1(json.dumps(parts).encode()).hexdigest()
    return keys


def subset_connection(lake_dir: Path, manifest: Manifest, dates: set[str]) -> Any:
    """A DuckDB connection whose views cover only ``dates``' files (schema as the lake's)."""
    return connect(lake_dir, manifest=manifest.only_dates(dates))


# ----------------------------------------------------------------------------- per-date SQL

def _compute(con: Any) -> dict[str, pa.Table]:
    """Every cached table for the dates the connection's views cover."""
    day = DAY_SQL.format(col="slot_ts")
    case_params: list[Any] = []
    bucket = bucket_case("dir_move_pct", MOVE_EDGES, case_params)
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE s AS
SELECT {day} AS date, symbol, window_s, slot_ts, tick_ms, dir_move_pct,
  {IN_WINDOW_SQL} AS in_window,
  CASE WHEN chainlink_price IS NULL THEN 'price'
       WHEN bid_up IS NULL AND ask_up IS NULL AND bid_down IS NULL AND ask_down IS NULL THEN 'book'
       WHEN book_age_s > ? THEN 'stale book' END AS kind
FROM slot_snapshots""", [STALE_BOOK_S])
    out: dict[str, pa.Table] = {}
    out["windows"] = con.sql(f"""
WITH snaps AS (
  SELECT symbol, window_s, slot_ts, count(*) AS n, count(*) FILTER (WHERE in_window) AS n_in
  FROM s GROUP BY symbol, window_s, slot_ts
),
res AS (SELECT symbol, window_s, slot_ts, resolved_up, final_price FROM slot_resolutions)
SELECT {DAY_SQL.format(col="coalesce(s.slot_ts, r.slot_ts)")} AS date,
  coalesce(s.symbol, r.symbol) AS symbol, coalesce(s.window_s, r.window_s) AS window_s,
  coalesce(s.slot_ts, r.slot_ts) AS slot_ts, coalesce(s.n, 0) AS n, coalesce(s.n_in, 0) AS n_in,
  r.resolved_up, r.final_price IS NULL AS no_final_price
FROM snaps s FULL OUTER JOIN res r
  ON r.symbol = s.symbol AND r.window_s = s.window_s AND r.slot_ts = s.slot_ts
ORDER BY date, window_s, symbol, slot_ts""").to_arrow_table()
    out["heatmap"] = con.sql(f"""
WITH m AS (
  SELECT date, symbol, window_s, slot_ts, tick_ms, dir_move_pct,
    CAST(floor({SCALE_MINUTES!r} * (tick_ms - CAST(slot_ts AS BIGINT) * 1000) / (window_s * 1000.0))
         AS INTEGER) AS minute
  FROM s WHERE tick_ms >= CAST(slot_ts AS BIGINT) * 1000
    AND dir_move_pct IS NOT NULL AND dir_move_pct <> 0
),
last AS (
  SELECT * FROM m WHERE minute BETWEEN 0 AND 14
  QUALIFY row_number() OVER (PARTITION BY symbol, window_s, slot_ts, minute
                             ORDER BY tick_ms DESC) = 1
)
SELECT l.date, l.symbol, l.window_s, l.minute, {bucket} AS bucket, count(*) AS windows,
  count(*) FILTER (WHERE CASE WHEN l.dir_move_pct > 0 THEN r.resolved_up
                              ELSE NOT r.resolved_up END) AS wins
FROM last l JOIN slot_resolutions r
  ON r.symbol = l.symbol AND r.window_s = l.window_s AND r.slot_ts = l.slot_ts
WHERE r.resolved_up IS NOT NULL
GROUP BY ALL ORDER BY date, window_s, symbol, minute, bucket""",
                            params=case_params).to_arrow_table()
    con.execute("""
CREATE OR REPLACE TEMP TABLE t AS
WITH u AS (SELECT DISTINCT date, window_s, tick_ms FROM s WHERE in_window),
d AS (SELECT *, tick_ms - lag(tick_ms) OVER w AS diff FROM u
      WINDOW w AS (PARTITION BY date, window_s ORDER BY tick_ms))
SELECT *, CASE WHEN diff IS DISTINCT FROM lag(diff) OVER w THEN 1 ELSE 0 END AS brk FROM d
WINDOW w AS (PARTITION BY date, window_s ORDER BY tick_ms)""")
    out["tick_days"] = con.sql("""
SELECT date, window_s, min(tick_ms) AS first_tick, max(tick_ms) AS last_tick, count(*) AS ticks
FROM t GROUP BY ALL ORDER BY date, window_s""").to_arrow_table()
    out["tick_runs"] = con.sql("""
WITH g AS (SELECT *, sum(brk) OVER (PARTITION BY date, window_s ORDER BY tick_ms) AS run
           FROM t WHERE diff IS NOT NULL)
SELECT date, window_s, min(tick_ms) - any_value(diff) AS start, any_value(diff) AS step,
  count(*) AS n
FROM g GROUP BY date, window_s, run ORDER BY date, window_s, start""").to_arrow_table()
    con.execute("""
CREATE OR REPLACE TEMP TABLE o AS
SELECT date, symbol, window_s, tick_ms, kind,
  row_number() OVER (PARTITION BY date, symbol, window_s ORDER BY tick_ms)
  - row_number() OVER (PARTITION BY date, symbol, window_s, kind ORDER BY tick_ms) AS run
FROM s WHERE in_window""")
    out["outage_runs"] = con.sql("""
SELECT date, symbol, window_s, kind, min(tick_ms) AS start, max(tick_ms) AS "end",
  count(*) AS snapshots
FROM o WHERE kind IS NOT NULL GROUP BY date, symbol, window_s, kind, run
ORDER BY date, window_s, symbol, start""").to_arrow_table()
    out["outage_edges"] = con.sql("""
SELECT date, symbol, window_s, min(tick_ms) AS first_tick, max(tick_ms) AS last_tick
FROM o GROUP BY ALL ORDER BY date, window_s, symbol""").to_arrow_table()
    for name in ("s", "t", "o"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return out


# ----------------------------------------------------------------------------- the cache

@dataclass
class UpdateStats:
    dates: int = 0  # dates in the lake
    computed: int = 0  # dates (re)computed by this update
    removed: int = 0  # dates no longer in the lake
    seconds: float = 0.0
    generation: str = ""
    computed_dates: list[str] = field(default_factory=list)


class DashboardCache:
    """The cache of one lake. ``update()`` brings it up to date with the lake's manifest
    (incremental; safe across threads and processes); the readers return exactly what the
    reference functions return on the lake of the last update."""

    def __init__(self, lake_dir: Path | str, cache_dir: Path | str | None = None) -> None:
        self.lake_dir = Path(lake_dir).resolve()
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(lake_dir)

    # -- state ------------------------------------------------------------------------------
    def generation(self) -> Path | None:
        try:
            name = (self.dir / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return self.dir / name if name else None

    def meta(self) -> dict[str, Any]:
        gen = self.generation()
        if gen is None:
            return {}
        try:
            return json.loads((gen / "meta.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _usable(self, meta: dict[str, Any]) -> bool:
        return meta.get("params") == _params() and meta.get("lake") == str(self.lake_dir)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def is_current(self, manifest: Manifest | None = None) -> bool:
        manifest = manifest if manifest is not None else read_manifest(self.lake_dir)
        meta = self.meta()
        return self._usable(meta) and meta.get("dates") == date_keys(self.lake_dir, manifest)

    def update(self, manifest: Manifest | None = None) -> UpdateStats:
        """Recompute the dates whose lake files changed; a no-op when nothing did."""
        t0 = time.perf_counter()
        manifest = manifest if manifest is not None else read_manifest(self.lake_dir)
        keys = date_keys(self.lake_dir, manifest)
        stats = UpdateStats(dates=len(keys))
        meta = self.meta()
        if self._usable(meta) and meta.get("dates") == keys:
            stats.generation = str(self.generation())
            stats.seconds = time.perf_counter() - t0
            return stats
        with self._lock():
            meta = self.meta()  # another thread or process may have done it meanwhile
            old_keys = meta.get("dates", {}) if self._usable(meta) else {}
            changed = sorted(d for d, k in keys.items() if old_keys.get(d) != k)
            removed = {d for d in old_keys if d not in keys}
            stats.removed = len(removed)
            if not changed and not removed and old_keys:
                stats.generation = str(self.generation())
                stats.seconds = time.perf_counter() - t0
                return stats
            old = self.generation() if old_keys else None
            drop = set(changed) | removed
            parts: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
            if old is not None:
                for name in TABLES:
                    t = pq.read_table(old / f"{name}.parquet")
                    parts[name].append(t.filter(pc.invert(_date_in(t, drop))))
            batches = [set(changed[i:i + BATCH_DATES]) for i in range(0, len(changed), BATCH_DATES)]
            for batch in batches or ([] if old is not None else [set()]):  # set(): the schemas
                con = subset_connection(self.lake_dir, manifest, batch)
                try:
                    new = _compute(con)
                finally:
                    con.close()
                for name, t in new.items():
                    stray = set(t.column("date").to_pylist()) - batch
                    if stray:
                        raise ValueError(f"lake files of {sorted(batch)[:3]}... hold rows of "
                                         f"other dates {sorted(stray)[:3]}: not the export's layout")
                    parts[name].append(t)
            gen = self._write(parts, keys)
            stats.computed = len(changed)
            stats.computed_dates = changed
            stats.generation = str(gen)
        stats.seconds = time.perf_counter() - t0
        log.info("dashboard cache: %d of %d dates computed, %d removed in %.1fs",
                 stats.computed, stats.dates, stats.removed, stats.seconds)
        return stats

    def _write(self, parts: dict[str, list[pa.Table]], keys: dict[str, str]) -> Path:
        old = self.generation()
        seq = int(old.name.split("-")[1]) + 1 if old is not None else 1
        gen = self.dir / f"gen-{seq:06d}"
        shutil.rmtree(gen, ignore_errors=True)
        gen.mkdir(parents=True)
        for name, tables in parts.items():
            tables = [t for t in tables if t.num_rows] or tables[-1:]
            t = pa.concat_tables(tables, promote_options="permissive")
            pq.write_table(t.sort_by([("date", "ascending")]), gen / f"{name}.parquet",
                           compression="zstd")
        (gen / "meta.json").write_text(json.dumps(
            {"params": _params(), "lake": str(self.lake_dir), "dates": keys}))
        tmp = self.dir / f".{CURRENT}.tmp-{os.getpid()}"
        tmp.write_text(gen.name + "\n")
        os.replace(tmp, self.dir / CURRENT)
        for p in self.dir.glob("gen-*"):  # keep the previous one for readers mid-read
            if p.is_dir() and p.name < f"gen-{seq - 1:06d}":
                shutil.rmtree(p, ignore_errors=True)
        return gen

    # -- readers ----------------------------------------------------------------------------
    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A DuckDB connection with the current state's tables as views."""
        gen = self.generation()
        if gen is None:
            raise RuntimeError(f"no dashboard cache at {self.dir}: call update() first")
        con = duckdb.connect()
        try:
            for name in TABLES:
                path = str(gen / f"{name}.parquet").replace("'", "''")
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
            yield con
        finally:
            con.close()

    def families(self) -> list[dict[str, Any]]:
        """= ``slot_stats.families``."""
        with self.connection() as con:
            return rows(con, """
SELECT symbol, window_s, count(*) AS windows FROM windows WHERE n > 0
GROUP BY ALL ORDER BY window_s DESC, symbol""")

    def heatmap_rows(self, symbol: str, window_s: int) -> list[dict[str, Any]]:
        """= ``dashboard.heatmap_rows(con, symbol, window_s)`` (default edges, whole lake)."""
        labels = bucket_labels(MOVE_EDGES)
        with self.connection() as con:
            out = rows(con, """
SELECT minute, bucket, CAST(sum(windows) AS BIGINT) AS windows,
  CAST(sum(wins) AS BIGINT) AS wins,
  CAST(sum(wins) AS BIGINT) / CAST(sum(windows) AS BIGINT) AS win_rate
FROM heatmap WHERE symbol = ? AND window_s = ?
GROUP BY minute, bucket ORDER BY minute, bucket""", [symbol, window_s])
        for r in out:
            r["label"] = labels[r["bucket"]]
        return out

    def _ticks(self, con: Any, window_s: int) -> tuple[list[tuple], list[tuple]] | None:
        """(days, runs) of the family's ticks, or None when dates' tick spans overlap (not
        the collector's data: the reference must answer)."""
        days = con.execute("SELECT first_tick, last_tick FROM tick_days WHERE window_s = ? "
                           "ORDER BY first_tick", [window_s]).fetchall()
        if any(b[0] <= a[1] for a, b in zip(days, days[1:], strict=False)):
            return None
        runs = con.execute("SELECT start, step, n FROM tick_runs WHERE window_s = ?",
                           [window_s]).fetchall()
        return days, runs

    @staticmethod
    def _mode(days: list[tuple], runs: list[tuple]) -> int | None:
        hist: Counter[int] = Counter()
        for _, step, n in runs:
            hist[step] += n
        for a, b in zip(days, days[1:], strict=False):
            hist[b[0] - a[1]] += 1
        if not hist:
            return None
        return min(hist.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def grid_interval_ms(self, window_s: int) -> int | None:
        """= ``slot_stats.grid_interval_ms(con, window_s)``."""
        with self.connection() as con:
            ticks = self._ticks(con, window_s)
        if ticks is None:
            return self._reference(lambda c: slot_stats.grid_interval_ms(c, window_s))
        return self._mode(*ticks)

    def snapshots_per_window(self, window_s: int) -> list[dict[str, Any]]:
        """= ``slot_stats.snapshots_per_window(con, window_s)``."""
        step = self.grid_interval_ms(window_s)
        if not step:
            return []
        expected = max(1, (window_s * 1000) // step)
        with self.connection() as con:
            return rows(con, """
SELECT date AS day, symbol, count(*) AS windows, round(avg(n_in), 2) AS snapshots_per_window,
  CAST(? AS INTEGER) AS expected, count(*) FILTER (WHERE n_in < ?) AS windows_short
FROM windows WHERE window_s = ? AND n_in > 0
GROUP BY ALL ORDER BY day, symbol""", [expected, expected, window_s])

    def collection_gaps(self, window_s: int, limit: int = 50) -> list[dict[str, Any]]:
        """= ``slot_stats.collection_gaps(con, window_s, limit=limit)``."""
        with self.connection() as con:
            ticks = self._ticks(con, window_s)
            if ticks is None:
                return self._reference(lambda c: slot_stats.collection_gaps(c, window_s,
                                                                            limit=limit))
            days, runs = ticks
            step = self._mode(days, runs)
            if not step:
                return []
            # (diff, first prev, count): a run of equal steps, or one step across dates
            groups = [(s, start, n) for start, s, n in runs if s > 1.5 * step]
            groups += [(b[0] - a[1], a[1], 1) for a, b in zip(days, days[1:], strict=False)
                       if b[0] - a[1] > 1.5 * step]
            groups.sort(key=lambda g: (-g[0], g[1]))
            prev: list[int] = []
            tick: list[int] = []
            for diff, start, n in groups:
                if len(prev) >= limit:
                    break
                for k in range(min(n, limit - len(prev))):
                    prev.append(start + k * diff)
                    tick.append(start + (k + 1) * diff)
            con.register("_gaps", pa.table({"prev": pa.array(prev, pa.int64()),
                                            "tick_ms": pa.array(tick, pa.int64())}))
            return rows(con, """
SELECT epoch_ms(prev) AS last_before, epoch_ms(tick_ms) AS first_after,
  CAST(round((tick_ms - prev) / ?) - 1 AS INTEGER) AS missing_ticks,
  (tick_ms - prev) / 1000.0 AS seconds
FROM _gaps ORDER BY tick_ms - prev DESC, prev LIMIT ?""", [step, int(limit)])

    def feed_outages(self, window_s: int, *, min_ticks: int = 2, limit: int = 50
                     ) -> list[dict[str, Any]]:
        """= ``slot_stats.feed_outages(con, window_s, min_ticks=.., limit=..)`` (runs that
        reach midnight are joined with the next date's first run of the same kind)."""
        with self.connection() as con:
            edges = con.execute("""
SELECT symbol, date, first_tick, last_tick FROM outage_edges WHERE window_s = ?
ORDER BY symbol, first_tick""", [window_s]).fetchall()
            by_sym: dict[str, list[tuple]] = defaultdict(list)
            for sym, date, first, last in edges:
                by_sym[sym].append((date, first, last))
            if any(b[1] <= a[2] for es in by_sym.values() for a, b in zip(es, es[1:],
                                                                          strict=False)):
                return self._reference(lambda c: slot_stats.feed_outages(
                    c, window_s, min_ticks=min_ticks, limit=limit))
            runs: dict[tuple[str, str], list[list]] = defaultdict(list)
            for sym, date, kind, start, end, n in con.execute("""
SELECT symbol, date, kind, start, "end", snapshots FROM outage_runs WHERE window_s = ?
ORDER BY symbol, start""", [window_s]).fetchall():
                runs[(sym, date)].append([sym, kind, start, end, n])
            merged: list[list] = []
            for sym, es in by_sym.items():
                open_run: list | None = None  # the run that reached the previous date's end
                for date, first, last in es:
                    day_runs = runs.get((sym, date), [])
                    tail = None
                    for r in day_runs:
                        if r[2] == first and open_run is not None and open_run[1] == r[1]:
                            open_run[3], open_run[4] = r[3], open_run[4] + r[4]
                            tail = open_run
                        else:
                            merged.append(r)
                            tail = r
                    open_run = tail if day_runs and day_runs[-1][3] == last else None
            keep = [m for m in merged if m[4] >= min_ticks]
            con.register("_runs", pa.table({
                "symbol": pa.array([m[0] for m in keep], pa.string()),
                "kind": pa.array([m[1] for m in keep], pa.string()),
                "s": pa.array([m[2] for m in keep], pa.int64()),
                "e": pa.array([m[3] for m in keep], pa.int64()),
                "n": pa.array([m[4] for m in keep], pa.int64())}))
            return rows(con, """
SELECT symbol, kind, epoch_ms(s) AS start, epoch_ms(e) AS "end", n AS snapshots,
  (e - s) / 1000.0 AS seconds
FROM _runs ORDER BY n DESC, s, symbol, kind LIMIT ?""", [int(limit)])

    def unresolved_windows(self, window_s: int, *, grace_windows: float = 8.0
                           ) -> list[dict[str, Any]]:
        """= ``slot_stats.unresolved_windows(con, window_s, grace_windows=..)``."""
        with self.connection() as con:
            return rows(con, """
WITH win AS (SELECT * FROM windows WHERE window_s = ?),
newest AS (SELECT max(slot_ts) AS t FROM win)
SELECT date AS day, symbol, count(*) AS windows,
  count(*) FILTER (WHERE resolved_up IS NULL) AS unresolved,
  count(*) FILTER (WHERE resolved_up IS NULL AND no_final_price) AS no_final_price
FROM win, newest
WHERE slot_ts + window_s * (1 + ?) <= newest.t + window_s
GROUP BY ALL HAVING count(*) FILTER (WHERE resolved_up IS NULL) > 0
ORDER BY day, symbol""", [window_s, float(grace_windows)])

    def _reference(self, fn: Any) -> Any:
        from slotml.lake import connect

        con = connect(self.lake_dir)
        try:
            return fn(con)
        finally:
            con.close()

    # -- calibration ------------------------------------------------------------------------
    def calibration_rows(self, scorer: Any, model_path: Path | str, *, bins: int = 10,
                         manifest: Manifest | None = None) -> dict[str, Any]:
        """= ``dashboard.calibration_rows(con, scorer, bins=bins)``; the scored decision rows
        are kept per date and model file, and only changed dates are scored again."""
        t_from, t_to = model_slices(scorer.meta)
        if t_from is None:
            return {"bins": [], "summary": [], "test": (None, None)}
        scored = self.scored_rows(scorer, model_path, t_from, manifest=manifest)
        con = duckdb.connect()
        try:
            return reliability(con, scored, t_from, t_to, bins=bins)
        finally:
            con.close()

    def scored_rows(self, scorer: Any, model_path: Path | str, t_from: int,
                    manifest: Manifest | None = None) -> pa.Table:
        from slotml.lake.export import utc_date
        from slotml.web.dashboard import scored_rows

        model = Path(model_path).resolve()
        st = model.stat()
        ident = {"params": _params(), "lake": str(self.lake_dir), "model": str(model),
                 "size": st.st_size, "mtime_ns": st.st_mtime_ns, "t_from": int(t_from)}
        path = self.dir / "calib" / (hashlib.sha1(str(model).encode()).hexdigest()[:16]
                                     + ".parquet")
        manifest = manifest if manifest is not None else read_manifest(self.lake_dir)
        first = utc_date(int(t_from) // 86400)
        keys = {d: k for d, k in date_keys(self.lake_dir, manifest).items() if d >= first}
        old_keys: dict[str, str] = {}
        old = None
        if path.exists():
            old = pq.read_table(path)
            saved = json.loads((old.schema.metadata or {}).get(b"slotml", b"{}"))
            if saved.get("ident") == ident:
                old_keys = saved.get("dates", {})
        changed = {d for d, k in keys.items() if old_keys.get(d) != k}
        if not changed and old_keys.keys() == keys.keys() and old is not None:
            return old.drop(["date"])
        with self._lock():
            parts = []
            if old is not None and old_keys:
                kept = _date_in(old, set(keys) - changed)
                parts.append(old.filter(kept).replace_schema_metadata())
            dates = sorted(changed)
            for i in range(0, len(dates), BATCH_DATES):
                batch = set(dates[i:i + BATCH_DATES])
                con = subset_connection(self.lake_dir, manifest, batch)
                try:
                    s = scored_rows(con, scorer, t_from)
                finally:
                    con.close()
                day = pc.strftime(pc.cast(s.column("slot_ts"), pa.timestamp("s", tz="UTC")), "%Y-%m-%d")
                parts.append(s.append_column("date", day))
            table = pa.concat_tables(parts) if parts else None
            if table is None:
                table = scored_rows_empty()
            table = table.sort_by([("slot_ts", "ascending")]).replace_schema_metadata(
                {"slotml": json.dumps({"ident": ident, "dates": keys})})
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        return table.drop(["date"])


def _date_in(t: pa.Table, dates: set[str]) -> Any:
    """Mask of ``t``'s rows whose ``date`` is one of ``dates``."""
    return pc.is_in(t.column("date"), value_set=pa.array(sorted(dates), pa.string()))


def scored_rows_empty() -> pa.Table:
    return pa.table({"slot_ts": pa.array([], pa.int64()), "p_model": pa.array([], pa.float64()),
                     "up_mid": pa.array([], pa.float64()), "y": pa.array([], pa.float64()),
                     "date": pa.array([], pa.string())})
