"""Hand-made windows at the contract's edges: ASOF tolerance, lookback, scaling, calendar,
the previous window's outcome branches, NaN for empty book sides."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import duckdb
import pytest

from slotml.features.build import build_training_set
from slotml.features.contract import parse_points
from slotml.features.reference import features_at
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
from tests.features.helpers import create_tables, insert, keyed, snap

S = 1_795_392_000  # 2026-11-23 00:00 UTC, a Monday
P5 = 5 / 15


def _build(snaps: list[dict], res: list[dict] | None = None, points=(P5,), **kw) -> dict:
    con = duckdb.connect()
    create_tables(con)
    insert(con, SNAPSHOTS, snaps)
    insert(con, RESOLUTIONS, res or [])
    return keyed(build_training_set(con, points, kw.pop("stats", None), float64=True, **kw))


def _one(snaps: list[dict], res: list[dict] | None = None, **kw) -> dict | None:
    rows = _build(snaps, res, **kw)
    assert len(rows) <= 1
    return next(iter(rows.values()), None)


def test_monday_is_zero_from_a_monday() -> None:
    assert datetime.fromtimestamp(S, UTC).weekday() == 0


@pytest.mark.parametrize(("offset_ms", "kept"), [
    (240_000, True),  # exactly D - tolerance (1/15 of 900 s = 60 s): inclusive
    (239_999, False),  # 1 ms older than the tolerance: no row
    (300_000, True),  # exactly at D
])
def test_asof_tolerance_edges(offset_ms: int, kept: bool) -> None:
    got = _one([snap("BTC", S, S * 1000 + offset_ms), snap("BTC", S, S * 1000)])
    if kept:
        assert got is not None and got["tick_ms"] == S * 1000 + offset_ms
    else:
        assert got is None


def test_a_row_after_the_decision_is_never_used() -> None:
    """Latest at or before D, never 'nearest': D + 1 ms loses to D - 59 s, and alone gives nothing."""
    d = S * 1000 + 300_000
    got = _one([snap("BTC", S, d + 1, bid_up=0.9, ask_up=0.95), snap("BTC", S, d - 59_000)])
    assert got["tick_ms"] == d - 59_000 and got["bid_up"] == 0.55
    assert _one([snap("BTC", S, d + 1)]) is None


def test_rows_before_the_window_start_are_not_window_rows() -> None:
    pre = snap("BTC", S, S * 1000 - 1)
    # within a wide tolerance of D = S + 60 s, but before the start: no row
    assert _one([pre], points=(1 / 15,), tolerance=2 / 15) is None
    got = _one([pre, snap("BTC", S, S * 1000)], points=(1 / 15,), tolerance=2 / 15)
    assert got["snapshot_count"] == 1


def test_short_windows_scale_to_fifteen_minutes() -> None:
    s, w = S + 7, 9  # a 9 s sim window: D = 3000 ms in, tolerance 600 ms, lookback 1200 ms
    rows = [snap("ETH", s, s * 1000 + 600, window_s=w, dir_move_pct=0.1),
            snap("ETH", s, s * 1000 + 1800, window_s=w, dir_move_pct=0.2),
            snap("ETH", s, s * 1000 + 2400, window_s=w, dir_move_pct=0.4)]
    got = _one(rows)
    assert got["tick_ms"] == s * 1000 + 2400
    assert got["minutes_into"] == pytest.approx(4.0) and got["minutes_left"] == pytest.approx(11.0)
    # lookback: last row at or before D - 1200 = 1800 ms -> the 1800 ms row, 600 ms = 1 min apart
    assert got["move_velocity"] == pytest.approx((0.4 - 0.2) / 1.0)
    assert _one([snap("ETH", s, s * 1000 + 2399, window_s=w)]) is None


def test_lookback_row_is_inclusive_and_counted_from_the_decision_instant() -> None:
    base = S * 1000
    rows = [snap("BTC", S, base, dir_move_pct=0.0), snap("BTC", S, base + 180_000, dir_move_pct=0.1),
            snap("BTC", S, base + 300_000, dir_move_pct=0.3)]
    assert _one(rows)["move_velocity"] == pytest.approx(0.2 / 2.0)
    rows[1]["tick_ms"] += 1  # now newer than tick - 120 s: the start row is the lookback
    assert _one(rows)["move_velocity"] == pytest.approx(0.3 / 5.0)
    assert math.isnan(_one(rows[2:])["move_velocity"])  # no row old enough
    # counted from D, not from the (older) decision row: D - 120 s = 180 s exactly
    rows = [snap("BTC", S, base + 150_000, dir_move_pct=0.0),
            snap("BTC", S, base + 180_000, dir_move_pct=0.1),
            snap("BTC", S, base + 290_000, dir_move_pct=0.3)]
    assert _one(rows)["move_velocity"] == pytest.approx(0.2 / (110 / 60))
    # a tolerance wider than the lookback can make l the decision row itself: NaN, not 0/0
    assert math.isnan(_one(rows[:2], tolerance=3 / 15)["move_velocity"])


def test_realised_vol_definition() -> None:
    base = S * 1000
    moves = [(0, 0.0), (30_000, None), (60_000, 0.2), (90_000, 0.1), (300_000, None)]
    got = _one([snap("BTC", S, base + t, dir_move_pct=m) for t, m in moves])
    # non-missing moves 0.0@0s, 0.2@60s, 0.1@90s: (0.04 + 0.01) / 1.5 min
    assert got["realised_vol"] == pytest.approx(math.sqrt(0.05 / 1.5))
    assert math.isnan(got["dir_move_pct"]) and math.isnan(got["move_z"])
    assert got["snapshot_count"] == 5


def test_empty_book_sides_are_nan_never_zero() -> None:
    got = _one([snap("BTC", S, S * 1000 + 300_000, bid_up=None, bid_size_up=None, ask_down=None,
                     ask_size_down=None, spread_up=None, spread_down=None)])
    for name in ("bid_up", "up_mid", "spread_up", "spread_down", "spread_ratio", "imbalance_up",
                 "ask_down", "imbalance_down"):
        assert math.isnan(got[name]), name
    assert got["ask_up"] == 0.56 and got["bid_down"] == 0.44
    full = _one([snap("BTC", S, S * 1000 + 300_000, bid_size_up=0.0, ask_size_up=0.0)])
    assert math.isnan(full["imbalance_up"])  # 0 / 0
    assert full["imbalance_down"] == pytest.approx((80 - 120) / 200)
    assert full["up_mid"] == pytest.approx(0.555) and full["spread_ratio"] == pytest.approx(1.0)


def test_move_z_uses_the_fitted_sigma() -> None:
    stats = {"move_vol_per_min": {"BTC": 0.05}, "default_move_vol_per_min": 0.1}
    rows = [snap("BTC", S, S * 1000 + 300_000, dir_move_pct=0.2),
            snap("XYZ", S, S * 1000 + 300_000, dir_move_pct=0.2)]
    got = _build(rows, stats=stats)
    assert got[("BTC", 900, S, P5)]["move_z"] == pytest.approx(0.2 / (0.05 * math.sqrt(10)))
    assert got[("XYZ", 900, S, P5)]["move_z"] == pytest.approx(0.2 / (0.1 * math.sqrt(10)))
    assert got[("BTC", 900, S, P5)]["asset"] == 0 and math.isnan(got[("XYZ", 900, S, P5)]["asset"])
    assert math.isnan(_one(rows[:1])["move_z"])  # no stats


def test_hour_and_weekday_monday_zero() -> None:
    """Across a week boundary, against Python's calendar (DuckDB's dayofweek counts from Sunday)."""
    slots = sorted({S - 900 * k for k in range(8)} | {S + 86_400 * d + 3600 * h
                                                      for d in range(7) for h in (0, 13, 23)})
    got = _build([snap("BTC", s, s * 1000 + 300_000) for s in slots])
    assert len(got) == len(slots)
    for row in got.values():
        dt = datetime.fromtimestamp(row["tick_ms"] / 1000, UTC)
        assert (row["weekday"], row["hour"]) == (dt.weekday(), dt.hour), dt
    con = duckdb.connect()
    assert con.execute(f"SELECT isodow(make_timestamp({S * 1_000_000})) - 1").fetchone()[0] == 0
    assert con.execute(f"SELECT dayofweek(make_timestamp({S * 1_000_000}))").fetchone()[0] == 1
    assert {r["weekday"] for r in got.values()} == set(range(7))


def _res(slot: int, **kw) -> dict:
    return {"symbol": "BTC", "window_s": 900, "slot_ts": slot, "price_to_beat": 100.0, **kw}


@pytest.mark.parametrize(("prev", "want"), [
    (None, (math.nan, 0)),  # no row for the previous window
    (_res(S - 900), (math.nan, 0)),  # nothing known
    (_res(S - 900, resolved_up=False, resolved_at=S + 299.999), (0.0, 2)),  # official, in time
    (_res(S - 900, resolved_up=False, resolved_at=S + 300.0), (math.nan, 0)),  # at D: not yet
    (_res(S - 900, resolved_up=False, resolved_at=S + 300.0, final_price=100.0,
          final_seen_at=S + 10.0), (1.0, 1)),  # measured: final >= price_to_beat is Up
    (_res(S - 900, resolved_up=None, resolved_at=S + 10.0, final_price=99.0,
          final_seen_at=S + 10.0), (0.0, 1)),  # resolved_at without an outcome is not official
    (_res(S - 900, final_price=101.0, final_seen_at=S + 300.0), (math.nan, 0)),  # seen at D
    (_res(S - 900, final_price=101.0, final_seen_at=S, price_to_beat=None), (math.nan, 0)),
    (_res(S - 1800, resolved_up=True, resolved_at=S - 100.0), (math.nan, 0)),  # not the previous
])
def test_previous_window_as_known_at_the_decision(prev: dict | None, want: tuple) -> None:
    rows = [snap("BTC", S, S * 1000 + 300_000)]
    got = _one(rows, [prev] if prev else [])
    have = (got["prev_up"], got["prev_known_source"])
    assert (math.isnan(have[0]) and math.isnan(want[0])) or have[0] == want[0]
    assert have[1] == want[1]
    ref = features_at(rows, prev if prev and prev["slot_ts"] == S - 900 else None,
                      S * 1000 + 300_000, None)
    assert ref["prev_known_source"] == want[1]


def test_parse_points() -> None:
    assert parse_points("10/15, 5/15,7/15") == (5 / 15, 7 / 15, 10 / 15)
    assert parse_points("0.5") == (0.5,)
    for bad in ("", "0", "15/15", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_points(bad)


def test_bad_fractions_are_refused() -> None:
    con = duckdb.connect()
    create_tables(con)
    with pytest.raises(ValueError):
        build_training_set(con, points=(1.2,))
    with pytest.raises(ValueError):
        build_training_set(con, points=())
    assert build_training_set(con).num_rows == 0  # an empty lake gives an empty set


def test_duplicate_snapshot_keys_are_refused_not_duplicated() -> None:
    row = snap("BTC", S, S * 1000 + 300_000)
    assert _one([row]) is not None
    with pytest.raises(ValueError, match="duplicate"):
        _build([row, {**row, "bid_up": 0.5}])


def test_a_window_key_that_cannot_be_encoded_is_refused() -> None:
    with pytest.raises(ValueError, match="window_s outside"):
        _build([snap("BTC", S, S * 1000 + 300_000, window_s=2_000_000)])
