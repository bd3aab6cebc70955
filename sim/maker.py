"""The market maker: Up and Down books around its own, imperfect, estimate of P(Up).

Why imperfect in these ways: the real book's Brier (0.205 / 0.168 / 0.138 at minutes 5/7/10 of
15m windows) is what a model has to beat. The maker sees the price ``lag_s`` late, uses a
volatility between the asset's long-run one and the window's regime (``regime_weight``; it
ignores the hour and treats jumps as diffusion), adds a persistent noise on the z-scale and shades toward
0.5. A model that learns regimes and time left can beat it by a realistic margin; ``efficient``
mode quotes the oracle instead (no edge to find).

Book shape (measured on real BTC 15m books, Dec 2025): 1-cent ticks, spread 1c ~76% / 2c ~19%
/ 3c+ ~5% of two-sided books, wider in the last minutes; one side of the Up book empty near the
end (the far side of a decided market): ~0% to minute 5, 2-3% at 6-9, 7% at 10, 17/28/42% at
11/12/13, 66% in the last minute; Down = 1 - Up within a cent ~73% of the time; top-5 bid size
p10/p50/p90 ~700/3000/7100 shares. Prices stay in [0.01, 0.99].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr, ndtri

from slotml.sim.oracle import known_sum, p_up

# Spread (cents) distribution by minute of a 15-minute window (later families: scaled minute).
SPREADS = np.array([1, 2, 3, 4, 5])
_BASE = [0.78, 0.17, 0.04, 0.01, 0.0]
SPREAD_PROBS = np.array([_BASE] * 11 + [
    [0.70, 0.22, 0.06, 0.02, 0.0],  # minute 11: mean ~1.4c
    [0.63, 0.26, 0.08, 0.03, 0.0],  # 12: ~1.5c
    [0.56, 0.30, 0.10, 0.04, 0.0],  # 13: ~1.6c
    [0.35, 0.30, 0.10, 0.0, 0.25],  # 14 (last minute): ~2.5c
])
# One-sided Up book: the far side is dropped when min(p, 1-p) < ONE_SIDED_EDGE[minute]
# (calibrated so the shares by minute match the real ones, see tests/sim/test_realism.py).
# Re-calibrated with regime_weight on tuning seeds 401-403 x 8 days: the quantile of min(p, 1 - p)
# at the real share, at the snapshot ticks the test measures (:00 and :30 of each minute); the
# maker's p reaches the extremes sooner where it reads a quiet regime.
ONE_SIDED_EDGE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0001, 0.0363, 0.0214, 0.0097, 0.0033,
                           0.0089, 0.0234, 0.0289, 0.0249, 0.0037])
PERIOD_S = 7  # the spread / size / skew state persists this long
LEVELS = 5
TOP5_MEDIAN = 2995.0
LEVEL_WEIGHTS = np.array([0.26, 0.2, 0.19, 0.18, 0.17])  # best first; sums to ~1
SKEW_PROB = 0.27  # share of periods in which the Down book is off the Up complement by 2c


@dataclass(frozen=True)
class MakerParams:
    lag_s: int = 3
    noise_sd: float = 0.15  # std of the persistent noise on the z-scale
    noise_tau_s: float = 45.0  # its correlation time
    shade: float = 0.9  # z -> shade * z: toward 0.5, yet able to reach 0.99 when decided
    # its variance: the asset's long-run one (no regime, no hour) ** (1 - w) times the window's
    # regime's ** w; 0.4: it reads the regime partly, as from recent realised volatility. Tuned on
    # seeds 401-403 to the real Dec 2025 mid Brier 0.205 / 0.168 / 0.138 (sim/realism.py REGIMES):
    # with w = 0 the sim's minute 7 sat 0.012 above the real one whatever the shade (1.0: +0.0105)
    regime_weight: float = 0.4


MAKER = MakerParams()
# ``--book sharp``: the sharpest real 15-minute crypto books known (Kalshi, May-Aug 2026, 5,624
# windows: mid Brier 0.186 / 0.159 / 0.113 at minutes 5 / 7 / 10; research.md). Those are sharper
# than the sim's own oracle (0.190 / 0.165 / 0.124 on seeds 101-104 x 30 days): a real book
# aggregates order flow that leads the price path. The sharp book quotes the oracle's P(Up) this
# many seconds AHEAD (measured, seed 101 x 20 days: lead 30 s -> 0.184 / 0.159 / 0.114).
SHARP_LEAD_S = 30
# ``--book shrunk``: the oracle's P(Up) pulled toward 0.5 by this share, so a model that knows the
# oracle has an edge of a known size (the backtest's power test).
SHRINK = 0.15
BOOKS = ("default", "sharp", "efficient", "shrunk")


def regime_prob(book: str, oracle: np.ndarray, maker: Callable[[], np.ndarray],
                ahead: Callable[[int], np.ndarray]) -> np.ndarray:
    """The probability the book quotes around, by regime: ``maker()`` computes the maker's
    estimate (default), ``ahead(s)`` the oracle s seconds later (clipped at the window's end);
    efficient quotes the oracle, shrunk the oracle pulled toward 0.5 by ``SHRINK``."""
    if book == "efficient":
        return np.asarray(oracle, dtype=np.float64).copy()
    if book == "shrunk":
        return 0.5 + (1.0 - SHRINK) * (np.asarray(oracle, dtype=np.float64) - 0.5)
    if book == "sharp":
        return np.asarray(ahead(SHARP_LEAD_S), dtype=np.float64)
    return maker()


def minute_index(elapsed_s: np.ndarray, window_s: int) -> np.ndarray:
    """Minute of a 15-minute-equivalent window (0..14) for any family."""
    return np.clip((np.asarray(elapsed_s) * 15 // window_s).astype(int), 0, 14)


@dataclass
class Draws:
    """Every random number one window's maker uses, drawn in one fixed order from its own RNG,
    so the live server and the backfill (which asks only for tick seconds) agree exactly."""

    noise: np.ndarray  # (window_s + 1,) persistent z-scale noise, index = t - start
    u_spread: np.ndarray  # per period
    u_skew: np.ndarray
    skew_sign: np.ndarray
    size_z: np.ndarray  # per period: 0.6 * market z + 0.8 * period z (unit variance)
    level_w: np.ndarray


def period_len(window_s: int) -> int:
    return max(1, min(PERIOD_S, window_s // 3))


def draw_window(rng: np.random.Generator, window_s: int, params: MakerParams = MAKER) -> Draws:
    n = window_s + 1
    a = np.exp(-1.0 / params.noise_tau_s)
    e = rng.standard_normal(n) * params.noise_sd * np.sqrt(1 - a * a)
    x0 = rng.standard_normal() * params.noise_sd
    noise = lfilter([1.0], [1.0, -a], e, zi=[a * x0])[0]
    n_periods = window_s // period_len(window_s) + 1
    u_spread, u_skew = rng.random(n_periods), rng.random(n_periods)
    skew_sign = rng.choice([-2, 2], n_periods)
    z_period = rng.standard_normal(n_periods)
    z_market = rng.standard_normal()
    return Draws(
        noise=noise, u_spread=u_spread, u_skew=u_skew, skew_sign=skew_sign,
        size_z=0.6 * z_market + 0.8 * z_period,
        level_w=LEVEL_WEIGHTS * np.exp(rng.standard_normal(LEVELS) * 0.15),
    )


def top5_size(z: np.ndarray) -> np.ndarray:
    """Summed size of the top 5 levels: split log-normal, as skewed as the real one
    (p10/p50/p90 ~ 705 / 2995 / 7144 shares)."""
    return TOP5_MEDIAN * np.exp(np.where(z < 0, 1.12 * z, 0.68 * z))


def maker_prob(*, rule: str, spot: np.ndarray, spot_t0: int, ts: np.ndarray, end: int,
               p2b, vbar: float, noise: np.ndarray, v_regime=None, profile=None, profile_on=True,
               params: MakerParams = MAKER) -> np.ndarray:
    """The maker's P(Up) at each second in ``ts`` (vectorised; may span many windows when
    ``end``/``p2b``/``noise`` are arrays aligned with ts).

    ``spot`` holds spot at seconds spot_t0.. (covering ts - lag - 60 .. end). ``vbar`` is the
    asset's long-run variance per second (no regime, no intraday profile, jumps as diffusion).
    ``noise`` is the window's persistent noise at each ts. ``profile``/``profile_on``: the
    variance profile of a ``--shift backload`` window (``oracle.p_up``): the maker knows it.
    """
    tl = ts - params.lag_s
    s_lag = spot[tl - spot_t0]
    m = (end - tl).astype(np.float64)
    known = known_sum(spot, spot_t0, tl, end) if rule == "twap60" else 0.0
    v = vbar
    if params.regime_weight and v_regime is not None:
        v = vbar ** (1.0 - params.regime_weight) * np.asarray(v_regime, dtype=np.float64) ** params.regime_weight
    p = p_up(rule=rule, spot_t=s_lag, m=m, v=v, lam=0.0, jvar=0.0, p2b=p2b, known_sum=known,
             profile=profile, profile_on=profile_on)
    z = ndtri(np.clip(p, 1e-9, 1 - 1e-9))
    return ndtr(params.shade * z + noise)


@dataclass
class WindowBooks:
    """Best quotes (integer cents; 0 = empty side) and top sizes per second of a window."""

    ts: np.ndarray
    p: np.ndarray  # the probability quoted around
    up_bid: np.ndarray
    up_ask: np.ndarray
    down_bid: np.ndarray
    down_ask: np.ndarray
    top5: np.ndarray  # summed size of the top 5 levels (each side, before weights)
    level_w: np.ndarray | None  # per-market level weights (5,); None for a many-window batch

    def levels(self, i: int) -> tuple[dict, dict]:
        """The full books at index i: ({'bids': [(cents, size)...], 'asks': [...]}, same for Down).

        Levels are best first here; the wire reverses them (worst to best).
        """
        size = [round(float(self.top5[i] * w), 2) for w in self.level_w]

        def side(best: int, step: int, size: list[float]) -> list[tuple[int, float]]:
            if best <= 0:
                return []
            out = []
            for k in range(LEVELS):
                c = best + step * k
                if 1 <= c <= 99:
                    out.append((c, size[k]))
            return out

        rot = size[1:] + size[:1]  # asks carry other sizes than bids; Down mirrors Up
        up = {"bids": side(int(self.up_bid[i]), -1, size), "asks": side(int(self.up_ask[i]), +1, rot)}
        down = {"bids": side(int(self.down_bid[i]), -1, rot), "asks": side(int(self.down_ask[i]), +1, size)}
        return up, down


def quote_books(p: np.ndarray, ts: np.ndarray, start, window_s: int, d: Draws | list[Draws],
                widx: np.ndarray | None = None) -> WindowBooks:
    """Turn probabilities into Up/Down best quotes for each second (vectorised).

    One window: ``start`` an int and ``d`` its Draws. Many windows: ``start`` an array aligned
    with ts, ``d`` a list of Draws and ``widx`` the index into it of each ts.
    """
    elapsed = np.clip(ts - start, 0, window_s)
    minute = minute_index(elapsed, window_s)
    period = (elapsed // period_len(window_s)).astype(int)
    if isinstance(d, Draws):
        u_spread, u_skew, skew_sign, size_z = (d.u_spread[period], d.u_skew[period],
                                                d.skew_sign[period], d.size_z[period])
        level_w = d.level_w
    else:
        u_spread = np.array([d[w].u_spread[k] for w, k in zip(widx, period, strict=True)])
        u_skew = np.array([d[w].u_skew[k] for w, k in zip(widx, period, strict=True)])
        skew_sign = np.array([d[w].skew_sign[k] for w, k in zip(widx, period, strict=True)])
        size_z = np.array([d[w].size_z[k] for w, k in zip(widx, period, strict=True)])
        level_w = None
    cdf = np.cumsum(SPREAD_PROBS, axis=1)[minute]  # (n, 5)
    spread = SPREADS[np.minimum((u_spread[:, None] > cdf).sum(axis=1), len(SPREADS) - 1)]
    pc = np.clip(p, 0.0, 1.0) * 100.0
    bid = np.rint(pc - spread / 2.0).astype(int)
    bid = np.clip(bid, 1, 99 - spread)
    ask = bid + spread
    edge = ONE_SIDED_EDGE[minute]
    hi = p > 1.0 - edge  # Up nearly won: nobody offers Up -> no Up asks
    lo = p < edge  # Up nearly lost: nobody bids Up -> no Up bids
    # one-sided quotes sit at the extreme the market is heading to
    bid = np.where(hi, np.clip(np.rint(pc - 0.5).astype(int), 1, 99), bid)
    ask = np.where(lo, np.clip(np.rint(pc + 0.5).astype(int), 1, 99), ask)
    up_bid = np.where(lo, 0, bid)
    up_ask = np.where(hi, 0, ask)
    delta = np.where(u_skew < SKEW_PROB, skew_sign, 0)
    down_bid = np.where(up_ask > 0, np.clip(100 - up_ask + delta, 1, 99), 0)
    down_ask = np.where(up_bid > 0, np.clip(100 - up_bid + delta, 1, 99), 0)
    both = (down_bid > 0) & (down_ask > 0)
    down_ask = np.where(both & (down_ask <= down_bid), down_bid + 1, down_ask)
    down_bid = np.where(both & (down_ask > 99), 98, down_bid)
    down_ask = np.minimum(down_ask, 99)
    top5 = top5_size(size_z)
    return WindowBooks(ts, p, up_bid, up_ask, down_bid, down_ask, top5, level_w)
