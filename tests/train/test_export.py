"""XGBoost -> ONNX + calibration in one graph: exactness against XGBoost and sklearn."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.isotonic import IsotonicRegression

from slotml.train.fit import booster_predict, fit_booster
from slotml.train.onnx_export import (
    OUTPUT_NAME,
    RAW_OUTPUT,
    Calibration,
    ExportCheckError,
    calibrated_model,
    calibration_only_model,
    check_model,
    export_calibrated,
    fit_calibration,
    session,
)


def _run_cal(cal: Calibration, p: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(calibration_only_model(cal).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {RAW_OUTPUT: np.asarray(p, np.float32)})[0]


def _probe(cal_x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inside, on and between thresholds, below the smallest and above the largest."""
    iso_x = np.asarray(cal_x, np.float32)
    return np.concatenate([
        rng.random(5000), iso_x, np.unique(iso_x), [0.0, 1.0, -0.5, 1.5, 1e-9, 1 - 1e-7],
        np.nextafter(iso_x, np.float32(2)), np.nextafter(iso_x, np.float32(-1)),
    ]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_isotonic_in_onnx_equals_sklearn_incl_clip_and_ties(seed):
    rng = np.random.default_rng(seed)
    # float32 probabilities with heavy ties (a tree model's outputs take few distinct values),
    # fitted range strictly inside (0, 1) so out-of-bounds inputs exist on both sides
    levels = rng.uniform(0.1, 0.9, 40).astype(np.float32)
    x = rng.choice(levels, 4000)
    y = (rng.random(4000) < x).astype(np.int8)
    cal = fit_calibration("isotonic", x, y, floor=0.0)  # plain sklearn (floor tested below)
    iso = cal.isotonic
    assert len(iso.X_thresholds_) > 3
    probe = _probe(iso.X_thresholds_, rng)
    got = _run_cal(cal, probe).astype(np.float64)
    ref = iso.predict(probe.astype(np.float64))
    assert np.max(np.abs(got - ref)) <= 1e-6
    # clip: below/above the fitted range the output is the end values, exactly as sklearn
    lo, hi = _run_cal(cal, np.array([0.0, 1.0], np.float32))
    assert lo == pytest.approx(iso.y_thresholds_[0], abs=1e-7)
    assert hi == pytest.approx(iso.y_thresholds_[-1], abs=1e-7)
    # the same fit done independently with sklearn's own defaults agrees
    ref2 = IsotonicRegression(out_of_bounds="clip").fit(x.astype(np.float64), y).predict(probe.astype(np.float64))
    assert np.max(np.abs(got - ref2)) <= 1e-6


def test_isotonic_degenerate_maps():
    # one distinct input value -> one threshold (constant map)
    x = np.full(50, 0.3, np.float32)
    y = np.r_[np.ones(20), np.zeros(30)].astype(np.int8)
    cal = fit_calibration("isotonic", x, y)
    probe = np.array([0.0, 0.3, 0.9], np.float32)
    assert np.allclose(_run_cal(cal, probe), cal.apply(probe), atol=1e-7)
    # two thresholds
    x = np.array([0.2, 0.2, 0.8, 0.8], np.float32)
    y = np.array([0, 1, 1, 1], np.int8)
    cal = fit_calibration("isotonic", x, y)
    probe = np.linspace(-0.1, 1.1, 101).astype(np.float32)
    assert np.max(np.abs(_run_cal(cal, probe) - cal.apply(probe))) <= 1e-6


def test_platt_in_onnx_equals_numpy():
    rng = np.random.default_rng(5)
    x = rng.uniform(0.02, 0.98, 3000).astype(np.float32)
    y = (rng.random(3000) < x ** 1.5).astype(np.int8)
    cal = fit_calibration("platt", x, y)
    assert cal.a != pytest.approx(1.0, abs=0.05)  # a real correction was fitted
    probe = np.concatenate([rng.random(2000), [0.0, 1.0, 1e-9]]).astype(np.float32)
    assert np.max(np.abs(_run_cal(cal, probe) - cal.apply(probe))) <= 1e-6


@pytest.fixture(scope="module")
def trained():
    from slotml.train.synthetic import synthetic_training_set

    ds, _ = synthetic_training_set(n_windows=800, seed=7)
    n = len(ds)
    a, b, c = int(n * 0.6), int(n * 0.75), int(n * 0.9)
    fr = fit_booster(ds.X[:a], ds.y[:a], ds.X[a:b], ds.y[a:b], {"num_boost_round": 200, "nthread": 1, "eta": 0.15})
    return ds, fr, (a, b, c)


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_export_loads_and_both_checks_pass(trained, kind):
    ds, fr, (a, b, c) = trained
    ex = export_calibrated(fr.booster, ds.n_features, ds.X[b:c], ds.y[b:c], kind, ds.X[b:])
    assert ex.check.raw_max_abs_diff <= 1e-6
    assert ex.check.calibrated_max_abs_diff <= 1e-6
    assert ex.check.rows == len(ds) - b
    sess = session(ex.model)
    assert [i.name for i in sess.get_inputs()] == ["features"]
    assert sess.get_inputs()[0].type == "tensor(float)"
    assert [o.name for o in sess.get_outputs()] == ["p_up"]
    p = sess.run(None, {"features": ds.X[c:]})[0]
    assert p.dtype == np.float32 and p.shape == (len(ds) - c,)
    assert 0 <= p.min() and p.max() <= 1
    # the file's output is exactly calibration(raw ONNX), and raw ONNX ~ XGBoost
    raw = booster_predict(fr.booster, ds.X[c:])
    assert np.max(np.abs(p - ex.calibration.apply(raw))) < 0.05  # isotonic steps may magnify
    # the calibration was fitted on the export's own probabilities, not XGBoost's
    assert np.array_equal(ex.p_raw_calibration, ex.p_raw_calibration.astype(np.float32))
    # NaN inputs (missing features) follow XGBoost's default directions
    Xn = ds.X[c:c + 500].copy()
    Xn[:, 5:12] = np.nan
    pn = sess.run(None, {"features": Xn})[0]
    dbg = session(calibrated_model(_raw(fr, ds), ex.calibration, debug_raw=True))
    pr = dbg.run([RAW_OUTPUT], {"features": Xn})[0]
    assert np.max(np.abs(pr - booster_predict(fr.booster, Xn))) <= 1e-6
    assert np.max(np.abs(pn - ex.calibration.apply(pr))) <= 1e-6


def _raw(fr, ds):
    from slotml.train.onnx_export import booster_to_onnx

    return booster_to_onnx(fr.booster, ds.n_features)


def test_checks_fail_loudly(trained):
    ds, fr, (a, b, c) = trained
    raw = _raw(fr, ds)
    from slotml.train.onnx_export import raw_onnx_probabilities

    cal = fit_calibration("isotonic", raw_onnx_probabilities(raw, ds.X[b:c]), ds.y[b:c])
    dbg = calibrated_model(raw, cal, debug_raw=True)
    check_model(dbg, fr.booster, cal, ds.X[c:])  # the honest pair passes
    other = fit_booster(ds.X[:a], 1 - ds.y[:a], ds.X[a:b], 1 - ds.y[a:b], {"num_boost_round": 20, "nthread": 1}).booster
    with pytest.raises(ExportCheckError, match="raw ONNX probabilities differ from XGBoost"):
        check_model(dbg, other, cal, ds.X[c:])
    wrong = fit_calibration("isotonic", raw_onnx_probabilities(raw, ds.X[b:c]), 1 - ds.y[b:c])
    with pytest.raises(ExportCheckError, match="calibrated ONNX output differs from sklearn isotonic"):
        check_model(dbg, fr.booster, wrong, ds.X[c:])


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_probability_floor_keeps_outputs_off_0_and_1(kind):
    # perfectly separable: plain isotonic would say exactly 0 and 1
    x = np.r_[np.full(300, 0.2), np.full(300, 0.8)].astype(np.float32)
    y = np.r_[np.zeros(300), np.ones(300)].astype(np.int8)
    cal = fit_calibration(kind, x, y, floor=0.01)
    probe = np.linspace(0, 1, 201).astype(np.float32)
    got = _run_cal(cal, probe)
    assert got.min() >= np.float32(0.01) and got.max() <= np.float32(0.99)
    assert got.min() == pytest.approx(0.01) and got.max() == pytest.approx(0.99)
    assert np.max(np.abs(got - cal.apply(probe))) <= 1e-6
    if kind == "isotonic":
        assert fit_calibration(kind, x, y, floor=0.0).apply(np.float32([0.1]))[0] == 0.0
