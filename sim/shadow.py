"""Shadow orders: the true fills of resting orders that were never in the world.

A shadow order rests at a price as if it had joined the queue there; the window's trades
(``World.flow``, the same the recorder sees as prints) fill it in time priority. It changes
nothing the recorder sees. The live sim's order endpoint (``services/orders.py``) and the batch API
below call the same ``order_fills``, so a paper-trading bot and a backtest check agree.

Batch API (what ``tests/bench`` and the backtest's fill-model validation call)::

    from slotml.sim.shadow import ShadowOrder, fills_over_history
    fills = fills_over_history(cfg, orders)        # cfg: the SimConfig the history was backfilled with
    # orders: Sequence[ShadowOrder(token, price, size, placed_at, cancel_at, side="BUY", order_id="")]
    #   token: the outcome token id (slot_resolutions.up_token_id / down_token_id);
    #   price: in (0, 1) on the 0.01 tick; size: shares > 0; placed_at / cancel_at: epoch s
    #   (cancel_at = math.inf: rests to the window's end); side: BUY (a bid) or SELL (an ask).
    # returns: list (one per order, same order) of lists of ShadowFill(t, size, price, through)
    #   t: epoch s of the fill; price: the order's price; through: the book traded through it.

How a shadow order fills (one book in Up cents, as ``sim/flow.py``; a Down order at q is the Up
order of the other side at 100 - q):
- it is live from ``placed_at`` plus a latency jitter until ``cancel_at`` plus another, and only
  while the window trades (its start to its end);
- the queue ahead of it is the displayed size at its price when it arrives (0 if it improves the
  best), less ``CANCEL_AHEAD_SHARE`` that cancels before it trades, plus ``HIDDEN_AHEAD_SHARE``
  that arrived at its price unseen; when the displayed size later drops below the queue ahead,
  the cancels were ahead of it;
- a trade at its price fills it once the queue ahead is gone; a trade at a worse price for the
  taker's counterparty (the order would have been first) fills it directly; a book that moves
  through its price (the best ask at or below a bid) fills what is left.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from slotml.sim.config import SimConfig
from slotml.sim.flow import BOOK_LEAD_MS, DOWN_ASK, DOWN_BID, UP_ASK, UP_BID, book_index
from slotml.sim.maker import LEVELS
from slotml.sim.world import World

# ---- what a recorder cannot see (the backtest's fill model cannot be exact by construction) ----
CANCEL_AHEAD_SHARE = 0.3  # of the queue ahead at arrival, cancels before it trades (makers re-quote
#                           every few seconds as the price moves; hftbacktest's probabilistic queue)
HIDDEN_AHEAD_SHARE = 0.1  # extra size at its price, ahead of it, that no published book showed
#                           (orders placed and queued between two 1 s publications)
LATENCY_MEDIAN_S = 0.075  # order entry / cancel latency, log-normal (75 ms: NautilusTrader's setting)
LATENCY_SIGMA = 0.5  # its log-scale spread (p5 ~33 ms, p95 ~170 ms)


@dataclass(frozen=True)
class ShadowOrder:
    token: str
    price: float
    size: float
    placed_at: float
    cancel_at: float = math.inf
    side: str = "BUY"
    order_id: str = ""


@dataclass(frozen=True)
class ShadowFill:
    t: float
    size: float
    price: float
    through: bool = False  # the book moved through the order's price


def check_order(world: World, o: ShadowOrder) -> str | None:
    """Why an order is refused (one line), or None."""
    if not isinstance(o.price, int | float) or not 0 < o.price < 1 or not math.isfinite(o.price):
        return "price must be in (0, 1)"
    if abs(o.price * 100 - round(o.price * 100)) > 1e-6:
        return "price must be on the 0.01 tick"
    if not isinstance(o.size, int | float) or not math.isfinite(o.size) or o.size <= 0:
        return "size must be > 0"
    if o.side not in ("BUY", "SELL"):
        return "side must be BUY or SELL"
    if o.token not in world.by_token:
        return f"unknown token {o.token!r}"
    if not o.cancel_at >= o.placed_at:
        return "cancel_at must not be before placed_at"
    return None


def jitter(seed: int, o: ShadowOrder, what: str) -> float:
    """The order's latency (s), a pure function of the order: live and batch see the same one."""
    # numbers as floats: an order of size 42 and one of size 42.0 are the same order
    h = hashlib.sha256(f"{seed}:{o.token}:{float(o.price)!r}:{float(o.size)!r}:{float(o.placed_at)!r}:"
                       f"{o.side}:{what}".encode())
    u = (int.from_bytes(h.digest()[:8], "big") + 0.5) / 2**64
    return float(LATENCY_MEDIAN_S * math.exp(LATENCY_SIGMA * float(ndtri(u))))


def order_fills(world: World, o: ShadowOrder) -> list[ShadowFill]:
    """The true fills of one shadow order (see the module docstring)."""
    err = check_order(world, o)
    if err:
        raise ValueError(err)
    m, idx = world.by_token[o.token]
    cents = int(round(o.price * 100))
    buy_up = (o.side == "BUY") == (idx == 0)  # the order as Up: a bid (True) or an ask
    c = cents if idx == 0 else 100 - cents  # its price in Up cents
    t_on = max(o.placed_at + jitter(world.config.seed, o, "place"), float(m.start))
    t_off = min(o.cancel_at + (jitter(world.config.seed, o, "cancel") if math.isfinite(o.cancel_at)
                               else 0.0), float(m.end))
    if t_off <= t_on:
        return []
    wd = world.window(m)
    b = wd.books
    flow = world.flow(m)
    k_on = int(book_index(np.array([int(t_on * 1000)]), m.start, m.window_s)[0])
    k_off = int(book_index(np.array([int(t_off * 1000)]), m.start, m.window_s)[0])
    ks = np.arange(k_on, k_off + 1)
    best = (b.up_bid if buy_up else b.up_ask)[ks].astype(np.int64)
    opp = (b.up_ask if buy_up else b.up_bid)[ks].astype(np.int64)
    depth = np.where(best > 0, (best - c) if buy_up else (c - best), -1)  # levels behind the best
    w = np.asarray(b.level_w)
    if not buy_up:
        w = np.roll(w, -1)  # asks carry the rotated weights (maker.WindowBooks.levels)
    lvl = np.clip(depth, 0, LEVELS - 1)
    shown = np.where(depth >= 0, np.round(b.top5[ks] * w[lvl], 2), 0.0)  # size displayed at c
    through = (opp > 0) & ((opp <= c) if buy_up else (opp >= c))
    ahead = float(shown[0]) * (1.0 - CANCEL_AHEAD_SHARE + HIDDEN_AHEAD_SHARE)
    # the trades that reach it: on its queue at its price or beyond (for the taker, worse)
    q_main, q_comp = (UP_BID, DOWN_ASK) if buy_up else (UP_ASK, DOWN_BID)
    up_eq = np.where(flow.queue == q_main, flow.qcents, 100 - flow.qcents)  # in Up cents
    on_q = (flow.queue == q_main) | (flow.queue == q_comp)
    reach = on_q & ((up_eq <= c) if buy_up else (up_eq >= c))
    t_trade = flow.t_ms / 1000.0
    sel = np.flatnonzero(reach & (t_trade >= t_on) & (t_trade < t_off))
    left = float(o.size)
    out: list[ShadowFill] = []
    j = 0
    for n, k in enumerate(ks.tolist()):
        sec_start = (m.start + k - 1) * 1000 - BOOK_LEAD_MS  # the display of book k begins
        if n > 0 and shown[n] < ahead:
            ahead = float(shown[n])  # the level shrank: those cancels were ahead
        if through[n] and left > 0:
            out.append(ShadowFill(max(t_on, sec_start / 1000.0), round(left, 6), o.price, True))
            left = 0.0
        while j < len(sel) and int(flow.k[sel[j]]) <= k:
            i = int(sel[j])
            j += 1
            if left <= 0 or flow.k[i] < k:
                continue
            x = float(flow.size[i])
            if up_eq[i] == c:
                eat = min(ahead, x)
                ahead -= eat
                x -= eat
            if x > 0:
                got = min(x, left)
                left -= got
                out.append(ShadowFill(float(t_trade[i]), round(got, 6), o.price))
        if left <= 0:
            break
    return out


def shadow_fills(world: World, orders: Sequence[ShadowOrder]) -> list[list[ShadowFill]]:
    """``order_fills`` of each order (one world: its windows and flows are computed once)."""
    return [order_fills(world, o) for o in orders]


def fills_over_history(cfg: SimConfig, orders: Sequence[ShadowOrder]) -> list[list[ShadowFill]]:
    """The batch API (module docstring): fills of ``orders`` over the history ``cfg`` generates
    (``slotml sim backfill`` with the same config writes that history's rows and prints)."""
    world = World(cfg)
    if orders:
        w = world.window_s
        lo = min(o.placed_at for o in orders) - 2 * w
        hi = max(o.placed_at for o in orders) + w
        world.markets_between(lo, hi)  # registers every token of the span
    return shadow_fills(world, orders)
