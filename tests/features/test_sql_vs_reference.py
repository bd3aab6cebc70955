"""The DuckDB SQL against the plain-Python reference on randomized windows, within 1e-9."""

from __future__ import annotations

import dataclasses
import math

import duckdb
import pyarrow as pa
import pytest

from slotml.features.build import build_training_set, fit_stats
from slotml.features.contract import DEFAULT_POINTS, FEATURES, KEYS, LABELS
from slotml.features.synth import (
    RESOLUTION_COLUMNS,
    SNAPSHOT_COLUMNS,
    SynthConfig,
    generate,
    load_into,
)
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
from tests.features.helpers import diff_features, keyed, reference_set

ROUGH = SynthConfig(
    n_windows=24, p_missing=0.25, p_one_sided=0.15, p_null_move=0.15, p_null_ptb=0.05,
    p_null_size=0.05, p_unresolved=0.15, p_no_final=0.2, p_pre_row=0.2, jitter=True,
)
POINTS = (1 / 15, 5 / 15, 7 / 15, 10 / 15, 14 / 15)


def _rough_lake(seed: int) -> duckdb.DuckDBPyConnection:
    """Two families in one lake: 900 s windows and 9 s sim windows (same symbols)."""
    s1, r1 = generate(dataclasses.replace(ROUGH, seed=seed))
    s2, r2 = generate(dataclasses.replace(ROUGH, seed=seed + 100, window_s=9, n_windows=12,
                                          symbols=("BTC", "ETH", "DOGE")))
    con = duckdb.connect()
    load_into(con, pa.concat_tables([s1, s2]), pa.concat_tables([r1, r2]))
    return con


def test_synth_tables_follow_the_store_schema() -> None:
    assert list(SNAPSHOT_COLUMNS) == SNAPSHOTS.names
    assert list(RESOLUTION_COLUMNS) == RESOLUTIONS.names


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_equals_reference_on_rough_windows(seed: int) -> None:
    con = _rough_lake(seed)
    stats = fit_stats(con)
    stats["move_vol_per_min"].pop("ETH")  # ETH falls back to the default sigma
    table = build_training_set(con, POINTS, stats, float64=True)
    sql_rows = keyed(table)
    ref_rows = reference_set(con, POINTS, stats)
    assert len(ref_rows) > 300
    assert diff_features(sql_rows, ref_rows) == []
    # the randomization really reached the branches (a test that cannot fail is a defect)
    col = {name: table.column(name).to_pylist() for name in FEATURES}
    for name in ("bid_up", "up_mid", "spread_ratio", "imbalance_up", "move_velocity",
                 "realised_vol", "move_z", "dir_move_pct", "prev_up", "prev_vol_1", "prev_vol_4",
                 "lead_rv_z", "lead_blend_z"):
        assert any(math.isnan(v) for v in col[name]), f"{name} never missing"
        assert any(not math.isnan(v) for v in col[name]), f"{name} always missing"
    assert {0.0, 1.0, 2.0} <= set(col["prev_known_source"])
    assert any(math.isnan(v) for v in col["asset"])  # DOGE
    assert min(col["snapshot_count"]) >= 1


def test_output_shape_types_and_order() -> None:
    con = _rough_lake(7)
    t = build_training_set(con, DEFAULT_POINTS, fit_stats(con))
    assert t.column_names == [*KEYS, *FEATURES, *LABELS]
    for name in FEATURES:
        assert t.schema.field(name).type == pa.float32(), name
        assert t.column(name).null_count == 0, f"{name}: missing must be NaN, not NULL"
    keys = list(zip(*(t.column(k).to_pylist() for k in ("slot_ts", "symbol", "window_s", "point")),
                    strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    f64 = build_training_set(con, DEFAULT_POINTS, fit_stats(con), float64=True)
    for name in FEATURES:  # float32 is the float64 value rounded, nothing else
        a = t.column(name).to_numpy()
        b = f64.column(name).to_numpy().astype("float32")
        assert ((a == b) | (a != a) & (b != b)).all(), name


def test_resolved_only_and_filters() -> None:
    con = _rough_lake(4)
    full = build_training_set(con)
    res = build_training_set(con, resolved_only=True)
    assert 0 < res.num_rows < full.num_rows
    assert res.column("resolved_up").null_count == 0
    assert full.column("resolved_up").null_count > 0
    only = build_training_set(con, window_s=9, symbols=["BTC"])
    assert set(only.column("window_s").to_pylist()) == {9}
    assert set(only.column("symbol").to_pylist()) == {"BTC"}
    slots = sorted(set(full.column("slot_ts").to_pylist()))
    cut = build_training_set(con, slot_from=slots[3], slot_to=slots[10])
    assert set(cut.column("slot_ts").to_pylist()) == set(slots[3:10])
    # a window's features do not depend on where the selection starts: prev_vol_k still reads
    # the windows before slot_from (with and without a family, two ways of reaching back)
    stats = fit_stats(con)
    whole = keyed(build_training_set(con, stats=stats, window_s=900))
    s900 = sorted({k[2] for k in whole})
    for kw in ({"window_s": 900}, {}):
        part = keyed(build_training_set(con, stats=stats, slot_from=s900[6], **kw))
        part = {k: v for k, v in part.items() if k[1] == 900}
        assert part and {k[2] for k in part} == set(s900[6:])
        assert diff_features(part, {k: whole[k] for k in part}, tol=0.0) == []
        assert any(not math.isnan(v["prev_vol_4"]) for v in part.values())


def test_fit_stats_respects_the_training_filter() -> None:
    con = _rough_lake(5)
    slots = sorted(r[0] for r in con.execute("SELECT DISTINCT slot_ts FROM slot_snapshots").fetchall())
    cut = slots[len(slots) // 2]
    a = fit_stats(con, "slot_ts < ?", [cut])
    b = fit_stats(con)
    assert set(a["move_vol_per_min"]) == {"BTC", "ETH", "SOL", "XRP", "DOGE"}
    assert a["move_vol_per_min"] != b["move_vol_per_min"]
    # poisoning the rows after the cut does not move the training-days statistic
    con.execute("UPDATE slot_snapshots SET dir_move_pct = dir_move_pct * 50 WHERE slot_ts >= ?", [cut])
    again = fit_stats(con, "slot_ts < ?", [cut])
    for sym, v in a["move_vol_per_min"].items():
        assert again["move_vol_per_min"][sym] == pytest.approx(v, rel=1e-12)
    assert fit_stats(con)["move_vol_per_min"]["BTC"] > 5 * b["move_vol_per_min"]["BTC"]
