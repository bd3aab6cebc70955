"""Plain-Python reference of the feature contract for ONE window: the judge, not the workhorse.

Written to be read beside ``contract.py`` line by line: no vectorisation, no cleverness, float64.
Tests cross-check the DuckDB SQL against it, and serve/'s parity tests may use it as the spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

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


def _f(v: Any) -> float:
    """NULL -> NaN, else float."""
    return NAN if v is None else float(v)


def _minutes(ms: float, window_s: int) -> float:
    return SCALE_MINUTES * ms / (window_s * 1000)


def prev_outcome(prev: Mapping[str, Any] | None, decision_ms: int) -> tuple[float, int]:
    """(prev_up, prev_known_source) of the previous window's resolution row as known at D."""
    if prev is None:
        return NAN, PREV_UNKNOWN
    d_s = decision_ms / 1000.0
    if prev.get("resolved_up") is not None and prev.get("resolved_at") is not None \
            and prev["resolved_at"] < d_s:
        return (1.0 if prev["resolved_up"] else 0.0), PREV_OFFICIAL
    fp, ptb, seen = prev.get("final_price"), prev.get("price_to_beat"), prev.get("final_seen_at")
    if fp is not None and ptb is not None and seen is not None and seen < d_s:
        return (1.0 if fp >= ptb else 0.0), PREV_MEASURED
    return NAN, PREV_UNKNOWN


def move_sums(rows: Iterable[Mapping[str, Any]], window_s: int) -> tuple[float, float]:
    """(Q, T) of rows in tick order: the sum of squared increments of their non-missing moves
    and the scaled minutes those moves span; (0, 0) with fewer than two moves."""
    moves = [(x["tick_ms"], x["dir_move_pct"]) for x in rows if x["dir_move_pct"] is not None]
    if len(moves) < 2:
        return 0.0, 0.0
    q = sum((moves[i][1] - moves[i - 1][1]) ** 2 for i in range(1, len(moves)))
    return q, _minutes(moves[-1][0] - moves[0][0], window_s)


def closed_totals(rows: Iterable[Mapping[str, Any]], window_s: int, slot_ts: int) -> tuple[float, float]:
    """(Q, T) of prev_vol_k for one earlier window: ``move_sums`` of its closed rows
    (start <= tick < end)."""
    start, end = slot_ts * 1000, (slot_ts + window_s) * 1000
    return move_sums(sorted((x for x in rows if start <= x["tick_ms"] < end),
                            key=lambda x: x["tick_ms"]), window_s)


def features_at(
    rows_up_to_tick: Iterable[Mapping[str, Any]],
    prev_resolution: Mapping[str, Any] | None,
    decision_ms: int,
    stats: Mapping[str, Any] | None,
    *,
    earlier_rows: Iterable[Mapping[str, Any]] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    lookback: float = DEFAULT_LOOKBACK,
    contract: int | str = CONTRACT_VERSION,
) -> dict[str, Any] | None:
    """The feature dict (FEATURES order, float64, NaN = missing) of one window at instant
    ``decision_ms``, or None when the contract gives no row (no snapshot within tolerance).

    ``rows_up_to_tick``: that window's ``slot_snapshots`` rows as dicts (any order; rows after
    ``decision_ms`` or before the window start are ignored, so passing them is harmless).
    ``prev_resolution``: the previous window's ``slot_resolutions`` row (or None).
    ``earlier_rows``: snapshot rows of earlier windows, for prev_vol_k (any rows may be passed:
    only those of the same symbol and window_s, in the k windows before this one, are used).
    ``contract``: the feature-contract version whose asset table codes ``asset``.
    The result also carries ``tick_ms`` (the decision row's) under that key.
    """
    all_rows = list(rows_up_to_tick)
    if not all_rows:
        return None
    symbol = all_rows[0]["symbol"]
    window_s = int(all_rows[0]["window_s"])
    start = int(all_rows[0]["slot_ts"]) * 1000
    rows = sorted((r for r in all_rows if start <= r["tick_ms"] <= decision_ms),
                  key=lambda r: r["tick_ms"])
    if not rows:
        return None
    r = rows[-1]
    if decision_ms - r["tick_ms"] > frac_ms(tolerance, window_s):
        return None

    move = _f(r["dir_move_pct"])
    minutes_into = _minutes(r["tick_ms"] - start, window_s)
    minutes_left = SCALE_MINUTES - minutes_into
    bid_up, ask_up = _f(r["bid_up"]), _f(r["ask_up"])
    bid_down, ask_down = _f(r["bid_down"]), _f(r["ask_down"])
    spread_up, spread_down = ask_up - bid_up, ask_down - bid_down  # NaN propagates

    def ratio(a: float, b: float) -> float:
        return NAN if math.isnan(a) or math.isnan(b) or b == 0 else a / b

    def imbalance(bid_size: Any, ask_size: Any) -> float:
        if bid_size is None or ask_size is None or bid_size + ask_size == 0:
            return NAN
        return (bid_size - ask_size) / (bid_size + ask_size)

    # move_velocity: the last row at or before D - lookback
    back = decision_ms - frac_ms(lookback, window_s)
    earlier = [x for x in rows if x["tick_ms"] <= back]
    velocity = NAN
    if earlier:
        lrow = earlier[-1]
        if lrow["dir_move_pct"] is not None and not math.isnan(move) and lrow is not r:
            velocity = (move - lrow["dir_move_pct"]) / _minutes(r["tick_ms"] - lrow["tick_ms"], window_s)

    # realised_vol over the non-missing moves so far (lead_blend_z reuses its sums)
    q_cur, t_cur = move_sums(rows, window_s)
    vol = math.sqrt(q_cur / t_cur) if t_cur > 0 else NAN

    sigma = NAN
    if stats:
        sigma = _f(stats.get("move_vol_per_min", {}).get(symbol, stats.get("default_move_vol_per_min")))
    move_z = NAN
    if not math.isnan(move) and not math.isnan(sigma) and sigma > 0 and minutes_left > 0:
        move_z = move / (sigma * math.sqrt(minutes_left))

    # lead_move_pct: the settlement move carried forward to the spot stream
    cp, ct = _f(r.get("chainlink_price")), _f(r.get("chainlink_twap"))
    lead = NAN
    if not math.isnan(move) and not math.isnan(cp) and not math.isnan(ct) and ct != 0:
        lead = ((1.0 + move / 100) * cp / ct - 1) * 100
    lead_z = NAN
    if not math.isnan(lead) and not math.isnan(sigma) and sigma > 0 and minutes_left > 0:
        lead_z = lead / (sigma * math.sqrt(minutes_left))

    # prev_vol_k: the closed rows of the k windows before this one
    slot_ts = start // 1000
    by_slot: dict[int, list[Mapping[str, Any]]] = {}
    for x in earlier_rows:
        if x["symbol"] == symbol and int(x["window_s"]) == window_s:
            by_slot.setdefault(int(x["slot_ts"]), []).append(x)
    regime: dict[str, float] = {}
    v4_sq = NAN  # the largest k's pooled vol, squared (lead_blend_z's prior)
    for k in REGIME_WINDOWS:
        q = t = 0.0
        for j in range(1, k + 1):
            dq, dt = closed_totals(by_slot.get(slot_ts - j * window_s, []), window_s, slot_ts - j * window_s)
            q, t = q + dq, t + dt
        ok = t > 0 and not math.isnan(sigma) and sigma > 0
        regime[f"prev_vol_{k}"] = math.sqrt(q / t) / sigma if ok else NAN
        v4_sq = q / t if t > 0 else NAN

    def lead_over(v: float) -> float:
        ok = not math.isnan(lead) and not math.isnan(v) and v > 0 and minutes_left > 0
        return lead / (v * math.sqrt(minutes_left)) if ok else NAN

    prior_q, prior_t = (0.0, 0.0) if math.isnan(v4_sq) else (PRIOR_MINUTES * v4_sq, PRIOR_MINUTES)
    blend = math.sqrt((q_cur + prior_q) / (t_cur + prior_t)) if t_cur + prior_t > 0 else NAN
    regime["lead_rv_z"] = lead_over(vol)
    regime["lead_blend_z"] = lead_over(blend)

    prev_up, prev_source = prev_outcome(prev_resolution, decision_ms)
    tick = r["tick_ms"]
    out = {
        "dir_move_pct": move,
        "abs_move_pct": abs(move),
        "spot_move_pct": _f(r["spot_move_pct"]),
        "minutes_into": minutes_into,
        "minutes_left": minutes_left,
        "bid_up": bid_up,
        "ask_up": ask_up,
        "bid_down": bid_down,
        "ask_down": ask_down,
        "up_mid": (bid_up + ask_up) / 2,
        "spread_up": spread_up,
        "spread_down": spread_down,
        "spread_ratio": ratio(spread_up, spread_down),
        "imbalance_up": imbalance(r["bid_size_up"], r["ask_size_up"]),
        "imbalance_down": imbalance(r["bid_size_down"], r["ask_size_down"]),
        "move_velocity": velocity,
        "realised_vol": vol,
        "move_z": move_z,
        "lead_move_pct": lead,
        "lead_move_z": lead_z,
        **regime,
        "snapshot_count": float(len(rows)),
        "hour": float((tick // 3_600_000) % 24),
        "weekday": float((tick // 86_400_000 + 3) % 7),
        "asset": float(codes[symbol]) if symbol in (codes := asset_codes(contract)) else NAN,
        "prev_up": prev_up,
        "prev_known_source": float(prev_source),
    }
    assert tuple(out) == FEATURES
    out["tick_ms"] = tick
    return out
