"""The scorer loads only what it can trust, scores exactly, and swaps models atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from slotml.features.contract import CONTRACT_VERSION, FEATURES
from slotml.model_file import resolve_model_path
from slotml.serve import ModelFileError, Scorer

from .models import make_model, sigmoid

ABC = ["a", "b", "c"]


def _load(path: Path, **kw) -> Scorer:
    return Scorer.load(path, contract_features=ABC, contract_version=None, **kw)


def test_scores_exactly_and_p_win_is_complementary(tmp_path: Path) -> None:
    s = _load(make_model(tmp_path / "m.onnx", ABC, [1.0, -2.0, 0.5], 0.1))
    assert s.p_up([1, 1, 1]) == pytest.approx(sigmoid(-0.4), abs=1e-6)
    v = np.array([2.0, np.nan, 0.0], dtype=np.float32)  # NaN = missing (read as 0 by this graph)
    assert s.p_win("Up", v) == pytest.approx(sigmoid(2.1), abs=1e-6)
    assert s.p_win("Down", v) == pytest.approx(1 - sigmoid(2.1), abs=1e-6)
    assert s.p_win("down", v) == s.p_win("Down", v)
    with pytest.raises(ValueError, match="outcome"):
        s.p_win("Sideways", v)
    with pytest.raises(ValueError, match="expected 3 features"):
        s.p_up([1.0, 2.0])
    batch = s.p_up_batch(np.array([[1, 1, 1], [2, 0, 0]], dtype=np.float32))
    assert batch == pytest.approx([sigmoid(-0.4), sigmoid(2.1)], abs=1e-6)
    assert s.features == tuple(ABC) and s.window_s == 900
    assert s.in_range(5 / 15) and s.in_range(10 / 15) and s.in_range(0.5)
    assert not s.in_range(0.3) and not s.in_range(0.7)


def test_two_dimensional_output_is_accepted(tmp_path: Path) -> None:
    s = _load(make_model(tmp_path / "m.onnx", ABC, [1.0, 0, 0], 0.0, output_2d=True))
    assert s.p_up([1, 0, 0]) == pytest.approx(sigmoid(1.0), abs=1e-6)


def test_default_contract_is_features_contract(tmp_path: Path) -> None:
    feats = list(FEATURES)
    ok = make_model(tmp_path / "ok.onnx", feats, meta_over={"feature_contract": str(CONTRACT_VERSION)})
    assert Scorer.load(ok).features == FEATURES
    swapped = feats[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    bad = make_model(tmp_path / "bad.onnx", swapped, meta_over={"feature_contract": str(CONTRACT_VERSION)})
    with pytest.raises(ModelFileError, match="differ from this version's feature contract"):
        Scorer.load(bad)
    old = make_model(tmp_path / "old.onnx", feats, meta_over={"feature_contract": "0"})
    with pytest.raises(ModelFileError, match="feature contract '0'"):
        Scorer.load(old)
    # contract 3 has the same features (only the asset table is shorter): it still loads
    three = make_model(tmp_path / "three.onnx", feats, meta_over={"feature_contract": "3"})
    assert Scorer.load(three).meta.feature_contract == "3"
    newer = make_model(tmp_path / "newer.onnx", feats,
                       meta_over={"feature_contract": str(CONTRACT_VERSION + 1)})
    with pytest.raises(ModelFileError, match=f"feature contract '{CONTRACT_VERSION + 1}'.*scores contract 3, 4"):
        Scorer.load(newer)


def test_refuses_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no model file"):
        _load(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(os.urandom(3000))
    with pytest.raises(ModelFileError, match="corrupt or not an ONNX model"):
        _load(junk)
    good = make_model(tmp_path / "good.onnx", ABC)
    truncated = tmp_path / "trunc.onnx"
    # cut inside a metadata string (a fixed byte count can land on an entry boundary and leave
    # a valid file that lacks only optional keys)
    data = good.read_bytes()
    truncated.write_bytes(data[:data.index(b"slotml_version") + 5])
    with pytest.raises(ModelFileError):
        _load(truncated)
    foreign = make_model(tmp_path / "foreign.onnx", ABC, meta_over={"slotml_format": None})
    with pytest.raises(ModelFileError, match="not a slotml model"):
        _load(foreign)
    wrong_in = make_model(tmp_path / "in.onnx", ABC, input_name="X")
    with pytest.raises(ModelFileError, match="input named 'features'"):
        _load(wrong_in)
    wrong_out = make_model(tmp_path / "out.onnx", ABC, output_name="prob")
    with pytest.raises(ModelFileError, match="no output named 'p_up'"):
        _load(wrong_out)
    narrow = make_model(tmp_path / "narrow.onnx", ["a", "b"])
    with pytest.raises(ModelFileError, match="features differ"):
        _load(narrow)


def test_refuses_a_graph_whose_width_disagrees_with_its_metadata(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx", ABC)
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    meta["features"] = json.dumps(["a", "b"])
    del model.metadata_props[:]
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"input shape .* does not match the 2 features"):
        Scorer.load(path, contract_features=["a", "b"], contract_version=None)


def test_refuses_output_outside_unit_interval(tmp_path: Path) -> None:
    g = helper.make_graph(
        [helper.make_node("ReduceSum", ["features"], ["p_up"], keepdims=0)], "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("p_up", TensorProto.FLOAT, ["N"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 8
    from slotml.model_file import ModelMeta
    helper.set_model_props(m, ModelMeta(features=tuple(ABC), decision_points=(0.5,), window_s=900,
                                        tolerance=0.1, lookback=0.2, stats={},
                                        calibration="isotonic", feature_contract="x",
                                        slotml_version="0").to_metadata())
    path = tmp_path / "sum.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ModelFileError, match=r"one probability in \[0, 1\]"):
        _load(path)


def test_pointer_symlink_and_dirs(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a = make_model(models / "td_model_20260101_000000.onnx", ABC, [1, 0, 0])
    b = make_model(models / "td_model_20260108_000000.onnx", ABC, [-1, 0, 0])
    (models / "current").write_text(a.name + "\n")
    assert resolve_model_path(models / "current") == a
    assert resolve_model_path(models) == a
    assert resolve_model_path(tmp_path) == a
    link = tmp_path / "link.onnx"
    link.symlink_to(b)
    assert resolve_model_path(link) == b
    (models / "current").write_text("td_model_gone.onnx")
    with pytest.raises(ModelFileError, match="which does not exist"):
        _load(models / "current")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="without a models/current pointer"):
        _load(tmp_path / "empty")


def test_reload_swaps_atomically_and_keeps_old_model_on_error(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a = make_model(models / "td_model_a.onnx", ABC, [1, 0, 0])
    b = make_model(models / "td_model_b.onnx", ABC, [-1, 0, 0])
    pointer = models / "current"
    pointer.write_text(a.name)
    s = _load(pointer)
    assert s.p_up([1, 0, 0]) == pytest.approx(sigmoid(1), abs=1e-6)
    assert not s.source_changed()
    assert s.reload() is False  # same file
    tmp = models / "current.tmp"
    tmp.write_text(b.name)
    tmp.replace(pointer)  # what --promote does
    assert s.source_changed()
    assert s.reload() is True
    assert s.path == b
    assert s.p_up([1, 0, 0]) == pytest.approx(sigmoid(-1), abs=1e-6)
    # a broken promotion: the old model keeps serving
    bad = models / "td_model_c.onnx"
    bad.write_bytes(b"garbage")
    pointer.write_text(bad.name)
    with pytest.raises(ModelFileError):
        s.reload()
    assert s.path == b and s.p_up([1, 0, 0]) == pytest.approx(sigmoid(-1), abs=1e-6)


def test_importing_serve_stays_light(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx", list(FEATURES),
                      meta_over={"feature_contract": str(CONTRACT_VERSION)})
    code = (
        "import sys\n"
        "from slotml.serve import Scorer, EntryGate, OnlineFeatures, add_model_args\n"
        f"s = Scorer.load({str(path)!r})\n"
        "g = EntryGate(scorer=s)\n"
        "o = OnlineFeatures.for_model(s)\n"
        "v = o.vector_at('BTC', 900, 0, 0)\n"
        "print('heavy=' + ','.join(m for m in ('xgboost', 'duckdb', 'polars', 'sklearn', 'pandas', 'onnx') if m in sys.modules))\n"
        "print('onnxruntime' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, ort = out.stdout.strip().splitlines()
    assert heavy == "heavy=", f"importing slotml.serve pulled in {heavy}"
    assert ort == "True"  # the check can see imports: the scorer did load onnxruntime
