"""The model file contract (slotml/model_file.py): train writes it, serve and bots read it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slotml import model_file as mf
from slotml.errors import UserError
from slotml.model_file import ModelFileError, ModelMeta, ModelRecord, validate_metadata

FEATURES = ["a", "b", "c"]


def _meta(**over: str) -> dict[str, str]:
    m = ModelMeta(features=tuple(FEATURES), decision_points=(1 / 3, 7 / 15, 2 / 3), window_s=900,
                  tolerance=2 / 15, lookback=3 / 15, stats={"vol": {"BTC": 0.1}},
                  calibration="isotonic", feature_contract="1", slotml_version="0.1.0",
                  metrics={"log_loss": 0.6}, lake_manifest_id=3).to_metadata()
    m.update(over)
    return m


def _format1(**over: str) -> dict[str, str]:
    """Metadata exactly as format 1 wrote it: no tolerance, no lookback."""
    m = _meta(slotml_format="slotml-td-model/1")
    del m["tolerance"], m["lookback"]
    m.update(over)
    return m


def test_round_trip() -> None:
    got = validate_metadata(_meta(), FEATURES, contract_version="1")
    assert got.features == tuple(FEATURES)
    assert got.decision_points == (1 / 3, 7 / 15, 2 / 3)
    assert got.window_s == 900 and got.stats == {"vol": {"BTC": 0.1}}
    assert got.tolerance == 2 / 15 and got.lookback == 3 / 15
    assert got.lake_manifest_id == 3 and got.calibration == "isotonic"
    assert got.format == mf.FORMAT == "slotml-td-model/2"
    assert validate_metadata(got.to_metadata(), FEATURES) == got
    assert issubclass(ModelFileError, UserError)


def test_keys_are_the_agreed_literals_and_documented() -> None:
    assert set(_meta()) == set(mf.ALL_KEYS) == {
        "slotml_format", "slotml_version", "feature_contract", "features", "stats",
        "decision_points", "window_s", "tolerance", "lookback", "calibration", "splits",
        "lake_manifest_id", "metrics", "created_at", "policy", "importance",
        "feature_ranges"}
    assert [f for f in ModelMeta.__dataclass_fields__ if f != "format"] == [k.name for k in mf.KEYS]
    for k in mf.KEYS:  # the module's table documents every key
        assert f"\n{k.name} " in mf.__doc__, k.name


def test_training_set_metadata_speaks_the_model_files_vocabulary() -> None:
    from slotml.features import contract

    meta = contract.metadata((0.5,), 2 / 15, 3 / 15)
    shared = {k: meta[k] for k in ("feature_contract", "features", "decision_points",
                                   "tolerance", "lookback")}
    assert shared == {"feature_contract": str(contract.CONTRACT_VERSION),
                      "features": list(contract.FEATURES), "decision_points": [0.5],
                      "tolerance": 2 / 15, "lookback": 3 / 15}
    # the same values pass the model file's own checks
    for name, value in shared.items():
        k = mf.KEY_BY_NAME[name]
        k.check(value)


def test_format1_defaults_are_what_format1_models_were_built_with() -> None:
    from slotml.features.contract import DEFAULT_LOOKBACK, DEFAULT_TOLERANCE

    assert mf.FORMAT1_TOLERANCE == DEFAULT_TOLERANCE == 1 / 15
    assert mf.FORMAT1_LOOKBACK == DEFAULT_LOOKBACK == 2 / 15


def test_format1_metadata_reads_with_format1_defaults() -> None:
    got = validate_metadata(_format1(), FEATURES, contract_version="1")
    assert got.format == "slotml-td-model/1"
    assert got.tolerance == 1 / 15 and got.lookback == 2 / 15
    assert got.decision_points == (1 / 3, 7 / 15, 2 / 3) and got.window_s == 900
    # written again, it is a complete format-2 file
    again = got.to_metadata()
    assert again["slotml_format"] == mf.FORMAT and json.loads(again["tolerance"]) == 1 / 15
    # a format-2 file must carry them
    m = _meta()
    del m["tolerance"]
    with pytest.raises(ModelFileError, match=r"lacks \['tolerance'\]"):
        validate_metadata(m, FEATURES)


def test_unknown_keys_are_ignored() -> None:
    got = validate_metadata(_meta(validated_by="someone", future_knob="[1, 2]"), FEATURES)
    assert got == validate_metadata(_meta(), FEATURES)
    assert not hasattr(got, "future_knob")


@pytest.mark.parametrize(("over", "needle"), [
    ({"slotml_format": "other/1"}, "not a slotml model"),
    ({"slotml_format": "slotml-td-model/3"}, "not one this version reads"),
    ({"features": json.dumps(["a", "c", "b"])}, "order differs at position 1"),
    ({"features": json.dumps(["a", "b"])}, "missing ['c']"),
    ({"features": json.dumps(["a", "b", "c", "d"])}, "unknown ['d']"),
    ({"features": json.dumps(["a", "a", "b"])}, "repeats a name"),
    ({"features": "[not json"}, "not valid JSON"),
    ({"decision_points": "[0.6, 0.3]"}, "ascending"),
    ({"decision_points": "[1.5]"}, "ascending fractions"),
    ({"window_s": "0"}, "positive integer"),
    ({"window_s": "9.5"}, "positive integer"),
    ({"tolerance": "\"2/15\""}, "'tolerance' (float) must be a number strictly between 0 and 1"),
    ({"tolerance": "1.5"}, "'tolerance' (float) must be a number strictly between 0 and 1"),
    ({"lookback": "true"}, "'lookback' (float) must be a number"),
    ({"lookback": "NaN"}, "'lookback' (float) must be a number"),
    ({"calibration": "magic"}, "unknown calibration"),
    ({"stats": "[]"}, "'stats' (dict) must be a JSON object"),
    ({"metrics": "3"}, "'metrics' (dict) must be a JSON object"),
    ({"lake_manifest_id": "\"x\""}, "integer or null"),
    ({"importance": "[]"}, "'importance' (dict | null) must be null or a JSON object"),
    ({"importance": json.dumps({"gain": {"a": 1.0}})}, "permutation must be a non-empty object"),
    ({"importance": '{"gain": {"a": NaN}, "permutation": {"a": 0.1}}'}, "gain must be"),
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
    m = _meta(splits="")
    for k in ("metrics", "lake_manifest_id", "created_at"):
        del m[k]
    got = validate_metadata(m, None)
    assert got.metrics == {} and got.splits == {} and got.lake_manifest_id is None
    assert got.created_at == ""


def test_importance_key_round_trips_and_old_files_without_it_load(tmp_path: Path) -> None:
    """``importance`` is optional (no format bump): a file written before it reads as None,
    through the validator and through the scorer on a real ONNX file."""
    from slotml.serve import Scorer
    from tests.serve.models import make_model

    imp = {"gain": {"a": 2.5, "b": 0.0, "c": 1.0}, "permutation": {"a": 0.01, "b": -1e-4, "c": 0.0},
           "permutation_std": {"a": 1e-3, "b": 1e-4, "c": 0.0}, "metric": "brier",
           "slice": "calibration", "base": 0.2, "rows": 100, "repeats": 3, "seed": 0}
    got = validate_metadata(_meta(importance=json.dumps(imp)), FEATURES)
    assert got.importance == imp and validate_metadata(got.to_metadata(), FEATURES) == got
    old = _meta()
    del old["importance"]
    assert validate_metadata(old, FEATURES).importance is None
    path = make_model(tmp_path / "td_model_20261101_000000.onnx", FEATURES, [1.0, 0.0, 0.0],
                      meta_over={"importance": None})  # as written before the key existed
    s = Scorer.load(path, contract_features=FEATURES, contract_version=None)
    assert s.meta.importance is None and s.meta.format == mf.FORMAT


def test_format1_onnx_file_loads_in_the_scorer_and_online_features(tmp_path: Path) -> None:
    """A model file written by format 1 (real ONNX, real onnxruntime) still loads: running bots
    hot-reload old models; its tolerance and lookback are format 1's."""
    from slotml.serve import OnlineFeatures, Scorer
    from tests.serve.models import make_model

    path = make_model(tmp_path / "td_model_20260101_000000.onnx", FEATURES, [1.0, 0.0, 0.0],
                      meta_over={"slotml_format": "slotml-td-model/1", "tolerance": None,
                                 "lookback": None, "some_later_key": "{\"x\": 1}",
                                 "feature_contract": "3"})  # format 1 came under contracts 1..3
    s = Scorer.load(path, contract_features=FEATURES, contract_version=None)
    assert s.meta.format == "slotml-td-model/1"
    assert s.tolerance == s.meta.tolerance == 1 / 15 and s.lookback == s.meta.lookback == 2 / 15
    assert s.decision_points == (5 / 15, 7 / 15, 10 / 15) and s.window_s == 900
    assert s.p_up([0.0, 0.0, 0.0]) == pytest.approx(0.5)
    online = OnlineFeatures.for_model(s)
    assert online.tolerance == 1 / 15 and online.lookback == 2 / 15
    assert online.codes == {"BTC": 0, "ETH": 1, "SOL": 2, "XRP": 3}  # its own asset table

    # a wrong type in a file is refused with the key named
    bad = make_model(tmp_path / "bad.onnx", FEATURES, meta_over={"tolerance": "\"wide\""})
    with pytest.raises(ModelFileError, match=r"bad.onnx: metadata 'tolerance' \(float\)"):
        Scorer.load(bad, contract_features=FEATURES, contract_version=None)


def test_pointer_write_and_resolve(tmp_path: Path) -> None:
    import datetime as dt

    models = tmp_path / mf.MODELS_SUBDIR
    models.mkdir()
    name = mf.model_file_name(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert name == "td_model_20260102_030405.onnx"
    (models / name).write_bytes(b"onnx")
    pointer = mf.write_pointer(models, models / name)
    assert pointer == models / "current" and pointer.read_text() == name + "\n"
    assert mf.resolve_model_path(tmp_path) == models / name
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


def test_record_round_trip_and_defaults(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    # missing: empty defaults (for a named model too)
    assert mf.read_record(models) == ModelRecord()
    assert mf.read_record(models, "td_model_a.onnx") == ModelRecord(model="td_model_a.onnx")
    rec = ModelRecord(model="td_model_a.onnx", validated_at="2026-01-02T03:04:05Z")
    path = mf.write_record(models, rec)
    assert path == models / mf.RECORD_NAME == models / "current.json"
    assert mf.read_record(models) == rec
    assert mf.read_record(models, "td_model_a.onnx") == rec
    # a record about another model says nothing about this one
    assert mf.read_record(models, "td_model_b.onnx") == ModelRecord(model="td_model_b.onnx")
    # keys a later version writes survive a read-modify-write; the file is JSON
    data = json.loads(path.read_text())
    data["later_fact"] = 42
    path.write_text(json.dumps(data))
    got = mf.read_record(models)
    assert got.extra == {"later_fact": 42}
    mf.write_record(models, ModelRecord(got.model, "2026-02-01T00:00:00Z", got.extra))
    assert json.loads(path.read_text()) == {"model": "td_model_a.onnx", "later_fact": 42,
                                            "validated_at": "2026-02-01T00:00:00Z"}
    assert [p.name for p in models.iterdir()] == ["current.json"]  # no temp file left
    # unreadable: empty defaults, never an exception in a bot
    path.write_text("{not json")
    assert mf.read_record(models) == ModelRecord()


def test_model_file_module_is_light() -> None:
    code = ("import sys, slotml.model_file\n"
            "print(','.join(sorted(m for m in sys.modules if m.startswith('slotml.') "
            "and m not in ('slotml.model_file', 'slotml.errors'))))\n"
            "print(','.join(m for m in ('numpy', 'onnx', 'onnxruntime') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", ""], out.stdout
