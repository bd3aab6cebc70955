"""`slotml walkforward` on a real small lake: out-of-sample periods, expanding and sliding spans,
resume after a killed run, refusals, the pooled report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slotml.train import metrics as M
from slotml.train.walkforward import DAY_S, plan_periods
from slotml.train.walkforward_report import brier_ratio
from tests.train.test_pipeline import write_lake

START = 1_767_225_600  # features/synth.py's first window
DAYS = 10
# single-threaded, quick trees: the checks are about periods, not model quality
FAST = json.dumps({"nthread": 1, "eta": 0.2, "num_boost_round": 60})


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 days x 4 assets of synthetic history as a lake, with an oracle beside it."""
    import polars as pl
    import pyarrow.compute as pc

    from slotml.features.synth import SynthConfig, generate

    d = tmp_path_factory.mktemp("wf")
    snaps, res = generate(SynthConfig(n_windows=DAYS * 96, seed=5, p_missing=0.02,
                                      p_one_sided=0.02, p_unresolved=0.01))
    # a gap: the last 2 hours of the second period (days 6.5 to 8) were never collected
    gap = (START + 8 * DAY_S - 7200, START + 8 * DAY_S)
    keep = lambda t: pc.invert(pc.and_(pc.greater_equal(t["slot_ts"], gap[0]),  # noqa: E731
                                       pc.less(t["slot_ts"], gap[1])))
    snaps, res = snaps.filter(keep(snaps)), res.filter(keep(res))
    write_lake(d / "lake", snaps, res)
    s = pl.from_arrow(snaps.select(["symbol", "window_s", "slot_ts", "tick_ms"]))
    rng = np.random.default_rng(0)
    (d / "sim").mkdir()
    s.with_columns(pl.Series("p_up", rng.uniform(0.2, 0.8, s.height))).write_parquet(
        d / "sim" / "oracle.parquet")
    return d


def _cli(data: Path, out: Path, *extra: str) -> int:
    from slotml.cli import main

    return main(["walkforward", "--data-dir", str(data), "--out", str(out), "--initial-days", "5",
                 "--every", "1.5", "--jobs", "2", "--params", FAST, *extra])


def test_plan_expanding_and_sliding() -> None:
    w = 900
    end = START + 10 * DAY_S
    exp = plan_periods(START, end, w, 5, 1.5)
    assert [(p.test_from - START) / DAY_S for p in exp] == [5, 6.5, 8]  # 9.5..10: < half a period
    assert all(p.train_from is None for p in exp)
    assert all(b.test_from == a.test_to for a, b in zip(exp, exp[1:], strict=False))
    sl = plan_periods(START, end, w, 5, 1.5, sliding_days=3)
    assert [p.test_from - p.train_from for p in sl] == [3 * DAY_S] * 3
    # a sliding span longer than the history so far starts at the lake's start
    assert plan_periods(START, end, w, 5, 1.5, sliding_days=6)[0].train_from is None
    # boundaries fall on whole windows; the last period may be shorter, down to half of --every
    odd = plan_periods(START, START + int(9.5 * DAY_S), w, 2.01, 2)
    assert all((p.test_from - START) % w == 0 and (p.test_to - START) % w == 0 for p in odd)
    assert (odd[-1].test_to - odd[-1].test_from) / DAY_S == pytest.approx(1.49, abs=0.01)


def test_brier_ratio_resamples_whole_days() -> None:
    """The CI resamples days, not rows: days that are copies of one another leave no spread,
    however much the rows inside a day differ; days that differ do."""
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.5).astype(float)
    p, ref = rng.random(n), np.clip(y + rng.normal(0, 0.3, n), 0, 1)
    same = np.arange(n) % 4  # rows 0..3 of every "day" repeat: identical days
    yy, pp, rr = y[same], p[same], ref[same]
    slot = (np.arange(n) // 4) * DAY_S  # 100 days of 4 rows each
    r = brier_ratio(yy, pp, rr, slot)
    want = np.mean((pp - yy) ** 2) / np.mean((rr - yy) ** 2)
    assert r["days"] == 100 and r["ratio"] == pytest.approx(want)
    assert r["ratio_ci"] == pytest.approx([want, want])
    assert r["excess"] == pytest.approx(np.mean((pp - yy) ** 2) - np.mean((rr - yy) ** 2))
    r2 = brier_ratio(y, p, ref, slot)  # days that differ: a real interval around the ratio
    assert r2["ratio_ci"][0] < r2["ratio"] < r2["ratio_ci"][1]
    assert r2["excess_ci"][0] < r2["excess"] < r2["excess_ci"][1]
    one = brier_ratio(y, p, ref, np.zeros(n, np.int64))  # one day: no interval to draw
    assert one["ratio_ci"] is None and one["ratio"] == pytest.approx(
        np.mean((p - y) ** 2) / np.mean((ref - y) ** 2))


def test_walkforward_periods_resume_and_refusals(lake: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "wf"
    # a run stopped after one period (as if killed): the other periods are left to the next run
    assert _cli(lake, out, "--stop-after", "1") == 0
    assert "2 period(s) not trained yet" in capsys.readouterr().out
    assert (out / "period_000" / "done.json").exists()
    assert not (out / "period_001" / "done.json").exists()
    first = (out / "period_000" / "done.json").stat().st_mtime_ns

    assert _cli(lake, out) == 0
    text = capsys.readouterr().out
    assert "walk-forward: 3 of 3 periods finished" in text and "oracle" in text
    assert "model Brier / oracle: " in text and "resampled days" in text
    assert (out / "period_000" / "done.json").stat().st_mtime_ns == first  # reused
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["reused"] == 1 and report["run"]["trained_now"] == 2
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    # the default layout is not in the plan's hashed options: plans written before
    # --split-layout keep their id and resume
    plan = json.loads((out / "plan.json").read_text())
    assert plan["split_layout"] == report["split_layout"] == "standard"
    assert "layout" not in plan["options"]["split"]

    # every period is scored by a model that never saw a window at or after its start
    ys, ps = [], []
    for per in report["periods"]:
        p = per["period"]
        card = json.loads(next((out / f"period_{p['index']:03d}").glob("*_card.json")).read_text())
        seen = max(s["to"] for k, s in card["splits"].items()
                   if isinstance(s, dict) and k != "test" and s.get("to") is not None)
        assert seen < p["test_from"] and card["splits"]["train"]["from"] == START
        assert card["splits"]["test"]["from"] == p["test_from"]  # the gap does not move it
        with np.load(out / f"period_{p['index']:03d}" / "rows.npz") as z:
            assert z["slot_ts"].min() >= p["test_from"] and z["slot_ts"].max() < p["test_to"]
            assert len(z["y"]) == per["scores"]["rows"] > 0
            ys.append(z["y"])
            ps.append(z["model"])
    # pooled over all rows (not an average of periods), beside the book and the oracle
    pooled = report["pooled"]
    y, p = np.concatenate(ys), np.concatenate(ps)
    assert pooled["rows"] == len(y)
    assert pooled["model"]["brier"] == pytest.approx(M.brier(y, p))
    assert pooled["model"]["log_loss"] == pytest.approx(M.log_loss(y, p))
    assert {"book_mid", "oracle"} <= set(pooled) and pooled["oracle"]["coverage"] > 0.9
    r = pooled["oracle"]["model_over_oracle"]  # the ratio the aims read, with its CI
    assert r["ratio"] == pytest.approx(
        pooled["oracle"]["model_same_rows"]["brier"] / pooled["oracle"]["oracle"]["brier"])
    assert r["ratio_ci"][0] <= r["ratio"] <= r["ratio_ci"][1] and r["days"] >= 2
    assert pooled["model_over_book"]["ratio"] == pytest.approx(
        pooled["model"]["brier"] / pooled["book_mid"]["brier"])
    cells = {(c["policy"], c["fill"]): c for c in report["policy_pooled"]}
    assert ("edge", "taker") in cells and cells[("edge", "taker")]["periods"] == 3
    assert cells[("edge", "taker")]["pnl"] == pytest.approx(sum(
        c["pnl"] for per in report["periods"] for c in per["policy_cells"]
        if (c["policy"], c["fill"]) == ("edge", "taker")))

    # a period killed half-way (no done.json) is retrained; the others are not
    (out / "period_001" / "done.json").unlink()
    before = {i: (out / f"period_{i:03d}" / "done.json").stat().st_mtime_ns for i in (0, 2)}
    assert _cli(lake, out) == 0
    capsys.readouterr()
    assert {i: (out / f"period_{i:03d}" / "done.json").stat().st_mtime_ns for i in (0, 2)} == before
    assert len(list((out / "period_001").glob("*.onnx"))) == 1  # the half-written run cleared
    assert json.loads((out / "report.json").read_text())["run"]["trained_now"] == 1

    # other options in the same --out: refused, one line, exit 2
    assert _cli(lake, out, "--sliding", "3", "--log-level", "WARNING") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other options" in err and "sliding_days" in err


def test_sliding_span(lake: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sl"
    assert _cli(lake, out, "--sliding", "3", "--stop-after", "1", "--jobs", "1") == 0
    capsys.readouterr()
    card = json.loads(next((out / "period_000").glob("*_card.json")).read_text())
    done = json.loads((out / "period_000" / "done.json").read_text())
    test_from = done["period"]["test_from"]
    assert done["period"]["train_from"] == test_from - 3 * DAY_S
    assert card["splits"]["train"]["from"] >= test_from - 3 * DAY_S > START


def test_recent_layout_walk_and_its_resume_refusal(lake: Path, tmp_path: Path, capsys) -> None:
    """--split-layout recent reaches every period's training (the booster's days end right
    before the period; calibration and policy come first) and is part of the plan: the same
    --out with the standard layout is refused, naming it."""
    out = tmp_path / "recent"
    assert _cli(lake, out, "--split-layout", "recent", "--stop-after", "1", "--jobs", "1") == 0
    assert "(split layout recent)" in capsys.readouterr().out
    plan = json.loads((out / "plan.json").read_text())
    assert plan["split_layout"] == "recent" and plan["options"]["split"]["layout"] == "recent"
    done = json.loads((out / "period_000" / "done.json").read_text())
    card = json.loads(next((out / "period_000").glob("*_card.json")).read_text())
    sp = card["splits"]
    assert sp["layout"] == "recent" and sp["calibration"]["from"] == START
    assert sp["calibration"]["to"] < sp["policy"]["from"] <= sp["policy"]["to"] < sp["train"]["from"]
    test_from = done["period"]["test_from"]
    assert sp["train"]["to"] == done["trained_to"] == test_from - 2 * 900  # one embargo window
    assert sp["test"]["from"] == test_from
    assert _cli(lake, out, "--log-level", "WARNING") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'split.layout "recent" -> "standard"' in err, err


def test_fit_points_reach_the_fit_only(lake: Path, tmp_path: Path, capsys) -> None:
    """--fit-points: the booster fits and early-stops on the extra points' rows too (more fit
    rows than the plain walk's), while calibration, test rows and the model's decision points
    stay on the default points; the option is part of the plan."""
    plain, dense = tmp_path / "plain", tmp_path / "dense"
    for out, extra in ((plain, ()), (dense, ("--fit-points", "6/15,8/15,7/15"))):
        assert _cli(lake, out, "--stop-after", "1", "--jobs", "1", *extra) == 0
    capsys.readouterr()
    plan = json.loads((dense / "plan.json").read_text())
    assert plan["options"]["fit_points"] == [6 / 15, 8 / 15]  # 7/15 is a decision point already
    cards = [json.loads(next((o / "period_000").glob("*_card.json")).read_text()) for o in (plain, dense)]
    assert cards[1]["splits"]["train"]["rows"] > 1.5 * cards[0]["splits"]["train"]["rows"]
    for k in ("calibration", "test"):
        assert cards[1]["splits"][k] == cards[0]["splits"][k], k
    assert cards[1]["decision_points"] == cards[0]["decision_points"] == [5 / 15, 7 / 15, 10 / 15]
    rows = [np.load(o / "period_000" / "rows.npz") for o in (plain, dense)]
    assert np.array_equal(rows[0]["point"], rows[1]["point"])
    assert not np.array_equal(rows[0]["model"], rows[1]["model"])


@pytest.mark.parametrize("args, words", [
    (["--initial-days", "0"], "--initial-days"),
    (["--every", "nan"], "--every"),
    (["--sliding", "-1"], "--sliding"),
    (["--jobs", "0"], "--jobs"),
    (["--stop-after", "1.5"], "--stop-after"),
    (["--initial-days", "40"], "the lake spans 10.00 days"),
    (["--every", "0.01"], "shorter than one window"),
    (["--name", "../up"], "--name '../up': a plain folder name"),
    (["--split-layout", "sideways"], "--split-layout"),
    (["--fit-points", "6/15,1"], "--fit-points"),
])
def test_bad_options_are_one_line_exit_2(lake: Path, tmp_path: Path, capsys, args, words) -> None:
    from slotml.cli import main

    with pytest.raises(SystemExit) as e:  # argparse's own errors exit; UserErrors return 2
        raise SystemExit(main(["walkforward", "--data-dir", str(lake), "--out",
                               str(tmp_path / "x"), "--stop-after", "1", "--log-level", "WARNING", *args]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_frozen_worse_ci_pairs_the_two_worlds_by_day() -> None:
    """bench.acceptance_shift's (b) reading: days are resampled together in both worlds, so a
    shifted world whose every day is the control's with the model's errors scaled by 1.05 reads
    +5% with no spread, whatever the days themselves do."""
    from bench.acceptance_shift import DAY, worse_ci

    rng = np.random.default_rng(5)
    n = 30 * 40
    t0 = 1_785_715_200
    slot = t0 + (np.arange(n) // 40) * DAY
    y = (rng.random(n) < 0.5).astype(float)
    oracle = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1)
    model = np.clip(oracle + rng.normal(0, 0.1 + 0.1 * (np.arange(n) // 40 % 3), n), 0, 1)
    control = {"slot_ts": slot, "y": y, "oracle": oracle, "model": model}
    # the same rows, the model's squared error 1.05x the control's on every day
    err = model - y
    shifted = {**control, "model": y + err * np.sqrt(1.05)}
    w = worse_ci(shifted, control, t0, 0, 30)
    assert w["days"] == 30 and w["worse"] == pytest.approx(0.05)
    assert w["ci"] == pytest.approx([0.05, 0.05])
    noisy = {**control, "model": np.clip(model + rng.normal(0, 0.05, n), 0, 1)}
    v = worse_ci(noisy, control, t0, 0, 30)
    assert v["ci"][0] < v["worse"] < v["ci"][1]
