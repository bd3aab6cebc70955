"""Expiry and out-of-distribution abstention (serve/guards.py), through the gate exactly as a bot
builds and calls it (``add_model_args`` + ``EntryGate.from_args`` on a model file that
``slotml train`` wrote from a synthetic lake) and through ``slotml backtest`` on that lake."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from slotml import model_file as mf
from slotml.argtypes import OneLineParser
from slotml.cli import main
from slotml.serve import EntryGate, add_model_args
from slotml.serve.guards import RECORD_REFRESH_S, ModelGuards, Ranges, training_end
from tests.train.test_pipeline import FAST, _write_lake

DAY = 86400.0
MID = 7 / 15


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding a synthetic lake and the model `slotml train` made of it."""
    d = tmp_path_factory.mktemp("guards")
    _write_lake(d / "lake", n_windows=160)
    assert main(["train", "--data-dir", str(d), "--test-days", "0.3", "--params",
                 json.dumps(FAST), "--policy", "design"]) == 0
    return d


def model_path(d: Path) -> Path:
    return sorted((d / "models").glob("td_model_*.onnx"))[-1]


def bot_gate(path: Path, *argv: str) -> EntryGate:
    """The gate as a bot builds it: its own parser, add_model_args, from_args."""
    p = OneLineParser(prog="bot")
    add_model_args(p)
    args = p.parse_args(["--model-path", str(path), "--min-confidence", "0.5",
                         "--min-order-size", "1", *argv])
    return EntryGate.from_args(args)


def middle(gate: EntryGate) -> np.ndarray:
    """A vector with every feature in the middle of its training range."""
    r = Ranges.of(gate.scorer.meta)
    return np.where(np.isfinite(r.lo), (r.lo + r.hi) / 2, np.nan).astype(np.float32)


def test_training_writes_each_features_ranges(trained: Path) -> None:
    meta = EntryGate.from_args(argparse.Namespace(model_path=str(model_path(trained)))).scorer.meta
    fr = meta.feature_ranges
    assert fr["quantiles"] == [0.001, 0.999] and "mirror" in fr["rows_from"]
    assert set(fr["features"]) == set(meta.features)
    # the fit slice and its mirror: twice the slice's rows
    assert fr["rows"] == 2 * (meta.splits["train"]["rows"] - meta.splits["early_stop"]["rows"])
    for v in fr["features"].values():
        assert v["lo"] is None or v["lo"] <= v["hi"]
        assert 0.0 <= v["nan_share"] <= 1.0
    assert training_end(meta) == meta.splits["calibration"]["to"] + 900  # --policy design: no policy slice


def test_expiry_falls_back_refuses_or_is_ignored(trained: Path, caplog) -> None:
    path = model_path(trained)
    gate = bot_gate(path)
    end = training_end(gate.scorer.meta)
    v = middle(gate)
    alive = gate.decide("Up", v, MID, price=0.4, move_pct=0.1, minutes_into=7, now=end + 13.9 * DAY)
    assert alive.p_win is not None and "model_expired" not in alive.reason
    caplog.set_level(logging.WARNING)
    late = end + 14.1 * DAY
    # fallback (default): the manual filters decide (full order size, no p_win), reason says why
    d = gate.decide("Up", v, MID, price=0.4, move_pct=0.1, minutes_into=7, now=late)
    assert d.enter and d.p_win is None and d.size == 10 and d.code == "enter"
    assert "model_expired: model " + path.name in d.reason and "the manual filters decided" in d.reason
    d = gate.choose(v, MID, prices={"Up": 0.4, "Down": 0.6}, move_pct=-0.1, minutes_into=7, now=late)
    assert d.outcome == "Down" and d.enter and d.p_win is None and "model_expired" in d.reason
    d = gate.decide("Up", v, MID, move_pct=0.01, minutes_into=7, now=late)
    assert not d.enter and d.code == "move_too_small"
    assert gate.counters["model_expired"] == 3
    warned = [r for r in caplog.records if "expired" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING  # one an hour at most
    # refuse: declined with its own code
    refuse = bot_gate(path, "--on-expired", "refuse")
    d = refuse.decide("Up", v, MID, price=0.4, move_pct=0.1, minutes_into=7, now=late)
    assert not d.enter and d.code == "model_expired" and refuse.counters["model_expired"] == 1
    # ignore: scored as usual (and still counted)
    ignore = bot_gate(path, "--on-expired", "ignore")
    d = ignore.decide("Up", v, MID, price=0.4, now=late)
    assert d.p_win == alive.p_win and ignore.counters["model_expired"] == 1
    # --expires-after; and without now= the wall clock decides (this model's data is from 2026-01)
    assert bot_gate(path, "--expires-after", "30").decide("Up", v, MID, now=late).p_win is not None
    assert end + 14 * DAY < time.time()
    assert refuse.decide("Up", v, MID).code == "model_expired"


def test_a_fresh_validated_at_keeps_the_model_alive(trained: Path) -> None:
    path = model_path(trained)
    models = path.parent
    try:
        gate = bot_gate(path, "--on-expired", "refuse")
        end = training_end(gate.scorer.meta)
        v, now = middle(gate), end + 30 * DAY
        assert gate.decide("Up", v, MID, now=now).code == "model_expired"
        mf.write_record(models, mf.ModelRecord(model=path.name, validated_at=time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(end + 20 * DAY))))
        # the record is cached (no file read per decision) until a minute passed or a reload
        assert gate.decide("Up", v, MID, now=now).code == "model_expired"
        gate.reload()
        assert gate.decide("Up", v, MID, now=now).p_win is not None  # validated 10 days before
        assert gate.decide("Up", v, MID, now=end + 34.1 * DAY).code == "model_expired"
        # a validation after the decision instant is not one a bot had then: the training end counts
        assert gate.decide("Up", v, MID, now=end + 15 * DAY).code == "model_expired"
        # a record about another model does not count; picked up within a minute
        clock = [0.0]
        gate.guards = ModelGuards(14, "refuse", 2, monotonic=lambda: clock[0])
        assert gate.decide("Up", v, MID, now=now).p_win is not None
        mf.write_record(models, mf.ModelRecord(model="td_model_other.onnx", validated_at="2099-01-01T00:00:00Z"))
        clock[0] = RECORD_REFRESH_S - 1
        assert gate.decide("Up", v, MID, now=now).p_win is not None
        clock[0] = RECORD_REFRESH_S + 1
        assert gate.decide("Up", v, MID, now=now).code == "model_expired"
    finally:
        mf.record_path(models).unlink(missing_ok=True)


def test_out_of_distribution_declines_above_ood_max(trained: Path) -> None:
    gate = bot_gate(model_path(trained), "--ood-max", "2")
    r = Ranges.of(gate.scorer.meta)
    now = training_end(gate.scorer.meta) + DAY
    v = middle(gate)
    assert gate.decide("Up", v, MID, price=0.4, now=now).code != "out_of_distribution"
    finite = [i for i in range(len(v)) if np.isfinite(r.lo[i])]
    for k, want in ((2, False), (3, True)):
        x = v.copy()
        for i in finite[:k]:
            x[i] = r.hi[i] + abs(r.hi[i]) + 1.0 if k % 2 else r.lo[i] - abs(r.lo[i]) - 1.0
        d = gate.decide("Up", x, MID, price=0.4, now=now)
        assert (d.code == "out_of_distribution") == want, (k, d.reason)
        assert (gate.choose(x, MID, now=now).code == "out_of_distribution") == want
    assert gate.counters["out_of_distribution"] == 2  # decide and choose at 3 features out
    assert "3 features outside" in d.reason and r.names[finite[0]] in d.reason
    # NaN: outside only for a feature that was never NaN on the training rows
    never = [i for i in finite if r.nan_out[i]]
    sometimes = [i for i in finite if not r.nan_out[i]]
    assert len(never) >= 3 and len(sometimes) >= 3, "the synthetic lake should hold both kinds"
    x = v.copy()
    x[sometimes[:3]] = np.nan
    assert gate.decide("Up", x, MID, now=now).code != "out_of_distribution"
    x = v.copy()
    x[never[:3]] = np.nan
    assert gate.decide("Up", x, MID, now=now).code == "out_of_distribution"
    # --ood-max 3 lets three through
    assert bot_gate(model_path(trained), "--ood-max", "3").decide(
        "Up", x, MID, now=now).code != "out_of_distribution"


def test_a_model_file_without_ranges_loads_and_scores(trained: Path, tmp_path: Path) -> None:
    m = onnx.load(str(model_path(trained)))
    props = {p.key: p.value for p in m.metadata_props if p.key != "feature_ranges"}
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, props)
    old = tmp_path / "td_model_20260101_000000.onnx"
    onnx.save(m, str(old))
    gate = bot_gate(old)
    assert gate.scorer.meta.feature_ranges is None
    now = training_end(gate.scorer.meta) + DAY
    x = np.full(gate.scorer.meta.n_features, 1e6, dtype=np.float32)  # every feature far out
    d = gate.decide("Up", x, MID, price=0.4, now=now)
    assert d.p_win is not None and d.code != "out_of_distribution"


def test_bad_guard_options_are_one_line_exit_2(trained: Path, capsys) -> None:
    base = ["backtest", "--model-path", str(model_path(trained)), "--lake-dir", str(trained / "lake")]
    for opt, value, words in (("--expires-after", "0", "(0, 3650]"),
                              ("--expires-after", "nan", "days"),
                              ("--on-expired", "maybe", "invalid choice"),
                              ("--ood-max", "-1", "[0, 10000]"),
                              ("--ood-max", "1.5", "an integer")):
        assert main([*base, opt, value]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and opt in err and words in err, err
        with pytest.raises(SystemExit) as e:  # a bot's own parser says the same
            bot_gate(model_path(trained), opt, value)
        assert e.value.code == 2 and capsys.readouterr().err.strip().count("\n") == 0


def test_backtest_reports_guard_rates(trained: Path, capsys) -> None:
    base = ["backtest", "--data-dir", str(trained), "--model-path", str(model_path(trained)),
            "--min-confidence", "0.5", "--min-order-size", "1", "--fills", "taker"]
    out_json = trained / "bt.json"
    assert main([*base, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    g = json.loads(out_json.read_text())["guards"]
    assert "model guards over" in out and "out_of_distribution" in out
    assert g["rows"] > 0 and g["expired"] == 0 and g["ood_checked"] and g["ood_max"] == 2
    assert 0.0 <= g["ood_rate"] < 0.05  # the model's own test days
    # expired from the first test window on: fallback trades as the filters, refuse not at all
    assert main([*base, "--expires-after", "0.001", "--json", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    assert data["guards"]["expired_rate"] == 1.0 and "expired " in capsys.readouterr().out
    cells = {c["policy"]: c for c in data["results"]}
    assert cells["design"]["entries"] == cells["filters"]["entries"] > 0
    assert main([*base, "--expires-after", "0.001", "--on-expired", "refuse", "--json", str(out_json)]) == 0
    cells = {c["policy"]: c for c in json.loads(out_json.read_text())["results"]}
    assert cells["design"]["entries"] == 0 and cells["design"]["no_entry_reasons"] == {
        "model_expired": cells["design"]["windows"]}
    # --ood-max 0: one feature outside its training range declines the row; the backtest's
    # design cell names the reason and the guards report a rate above zero
    assert main([*base, "--ood-max", "0", "--json", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    g0 = data["guards"]
    assert g0["ood_max"] == 0 and g0["ood_rate"] > 0 and g0["ood_rate"] >= g["ood_rate"], g0
    cells = {c["policy"]: c for c in data["results"]}
    assert cells["design"]["no_entry_reasons"].get("out_of_distribution", 0) > 0, cells["design"]
    assert "out_of_distribution" in capsys.readouterr().out
