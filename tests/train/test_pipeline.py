"""End to end: dataset -> model file that serve loads; through the lake and the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from slotml.features.contract import CONTRACT_VERSION, FEATURES
from slotml.model_file import validate_metadata
from slotml.train import metrics as M
from slotml.train.pipeline import TrainConfig, train_on_dataset
from slotml.train.split import SplitConfig, temporal_split
from slotml.train.synthetic import synthetic_training_set

# single-threaded: XGBoost's OpenMP threads crawl on a busy 2-core box (the suite runs in parallel
# with other work); shallow quick trees are plenty for these checks
FAST = {"nthread": 1, "eta": 0.15, "num_boost_round": 300}


@pytest.fixture(scope="module")
def synth():
    return synthetic_training_set(n_windows=2000, seed=11)


def _write_oracle(path: Path, ds, p_true) -> None:
    import polars as pl

    pl.DataFrame({"symbol": ds.symbol, "window_s": np.full(len(ds), ds.window_s),
                  "slot_ts": ds.slot_ts, "tick_ms": ds.tick_ms, "p_up": p_true}).write_parquet(path)


def test_model_file_metadata_card_plot_promote(synth, tmp_path):
    ds, p_true = synth
    _write_oracle(tmp_path / "oracle.parquet", ds, p_true)
    cfg = TrainConfig(data_dir=tmp_path, lake_dir=tmp_path / "lake", models_dir=tmp_path / "models",
                      split=SplitConfig(test_days=4), promote=True, oracle=tmp_path / "oracle.parquet",
                      params=FAST)
    split = temporal_split(ds, cfg.split)
    res = train_on_dataset(ds, split, cfg)

    # file name, pointer, companions
    assert res.model_path.name.startswith("td_model_") and res.model_path.suffix == ".onnx"
    assert (tmp_path / "models" / "current").read_text().strip() == res.model_path.name
    assert res.png_path.exists() and res.png_path.read_bytes()[:4] == b"\x89PNG"
    card = json.loads(res.card_path.read_text())
    assert card["model"] == res.model_path.name and card["final"] is False
    assert card["export_checks"]["raw_vs_xgboost"] <= 1e-6
    assert card["export_checks"]["calibrated_vs_sklearn"] <= 1e-6
    # fit and calibration saw each row and its Up/Down mirror (the test rows: only themselves)
    assert card["mirror_augmentation"] is True
    assert card["calibration"]["fitted_rows"] == 2 * int(split.calibration.mask.sum())
    assert res.metrics["rows"] == int(split.test.mask.sum())

    # metadata: serve's own validator accepts it; features listed in contract order
    m = onnx.load(res.model_path)
    meta = {p.key: p.value for p in m.metadata_props}
    parsed = validate_metadata(meta, list(FEATURES), contract_version=str(CONTRACT_VERSION))
    assert list(parsed.features) == list(FEATURES) == json.loads(meta["features"])
    assert parsed.window_s == 900 and parsed.calibration == "isotonic"
    assert parsed.decision_points == tuple(ds.decision_points)
    assert parsed.splits["test"]["windows"] == split.test.windows
    assert parsed.splits["calibration"]["from"] > parsed.splits["train"]["to"]
    assert set(parsed.metrics["overall"]) == {"model", "base_rate", "book_mid", "model_uncalibrated"}
    assert [i.name for i in m.graph.input] == ["features"] and [o.name for o in m.graph.output] == ["p_up"]

    # serve scores it, and its numbers are the report's numbers
    from slotml.serve.scorer import Scorer

    scorer = Scorer.load(tmp_path / "models" / "current")
    tm = split.test.mask
    p = scorer.p_up_batch(ds.X[tm])
    assert M.brier(ds.y[tm], p) == pytest.approx(res.metrics["overall"]["model"]["brier"], abs=1e-6)

    # the report is honest about the baselines on the same rows, and the model learned
    o = res.metrics["oracle"]
    assert o["coverage"] == 1.0
    assert o["model_same_rows"]["brier"] == res.metrics["overall"]["model"]["brier"]
    assert res.metrics["overall"]["model"]["log_loss"] < res.metrics["overall"]["base_rate"]["log_loss"] - 0.1
    assert o["oracle"]["brier"] <= o["model_same_rows"]["brier"] * 1.05
    assert "per decision minute" in res.report and "min 10.0" in res.report and "oracle" in res.report

    # feature importance: in the model file, the card and the report, one finite value per feature
    imp = parsed.importance
    assert card["importance"] == imp and "feature importance" in res.report
    for part in ("gain", "permutation", "permutation_std"):
        assert sorted(imp[part]) == sorted(FEATURES) and all(np.isfinite(v) for v in imp[part].values())
    assert imp["slice"] == "calibration" and imp["rows"] == int(split.calibration.mask.sum())
    perm = imp["permutation"]
    top = max(perm, key=perm.get)
    print("permutation importance (Brier rise):", {f: round(v, 5) for f, v in perm.items()})
    # a pure-noise input (the synthetic imbalance is uniform noise) next to nothing; the
    # strongest input clearly positive, and one of the columns that carry the move's z-score
    assert abs(perm["imbalance_up"]) < 0.002 and abs(perm["imbalance_down"]) < 0.002
    noise = max(abs(perm["imbalance_up"]), abs(perm["imbalance_down"]))
    assert perm[top] > 0.01 and perm[top] > 10 * noise
    assert top in ("lead_blend_z", "lead_rv_z", "move_z", "lead_move_z", "dir_move_pct",
                   "lead_move_pct", "up_mid", "bid_up", "ask_up", "bid_down", "ask_down")
    mf = res.metrics["manual_filters"]
    assert mf["available"] and 0 < mf["entries"] <= mf["windows"]


def test_calibration_repairs_a_miscalibrated_booster(synth, tmp_path):
    """scale_pos_weight skews the booster's probabilities upward; isotonic fixes them."""
    ds, _ = synth
    cfg = TrainConfig(data_dir=tmp_path, lake_dir=tmp_path, models_dir=tmp_path / "models",
                      split=SplitConfig(test_days=4), params={"scale_pos_weight": 4.0, **FAST})
    split = temporal_split(ds, cfg.split)
    res = train_on_dataset(ds, split, cfg)
    raw_ece = res.metrics["overall"]["model_uncalibrated"]["ece"]
    cal_ece = res.metrics["overall"]["model"]["ece"]
    assert raw_ece > 0.08, raw_ece
    assert cal_ece < 0.035, cal_ece


def test_metrics_definitions():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.65, 0.62, 0.35, 0.05, 0.15, 0.95])
    assert M.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    # bins: [0.0,0.1): 0.05 (y0) | [0.1,0.2): 0.1,0.15 (y0,1) | [0.3,0.4): 0.35 (y0)
    # [0.6,0.7): 0.65,0.62 (1,1) | [0.9,1.0]: 0.9, 0.95 (1, 0)
    want = (1 * 0.05 + 2 * abs(0.125 - 0.5) + 1 * 0.35 + 2 * abs(0.635 - 1) + 2 * abs(0.925 - 0.5)) / 8
    assert M.ece(y, p) == pytest.approx(want)
    assert M.ece(np.array([1]), np.array([1.0])) == 0.0  # p == 1 lands in the last bin
    assert M.auc(np.ones(3), np.array([0.1, 0.2, 0.3])) is None
    assert M.log_loss(np.array([1, 0]), np.array([1.0, 0.0])) < 1e-12
    book, missing = M.book_probability(np.array([0.4, np.nan, 1.0]), 3)
    assert missing == 1 and list(book) == [0.4, 0.5, 0.999]
    # filters: first passing decision point per window, the side the move favours
    r = M.filter_rule(
        y=np.array([1, 1, 0, 0]), symbol=np.array(["BTC"] * 4), slot_ts=np.array([0, 0, 900, 900]),
        point=np.array([1 / 3, 2 / 3, 1 / 3, 2 / 3]),
        spot_move_pct=np.array([0.01, 0.2, -0.3, 0.3]), p_model=np.array([0.5, 0.9, 0.2, 0.7]),
        rule=M.FilterRule(0.05, 0.5, 5.0),
    )
    assert r["entries"] == 2 and r["windows"] == 2
    assert r["filter_hit_rate"] == 1.0 and r["model_hit_rate_same_rows"] == 1.0


# ------------------------------------------------------------------ through the lake and the CLI

def write_lake(lake: Path, snaps, res, manifest_id: int = 7) -> None:
    """Store tables as a lake: one Parquet file per table, named by a manifest."""
    import pyarrow.parquet as pq

    from slotml.lake.manifest import FileEntry, Manifest, TableState, write_manifest

    lake.mkdir(parents=True)
    tables = {}
    for name, t in (("slot_snapshots", snaps), ("slot_resolutions", res)):
        pq.write_table(t, lake / f"{name}.parquet")
        tables[name] = TableState(files=[FileEntry(path=f"{name}.parquet", rows=t.num_rows,
                                                   symbol="ALL", date="", max_updated_at=0.0)])
    write_manifest(lake, Manifest(id=manifest_id, created_at=0.0, tables=tables))


def _write_lake(lake: Path, n_windows: int, seed: int = 0) -> None:
    """features/' synthetic store tables as a lake."""
    from slotml.features.synth import SynthConfig, generate

    snaps, res = generate(SynthConfig(n_windows=n_windows, seed=seed, p_missing=0.02,
                                      p_one_sided=0.02, p_unresolved=0.01))
    write_lake(lake, snaps, res)


def test_cli_trains_from_the_lake_and_promotes(tmp_path, capsys):
    from slotml.cli import main

    _write_lake(tmp_path / "lake", n_windows=160)
    rc = main(["train", "--data-dir", str(tmp_path), "--test-days", "0.3", "--promote",
               "--params", json.dumps(FAST), "--calibration", "platt"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "TEST DAYS" in out and "promoted" in out
    assert "backtest of td_model_" in out and "filters" in out  # the backtest's table joined
    assert "model beats filters as a maker:" in out and "entry policy:" in out
    name = (tmp_path / "models" / "current").read_text().strip()
    m = onnx.load(tmp_path / "models" / name)
    meta = {p.key: p.value for p in m.metadata_props}
    parsed = validate_metadata(meta, list(FEATURES), contract_version=str(CONTRACT_VERSION))
    assert parsed.lake_manifest_id == 7 and parsed.calibration == "platt"
    # statistics were fitted on the training slice only, and travel in the file
    stats = parsed.stats
    assert set(stats["move_vol_per_min"]) == {"BTC", "ETH", "SOL", "XRP"}
    train_to = parsed.splits["train"]["to"]
    assert sum(stats["fit_windows"].values()) == 4 * ((train_to - 1_767_225_600) // 900 + 1)
    card = json.loads((tmp_path / "models" / name.replace(".onnx", "_card.json")).read_text())
    assert card["skipped"]["unresolved_rows"] > 0
    assert card["timings_s"]["fit booster"] > 0

    # --final: no test days, links the evaluation run above
    rc = main(["train", "--data-dir", str(tmp_path), "--final", "--params", json.dumps(FAST),
               "--no-mirror"])
    assert rc == 0
    cards = sorted((tmp_path / "models").glob("*_card.json"))
    final = json.loads(cards[-1].read_text())
    assert final["final"] is True and final["splits"]["test"] is None
    assert card["mirror_augmentation"] is True and final["mirror_augmentation"] is False
    assert final["evaluation_run"]["card"].endswith(name.replace(".onnx", "_card.json"))
    assert final["metrics"]["evaluation_model"] == name
    assert final["metrics"]["evaluation_overall"]["model"]["brier"] == card["metrics"]["overall"]["model"]["brier"]


def test_cli_too_little_data_is_one_line_exit_2(tmp_path, capsys):
    from slotml.cli import main

    assert main(["train", "--data-dir", str(tmp_path)]) == 2
    assert "the lake holds no snapshots" in capsys.readouterr().err
    _write_lake(tmp_path / "lake", n_windows=20)
    assert main(["train", "--data-dir", str(tmp_path), "--test-days", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "too little data: 80 resolved windows" in err and "more" in err
    assert main(["train", "--data-dir", str(tmp_path), "--params", "[1]"]) == 2
    assert "--params must be a JSON object" in capsys.readouterr().err


def test_cli_a_family_with_too_few_windows_is_named_in_one_line(tmp_path, capsys):
    """A daily family's 60 days are 60 windows per asset: `slotml train --window-s 86400` on a
    lake that also holds a 15m family says so in one line (family, count, need), exit 2."""
    import pyarrow as pa

    from slotml.cli import main
    from slotml.features.synth import SynthConfig, generate

    s15, r15 = generate(SynthConfig(n_windows=200, seed=1))
    s1d, r1d = generate(SynthConfig(symbols=("BTC",), window_s=86400, n_windows=60, seed=2))
    write_lake(tmp_path / "lake", pa.concat_tables([s15, s1d]), pa.concat_tables([r15, r1d]))
    def error_line() -> str:
        err = capsys.readouterr().err  # the log's lines, then the one error line
        errors = [ln for ln in err.splitlines() if "error:" in ln]
        assert "Traceback" not in err and len(errors) == 1, err
        return errors[0]

    assert main(["train", "--data-dir", str(tmp_path), "--window-s", "86400"]) == 2
    assert error_line() == (
        "slotml train: error: the 1d family (86400 s windows): too little data: 60 resolved "
        "windows (1 asset over 60 days), need at least 380 (fit 200 + early stop 30 + calibration "
        "50 + policy 50 + test 50): 320 more (about 320.0 more days of collection)")
    # the 15m family of the same lake passes the total (800 windows), and a later slice's
    # shortfall names it too
    assert main(["train", "--data-dir", str(tmp_path), "--window-s", "900", "--test-days", "0.05"]) == 2
    line = error_line()
    assert line.startswith("slotml train: error: the 15m family (900 s windows): the test slice"), line


def test_book_probability_uses_the_quotes_there_are():
    from slotml.train.pipeline import book_probability_from_quotes

    nan = np.nan
    got = book_probability_from_quotes(
        np.array([0.40, nan, 0.98, nan, nan]), np.array([0.42, nan, nan, 0.03, nan]),
        np.array([0.57, 0.30, nan, nan, nan]), np.array([0.59, 0.34, 0.03, nan, nan]))
    # Up mid | 1 - Down mid | one-sided at the top: bid_up 0.98, 1 - ask_down 0.97 | ask only | none
    assert got[:4] == pytest.approx([0.41, 0.68, 0.975, 0.03])
    assert np.isnan(got[4])


def model_outputs(ds, split, cfg, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """The trained model file's outputs on every row, and its metrics, with outcomes ``y``."""
    import onnxruntime as ort

    d = ds.take(np.ones(len(ds), bool))
    d.y = y
    res = train_on_dataset(d, split, cfg)
    sess = ort.InferenceSession(str(res.model_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"features": ds.X})[0], res.metrics


def test_test_days_are_used_for_nothing_but_the_report(tmp_path):
    """Flip every test-day outcome: the model file computes exactly the same function.
    Flip the calibration outcomes: the booster is unchanged, only the calibration moves."""
    ds, _ = synthetic_training_set(n_windows=500, seed=5)
    cfg = TrainConfig(data_dir=tmp_path, lake_dir=tmp_path / "lake", models_dir=tmp_path / "m",
                      split=SplitConfig(test_days=1), params=FAST)
    split = temporal_split(ds, cfg.split)

    base, m0 = model_outputs(ds, split, cfg, ds.y)
    y_test = ds.y.copy()
    y_test[split.test.mask] = 1 - y_test[split.test.mask]
    same, m1 = model_outputs(ds, split, cfg, y_test)
    assert np.array_equal(base, same)
    assert m1["overall"]["model"]["brier"] != m0["overall"]["model"]["brier"]  # the report did change
    y_cal = ds.y.copy()
    y_cal[split.calibration.mask] = 1 - y_cal[split.calibration.mask]
    moved, m2 = model_outputs(ds, split, cfg, y_cal)
    assert not np.allclose(base, moved, atol=0.05)
    assert m2["overall"]["model_uncalibrated"] == m0["overall"]["model_uncalibrated"]


def held_out_checks(ds, split, cfg) -> tuple[tuple[np.ndarray, dict], tuple[np.ndarray, dict]]:
    """Flip the test and policy outcomes: the model is exactly the same; flip the calibration
    slice's: it moves. Returns (outputs, metrics) on the true outcomes and on the flipped
    calibration."""
    base = model_outputs(ds, split, cfg, ds.y)
    held = split.test.mask | split.policy.mask
    y_held = ds.y.copy()
    y_held[held] = 1 - y_held[held]
    assert np.array_equal(base[0], model_outputs(ds, split, cfg, y_held)[0])
    y_cal = ds.y.copy()
    y_cal[split.calibration.mask] = 1 - y_cal[split.calibration.mask]
    moved = model_outputs(ds, split, cfg, y_cal)
    assert not np.allclose(base[0], moved[0], atol=0.05)
    return base, moved


def test_recent_layout_fits_nothing_on_the_held_out_slices(tmp_path):
    """--split-layout recent: flip the outcomes of the test AND the policy slice (both before
    and after the booster's days now): the model file computes exactly the same function; flip
    the calibration slice's: the booster is unchanged, only the calibration moves."""
    ds, _ = synthetic_training_set(n_windows=500, seed=5)
    cfg = TrainConfig(data_dir=tmp_path, lake_dir=tmp_path / "lake", models_dir=tmp_path / "m",
                      split=SplitConfig(test_days=1, policy_days=0.5, layout="recent"), params=FAST)
    split = temporal_split(ds, cfg.split)
    assert split.calibration.last_slot < split.policy.first_slot < split.fit.first_slot

    (base, m0), (moved, m2) = held_out_checks(ds, split, cfg)
    assert m2["overall"]["model_uncalibrated"] == m0["overall"]["model_uncalibrated"]


def test_latest_layout_with_recency_weights_fits_nothing_on_the_held_out_slices(tmp_path):
    """--split-layout latest --half-life-days: flipping the test and policy outcomes changes
    nothing; flipping the early-stop / calibration outcomes moves the model; the card records
    the half-life (that the weights reach XGBoost: the next test)."""
    ds, _ = synthetic_training_set(n_windows=500, seed=5)
    split_cfg = SplitConfig(test_days=1, policy_days=0.5, layout="latest")
    cfg = TrainConfig(data_dir=tmp_path, lake_dir=tmp_path / "lake", models_dir=tmp_path / "m",
                      split=split_cfg, params=FAST, half_life_days=0.5)
    split = temporal_split(ds, cfg.split)
    assert split.policy.last_slot < split.fit.first_slot < split.calibration.first_slot

    held_out_checks(ds, split, cfg)
    card = json.loads(sorted((tmp_path / "m").glob("*_card.json"))[-1].read_text())
    assert card["booster"]["fit_half_life_days"] == 0.5
    assert card["splits"]["calibration"] == card["splits"]["early_stop"]


def test_refit_keeps_the_held_out_slices_out_and_changes_the_booster(tmp_path):
    """--refit-booster (latest layout): the test and policy outcomes still change nothing; the
    calibration outcomes still move the model; the booster differs from the early-stopped one
    with the same rounds; the card says so (the map's wiring: the next test)."""
    ds, _ = synthetic_training_set(n_windows=500, seed=5)
    split_cfg = SplitConfig(test_days=1, policy_days=0.5, layout="latest")

    def cfg(refit: bool, name: str) -> TrainConfig:
        return TrainConfig(data_dir=tmp_path, lake_dir=tmp_path / "lake", models_dir=tmp_path / name,
                           split=split_cfg, params=FAST, refit_booster=refit)

    split = temporal_split(ds, split_cfg)
    (out, m0), _ = held_out_checks(ds, split, cfg(True, "refit"))
    plain, p0 = model_outputs(ds, split, cfg(False, "plain"), ds.y)
    cards = [json.loads(sorted((tmp_path / n).glob("*_card.json"))[0].read_text())
             for n in ("refit", "plain")]  # the first written: true outcomes
    assert [c["booster"]["refit"] for c in cards] == [True, False]
    assert cards[0]["booster"]["best_iteration"] == cards[1]["booster"]["best_iteration"]
    assert m0["overall"]["model_uncalibrated"] != p0["overall"]["model_uncalibrated"]
    assert not np.allclose(out, plain)


def test_export_calibrates_a_refit_on_the_scorers_output():
    """export_calibrated(..., scorer=b1): the map is fitted on b1's exported scores of the
    calibration rows; the graph is b2's booster with that map."""
    from slotml.train.fit import booster_predict, fit_booster, refit_booster
    from slotml.train.onnx_export import booster_to_onnx, export_calibrated, raw_onnx_probabilities

    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 3)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=3000) > 0).astype(np.float32)
    fr = fit_booster(X[:1500], y[:1500], X[1500:2000], y[1500:2000], dict(FAST))
    b2 = refit_booster(X[:2000], y[:2000], fr.best_iteration + 1, fr.params)
    ex = export_calibrated(b2, 3, X[1500:2000], y[1500:2000], "isotonic", X[2000:],
                           scorer=fr.booster)
    assert np.array_equal(ex.p_raw_calibration,
                          raw_onnx_probabilities(booster_to_onnx(fr.booster, 3), X[1500:2000]))
    assert np.allclose(raw_onnx_probabilities(ex.raw, X[2000:]), booster_predict(b2, X[2000:]),
                       atol=1e-5)
    assert not np.allclose(booster_predict(b2, X[2000:]), booster_predict(fr.booster, X[2000:]))


def test_recency_weights_reach_the_booster():
    """The same rows with the old half's outcomes flipped: equal weights see a coin, recency
    weights (half-life 1 day over 20 days) see mostly the new relation."""
    from slotml.train.fit import booster_predict, fit_booster
    from slotml.train.pipeline import _recency_weights

    rng = np.random.default_rng(3)
    n = 4000
    X = rng.normal(size=(n, 2)).astype(np.float32)
    t = np.sort(rng.uniform(0, 20 * 86400, n))
    y = (X[:, 0] > 0).astype(np.float32)
    y[t < 10 * 86400] = 1 - y[t < 10 * 86400]  # the old regime: the opposite relation
    params = {"nthread": 1, "num_boost_round": 30, "min_child_weight": 1}
    probe = np.array([[2.0, 0.0], [-2.0, 0.0]], dtype=np.float32)
    new = t >= 10 * 86400  # early stopping on the latest days, as the split does
    flat = booster_predict(fit_booster(X, y, X[new], y[new], params).booster, probe)
    recent = booster_predict(fit_booster(X, y, X[new], y[new], params, w_fit=_recency_weights(
        t, 1.0, mirrored=False)).booster, probe)
    assert abs(flat[0] - flat[1]) < 0.2  # both regimes weigh alike: no relation left
    assert recent[0] > 0.8 and recent[1] < 0.2


def test_recency_weights_halve_every_half_life():
    from slotml.train.pipeline import _recency_weights

    day = 86400
    t = np.array([0, 5 * day, 10 * day, 10 * day])
    w = _recency_weights(t, 5.0, mirrored=False)
    assert w.tolist() == pytest.approx([0.25, 0.5, 1.0, 1.0])
    assert _recency_weights(t, 5.0, mirrored=True).tolist() == pytest.approx([0.25, 0.5, 1, 1] * 2)
    assert _recency_weights(t, None, mirrored=True) is None
