"""The model file's metadata: train writes it, serve refuses anything it cannot trust."""

from __future__ import annotations

import json

import pytest

from slotml.errors import UserError
from slotml.serve import model_format as mf
from slotml.serve.model_format import ModelFileError, ModelMeta, validate_metadata

FEATURES = ["a", "b", "c"]


def _meta(**over: str) -> dict[str, str]:
    m = ModelMeta(features=tuple(FEATURES), decision_points=(1 / 3, 7 / 15, 2 / 3), window_s=900,
                  stats={"vol": {"BTC": 0.1}}, feature_contract="1", slotml_version="0.1.0",
                  metrics={"log_loss": 0.6}, lake_manifest_id=3).to_metadata()
    m.update(over)
    return m


def test_round_trip() -> None:
    got = validate_metadata(_meta(), FEATURES, contract_version="1")
    assert got.features == tuple(FEATURES)
    assert got.decision_points == (1 / 3, 7 / 15, 2 / 3)
    assert got.window_s == 900 and got.stats == {"vol": {"BTC": 0.1}}
    assert got.lake_manifest_id == 3 and got.calibration == "isotonic"
    assert issubclass(ModelFileError, UserError)


def test_keys_are_the_agreed_literals() -> None:
    assert mf.FORMAT == "slotml-td-model/1"
    assert set(_meta()) == set(mf.ALL_KEYS) == {
        "slotml_format", "slotml_version", "feature_contract", "features", "stats",
        "decision_points", "window_s", "calibration", "splits", "lake_manifest_id", "metrics",
        "created_at"}


@pytest.mark.parametrize(("over", "needle"), [
    ({"slotml_format": "other/1"}, "not a slotml model"),
    ({"features": json.dumps(["a", "c", "b"])}, "order differs at position 1"),
    ({"features": json.dumps(["a", "b"])}, "missing ['c']"),
    ({"features": json.dumps(["a", "b", "c", "d"])}, "unknown ['d']"),
    ({"features": "[not json"}, "not valid JSON"),
    ({"decision_points": "[0.6, 0.3]"}, "ascending"),
    ({"decision_points": "[1.5]"}, "ascending fractions"),
    ({"window_s": "0"}, "positive integer"),
    ({"window_s": "9.5"}, "positive integer"),
    ({"calibration": "magic"}, "unknown calibration"),
    ({"stats": "[]"}, "JSON object"),
    ({"lake_manifest_id": "\"x\""}, "integer or null"),
])
def test_refusals(over: dict[str, str], needle: str) -> None:
    with pytest.raises(ModelFileError) as e:
        validate_metadata(_meta(**over), FEATURES, source="m.onnx")
    assert needle in str(e.value) and "m.onnx" in str(e.value)


def test_missing_format_and_required_keys() -> None:
    m = _meta()
    del m["slotml_format"]
    with pytest.raises(ModelFileError, match="not a slotml model"):
        validate_metadata(m, FEATURES)
    m = _meta()
    del m["stats"]
    with pytest.raises(ModelFileError, match="lacks"):
        validate_metadata(m, FEATURES)


def test_contract_version_mismatch_and_optional_keys() -> None:
    with pytest.raises(ModelFileError, match="feature contract"):
        validate_metadata(_meta(), FEATURES, contract_version="2")
    m = _meta()
    for k in ("splits", "metrics", "lake_manifest_id", "created_at"):
        del m[k]
    got = validate_metadata(m, None)
    assert got.metrics == {} and got.lake_manifest_id is None
