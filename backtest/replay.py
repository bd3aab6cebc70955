"""The backtest's lake side: decision rows, window info and trade tapes from the lake, then every
policy (``policies.py``) under every fill model (``fills.py``), and the verdict (``verdict.py``).

For every resolved window the model never trained, calibrated or chose its policy on, at the
model's decision points in order, the policy decides exactly as the live bot would; the first
decision that passes (and can be placed: the side has a quote) is the window's one entry. The
backtest reads only the lake: snapshots (tops and the five-level depth at the decision tick),
resolutions (outcome, fee schedule, end), ``slot_trades`` (the tape maker-queue needs) and
``slot_tape_gaps`` (windows with an incomplete tape are left out and counted).

One implementation, used by ``slotml backtest`` (alias ``slotml replay``), by train's report
(``policy_table``) and by train's policy-slice threshold search (``choose_policy``). The
decision rows come from features/'s DuckDB build (the training set's own SQL over the lake;
the online builder matches it, parity tests say so); the core (``simulate.py``) works on plain
in-memory rows and is tested on its own.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from slotml.backtest.fills import (
    DEFAULT_CANCEL_BEFORE_S,
    DEFAULT_LATENCY_MS,
    FILLS,
    make_fill,
)
from slotml.backtest.policies import POLICIES, Precomputed, make_policy
from slotml.backtest.rows import TOUCH_COLUMNS, DecisionRow, Tape, WindowInfo
from slotml.backtest.simulate import PolicyResult, group, simulate_fills
from slotml.backtest.verdict import BacktestResult
from slotml.errors import UserError
from slotml.serve.gate import EntryGate, FeeSchedule, GateConfig
from slotml.serve.guards import guard_rates
from slotml.serve.scorer import Scorer
from slotml.venue import family_text, parse_time

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- the lake side

def seen_ranges(splits: dict[str, Any]) -> list[tuple[int, int]]:
    """Inclusive [from, to] window-start ranges the model trained or calibrated on."""
    out = []
    for name in ("train", "early_stop", "calibration", "policy"):
        s = splits.get(name) or {}
        if s.get("from") is not None and s.get("to") is not None:
            out.append((int(s["from"]), int(s["to"])))
    return out


def load_rows(con: Any, scorer: Scorer, slot_from: int | None, slot_to: int | None,
              tape: bool = True, skip_seen: bool = True) -> tuple[list[DecisionRow], dict[tuple[str, int, int], WindowInfo], dict[str, int]]:
    """Decision rows (features/ build) and window info for resolved windows in [from, to),
    leaving out every window the model saw. Returns (rows, windows, skipped counts)."""
    from slotml.features.build import build_training_set

    meta = scorer.meta
    table = build_training_set(
        con, meta.decision_points, meta.stats, tolerance=meta.tolerance, lookback=meta.lookback,
        resolved_only=True, window_s=meta.window_s, slot_from=slot_from, slot_to=slot_to,
        float64=True,  # exact prices; the vector is cast to float32 below, as the SQL's FLOAT
        contract=meta.feature_contract)  # the model's own asset table
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    n = table.num_rows
    X = np.column_stack([np.asarray(cols[f], dtype=np.float64) for f in meta.features]).astype(
        np.float32) if n else np.zeros((0, meta.n_features), dtype=np.float32)
    seen = seen_ranges(meta.splits) if skip_seen else []
    skipped = {"seen_by_model": 0}

    def opt(name: str) -> list[float | None]:
        if name not in cols:
            return [None] * n
        return [None if v != v else v for v in np.asarray(cols[name], dtype=np.float64).tolist()]

    names = ("bid_up", "ask_up", "bid_down", "ask_down", "spot_move_pct", "dir_move_pct")
    quotes = list(zip(*(opt(c) for c in names), strict=True)) if n else []
    slots = np.asarray(cols["slot_ts"]).astype(np.int64).tolist() if n else []
    ticks = np.asarray(cols["tick_ms"]).astype(np.int64).tolist() if n else []
    wss = np.asarray(cols["window_s"]).astype(np.int64).tolist() if n else []
    pts = np.asarray(cols["point"], dtype=np.float64).tolist() if n else []
    syms = [str(x) for x in cols["symbol"]] if n else []
    rows: list[DecisionRow] = []
    keys: set[tuple[str, int, int]] = set()
    for i in range(n):
        slot = slots[i]
        if seen and any(a <= slot <= b for a, b in seen):
            skipped["seen_by_model"] += 1
            continue
        r = DecisionRow(syms[i], wss[i], slot, pts[i], ticks[i], X[i], *quotes[i])
        rows.append(r)
        keys.add(r.key)
    depth = _depth(con, [(r.symbol, r.window_s, r.slot_ts, r.tick_ms) for r in rows]) if rows else {}
    for r in rows:
        d = depth.get((r.symbol, r.window_s, r.slot_ts, r.tick_ms))
        if d is not None:
            r.ask_depth_up, r.ask_depth_down, r.bid_size_up, r.bid_size_down = d
    windows = _window_info(con, keys, meta.window_s, slot_from, slot_to, tape=tape)
    return rows, windows, skipped


def _where(window_s: int, slot_from: int | None, slot_to: int | None) -> tuple[str, list[Any]]:
    where = ["window_s = ?"]
    params: list[Any] = [int(window_s)]
    if slot_from is not None:
        where.append("slot_ts >= ?")
        params.append(int(slot_from))
    if slot_to is not None:
        where.append("slot_ts < ?")
        params.append(int(slot_to))
    return " AND ".join(where), params


def _selectable(con: Any, table: str, column: str = "1") -> bool:
    """Whether the lake has ``table`` (and ``column`` in it): older lakes lack the tape, the
    depth columns (schema 2) or the touch range (schema 5)."""
    try:
        con.execute(f"SELECT {column} FROM {table} LIMIT 0").fetchall()
        return True
    except Exception:  # noqa: BLE001 - duckdb's CatalogException / BinderException
        return False


def has_prints(con: Any) -> bool:
    """Whether the lake holds any trade prints (maker-queue needs them)."""
    return _selectable(con, "slot_trades") and \
        con.execute("SELECT count(*) FROM (SELECT 1 FROM slot_trades LIMIT 1)").fetchall()[0][0] > 0


def _depth(con: Any, keys: list[tuple[str, int, int, int]]) -> dict[tuple[str, int, int, int], tuple]:
    """Ask depth (five levels) and best-bid sizes of both tokens at the decision ticks."""
    if not _selectable(con, "slot_snapshots", "ask_up_l1"):
        return {}
    import pyarrow as pa

    t = pa.table({"symbol": [k[0] for k in keys], "window_s": [k[1] for k in keys],
                  "slot_ts": [k[2] for k in keys], "tick_ms": [k[3] for k in keys]})
    con.register("_decision_ticks", t)
    try:
        lv = range(1, 6)
        sel = ", ".join([f"s.ask_{tok}_l{i}, s.ask_size_{tok}_l{i}" for tok in ("up", "down") for i in lv]
                        + ["s.bid_size_up_l1", "s.bid_size_down_l1"])
        rows = con.execute(
            f"SELECT d.symbol, d.window_s, d.slot_ts, d.tick_ms, {sel} FROM _decision_ticks d "
            f"JOIN slot_snapshots s ON s.symbol = d.symbol AND s.window_s = d.window_s "
            f"AND s.slot_ts = d.slot_ts AND s.tick_ms = d.tick_ms").fetchall()
    finally:
        con.unregister("_decision_ticks")
    out = {}
    for r in rows:
        v = r[4:]
        out[(r[0], int(r[1]), int(r[2]), int(r[3]))] = (_levels(v, 0), _levels(v, 10), v[20], v[21])
    return out


def _levels(v: tuple, off: int) -> tuple[tuple[float, float], ...]:
    """(price, size) pairs of five levels starting at ``off`` (empty levels left out)."""
    return tuple((float(v[off + 2 * i]), float(v[off + 2 * i + 1])) for i in range(5)
                 if v[off + 2 * i] is not None and v[off + 2 * i + 1] is not None)


def _floats(x: Any) -> np.ndarray:
    """A fetched column as float64, NULL as NaN."""
    return np.ma.filled(np.ma.asarray(x).astype(np.float64), np.nan)


def _split_windows(t: dict[str, Any], keys: set[tuple[str, int, int]],
                   columns: tuple[str, ...]) -> dict[tuple[str, int, int], tuple[np.ndarray, ...]]:
    """Per-window slices of fetched columns ordered by (symbol, window_s, slot_ts, ...)."""
    if len(t["slot_ts"]) == 0:
        return {}
    sym = np.asarray(t["symbol"]).astype(str)
    ws = np.asarray(t["window_s"]).astype(np.int64)
    slot = np.asarray(t["slot_ts"]).astype(np.int64)
    cols = [np.asarray(t[c]).astype(np.int64) if c in ("tick_ms", "ts_ms") else _floats(t[c])
            for c in columns]
    change = np.flatnonzero((slot[1:] != slot[:-1]) | (sym[1:] != sym[:-1]) | (ws[1:] != ws[:-1])) + 1
    bounds = np.concatenate([[0], change, [len(slot)]]).tolist()
    out = {}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        k = (str(sym[a]), int(ws[a]), int(slot[a]))
        if k in keys:
            out[k] = tuple(c[a:b] for c in cols)
    return out


def _tapes(con: Any, keys: set[tuple[str, int, int]], w: str, params: list[Any]) -> dict:
    """Each window's prints as a ``Tape`` (both tokens, time order)."""
    if not _selectable(con, "slot_trades"):
        return {}
    t = con.execute(
        f"SELECT symbol, window_s, slot_ts, ts_ms, outcome = 'Up' AS up, price, size, "
        f"side = 'BUY' AS buy FROM slot_trades WHERE {w} "
        f"ORDER BY symbol, window_s, slot_ts, ts_ms, token_id, occurrence", params).fetchnumpy()
    if len(t["ts_ms"]) == 0:
        return {}
    col = lambda name, dt: np.asarray(t[name]).astype(dt)  # noqa: E731
    sym = np.asarray(t["symbol"]).astype(str)
    ws, slot, ts = col("window_s", np.int64), col("slot_ts", np.int64), col("ts_ms", np.int64)
    up, px, sz, buy = col("up", bool), col("price", np.float64), col("size", np.float64), col("buy", bool)
    change = np.flatnonzero((slot[1:] != slot[:-1]) | (sym[1:] != sym[:-1]) | (ws[1:] != ws[:-1])) + 1
    bounds = np.concatenate([[0], change, [len(ts)]])
    out = {}
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        k = (str(sym[a]), int(ws[a]), int(slot[a]))
        if k in keys:
            out[k] = Tape(ts[a:b], up[a:b], px[a:b], sz[a:b], buy[a:b])
    return out


def _gaps(con: Any, w: str, params: list[Any]) -> set[tuple[str, int, int]]:
    """Windows whose tape has a recorded gap overlapping them."""
    if not _selectable(con, "slot_tape_gaps"):
        return set()
    rows = con.execute(
        f"SELECT DISTINCT symbol, window_s, slot_ts FROM slot_tape_gaps WHERE {w} "
        f"AND from_ts < slot_ts + window_s AND to_ts >= slot_ts", params).fetchall()
    return {(s, int(ws), int(t)) for s, ws, t in rows}


def _window_info(con: Any, keys: set[tuple[str, int, int]], window_s: int,
                 slot_from: int | None, slot_to: int | None,
                 tape: bool = True) -> dict[tuple[str, int, int], WindowInfo]:
    if not keys:
        return {}
    w, params = _where(window_s, slot_from, slot_to)
    res = con.execute(
        f"SELECT symbol, window_s, slot_ts, resolved_up, fee_rate, fee_exponent, fee_taker_only, "
        f"min_order_size, end_ts, up_token_id, down_token_id FROM slot_resolutions WHERE {w} AND resolved_up IS NOT NULL",
        params).fetchall()
    touch = TOUCH_COLUMNS if _selectable(con, "slot_snapshots", TOUCH_COLUMNS[0]) else ()
    snaps = con.execute(
        f"SELECT symbol, window_s, slot_ts, tick_ms, ask_up, ask_down, bid_up, bid_down"
        f"{''.join(', ' + c for c in touch)} "
        f"FROM slot_snapshots WHERE {w} ORDER BY symbol, window_s, slot_ts, tick_ms", params).fetchnumpy()
    later = _split_windows(snaps, keys, ("tick_ms", "ask_up", "ask_down", "bid_up", "bid_down", *touch))
    tapes = _tapes(con, keys, w, params) if tape else {}
    gaps = _gaps(con, w, params) if tape else set()
    out = {}
    for sym, ws, slot, up, rate, exp, taker_only, mos, end_ts, up_tok, down_tok in res:
        k = (sym, int(ws), int(slot))
        if k not in keys:
            continue
        ticks, au, ad, bu, bd, *tr = later.get(k, ((),) * (5 + len(touch)))
        tr = dict(zip(touch, tr, strict=True))
        fee = FeeSchedule.from_row({"fee_rate": rate, "fee_exponent": exp, "fee_taker_only": taker_only})
        end_ms = int(end_ts) * 1000 if end_ts is not None else (int(slot) + int(ws)) * 1000
        empty = Tape(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0), np.zeros(0), np.zeros(0, bool))
        out[k] = WindowInfo(bool(up), fee, None if mos is None else float(mos), ticks, au, ad,
                            bu, bd, end_ms, tapes.get(k, empty) if tape else None, k in gaps,
                            up_tok, down_tok, tr.get("ask_up_low", ()), tr.get("ask_down_low", ()),
                            tr.get("bid_up_high", ()), tr.get("bid_down_high", ()))
    return out


def replay(con: Any, scorer: Scorer, config: GateConfig | None = None, *,
           slot_from: int | None = None, slot_to: int | None = None,
           policies: tuple[str, ...] = POLICIES, fills: tuple[str, ...] = FILLS,
           latency_ms: int = DEFAULT_LATENCY_MS, cancel_before_s: float = DEFAULT_CANCEL_BEFORE_S,
           n_boot: int = 2000, seed: int = 0) -> BacktestResult:
    """Every policy under every fill model over [from, to), and the verdict. A fill model that
    needs the trade tape is reported unavailable (with why) on a lake without prints; the
    others still run."""
    # backtest decisions are not live decisions: they never go to a --decision-log file.
    # Without a config (train's report, the challenger comparison) the model itself is judged:
    # its age is not, so expiry is ignored there; `slotml backtest` passes the bot's options.
    config = replace(config or GateConfig(on_expired="ignore"), decision_log=None)
    needs_tape = any(make_fill(f).needs_tape for f in fills)
    prints = has_prints(con) if needs_tape else False
    rows, windows, skipped = load_rows(con, scorer, slot_from, slot_to, tape=prints)
    results: list[PolicyResult] = []
    unavailable: dict[str, str] = {}
    scored = Precomputed(scorer, [r.vector for r in rows])
    grouped = group(rows, windows)
    models = []
    for fill in fills:
        model = make_fill(fill, latency_ms=latency_ms, cancel_before_s=cancel_before_s)
        if model.needs_tape and not prints:
            unavailable[fill] = ("the lake has no slot_trades (no trade tape): record prints with "
                                 "the collector (or a sim backfill that writes them) and export again")
        else:
            models.append(model)
    by_cell: dict[tuple[str, str], PolicyResult] = {}
    for pol in policies:
        gate = make_policy(pol, config, scored)
        for taker in (True, False):  # one decision pass per quoting side, shared by its models
            alike = [m for m in models if m.taker == taker]
            if alike:
                for r in simulate_fills(grouped, windows, gate, alike, pol):
                    by_cell[(pol, r.fill)] = r
    results = [by_cell[(pol, m.name)] for m in models for pol in policies]
    days = sorted({r.slot_ts // 86400 for r in rows if r.key in windows})
    gate = EntryGate(replace(config, policy="edge"), scorer)
    kept = [r for r in rows if r.key in windows]
    guards = guard_rates(scorer, gate.guards,
                         np.stack([r.vector for r in kept]) if kept else np.zeros((0, scorer.meta.n_features)),
                         np.array([r.slot_ts + r.point * r.window_s for r in kept], dtype=np.float64))
    return BacktestResult(results, len(rows), len(windows), skipped, slot_from, slot_to,
                          scorer.path.name, days, unavailable, gate.policy(), n_boot, seed, guards,
                          window_s=scorer.window_s)


def check_family(con: Any, scorer: Scorer, wanted: int | None = None) -> int:
    """The family to backtest: the model's (its file records the window length it was trained
    on, and its features mean nothing on another). ``UserError`` in one line for a ``wanted``
    (``--window-s``) that is not the model's, or a lake holding none of its windows."""
    w = scorer.window_s
    if wanted is not None and int(wanted) != w:
        raise UserError(f"--window-s {wanted}: {scorer.path.name} was trained on {family_text(w)}; "
                        f"backtest a model of {family_text(int(wanted))} or leave --window-s out")
    fams = [int(r[0]) for r in con.execute(
        "SELECT DISTINCT window_s FROM slot_snapshots ORDER BY 1").fetchall()]
    if w not in fams:
        held = ", ".join(family_text(f) for f in fams) or "no snapshots at all"
        raise UserError(f"the lake holds no windows of {family_text(w)}, the model's: it holds {held}")
    return w


def default_range(scorer: Scorer) -> tuple[int | None, int | None]:
    """Without --from/--to: the windows after everything the model saw (its test days, and later)."""
    seen = seen_ranges(scorer.meta.splits)
    if not seen:
        return None, None
    return max(b for _, b in seen) + scorer.window_s, None


def policy_table(model_path: Path | str, lake_dir: Path | str | None = None,
                 slot_from: int | None = None, slot_to: int | None = None,
                 config: GateConfig | None = None) -> str:
    """train's report hook: the replay table over [from, to) of the lake, as text."""
    return policy_report(model_path, lake_dir, slot_from, slot_to, config)[0]


def policy_report(model_path: Path | str, lake_dir: Path | str | None = None,
                  slot_from: int | None = None, slot_to: int | None = None,
                  config: GateConfig | None = None) -> tuple[str, dict[str, Any]]:
    """The replay over [from, to) as (its text table, its cells as numbers): per policy x fill
    model entries, fills, PnL, staked and rebates (what a walk-forward period sums)."""
    from slotml.lake import connect

    scorer = Scorer.load(model_path)
    con = connect(lake_dir)
    try:
        res = replay(con, scorer, config, slot_from=slot_from, slot_to=slot_to)
    finally:
        con.close()
    cells = [{"policy": r.policy, "fill": r.fill, "windows": r.windows, "entries": r.n_entries,
              "fills": r.n_fills, "pnl": r.pnl, "staked": r.staked, "rebates": r.rebates}
             for r in res.results]
    return res.table(), {"cells": cells, "unavailable": dict(res.unavailable),
                         "days": len(res.days), "windows": res.windows}


def time_arg(text: str | None) -> int | None:
    """A --from/--to value: epoch seconds or an ISO date/time (UTC when no zone is given)."""
    if text is None or text == "":
        return None
    t = parse_time(text)
    if t is None:
        raise UserError(f"time {text!r}: use epoch seconds or an ISO date like 2026-01-31")
    return int(t)
