"""Online features: the feature contract computed incrementally, live, from snapshot rows.

The bot feeds the SAME rows the collector writes (``slotml.ingest.snapshot.make_snapshot``'s
dicts, on the same 30 s grid) and the previous windows' resolution updates, each with the time
it became known. ``vector_at(decision_ms)`` then yields the float32 vector that features/
computes offline for that instant (features/contract.py is the definition, features/reference.py
the judge the parity tests hold us to).

Each row update is O(1): the per-row part of the vector is computed once when the row arrives,
and running sums (squared move increments, counts) are kept as prefixes, so a decision at any
instant reads the last row at or before it (bisect over at most ~30 rows) and combines a handful
of numbers instead of recomputing the window.

A bot started cold warms itself from the recent history (``OnlineFeatures.warm``, fed by
``slotml.ingest.store.query.recent_rows``): the regime features read ``warm_span(window_s)``
seconds back, and without those rows they stay NaN until that much time has passed live.

About 515 lines, one module: the per-window state and the builder over windows share the
prefix sums; it is the serving side of features/reference.py and is read beside it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from slotml.features.contract import (
    CONTRACT_VERSION,
    DEFAULT_LOOKBACK,
    DEFAULT_TOLERANCE,
    FEATURES,
    PREV_MEASURED,
    PREV_OFFICIAL,
    PREV_UNKNOWN,
    PRIOR_MINUTES,
    REGIME_WINDOWS,
    SCALE_MINUTES,
    asset_codes,
    frac_ms,
)

NAN = float("nan")
N_FEATURES = len(FEATURES)
IDX = {name: i for i, name in enumerate(FEATURES)}
_I = IDX  # short alias for the hot paths below
_REGIME_NAMES = tuple(f"prev_vol_{k}" for k in REGIME_WINDOWS)
_NO_REGIME = ((0.0, 0.0),) * len(REGIME_WINDOWS)


def warm_span(window_s: int) -> int:
    """Seconds of history the features read at a decision in a ``window_s`` family: the
    current window and the ``max(REGIME_WINDOWS)`` before it (prev_vol_k pools them; prev_up's
    window is the last of them). Derived from the contract, so a longer regime window widens it."""
    return (max(REGIME_WINDOWS) + 1) * int(window_s)


def _known_part(row: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The fields of a store's ``slot_resolutions`` row known at ``now``, by the row's own
    times: the outcome once ``resolved_at <= now``, the measured final price once
    ``final_seen_at <= now``, the price to beat once the window has started. A field whose
    time is missing is left out (when it became known cannot be told)."""
    out: dict[str, Any] = {k: row.get(k) for k in ("symbol", "window_s", "slot_ts")}
    ra, seen = _opt(row.get("resolved_at")), _opt(row.get("final_seen_at"))
    if row.get("resolved_up") is not None and ra is not None and ra <= now:
        out["resolved_up"], out["resolved_at"] = row["resolved_up"], ra
    if _opt(row.get("final_price")) is not None and seen is not None and seen <= now:
        out["final_price"], out["final_seen_at"] = row["final_price"], seen
    if int(row["slot_ts"]) <= now:
        out["price_to_beat"] = row.get("price_to_beat")
    return out


def _f(v: Any) -> float:
    """NULL (None) -> NaN, else float."""
    return NAN if v is None else float(v)


def _opt(v: Any) -> float | None:
    """A value as float, with None and NaN both meaning missing (None)."""
    if v is None:
        return None
    v = float(v)
    return None if v != v else v


def _minutes(ms: float, window_s: int) -> float:
    return SCALE_MINUTES * ms / (window_s * 1000)


def _ratio(a: float, b: float) -> float:
    return NAN if a != a or b != b or b == 0 else a / b


def _imbalance(bid_size: float | None, ask_size: float | None) -> float:
    if bid_size is None or ask_size is None or bid_size + ask_size == 0:
        return NAN
    return (bid_size - ask_size) / (bid_size + ask_size)


@dataclass
class PrevResolution:
    """What is known about one window's resolution, column by column (never blanked)."""

    resolved_up: bool | None = None
    resolved_at: float | None = None
    final_price: float | None = None
    price_to_beat: float | None = None
    final_seen_at: float | None = None

    def merge(self, row: Mapping[str, Any], known_at: float | None = None) -> None:
        """Take the non-missing fields of a ``slot_resolutions`` row (or a partial update).

        ``known_at`` (epoch s) stamps fields whose own "seen" time the update lacks: the
        official outcome's ``resolved_at`` and the measured ``final_seen_at``.
        """
        ru = row.get("resolved_up")
        if ru is not None and not (isinstance(ru, float) and ru != ru):
            self.resolved_up = bool(ru)
            ra = _opt(row.get("resolved_at"))
            if ra is None and self.resolved_at is None:
                ra = known_at
            if ra is not None and self.resolved_at is None:
                self.resolved_at = ra
        for name in ("final_price", "price_to_beat"):
            v = _opt(row.get(name))
            if v is not None:
                setattr(self, name, v)
        seen = _opt(row.get("final_seen_at"))
        if seen is None and self.final_price is not None and self.final_seen_at is None:
            seen = known_at
        if seen is not None and self.final_seen_at is None:
            self.final_seen_at = seen

    def outcome_at(self, decision_ms: int) -> tuple[float, int]:
        """(prev_up, prev_known_source) as known at instant ``decision_ms`` (contract's prev_up)."""
        d_s = decision_ms / 1000.0
        if self.resolved_up is not None and self.resolved_at is not None and self.resolved_at < d_s:
            return (1.0 if self.resolved_up else 0.0), PREV_OFFICIAL
        fp, ptb, seen = self.final_price, self.price_to_beat, self.final_seen_at
        if fp is not None and ptb is not None and seen is not None and seen < d_s:
            return (1.0 if fp >= ptb else 0.0), PREV_MEASURED
        return NAN, PREV_UNKNOWN


class WindowState:
    """One window's rows so far and the running sums the contract's features need."""

    __slots__ = (
        "symbol", "window_s", "slot_ts", "start_ms", "tol_ms", "lb_ms", "sigma", "asset",
        "ticks", "static", "moves", "cum_sq", "n_moves", "last_move_tick", "first_move_tick",
        "rows", "leads", "_closed",
    )

    def __init__(self, symbol: str, window_s: int, slot_ts: int,
                 stats: Mapping[str, Any] | None = None, *,
                 tolerance: float = DEFAULT_TOLERANCE, lookback: float = DEFAULT_LOOKBACK,
                 codes: Mapping[str, int] | None = None) -> None:
        self.symbol = symbol
        self.window_s = int(window_s)
        self.slot_ts = int(slot_ts)
        self.start_ms = self.slot_ts * 1000
        self.tol_ms = frac_ms(tolerance, self.window_s)
        self.lb_ms = frac_ms(lookback, self.window_s)
        sigma = NAN
        if stats:
            sigma = _f(stats.get("move_vol_per_min", {}).get(symbol, stats.get("default_move_vol_per_min")))
        self.sigma = sigma
        codes = asset_codes() if codes is None else codes  # the model's contract's table
        self.asset = float(codes[symbol]) if symbol in codes else NAN
        self.ticks: list[int] = []
        self.static: list[np.ndarray] = []  # per row: float32 features that depend on that row only
        self.moves: list[float | None] = []
        self.cum_sq: list[float] = []  # sum of squared increments of non-missing moves, to row i
        self.n_moves: list[int] = []  # non-missing moves among rows 0..i
        self.last_move_tick: list[int] = []  # tick of the last non-missing move among rows 0..i
        self.first_move_tick: int | None = None
        self.rows: list[Mapping[str, Any]] = []
        self.leads: list[float] = []  # per row: lead_move_pct in float64 (the z features divide it)
        self._closed: tuple[float, float] | None = None  # closed_totals(), until a row changes it

    def __len__(self) -> int:
        return len(self.ticks)

    # -- updates ------------------------------------------------------------------------------
    def add_snapshot(self, row: Mapping[str, Any]) -> bool:
        """Add one ``slot_snapshots`` row of this window. O(1) for rows in tick order.

        Returns False (ignored) for a row stamped before the window start, as the contract
        says. A row for an existing tick replaces it; an out-of-order row is inserted (the
        running sums after it are recomputed: rare, and at most one window's rows).
        """
        tick = int(row["tick_ms"])
        if tick < self.start_ms:
            return False
        if self.ticks and tick <= self.ticks[-1]:
            self._insert(row)
            return True
        self._append(row, tick)
        return True

    def _append(self, row: Mapping[str, Any], tick: int) -> None:
        self._closed = None
        move = _opt(row.get("dir_move_pct"))
        i = len(self.ticks)
        cum = self.cum_sq[-1] if i else 0.0
        n = self.n_moves[-1] if i else 0
        last_tick = self.last_move_tick[-1] if i else -1
        if move is not None:
            if n:
                # the previous non-missing move is the last one recorded
                prev = self._last_move_value()
                cum = cum + (move - prev) ** 2
            else:
                self.first_move_tick = tick
            n += 1
            last_tick = tick
        self.ticks.append(tick)
        self.moves.append(move)
        self.cum_sq.append(cum)
        self.n_moves.append(n)
        self.last_move_tick.append(last_tick)
        static, lead = self._static(row, tick, move)
        self.static.append(static)
        self.leads.append(lead)
        self.rows.append(row)

    def _last_move_value(self) -> float:
        for m in reversed(self.moves):
            if m is not None:
                return m
        raise AssertionError("n_moves > 0 but no move recorded")

    def _insert(self, row: Mapping[str, Any]) -> None:
        tick = int(row["tick_ms"])
        rows = [r for r, t in zip(self.rows, self.ticks, strict=True) if t != tick] + [row]
        rows.sort(key=lambda r: int(r["tick_ms"]))
        for name in ("ticks", "static", "moves", "cum_sq", "n_moves", "last_move_tick", "rows", "leads"):
            setattr(self, name, [])
        self.first_move_tick = None
        for r in rows:
            self._append(r, int(r["tick_ms"]))

    def _static(self, row: Mapping[str, Any], tick: int, move: float | None) -> tuple[np.ndarray, float]:
        """(the row-only features as float32, lead_move_pct in float64)."""
        v = [NAN] * N_FEATURES
        m = NAN if move is None else move
        minutes_into = _minutes(tick - self.start_ms, self.window_s)
        minutes_left = SCALE_MINUTES - minutes_into
        bid_up, ask_up = _f(_opt(row.get("bid_up"))), _f(_opt(row.get("ask_up")))
        bid_down, ask_down = _f(_opt(row.get("bid_down"))), _f(_opt(row.get("ask_down")))
        spread_up, spread_down = ask_up - bid_up, ask_down - bid_down
        v[_I["dir_move_pct"]] = m
        v[_I["abs_move_pct"]] = abs(m)
        v[_I["spot_move_pct"]] = _f(_opt(row.get("spot_move_pct")))
        v[_I["minutes_into"]] = minutes_into
        v[_I["minutes_left"]] = minutes_left
        v[_I["bid_up"]] = bid_up
        v[_I["ask_up"]] = ask_up
        v[_I["bid_down"]] = bid_down
        v[_I["ask_down"]] = ask_down
        v[_I["up_mid"]] = (bid_up + ask_up) / 2
        v[_I["spread_up"]] = spread_up
        v[_I["spread_down"]] = spread_down
        v[_I["spread_ratio"]] = _ratio(spread_up, spread_down)
        v[_I["imbalance_up"]] = _imbalance(_opt(row.get("bid_size_up")), _opt(row.get("ask_size_up")))
        v[_I["imbalance_down"]] = _imbalance(_opt(row.get("bid_size_down")), _opt(row.get("ask_size_down")))
        sigma = self.sigma
        v[_I["move_z"]] = (m / (sigma * math.sqrt(minutes_left))
                           if m == m and sigma == sigma and sigma > 0 and minutes_left > 0 else NAN)
        cp, ct = _opt(row.get("chainlink_price")), _opt(row.get("chainlink_twap"))
        lead = (((1.0 + m / 100) * cp / ct - 1) * 100
                if m == m and cp is not None and ct is not None and ct != 0 else NAN)
        v[_I["lead_move_pct"]] = lead
        v[_I["lead_move_z"]] = (lead / (sigma * math.sqrt(minutes_left))
                                if lead == lead and sigma == sigma and sigma > 0 and minutes_left > 0
                                else NAN)
        v[_I["hour"]] = float((tick // 3_600_000) % 24)
        v[_I["weekday"]] = float((tick // 86_400_000 + 3) % 7)
        v[_I["asset"]] = self.asset
        return np.array(v, dtype=np.float32), lead  # computed in float64, stored as the model reads it

    # -- reading ------------------------------------------------------------------------------
    def row_index_at(self, decision_ms: int) -> int:
        """Index of the decision row for instant ``decision_ms`` (-1: none within tolerance)."""
        ticks = self.ticks
        if not ticks:
            return -1
        i = len(ticks) - 1 if decision_ms >= ticks[-1] else bisect_right(ticks, decision_ms) - 1
        if i < 0 or decision_ms - ticks[i] > self.tol_ms:
            return -1
        return i

    def fill(self, out: np.ndarray, decision_ms: int, prev: PrevResolution | None,
             pooled: tuple[tuple[float, float], ...] = _NO_REGIME) -> bool:
        """Write the vector at ``decision_ms`` into ``out`` (float32 [n]); False if no row.

        ``pooled``: (sum Q_j, sum T_j) of the k earlier windows, per k in REGIME_WINDOWS (they
        read other windows: the caller has them, see ``OnlineFeatures.pooled``)."""
        i = self.row_index_at(decision_ms)
        if i < 0:
            return False
        v = self.static[i]
        tick = self.ticks[i]
        move = self.moves[i]
        # move_velocity: l = the last row at or before D - lookback (not r itself)
        velocity = NAN
        back = decision_ms - self.lb_ms
        if self.ticks[0] <= back:
            j = bisect_right(self.ticks, back, 0, i + 1) - 1
            lm = self.moves[j]
            if j != i and lm is not None and move is not None:
                velocity = (move - lm) / _minutes(tick - self.ticks[j], self.window_s)
        q_cur, t_cur = self._sums_to(i)
        vol = math.sqrt(q_cur / t_cur) if t_cur > 0 else NAN
        sigma = self.sigma
        q4, t4 = pooled[-1]  # the largest k: lead_blend_z's prior
        prior_q, prior_t = (PRIOR_MINUTES * (q4 / t4), PRIOR_MINUTES) if t4 > 0 else (0.0, 0.0)
        blend = math.sqrt((q_cur + prior_q) / (t_cur + prior_t)) if t_cur + prior_t > 0 else NAN
        lead = self.leads[i]
        left = SCALE_MINUTES - _minutes(tick - self.start_ms, self.window_s)
        prev_up, prev_src = prev.outcome_at(decision_ms) if prev is not None else (NAN, PREV_UNKNOWN)
        out[:] = v
        out[_I["move_velocity"]] = velocity
        out[_I["realised_vol"]] = vol
        out[_I["snapshot_count"]] = float(i + 1)
        for name, (q, t) in zip(_REGIME_NAMES, pooled, strict=True):
            out[_I[name]] = math.sqrt(q / t) / sigma if t > 0 and sigma > 0 else NAN
        ok = lead == lead and left > 0
        out[_I["lead_rv_z"]] = lead / (vol * math.sqrt(left)) if ok and vol > 0 else NAN
        out[_I["lead_blend_z"]] = lead / (blend * math.sqrt(left)) if ok and blend > 0 else NAN
        out[_I["prev_up"]] = prev_up
        out[_I["prev_known_source"]] = float(prev_src)
        return True

    def closed_totals(self) -> tuple[float, float]:
        """(Q, T) of prev_vol_k: squared move increments among the rows stamped before the
        window's end and the scaled minutes their moves span (0, 0 with fewer than two)."""
        if self._closed is None:
            self._closed = self._sums_to(bisect_left(self.ticks, self.start_ms + self.window_s * 1000) - 1)
        return self._closed

    def _sums_to(self, i: int) -> tuple[float, float]:
        """(Q, T) of rows 0..i: squared move increments and the scaled minutes the moves span
        (realised_vol's sums; 0, 0 with fewer than two moves or i < 0)."""
        if i < 0 or self.n_moves[i] < 2:
            return 0.0, 0.0
        return self.cum_sq[i], _minutes(self.last_move_tick[i] - self.first_move_tick, self.window_s)

    def row_at(self, decision_ms: int) -> Mapping[str, Any] | None:
        i = self.row_index_at(decision_ms)
        return None if i < 0 else self.rows[i]


class OnlineFeatures:
    """All live windows and the resolutions known so far: the bot's feature source.

    Build it from the model it feeds: ``OnlineFeatures.for_model(scorer)`` (or a
    ``ModelMeta``) takes the model's fitted statistics, tolerance, lookback and feature-contract
    version (its asset table), the values its training set was built with; after a model
    reload, ``set_model(scorer)``. The bare constructor takes them explicitly (tolerance and
    lookback default to the contract's and ``contract`` to the current version, for the manual
    filters, which have no model).

    prev_vol_k reads the last ``max(REGIME_WINDOWS)`` windows' rows: a bot that starts mid-hour
    calls ``warm`` with the store's recent rows first (``slotml.ingest.store.query.recent_rows``
    reads the ``warm_span``), else prev_vol_k are NaN (and lead_blend_z has no prior) until the
    windows have passed live. ``keep_windows`` (windows kept per symbol and family) must cover
    them plus the current and the next window.
    """

    def __init__(self, stats: Mapping[str, Any] | None = None, *, tolerance: float | None = None,
                 lookback: float | None = None, keep_windows: int = 6,
                 contract: int | str = CONTRACT_VERSION) -> None:
        self.stats = dict(stats or {})
        self.codes = asset_codes(contract)  # ValueError for a version this code does not know
        self.tolerance = float(DEFAULT_TOLERANCE if tolerance is None else tolerance)
        self.lookback = float(DEFAULT_LOOKBACK if lookback is None else lookback)
        if keep_windows < max(REGIME_WINDOWS) + 2:
            raise ValueError(f"keep_windows must be at least {max(REGIME_WINDOWS) + 2} "
                             "(prev_vol_k reads that many earlier windows)")
        self.keep_windows = keep_windows
        self.windows: dict[tuple[str, int, int], WindowState] = {}
        self.resolutions: dict[tuple[str, int, int], PrevResolution] = {}
        self._out = np.empty(N_FEATURES, dtype=np.float32)

    @classmethod
    def for_model(cls, model: Any, *, keep_windows: int = 6) -> OnlineFeatures:
        """The builder for a model: a ``Scorer`` or its ``ModelMeta`` (stats, tolerance and
        lookback from the model file)."""
        meta = getattr(model, "meta", model)
        return cls(meta.stats, tolerance=meta.tolerance, lookback=meta.lookback,
                   keep_windows=keep_windows, contract=meta.feature_contract)

    def set_model(self, model: Any) -> None:
        """After a model reload (a ``Scorer`` or ``ModelMeta``): take its statistics, tolerance,
        lookback, contract version, and rebuild the windows' derived parts from the rows held."""
        meta = getattr(model, "meta", model)
        self.codes = asset_codes(meta.feature_contract)
        self.tolerance = float(meta.tolerance)
        self.lookback = float(meta.lookback)
        self.set_stats(meta.stats)

    def set_stats(self, stats: Mapping[str, Any] | None) -> None:
        """New fitted statistics: rebuild the windows' derived parts (``set_model`` after a
        model reload: it also takes the model's tolerance and lookback)."""
        self.stats = dict(stats or {})
        old = self.windows
        self.windows = {}
        for w in old.values():
            for r in w.rows:
                self.add_snapshot(r)

    def window(self, symbol: str, window_s: int, slot_ts: int) -> WindowState:
        key = (symbol, int(window_s), int(slot_ts))
        w = self.windows.get(key)
        if w is None:
            w = WindowState(symbol, window_s, slot_ts, self.stats, tolerance=self.tolerance,
                            lookback=self.lookback, codes=self.codes)
            self.windows[key] = w
            self._prune(symbol, int(window_s), int(slot_ts))
        return w

    def _prune(self, symbol: str, window_s: int, slot_ts: int) -> None:
        horizon = slot_ts - self.keep_windows * window_s
        for store in (self.windows, self.resolutions):
            stale = [k for k in store if k[0] == symbol and k[1] == window_s and k[2] < horizon]
            for k in stale:
                del store[k]

    def add_snapshot(self, row: Mapping[str, Any]) -> bool:
        """Feed one snapshot row (``make_snapshot``'s dict). O(1)."""
        return self.window(row["symbol"], row["window_s"], row["slot_ts"]).add_snapshot(row)

    def add_resolution(self, row: Mapping[str, Any], known_at: float | None = None) -> None:
        """Feed a (partial) ``slot_resolutions`` row, with the time it became known (epoch s)."""
        key = (row["symbol"], int(row.get("window_s") or 900), int(row["slot_ts"]))
        res = self.resolutions.get(key)
        if res is None:
            res = self.resolutions[key] = PrevResolution()
        res.merge(row, known_at)

    def warm(self, rows: Iterable[Mapping[str, Any]],
             resolutions: Iterable[Mapping[str, Any] | tuple[Mapping[str, Any], float | None]],
             now: float) -> dict[str, int]:
        """Start warm: feed recent history as this builder would have seen it live at ``now``
        (epoch s), so the first decision after a start equals a bot's that ran all along.

        ``rows``: snapshot rows (``make_snapshot``'s dicts, as the store holds them); those
        captured after ``now`` (``captured_at``, else the tick) are skipped. ``resolutions``:
        ``slot_resolutions`` rows, each field counted only once known by the row's own times
        (``resolved_at``, ``final_seen_at``; the price to beat from the window start), or
        ``(row, known_at)`` pairs (what ``add_resolution`` takes), counted when
        ``known_at <= now``. Any order. Returns how many of each were fed and skipped.
        """
        now = float(now)
        fed, skipped = [], 0
        for r in rows:
            cap = _opt(r.get("captured_at"))
            if (int(r["tick_ms"]) / 1000.0 if cap is None else cap) <= now:
                fed.append(r)
            else:
                skipped += 1
        fed.sort(key=lambda r: (int(r["tick_ms"]), str(r["symbol"])))  # live order
        n_res = 0
        for item in resolutions:
            if isinstance(item, tuple):
                row, known = item
                if known is None or float(known) > now:
                    skipped += 1
                    continue
                self.add_resolution(row, known_at=float(known))
            else:
                self.add_resolution(_known_part(item, now))
            n_res += 1
        n_snap = sum(self.add_snapshot(r) for r in fed)
        return {"snapshots": n_snap, "resolutions": n_res, "skipped": skipped}

    def vector_at(self, symbol: str, window_s: int, slot_ts: int, decision_ms: int,
                  out: np.ndarray | None = None) -> np.ndarray | None:
        """The feature vector (float32, contract order) at ``decision_ms``, or None when the
        window has no snapshot within tolerance of that instant.

        Without ``out`` the returned array is an internal buffer, overwritten by the next call.
        """
        w = self.windows.get((symbol, int(window_s), int(slot_ts)))
        if w is None:
            return None
        buf = self._out if out is None else out
        prev = self.resolutions.get((symbol, int(window_s), int(slot_ts) - int(window_s)))
        return buf if w.fill(buf, decision_ms, prev, self.pooled(w)) else None

    def pooled(self, w: WindowState) -> tuple[tuple[float, float], ...]:
        """(sum Q_j, sum T_j) of the closed rows of the k windows before ``w``, per k in
        REGIME_WINDOWS (windows not held count as absent, as in the contract)."""
        out: list[tuple[float, float]] = []
        q = t = 0.0
        for j in range(1, max(REGIME_WINDOWS) + 1):
            earlier = self.windows.get((w.symbol, w.window_s, w.slot_ts - j * w.window_s))
            if earlier is not None:
                dq, dt = earlier.closed_totals()
                q, t = q + dq, t + dt
            if j in REGIME_WINDOWS:
                out.append((q, t))
        return tuple(out)


def vector_dict(vector: np.ndarray | None) -> dict[str, float | None]:
    """A vector as {feature: value} with NaN as None (for JSON decision logs)."""
    if vector is None:
        return {}
    return {n: (None if x != x else float(x)) for n, x in zip(FEATURES, vector.tolist(), strict=True)}
