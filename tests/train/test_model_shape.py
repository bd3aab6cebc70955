"""``slotml train --tolerance/--lookback``: the model records the values its training set was
built with, and every reader (online features, replay, the dashboard) builds features with the
MODEL's values, not the contract's defaults.

One window of a small synthetic lake is thinned so that, at decision point 5/15, its last
snapshot is 1.5/15 of the window before the decision instant: a decision row under tolerance
2/15, none under the default 1/15. The lookback 3/15 (default 2/15) changes that row's
move_velocity. Real training, real ONNX, real onnxruntime; no mocks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import onnx
import pyarrow.compute as pc
import pytest

from slotml.features.build import build_training_set
from slotml.features.contract import FEATURES, frac_ms
from slotml.features.synth import SynthConfig, generate, load_into
from slotml.model_file import validate_metadata
from tests.train.test_pipeline import write_lake

FAST = {"nthread": 1, "eta": 0.15, "num_boost_round": 60}
N_WINDOWS = 160
CFG = SynthConfig(n_windows=N_WINDOWS, seed=5, p_one_sided=0.02)  # 30 rows a window, 30 s apart
SYMBOL = "BTC"
SLOT = CFG.start_ts + (N_WINDOWS - 5) * CFG.window_s  # in the test days (the model never saw it)
POINT = 5 / 15
D_MS = SLOT * 1000 + frac_ms(POINT, CFG.window_s)  # the decision instant
LAST_MS = D_MS - frac_ms(1.5 / 15, CFG.window_s)  # the last row kept before it
TOL, LOOKBACK = 2 / 15, 3 / 15


def _tables():
    snaps, res = generate(CFG)
    gap = pc.and_(pc.and_(pc.equal(snaps["symbol"], SYMBOL), pc.equal(snaps["slot_ts"], SLOT)),
                  pc.and_(pc.greater(snaps["tick_ms"], LAST_MS), pc.less_equal(snaps["tick_ms"], D_MS)))
    assert pc.sum(gap.cast("int64")).as_py() == 3  # the rows at 240, 270 and 300 s
    return snaps.filter(pc.invert(gap)), res


def _crafted(table) -> dict | None:
    """The crafted (window, 5/15) row of a training-set table, as a dict, or None."""
    rows = [r for r in table.to_pylist()
            if r["symbol"] == SYMBOL and r["slot_ts"] == SLOT and abs(r["point"] - POINT) < 1e-9]
    assert len(rows) <= 1
    return rows[0] if rows else None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from slotml.cli import main

    d = tmp_path_factory.mktemp("shape")
    snaps, res = _tables()
    write_lake(d / "lake", snaps, res, manifest_id=1)
    rc = main(["train", "--data-dir", str(d), "--test-days", "0.3", "--promote",
               "--params", json.dumps(FAST), "--tolerance", "2/15", "--lookback", "3/15"])
    assert rc == 0
    con = duckdb.connect()
    load_into(con, snaps, res)
    return d, con, snaps, res


def test_the_crafted_row_needs_the_models_tolerance(trained) -> None:
    """The fixture itself: the row exists under 2/15 only, and 3/15 changes move_velocity."""
    _, con, _, _ = trained
    stats = {"move_vol_per_min": {}, "default_move_vol_per_min": 0.05}
    kw = {"window_s": CFG.window_s, "slot_from": SLOT, "slot_to": SLOT + CFG.window_s}
    assert _crafted(build_training_set(con, (POINT,), stats, **kw)) is None
    wide = _crafted(build_training_set(con, (POINT,), stats, tolerance=TOL, **kw))
    both = _crafted(build_training_set(con, (POINT,), stats, tolerance=TOL, lookback=LOOKBACK, **kw))
    assert wide is not None and both is not None and wide["tick_ms"] == LAST_MS
    assert math.isfinite(wide["move_velocity"]) and math.isfinite(both["move_velocity"])
    assert wide["move_velocity"] != pytest.approx(both["move_velocity"], rel=1e-3)


def test_train_records_tolerance_and_lookback(trained) -> None:
    d, *_ = trained
    name = (d / "models" / "current").read_text().strip()
    m = onnx.load(d / "models" / name)
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["slotml_format"] == "slotml-td-model/2"
    parsed = validate_metadata(meta, list(FEATURES))
    assert parsed.tolerance == TOL and parsed.lookback == LOOKBACK
    assert parsed.window_s == CFG.window_s and parsed.decision_points == pytest.approx((5 / 15, 7 / 15, 10 / 15))
    card = json.loads((d / "models" / name.replace(".onnx", "_card.json")).read_text())
    assert card["tolerance"] == TOL and card["lookback"] == LOOKBACK
    assert card["policy"]["available"], card["policy"]  # serve's replay ran on the model


def test_train_builds_its_set_with_the_tolerance(trained) -> None:
    """``TrainConfig.tolerance`` reaches ``build_training_set``: the crafted row is a training row."""
    import dataclasses

    from slotml.lake.query import refresh
    from slotml.train.pipeline import Stages, TrainConfig, load_dataset
    from slotml.train.split import SplitConfig

    d, *_ = trained
    con = duckdb.connect()
    refresh(con, d / "lake")
    cfg = TrainConfig(data_dir=d, lake_dir=d / "lake", models_dir=d / "unused",
                      split=SplitConfig(test_days=0.3), tolerance=TOL, lookback=LOOKBACK)
    counts = {}
    for tol in (TOL, 1 / 15):
        ds, _ = load_dataset(con, dataclasses.replace(cfg, tolerance=tol), Stages())
        hit = (ds.symbol == SYMBOL) & (ds.slot_ts == SLOT) & np.isclose(ds.point, POINT)
        counts[tol] = int(hit.sum())
        assert ds.tolerance == tol and ds.lookback == LOOKBACK
    assert counts == {TOL: 1, 1 / 15: 0}


def _scorer(d: Path):
    from slotml.serve import Scorer

    return Scorer.load(d / "models")


def test_online_features_use_the_models_tolerance_and_lookback(trained) -> None:
    from slotml.serve import OnlineFeatures

    d, con, snaps, res = trained
    s = _scorer(d)
    assert (s.meta.tolerance, s.meta.lookback, s.meta.window_s) == (TOL, LOOKBACK, CFG.window_s)
    assert s.tolerance == TOL and s.lookback == LOOKBACK

    online = OnlineFeatures.for_model(s)
    default = OnlineFeatures(s.stats)  # the contract's 1/15 and 2/15
    window = [r for r in snaps.to_pylist() if r["symbol"] == SYMBOL
              and SLOT - 4 * CFG.window_s <= r["slot_ts"] <= SLOT]
    for r in res.to_pylist():
        if r["symbol"] == SYMBOL:
            online.add_resolution(r)
    for r in window:
        online.add_snapshot(r)
        default.add_snapshot(r)
    assert default.vector_at(SYMBOL, CFG.window_s, SLOT, D_MS) is None
    got = online.vector_at(SYMBOL, CFG.window_s, SLOT, D_MS)
    assert got is not None
    want = _crafted(build_training_set(con, (POINT,), s.stats, tolerance=TOL, lookback=LOOKBACK,
                                       window_s=CFG.window_s, slot_from=SLOT,
                                       slot_to=SLOT + CFG.window_s, float64=True))
    mv = FEATURES.index("move_velocity")
    assert float(got[mv]) == pytest.approx(want["move_velocity"], rel=1e-5)
    assert float(got[FEATURES.index("minutes_into")]) == pytest.approx(15 * (LAST_MS / 1000 - SLOT) / 900)

    # a reload to a model with other values takes them over
    online.set_model(s.meta.__class__(**{**s.meta.__dict__, "tolerance": 1 / 15}))
    assert online.tolerance == 1 / 15
    assert online.vector_at(SYMBOL, CFG.window_s, SLOT, D_MS) is None


def test_replay_uses_the_models_tolerance_and_lookback(trained) -> None:
    from slotml.backtest.replay import load_rows

    d, con, _, _ = trained
    s = _scorer(d)
    rows, windows, _ = load_rows(con, s, SLOT, SLOT + CFG.window_s)
    hit = [r for r in rows if r.symbol == SYMBOL and abs(r.point - POINT) < 1e-9]
    assert len(hit) == 1, "replay has no decision row where the model's tolerance gives one"
    assert hit[0].tick_ms == LAST_MS
    want = _crafted(build_training_set(con, (POINT,), s.stats, tolerance=TOL, lookback=LOOKBACK,
                                       window_s=CFG.window_s, slot_from=SLOT,
                                       slot_to=SLOT + CFG.window_s, float64=True))
    mv = FEATURES.index("move_velocity")
    assert float(hit[0].vector[mv]) == pytest.approx(want["move_velocity"], rel=1e-5)
    assert (SYMBOL, CFG.window_s, SLOT) in windows


def test_dashboard_scores_with_the_models_tolerance(trained) -> None:
    from slotml.web.dashboard import scored_rows

    d, con, _, _ = trained
    s = _scorer(d)
    got = scored_rows(con, s, SLOT)
    n_got = sum(1 for t in got.column("slot_ts").to_pylist() if t == SLOT)
    kw = {"window_s": CFG.window_s, "slot_from": SLOT, "resolved_only": True}
    n_model = sum(1 for t in build_training_set(con, s.decision_points, s.stats, tolerance=TOL,
                                                lookback=LOOKBACK, **kw)
                  .column("slot_ts").to_pylist() if t == SLOT)
    n_default = sum(1 for t in build_training_set(con, s.decision_points, s.stats, **kw)
                    .column("slot_ts").to_pylist() if t == SLOT)
    assert n_got == n_model == n_default + 1
    # and the scores are the model's on the features built with its lookback
    ref = build_training_set(con, s.decision_points, s.stats, tolerance=TOL, lookback=LOOKBACK,
                             float64=True, **kw)
    X = np.column_stack([ref.column(f).to_numpy(zero_copy_only=False) for f in FEATURES])
    assert got.column("p_model").to_numpy() == pytest.approx(s.p_up_batch(X.astype(np.float32)))


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--tolerance", "0", "fraction of the window in (0, 1)"),
    ("--lookback", "1/0", "fraction of the window in (0, 1)"),
    ("--tolerance", "wide", "fraction of the window in (0, 1)"),
    ("--points", "1e999", "fractions of the window in (0, 1)"),
])
def test_train_refuses_bad_fractions_like_features_does(tmp_path, capsys, flag, value, needle) -> None:
    from slotml.cli import main

    assert main(["train", "--data-dir", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and needle in err and err.count("\n") == 1
