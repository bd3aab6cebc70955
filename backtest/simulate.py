"""The replay's core on plain in-memory rows: one gate, one fill model (``fills.py``), at most
one entry a window. Apart from the lake side (``replay.py``), so it is tested on its own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from slotml.backtest.fills import FILL_MODELS, FILLS
from slotml.backtest.rows import DecisionRow, WindowInfo
from slotml.serve.gate import DOWN, UP, EntryGate
from slotml.venue import SCALE_MINUTES

POLICIES = ("model", "filters")


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
    if fill not in FILL_MODELS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    model = FILL_MODELS[fill]
    taker = model.taker
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
            prices = {side: model.price(r, side) for side in (UP, DOWN)}
            d = gate.choose(r.vector, r.point, prices=prices, min_order_size=info.min_order_size,
                            fee=info.fee, taker=taker, move_pct=getattr(r, filter_key),
                            minutes_into=SCALE_MINUTES * r.point)
            if not d.enter:
                last_code = d.code
                continue
            price = d.price
            if price is None or not (0.0 < price < 1.0):
                last_code = "no_quote"
                continue
            side = d.outcome
            fee_ps = info.fee.per_share(price, taker)
            filled = model.filled(info, side, price, r.tick_ms)
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
