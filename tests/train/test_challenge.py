"""train --challenge and the registry: a degraded challenger is refused (reason in the registry,
the champion re-validated), an ordinary one on newer data is promoted (final refit, pointer,
registry link), no champion promotes, a torn registry line is tolerated, bad options exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slotml.model_file import read_record
from slotml.train import registry
from slotml.train.challenge import decide

from .test_pipeline import FAST
from .test_policy import write_lake_with_tape

# 4 assets x 96 windows a day; the champion saw the first 11 days, the test slice is the last 3.
# Smaller lakes make equal-recipe models differ by more than the 0.001 margin (fitting noise:
# 2 assets x 11 days gave +0.0012..+0.0023 between two ordinary models)
DAYS = 14
EVERY = "3"
START = 1_767_225_600  # SynthConfig's first window
CHAMPION_TO = START + (DAYS - 3) * 86400


def _lake(d: Path, days: int = DAYS) -> None:
    write_lake_with_tape(d, 96 * days, 5)


def _current(d: Path) -> str:
    return (d / "models" / "current").read_text().strip()


def _challenge(d: Path, *extra: str, params: dict | None = None) -> int:
    from slotml.cli import main

    rc = main(["train", "--data-dir", str(d), "--challenge", "--every", EVERY,
               "--params", json.dumps(params or FAST), "--log-level", "WARNING", *extra])
    return rc


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake and a first model trained on it as it stood 3 days ago: a challenge with no
    champion promotes and refits --final (the weekly cron's first run)."""
    from slotml.train.challenge import run_challenge
    from slotml.train.pipeline import TrainConfig
    from slotml.train.split import SplitConfig

    d = tmp_path_factory.mktemp("champion")
    _lake(d)
    cfg = TrainConfig(data_dir=d, lake_dir=d / "lake", models_dir=d / "models", params=FAST,
                      split=SplitConfig(test_days=3, policy_days=None), slot_to=CHAMPION_TO)
    out = run_challenge(cfg, on_model=lambda res, ev: registry.append(
        cfg.models_dir, registry.model_record(res.card, span=(None, CHAMPION_TO), evaluation_model=ev)))
    assert out.promoted
    return d


@pytest.fixture
def champion(first: Path, tmp_path: Path) -> Path:
    """A copy of the first model's data dir for one test to change."""
    d = tmp_path / "dd"
    shutil.copytree(first, d)
    return d


def test_no_champion_promotes_and_links_the_final_refit(first: Path) -> None:
    champion = first
    reg = registry.read(champion / "models")
    assert reg.torn == 0
    (dec,) = reg.decisions()
    assert dec["promoted"] is True and dec["reason"] == "no champion" and dec["champion"] is None
    ev, fin = reg.models()
    assert ev["final"] is False and fin["final"] is True
    assert fin["evaluation_model"] == ev["model"] == dec["challenger"]
    assert dec["final"] == fin["model"] == _current(champion)
    assert ev["splits"]["test"]["from"] is not None and fin["splits"]["test"] is None
    rec = read_record(champion / "models")
    assert rec.model == fin["model"] and rec.validated_at == dec["validated_at"]


def test_degraded_challenger_is_refused(champion: Path, capsys: pytest.CaptureFixture) -> None:
    before = _current(champion)
    validated = read_record(champion / "models").validated_at
    underfit = {**FAST, "max_depth": 1, "num_boost_round": 5}
    assert _challenge(champion, params=underfit) == 0  # a kept champion is not an error
    out = capsys.readouterr().out
    assert "challenge: KEPT champion" in out
    assert _current(champion) == before
    dec = registry.read(champion / "models").decisions()[-1]
    assert dec["promoted"] is False and dec["champion"] == before and dec["final"] is None
    assert dec["reason"].startswith("challenger worse"), dec["reason"]
    lo, hi = dec["brier"]["ci"]
    assert hi >= 0.001 and dec["brier"]["days"] >= 3
    assert dec["maker_pnl"]["available"] is True
    # the champion was not beaten: re-validated
    rec = read_record(champion / "models")
    assert rec.model == before and rec.validated_at == dec["validated_at"] >= validated
    assert dec["validated"] == before


def test_equal_challenger_on_newer_data_is_promoted(champion: Path, capsys) -> None:
    old = _current(champion)
    assert _challenge(champion) == 0
    out = capsys.readouterr().out
    assert "challenge: PROMOTED" in out, out
    reg = registry.read(champion / "models")
    dec = reg.decisions()[-1]
    assert dec["promoted"] is True and dec["champion"] == old
    assert dec["brier"]["ci"][1] < 0.001 and dec["span"]["slot_from"] >= CHAMPION_TO
    assert dec["maker_pnl"]["available"] is True
    fin = reg.model(dec["final"])
    assert fin["final"] and fin["evaluation_model"] == dec["challenger"]
    assert _current(champion) == dec["final"] != old
    rec = read_record(champion / "models")
    assert rec.model == dec["final"] and rec.validated_at == dec["validated_at"]


def _cmp(pnl_diff: float, pnl_ci: tuple[float, float], per_staked: float) -> dict:
    brier = {"ci": (-0.0004, 0.0003), "difference": -0.00005, "windows": 2680, "days": 7}
    return {"comparable": True, "brier": brier,
            "pnl": {"available": True, "difference": pnl_diff, "ci": pnl_ci,
                    "difference_per_staked": per_staked}}


def test_maker_pnl_is_judged_in_dollars_not_per_staked() -> None:
    # seed 13 week 11 of bench.challenge_rate: the challenger's lower min_edge traded 1,402
    # times for $239 against the champion's 775 for $187: thinner per staked, more money
    ok, why = decide(_cmp(+7.5, (-2.0, +17.0), -0.041))
    assert ok and "maker PnL diff +7.50 $/day" in why and "per staked -4.10%" in why, why
    ok, why = decide(_cmp(-20.5, (-31.0, -9.0), +0.02))
    assert not ok and why.startswith("challenger's maker PnL worse"), why
    ok, _ = decide({**_cmp(0, (0, 0), 0), "brier": {"ci": (-0.0002, 0.0011), "difference": 0.0004,
                                                   "windows": 2680, "days": 7}})
    assert not ok  # the Brier check first: upper end at or above the +0.001 margin


def test_registry_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    m = tmp_path / "models"
    registry.append(m, {"kind": "model", "model": "a.onnx"})
    with (m / registry.REGISTRY_NAME).open("a") as f:
        f.write('{"kind": "decision", "prom')  # a crash mid-append
    assert registry.read(m).torn == 1 and len(registry.read(m).records) == 1
    registry.append(m, {"kind": "model", "model": "b.onnx"})  # starts on a fresh line
    reg = registry.read(m)
    assert reg.torn == 1 and [r["model"] for r in reg.models()] == ["a.onnx", "b.onnx"]
    assert registry.read(tmp_path / "nowhere").records == []


@pytest.mark.parametrize("args, msg", [
    (["--every", "7"], "--every applies only with --challenge"),
    (["--challenge", "--final"], "drop --final"),
    (["--challenge", "--promote"], "drop --promote"),
    (["--challenge", "--every", "0"], "--every"),
    (["--challenge", "--every", "nan"], "--every"),
    (["--challenge", "--every", "400"], "--every"),
])
def test_bad_options_exit_2(tmp_path: Path, capsys, args: list[str], msg: str) -> None:
    from slotml.cli import main

    try:
        rc = main(["train", "--data-dir", str(tmp_path), *args])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1, err


def test_train_run_appends_its_model_record(first: Path) -> None:
    champion = first
    reg = registry.read(champion / "models")
    for r in reg.models():
        assert {"model", "created_at", "data_span", "splits", "metrics", "final"} <= set(r)
        assert (champion / "models" / r["model"]).exists()


def test_plain_train_runs_append_their_model_records(champion: Path) -> None:
    from slotml.cli import main

    n = len(registry.read(champion / "models").models())
    for extra in ([], ["--final"]):
        assert main(["train", "--data-dir", str(champion), "--test-days", "3", "--params",
                     json.dumps(FAST), "--log-level", "WARNING", *extra]) == 0
    ev, fin = registry.read(champion / "models").models()[n:]
    assert ev["final"] is False and ev["splits"]["test"]["windows"] > 0
    assert fin["final"] is True and fin["evaluation_model"] == ev["model"]
    assert ev["data_span"]["first_slot"] == START
