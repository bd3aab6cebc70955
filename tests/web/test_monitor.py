"""The live calibration monitor on a real SQLite store filled by the sim's backfill (one day of
the 5m family, two assets): every resolved window scored once (also across a restart), the
numbers against a direct numpy computation on the ledger, a miscalibrated model flagged and a
calibrated one not, and ``slotml api`` serving the state over loopback."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from slotml.features.contract import CONTRACT_VERSION, FEATURES
from slotml.ingest.store import open_store
from slotml.web import monitor_stats as ms
from slotml.web.monitor import Monitor, MonitorConfig, read_ledger
from tests.serve.models import make_model
from tests.serve.sim_data import shared_sim_data
from tests.util import free_port, wait_for

STATS = {"move_vol_per_min": {}, "default_move_vol_per_min": 0.05}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return shared_sim_data(tmp_path_factory.getbasetemp())


def run(cfg: MonitorConfig, steps: int = 1) -> tuple[Monitor, list[int]]:
    async def go() -> tuple[Monitor, list[int]]:
        store = open_store(cfg.db)
        await store.connect()
        try:
            mon = Monitor(cfg, store)
            return mon, [await mon.step() for _ in range(steps)]
        finally:
            await store.close()

    return asyncio.run(go())


def resolved_windows(db: Path) -> set[tuple[str, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {(s, t) for s, t in con.execute(
            "SELECT symbol, slot_ts FROM slot_resolutions WHERE window_s = 300 AND resolved_up IS NOT NULL")}
    finally:
        con.close()


def model(path: Path, w: float) -> Path:
    weights = [0.0] * len(FEATURES)
    weights[FEATURES.index("move_z")] = w
    return make_model(path, list(FEATURES), weights, window_s=300, stats=STATS,
                      meta_over={"feature_contract": str(CONTRACT_VERSION)})


def test_every_resolved_window_once_and_a_restart_resumes(data: dict, tmp_path: Path) -> None:
    import shutil

    from slotml.settings import DbUrl

    db = tmp_path / "store.db"  # a copy: a window gets resolved below
    shutil.copy(data["db"], db)
    url = DbUrl(scheme="sqlite", path=db)
    cfg = MonitorConfig(db=url, model_path=data["model"], monitor_dir=tmp_path, since=0)
    mon, n = run(cfg, steps=2)
    want = resolved_windows(db)
    assert n == [len(want), 0]
    rows, bad = read_ledger(mon.model.ledger)
    keys = [(r["symbol"], r["slot_ts"], r["point"]) for r in rows]
    assert bad == 0 and len(keys) == len(set(keys))
    assert {(s, t) for s, t, _ in keys} <= want and len(rows) > 2.9 * len(want)
    # a restart reads the ledger back: nothing scored twice, the same state
    again, n2 = run(cfg)
    assert n2 == [0] and len(read_ledger(again.model.ledger)[0]) == len(rows)
    assert again.summary == pytest.approx(mon.summary, nan_ok=True)
    # a window resolved later is scored at the next pass, once
    con = sqlite3.connect(db)
    try:
        pending = con.execute("SELECT symbol, slot_ts FROM slot_resolutions WHERE window_s = 300 "
                              "AND resolved_up IS NULL ORDER BY slot_ts DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert pending is not None, "the fixture's history has unresolved windows"

    async def resolve() -> None:
        store = open_store(url)
        await store.connect()
        try:
            await store.upsert_resolutions([{"symbol": pending[0], "window_s": 300,
                                             "slot_ts": pending[1], "resolved_up": True,
                                             "resolved_at": pending[1] + 400.0}])
        finally:
            await store.close()

    asyncio.run(resolve())
    _, n3 = run(cfg, steps=2)
    assert n3 == [1, 0]


def test_numbers_match_numpy(data: dict, tmp_path: Path) -> None:
    cfg = MonitorConfig(db=data["url"], model_path=data["model"], monitor_dir=tmp_path, since=0,
                        rows=300)
    mon, _ = run(cfg)
    rows = read_ledger(mon.model.ledger)[0]
    last = rows[-300:]
    y = np.array([r["y"] for r in last])
    p = np.array([r["p"] for r in last])
    mid = np.array([np.nan if r["mid"] is None else r["mid"] for r in last])
    s = mon.summary
    assert s["rows"] == 300
    assert s["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert s["expected_brier"] == pytest.approx(np.mean(p * (1 - p)))
    assert s["brier_minus_expected"] == pytest.approx(s["brier"] - s["expected_brier"])
    assert s["log_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    edges = np.linspace(0, 1, 11)
    b = np.clip(np.digitize(p, edges) - 1, 0, 9)
    ece = sum(abs(p[b == i].mean() - y[b == i].mean()) * (b == i).sum() for i in range(10)
              if (b == i).any()) / len(p)
    assert s["ece"] == pytest.approx(ece)
    k = np.isfinite(mid)
    q = np.clip(mid[k], 0.001, 0.999)
    assert s["book_rows"] == k.sum() and s["book_brier"] == pytest.approx(np.mean((q - y[k]) ** 2))
    assert s["book_rows_brier"] == pytest.approx(np.mean((p[k] - y[k]) ** 2))  # the same rows
    v = p * (1 - p) * (1 - 2 * p) ** 2
    assert s["z"] == pytest.approx(np.sum((y - p) * (1 - 2 * p)) / math.sqrt(ms.INFLATION * v.sum()))
    # the CUSUM replayed by hand over every row, in ledger order
    hi: dict = {}
    lo: dict = {}
    win: list = []
    for r in rows:
        win = (win + [r])[-300:]
        if len(win) < ms.MIN_ROWS:
            continue
        same = [w["p"] for w in win if w["point"] == r["point"]]
        mv = float(np.mean([x * (1 - x) * (1 - 2 * x) ** 2 for x in same]))
        x = (r["y"] - r["p"]) * (1 - 2 * r["p"]) / math.sqrt(mv)
        hi[r["point"]] = max(0.0, hi.get(r["point"], 0.0) + x - ms.CUSUM_K)
        lo[r["point"]] = max(0.0, lo.get(r["point"], 0.0) - x - ms.CUSUM_K)
    assert s["cusum"] == pytest.approx(max([*hi.values(), *lo.values()]))
    declined = mon.state()["declined"]
    assert sum(declined.values()) + mon.metrics.get("monitor_decisions", reason="enter") == \
        3 * mon.metrics.get("monitor_windows")


def best_weight(data: dict, tmp_path: Path) -> float:
    """The move_z weight with the smallest log loss on the store's decision rows: the tiny
    model's P(Up) = sigmoid(1.7 move_z) gives move_z back from the ledger."""
    mon, _ = run(MonitorConfig(db=data["url"], model_path=data["model"], monitor_dir=tmp_path / "fit", since=0))
    rows = read_ledger(mon.model.ledger)[0]
    p = np.clip([r["p"] for r in rows], 1e-7, 1 - 1e-7)
    y = np.array([r["y"] for r in rows])
    mz = np.log(p / (1 - p)) / 1.7
    grid = np.linspace(0.2, 6.0, 59)
    loss = [-np.mean(y * -np.logaddexp(0, -w * mz) + (1 - y) * -np.logaddexp(0, w * mz)) for w in grid]
    return float(grid[int(np.argmin(loss))])


def test_miscalibrated_models_turn_unhealthy_a_calibrated_one_does_not(data: dict, tmp_path: Path) -> None:
    w = best_weight(data, tmp_path)
    got = {}
    for name, weight in (("calibrated", w), ("squashed", w / 4), ("extreme", w * 4)):
        path = model(tmp_path / name / f"m_{name}.onnx", weight)
        mon, _ = run(MonitorConfig(db=data["url"], model_path=path, monitor_dir=tmp_path / name, since=0))
        got[name] = (mon.summary["status"], mon.alarms, round(mon.summary["cusum"], 1))
    assert got["calibrated"][:2] == ("healthy", 0), got
    assert got["squashed"][0] == "unhealthy" and got["extreme"][0] == "unhealthy", got


def test_api_serves_the_monitor_state(data: dict, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "slotml.cli", "api", "--db", f"sqlite:///{data['db']}",
         "--lake-dir", str(data["lake"]), "--port", str(port), "--model-path", str(data["model"]),
         "--monitor-dir", str(tmp_path / "mon"), "--since", "2026-11-17T00:00:00Z",
         "--monitor-interval", "1", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def health() -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    want = len(resolved_windows(data["db"]))
    try:
        body = wait_for(lambda: (h := health()) and h["monitor"] and h["monitor"]["windows_scored"] == want and h,
                        timeout=60, what="the API's monitor to score every resolved window")
        mon = body["monitor"]
        assert body["status"] == "ok" and mon["status"] in ("healthy", "unhealthy")
        assert mon["rows"] == 400 and 0 < mon["brier"] < 0.5 and mon["book_brier"] is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        gauges = dict(ln.rsplit(" ", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
        assert float(gauges["slotml_monitor_brier"]) == pytest.approx(mon["brier"], rel=1e-5)
        assert float(gauges["slotml_monitor_rows"]) == 400
        assert float(gauges["slotml_monitor_windows_total"]) == mon["windows_scored"]
        assert any(k.startswith("slotml_monitor_decisions_total{reason=") for k in gauges)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert "Traceback" not in out, out[-2000:]


@pytest.mark.parametrize("argv, what", [
    (["monitor", "--monitor-windows", "0"], "--monitor-windows"),
    (["monitor", "--monitor-windows", "nan"], "--monitor-windows"),
    (["monitor", "--monitor-interval", "inf"], "--monitor-interval"),
    (["monitor", "--since", "yesterday"], "--since"),
    (["monitor", "--model-path", "/nonexistent/m.onnx"], "no model file"),
    (["api", "--model-path", "/nonexistent/m.onnx"], "no model file"),
])
def test_bad_options_are_one_line(data: dict, argv: list[str], what: str, capsys) -> None:
    from slotml.cli import main

    assert main([*argv, "--db", f"sqlite:///{data['db']}", "--port" if argv[0] == "api" else "--once",
                 *(["1"] if argv[0] == "api" else [])]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if f"slotml {argv[0]}: error:" in ln]
    assert len(lines) == 1 and what in lines[0] and "Traceback" not in err, err


def test_live_model_page_numbers(data: dict, tmp_path: Path) -> None:
    from slotml.web.dashboard_live import live_model_data

    mon, _ = run(MonitorConfig(db=data["url"], model_path=data["model"], monitor_dir=tmp_path, since=0))
    d = live_model_data(tmp_path, mon.model.scorer.path)
    rows = read_ledger(mon.model.ledger)[0]
    assert d["rows"] == len(rows) and d["summary"] == pytest.approx(mon.summary, nan_ok=True)
    assert sum(b["n"] for b in d["bins"] if b["series"] == "model") == 400
    assert sum(b["n"] for b in d["bins"] if b["series"] == "book mid") == mon.summary["book_rows"]
    last = d["series"][-3:]  # the last point's three curves: the summary's numbers
    got = {c["curve"]: c["brier"] for c in last}
    assert got["model observed"] == pytest.approx(mon.summary["brier"])
    assert got["model expected"] == pytest.approx(mon.summary["expected_brier"])
    assert got["book mid"] == pytest.approx(mon.summary["book_brier"])
    codes = {r["code"] for r in rows} - {"enter"}
    assert {x["reason"] for x in d["declined"]} == codes
    assert sum(x["rows"] for x in d["declined"]) + d["entered"] == len(rows)
    assert live_model_data(tmp_path / "none", mon.model.scorer.path)["rows"] == 0
    assert d["expired"] == 0 and not any("expired" in r for r in rows)  # a live model


def test_an_expired_models_declines_are_the_fallback_filters_and_counted(data: dict, tmp_path: Path) -> None:
    """A model whose record's validated_at is long past: under the default ``--on-expired
    fallback`` the manual filters decide each point as they do for the bot (decide_online hands
    them the move and minutes), so the declines carry their real reasons, not all ``no_move``;
    the gate's own ``model_expired`` counter counts every decision, in /health and /metrics."""
    from slotml import model_file as mf

    path = model(tmp_path / "models" / "td_model_expired.onnx", 1.7)
    mf.write_record(path.parent, mf.ModelRecord(model=path.name, validated_at="2020-01-01T00:00:00Z"))
    mon, _ = run(MonitorConfig(db=data["url"], model_path=path, monitor_dir=tmp_path / "mon", since=0))
    st = mon.state()
    decisions = 3 * st["windows_scored"]
    assert decisions > 0 and st["gate_counters"]["model_expired"] == decisions, st
    declined = st["declined"]
    assert sum(declined.values()) + mon.metrics.get("monitor_decisions", reason="enter") == decisions
    # the filters' own reasons: a decision point before --min-entry-minutes is too early, others
    # are judged on the move; no_move only where a window has no move at that tick
    assert declined.get("no_move", 0) < sum(declined.values()) / 2, declined
    assert {"too_early", "move_too_small"} & set(declined), declined
    text = mon.metrics_text()
    assert f"slotml_monitor_gate_model_expired {decisions}" in text
    assert "slotml_monitor_gate_out_of_distribution 0" in text
    rows = read_ledger(mon.model.ledger)[0]
    assert {r["code"] for r in rows} != {"no_move"} and all(r.get("expired") for r in rows)
    from slotml.web.dashboard_live import live_model_data

    assert live_model_data(tmp_path / "mon", path)["expired"] == len(rows)


def _live_page(monitor_dir: str, model_file: str) -> None:  # the AppTest script (runs on its own)
    from pathlib import Path

    from slotml.web.dashboard_live import live_model_section

    live_model_section(Path(monitor_dir), Path(model_file))


def test_live_model_page_renders(data: dict, tmp_path: Path) -> None:
    """The dashboard's live model page drawn by Streamlit (AppTest) over a monitor's ledger:
    no exception, its two charts and three tables, the declines' reasons in the last table."""
    from streamlit.testing.v1 import AppTest

    mon, _ = run(MonitorConfig(db=data["url"], model_path=data["model"], monitor_dir=tmp_path, since=0))
    at = AppTest.from_function(_live_page, args=(str(tmp_path), str(mon.model.scorer.path)),
                               default_timeout=60)
    at.run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert [h.value for h in at.header] == ["Live model"]
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2, [e.type for e in at.main]  # reliability, rolling Brier
    tables = [t.value for t in at.table]
    assert len(tables) == 3
    assert tables[0]["n"].sum() == 400 + mon.summary["book_rows"]  # the model's and the book's bins
    assert set(tables[2]["reason"]) == set(mon.state()["declined"]) - {"no_features"}
    assert "book_rows_brier" in tables[1].columns
