"""Issue 17: the backtest over one year (4 assets, prints included, all policies x fill models).

Synthetic lake tables (features/synth.py: 4 assets x 35,040 windows x 30 snapshots) in per-asset
Parquet files read through views named like the lake's, plus a trade tape derived from them
(every third snapshot: an Up SELL at the Up bid and a Down BUY at the Down ask, 2-400 shares,
~2.8M prints: fewer than the venue's, enough to exercise the queue). A linear ONNX model on
the contract's features. Timed: ``replay`` with every policy (edge, design, filters,
always-enter) under every fill model (taker, maker-queue, maker-optimistic), bootstrap CIs
included; baseline in the same run: the old replay's work (design + filters under taker and
maker-optimistic, no tape). Aim: < 60 s; reported in decision rows per second.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import Row
from bench import cpu_s as _cpu
from bench import load as _load

ISSUE = 17


def _model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from slotml.features.contract import (
        CONTRACT_VERSION,
        DEFAULT_LOOKBACK,
        DEFAULT_POINTS,
        DEFAULT_TOLERANCE,
        FEATURES,
    )
    from slotml.model_file import ModelMeta

    n = len(FEATURES)
    w = np.zeros((n, 1), np.float32)
    w[FEATURES.index("dir_move_pct")] = 8.0
    nodes = [helper.make_node("IsNaN", ["features"], ["nan"]),
             helper.make_node("Where", ["nan", "zero", "features"], ["x0"]),
             helper.make_node("MatMul", ["x0", "w"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["p2d"]),
             helper.make_node("Reshape", ["p2d", "flat"], ["p_up"])]
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("p_up", TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(w, "w"),
                     numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                     numpy_helper.from_array(np.array([-1], np.int64), "flat")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    meta = ModelMeta(features=tuple(FEATURES), decision_points=DEFAULT_POINTS, window_s=900,
                     tolerance=DEFAULT_TOLERANCE, lookback=DEFAULT_LOOKBACK, calibration="isotonic",
                     stats={"move_vol_per_min": {}, "default_move_vol_per_min": 0.07},
                     feature_contract=str(CONTRACT_VERSION), slotml_version="bench")
    helper.set_model_props(model, meta.to_metadata())
    onnx.save(model, str(path))
    return path


def _tape(snaps):  # noqa: ANN001, ANN202 - pyarrow tables
    import pyarrow as pa
    import pyarrow.compute as pc

    idx = pa.array(np.arange(0, snaps.num_rows, 3))
    t = snaps.take(idx)
    parts = []
    rng = np.random.default_rng(17)
    for outcome, col, side in (("Up", "bid_up", "SELL"), ("Down", "ask_down", "BUY")):
        u = t.filter(pc.is_valid(t[col]))
        n = u.num_rows
        parts.append(pa.table({
            "symbol": u["symbol"], "window_s": u["window_s"], "slot_ts": u["slot_ts"],
            "token_id": pa.array([outcome] * n), "outcome": pa.array([outcome] * n),
            "price": u[col], "size": pa.array(rng.uniform(2, 400, n)),
            "side": pa.array([side] * n), "ts_ms": pc.add(u["tick_ms"], 1500),
            "occurrence": pa.array(np.zeros(n, np.int32))}))
    return pa.concat_tables(parts)


def run(quick: bool) -> list[Row]:
    import duckdb
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from slotml.backtest.replay import replay
    from slotml.features.synth import SynthConfig, generate
    from slotml.serve import GateConfig, Scorer

    n_windows = int(os.environ.get("BENCH17_WINDOWS", 1_500 if quick else 35_040))
    cfg = SynthConfig(n_windows=n_windows, p_missing=0.01, p_one_sided=0.03, seed=17)
    snaps, res = generate(cfg)
    trades = _tape(snaps)
    n_prints = trades.num_rows
    with tempfile.TemporaryDirectory(prefix="bench_backtest_") as tmp:
        for sym in cfg.symbols:
            for name, table in (("slot_snapshots", snaps), ("slot_resolutions", res),
                                ("slot_trades", trades)):
                part = Path(tmp) / name / f"symbol={sym}"
                part.mkdir(parents=True)
                pq.write_table(table.filter(pc.equal(table["symbol"], sym)), part / "0.parquet",
                               compression="zstd", row_group_size=256_000)
        n_snaps = snaps.num_rows
        del snaps, res, trades
        con = duckdb.connect()
        for name in ("slot_snapshots", "slot_resolutions", "slot_trades"):
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet("
                        f"'{tmp}/{name}/*/*.parquet', hive_partitioning=false)")
        con.execute("CREATE TABLE slot_tape_gaps (symbol VARCHAR, window_s INTEGER, slot_ts BIGINT, "
                    "token_id VARCHAR, from_ts DOUBLE, to_ts DOUBLE, reason VARCHAR)")
        scorer = Scorer.load(_model(Path(tmp) / "td_model_bench.onnx"))
        gate = GateConfig(order_size=10, min_order_size=5)
        c0, t0 = _cpu(), time.perf_counter()
        replay(con, scorer, gate, policies=("design", "filters"),
               fills=("taker", "maker-optimistic"))
        base_s, base_cpu = time.perf_counter() - t0, _cpu() - c0
        c0, t0 = _cpu(), time.perf_counter()
        full = replay(con, scorer, gate)
        full_s, full_cpu = time.perf_counter() - t0, _cpu() - c0
        verdict = full.verdict()
    rows = full.rows
    size = (f"{n_snaps / 1e6:.2f}M snapshots, {n_prints / 1e6:.2f}M prints, {rows:,} decision rows, "
            f"{len(full.results)} cells")
    return [
        Row(ISSUE, f"backtest, 1 {'year' if not quick else 'quick slice'} ({size}), wall",
            full_s, "s", baseline=base_s, baseline_name="old replay's work (2 policies x taker/"
            "maker-optimistic, no tape)", higher_is_better=False,
            aim="< 60 s" if not quick else "", met=(full_s < 60.0) if not quick else None),
        Row(ISSUE, f"backtest: process CPU time (all threads; load {_load()} on {os.cpu_count()} cores)",
            full_cpu, "s", baseline=base_cpu, baseline_name="old replay's work", higher_is_better=False),
        Row(ISSUE, "backtest: decision rows per wall second (all 12 cells)", rows / full_s, "rows/s",
            baseline=rows / base_s, baseline_name="old replay's work (4 cells)"),
        Row(ISSUE, f"backtest: verdict on the synthetic year ({verdict.split(': ', 1)[1][:40]})",
            float(full.windows), "windows"),
    ]
