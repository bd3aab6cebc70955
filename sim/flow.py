"""Order flow: takers meet the maker's per-level queues; the trades they make are the prints.

One window's flow is a pure function of (seed, market, the window's books and oracle), drawn from
its own generator, so the live server (``services/prints.py``) and the backfill (``slot_trades``)
emit the same prints, and the shadow-order engine (``sim/shadow.py``) replays the same trades.

The book and its queues. Prices are queues on ONE book in Up cents, as the venue matches
complementary orders (research.md: ~86.7% of bid-side volume was Down-token buying): the Up bid
queue at c is hit by an Up SELL at c and by a Down BUY at 100 - c (a mint); the Up ask queue at c
by an Up BUY at c and a Down SELL at 100 - c. Where the maker's Down book is off the Up complement
(its 2-cent skew), a Down taker meets the Down book's own queue instead. The size at the top of a
queue in second s is the maker's displayed size; what takers consume within a second is gone
for the rest of that second; the maker's next publication is new size arriving at the back (or
size cancelled: the displayed size shrinks). Prints do not move the displayed book.

Takers (Poisson, uniform times inside the window's trading seconds [start, end)):
- noise: either token, BUY with probability ``BUY_SHARE``; a share ``NOISE_SWEEP_SHARE`` sweeps
  the top level, the rest trade log-normal sizes;
- informed: they know P(Up) ``INFORMED_LEAD_S`` ahead (the oracle's own future value: fast
  feeds against a maker that quotes late) and trade only when it is beyond the touch by
  ``INFORMED_EDGE_C`` cents, sweeping most or all of the top level. They are the adverse selection.

A trade that arrives when its level is already empty this second is not made. Each trade becomes
one print (or two sharing a hash: one taker against two makers); frames group prints of one instant
as the venue does. ``Flow`` keeps, per trade, what a recorder cannot see (its queue, whether it
emptied the level, whether it was informed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slotml.sim.prices import _rng, asset_key

# ---- the calibrated flow -----------------------------------------------------------------------
# Chosen on tuning seeds 101-103 (3 days x 4 assets each, 15m, default book) to meet the realism
# targets; measured there (sim.realism.flow_stats):
#   mean 60 s markout of fills that emptied their level 0.470 / 0.512 / 0.467 cents per share
#     against the maker (target: the real 0.35-0.56, research.md; per-window s.e. ~0.10);
#     efficient book 0.335 / 0.428 / 0.413, sharp book -0.61 (it leads the informed);
#   Down buying 0.874 / 0.870 / 0.868 of the Up-bid queue's volume (real 0.867);
#   prints per window 62.4 / 62.6 / 63.1; Up token's share of volume 0.451 / 0.449 / 0.456.
# Pinned by tests/sim/test_flow_realism.py on other seeds. The backtest issue may not change them.
NOISE_RATE = 0.06  # noise takers per market per second
INFORMED_RATE = 0.01  # informed arrivals per market per second (they trade only with an edge)
INFORMED_LEAD_S = 10  # how far ahead the informed know P(Up)
INFORMED_EDGE_C = 1.0  # cents beyond the touch before the informed trade
INFORMED_TAKE = (0.7, 1.6)  # a sweep's size as a multiple of the top level's size (uniform)
NOISE_SWEEP_SHARE = 0.45  # noise takers that sweep the top level (impatient size, uninformed)
BUY_SHARE = 0.9  # takers that buy: gives the real 86.7% Down buying on the Up bids (research.md)
NOISE_SIZE_MEDIAN = 25.0  # shares, the other noise takers (log-normal)
NOISE_SIZE_SIGMA = 1.0  # log-normal spread of their sizes
# ---- wire cosmetics (as observed on the venue's feed) -----------------------------------------
HASH_SHARE = 0.7  # prints that carry a transaction_hash
PAIR_SHARE = 0.1  # trades that are one taker against two makers (two prints, one hash)
JOIN_SHARE = 0.3  # a print that shares the previous print's frame (same instant, same second)
OBJECT_SHARE = 0.5  # single-print frames sent as a bare object rather than a 1-element array

BOOK_LEAD_MS = 250  # as services/books.py: the book of second s is on display from s - 0.25 s

# queues (one book in Up cents, plus the Down book's own where it is off the complement)
UP_BID, UP_ASK, DOWN_BID, DOWN_ASK = 0, 1, 2, 3


@dataclass
class Flow:
    """One window's trades in time order (one entry per print) and its frames.

    Per print: ``t_ms`` (frame time), ``token`` (0 Up, 1 Down), ``side`` (0 BUY, 1 SELL: the
    taker's), ``cents`` (the print's price on its token), ``size``, ``tx`` ('' = none), ``frame``
    (index into ``frame_t_ms``/``frame_bare``), ``k`` (book index of the second on display),
    ``queue``/``qcents`` (the queue met and its price in its own cents), ``empties`` (the trade
    left its level empty this second), ``informed``, ``trade`` (prints of one taker share it).
    """

    t_ms: np.ndarray
    token: np.ndarray
    side: np.ndarray
    cents: np.ndarray
    size: np.ndarray
    tx: list[str]
    frame: np.ndarray
    k: np.ndarray
    queue: np.ndarray
    qcents: np.ndarray
    empties: np.ndarray
    informed: np.ndarray
    trade: np.ndarray
    frame_t_ms: np.ndarray
    frame_bare: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ms)


def book_index(t_ms: np.ndarray, start: int, window_s: int) -> np.ndarray:
    """Index into a window's books (``WindowData.at``) of the second on display at ``t_ms``."""
    sec = (np.asarray(t_ms, dtype=np.int64) + BOOK_LEAD_MS) // 1000
    return np.clip(sec - start + 1, 0, window_s + 1)


def rates(print_rate: float | None) -> tuple[float, float]:
    """(noise, informed) arrivals per market per second; ``print_rate`` (per token per second)
    scales the calibrated mix to that total."""
    if print_rate is None:
        return NOISE_RATE, INFORMED_RATE
    tot = NOISE_RATE + INFORMED_RATE
    return 2 * print_rate * NOISE_RATE / tot, 2 * print_rate * INFORMED_RATE / tot


def window_flow(seed: int, symbol: str, start: int, window_s: int, books, oracle: np.ndarray,
                print_rate: float | None = None) -> Flow:
    """The trades of one window. ``books``: its ``WindowBooks`` (index 0 = before the start);
    ``oracle``: P(Up) at start..end."""
    r = _rng(seed, asset_key(symbol), 8, window_s, int(start))
    noise_rate, inf_rate = rates(print_rate)
    n_noise = int(r.poisson(noise_rate * window_s))
    n_inf = int(r.poisson(inf_rate * window_s))
    n = n_noise + n_inf
    t_ms = start * 1000 + np.sort(r.integers(0, window_s * 1000, n))
    informed = np.zeros(n, dtype=bool)
    informed[r.permutation(n)[:n_inf]] = True
    u_token, u_side, u_size = r.random(n), r.random(n), r.random(n)
    z_size = r.standard_normal(n)
    k = book_index(t_ms, start, window_s)
    ub, ua = books.up_bid[k].astype(np.int64), books.up_ask[k].astype(np.int64)
    db, da = books.down_bid[k].astype(np.int64), books.down_ask[k].astype(np.int64)
    lw = books.level_w
    size_a = np.round(books.top5[k] * lw[0], 2)  # Up best bid / Down best ask
    size_b = np.round(books.top5[k] * lw[1], 2)  # Up best ask / Down best bid
    buy = u_side < BUY_SHARE
    token = (u_token < 0.5).astype(np.int64)  # noise: either token
    # informed: the future P(Up) against the touch
    fut = oracle[np.clip(k - 1 + INFORMED_LEAD_S, 0, window_s)] * 100.0
    want_up = (ua > 0) & (fut >= ua + INFORMED_EDGE_C)
    want_down = (ub > 0) & (fut <= ub - INFORMED_EDGE_C)
    # long Up: BUY Up or SELL Down; long Down: BUY Down or SELL Up
    token = np.where(informed & want_up, np.where(buy, 0, 1), token)
    token = np.where(informed & want_down, np.where(buy, 1, 0), token)
    keep = ~informed | want_up | want_down
    side = np.where(buy, 0, 1)
    cents = np.select([(token == 0) & buy, token == 0, buy], [ua, ub, da], db)
    comp_buy = (ub > 0) & (da == 100 - ub)  # a Down BUY at the Up bid's complement: a mint
    comp_sell = (ua > 0) & (db == 100 - ua)
    queue = np.select([(token == 0) & buy, token == 0, buy & comp_buy, buy, comp_sell],
                      [UP_ASK, UP_BID, UP_BID, DOWN_ASK, UP_ASK], DOWN_BID)
    qcents = np.select([queue == UP_ASK, queue == UP_BID, queue == DOWN_ASK], [ua, ub, da], db)
    level = np.where((queue == UP_BID) | (queue == DOWN_ASK), size_a, size_b)
    lo, hi = INFORMED_TAKE
    sweep = informed | (u_size < NOISE_SWEEP_SHARE)
    u_take = np.where(informed, u_size, u_size / max(NOISE_SWEEP_SHARE, 1e-12))
    want = np.where(sweep, level * (lo + (hi - lo) * np.minimum(u_take, 1.0)),
                    NOISE_SIZE_MEDIAN * np.exp(NOISE_SIZE_SIGMA * z_size))
    want = np.maximum(np.round(want, 2), 1.0)
    keep &= cents > 0
    # consume each (second, queue) level in time order: a trade takes what is left
    idx = np.flatnonzero(keep)
    order = idx[np.lexsort((t_ms[idx], queue[idx], k[idx]))]
    grp = np.stack([k[order], queue[order]])
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.any(grp[:, 1:] != grp[:, :-1], axis=0)
    cum = np.cumsum(want[order])
    base = np.maximum.accumulate(np.where(new, cum - want[order], 0.0))
    prior = cum - want[order] - base
    left = np.maximum(level[order] - prior, 0.0)
    take = np.round(np.minimum(want[order], left), 2)
    took = np.zeros(n)
    took[order] = take
    emptied = np.zeros(n, dtype=bool)
    emptied[order] = (take > 0) & (left - take <= 0.005)
    made = np.flatnonzero(took >= 0.01)  # in time order
    return _prints(r, made, t_ms, token, side, cents, took, k, queue, qcents, emptied, informed)


def _prints(r: np.random.Generator, made: np.ndarray, t_ms, token, side, cents, took, k, queue,
            qcents, emptied, informed) -> Flow:
    """Trades -> prints (a pair of prints for one taker against two makers) and frames."""
    m = len(made)
    pair = r.random(m) < PAIR_SHARE
    has_hash = pair | (r.random(m) < HASH_SHARE)
    split = 0.2 + 0.6 * r.random(m)
    join = r.random(m) < JOIN_SHARE
    bare_u = r.random(m)
    hashes = r.bytes(32 * m).hex()  # 64 hex digits per trade
    rows: list[tuple[int, float, str]] = []  # (trade index, size, tx)
    for j, i in enumerate(made.tolist()):
        tx = "0x" + hashes[64 * j: 64 * j + 64] if has_hash[j] else ""
        s = float(took[i])
        if pair[j] and s >= 0.04:
            a = round(s * float(split[j]), 2)
            b = round(s - a, 2)
            if a == b:
                a, b = round(a + 0.01, 2), round(b - 0.01, 2)
            if a > 0 and b > 0:
                rows += [(i, a, tx), (i, b, tx)]
                continue
        rows.append((i, s, tx))
    ti = np.array([x[0] for x in rows], dtype=np.int64)
    size = np.array([x[1] for x in rows], dtype=np.float64)
    tx = [x[2] for x in rows]
    trade_no = np.searchsorted(made, ti)
    # frames: a taker's prints share one; otherwise join the previous frame now and then (same second)
    frame = np.zeros(len(rows), dtype=np.int64)
    f_t: list[int] = []
    f_n: list[int] = []
    for p in range(len(rows)):
        i, tn = int(ti[p]), int(trade_no[p])
        same_taker = p > 0 and trade_no[p - 1] == tn
        joinable = p > 0 and join[tn] and k[ti[p - 1]] == k[i]
        if same_taker or joinable:
            frame[p] = len(f_t) - 1
            f_n[-1] += 1
        else:
            frame[p] = len(f_t)
            f_t.append(int(t_ms[i]))
            f_n.append(1)
    f_bare = np.array([nn == 1 for nn in f_n], dtype=bool) & (bare_u[:len(f_n)] < OBJECT_SHARE)
    f_t_arr = np.array(f_t, dtype=np.int64)
    return Flow(t_ms=f_t_arr[frame] if len(rows) else np.zeros(0, dtype=np.int64),
                token=token[ti], side=side[ti], cents=cents[ti], size=size, tx=tx, frame=frame,
                k=k[ti], queue=queue[ti], qcents=qcents[ti], empties=emptied[ti],
                informed=informed[ti], trade=trade_no, frame_t_ms=f_t_arr, frame_bare=f_bare)


def frames_of_second(flow: Flow, start: int, window_s: int, second: int) -> list[int]:
    """Indices of the frames sent during the display of second ``second``."""
    lo = np.searchsorted(flow.frame_t_ms, second * 1000 - BOOK_LEAD_MS, side="left")
    hi = np.searchsorted(flow.frame_t_ms, second * 1000 + 1000 - BOOK_LEAD_MS, side="left")
    return list(range(int(lo), int(hi)))
