"""The entry gate: model rule, sizing, fees, decision range, manual filters, options, log."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest

from slotml.errors import UserError
from slotml.serve import Decision, EntryGate, GateConfig, Scorer, add_model_args
from slotml.serve.gate import FeeSchedule, config_from_args

from .models import make_model

ABC = ["a", "b", "c"]


def _gate(tmp_path: Path, **cfg) -> EntryGate:
    # p_up = sigmoid(a): choose a to hit any probability exactly
    s = Scorer.load(make_model(tmp_path / "m.onnx", ABC, [1.0, 0.0, 0.0]),
                    contract_features=ABC, contract_version=None)
    return EntryGate(GateConfig(**cfg), s)


def vec(p_up: float) -> np.ndarray:
    return np.array([np.log(p_up / (1 - p_up)), 0, 0], dtype=np.float32)


MID = 7 / 15


def test_linear_sizing_and_confidence(tmp_path: Path) -> None:
    g = _gate(tmp_path, min_confidence=0.6, order_size=20, min_order_size=1)
    d = g.decide("Up", vec(0.8), MID)
    assert d.enter and d.outcome == "Up" and d.size == 12.0 and d.code == "enter"  # 20 x 0.6
    assert d.p_win == pytest.approx(0.8, abs=1e-6)
    d = g.decide("Down", vec(0.2), MID)
    assert d.enter and d.size == 12.0 and d.p_win == pytest.approx(0.8, abs=1e-6)
    d = g.decide("Down", vec(0.8), MID)
    assert not d.enter and d.code == "below_min_confidence" and d.size == 0
    d = g.decide("Up", vec(0.66), MID)
    assert d.size == 6.0  # 20 x 0.32 = 6.4, floored
    d = g.decide("Up", vec(0.999), MID)
    assert d.size == 19.0  # never above order_size; float32 p < 1


def test_below_market_min_order_size(tmp_path: Path) -> None:
    g = _gate(tmp_path, min_confidence=0.55, order_size=10)
    d = g.decide("Up", vec(0.7), MID, min_order_size=5)  # 10 x 0.4 = 4 shares
    assert not d.enter and d.code == "below_min_order_size" and "4 shares < market minimum 5" in d.reason
    assert g.decide("Up", vec(0.7), MID, min_order_size=4).enter
    d = g.decide("Up", vec(0.56), MID, min_order_size=0)  # 10 x 0.12 = 1.2 -> 1
    assert d.enter and d.size == 1
    assert g.decide("Up", vec(0.7), MID).code == "below_min_order_size"  # config default 5


def test_decision_range_and_missing_features(tmp_path: Path) -> None:
    g = _gate(tmp_path, min_confidence=0.5, order_size=10, min_order_size=1)
    early = g.decide("Up", vec(0.9), 4 / 15)
    late = g.decide("Up", vec(0.9), 11 / 15)
    assert early.code == "before_first_decision_point" and not early.enter
    assert late.code == "after_last_decision_point"
    assert g.decide("Up", vec(0.9), 5 / 15).enter and g.decide("Up", vec(0.9), 10 / 15).enter
    assert g.decide("Up", None, MID).code == "no_features"


def test_min_edge_with_taker_fee_only(tmp_path: Path) -> None:
    fee = FeeSchedule(rate=0.07, exponent=1, taker_only=True)
    assert fee.per_share(0.5, taker=False) == 0.0
    assert fee.per_share(0.5, taker=True) == pytest.approx(0.07 * 0.25)
    g = _gate(tmp_path, min_confidence=0.5, order_size=10, min_order_size=1, min_edge=0.05)
    # p 0.8, price 0.74: edge 0.06 as a maker, 0.06 - 0.07 x 0.74 x 0.26 = 0.0465 as a taker
    maker = g.decide("Up", vec(0.8), MID, price=0.74, fee=fee, taker=False)
    taker = g.decide("Up", vec(0.8), MID, price=0.74, fee=fee, taker=True)
    assert maker.enter and maker.edge == pytest.approx(0.06, abs=1e-6)
    assert not taker.enter and taker.code == "below_min_edge"
    assert taker.edge == pytest.approx(0.06 - 0.07 * 0.74 * 0.26, abs=1e-6)
    assert g.decide("Up", vec(0.8), MID).code == "no_price"
    # fees disabled: the taker pays nothing
    assert g.decide("Up", vec(0.8), MID, price=0.74, fee=FeeSchedule(0.0), taker=True).enter
    row = {"fee_rate": 0.07, "fee_exponent": 2, "fee_taker_only": 1}
    assert FeeSchedule.from_row(row) == FeeSchedule(0.07, 2.0, True)
    assert FeeSchedule.from_row({}).per_share(0.5, True) == 0.0


def test_kelly_sizing(tmp_path: Path) -> None:
    g = _gate(tmp_path, min_confidence=0.5, order_size=100, min_order_size=1, sizing="kelly",
              kelly_fraction=0.5)
    # f* = (0.8 - 0.6) / 0.4 = 0.5 -> 100 x 0.5 x 0.5 = 25
    assert g.decide("Up", vec(0.8), MID, price=0.6).size == 25
    assert g.decide("Up", vec(0.8), MID, price=0.85).code == "zero_size"  # negative edge
    assert g.decide("Up", vec(0.8), MID).code == "no_price"


def test_choose_takes_the_likelier_side(tmp_path: Path) -> None:
    g = _gate(tmp_path, min_confidence=0.6, order_size=10, min_order_size=1)
    d = g.choose(vec(0.3), MID, prices={"Up": 0.3, "Down": 0.68})
    assert d.enter and d.outcome == "Down" and d.price == 0.68 and d.size == 4
    d = g.choose(vec(0.55), MID)
    assert not d.enter and d.outcome == "Up" and d.code == "below_min_confidence"


def test_manual_filters_without_model() -> None:
    g = EntryGate(GateConfig(order_size=10, min_order_size=5))
    assert not g.uses_model
    ok = g.decide("Up", move_pct=0.1, minutes_into=6)
    assert ok.enter and ok.size == 10 and ok.p_win is None
    assert g.decide("Down", move_pct=0.1, minutes_into=6).code == "move_favours_other_side"
    assert g.decide("Up", move_pct=0.1, minutes_into=4.9).code == "too_early"
    assert g.decide("Up", move_pct=0.01, minutes_into=6).code == "move_too_small"
    assert g.decide("Down", move_pct=-0.9, minutes_into=6).code == "move_too_large"
    assert g.decide("Up", move_pct=None, minutes_into=6).code == "no_move"
    assert g.choose(move_pct=-0.2, minutes_into=7).outcome == "Down"
    small = EntryGate(GateConfig(order_size=3, min_order_size=5))
    assert small.decide("Up", move_pct=0.1, minutes_into=6).code == "below_min_order_size"


def test_add_model_args_and_from_args(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m.onnx", ABC)
    p = argparse.ArgumentParser()
    p.add_argument("--order-size", type=float, default=50.0)  # the bot's own flag is kept
    add_model_args(p)
    args = p.parse_args(["--min-confidence", "0.7", "--sizing", "kelly", "--kelly-fraction", "0.3",
                         "--min-edge", "0.02", "--filter-series", "settlement"])
    g = EntryGate.from_args(args)
    assert not g.uses_model
    assert g.config == GateConfig(min_confidence=0.7, order_size=50.0, sizing="kelly",
                                  kelly_fraction=0.3, min_edge=0.02, filter_series="settlement")
    with pytest.raises(SystemExit):
        p.parse_args(["--min-confidence", "1.5"])
    with pytest.raises(SystemExit):  # the type's range: (0, 1]
        p.parse_args(["--kelly-fraction", "0"])
    with pytest.raises(UserError, match="kelly_fraction"):  # the config's own invariant
        config_from_args(argparse.Namespace(kelly_fraction=0.0))
    # a model whose features are not this version's contract is refused with a clear error
    with pytest.raises(UserError, match="feature contract"):
        EntryGate.from_args(p.parse_args(["--model-path", str(model)]))


def test_decision_log_json_lines(tmp_path: Path) -> None:
    buf = io.StringIO()
    from slotml.serve.gate import DecisionLog

    g = _gate(tmp_path, min_confidence=0.6, order_size=10, min_order_size=1)
    g.log = DecisionLog(buf)
    g.decide("Up", vec(0.8), MID, price=0.7, context={"symbol": "BTC", "slot_ts": 900})
    g.decide("Up", None, MID)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[0]["decision"] == "enter" and lines[0]["size"] == 6 and lines[0]["symbol"] == "BTC"
    assert lines[0]["features"]["a"] == pytest.approx(np.log(4), abs=1e-5)
    assert lines[0]["p_win"] == pytest.approx(0.8, abs=1e-6) and lines[0]["reason"].startswith("enter")
    assert lines[1]["decision"] == "skip" and lines[1]["features"] == {}
    # file form via --decision-log
    path = tmp_path / "d" / "log.jsonl"
    g2 = EntryGate(GateConfig(decision_log=str(path), min_order_size=1))
    g2.decide("Up", move_pct=0.1, minutes_into=6)
    g2.log.close()
    assert json.loads(path.read_text())["decision"] == "enter"


def test_decision_is_plain_data() -> None:
    d = Decision(True, "Up", 3.0, 0.7, "enter: 3 shares")
    assert d.code == "enter" and d.price is None


def test_decide_online_model_and_filters(tmp_path: Path) -> None:
    from slotml.features.contract import CONTRACT_VERSION, FEATURES
    from slotml.ingest.snapshot import BookTop, WindowRef, make_snapshot
    from slotml.serve import OnlineFeatures

    weights = [0.0] * len(FEATURES)
    weights[FEATURES.index("dir_move_pct")] = 10.0  # p_up = sigmoid(10 x move%)
    s = Scorer.load(make_model(tmp_path / "c.onnx", list(FEATURES), weights,
                               meta_over={"feature_contract": str(CONTRACT_VERSION)}))
    slot = 1_767_200_400
    ref = WindowRef("BTC", 900, slot, price_to_beat=100.0, spot_price_to_beat=100.0)
    online = OnlineFeatures.for_model(s)
    for k in range(0, 12):
        price = 100.0 + 0.01 * k  # drifting up: +0.11% at minute 5.5
        row, _ = make_snapshot(ref, (slot + 30 * k) * 1000, slot + 30 * k,
                               BookTop(0.55, 0.57, 100, 100), BookTop(0.42, 0.44, 100, 100),
                               price, price)
        online.add_snapshot(row)
    d_ms = (slot + 330) * 1000
    gate = EntryGate(GateConfig(min_confidence=0.6, order_size=10, min_order_size=1), s)
    d = gate.decide_online(online, "BTC", 900, slot, d_ms, prices={"Up": 0.55, "Down": 0.42})
    assert d.enter and d.outcome == "Up" and d.p_win == pytest.approx(1 / (1 + np.exp(-1.1)), abs=1e-5)
    early = gate.decide_online(online, "BTC", 900, slot, (slot + 200) * 1000, outcome="Up")
    assert early.code == "before_first_decision_point"
    manual = EntryGate(GateConfig(order_size=10, min_order_size=1, min_move_pct=0.05))
    m = manual.decide_online(online, "BTC", 900, slot, d_ms, prices={"Up": 0.55, "Down": 0.42})
    assert m.enter and m.outcome == "Up" and m.price == 0.55
    assert manual.decide_online(online, "BTC", 900, slot, (slot + 240) * 1000).code == "too_early"


def test_bad_prices_are_no_price(tmp_path: Path) -> None:
    g = _gate(tmp_path, min_confidence=0.5, order_size=10, min_order_size=1, min_edge=0.0)
    for bad in (float("nan"), float("inf"), 0.0, 1.0, -0.2):
        d = g.decide("Up", vec(0.8), MID, price=bad)
        assert not d.enter and d.code == "no_price", bad
    d = g.choose(vec(0.8), MID, prices={"Up": float("nan"), "Down": 0.3})
    assert d.code == "no_price"
    buf = io.StringIO()
    from slotml.serve.gate import DecisionLog

    g.log = DecisionLog(buf)
    g.decide("Up", vec(0.8), MID, price=0.5, context={"spot": float("nan")})
    assert json.loads(buf.getvalue())["spot"] is None


# ---------------------------------------------------------------- the price-aware (edge) policy

def _policy_gate(tmp_path: Path, chosen: dict | None, **cfg) -> EntryGate:
    over = None if chosen is None else {"policy": json.dumps(chosen)}
    s = Scorer.load(make_model(tmp_path / "p.onnx", ABC, [1.0, 0.0, 0.0], meta_over=over),
                    contract_features=ABC, contract_version=None)
    return EntryGate(GateConfig(**cfg), s)


def test_a_model_without_policy_keys_keeps_the_design_rule(tmp_path: Path) -> None:
    old = _policy_gate(tmp_path, None, min_confidence=0.6, order_size=10, min_order_size=1)
    assert old.policy()[0] == "design"
    # design: p 0.7 -> 10 x 0.2/0.5 = 4 shares, whatever the price; p 0.55 below min_confidence
    assert old.decide("Up", vec(0.7), MID, price=0.95).size == 4
    assert old.decide("Up", vec(0.55), MID, price=0.10).code == "below_min_confidence"


def test_edge_policy_enters_on_edge_and_sizes_by_kelly(tmp_path: Path) -> None:
    g = _policy_gate(tmp_path, {"name": "edge", "min_edge": 0.05, "kelly_fraction": 0.5},
                     order_size=100, min_order_size=5)
    assert g.policy() == ("edge", 0.05, 0.5)
    # p 0.8 at 0.6: edge 0.2, f = 0.5 -> 100 x 0.5 x 0.5 = 25 shares
    d = g.decide("Up", vec(0.8), MID, price=0.6)
    assert d.enter and d.size == 25 and abs(d.edge - 0.2) < 1e-6
    # p 0.55 at 0.45 enters (no confidence floor); tiny Kelly raised to the market minimum
    d = g.decide("Up", vec(0.55), MID, price=0.49)
    assert d.enter and d.size == 5
    assert g.decide("Up", vec(0.8), MID, price=0.78).code == "below_min_edge"
    # the taker fee counts in the edge: 0.07 x (0.7 x 0.3) = 0.0147
    fee = FeeSchedule(0.07, 1.0, True)
    assert g.decide("Up", vec(0.76), MID, price=0.70, fee=fee, taker=True).code == "below_min_edge"
    assert g.decide("Up", vec(0.76), MID, price=0.70, fee=fee, taker=False).enter
    # --policy design overrides the file; --min-edge overrides its value
    assert _policy_gate(tmp_path, {"name": "edge", "min_edge": 0.05, "kelly_fraction": 0.5},
                        policy="design").policy()[0] == "design"
    assert _policy_gate(tmp_path, {"name": "edge", "min_edge": 0.05, "kelly_fraction": 0.5},
                        min_edge=0.3).policy()[1] == 0.3


def test_policy_options_are_checked() -> None:
    p = add_model_args(argparse.ArgumentParser())
    assert config_from_args(p.parse_args(["--policy", "edge", "--min-edge", "0.02"])).policy == "edge"
    for bad in (["--min-edge", "1.5"], ["--min-edge", "-1"], ["--min-edge", "nan"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)
    with pytest.raises(UserError, match="min_edge"):
        config_from_args(argparse.Namespace(min_edge=1.5))
