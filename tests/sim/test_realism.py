"""The sim's dynamics against the numbers measured on real data (sim/realism.py REAL).

Tolerances: the real figures are estimates themselves (one month of 1-minute candles; 97 BTC
windows for the book's Brier, standard error ~0.015-0.02; two days of books for the shape), and
the sim's are measured on 3 seeds x 40 days of path / 8 days of backfill. Each tolerance is
~2-3 standard errors of the two samples combined, tight enough that a wrong mechanism (no
regimes, no jumps, no shading, a maker that is the oracle) fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from slotml.sim.backfill import generate
from slotml.sim.config import SimConfig
from slotml.sim.maker import top5_size
from slotml.sim.prices import INTRADAY, AssetPath
from slotml.sim.realism import REAL, book_stats, brier_of, minute_stats

END = 1795000000 // 900 * 900
DAYS = 40
SEED = 2


@pytest.fixture(scope="module")
def price_stats() -> dict:
    """Each statistic averaged over 3 seeds x 40 days (regimes persist: one short sample of a
    path varies more than the tolerances)."""
    t0 = END - DAYS * 86400
    out = {}
    for s in ("BTC", "ETH", "SOL", "XRP"):
        runs = [minute_stats(AssetPath(seed, s).spot(t0, END), t0) for seed in (1, 2, 3)]
        out[s] = {k: (np.mean([r[k] for r in runs], axis=0) if isinstance(runs[0][k], np.ndarray)
                      else tuple(np.mean([r[k] for r in runs], axis=0)) if isinstance(runs[0][k], tuple)
                      else float(np.mean([r[k] for r in runs]))) for k in runs[0]}
    return out


@pytest.fixture(scope="module")
def backfill():
    bf = generate(SimConfig(seed=SEED), days=8, end=END, missing_fraction=0.0, trades=False)
    outcomes = {(r["symbol"], r["slot_ts"]): r["final_price"] >= r["price_to_beat"]
                for r in bf.resolutions if r.get("final_price") is not None}
    rows = [r for r in bf.snapshots if (r["symbol"], r["slot_ts"]) in outcomes]
    return bf, outcomes, rows, book_stats(rows, outcomes)


@pytest.mark.parametrize("sym", ["BTC", "ETH", "SOL", "XRP"])
def test_volatility_and_tails(price_stats, sym: str) -> None:
    st = price_stats[sym]
    # 60 days of a path with persistent regimes and jumps: the sample vol itself varies ~+-10%
    assert st["vol_1m"] == pytest.approx(REAL["vol_1m"][sym], rel=0.2)
    lo, hi = REAL["tail_5sd"]
    assert lo * 0.6 <= st["tail_5sd"] <= hi * 1.4  # real 0.20-0.27 % of minutes beyond 5 sd
    assert st["kurtosis"] > 8  # fat tails (real 13-130); Gaussian would be 3


@pytest.mark.parametrize("sym", ["BTC", "ETH", "SOL"])
def test_volatility_clustering(price_stats, sym: str) -> None:
    st = price_stats[sym]
    for got, real in zip(st["rv_corr"], REAL["rv_corr"][sym], strict=True):
        assert got == pytest.approx(real, abs=0.1), st["rv_corr"]
    # known shortfall: vol is constant inside a 15-minute block, so the lag-1-minute |r|
    # autocorrelation is ~0.2 against a real 0.25-0.31; lags 15 and 60 match
    lag1, lag15, lag60 = st["absret_acf"]
    r1, r15, r60 = REAL["absret_acf"][sym]
    assert 0.15 < lag1 <= r1 + 0.05
    assert lag15 == pytest.approx(r15, abs=0.07) and lag60 == pytest.approx(r60, abs=0.07)
    p10, p50, p90 = st["rv_pct"]
    r10, r50, r90 = REAL["rv_pct"][sym]
    assert p50 == pytest.approx(r50, rel=0.15)
    assert 2.5 < p90 / p10 < 5.5  # a busy window is ~3-4x a quiet one (real 2.9-4.0)


def test_intraday_profile(price_stats) -> None:
    prof = np.mean([price_stats[s]["intraday"] for s in ("BTC", "ETH", "SOL", "XRP")], axis=0)
    real = INTRADAY / np.sqrt((INTRADAY**2).mean())
    assert np.corrcoef(prof, real)[0, 1] > 0.85
    quiet, busy = prof[4:8].mean(), prof[13:15].mean()  # Asian morning vs US open
    assert busy / quiet == pytest.approx(real[13:15].mean() / real[4:8].mean(), rel=0.2)


def test_spread_mix_and_widening(backfill) -> None:
    st = backfill[3]
    for got, real in zip(st["spread_mix"], REAL["spread_mix"], strict=True):
        assert got == pytest.approx(real, abs=0.03)
    ms = st["mean_spread"]
    assert all(0.0115 <= ms[m] <= 0.0135 for m in range(11))  # real 0.012-0.013 to minute 10
    for m, real in ((11, 0.014), (12, 0.015), (13, 0.016), (14, 0.025)):
        assert ms[m] == pytest.approx(real, abs=0.0015)


def test_one_sided_share_by_minute(backfill) -> None:
    st = backfill[3]["one_sided"]
    assert max(st[m] for m in range(5)) == 0.0
    for m, real in REAL["one_sided_by_minute"].items():
        # the real shares come from ~190 windows (2 days): SE ~0.03 at 0.3
        assert st[m] == pytest.approx(real, abs=0.03 + 0.15 * real), (m, st[m])


def test_complement_and_sizes(backfill) -> None:
    st = backfill[3]
    assert st["complement_within_cent"] == pytest.approx(REAL["complement_within_cent"], abs=0.04)
    z = np.random.default_rng(0).standard_normal(200000)
    p10, p50, p90 = np.percentile(top5_size(z), [10, 50, 90])
    r10, r50, r90 = REAL["top5_bid"]
    assert (p10, p50, p90) == (pytest.approx(r10, rel=0.1), pytest.approx(r50, rel=0.05),
                               pytest.approx(r90, rel=0.1))


def test_book_brier_matches_the_real_book(backfill) -> None:
    """0.205 / 0.168 / 0.138 at minutes 5 / 7 / 10 (real, 97 BTC windows, SE ~0.017): within
    0.025. And the oracle beats the book by a margin (regimes and time left are learnable)."""
    bf, outcomes, rows, st = backfill
    for m, real in REAL["brier"].items():
        assert st["brier"][m] == pytest.approx(real, abs=0.025), st["brier"]
    o = bf.oracle
    y = np.array([float(outcomes.get((s, t), np.nan)) for s, t in zip(o["symbol"], o["slot_ts"], strict=True)])
    minute = (np.array(o["tick_ms"]) // 1000 - np.array(o["slot_ts"])) / 60
    for m in (5, 7, 10):
        sel = (minute == m) & ~np.isnan(y)
        b_or = brier_of(np.array(o["p_up"])[sel], y[sel])
        assert 0.005 < st["brier"][m] - b_or < 0.035, (m, b_or, st["brier"][m])
    assert 0.45 < st["base_rate"] < 0.55


def test_oracle_is_calibrated_against_path_outcomes(backfill) -> None:
    """Outcomes come from the settlement rule on the path; the oracle, bucketed, matches them."""
    bf, outcomes, _, _ = backfill
    o = bf.oracle
    y = np.array([float(outcomes.get((s, t), np.nan)) for s, t in zip(o["symbol"], o["slot_ts"], strict=True)])
    p = np.array(o["p_up"])
    minute = (np.array(o["tick_ms"]) // 1000 - np.array(o["slot_ts"])) / 60
    sel = ~np.isnan(y) & np.isin(minute, [2, 5, 8, 11, 13])  # a few ticks per window
    p, y = p[sel], y[sel]
    edges = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(p, edges) - 1, 0, 9)
    worst = 0.0
    for b in range(10):
        inb = idx == b
        if inb.sum() < 150:
            continue
        gap = abs(y[inb].mean() - p[inb].mean())
        se = np.sqrt(p[inb].mean() * (1 - p[inb].mean()) / inb.sum()) * 2  # ~2x for clustering
        assert gap < 3 * se + 0.01, (b, y[inb].mean(), p[inb].mean(), inb.sum())
        worst = max(worst, gap)
    assert worst < 0.06
