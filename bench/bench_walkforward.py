"""Issue 20: `slotml walkforward` over one year of 15-minute history, 4 assets, 52 weekly retrains.

The history is features/'s synthetic store tables (``features/synth.py``: 4 assets x 30 + 364
days of windows x 30 snapshots) with a trade tape derived from them as in ``bench_backtest``
(so the policy thresholds are chosen and maker-queue fills run), written as a lake with a
manifest. Building it is setup, not timed. Timed: the whole walk-forward (30 initial days, then
52 weekly retrains on the expanding span, each calibrated, given its thresholds and replayed
exactly as ``slotml train`` does) with ``--jobs`` = the cores. Aim: < 10 minutes on 2 cores.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from bench import Row
from bench import cpu_s as _cpu
from bench import load as _load

ISSUE = 20
INITIAL_DAYS = 30
PERIODS = 52


def year_lake(lake: Path, days: int, seed: int = 20) -> dict[str, int]:
    """A lake of ``days`` x 96 windows x 4 assets (snapshots, resolutions, a tape)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bench.bench_backtest import _tape
    from slotml.features.synth import SynthConfig, generate
    from slotml.lake.manifest import FileEntry, Manifest, TableState, write_manifest

    cfg = SynthConfig(n_windows=days * 96, p_missing=0.01, p_one_sided=0.03, seed=seed)
    snaps, res = generate(cfg)
    trades = _tape(snaps)
    tables: dict[str, TableState] = {}
    sizes = {}
    for name, table in (("slot_snapshots", snaps), ("slot_resolutions", res), ("slot_trades", trades)):
        files = []
        for sym in cfg.symbols:
            part = table.filter(pc.equal(table["symbol"], sym)).sort_by("slot_ts")
            rel = f"{name}/symbol={sym}/0.parquet"
            (lake / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, lake / rel, compression="zstd", row_group_size=128_000)
            files.append(FileEntry(path=rel, rows=part.num_rows, symbol=sym, date="",
                                   max_updated_at=0.0))
        tables[name] = TableState(files=files)
        sizes[name] = table.num_rows
    write_manifest(lake, Manifest(id=1, created_at=0.0, tables=tables))
    return sizes


def run(quick: bool) -> list[Row]:
    from slotml.train.pipeline import TrainConfig
    from slotml.train.split import SplitConfig
    from slotml.train.walkforward import WalkConfig, walk

    logging.getLogger("slotml").setLevel(logging.WARNING)
    periods = 4 if quick else PERIODS
    days = INITIAL_DAYS + 7 * periods
    with tempfile.TemporaryDirectory(prefix="bench_walkforward_") as tmp:
        d = Path(tmp)
        sizes = year_lake(d / "lake", days)
        cfg = WalkConfig(
            train=TrainConfig(data_dir=d, lake_dir=d / "lake", models_dir=d / "models",
                              split=SplitConfig(test_days=7.0, policy_days=None)),
            out_dir=d / "wf", initial_days=INITIAL_DAYS, every_days=7.0)
        load_start = _load()
        c0, t0 = _cpu(), time.perf_counter()
        report = walk(cfg)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    secs = [p["seconds"] for p in report["periods"]]
    pooled = report["pooled"]
    jobs = report["run"]["jobs"]
    span = f"{days} days x 4 assets ({sizes['slot_snapshots'] / 1e6:.2f}M snapshots, " \
           f"{sizes['slot_trades'] / 1e6:.2f}M prints)"
    return [
        Row(ISSUE, f"walk-forward, {len(secs)} weekly retrains over {span}, {jobs} jobs, wall "
            f"(load {load_start} at start, {_load()} at end)", wall, "s",
            baseline=secs[-1], baseline_name="one retrain on the whole span (the last period, "
            "in the run)", higher_is_better=False,
            aim="< 600 s on 2 cores" if not quick else "",
            met=(wall < 600) if not quick and (os.cpu_count() or 1) <= 2 else None),
        Row(ISSUE, "  per period (train + calibrate + thresholds + policy table), mean / max",
            sum(secs) / len(secs), "s", baseline=max(secs), baseline_name="max",
            higher_is_better=False),
        Row(ISSUE, f"  CPU of all periods (workers, all threads) / {jobs} jobs: the wall on "
            "idle cores", sum(p["cpu_seconds"] for p in report["periods"]) / jobs, "s cpu",
            higher_is_better=False),
        Row(ISSUE, "  parent process CPU (plan, report; the periods run in workers)", cpu, "s cpu",
            higher_is_better=False),
        Row(ISSUE, f"  pooled Brier over {pooled['rows']:,} out-of-sample rows, model",
            pooled["model"]["brier"], "", baseline=pooled["book_mid"]["brier"],
            baseline_name="book mid", higher_is_better=False),
    ]
