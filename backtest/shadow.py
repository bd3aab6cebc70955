"""The seam to ground truth: the backtest's maker-queue decisions as shadow orders, and how far
the backtest's fills are from the fills a venue (the sim's batch shadow-order API over the same
backfilled history) reports for them.

``shadow_orders(result)`` turns a ``PolicyResult``'s entries into ``ShadowOrder`` rows (token,
outcome, limit price, size, placement and cancel times: everything a matching engine needs).
Whatever answers them (``ShadowVenue``: the sim's API, or a recorded answer) returns
``TruthFill`` rows; ``compare`` gives the backtest's and the truth's fill rate and PnL per
staked side by side, and their errors (the acceptance: fill rate within 5 points, PnL per
staked within 1 point, pooled over seeds: pool by adding each seed's ``tally``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from slotml.backtest.simulate import Entry, PolicyResult


@dataclass(frozen=True)
class ShadowOrder:
    order_id: str
    symbol: str
    window_s: int
    slot_ts: int
    outcome: str  # Up | Down
    token_id: str | None
    price: float  # limit (a BUY)
    size: float  # shares
    placed_ms: int  # when it joins the book (decision + latency)
    cancel_ms: int  # when it is withdrawn
    won: bool  # the window's outcome for this side (to price the truth's fills)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TruthFill:
    order_id: str
    shares: float  # filled (0 = not filled)
    price: float  # average fill price


class ShadowVenue(Protocol):
    def fills(self, orders: Sequence[ShadowOrder]) -> Sequence[TruthFill]: ...


def _order_id(e: Entry) -> str:
    return f"{e.policy}:{e.symbol}:{e.slot_ts}:{e.outcome}"


def shadow_orders(result: PolicyResult, window_s: int = 900) -> list[ShadowOrder]:
    """The resting orders of a maker result (entries without a placement time are skipped)."""
    out = []
    for e in result.entries:
        if e.placed_ms is None or e.cancel_ms is None:
            continue
        limit = e.price  # a maker fills at its limit
        out.append(ShadowOrder(_order_id(e), e.symbol, window_s, e.slot_ts, e.outcome, e.token_id, limit,
                               e.size, e.placed_ms, e.cancel_ms, e.won))
    return out


def tally(results: Sequence[PolicyResult], truth: Sequence[TruthFill]) -> dict[str, float]:
    """The sums ``compare`` divides: orders, fills and PnL / staked of the backtest and of the
    truth over the same orders. Pool several histories by adding their tallies (order ids are
    unique within one history only, so never pool by concatenating two histories' fills)."""
    got = {t.order_id: t for t in truth}
    n = bt_fills = tr_fills = 0
    bt_pnl = bt_staked = tr_pnl = tr_staked = 0.0
    for r in results:
        for e in r.entries:
            n += 1
            if e.filled:
                bt_fills += 1
                bt_pnl += e.pnl
                bt_staked += e.staked
            t = got.get(_order_id(e))
            if t is not None and t.shares > 0:
                tr_fills += 1
                tr_pnl += t.shares * ((1.0 if e.won else 0.0) - t.price)
                tr_staked += t.shares * t.price
    return {"orders": n, "fills": bt_fills, "truth_fills": tr_fills, "pnl": bt_pnl,
            "staked": bt_staked, "truth_pnl": tr_pnl, "truth_staked": tr_staked}


def rates(t: dict[str, float]) -> dict[str, Any]:
    """Fill rates, PnL per staked and the backtest's errors against the truth, from a tally."""
    n = t["orders"]
    fr_bt = t["fills"] / n if n else None
    fr_tr = t["truth_fills"] / n if n else None
    ps_bt = t["pnl"] / t["staked"] if t["staked"] > 0 else None
    ps_tr = t["truth_pnl"] / t["truth_staked"] if t["truth_staked"] > 0 else None
    return {"orders": int(n), "fill_rate": fr_bt, "truth_fill_rate": fr_tr,
            "fill_rate_error_pp": None if fr_bt is None or fr_tr is None else (fr_bt - fr_tr) * 100,
            "pnl_per_staked": ps_bt, "truth_pnl_per_staked": ps_tr,
            "pnl_per_staked_error_pt": None if ps_bt is None or ps_tr is None else (ps_bt - ps_tr) * 100}


def pooled(tallies: Sequence[dict[str, float]]) -> dict[str, float]:
    """The tally of several histories (the acceptance pools seeds this way)."""
    keys = ("orders", "fills", "truth_fills", "pnl", "staked", "truth_pnl", "truth_staked")
    return {k: sum(t[k] for t in tallies) for k in keys}


def compare(results: Sequence[PolicyResult], truth: Sequence[TruthFill]) -> dict[str, Any]:
    """Backtest vs truth over the same orders (pooled over ``results`` of ONE history). The
    orders are the policy's decisions, the same under every maker fill model (one decision
    pass), so a maker-optimistic result compares against the same truth."""
    return rates(tally(results, truth))
