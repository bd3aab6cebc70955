"""The DuckDB SQL against the plain-Python reference on randomized windows, within 1e-9."""

from __future__ import annotations

import dataclasses
import math

import duckdb
import pyarrow as pa
import pytest

from slotml.features.build import build_training_set, fit_stats
from slotml.features.contract import (
    CONTRACT_VERSION,
    DEFAULT_POINTS,
    FEATURES,
    KEYS,
    LABELS,
    SCORABLE_CONTRACTS,
    asset_codes,
)
from slotml.features.synth import (
    RESOLUTION_COLUMNS,
    SNAPSHOT_COLUMNS,
    SynthConfig,
    generate,
    load_into,
)
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
from tests.features.helpers import close, diff_features, keyed, reference_set

ROUGH = SynthConfig(
    n_windows=24, p_missing=0.25, p_one_sided=0.15, p_null_move=0.15, p_null_ptb=0.05,
    p_null_size=0.05, p_unresolved=0.15, p_no_final=0.2, p_pre_row=0.2, jitter=True,
)
POINTS = (1 / 15, 5 / 15, 7 / 15, 10 / 15, 14 / 15)


def _rough_lake(seed: int) -> duckdb.DuckDBPyConnection:
    """Two families in one lake: 900 s windows (BTC..XRP) and 9 s sim windows (BTC, ETH, DOGE:
    coded from contract 4 on, and PEPE: an asset no contract knows)."""
    s1, r1 = generate(dataclasses.replace(ROUGH, seed=seed))
    s2, r2 = generate(dataclasses.replace(ROUGH, seed=seed + 100, window_s=9, n_windows=12,
                                          symbols=("BTC", "ETH", "DOGE", "PEPE")))
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
    assert any(math.isnan(v) for v in col["asset"])  # PEPE
    assert min(col["snapshot_count"]) >= 1


@pytest.mark.parametrize("contract", SCORABLE_CONTRACTS)
def test_sql_equals_reference_under_each_scorable_contract(contract: int) -> None:
    """A model's own contract version codes ``asset`` in the SQL and the reference alike: DOGE
    is NaN for a contract-3 model (it never knew it) and 4 from contract 4 on; the first four
    assets' codes and every other feature are the same under every version."""
    con = _rough_lake(8)
    stats = fit_stats(con)
    sql_rows = keyed(build_training_set(con, POINTS, stats, float64=True, contract=contract))
    assert diff_features(sql_rows, reference_set(con, POINTS, stats, contract=contract)) == []
    current = keyed(build_training_set(con, POINTS, stats, float64=True))
    assert sql_rows.keys() == current.keys()
    codes = asset_codes(contract)
    seen = set()
    for k, row in sql_rows.items():
        sym = k[0]
        want = float(codes[sym]) if sym in codes else math.nan
        assert close(row["asset"], want, 0.0), (k, row["asset"], want)
        seen.add(sym)
    # DuckDB's parallel sums may move a last bit between two runs, nothing more
    no_asset = [{k: {**r, "asset": 0.0} for k, r in t.items()} for t in (sql_rows, current)]
    assert diff_features(*no_asset, tol=1e-12) == []
    assert {"BTC", "ETH", "SOL", "XRP", "DOGE", "PEPE"} <= seen
    assert ("DOGE" in codes) == (contract >= 4)


def test_asset_codes_only_ever_append() -> None:
    """Old codes never change meaning: each version's table extends the one before it."""
    assert asset_codes(3) == {"BTC": 0, "ETH": 1, "SOL": 2, "XRP": 3}
    assert asset_codes(4) == {**asset_codes(3), "DOGE": 4, "BNB": 5, "HYPE": 6, "ZEC": 7}
    for v in range(2, CONTRACT_VERSION + 1):
        old, new = asset_codes(v - 1), asset_codes(v)
        assert {k: new[k] for k in old} == old
    assert asset_codes() == asset_codes(CONTRACT_VERSION) and CONTRACT_VERSION in SCORABLE_CONTRACTS
    for bad in ("test", "0", CONTRACT_VERSION + 1):
        with pytest.raises(ValueError, match="feature contract"):
            asset_codes(bad)


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
    assert set(a["move_vol_per_min"]) == {"BTC", "ETH", "SOL", "XRP", "DOGE", "PEPE"}
    assert a["move_vol_per_min"] != b["move_vol_per_min"]
    # poisoning the rows after the cut does not move the training-days statistic
    con.execute("UPDATE slot_snapshots SET dir_move_pct = dir_move_pct * 50 WHERE slot_ts >= ?", [cut])
    again = fit_stats(con, "slot_ts < ?", [cut])
    for sym, v in a["move_vol_per_min"].items():
        assert again["move_vol_per_min"][sym] == pytest.approx(v, rel=1e-12)
    assert fit_stats(con)["move_vol_per_min"]["BTC"] > 5 * b["move_vol_per_min"]["BTC"]
