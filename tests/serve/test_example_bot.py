"""The example bot runs, enters through the gate, and swaps models on SIGHUP or a new current."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

from slotml.features.contract import CONTRACT_VERSION, FEATURES

from .models import make_model

ROOT = Path(__file__).resolve().parents[2]


def _bot_module():
    spec = importlib.util.spec_from_file_location("td_maker_bot", ROOT / "examples" / "td_maker_bot.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["td_maker_bot"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _model(path: Path, w_move: float) -> Path:
    w = [0.0] * len(FEATURES)
    w[FEATURES.index("dir_move_pct")] = w_move
    return make_model(path, list(FEATURES), w, meta_over={"feature_contract": str(CONTRACT_VERSION)})


@pytest.fixture
def restore_sighup():
    old = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, old)


def test_demo_runs_with_model_and_filters(tmp_path: Path, capsys, restore_sighup) -> None:
    bot = _bot_module()
    m = _model(tmp_path / "models" / "td_model_a.onnx", 40.0)
    assert bot.main(["--model-path", str(m), "--demo-windows", "3", "--min-confidence", "0.6",
                     "--order-size", "20"]) == 0
    out = capsys.readouterr().out
    assert "ENTER BTC" in out and "model td_model_a.onnx" in out
    assert bot.main(["--demo-windows", "3", "--min-move-pct", "0.01"]) == 0
    assert "manual filters" in capsys.readouterr().out
    assert bot.main(["--model-path", str(tmp_path / "nope.onnx")]) == 2


def test_reload_on_new_current_and_on_sighup(tmp_path: Path, restore_sighup) -> None:
    mod = _bot_module()
    models = tmp_path / "models"
    a = _model(models / "td_model_a.onnx", 1.0)
    b = _model(models / "td_model_b.onnx", -1.0)
    (models / "current").write_text(a.name)
    import argparse

    from slotml.serve import add_model_args

    p = argparse.ArgumentParser()
    add_model_args(p)
    bot = mod.Bot(p.parse_args(["--model-path", str(models / "current")]))
    assert bot.gate.scorer.path == a
    assert bot.maybe_reload() is False
    tmp = models / "current.tmp"
    tmp.write_text(b.name)
    tmp.replace(models / "current")
    assert bot.maybe_reload() is True and bot.gate.scorer.path == b
    # SIGHUP re-reads even when nothing changed on disk; a broken file keeps the old model
    bad = models / "td_model_c.onnx"
    bad.write_bytes(b"not onnx")
    (models / "current").write_text(bad.name)
    os.kill(os.getpid(), signal.SIGHUP)
    assert bot.reload_requested
    assert bot.maybe_reload() is False and bot.gate.scorer.path == b
    assert not bot.reload_requested
