"""XGBoost -> ONNX, then calibration appended as plain ONNX ops: ONE graph, features -> p_up.

Order matters: the booster is exported FIRST and the calibration is fitted on the exported
model's own float32 probabilities, so the file outputs exactly what was calibrated.

Isotonic calibration in ONNX reproduces sklearn's ``IsotonicRegression(out_of_bounds="clip")``
(scipy ``interp1d`` linear) operation for operation, in float64: clip to [X_min, X_max], find
the segment by counting thresholds strictly below x (numpy ``searchsorted`` left) clipped to
[1, K-1], then ``slope[lo] * (x - x[lo]) + y[lo]`` with the slope table computed by the same
formula scipy uses. skl2onnx's calibrated-classifier converter is NOT used: it looks up the
nearest threshold and is off by up to 6e-3.

Two checks run before anything is written, separately (isotonic steps magnify the raw gap, so
comparing the whole chain to XGBoost + sklearn would be unfair and flaky):
raw ONNX probabilities vs ``Booster.predict`` (<= 1e-6), calibrated ONNX output vs the sklearn
calibrator applied to those raw ONNX probabilities (<= 1e-6).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slotml.errors import UserError
from slotml.model_file import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

TARGET_OPSET = 15  # onnxmltools' XGBoost converter is reliable up to 15
ML_OPSET = 1  # ai.onnx.ml (TreeEnsembleClassifier)
TOLERANCE = 1e-6
RAW_OUTPUT = "p_raw"  # debug output, present only in the checked copy, never in the file
PLATT_EPS = 1e-7
CHECK_BATCH = 8192  # rows per check run (the isotonic step holds an [N, K] comparison)
# Calibrated probabilities stay in [PROB_FLOOR, 1 - PROB_FLOOR]. Isotonic end blocks are the
# observed rate of a finite slice: n rows all Up say P >= ~1 - 1/n, not 1, and a confident
# miss at exactly 0 or 1 costs unbounded log loss (and a p_win of 1 sizes a full bet).
PROB_FLOOR = 0.005


class ExportCheckError(UserError):
    """The exported graph does not reproduce the model it was made from: nothing is written."""


@dataclass
class Calibration:
    """A fitted calibration map from the raw (exported) P(Up) to the calibrated one."""

    kind: str  # "isotonic" | "platt"
    # isotonic: the fitted sklearn object; platt: coefficients of sigmoid(a * logit(p) + b)
    isotonic: Any = None
    a: float = 1.0
    b: float = 0.0
    floor: float = PROB_FLOOR
    n: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def apply(self, p_raw: np.ndarray) -> np.ndarray:
        """The reference implementation (sklearn / numpy, float64) the ONNX graph must match."""
        x = np.asarray(p_raw, dtype=np.float32).astype(np.float64)
        if self.kind == "isotonic":
            return self.isotonic.predict(x)
        p = np.clip(x, PLATT_EPS, 1 - PLATT_EPS)
        z = self.a * np.log(p / (1 - p)) + self.b
        return np.clip(1.0 / (1.0 + np.exp(-z)), self.floor, 1 - self.floor)


def fit_calibration(kind: str, p_raw: np.ndarray, y: np.ndarray,
                    floor: float = PROB_FLOOR) -> Calibration:
    """Fit on the exported model's float32 probabilities, in float64; output in [floor, 1-floor]."""
    if not 0.0 <= floor < 0.5:
        raise UserError(f"probability floor must lie in [0, 0.5), got {floor}")
    x = np.asarray(p_raw, dtype=np.float32).astype(np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=floor, y_max=1.0 - floor,
                                 increasing=True)
        iso.fit(x, yy)
        return Calibration(kind=kind, isotonic=iso, n=len(x), floor=floor,
                           info={"thresholds": int(len(iso.X_thresholds_)), "floor": floor})
    if kind == "platt":
        from sklearn.linear_model import LogisticRegression

        p = np.clip(x, PLATT_EPS, 1 - PLATT_EPS)
        lr = LogisticRegression(C=1e12, solver="lbfgs", max_iter=1000)
        lr.fit(np.log(p / (1 - p)).reshape(-1, 1), yy.astype(int))
        return Calibration(kind=kind, a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]),
                           n=len(x), floor=floor,
                           info={"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0]), "floor": floor})
    raise UserError(f"unknown calibration {kind!r} (use isotonic or platt)")


def booster_to_onnx(booster: Any, n_features: int) -> Any:
    """The raw converted booster: input ``features`` float32 [N, F], outputs label, probabilities."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster.feature_names = None  # the order is the contract's, kept by us
    return convert_xgboost(booster, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                           target_opset=TARGET_OPSET)


def _isotonic_nodes(cal: Calibration, x_name: str, out_name: str) -> tuple[list, list]:
    """Nodes and initializers: float32 x -> float32 calibrated (see module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    iso = cal.isotonic
    xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
    ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
    k = len(xs)
    inits = [
        numpy_helper.from_array(np.array(xs[0]), "iso_xmin"),
        numpy_helper.from_array(np.array(xs[-1]), "iso_xmax"),
    ]
    n = helper.make_node
    nodes = [
        n("Cast", [x_name], ["iso_x64"], to=TensorProto.DOUBLE),
        n("Max", ["iso_x64", "iso_xmin"], ["iso_lo_clip"]),
        n("Min", ["iso_lo_clip", "iso_xmax"], ["iso_xc"]),
    ]
    if k == 1:  # constant map (sklearn: y.repeat)
        inits.append(numpy_helper.from_array(np.array(ys[0]), "iso_const"))
        nodes += [
            n("Mul", ["iso_xc", "iso_zero"], ["iso_z"]),
            n("Add", ["iso_z", "iso_const"], ["iso_y"]),
        ]
        inits.append(numpy_helper.from_array(np.array(0.0), "iso_zero"))
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = (ys[1:] - ys[:-1]) / (xs[1:] - xs[:-1])  # scipy's formula, same order
        inits += [
            numpy_helper.from_array(xs.reshape(1, k), "iso_thr_row"),
            numpy_helper.from_array(xs, "iso_thr"),
            numpy_helper.from_array(ys, "iso_y_thr"),
            numpy_helper.from_array(slope, "iso_slope"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "iso_axis1"),
            numpy_helper.from_array(np.array(1, dtype=np.int64), "iso_one"),
            numpy_helper.from_array(np.array(k - 1, dtype=np.int64), "iso_kmax"),
        ]
        nodes += [
            n("Unsqueeze", ["iso_xc", "iso_axis1"], ["iso_xcol"]),
            n("Less", ["iso_thr_row", "iso_xcol"], ["iso_below"]),
            n("Cast", ["iso_below"], ["iso_below_i"], to=TensorProto.INT64),
            n("ReduceSum", ["iso_below_i", "iso_axis1"], ["iso_count"], keepdims=0),
            n("Max", ["iso_count", "iso_one"], ["iso_hi_lo"]),
            n("Min", ["iso_hi_lo", "iso_kmax"], ["iso_hi"]),
            n("Sub", ["iso_hi", "iso_one"], ["iso_lo"]),
            n("Gather", ["iso_thr", "iso_lo"], ["iso_x_lo"], axis=0),
            n("Gather", ["iso_y_thr", "iso_lo"], ["iso_y_lo"], axis=0),
            n("Gather", ["iso_slope", "iso_lo"], ["iso_s"], axis=0),
            n("Sub", ["iso_xc", "iso_x_lo"], ["iso_dx"]),
            n("Mul", ["iso_s", "iso_dx"], ["iso_sdx"]),
            n("Add", ["iso_sdx", "iso_y_lo"], ["iso_y"]),
        ]
    nodes.append(n("Cast", ["iso_y"], ["iso_y32"], to=TensorProto.FLOAT))
    nodes += _clip01("iso_y32", out_name, inits, 0.0)  # sklearn's y_min/y_max hold the floor
    return nodes, inits


def _platt_nodes(cal: Calibration, x_name: str, out_name: str) -> tuple[list, list]:
    from onnx import TensorProto, helper, numpy_helper

    n = helper.make_node
    inits = [
        numpy_helper.from_array(np.array(PLATT_EPS), "platt_eps"),
        numpy_helper.from_array(np.array(1 - PLATT_EPS), "platt_1meps"),
        numpy_helper.from_array(np.array(1.0), "platt_one"),
        numpy_helper.from_array(np.array(cal.a), "platt_a"),
        numpy_helper.from_array(np.array(cal.b), "platt_b"),
    ]
    nodes = [
        n("Cast", [x_name], ["platt_x64"], to=TensorProto.DOUBLE),
        n("Max", ["platt_x64", "platt_eps"], ["platt_lo"]),
        n("Min", ["platt_lo", "platt_1meps"], ["platt_p"]),
        n("Sub", ["platt_one", "platt_p"], ["platt_q"]),
        n("Div", ["platt_p", "platt_q"], ["platt_odds"]),
        n("Log", ["platt_odds"], ["platt_logit"]),
        n("Mul", ["platt_logit", "platt_a"], ["platt_az"]),
        n("Add", ["platt_az", "platt_b"], ["platt_z"]),
        n("Sigmoid", ["platt_z"], ["platt_y"]),
        n("Cast", ["platt_y"], ["platt_y32"], to=TensorProto.FLOAT),
    ]
    nodes += _clip01("platt_y32", out_name, inits, cal.floor)
    return nodes, inits


def _clip01(x: str, out: str, inits: list, floor: float) -> list:
    from onnx import helper, numpy_helper

    inits += [numpy_helper.from_array(np.array(floor, dtype=np.float32), "cal_zero"),
              numpy_helper.from_array(np.array(1.0 - floor, dtype=np.float32), "cal_one")]
    return [helper.make_node("Clip", [x, "cal_zero", "cal_one"], [out])]


def calibrated_model(raw: Any, cal: Calibration, *, debug_raw: bool = False) -> Any:
    """ONE graph: the converted booster, P(Up) column, then the calibration -> ``p_up``.

    ``debug_raw`` adds the raw probability as a second output (used by the checks only).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = raw.graph
    prob = next(o.name for o in g.output if o.name != "label")
    inits = [numpy_helper.from_array(np.array(1, dtype=np.int64), "col_up")]
    nodes = [helper.make_node("Gather", [prob, "col_up"], [RAW_OUTPUT], axis=1)]
    build = _isotonic_nodes if cal.kind == "isotonic" else _platt_nodes
    cnodes, cinits = build(cal, RAW_OUTPUT, OUTPUT_NAME)
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"])]
    if debug_raw:
        outputs.append(helper.make_tensor_value_info(RAW_OUTPUT, TensorProto.FLOAT, ["N"]))
    graph = helper.make_graph(
        list(g.node) + nodes + cnodes, "slotml_td_model", list(g.input), outputs,
        initializer=list(g.initializer) + inits + cinits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", TARGET_OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="slotml",
    )
    model.ir_version = min(model.ir_version, 8)  # opset 15 <-> IR 8; keeps older runtimes happy
    onnx.checker.check_model(model)
    return model


def session(model: Any) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_batched(sess: Any, X: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    X = np.ascontiguousarray(X, dtype=np.float32)
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    for i in range(0, max(len(X), 1), CHECK_BATCH):
        got = sess.run(outputs, {INPUT_NAME: X[i:i + CHECK_BATCH]})
        for acc, g in zip(parts, got, strict=True):
            acc.append(np.asarray(g).reshape(-1))
    return [np.concatenate(p) if p else np.empty(0, np.float32) for p in parts]


def raw_onnx_probabilities(raw: Any, X: np.ndarray) -> np.ndarray:
    """P(Up) of the exported (uncalibrated) booster, float32."""
    prob = next(o.name for o in raw.graph.output if o.name != "label")
    return run_batched(session(raw), X, [prob])[0].reshape(-1, 2)[:, 1].astype(np.float32)


@dataclass
class CheckResult:
    rows: int
    raw_max_abs_diff: float  # raw ONNX vs Booster.predict
    calibrated_max_abs_diff: float  # calibrated ONNX vs sklearn on raw ONNX
    tolerance: float = TOLERANCE

    def describe(self) -> dict[str, Any]:
        return {"rows": self.rows, "raw_vs_xgboost": self.raw_max_abs_diff,
                "calibrated_vs_sklearn": self.calibrated_max_abs_diff, "tolerance": self.tolerance}


def check_model(model_dbg: Any, booster: Any, cal: Calibration, X: np.ndarray,
                tol: float = TOLERANCE) -> CheckResult:
    """Both checks on the final graph (with its debug raw output), separately; raise if over."""
    from slotml.train.fit import booster_predict

    sess = session(model_dbg)
    p_up, p_raw = run_batched(sess, X, [OUTPUT_NAME, RAW_OUTPUT])
    ref_raw = booster_predict(booster, X)
    raw_diff = float(np.max(np.abs(p_raw.astype(np.float64) - ref_raw))) if len(X) else 0.0
    ref_cal = cal.apply(p_raw)
    cal_diff = float(np.max(np.abs(p_up.astype(np.float64) - ref_cal))) if len(X) else 0.0
    if not (raw_diff <= tol):
        i = int(np.argmax(np.abs(p_raw - ref_raw)))
        raise ExportCheckError(
            f"export check failed: raw ONNX probabilities differ from XGBoost's Booster.predict by "
            f"{raw_diff:.3g} (> {tol:g}) on row {i}; model not written"
        )
    if not (cal_diff <= tol):
        i = int(np.argmax(np.abs(p_up - ref_cal)))
        raise ExportCheckError(
            f"export check failed: calibrated ONNX output differs from sklearn {cal.kind} on the "
            f"raw ONNX probabilities by {cal_diff:.3g} (> {tol:g}) on row {i}; model not written"
        )
    return CheckResult(rows=len(X), raw_max_abs_diff=raw_diff, calibrated_max_abs_diff=cal_diff,
                       tolerance=tol)


def strip_debug_output(model_dbg: Any) -> Any:
    """The file's graph: the checked graph minus its debug raw output (same nodes otherwise)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(model_dbg)
    keep = [o for o in model.graph.output if o.name == OUTPUT_NAME]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model


def set_metadata(model: Any, meta: dict[str, str]) -> None:
    from onnx import helper

    del model.metadata_props[:]
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})


def write_atomic(data: bytes, path: Path) -> None:
    """Write to a temporary name in the same folder, fsync, then rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Exported:
    model: Any  # onnx.ModelProto, the file's graph (no metadata yet)
    calibration: Calibration
    check: CheckResult
    p_raw_calibration: np.ndarray  # the raw ONNX probabilities the calibration was fitted on
    raw: Any = None  # the converted booster alone (uncalibrated), for the report


def export_calibrated(booster: Any, n_features: int, X_cal: np.ndarray, y_cal: np.ndarray,
                      kind: str, X_check: np.ndarray, floor: float = PROB_FLOOR,
                      scorer: Any = None) -> Exported:
    """Export, fit the calibration on the export's own output, append it, check both parts.
    ``scorer`` (``--refit-booster``): the booster whose exported output the calibration is
    fitted on, one that did not fit the calibration rows; ``booster`` is then a refit on more
    rows, and the map is applied to it."""
    raw = booster_to_onnx(booster, n_features)
    p_raw = raw_onnx_probabilities(
        raw if scorer is None else booster_to_onnx(scorer, n_features), X_cal)
    cal = fit_calibration(kind, p_raw, y_cal, floor)
    dbg = calibrated_model(raw, cal, debug_raw=True)
    check = check_model(dbg, booster, cal, X_check)
    model = strip_debug_output(dbg)
    # The stripped graph must give the very numbers that were checked (same nodes, one output).
    probe = X_check[: min(len(X_check), 2048)]
    a = run_batched(session(model), probe, [OUTPUT_NAME])[0]
    b = run_batched(session(dbg), probe, [OUTPUT_NAME])[0]
    if not np.array_equal(a, b):
        raise ExportCheckError("export check failed: the written graph differs from the checked one")
    return Exported(model=model, calibration=cal, check=check, p_raw_calibration=p_raw, raw=raw)


def calibration_only_model(cal: Calibration) -> Any:
    """The calibration nodes alone (input ``p_raw`` float32 [N] -> ``p_up``): for tests/tools."""
    import onnx
    from onnx import TensorProto, helper

    build = _isotonic_nodes if cal.kind == "isotonic" else _platt_nodes
    nodes, inits = build(cal, RAW_OUTPUT, OUTPUT_NAME)
    graph = helper.make_graph(
        nodes, "slotml_calibration",
        [helper.make_tensor_value_info(RAW_OUTPUT, TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model
