"""The deterministic world: markets by time, prices, books, outcomes, publication times.

Everything is a pure function of (config, seed, time): the server renders it at wall-clock time,
the backfill renders the same thing for the past, so a window served live equals the same window
backfilled. Outcomes come from the settlement rule applied to the generated path (never drawn
from the oracle).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np

from slotml import venue
from slotml.sim.config import SimConfig
from slotml.sim.flow import Flow, window_flow
from slotml.sim.maker import (
    MAKER,
    Draws,
    WindowBooks,
    draw_window,
    maker_prob,
    quote_books,
    regime_prob,
)
from slotml.sim.oracle import known_sum, p_up
from slotml.sim.prices import AssetPath, PriceModel, _rng, asset_key, twap_of
from slotml.sim.shift import backload_weights

NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "XRP": "XRP"}
SERIES_IDS = {"BTC": 10192, "ETH": 10191, "SOL": 10423, "XRP": 10422}
# Venue delays after the END of a 15m window, seconds (measured, see protocol.md section 6);
# scaled by window_s / 900 for short families.
P2B_DELAY = (21.0, 143.0)
CLOSED_DELAY = (17.0, 160.0)
RESOLVE_DELAY = (311.0, 600.0)
WINNER_DELAY = (459.0, 759.0)
FINAL_DELAY = (1054.0, 1296.0)
_ET = ZoneInfo("America/New_York")


def iso(t: float, frac: bool = False) -> str:
    d = datetime.fromtimestamp(t, UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if frac else "%Y-%m-%dT%H:%M:%SZ")


def _digits(text: str, n: int = 77) -> str:
    """A decimal string of exactly n digits (no leading zero) derived from text."""
    h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    return str(10 ** (n - 1) + h % (9 * 10 ** (n - 1)))


@dataclass(frozen=True)
class Market:
    symbol: str
    family: str
    window_s: int
    start: int
    end: int
    slug: str
    event_id: str
    market_id: str
    condition_id: str
    question_id: str
    up_token: str
    down_token: str
    settlement: str
    listed_at: float
    p2b_at: float
    closed_at: float
    resolved_at: float | None  # None: this window never resolves (unresolved fraction)
    winner_at: float | None
    final_at: float

    @property
    def tokens(self) -> tuple[str, str]:
        return self.up_token, self.down_token

    @property
    def question(self) -> str:
        name = NAMES.get(self.symbol, self.symbol)
        a = datetime.fromtimestamp(self.start, _ET)
        b = datetime.fromtimestamp(self.end, _ET)
        fmt = "%I:%M%p" if self.window_s >= 60 else "%I:%M:%S%p"
        day = a.strftime("%B ") + str(a.day)
        return f"{name} Up or Down - {day}, {a.strftime(fmt).lstrip('0')}-{b.strftime(fmt).lstrip('0')} ET"

    @property
    def resolution_source(self) -> str:
        a = self.symbol.lower()
        if self.settlement.startswith("binance"):
            return f"https://www.binance.com/en/trade/{self.symbol}_USDT"
        if self.settlement == "twap60":
            return f"https://data.chain.link/streams/{a}-usd-twap-60s-streams"
        return f"https://data.chain.link/streams/{a}-usd"

    @property
    def description(self) -> str:
        name = NAMES.get(self.symbol, self.symbol)
        pair = f"{self.symbol}/USDT"
        if self.settlement == "binance1h":  # the venue's text (docs/venue.md §2.2)
            return (f'This market will resolve to "Up" if the close price is greater than or equal '
                    f"to the open price for the {pair} 1 hour candle that begins on the time and "
                    'date specified in the title. Otherwise, this market will resolve to "Down".\n\n'
                    "The resolution source for this market is information from Binance, "
                    f"specifically the {pair} pair ({self.resolution_source}). The close « C » "
                    "and open « O » displayed at the top of the graph for the relevant \"1H\" "
                    "candle will be used once the data for that candle is finalized.")
        if self.settlement == "binance_noon":  # docs/venue.md §2.3
            day = "the day before"
            return (f'This market will resolve to "Up" if the "Close" price for the Binance 1 '
                    f"minute candle for {pair} {day} 12:00 in the ET timezone (noon) is lower "
                    'than the final "Close" price for the 12:00 ET candle of the title\'s day.\n\n'
                    'If the final "Close" price for both of these candles is exactly equal on '
                    "Binance, this market will resolve 50-50.\n\nThe resolution source for this "
                    f"market is Binance, specifically the {pair} \"Close\" prices currently "
                    f"available at {self.resolution_source} with \"1m\" and \"Candles\" selected.")
        if self.settlement == "twap60":
            rule = (f'This market will resolve to "Up" if the time-weighted average price (TWAP) of '
                    f"{name}, generated by Chainlink, of the time range specified in the title is "
                    "greater than or equal to the price at the beginning of that range. Otherwise, "
                    'it will resolve to "Down".')
        else:
            rule = (f'This market will resolve to "Up" if the {name} price at the end of the time '
                    "range specified in the title is greater than or equal to the price at the "
                    'beginning of that range. Otherwise, it will resolve to "Down".')
        return f"{rule} The resolution source for this market is {self.resolution_source}."


@dataclass
class WindowData:
    """Everything about one window at 1-second resolution (computed once, cached)."""

    market: Market
    spot_t0: int  # first second of ``spot``
    spot: np.ndarray  # spot from start - 70 (- the shift's lag, sim/shift.py) to end
    settle: np.ndarray  # settlement series, start..end
    p2b: float
    spot_p2b: float
    final: float
    spot_final: float
    up: bool
    oracle: np.ndarray  # P(Up) at start..end
    books: WindowBooks  # index 0 = before the start (quoted at 0.5), then start..end

    def at(self, t: int) -> int:
        """Index into ``books`` for wall second t (clamped: frozen after the end)."""
        m = self.market
        return int(np.clip(t - m.start + 1, 0, m.window_s + 1))

    def oracle_at(self, t: int) -> float:
        m = self.market
        return float(self.oracle[int(np.clip(t - m.start, 0, m.window_s))])


class World:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.families = config.fams
        self.time_scale = config.time_scale
        # each family's (scaled) nominal length; ``window_s`` is the primary family's (the
        # single-family callers': backfill, runner, control)
        self.lengths = {f: venue.scaled_seconds(f, config.time_scale) for f in self.families}
        self.window_s = self.lengths[config.family]
        self.tick_s = min(self.lengths.values())  # the shortest window: prefetch cadence
        self.scale = self.window_s / venue.REAL_WINDOW_S  # venue delays are measured on 15m
        self.symbols = config.all_symbols
        self.shift = config.shift_spec  # a regime shift (sim/shift.py); none by default
        self.prices = PriceModel(config.seed, self.symbols, self.shift)
        self._markets: dict[tuple[str, str, int], Market] = {}
        self.by_token: dict[str, tuple[Market, int]] = {}  # token -> (market, outcome index)
        self.by_condition: dict[str, Market] = {}
        self._windows: dict[tuple[str, str, int], WindowData] = {}
        self._flows: dict[tuple[str, str, int], Flow] = {}
        # the server prefetches windows (and their markets) from a worker thread; each
        # AssetPath guards its own caches
        self._lock = threading.RLock()

    # ---- markets --------------------------------------------------------------------------
    def market(self, symbol: str, start: int, family: str | None = None) -> Market:
        """The market of ``symbol``'s window of ``family`` (default: the primary) at ``start``."""
        symbol = symbol.upper()
        fam = family or self.config.family
        key = (fam, symbol, int(start))
        got = self._markets.get(key)
        if got is not None:
            return got
        if fam not in self.lengths or self.bounds(start, fam)[0] != start:
            raise ValueError(f"start {start} is not a {fam} window start")
        with self._lock:  # the prefetch worker creates markets too: one object per key
            return self._markets.get(key) or self._new_market(symbol, int(start), fam)

    def tick_bounds(self, t: float) -> tuple[int, int]:
        """The window of the shortest family containing ``t`` (the prefetch cadence: every
        family's starts are among its starts)."""
        return self.bounds(t, min(self.lengths, key=self.lengths.__getitem__))

    def bounds(self, t: float, family: str) -> tuple[int, int]:
        """(start, end) of ``family``'s window containing ``t``, on its (scaled) grid."""
        return venue.window_bounds(t, family, self.time_scale)

    def _new_market(self, symbol: str, start: int, fam: str) -> Market:
        key = (fam, symbol, start)
        cfg = self.config
        k = self.time_scale
        slug = venue.slug(symbol, fam, start, scale=k)
        end = self.bounds(start, fam)[1]
        window_s = self.lengths[fam]
        r = _rng(cfg.seed, asset_key(symbol), 3, window_s, int(start))
        u = r.random(6)
        sc = window_s / venue.REAL_WINDOW_S

        def d(lo_hi: tuple[float, float], x: float) -> float:
            return float(end + (lo_hi[0] + (lo_hi[1] - lo_hi[0]) * float(x)) * sc)

        unresolved = bool(u[5] < cfg.unresolved_fraction)
        resolved_at = None if unresolved else d(RESOLVE_DELAY, u[2])
        winner_at = None if resolved_at is None else max(resolved_at, d(WINNER_DELAY, u[3]))
        seed_tag = f"{cfg.seed}:{slug}"
        n = int(_digits(seed_tag + ":id", 7))
        m = Market(
            symbol=symbol, family=fam, window_s=window_s, start=int(start), end=end,
            slug=slug, event_id=str(100000 + n), market_id=str(1000000 + n),
            condition_id="0x" + hashlib.sha256((seed_tag + ":condition").encode()).hexdigest(),
            question_id="0x" + hashlib.sha256((seed_tag + ":question").encode()).hexdigest(),
            up_token=_digits(seed_tag + ":Up"), down_token=_digits(seed_tag + ":Down"),
            settlement=cfg.rule_of(fam),
            listed_at=float(start - cfg.list_ahead_windows * window_s),
            p2b_at=d(P2B_DELAY, u[0]), closed_at=d(CLOSED_DELAY, u[1]),
            resolved_at=resolved_at, winner_at=winner_at, final_at=d(FINAL_DELAY, u[4]),
        )
        self._markets[key] = m
        self.by_token[m.up_token] = (m, 0)
        self.by_token[m.down_token] = (m, 1)
        self.by_condition[m.condition_id] = m
        return m

    def market_by_slug(self, slug: str) -> Market | None:
        parsed = venue.parse_slug(slug, scale=self.time_scale)
        if not parsed:
            return None
        sym, fam, start = parsed
        if fam not in self.lengths or sym not in self.symbols or self.bounds(start, fam)[0] != start:
            return None
        return self.market(sym, start, fam)

    def markets_between(self, t0: float, t1: float, symbols: tuple[str, ...] | None = None,
                        families: tuple[str, ...] | None = None) -> list[Market]:
        """Markets whose window starts in [t0, t1], every symbol, every family (or those given)."""
        out = []
        for fam in families or self.families:
            for start in venue.starts_between(t0, t1, fam, self.time_scale):
                for s in symbols or self.symbols:
                    out.append(self.market(s, start, fam))
        return out

    def listed_horizon(self, now: float, family: str | None = None) -> int:
        """Latest window start of ``family`` (default: the primary) listed at ``now``."""
        fam = family or self.config.family
        return int(self.bounds(now, fam)[0] + self.config.list_ahead_windows * self.lengths[fam])

    def series_id(self, symbol: str, family: str | None = None) -> int:
        """The venue's series id for this asset's family (real ids for 15m BTC/ETH/SOL/XRP)."""
        fam = family or self.config.family
        if fam == "15m" and symbol in SERIES_IDS:
            return SERIES_IDS[symbol]
        return 20000 + 100 * list(venue.FAMILIES).index(fam) + self.symbols.index(symbol)

    def is_listed(self, m: Market, now: float) -> bool:
        return now >= m.listed_at

    # ---- prices -----------------------------------------------------------------------------
    def relay_delay(self, s: int) -> float:
        """Seconds after its stamp s that the relay publishes an observation (1.5 +- 0.3 s)."""
        u = ((s * 2654435761 + self.config.seed * 40503) % 1000003) / 1000003.0
        return self.config.relay_delay_s + (u - 0.5) * 0.6

    def path(self, symbol: str) -> AssetPath:
        return self.prices[symbol]

    @cached_property
    def vbar(self) -> dict[str, float]:
        """Each asset's long-run variance per second (what the maker assumes)."""
        return {s: self.path(s).p.vol_1m ** 2 / 60.0 for s in self.symbols}

    # ---- one window at 1 s resolution ----------------------------------------------------
    def window(self, m: Market) -> WindowData:
        key = (m.family, m.symbol, m.start)
        got = self._windows.get(key)
        if got is not None:
            return got
        with self._lock:
            got = self._windows.get(key)
            if got is not None:
                return got
            wd = self.compute_window(m)
            if len(self._windows) > 4000:
                self._windows.pop(next(iter(self._windows)))
            self._windows[key] = wd
            return wd

    def prefetch(self, start: int) -> None:
        """Compute every symbol's windows starting at ``start`` (called off the event loop)."""
        for fam in self.families:
            if self.bounds(start, fam)[0] == start:
                for s in self.symbols:
                    self.window(self.market(s, start, fam))

    def compute_window(self, m: Market, draws: Draws | None = None) -> WindowData:
        """One window at 1 s resolution, uncached (``window`` caches it); ``draws``: its
        ``draws(m.symbol, m.start)`` if the caller has them already."""
        path = self.path(m.symbol)
        shift = self.shift
        lag_end = int(shift.lag(m.end))  # > 0: settles on the TWAP lag_end s earlier (sim/shift.py)
        lag_max = max(lag_end, int(shift.lag(m.start)))  # --shift unlag: the start's, before it
        t0 = m.start - 70 - lag_max
        # the Binance candle rules read the path (the sim's Binance price is its spot path):
        # binance1h: open = the first second, close = the last second inside the window;
        # binance_noon: the close of the (scaled) minute candle opening at each noon, ``off``
        # seconds after it (its last second)
        off = max(1, round(60 / self.time_scale)) - 1 if m.settlement == "binance_noon" else 0
        spot = path.spot(t0, m.end + off)
        ts = np.arange(m.start, m.end + 1)
        if m.settlement == "twap60" and lag_max:
            settle = twap_of(spot)[ts - shift.lag(ts) - t0 - 59]
        elif m.settlement == "twap60":
            settle = twap_of(spot[m.start - 59 - t0: m.end - t0 + 1])
        elif m.settlement == "binance1h":
            settle = spot[m.start - t0: m.end - t0]  # seconds start .. end - 1
        else:  # spot, binance_noon
            settle = spot[m.start + off - t0: m.end + off - t0 + 1]
        p2b, final = float(settle[0]), float(settle[-1])
        # the settlement is decided at te (the TWAP stamped te is the final price); after te the
        # probability is that of a decided window (spot and the known sum frozen at te)
        te = m.end - lag_end + off - (m.settlement == "binance1h")
        tc = np.minimum(ts, te)
        v, lam, jvar = path.block_stats(m.start)
        rule = "twap60" if m.settlement == "twap60" else "spot"  # a candle close is a spot price
        profile = backload_weights() if shift.backloaded(m.start) else None  # --shift backload
        oracle = p_up(rule=rule, spot_t=spot[tc - t0], m=(te - tc).astype(float), v=v,
                      lam=lam, jvar=jvar, p2b=p2b, profile=profile,
                      known_sum=known_sum(spot, t0, tc, te) if m.settlement == "twap60" else 0.0)
        draws = draws or self.draws(m.symbol, m.start, m.window_s)
        p = regime_prob(self.config.book, oracle, lambda: maker_prob(
            rule=rule, spot=spot, spot_t0=t0, ts=np.minimum(ts, te + MAKER.lag_s), end=te,
            p2b=p2b, vbar=self.vbar[m.symbol], noise=draws.noise, v_regime=v + lam * jvar,
            profile=profile),
            lambda lead: oracle[np.minimum(np.arange(len(oracle)) + lead, len(oracle) - 1)])
        pts = np.concatenate([[m.start - 1], ts])
        pp = np.concatenate([[0.5], p])
        books = quote_books(pp, pts, m.start, m.window_s, draws)
        return WindowData(
            market=m, spot_t0=t0, spot=spot, settle=settle, p2b=p2b,
            spot_p2b=float(spot[m.start - t0]), final=final, spot_final=float(spot[m.end - t0]),
            # ties: Up (the daily rule's 50-50 tie never occurs on the sim's continuous prices)
            up=bool(final >= p2b), oracle=oracle, books=books,
        )

    def draws(self, symbol: str, start: int, window_s: int | None = None) -> Draws:
        """The maker's random numbers for one window (one RNG per window, fixed order)."""
        w = window_s or self.window_s
        r = _rng(self.config.seed, asset_key(symbol), 4, w, int(start))
        return draw_window(r, w)

    def flow(self, m: Market) -> Flow:
        """The window's trades (``sim/flow.py``): the prints the market channel sends."""
        key = (m.family, m.symbol, m.start)
        got = self._flows.get(key)
        if got is not None:
            return got
        wd = self.window(m)
        with self._lock:
            got = self._flows.get(key)
            if got is None:
                got = window_flow(self.config.seed, m.symbol, m.start, m.window_s, wd.books,
                                  wd.oracle, self.config.print_rate)
                if len(self._flows) > 4000:
                    self._flows.pop(next(iter(self._flows)))
                self._flows[key] = got
            return got

    def outcome_up(self, m: Market) -> bool:
        return self.window(m).up

    # ---- what the venue shows at wall time `now` ------------------------------------------
    def is_resolved(self, m: Market, now: float) -> bool:
        return m.resolved_at is not None and now >= m.resolved_at

    def book_levels(self, m: Market, t: int) -> tuple[dict, dict]:
        wd = self.window(m)
        return wd.books.levels(wd.at(t))

    def token_book(self, token: str, t: int) -> dict | None:
        """The book of one token at second t, best first: {'bids': [(cents, size)], 'asks': ...}."""
        got = self.by_token.get(token)
        if got is None:
            return None
        m, idx = got
        return self.book_levels(m, t)[idx]
