"""Replay: the policy/PnL core on hand-made rows, then over synthetic lake tables and the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb
import numpy as np
import pytest

from slotml.backtest.replay import default_range, replay, time_arg
from slotml.backtest.rows import DecisionRow, WindowInfo
from slotml.backtest.simulate import simulate
from slotml.backtest.verdict import pnl_png
from slotml.cli import main
from slotml.features.contract import CONTRACT_VERSION, FEATURES
from slotml.features.synth import SynthConfig, generate, load_into
from slotml.serve import EntryGate, GateConfig, Scorer
from slotml.serve.gate import FeeSchedule
from tests.serve.models import make_model

ABC = ["a", "b", "c"]


def _row(slot: int, point: float, p_up: float, *, bid_up=0.5, ask_up=0.52, bid_down=0.47,
         ask_down=0.49, move=0.1, tick=None) -> DecisionRow:
    v = np.array([np.log(p_up / (1 - p_up)), 0, 0], dtype=np.float32)
    tick = tick if tick is not None else slot * 1000 + int(point * 900_000)
    return DecisionRow("BTC", 900, slot, point, tick, v, bid_up, ask_up, bid_down, ask_down, move, move)


def _info(up: bool, asks_after: list[tuple[int, float | None, float | None]] = (), **kw) -> WindowInfo:
    return WindowInfo(up, kw.get("fee", FeeSchedule(0.07, 1, True)), kw.get("mos", 1.0),
                      [t for t, _, _ in asks_after], [a for _, a, _ in asks_after],
                      [d for _, _, d in asks_after])


@pytest.fixture
def model_gate(tmp_path: Path) -> EntryGate:
    s = Scorer.load(make_model(tmp_path / "m.onnx", ABC, [1.0, 0, 0]), contract_features=ABC,
                    contract_version=None)
    return EntryGate(GateConfig(min_confidence=0.6, order_size=10, min_order_size=1), s)


def test_taker_pnl_fees_and_one_entry_per_window(model_gate: EntryGate) -> None:
    a, b = 1_000_000 * 900, 1_000_001 * 900
    rows = [
        _row(a, 5 / 15, 0.55), _row(a, 7 / 15, 0.8), _row(a, 10 / 15, 0.9),  # enters at 7/15
        _row(b, 5 / 15, 0.2),  # Down at its ask 0.49
    ]
    windows = {("BTC", 900, a): _info(True), ("BTC", 900, b): _info(True)}
    r = simulate(rows, windows, model_gate, "taker")
    assert r.n_entries == 2 and r.n_fills == 2
    ea, eb = sorted(r.entries, key=lambda e: e.slot_ts)
    assert ea.point == 7 / 15 and ea.outcome == "Up" and ea.size == 6 and ea.price == 0.52
    fee_a = 0.07 * 0.52 * 0.48
    assert ea.pnl == pytest.approx(6 * (1 - 0.52 - fee_a))
    assert eb.outcome == "Down" and eb.size == 6 and not eb.won
    assert eb.pnl == pytest.approx(-6 * (0.49 + 0.07 * 0.49 * 0.51))
    assert r.win_rate == 0.5
    assert r.pnl == pytest.approx(ea.pnl + eb.pnl)
    assert r.pnl_per_staked == pytest.approx(r.pnl / (6 * (0.52 + fee_a) + 6 * (0.49 + 0.07 * 0.49 * 0.51)))
    assert r.max_drawdown == pytest.approx(-eb.pnl)  # the loss came after the gain
    assert r.mean_edge == pytest.approx(((0.8 - 0.52) + (0.8 - 0.49)) / 2, abs=1e-6)


def test_maker_fills_only_when_a_later_ask_reaches_the_bid(model_gate: EntryGate) -> None:
    a, b, c = 900 * 10, 900 * 11, 900 * 12
    rows = [_row(a, 7 / 15, 0.8), _row(b, 7 / 15, 0.8), _row(c, 7 / 15, 0.8)]
    t = lambda s, k: s * 1000 + k * 30_000  # noqa: E731
    windows = {
        ("BTC", 900, a): _info(True, [(t(a, 13), 0.45, 0.49), (t(a, 15), 0.50, 0.48)]),  # ask 0.50 <= bid 0.50 later
        ("BTC", 900, b): _info(True, [(t(b, 13), 0.52, 0.47), (t(b, 15), None, 0.4)]),   # never reached
        ("BTC", 900, c): _info(False, [(t(c, 10), 0.49, 0.5), (t(c, 15), 0.50, 0.5)]),  # before: ignored; then filled
    }
    r = simulate(rows, windows, model_gate, "maker-optimistic")
    by = {e.slot_ts: e for e in r.entries}
    assert by[a].filled and by[a].price == 0.50 and by[a].fee_per_share == 0.0
    assert by[a].pnl == pytest.approx(6 * 0.5)
    assert not by[b].filled and by[b].pnl == 0.0
    assert by[c].filled and by[c].pnl == pytest.approx(-6 * 0.5)
    assert r.n_entries == 3 and r.n_fills == 2 and r.win_rate == 0.5


def test_no_quote_moves_on_and_reasons_are_counted(model_gate: EntryGate) -> None:
    a, b = 900 * 20, 900 * 21
    rows = [_row(a, 5 / 15, 0.8, ask_up=None), _row(a, 7 / 15, 0.8),
            _row(b, 5 / 15, 0.55), _row(b, 7 / 15, 0.58)]
    windows = {("BTC", 900, a): _info(True), ("BTC", 900, b): _info(True),
               ("BTC", 900, 900 * 99): _info(True)}  # no rows: not a window of this replay
    r = simulate(rows, windows, model_gate, "taker")
    assert [e.point for e in r.entries] == [7 / 15]
    assert r.reasons == {"below_min_confidence": 1} and r.windows == 2


def test_filters_policy_uses_the_move(tmp_path: Path) -> None:
    gate = EntryGate(GateConfig(order_size=10, min_order_size=5))
    a = 900 * 30
    rows = [_row(a, 5 / 15, 0.5, move=-0.02), _row(a, 7 / 15, 0.5, move=-0.2)]
    r = simulate(rows, {("BTC", 900, a): _info(False)}, gate, "taker")
    (e,) = r.entries
    assert e.policy == "filters" and e.outcome == "Down" and e.size == 10 and e.won
    assert e.point == 7 / 15 and e.price == 0.49 and e.p_win is None


def _synth_con(n_windows: int = 24):
    snaps, res = generate(SynthConfig(symbols=("BTC", "ETH"), n_windows=n_windows, seed=4,
                                      p_missing=0.05, p_one_sided=0.05))
    con = duckdb.connect()
    load_into(con, snaps, res)
    return con, snaps, res


def _contract_model(tmp_path: Path, slot0: int, name: str = "td_model_t.onnx") -> Path:
    w = [0.0] * len(FEATURES)
    w[FEATURES.index("dir_move_pct")] = 8.0
    splits = {"train": {"from": slot0, "to": slot0 + 8 * 900, "windows": 18},
              "calibration": {"from": slot0 + 10 * 900, "to": slot0 + 11 * 900, "windows": 4},
              "test": None}
    return make_model(tmp_path / "models" / name, list(FEATURES), w,
                      meta_over={"feature_contract": str(CONTRACT_VERSION), "splits": json.dumps(splits)})


def test_replay_over_synthetic_lake_tables(tmp_path: Path) -> None:
    con, snaps, res = _synth_con()
    slot0 = SynthConfig().start_ts
    scorer = Scorer.load(_contract_model(tmp_path, slot0))
    assert default_range(scorer) == (slot0 + 12 * 900, None)
    result = replay(con, scorer, GateConfig(min_confidence=0.55, order_size=20, min_order_size=1))
    resolved = {(r["symbol"], r["slot_ts"]) for r in res.to_pylist() if r["resolved_up"] is not None}
    unseen = {k for k in resolved if not (slot0 <= k[1] <= slot0 + 8 * 900 or
                                          slot0 + 10 * 900 <= k[1] <= slot0 + 11 * 900)}
    assert result.windows == len(unseen) > 10
    assert result.skipped["seen_by_model"] > 0
    # no slot_trades in these tables: maker-queue unavailable, the other fill models run
    assert "maker-queue" in result.unavailable and "no slot_trades" in result.unavailable["maker-queue"]
    assert [(r.policy, r.fill) for r in result.results] == [
        (p, f) for f in ("taker", "maker-optimistic") for p in ("edge", "design", "filters", "always-enter")]
    assert "maker-queue unavailable" in result.verdict()
    mt, mm = result.cell("design", "taker").result, result.cell("design", "maker-optimistic").result
    assert mt.n_entries > 0 and mt.n_fills == mt.n_entries and mm.n_fills <= mm.n_entries
    for e in mt.entries:
        assert (e.slot_ts, e.symbol) not in {(s, y) for y, s in resolved - unseen}
    text = result.table()
    assert "design" in text and "filters" in text and "maker-optimistic" in text
    assert "model beats filters as a maker: inconclusive" in text
    png = pnl_png(result, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a range [from, to) restricts the windows
    last = max(s for _, s in unseen)
    part = replay(con, scorer, GateConfig(min_confidence=0.55), slot_from=last, slot_to=last + 900)
    assert part.windows == len({k for k in unseen if k[1] == last})


def _sqlite_store(path: Path, snaps, res) -> str:
    from slotml.ingest.store.ddl import full_ddl

    conn = sqlite3.connect(path)
    conn.executescript(full_ddl("sqlite"))
    for table, name in ((snaps, "slot_snapshots"), (res, "slot_resolutions")):
        cols = table.column_names
        rows = [tuple(r[c] for c in cols) for r in table.to_pylist()]
        conn.executemany(f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_cli_replay_end_to_end(tmp_path: Path, capsys) -> None:
    _, snaps, res = _synth_con(16)
    url = _sqlite_store(tmp_path / "store.db", snaps, res)
    lake = tmp_path / "lake"
    assert main(["export", "--db", url, "--lake", str(lake), "--grace", "0"]) == 0
    model = _contract_model(tmp_path, SynthConfig().start_ts)
    (model.parent / "current").write_text(model.name)
    capsys.readouterr()
    out_json = tmp_path / "r.json"
    rc = main(["replay", "--data-dir", str(tmp_path), "--lake-dir", str(lake), "--min-confidence",
               "0.55", "--order-size", "20", "--min-order-size", "1", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "model" in out and "filters" in out and "cumulative PnL chart" in out
    assert (tmp_path / "replay" / "td_model_t_backtest.png").exists()
    data = json.loads(out_json.read_text())
    assert data["windows"] > 0 and len(data["results"]) == 8 and data["verdict"].startswith("model beats")
    # the train report's hook
    from slotml.backtest.replay import policy_table

    table = policy_table(model_path=model, lake_dir=lake, slot_from=None, slot_to=None)
    assert isinstance(table, str) and "PnL" in table


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["replay", "--model-path", str(tmp_path / "none.onnx"), "--lake-dir", str(tmp_path)]) == 2
    assert "no model file" in capsys.readouterr().err
    model = _contract_model(tmp_path, 0)
    assert main(["replay", "--model-path", str(model), "--lake-dir", str(tmp_path / "nolake")]) == 2
    assert "--lake-dir" in (err := capsys.readouterr().err) and "does not exist" in err
    assert main(["replay", "--model-path", str(model), "--data-dir", str(tmp_path)]) == 2
    assert "no lake" in capsys.readouterr().err  # the data dir's default lake
    assert main(["replay", "--model-path", str(model), "--lake-dir", str(tmp_path),
                 "--from", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_time_arg() -> None:
    assert time_arg("1767225600") == 1767225600
    assert time_arg("2026-01-01") == 1767225600
    assert time_arg("2026-01-01T00:15:00Z") == 1767225600 + 900
    assert time_arg(None) is None


def test_maker_queue_over_lake_tables_with_a_tape(tmp_path: Path) -> None:
    """slot_trades and slot_tape_gaps beside the synthetic tables: maker-queue runs, a window
    with a recorded gap is left out and counted, and the verdict line is a verdict."""
    con, snaps, res = _synth_con()
    slot0 = SynthConfig().start_ts
    scorer = Scorer.load(_contract_model(tmp_path, slot0))
    # every snapshot's Up bid is sold into, 1000 shares, 2 s after the tick (clears any queue)
    con.execute("""CREATE TABLE slot_trades AS SELECT symbol, window_s, slot_ts, 'tok' AS token_id,
        'Up' AS outcome, bid_up AS price, 1000.0 AS size, 'SELL' AS side, tick_ms + 2000 AS ts_ms,
        0 AS occurrence FROM slot_snapshots WHERE bid_up IS NOT NULL""")
    gap_slot = con.execute("SELECT max(slot_ts) FROM slot_resolutions WHERE resolved_up IS NOT NULL "
                           "AND symbol = 'BTC'").fetchall()[0][0]
    con.execute(f"""CREATE TABLE slot_tape_gaps AS SELECT 'BTC' AS symbol, 900 AS window_s,
        {gap_slot} AS slot_ts, 'tok' AS token_id, {gap_slot + 100}.0 AS from_ts,
        {gap_slot + 200}.0 AS to_ts, 'reconnect' AS reason""")
    result = replay(con, scorer, GateConfig(min_confidence=0.55, order_size=20, min_order_size=1),
                    policies=("edge", "filters", "always-enter"), fills=("maker-queue", "taker"))
    assert result.unavailable == {}
    mq = result.cell("always-enter", "maker-queue").result
    assert mq.excluded == {"tape_gap": 1} and mq.windows == result.windows - 1
    assert mq.n_entries > 0 and mq.n_fills > 0 and mq.markouts()["markout_res"] is not None
    assert result.cell("always-enter", "taker").result.windows == result.windows
    assert result.verdict().split(": ")[1].split(" ")[0] in ("yes", "no", "inconclusive")
    assert "windows left out: maker-queue tape_gap 1" in result.table()


def test_backtest_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    model = _contract_model(tmp_path, 0)
    assert main(["backtest", "--model-path", str(model), "--lake-dir", str(tmp_path),
                 "--policy", "edge", "--min-edge", "1.5"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if " INFO " not in x]
    assert len(err) == 1 and "--min-edge: 1.5 is not a finite number in (-1, 1)" in err[0]
    assert main(["backtest", "--model-path", str(tmp_path / "none.onnx")]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if " INFO " not in x]
    assert len(err) == 1 and "no model file" in err[0]
    assert main(["backtest", "--model-path", str(model), "--policies", "edge,yolo"]) == 2
    assert "unknown policy yolo" in capsys.readouterr().err


@pytest.mark.parametrize(("contract", "bnb"), [("3", None), ("4", 5.0)])
def test_a_model_scores_new_assets_with_its_own_contract(tmp_path: Path, contract: str,
                                                         bnb: float | None) -> None:
    """A contract-3 model (written before BNB had a code) still loads, and scores a BNB row with
    asset NaN, as it was trained; a contract-4 one gets BNB's code. BTC and ETH keep their codes
    under both. The lake rows (backtest, challenge, dashboard) and the online builder agree."""
    from slotml.backtest.replay import load_rows
    from slotml.serve import OnlineFeatures
    from tests.serve.models import sigmoid

    snaps, res = generate(SynthConfig(symbols=("BTC", "ETH", "BNB"), n_windows=6, seed=2))
    con = duckdb.connect()
    load_into(con, snaps, res)
    w = [0.0] * len(FEATURES)
    w[FEATURES.index("asset")] = 0.25  # the tiny model reads NaN as 0: p = sigmoid(0.25 * code)
    scorer = Scorer.load(make_model(tmp_path / "m.onnx", list(FEATURES), w,
                                    meta_over={"feature_contract": contract}))
    rows, _, _ = load_rows(con, scorer, None, None, tape=False, skip_seen=False)
    online = OnlineFeatures.for_model(scorer)
    for r in res.to_pylist():
        online.add_resolution(r)
    for r in sorted(snaps.to_pylist(), key=lambda r: (r["tick_ms"], r["symbol"])):
        online.add_snapshot(r)
    want = {"BTC": 0.0, "ETH": 1.0, "BNB": bnb}
    ia = FEATURES.index("asset")
    got: dict[str, set[str]] = {}
    for r in rows:
        live = online.vector_at(r.symbol, r.window_s, r.slot_ts,
                                r.slot_ts * 1000 + round(r.point * r.window_s * 1000))
        assert live is not None and str(live[ia]) == str(r.vector[ia])
        got.setdefault(r.symbol, set()).add(str(r.vector[ia]))
        code = want[r.symbol]
        p = scorer.p_up(r.vector)
        assert p == pytest.approx(sigmoid(0.25 * (code or 0.0)), abs=1e-6)
    assert got == {s: {"nan" if c is None else str(c)} for s, c in want.items()}


def test_backtest_runs_the_models_family_only(tmp_path: Path, capsys) -> None:
    """A lake holding a 15m and a 5m family backtests a 15m model on its 15m windows only: the
    same result as a lake of the 15m family alone. ``--window-s`` defaults to the model's; another
    length, or a model whose family the lake lacks, is one line and exit 2."""
    import pyarrow as pa

    from tests.train.test_pipeline import write_lake

    _, s15, r15 = _synth_con()
    s5, r5 = generate(SynthConfig(symbols=("BTC", "ETH"), window_s=300, n_windows=72, seed=9))
    write_lake(tmp_path / "both", pa.concat_tables([s15, s5]), pa.concat_tables([r15, r5]))
    write_lake(tmp_path / "one", s15, r15)
    model = _contract_model(tmp_path, SynthConfig().start_ts)

    def run(lake: str, *extra: str) -> tuple[int, dict | None, str]:
        out = tmp_path / f"{lake}.json"
        rc = main(["backtest", "--model-path", str(model), "--lake-dir", str(tmp_path / lake),
                   "--data-dir", str(tmp_path), "--bootstrap", "100", "--json", str(out), *extra])
        cap = capsys.readouterr()
        return rc, json.loads(out.read_text()) if rc == 0 else None, cap.out + cap.err

    rc, both, text = run("both")
    assert rc == 0 and "on the 15m family (900 s windows) over" in text, text
    rc, again, _ = run("both", "--window-s", "900")
    rc1, one, _ = run("one")
    assert rc == rc1 == 0 and both["window_s"] == 900 and both["family"] == "15m"
    assert both["windows"] > 10 and both == again
    assert both["results"] == one["results"] and both["windows"] == one["windows"]

    rc, _, text = run("both", "--window-s", "300")
    errors = [ln for ln in text.splitlines() if "error:" in ln]
    assert rc == 2 and "Traceback" not in text and len(errors) == 1
    assert errors[0].endswith("--window-s 300: td_model_t.onnx was trained on the 15m family "
                              "(900 s windows); backtest a model of the 5m family (300 s windows) "
                              "or leave --window-s out"), errors[0]
    hourly = make_model(tmp_path / "h" / "td_model_h.onnx", list(FEATURES), window_s=3600,
                        meta_over={"feature_contract": str(CONTRACT_VERSION)})
    model = hourly
    rc, _, text = run("both")
    errors = [ln for ln in text.splitlines() if "error:" in ln]
    assert rc == 2 and len(errors) == 1 and errors[0].endswith(
        "the lake holds no windows of the 1h family (3600 s windows), the model's: it holds the "
        "5m family (300 s windows), the 15m family (900 s windows)"), errors[0]
