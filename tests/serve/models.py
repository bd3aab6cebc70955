"""Tiny hand-built slotml model files for the serve tests (no xgboost: fast and exact).

The graph is a logistic model p_up = sigmoid(x . w + b) with NaN read as 0, which is enough
to exercise loading, metadata checks, scoring and hot swaps with known answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from slotml.model_file import ModelMeta

DECISION_POINTS = (5 / 15, 7 / 15, 10 / 15)


def make_model(path: Path, features: list[str], weights: list[float] | None = None,
               bias: float = 0.0, *, decision_points: tuple[float, ...] = DECISION_POINTS,
               window_s: int = 900, stats: dict[str, Any] | None = None,
               tolerance: float = 1 / 15, lookback: float = 2 / 15,
               meta_over: dict[str, str | None] | None = None, output_2d: bool = False,
               input_name: str = "features", output_name: str = "p_up") -> Path:
    n = len(features)
    w = np.asarray(weights if weights is not None else [0.0] * n, dtype=np.float32).reshape(n, 1)
    nodes = [
        helper.make_node("IsNaN", ["x"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "x"], ["x0"]),
        helper.make_node("MatMul", ["x0", "w"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["zb"]),
        helper.make_node("Sigmoid", ["zb"], ["p2d"]),
    ]
    if output_2d:
        nodes.append(helper.make_node("Identity", ["p2d"], [output_name]))
        out_shape: list[Any] = ["N", 1]
    else:
        nodes.append(helper.make_node("Reshape", ["p2d", "flat"], [output_name]))
        out_shape = ["N"]
    nodes[0].input[0] = input_name
    nodes[1].input[2] = input_name
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([bias], dtype=np.float32), "b"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    meta = ModelMeta(features=tuple(features), decision_points=decision_points,
                     window_s=window_s, tolerance=tolerance, lookback=lookback,
                     stats=stats or {}, calibration="isotonic", feature_contract="test",
                     slotml_version="0.1.0").to_metadata()
    for k, v in (meta_over or {}).items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))
