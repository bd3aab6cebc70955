"""Replay: paper trading over the lake, the gate deciding exactly as the live bot would.

For every resolved window the model never trained or calibrated on, at the model's decision
points in order, the gate decides; the first decision that passes (and can be placed: the side
has a quote) is the window's one entry. Model: the side with the higher p_win. Manual filters:
the side the move favours. Two fill models, both reported (``fills.py``): taker at the
best ask with the market's fee, maker at the best bid filled when a later snapshot's ask reaches
it.

Per policy and fill model: entries, fills, win rate, mean p_win - price, PnL, PnL per unit
staked, worst drawdown; and a PNG of cumulative PnL. One implementation, used by
``slotml replay`` and by train's report (``policy_table``).

The decision rows come from features/'s DuckDB build (the training set's own SQL over the lake;
the online builder matches it, parity tests say so); the core (``simulate.py``) works on plain
in-memory rows and is tested on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from slotml.backtest.fills import FILLS
from slotml.backtest.rows import DecisionRow, WindowInfo
from slotml.backtest.simulate import PolicyResult, simulate
from slotml.errors import UserError
from slotml.serve.gate import EntryGate, FeeSchedule, GateConfig
from slotml.serve.scorer import Scorer
from slotml.venue import parse_time

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- the lake side

def seen_ranges(splits: dict[str, Any]) -> list[tuple[int, int]]:
    """Inclusive [from, to] window-start ranges the model trained or calibrated on."""
    out = []
    for name in ("train", "early_stop", "calibration"):
        s = splits.get(name) or {}
        if s.get("from") is not None and s.get("to") is not None:
            out.append((int(s["from"]), int(s["to"])))
    return out


def load_rows(con: Any, scorer: Scorer, slot_from: int | None, slot_to: int | None,
              ) -> tuple[list[DecisionRow], dict[tuple[str, int, int], WindowInfo], dict[str, int]]:
    """Decision rows (features/ build) and window info for resolved windows in [from, to),
    leaving out every window the model saw. Returns (rows, windows, skipped counts)."""
    from slotml.features.build import build_training_set

    meta = scorer.meta
    table = build_training_set(
        con, meta.decision_points, meta.stats, tolerance=meta.tolerance, lookback=meta.lookback,
        resolved_only=True, window_s=meta.window_s, slot_from=slot_from, slot_to=slot_to,
        float64=True)  # exact prices; the vector is cast to float32 below, as the SQL's FLOAT
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    n = table.num_rows
    X = np.column_stack([np.asarray(cols[f], dtype=np.float64) for f in meta.features]).astype(
        np.float32) if n else np.zeros((0, meta.n_features), dtype=np.float32)
    seen = seen_ranges(meta.splits)
    skipped = {"seen_by_model": 0}

    def opt(name: str, i: int) -> float | None:
        v = cols[name][i] if name in cols else None
        return None if v is None or v != v else float(v)

    rows: list[DecisionRow] = []
    keys: set[tuple[str, int, int]] = set()
    for i in range(n):
        slot = int(cols["slot_ts"][i])
        if any(a <= slot <= b for a, b in seen):
            skipped["seen_by_model"] += 1
            continue
        r = DecisionRow(str(cols["symbol"][i]), int(cols["window_s"][i]), slot,
                        float(cols["point"][i]), int(cols["tick_ms"][i]), X[i],
                        opt("bid_up", i), opt("ask_up", i), opt("bid_down", i), opt("ask_down", i),
                        opt("spot_move_pct", i), opt("dir_move_pct", i))
        rows.append(r)
        keys.add(r.key)
    windows = _window_info(con, keys, meta.window_s, slot_from, slot_to)
    return rows, windows, skipped


def _window_info(con: Any, keys: set[tuple[str, int, int]], window_s: int,
                 slot_from: int | None, slot_to: int | None) -> dict[tuple[str, int, int], WindowInfo]:
    if not keys:
        return {}
    where = ["window_s = ?"]
    params: list[Any] = [int(window_s)]
    if slot_from is not None:
        where.append("slot_ts >= ?")
        params.append(int(slot_from))
    if slot_to is not None:
        where.append("slot_ts < ?")
        params.append(int(slot_to))
    w = " AND ".join(where)
    res = con.execute(
        f"SELECT symbol, window_s, slot_ts, resolved_up, fee_rate, fee_exponent, fee_taker_only, "
        f"min_order_size FROM slot_resolutions WHERE {w} AND resolved_up IS NOT NULL", params).fetchall()
    snaps = con.execute(
        f"SELECT symbol, window_s, slot_ts, tick_ms, ask_up, ask_down FROM slot_snapshots "
        f"WHERE {w} ORDER BY symbol, window_s, slot_ts, tick_ms", params).fetchall()
    later: dict[tuple[str, int, int], tuple[list[int], list, list]] = {}
    for sym, ws, slot, tick, au, ad in snaps:
        k = (sym, int(ws), int(slot))
        if k in keys:
            t = later.setdefault(k, ([], [], []))
            t[0].append(int(tick))
            t[1].append(au)
            t[2].append(ad)
    out = {}
    for sym, ws, slot, up, rate, exp, taker_only, mos in res:
        k = (sym, int(ws), int(slot))
        if k not in keys:
            continue
        ticks, au, ad = later.get(k, ([], [], []))
        fee = FeeSchedule.from_row({"fee_rate": rate, "fee_exponent": exp, "fee_taker_only": taker_only})
        out[k] = WindowInfo(bool(up), fee, None if mos is None else float(mos), ticks, au, ad)
    return out


@dataclass
class ReplayResult:
    results: list[PolicyResult]
    rows: int
    windows: int
    skipped: dict[str, int]
    slot_from: int | None
    slot_to: int | None
    model: str

    def table(self) -> str:
        head = ["policy", "fill", "windows", "entries", "fills", "win rate", "p_win-price",
                "PnL $", "PnL/staked", "max DD $"]
        body = []
        for r in self.results:
            body.append([r.policy, r.fill, str(r.windows), str(r.n_entries), str(r.n_fills),
                         _pct(r.win_rate), _num(r.mean_edge, "+.4f"), f"{r.pnl:+.2f}",
                         _pct(r.pnl_per_staked, signed=True), f"{r.max_drawdown:.2f}"])
        widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
        line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False))  # noqa: E731
        lines = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
        span = f"windows {self.slot_from or 'start'}..{self.slot_to or 'end'}"
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items() if v)
        return (f"replay of {self.model} over {self.windows} resolved windows ({self.rows} "
                f"decision rows, {span}{'; skipped ' + skipped if skipped else ''})\n"
                + "\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "rows": self.rows, "windows": self.windows,
                "skipped": self.skipped, "slot_from": self.slot_from, "slot_to": self.slot_to,
                "results": [r.summary() for r in self.results]}


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def replay(con: Any, scorer: Scorer, config: GateConfig | None = None, *,
           slot_from: int | None = None, slot_to: int | None = None) -> ReplayResult:
    """Model gate and manual filters side by side, both fill models, over [from, to)."""
    # replay decisions are not live decisions: they never go to a --decision-log file
    config = replace(config or GateConfig(), decision_log=None)
    rows, windows, skipped = load_rows(con, scorer, slot_from, slot_to)
    model_gate = EntryGate(config, scorer)
    filter_gate = EntryGate(config, None)
    results = [simulate(rows, windows, g, fill, policy)
               for policy, g in (("model", model_gate), ("filters", filter_gate)) for fill in FILLS]
    return ReplayResult(results, len(rows), len(windows), skipped, slot_from, slot_to,
                        scorer.path.name)


def pnl_png(result: ReplayResult, path: Path) -> Path:
    """Cumulative PnL per policy and fill model, in entry order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for r in result.results:
        cum = r.cumulative()
        ax.plot(np.arange(1, len(cum) + 1), cum, label=f"{r.policy} / {r.fill} ({r.n_entries} entries)",
                linestyle="-" if r.policy == "model" else "--")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("entry #")
    ax.set_ylabel("cumulative PnL ($)")
    ax.set_title(f"replay: {result.model}")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    from slotml.lake import connect

    scorer = Scorer.load(model_path)
    con = connect(lake_dir)
    try:
        return replay(con, scorer, config, slot_from=slot_from, slot_to=slot_to).table()
    finally:
        con.close()


def time_arg(text: str | None) -> int | None:
    """A --from/--to value: epoch seconds or an ISO date/time (UTC when no zone is given)."""
    if text is None or text == "":
        return None
    t = parse_time(text)
    if t is None:
        raise UserError(f"time {text!r}: use epoch seconds or an ISO date like 2026-01-31")
    return int(t)
