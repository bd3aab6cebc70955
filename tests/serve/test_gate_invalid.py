"""A model that answers 5.0, inf, NaN or -0.5 at run time is declined, counted, logged once.

The scorer smoke-tests its output only on two rows at load, so a valid graph can still return a
non-probability later; before issue 19 the gate then sized an entry at p_win = 5.0.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from slotml.model_file import ModelMeta
from slotml.serve import EntryGate, GateConfig, Scorer
from slotml.serve.gate import INVALID_P_WIN

from .models import DECISION_POINTS

ABC = ["a", "b", "c"]
MID = 7 / 15


def raw_model(path: Path) -> Path:
    """A real ONNX graph whose output is a + b, no squashing (NaN inputs read as 0): the load
    check's all-NaN and zero rows give 0, a valid probability; other rows give anything."""
    nodes = [
        helper.make_node("IsNaN", ["features"], ["nan"]),
        helper.make_node("Where", ["nan", "zero", "features"], ["x0"]),
        helper.make_node("MatMul", ["x0", "w"], ["z"]),
        helper.make_node("Reshape", ["z", "flat"], ["p_up"]),
    ]
    graph = helper.make_graph(
        nodes, "raw",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("p_up", TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(np.array([[1], [1], [0]], np.float32), "w"),
                     numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                     numpy_helper.from_array(np.array([-1], np.int64), "flat")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    meta = ModelMeta(features=tuple(ABC), decision_points=DECISION_POINTS, window_s=900,
                     tolerance=1 / 15, lookback=2 / 15, stats={}, calibration="isotonic",
                     feature_contract="test", slotml_version="0.1.0").to_metadata()
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def gate(tmp_path: Path) -> EntryGate:
    s = Scorer.load(raw_model(tmp_path / "raw.onnx"), contract_features=ABC, contract_version=None)
    return EntryGate(GateConfig(min_confidence=0.5, order_size=10, min_order_size=1), s)


BAD = {"5.0": [5.0, 0, 0], "inf": [np.inf, 0, 0], "-inf": [-np.inf, 0, 0],
       "nan": [np.inf, -np.inf, 0], "-0.5": [-0.5, 0, 0], "1.5": [1.0, 0.5, 0]}


@pytest.mark.parametrize("name", list(BAD))
def test_non_probability_is_declined_with_its_own_code(gate: EntryGate, name: str) -> None:
    v = np.array(BAD[name], np.float32)
    raw = gate.scorer.p_up(v)
    assert not (0.0 <= raw <= 1.0)  # the graph really returns it (not a mocked scorer)
    for d in (gate.decide("Up", v, MID, price=0.5), gate.decide("Down", v, MID, price=0.5),
              gate.choose(v, MID, prices={"Up": 0.5, "Down": 0.5})):
        assert not d.enter and d.size == 0 and d.code == INVALID_P_WIN
        assert d.p_win is None
    assert gate.counters[INVALID_P_WIN] == 3


def test_edge_policy_and_kelly_decline_too(tmp_path: Path) -> None:
    s = Scorer.load(raw_model(tmp_path / "raw.onnx"), contract_features=ABC, contract_version=None)
    for cfg in (GateConfig(policy="edge", min_edge=0.0), GateConfig(sizing="kelly")):
        g = EntryGate(cfg, s)
        d = g.decide("Up", np.array([5.0, 0, 0], np.float32), MID, price=0.4)
        assert d.code == INVALID_P_WIN and not d.enter


def test_valid_outputs_still_enter_and_boundaries_are_valid(gate: EntryGate) -> None:
    d = gate.decide("Up", np.array([0.9, 0, 0], np.float32), MID)
    assert d.enter and d.size == 8 and math.isclose(d.p_win, 0.9, abs_tol=1e-6)
    d = gate.decide("Up", np.array([1.0, 0, 0], np.float32), MID)  # 1.0 is a probability
    assert d.enter and d.code == "enter"
    assert gate.decide("Down", np.array([1.0, 0, 0], np.float32), MID).code == "below_min_confidence"
    assert gate.counters[INVALID_P_WIN] == 0


def test_logged_once_per_model(gate: EntryGate, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="slotml.serve.gate")
    for _ in range(5):
        gate.decide("Up", np.array([5.0, 0, 0], np.float32), MID)
    warned = [r for r in caplog.records if INVALID_P_WIN in r.getMessage()]
    assert len(warned) == 1 and "raw.onnx" in warned[0].getMessage()
    assert gate.counters[INVALID_P_WIN] == 5
    # another model (a reload swaps the metadata): logged again, once
    gate.scorer = Scorer.load(raw_model(tmp_path / "raw2.onnx"), contract_features=ABC,
                              contract_version=None)
    for _ in range(3):
        gate.decide("Up", np.array([np.inf, 0, 0], np.float32), MID)
    warned = [r for r in caplog.records if INVALID_P_WIN in r.getMessage()]
    assert len(warned) == 2 and gate.counters[INVALID_P_WIN] == 8
