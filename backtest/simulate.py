"""The backtest's core on plain in-memory rows: one policy, one fill model (``fills.py``), at
most one entry a window. Apart from the lake side (``replay.py``), so it is tested on its own.

Every entry records the gate's edge (p_win - price - fee), what it filled, and its markouts:
the side's mid 10 s and 60 s after the fill and the payoff at resolution, minus the fill price
(per share; negative = the market moved against the fill: adverse selection), with the minute
into the window at which it filled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from slotml.backtest.fills import FillModel, make_fill
from slotml.backtest.rows import DecisionRow, WindowInfo
from slotml.serve.gate import DOWN, UP
from slotml.venue import SCALE_MINUTES

MARKOUT_S = (10, 60)


@dataclass(slots=True)
class Entry:
    policy: str
    fill: str
    symbol: str
    slot_ts: int
    point: float
    tick_ms: int
    outcome: str
    size: float  # shares ordered
    price: float  # limit (maker) or average fill price (taker)
    fee_per_share: float
    p_win: float | None
    filled: bool
    won: bool
    pnl: float  # dollars: shares x (payoff - price - fee + rebate) when filled, else 0
    shares: float = 0.0  # shares filled
    rebate_per_share: float = 0.0
    edge: float | None = None  # the gate's p_win - price - fee at the decision
    fill_ms: int | None = None
    minute: int | None = None  # minutes into the window at the fill
    markout_10s: float | None = None
    markout_60s: float | None = None
    markout_res: float | None = None
    placed_ms: int | None = None  # a resting order's life (maker-queue): the shadow-order seam
    cancel_ms: int | None = None
    token_id: str | None = None

    @property
    def staked(self) -> float:
        return self.shares * (self.price + self.fee_per_share) if self.filled else 0.0

    @property
    def day(self) -> int:
        return self.slot_ts // 86400


@dataclass
class PolicyResult:
    policy: str
    fill: str
    windows: int  # windows considered
    entries: list[Entry]
    reasons: dict[str, int]  # why windows had no entry (the last point's reason code)
    excluded: dict[str, int] | None = None  # windows left out by the fill model (tape gaps)

    @property
    def n_entries(self) -> int:
        return len(self.entries)

    @property
    def n_fills(self) -> int:
        return sum(e.filled for e in self.entries)

    @property
    def fill_rate(self) -> float | None:
        return self.n_fills / self.n_entries if self.entries else None

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
    def rebates(self) -> float:
        return sum(e.shares * e.rebate_per_share for e in self.entries if e.filled)

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

    def markouts(self) -> dict[str, float | None]:
        """Share-weighted mean markouts of the fills (per share)."""
        out: dict[str, float | None] = {}
        for k in ("markout_10s", "markout_60s", "markout_res"):
            xs = [(getattr(e, k), e.shares) for e in self.entries if e.filled and getattr(e, k) is not None]
            w = sum(s for _, s in xs)
            out[k] = sum(x * s for x, s in xs) / w if w > 0 else None
        return out

    def markouts_by_minute(self) -> dict[int, dict[str, float | int | None]]:
        """Mean markouts (10 s, 60 s, resolution) and fill count, by minute into the window."""
        by: dict[int, list[Entry]] = {}
        for e in self.entries:
            if e.filled and e.minute is not None:
                by.setdefault(e.minute, []).append(e)
        out = {}
        for m in sorted(by):
            es = by[m]
            row: dict[str, float | int | None] = {"fills": len(es)}
            for k in ("markout_10s", "markout_60s", "markout_res"):
                xs = [getattr(e, k) for e in es if getattr(e, k) is not None]
                row[k] = sum(xs) / len(xs) if xs else None
            out[m] = row
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "fill": self.fill, "windows": self.windows,
            "entries": self.n_entries, "fills": self.n_fills, "fill_rate": self.fill_rate,
            "win_rate": self.win_rate, "mean_p_win_minus_price": self.mean_edge, "pnl": self.pnl,
            "staked": self.staked, "rebates": self.rebates, "pnl_per_staked": self.pnl_per_staked,
            "max_drawdown": self.max_drawdown, "markouts": self.markouts(),
            "markouts_by_minute": {str(k): v for k, v in self.markouts_by_minute().items()},
            "no_entry_reasons": dict(sorted(self.reasons.items())),
            "excluded_windows": dict(self.excluded or {}),
        }


@dataclass(frozen=True)
class Grouped:
    """Decision rows grouped by window, windows in time order, points in order: built once and
    shared by every policy x fill model of a backtest."""

    windows: list[tuple[tuple[str, int, int], WindowInfo, list[DecisionRow]]]


def group(rows: Iterable[DecisionRow], windows: dict[tuple[str, int, int], WindowInfo]) -> Grouped:
    by_window: dict[tuple[str, int, int], list[DecisionRow]] = {}
    for r in rows:
        if r.key in windows:
            by_window.setdefault(r.key, []).append(r)
    return Grouped([(k, windows[k], sorted(by_window[k], key=lambda x: x.point))
                    for k in sorted(by_window, key=lambda k: (k[2], k[0], k[1]))])


def simulate(rows: Iterable[DecisionRow] | Grouped, windows: dict[tuple[str, int, int], WindowInfo],
             gate: Any, fill: str | FillModel, policy: str | None = None) -> PolicyResult:
    """Run one policy with one fill model over decision rows (any order, or ``group``ed); at
    most one entry per window: the first decision point (in time) that passes and has a quote.
    A fill model that needs the tape leaves out windows whose tape has a gap (``excluded``)."""
    model = make_fill(fill) if isinstance(fill, str) else fill
    return simulate_fills(rows, windows, gate, [model], policy)[0]


def simulate_fills(rows: Iterable[DecisionRow] | Grouped,
                   windows: dict[tuple[str, int, int], WindowInfo], gate: Any,
                   models: list[FillModel], policy: str | None = None) -> list[PolicyResult]:
    """``simulate`` for several fill models that quote alike (all takers at the ask, or all
    makers at the bid): the policy decides once per window, each model fills on its own."""
    if len({m.taker for m in models}) > 1:
        raise ValueError("simulate_fills: the fill models must all be takers or all makers")
    first = models[0]
    taker = first.taker
    name = policy or ("model" if getattr(gate, "uses_model", False) else "filters")
    grouped = rows if isinstance(rows, Grouped) else group(rows, windows)
    entries: list[list[Entry]] = [[] for _ in models]
    reasons: list[dict[str, int]] = [{} for _ in models]
    excluded = [{"tape_gap": 0, "no_tape": 0} for _ in models]
    considered = [0] * len(models)
    cfg = getattr(gate, "config", None)
    filter_key = "dir_move_pct" if getattr(cfg, "filter_series", "spot") == "settlement" else "spot_move_pct"
    for _key, info, window_rows in grouped.windows:
        active = []
        for j, m in enumerate(models):
            if m.needs_tape and (info.tape is None or info.tape_gap):
                excluded[j]["tape_gap" if info.tape_gap else "no_tape"] += 1
            else:
                considered[j] += 1
                active.append(j)
        if not active:
            continue
        last_code = "no_rows"
        for r in window_rows:
            prices = {UP: first.price(r, UP), DOWN: first.price(r, DOWN)}
            d = gate.choose(r.vector, r.point, prices=prices, min_order_size=info.min_order_size,
                            fee=info.fee, taker=taker, move_pct=getattr(r, filter_key),
                            minutes_into=SCALE_MINUTES * r.point,
                            now=r.slot_ts + r.point * r.window_s)  # the decision instant: expiry
            if not d.enter:
                last_code = d.code
                continue
            price = d.price
            if price is None or not (0.0 < price < 1.0):
                last_code = "no_quote"
                continue
            for j in active:
                entries[j].append(_execute(models[j], name, r, info, d, price, taker))
            break
        else:
            for j in active:
                reasons[j][last_code] = reasons[j].get(last_code, 0) + 1
    return [PolicyResult(name, m.name, considered[j], entries[j], reasons[j],
                         {k: v for k, v in excluded[j].items() if v})
            for j, m in enumerate(models)]


def _execute(model: FillModel, name: str, r: DecisionRow, info: WindowInfo, d: Any,
             price: float, taker: bool) -> Entry:
    """One entry: the fill model's fill, its PnL and markouts."""
    side = d.outcome
    won = (side == UP) == bool(info.resolved_up)
    f = model.execute(r, info, side, price, d.size)
    e = Entry(name, model.name, r.symbol, r.slot_ts, r.point, r.tick_ms, side, d.size,
              price, info.fee.per_share(price, taker), d.p_win, f is not None, won, 0.0,
              edge=d.edge)
    if hasattr(model, "window"):
        e.placed_ms, e.cancel_ms = model.window(r, info)
    e.token_id = info.up_token_id if side == UP else info.down_token_id
    if f is not None:
        payoff = 1.0 if won else 0.0
        e.shares, e.price, e.fee_per_share = f.shares, f.price, f.fee_per_share
        e.rebate_per_share, e.fill_ms = f.rebate_per_share, f.ms
        e.pnl = f.shares * (payoff - f.price - f.fee_per_share + f.rebate_per_share)
        e.minute = int((f.ms - r.slot_ts * 1000) // 60_000)
        m10, m60 = info.mids_at(side, f.ms + MARKOUT_S[0] * 1000, f.ms + MARKOUT_S[1] * 1000)
        e.markout_10s = None if m10 is None else m10 - f.price
        e.markout_60s = None if m60 is None else m60 - f.price
        e.markout_res = payoff - f.price
    return e
