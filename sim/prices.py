"""The price process: one deterministic per-second path per asset, a function of (seed, time).

Why this shape: the live server and the backfill must produce the SAME path for a window (so a
backfilled window equals one collected live), wherever they start. So nothing is a cumulative
state from "when the program started". Two layers:

- coarse, per 15-minute block k since ``EPOCH`` (cheap, computed sequentially): the volatility
  regime x_k (two AR(1) components: a fast one and a slow one, calibrated to the measured
  window-to-window correlations of realised volatility), the block's diffusion total D_k, its
  jump count N_k (Poisson) and jump total, hence the log price L_k at every block start;
- fine, per day (seeded by day): the per-second increments of each block, a Brownian bridge from
  L_k to L_{k+1} plus the block's jumps at uniform seconds. Bridge + independent Gaussian
  endpoint is exactly Brownian motion, so the per-second law is the intended one.

Per-second variance in block k: ``vol_1m^2 / 60 * prof(hour)^2 / mean(prof^2) * exp(2 x_k - 2 sx^2)``
(the normalisers keep the long-run 1-minute volatility at the measured value), a share
``jump_share`` of it delivered as jumps. The 15m window is exactly one block, so the regime is
constant inside a window: the oracle knows it, the market maker ignores it.

Numbers (from real 1-minute Bybit candles, May-June 2025; see README "sim calibration").
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from slotml.errors import UserError
from slotml.sim.shift import NO_SHIFT, Shift, backload_profile

EPOCH = 1704067200  # 2024-01-01T00:00:00Z: the coarse chain starts here
BLOCK_S = 900
DAY_S = 86400
BLOCKS_PER_DAY = DAY_S // BLOCK_S
CHUNK_DAYS = 64  # coarse draws come in chunks of this many days

# Intraday volatility, ratio to the daily mean, by UTC hour (BTC; ETH and SOL alike).
INTRADAY = np.array([
    1.22, 1.04, 0.95, 0.78, 0.63, 0.62, 0.69, 0.70, 0.76, 0.74, 0.74, 0.68,
    0.84, 1.23, 1.41, 1.15, 1.15, 1.15, 1.12, 1.11, 1.13, 1.33, 1.17, 0.99,
])
_PROF_NORM = float(np.mean(INTRADAY**2))


@dataclass(frozen=True)
class AssetParams:
    p0: float  # price level at EPOCH
    vol_1m: float  # long-run std of 1-minute log returns (measured)
    sx: float = 0.42  # std of the log-vol regime x
    w_fast: float = 0.55  # variance share of the fast regime component
    phi_fast: float = 0.15  # per-block AR(1) coefficient, fast component
    phi_slow: float = 0.975  # per-block AR(1) coefficient, slow component (~10 h half-life)
    jump_share: float = 0.2  # share of the variance delivered by jumps
    jumps_per_day: float = 4.0


ASSETS: dict[str, AssetParams] = {
    # regime parameters fitted to the measured window-to-window correlations of log realised
    # volatility (lags 1 window / 1 hour / 1 day) and the |1-minute return| autocorrelations
    "BTC": AssetParams(p0=90000.0, vol_1m=0.000463, sx=0.45, w_fast=0.4, phi_fast=0.3),
    "ETH": AssetParams(p0=3000.0, vol_1m=0.000926, sx=0.5, w_fast=0.3, phi_fast=0.3, phi_slow=0.986),
    # SOL's realised-vol distribution is narrower (p90/p10 2.9 against BTC's 4.0)
    "SOL": AssetParams(p0=130.0, vol_1m=0.001002, sx=0.4, w_fast=0.3, phi_fast=0.3, jump_share=0.12),
    "XRP": AssetParams(p0=2.2, vol_1m=0.00100, sx=0.4, w_fast=0.3, phi_fast=0.3, jump_share=0.12),
}
SYNTHETIC = AssetParams(p0=100.0, vol_1m=0.000463, sx=0.45, w_fast=0.4, phi_fast=0.3)


def asset_params(symbol: str) -> AssetParams:
    return ASSETS.get(symbol.upper(), SYNTHETIC)


def asset_key(symbol: str) -> int:
    """A stable small integer per symbol (RNG stream key), independent of the symbol list."""
    return zlib.crc32(symbol.upper().encode()) & 0x7FFFFFFF


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & 0xFFFFFFFF, *keys])))


@dataclass
class _Coarse:
    days: int  # number of days covered from EPOCH
    b0: int  # first block kept (older blocks are dropped: bounded memory per asset)
    var_s: np.ndarray  # total per-second variance per block
    logp: np.ndarray  # log price at each block start (len blocks + 1)
    dtot: np.ndarray  # diffusion total per block
    njump: np.ndarray  # jump count per block
    jtot: np.ndarray  # jump total per block


class AssetPath:
    """The deterministic path of one asset. Its caches are guarded by a lock: the server's
    event loop reads the path while a worker thread prefetches the next window from it."""

    def __init__(self, seed: int, symbol: str, shift: Shift = NO_SHIFT) -> None:
        self.seed = seed
        self.shift = shift  # the settlement TWAP's lag after a regime shift (sim/shift.py)
        self.symbol = symbol.upper()
        self.p = asset_params(symbol)
        self.key = asset_key(symbol)
        self._coarse: _Coarse | None = None
        self._days: dict[int, np.ndarray] = {}
        self._lock = threading.RLock()  # the public readers hold it; the cache builders nest

    # ---- per-block parameters -------------------------------------------------------------
    @property
    def lam_s(self) -> float:
        """Jump intensity per second."""
        return self.p.jumps_per_day / DAY_S

    def _ensure_coarse(self, day: int, day_lo: int | None = None) -> _Coarse:
        """The coarse chain covering days [day_lo, day] (day_lo defaults to day). The chain is
        always computed from EPOCH (determinism) but only the blocks from two days before
        day_lo on are kept, so a server with hundreds of assets stays small."""
        day_lo = day if day_lo is None else day_lo
        if day_lo < 0:
            raise UserError(f"time before the sim epoch ({EPOCH}, 2024-01-01): choose a later --end")
        c = self._coarse
        if c is not None and c.days > day and day_lo * BLOCKS_PER_DAY >= c.b0:
            return c
        n_days = day + 30
        n_days = -(-n_days // CHUNK_DAYS) * CHUNK_DAYS
        p = self.p
        zs_f, zs_s, zd, nj, gj = [], [], [], [], []
        nb = CHUNK_DAYS * BLOCKS_PER_DAY
        for chunk in range(n_days // CHUNK_DAYS):  # one RNG stream per chunk: prefix-stable
            r = _rng(self.seed, self.key, 0, chunk)
            zs_f.append(r.standard_normal(nb))
            zs_s.append(r.standard_normal(nb))
            zd.append(r.standard_normal(nb))
            nj.append(r.poisson(self.lam_s * BLOCK_S, nb))
            gj.append(r.standard_normal(nb))
        zf, zsl = np.concatenate(zs_f), np.concatenate(zs_s)
        # AR(1) components with unit stationary variance, started in their stationary law.
        f = lfilter([np.sqrt(1 - p.phi_fast**2)], [1, -p.phi_fast], zf[1:], zi=[p.phi_fast * zf[0]])[0]
        s = lfilter([np.sqrt(1 - p.phi_slow**2)], [1, -p.phi_slow], zsl[1:], zi=[p.phi_slow * zsl[0]])[0]
        f = np.concatenate([[zf[0]], f])
        s = np.concatenate([[zsl[0]], s])
        x = p.sx * (np.sqrt(p.w_fast) * f + np.sqrt(1 - p.w_fast) * s)
        blocks = np.arange(len(x))
        hour = (blocks % BLOCKS_PER_DAY) // 4
        var_s = (p.vol_1m**2 / 60.0) * INTRADAY[hour] ** 2 / _PROF_NORM * np.exp(2 * x - 2 * p.sx**2)
        dtot = np.concatenate(zd) * np.sqrt((1 - p.jump_share) * var_s * BLOCK_S)
        njump = np.concatenate(nj)
        sj = np.sqrt(p.jump_share * var_s / self.lam_s)
        jtot = np.concatenate(gj) * sj * np.sqrt(njump)
        logp = np.log(p.p0) + np.concatenate([[0.0], np.cumsum(dtot + jtot)])
        b0 = max(0, (day_lo - 2) * BLOCKS_PER_DAY)
        self._coarse = _Coarse(n_days, b0, var_s[b0:].copy(), logp[b0:].copy(), dtot[b0:].copy(),
                               njump[b0:].copy(), jtot[b0:].copy())
        return self._coarse

    def block_stats(self, t: int) -> tuple[float, float, float]:
        """(diffusion variance per second, jump intensity per second, jump variance) of the
        15-minute block containing epoch second t."""
        block = (int(t) - EPOCH) // BLOCK_S
        with self._lock:
            c = self._ensure_coarse(block // BLOCKS_PER_DAY)
        v = float(c.var_s[block - c.b0])
        return (1 - self.p.jump_share) * v, self.lam_s, self.p.jump_share * v / self.lam_s

    def block_stats_array(self, t: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Vectorised ``block_stats`` over epoch seconds ``t``."""
        block = (np.asarray(t, dtype=np.int64) - EPOCH) // BLOCK_S
        with self._lock:
            c = self._ensure_coarse(int(block.max()) // BLOCKS_PER_DAY, int(block.min()) // BLOCKS_PER_DAY)
        v = c.var_s[block - c.b0]
        return (1 - self.p.jump_share) * v, self.lam_s, self.p.jump_share * v / self.lam_s

    # ---- fine path --------------------------------------------------------------------------
    def _day_log(self, day: int) -> np.ndarray:
        """Log price at every second of day ``day`` (index 0 = the day's first second)."""
        got = self._days.get(day)
        if got is not None:
            return got
        c = self._ensure_coarse(day + 1, day)
        b0 = day * BLOCKS_PER_DAY - c.b0  # index of the day's first block in the kept chain
        sl = slice(b0, b0 + BLOCKS_PER_DAY)
        var_d = (1 - self.p.jump_share) * c.var_s[sl]
        r = _rng(self.seed, self.key, 1, day)
        z = r.standard_normal((BLOCKS_PER_DAY, BLOCK_S))
        e = z * np.sqrt(var_d)[:, None]
        inc = e - ((e.sum(axis=1) - c.dtot[sl]) / BLOCK_S)[:, None]
        starts = EPOCH + (day * BLOCKS_PER_DAY + np.arange(BLOCKS_PER_DAY)) * BLOCK_S
        late = np.flatnonzero(self.shift.backloaded(starts))
        if late.size:  # --shift backload: the same draws, the block's variance moved to its end;
            g = backload_profile()  # the bridge to the same block total weighs each second by it
            eb = z[late] * np.sqrt(var_d[late][:, None] * g)
            inc[late] = eb - g * ((eb.sum(axis=1) - c.dtot[sl][late]) / BLOCK_S)[:, None]
        for i in np.flatnonzero(c.njump[sl]):
            n = int(c.njump[b0 + i])
            pos = r.integers(0, BLOCK_S, n)
            g = r.standard_normal(n) * np.sqrt(self.p.jump_share * c.var_s[b0 + i] / self.lam_s)
            pieces = g - g.mean() + c.jtot[b0 + i] / n
            np.add.at(inc[i], pos, pieces)
        # increment j of block k moves the price from second k*900+j to k*900+j+1
        cum = np.cumsum(inc, axis=1)
        logs = np.empty((BLOCKS_PER_DAY, BLOCK_S))
        logs[:, 0] = 0.0
        logs[:, 1:] = cum[:, :-1]
        out = (logs + c.logp[sl][:, None]).ravel()
        if len(self._days) > 3:
            self._days.pop(next(iter(self._days)))
        self._days[day] = out
        return out

    def log_spot(self, t0: int, t1: int) -> np.ndarray:
        """Log spot at integer seconds t0..t1 inclusive."""
        a, b = int(t0) - EPOCH, int(t1) - EPOCH
        if a < 0:
            raise UserError(f"time {t0} is before the sim epoch ({EPOCH}, 2024-01-01)")
        d0, d1 = a // DAY_S, b // DAY_S
        with self._lock:
            self._ensure_coarse(d1 + 1, d0)
            parts = [self._day_log(d) for d in range(d0, d1 + 1)]
        arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return arr[a - d0 * DAY_S: b - d0 * DAY_S + 1]

    def spot(self, t0: int, t1: int) -> np.ndarray:
        return np.exp(self.log_spot(t0, t1))

    def twap(self, t0: int, t1: int) -> np.ndarray:
        """60 s TWAP at each second t0..t1: the mean of spot over (t-60, t] (over
        (t-lag-60, t-lag] after a ``--shift lag``, sim/shift.py)."""
        if not self.shift.lagged_between(int(t0), int(t1)):
            return twap_of(self.spot(t0 - 59, t1))
        ts = np.arange(int(t0), int(t1) + 1)
        src = ts - self.shift.lag(ts)
        lo = int(src.min())
        return twap_of(self.spot(lo - 59, int(src.max())))[src - lo]

    def spot_at(self, t: int) -> float:
        return float(self.spot(t, t)[0])

    def twap_at(self, t: int) -> float:
        return float(self.twap(t, t)[0])


def twap_of(spot: np.ndarray, n: int = 60) -> np.ndarray:
    """Mean of each run of ``n`` consecutive values, summed in the same order wherever it is
    computed (a long running cumsum would differ in the last bits): live relay, Gamma and the
    backfill publish bit-identical TWAPs."""
    return np.lib.stride_tricks.sliding_window_view(spot, n).sum(axis=1) / float(n)


class PriceModel:
    """All assets' paths for one seed."""

    def __init__(self, seed: int, symbols: tuple[str, ...], shift: Shift = NO_SHIFT) -> None:
        self.seed = seed
        self.paths = {s.upper(): AssetPath(seed, s, shift) for s in symbols}

    def __getitem__(self, symbol: str) -> AssetPath:
        return self.paths[symbol.upper()]
