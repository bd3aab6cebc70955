"""Issue 9: the dashboard's page load time on a year of data (aim: under 3 s).

A year of the 15m family for 4 assets (35,040 windows each, 30 snapshots per window: 4.2 M
snapshot rows) from ``features.synth``, laid out as the real lake (one Parquet file per table,
asset and UTC day, listed in a manifest), plus a small model whose test days are the year's
last fifth. The page runs through Streamlit's own script runner (``AppTest``: the whole script,
every DuckDB aggregate and chart spec, as for a browser's first visit) with Streamlit's memory
cache cleared: the cold load. The per-date aggregate cache (serve/dashboard_cache.py) is up to
date, as after ``slotml dashboard``'s start; the page still checks it against the lake's files.
Baseline in the same run: the same page on ONE day of data. Also reported: the warm reload
(cached), the page reading the lake itself (``--no-cache``: the pre-cache path), the cache's
first build on the year and its update after one more day. The lakes are kept between runs
under the temp dir.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

from bench import Row

ISSUE = 9
DAY_WINDOWS = 96
SYMBOLS = ("BTC", "ETH", "SOL", "XRP")


def build_lake(lake_dir: Path, days: int, seed: int = 9) -> Path:
    """A lake of ``days`` synthetic days (kept when its manifest says it is complete)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from slotml.features.synth import SynthConfig, generate
    from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
    from slotml.lake.arrow_schema import arrow_schema, fingerprint
    from slotml.lake.export import partition_dir, utc_date
    from slotml.lake.manifest import FileEntry, Manifest, TableState, read_manifest, write_manifest

    stamp = lake_dir / "_bench.json"
    want = {"days": days, "seed": seed, "symbols": list(SYMBOLS)}
    if stamp.exists() and json.loads(stamp.read_text()) == want and read_manifest(lake_dir).id:
        return lake_dir
    snaps, res = generate(SynthConfig(symbols=SYMBOLS, n_windows=days * DAY_WINDOWS, seed=seed,
                                      p_missing=0.002, p_unresolved=0.003))
    manifest = Manifest(id=1, created_at=time.time(), source="bench (features.synth)")
    for table, data in ((SNAPSHOTS, snaps), (RESOLUTIONS, res)):
        data = data.select(table.names).cast(arrow_schema(table))
        day = pc.divide(data["slot_ts"].cast(pa.int64()), 86400)
        order = np.lexsort((day.to_numpy(), data["symbol"].to_numpy(zero_copy_only=False)))
        data = data.take(pa.array(order))
        sym = data["symbol"].to_numpy(zero_copy_only=False)
        dnum = pc.divide(data["slot_ts"].cast(pa.int64()), 86400).to_numpy()
        cut = np.flatnonzero((sym[1:] != sym[:-1]) | (dnum[1:] != dnum[:-1])) + 1
        files = []
        for a, b in zip(np.r_[0, cut], np.r_[cut, len(sym)], strict=True):
            part = data.slice(int(a), int(b - a))
            date = utc_date(int(dnum[a]))
            rel = f"{partition_dir(table.name, str(sym[a]), date)}/part-bench.parquet"
            (lake_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, lake_dir / rel, compression="zstd")
            files.append(FileEntry(rel, part.num_rows, str(sym[a]), date,
                                   float(pc.max(part["updated_at"]).as_py())))
        manifest.tables[table.name] = TableState(files=files, fingerprint=fingerprint(table))
    write_manifest(lake_dir, manifest)
    stamp.write_text(json.dumps(want))
    return lake_dir


def build_model(models_dir: Path, lake_dir: Path) -> Path:
    """A logistic model on move_z whose test days are the lake's last fifth (no xgboost)."""
    from slotml.features.contract import CONTRACT_VERSION, FEATURES
    from slotml.lake import connect
    from tests.serve.models import make_model

    con = connect(lake_dir)
    lo, hi = con.execute("SELECT min(slot_ts), max(slot_ts) FROM slot_resolutions").fetchone()
    con.close()
    cut = lo + (hi - lo) * 4 // 5 // 900 * 900
    test_to = lo + (hi - lo) * 9 // 10 // 900 * 900
    splits = {"train": {"from": lo, "to": cut - 900}, "test": {"from": cut, "to": test_to}}
    w = [0.0] * len(FEATURES)
    w[FEATURES.index("move_z")] = 1.7
    return make_model(models_dir / "td_model_20260101_000000.onnx", list(FEATURES), w,
                      stats={"move_vol_per_min": {}, "default_move_vol_per_min": 0.08},
                      meta_over={"splits": json.dumps(splits),
                                 "feature_contract": str(CONTRACT_VERSION)})


def page_load(lake_dir: Path, model: Path, warm: bool = False, no_cache: bool = False) -> float:
    """Seconds for one full run of the dashboard script (cache cleared unless ``warm``)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from slotml.web.dashboard_run import APP

    if not warm:
        st.cache_data.clear()
    argv = sys.argv
    sys.argv = [str(APP), "--lake-dir", str(lake_dir), "--model", str(model)]
    if no_cache:
        sys.argv.append("--no-cache")
    try:
        at = AppTest.from_file(str(APP), default_timeout=600)
        gc.collect()
        t = time.perf_counter()
        at.run()
        dt = time.perf_counter() - t
    finally:
        sys.argv = argv
    if at.exception:
        raise RuntimeError(f"the dashboard raised: {at.exception[0].value}")
    errors = [e.value for e in at.error]
    if errors or len(at.table) < 3:
        raise RuntimeError(f"the dashboard did not render fully: {errors or len(at.table)}")
    return dt


def cache_builds(lake_dir: Path, model: Path) -> tuple[float, float]:
    """(first build of the aggregate cache incl. the model's scored rows, the update after one
    more day), in a fresh cache folder: the lake less its last day, then the whole lake."""
    import shutil

    from slotml.lake import read_manifest
    from slotml.serve.scorer import Scorer
    from slotml.web.dashboard_cache import DashboardCache

    full = read_manifest(lake_dir)
    last = max(f.date for t in full.tables.values() for f in t.files)
    less = full.only_dates({f.date for t in full.tables.values() for f in t.files} - {last})
    tmp = Path(tempfile.mkdtemp(prefix="slotml_bench_cache_"))
    try:
        cache = DashboardCache(lake_dir, tmp)
        scorer = Scorer.load(model)
        t = time.perf_counter()
        cache.update(less)
        cache.calibration_rows(scorer, model, manifest=less)
        first = time.perf_counter() - t
        t = time.perf_counter()
        st = cache.update(full)
        cache.calibration_rows(scorer, model, manifest=full)
        one_day = time.perf_counter() - t
        assert st.computed == 1, st
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return first, one_day


def run(quick: bool) -> list[Row]:
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    days = 30 if quick else 365
    root = Path(tempfile.gettempdir()) / "slotml_bench_dashboard"
    big = build_lake(root / f"lake_{days}d", days)
    small = build_lake(root / "lake_1d", 1)
    big_model = build_model(root / f"models_{days}d", big)
    small_model = build_model(root / "models_1d", small)
    from slotml.web.dashboard_run import warm_cache

    label = f"{days} days" if quick else "a year"
    first, one_day = cache_builds(big, big_model)
    for lake, model in ((small, small_model), (big, big_model)):
        warm_cache(lake, str(model))  # as `slotml dashboard` does at start (a no-op if current)
    page_load(small, small_model)  # imports, first compile: not part of either figure
    base = min(page_load(small, small_model) for _ in range(2))
    cold = min(page_load(big, big_model) for _ in range(2))
    warm = page_load(big, big_model, warm=True)
    uncached = page_load(big, big_model, no_cache=True)
    rows_note = f"{len(SYMBOLS)} assets x {days * DAY_WINDOWS} windows x 30 snapshots"
    return [
        Row(ISSUE, f"dashboard page load (cold), {label}: {rows_note}", cold, "s", base,
            "one day", higher_is_better=False, aim="< 3 s", met=cold < 3.0),
        Row(ISSUE, f"dashboard page reload (cached), {label}", warm, "s",
            higher_is_better=False),
        Row(ISSUE, f"dashboard page load reading the lake itself (--no-cache), {label}",
            uncached, "s", higher_is_better=False),
        Row(ISSUE, f"dashboard day cache: first build on {label} (+ model's scored rows)",
            first, "s", higher_is_better=False),
        Row(ISSUE, f"dashboard day cache: update after one more day, {label}", one_day, "s",
            higher_is_better=False),
    ]
