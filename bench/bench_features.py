"""Issue 7: the training set for one year at the design's volume, from Parquet through DuckDB.

4 assets x 35,040 windows x 30 snapshots (~4.2M rows, a few % missing/one-sided/NULL) are
generated synthetically (features/synth.py) into per-asset Parquet files in a temp dir and read
through ``read_parquet`` views named like the lake's, then ``build_training_set`` runs with
statistics from ``fit_stats``. Reported: wall seconds (aim < 5 s), the process CPU seconds
(all threads; a load-independent figure on a shared machine), rows/s, and the fit's time.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench import Row
from bench import cpu_s as _cpu
from bench import load as _load


def run(quick: bool) -> list[Row]:
    import duckdb
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from slotml.features.build import build_training_set, fit_stats
    from slotml.features.synth import SynthConfig, generate

    n_windows = 2_000 if quick else 35_040
    cfg = SynthConfig(n_windows=n_windows, p_missing=0.01, p_one_sided=0.03, p_null_move=0.002,
                      p_null_size=0.01, p_unresolved=0.002, p_no_final=0.01, seed=7)
    snaps, res = generate(cfg)
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        for sym in cfg.symbols:  # one file per asset, as the lake partitions by symbol
            for name, table in (("slot_snapshots", snaps), ("slot_resolutions", res)):
                part = Path(tmp) / name / f"symbol={sym}"
                part.mkdir(parents=True)
                pq.write_table(table.filter(pc.equal(table["symbol"], sym)), part / "0.parquet",
                               compression="zstd", row_group_size=256_000)
        n_rows = snaps.num_rows
        del snaps, res
        con = duckdb.connect()
        for name in ("slot_snapshots", "slot_resolutions"):
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet("
                        f"'{tmp}/{name}/*/*.parquet', hive_partitioning=false)")
        t0 = time.perf_counter()
        stats = fit_stats(con)
        fit_s = time.perf_counter() - t0
        build_training_set(con, stats=stats, resolved_only=True)  # warm the file cache
        load_before = _load()
        c0, t0 = _cpu(), time.perf_counter()
        out = build_training_set(con, stats=stats, resolved_only=True)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    size = f"{n_rows / 1e6:.2f}M snapshot rows -> {out.num_rows:,} decision rows"
    note = f"{os.cpu_count()} cores, load {load_before}"
    return [
        Row(7, f"training set, 1 {'year' if not quick else 'quick slice'} ({size}), wall; {note}",
            wall, "s", higher_is_better=False, aim="< 5 s" if not quick else "",
            met=(wall < 5.0) if not quick else None),
        Row(7, "training set: process CPU time (all threads)", cpu, "s", higher_is_better=False),
        Row(7, "training set: snapshot rows per wall second", n_rows / wall, "rows/s"),
        Row(7, "fit_stats (per-asset move vol) on the same rows, wall", fit_s, "s",
            higher_is_better=False),
    ]
