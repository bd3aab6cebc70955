"""Replay: paper trading over the lake, the gate deciding exactly as the live bot would.

For every resolved window the model never trained or calibrated on, at the model's decision
points in order, the gate decides; the first decision that passes (and can be placed: the side
has a quote) is the window's one entry. Model: the side with the higher p_win. Manual filters:
the side the move favours. Two fill models, both reported:

- taker: buy at the side's best ask, pay the market's taker fee, always filled;
- maker: a resting bid at the side's best bid, no fee, filled only if a LATER snapshot of the
  window shows that side's best ask at or below the bid.

Per policy and fill model: entries, fills, win rate, mean p_win - price, PnL, PnL per unit
staked, worst drawdown; and a PNG of cumulative PnL. One implementation, used by
``slotml replay`` and by train's report (``policy_table``).

The decision rows come from features/'s DuckDB build (the training set's own SQL over the lake;
the online builder matches it, parity tests say so); the core (``simulate``) works on plain
in-memory rows and is tested on its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slotml.errors import UserError
from slotml.serve.gate import DOWN, UP, EntryGate, FeeSchedule, GateConfig
from slotml.serve.scorer import Scorer

log = logging.getLogger(__name__)

FILLS = ("taker", "maker")
POLICIES = ("model", "filters")


@dataclass
class DecisionRow:
    """One window at one decision point: the contract's vector and the quotes behind it."""

    symbol: str
    window_s: int
    slot_ts: int
    point: float  # fraction of the window
    tick_ms: int  # the decision row's snapshot tick
    vector: np.ndarray  # float32, contract order
    bid_up: float | None
    ask_up: float | None
    bid_down: float | None
    ask_down: float | None
    spot_move_pct: float | None
    dir_move_pct: float | None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.symbol, self.window_s, self.slot_ts)

    def bid(self, side: str) -> float | None:
        return self.bid_up if side == UP else self.bid_down

    def ask(self, side: str) -> float | None:
        return self.ask_up if side == UP else self.ask_down


@dataclass
class WindowInfo:
    """What the market said about one window: outcome, fees, minimum size, later asks."""

    resolved_up: bool
    fee: FeeSchedule = field(default_factory=FeeSchedule)
    min_order_size: float | None = None
    ticks: Sequence[int] = ()  # snapshot ticks, ascending
    asks_up: Sequence[float | None] = ()
    asks_down: Sequence[float | None] = ()

    def maker_filled(self, side: str, bid: float, after_ms: int) -> bool:
        """Whether a later snapshot shows the side's best ask at or below ``bid``."""
        asks = self.asks_up if side == UP else self.asks_down
        for t, a in zip(self.ticks, asks, strict=True):
            if t > after_ms and a is not None and a == a and a <= bid + 1e-12:
                return True
        return False


@dataclass
class Entry:
    policy: str
    fill: str
    symbol: str
    slot_ts: int
    point: float
    tick_ms: int
    outcome: str
    size: float
    price: float
    fee_per_share: float
    p_win: float | None
    filled: bool
    won: bool
    pnl: float  # dollars: size x (payoff - price - fee) when filled, else 0

    @property
    def staked(self) -> float:
        return self.size * (self.price + self.fee_per_share) if self.filled else 0.0


@dataclass
class PolicyResult:
    policy: str
    fill: str
    windows: int  # windows considered
    entries: list[Entry]
    reasons: dict[str, int]  # why windows had no entry (the last point's reason code)

    @property
    def n_entries(self) -> int:
        return len(self.entries)

    @property
    def n_fills(self) -> int:
        return sum(e.filled for e in self.entries)

    @property
    def win_rate(self) -> float | None:
        filled = [e for e in self.entries if e.filled]
        return sum(e.won for e in filled) / len(filled) if filled else None

    @property
    def mean_edge(self) -> float | None:
        """Mean p_win - price over entries (model only: the filters have no p_win)."""
        xs = [e.p_win - e.price for e in self.entries if e.p_win is not None]
        return sum(xs) / len(xs) if xs else None

    @property
    def pnl(self) -> float:
        return sum(e.pnl for e in self.entries)

    @property
    def staked(self) -> float:
        return sum(e.staked for e in self.entries)

    @property
    def pnl_per_staked(self) -> float | None:
        s = self.staked
        return self.pnl / s if s > 0 else None

    def cumulative(self) -> np.ndarray:
        ordered = sorted(self.entries, key=lambda e: (e.tick_ms, e.symbol))
        return np.cumsum([e.pnl for e in ordered]) if ordered else np.zeros(0)

    @property
    def max_drawdown(self) -> float:
        """Worst peak-to-trough fall of cumulative PnL (dollars, >= 0), starting from 0."""
        cum = np.concatenate([[0.0], self.cumulative()])
        return float(np.max(np.maximum.accumulate(cum) - cum)) if len(cum) else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "fill": self.fill, "windows": self.windows,
            "entries": self.n_entries, "fills": self.n_fills, "win_rate": self.win_rate,
            "mean_p_win_minus_price": self.mean_edge, "pnl": self.pnl, "staked": self.staked,
            "pnl_per_staked": self.pnl_per_staked, "max_drawdown": self.max_drawdown,
            "no_entry_reasons": dict(sorted(self.reasons.items())),
        }


def simulate(rows: Iterable[DecisionRow], windows: dict[tuple[str, int, int], WindowInfo],
             gate: EntryGate, fill: str, policy: str | None = None) -> PolicyResult:
    """Run one gate with one fill model over decision rows (any order); at most one entry per
    window: the first decision point (in time) that passes and has a quote."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    taker = fill == "taker"
    by_window: dict[tuple[str, int, int], list[DecisionRow]] = {}
    for r in rows:
        if r.key in windows:
            by_window.setdefault(r.key, []).append(r)
    entries: list[Entry] = []
    reasons: dict[str, int] = {}
    filter_key = "spot_move_pct" if gate.config.filter_series == "spot" else "dir_move_pct"
    for key in sorted(by_window, key=lambda k: (k[2], k[0], k[1])):
        info = windows[key]
        last_code = "no_rows"
        for r in sorted(by_window[key], key=lambda x: x.point):
            prices = {side: (r.ask(side) if taker else r.bid(side)) for side in (UP, DOWN)}
            d = gate.choose(r.vector, r.point, prices=prices, min_order_size=info.min_order_size,
                            fee=info.fee, taker=taker, move_pct=getattr(r, filter_key),
                            minutes_into=15.0 * r.point)
            if not d.enter:
                last_code = d.code
                continue
            price = d.price
            if price is None or not (0.0 < price < 1.0):
                last_code = "no_quote"
                continue
            side = d.outcome
            fee_ps = info.fee.per_share(price, taker)
            filled = True if taker else info.maker_filled(side, price, r.tick_ms)
            won = (side == UP) == bool(info.resolved_up)
            pnl = d.size * ((1.0 if won else 0.0) - price - fee_ps) if filled else 0.0
            entries.append(Entry(policy or ("model" if gate.uses_model else "filters"), fill,
                                 r.symbol, r.slot_ts, r.point, r.tick_ms, side, d.size, price,
                                 fee_ps, d.p_win, filled, won, pnl))
            break
        else:
            reasons[last_code] = reasons.get(last_code, 0) + 1
    return PolicyResult(policy or ("model" if gate.uses_model else "filters"), fill,
                        len(by_window), entries, reasons)


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


def parse_time(text: str | None) -> int | None:
    """Epoch seconds, or an ISO date/time (UTC when no zone is given)."""
    if text is None or text == "":
        return None
    try:
        v = float(text)
        if math.isfinite(v):
            return int(v)
    except ValueError:
        pass
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"time {text!r}: use epoch seconds or an ISO date like 2026-01-31") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp())
