"""The acceptance harness's glue (bench/acceptance_maker.py) on a tiny real history (2 days of
one asset, the real backfill and export, a linear model instead of training): the refusal of
the pre-registered seeds, one shadow order per maker-queue decision with its id kept through
the sim's batch API, and the report's shape. The acceptance itself is ``make acceptance``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import acceptance_maker as acc
from bench.bench_backtest import _model

SEED = 7


@pytest.mark.parametrize("argv", [
    ["--part", "power", "--seeds", "101"],
    ["--part", "truth", "--seeds", "99-103"],
    ["--seeds", "301,105"],
    ["--part", "finding"],  # the pre-registered run needs its flag
    ["--part", "truth", "--preregistered-final"],  # the flag runs the finding only
    ["--part", "finding", "--preregistered-final", "--test-days", "10"],  # nothing may change
    ["--part", "finding", "--preregistered-final", "--seeds", "101-102"],
    ["--seeds", "3x"],
    ["--days", "5", "--test-days", "10"],
])
def test_refusals_are_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    assert acc.main([*argv, "--work-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("acceptance_maker: ")
    assert not any(tmp_path.iterdir())  # refused before any work


def test_reserved_seed_refusal_names_the_pre_registration(capsys: pytest.CaptureFixture[str]) -> None:
    assert acc.main(["--part", "power", "--seeds", "311,104"]) == 2
    err = capsys.readouterr().err
    assert "pre-registered" in err and "104" in err and "--preregistered-final" in err


def test_plans(tmp_path: Path) -> None:
    jobs, _ = acc.plan(["--work-dir", str(tmp_path)])
    assert [(j["part"], j["book"]) for j in jobs].count(("power", "shrunk")) == 10
    assert {j["seed"] for j in jobs if j["part"] == "truth"} == {301, 302, 303}
    assert {j["seed"] for j in jobs if j["part"] == "phantom"} == set(range(331, 336))
    assert not {j["seed"] for j in jobs} & set(acc.RESERVED_SEEDS)
    final, _ = acc.plan(["--part", "finding", "--preregistered-final", "--work-dir", str(tmp_path)])
    assert sorted((j["book"], j["seed"]) for j in final) == sorted(
        (b, s) for b in ("default", "sharp") for s in range(101, 106))
    assert {j["test_days"] for j in final} == {30.0}
    (tmp_path / "acceptance_finding.json").write_text("{}")  # run once
    with pytest.raises(acc.Refused, match="already"):
        acc.plan(["--part", "finding", "--preregistered-final", "--work-dir", str(tmp_path)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real 2-day history of BTC (backfill + export) and a linear model (no training)."""
    work = tmp_path_factory.mktemp("acceptance")
    acc.history(work, "default", SEED, 2, 1, "BTC", train=False)
    model = _model(work / "td_model_glue.onnx")
    return {"work": str(work), "days": 2.0, "test_days": 1.0, "n_boot": 200, "symbols": "BTC",
            "model": str(model), "seed": SEED, "book": "default"}


def test_truth_sends_one_order_per_maker_queue_decision(tiny: dict) -> None:
    from slotml.backtest.shadow import shadow_orders
    from slotml.sim.shadow import fills_over_history

    d = Path(tiny["work"]) / "default_s7_d2_t1"
    result, _, _ = acc.backtest(d, Path(tiny["model"]), n_boot=200)
    mq = result.cell("edge", "maker-queue").result
    orders = shadow_orders(mq)
    assert len(orders) == mq.n_entries > 20
    sent, skipped = acc.sim_orders(orders)
    assert skipped == [] and [o.order_id for o in sent] == [o.order_id for o in orders]
    assert len({o.order_id for o in sent}) == len(sent)
    for o, s in zip(orders, sent, strict=True):
        assert (s.token, s.price, s.size, s.placed_at * 1000, s.cancel_at * 1000) == pytest.approx(
            (o.token_id, o.price, o.size, o.placed_ms, o.cancel_ms))
    cfg = acc.sim_config("default", SEED, "BTC")
    assert len(fills_over_history(cfg, sent)) == len(sent)
    t = acc.truth_of(cfg, result)
    # both maker models are scored on exactly the orders sent, each order once
    assert t["orders"] == t["maker_queue"]["orders"] == t["maker_optimistic"]["orders"] == len(sent)
    assert t["maker_queue"]["fills"] == mq.n_fills
    assert 0 < t["maker_queue"]["truth_fills"] <= len(sent)
    assert t["truth_through_fills"] <= t["maker_queue"]["truth_fills"]


def test_report_shape(tiny: dict, tmp_path: Path) -> None:
    done = [acc.seed_job({**tiny, "part": p}) for p in ("truth", "power", "phantom")]
    assert not [d for d in done if "error" in d]
    report = json.loads(json.dumps(acc.assemble(done, 200), default=str))
    p = report["parts"]
    assert set(p) == {"truth", "power", "phantom"}
    assert set(p["truth"]["verdict"]) >= {"pooled_maker_queue", "pooled_maker_optimistic", "met"}
    assert p["power"]["verdict"]["seeds"] == 1 and set(p["power"]["seeds"][0]["oracle"]) == {"taker", "maker"}
    assert {"ci95", "entry_rate", "markouts", "met"} <= set(p["phantom"]["verdict"])
    assert all(isinstance(p[k]["verdict"]["met"], bool) for k in p)
    text = acc.render(acc.assemble(done, 200))
    assert "TRUTH" in text and "POWER" in text and "PHANTOM" in text
    # a failed history is reported, not lost
    bad = acc.seed_job({**tiny, "part": "truth", "model": str(tmp_path / "missing.onnx")})
    assert "error" in bad
    assert "FAILED" in acc.render(acc.assemble([*done, bad], 200))


def test_history_is_reused_until_the_sim_changes(tiny: dict) -> None:
    work = Path(tiny["work"])
    d = work / "default_s7_d2_t1"
    before = {m.name: m.stat().st_mtime_ns for m in d.glob(".done_*")}
    assert set(before) == {".done_backfill", ".done_export"}
    assert acc.history(work, "default", SEED, 2, 1, "BTC", train=False) == d
    assert {m.name: m.stat().st_mtime_ns for m in d.glob(".done_*")} == before  # nothing re-ran
    marker = d / ".done_backfill"
    assert marker.read_text().endswith(f" sim={acc.sim_digest()}")
    marker.write_text(marker.read_text().replace("sim=", "sim=other"))  # backfilled by another sim
    (d / "stale").write_text("x")
    acc.history(work, "default", SEED, 2, 1, "BTC", train=False)
    after = {m.name: m.stat().st_mtime_ns for m in d.glob(".done_*")}
    assert all(after[k] > before[k] for k in before)  # backfill and every later stage re-ran
    assert not (d / "stale").exists()  # from an empty dir
