"""Point in time: everything that became known after the decision instant can change at will
and no feature moves; something known before it does move them (so the test has teeth)."""

from __future__ import annotations

import dataclasses
import math
import random

import duckdb
import pyarrow as pa
import pytest

from slotml.features.build import build_training_set, fit_stats
from slotml.features.contract import DEFAULT_POINTS, FEATURES, frac_ms
from slotml.features.synth import SynthConfig, generate, load_into
from tests.features.helpers import keyed

ROUGH = SynthConfig(
    n_windows=16, p_missing=0.2, p_one_sided=0.1, p_null_move=0.1, p_unresolved=0.1,
    p_no_final=0.15, p_pre_row=0.1, jitter=True, symbols=("BTC", "ETH", "SOL"),
)
SNAP_VALUES = ("bid_up", "ask_up", "bid_down", "ask_down", "bid_size_up", "ask_size_up",
               "bid_size_down", "ask_size_down", "spread_up", "spread_down", "chainlink_price",
               "chainlink_twap", "dir_move_pct", "abs_move_pct", "spot_move_pct", "book_age_s")


def _tables(seed: int) -> tuple[pa.Table, pa.Table]:
    s1, r1 = generate(dataclasses.replace(ROUGH, seed=seed))
    s2, r2 = generate(dataclasses.replace(ROUGH, seed=seed + 1, window_s=12, n_windows=10))
    return pa.concat_tables([s1, s2]), pa.concat_tables([r1, r2])


def _decision_ms(slot_ts: int, window_s: int, p: float) -> int:
    return slot_ts * 1000 + frac_ms(p, window_s)


def _rand(rng: random.Random) -> float | None:
    return None if rng.random() < 0.2 else rng.uniform(-5, 5)


def _mutate_future(snaps: pa.Table, res: pa.Table, cut_ms: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """Rewrite whatever became known after instant ``cut_ms``, in every window (features of a
    window read earlier windows' rows, so "the future" is one instant for the whole lake)."""
    rng = random.Random(seed)
    cut_s = cut_ms / 1000.0
    out_snaps = []
    changed = 0
    for row in snaps.to_pylist():
        if row["tick_ms"] <= cut_ms:
            out_snaps.append(row)
            continue
        changed += 1
        if rng.random() < 0.3:
            continue  # a later snapshot disappears
        for c in SNAP_VALUES:
            row[c] = _rand(rng)
        out_snaps.append(row)
        if rng.random() < 0.3:  # and new ones appear
            out_snaps.append({**row, "tick_ms": row["tick_ms"] + 7, "dir_move_pct": _rand(rng)})
    assert changed > 20
    out_res = []
    for row in res.to_pylist():
        row["official_price_to_beat"] = _rand(rng)  # published long after: never known in time
        row["official_final_price"] = _rand(rng)
        row["prev_resolved_up"] = rng.choice([True, False, None])
        if row["resolved_at"] is None or row["resolved_at"] >= cut_s:
            row["resolved_up"] = rng.choice([True, False])
            row["resolved_at"] = max(row["resolved_at"] or cut_s, cut_s) + rng.uniform(0, 500)
        if row["final_seen_at"] is None or row["final_seen_at"] >= cut_s:
            row["final_price"] = rng.uniform(0, 2e5)
            row["final_seen_at"] = max(row["final_seen_at"] or cut_s, cut_s) + rng.uniform(0, 500)
        out_res.append(row)
    return (pa.Table.from_pylist(out_snaps, schema=snaps.schema),
            pa.Table.from_pylist(out_res, schema=res.schema))


def _features(snaps: pa.Table, res: pa.Table, p: float, stats: dict) -> dict:
    con = duckdb.connect()
    load_into(con, snaps, res)
    return keyed(build_training_set(con, [p], stats, float64=True))


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _changed(base: dict, other: dict) -> set[str]:
    assert base.keys() == other.keys()
    return {name for k in base for name in FEATURES if not _same(base[k][name], other[k][name])}


@pytest.mark.parametrize("p", DEFAULT_POINTS)
def test_nothing_known_after_the_decision_moves_a_feature(p: float) -> None:
    snaps, res = _tables(seed=11)
    con = duckdb.connect()
    load_into(con, snaps, res)
    stats = fit_stats(con)  # a parameter: the same for both builds
    base = _features(snaps, res, p, stats)
    assert len(base) > 60
    # cuts at decision instants across both families: each compares every row decided by then
    cuts = sorted({round(k[4] * 1000) for k in _decision_keys(base)})[1::3]
    assert len(cuts) >= 6
    labels_moved = 0
    for i, cut in enumerate(cuts):
        m_snaps, m_res = _mutate_future(snaps, res, cut, seed=12 + i)
        after = _features(m_snaps, m_res, p, stats)
        decided = {k for k, row in base.items() if round(row["decision_ts"] * 1000) <= cut}
        assert any(round(base[k]["decision_ts"] * 1000) == cut for k in decided)
        assert decided <= after.keys()
        assert _changed({k: base[k] for k in decided}, {k: after[k] for k in decided}) == set(), cut
        # the labels (known after the decision) did change: the mutation was real
        labels_moved += sum(base[k]["resolved_up"] != after[k]["resolved_up"] for k in decided)
    assert labels_moved > 0


def _decision_keys(rows: dict) -> list[tuple]:
    return [(*k, row["decision_ts"]) for k, row in rows.items()]


def test_things_known_before_the_decision_do_move_features() -> None:
    """The teeth: the same comparison catches a change made at or before the decision."""
    p = DEFAULT_POINTS[1]
    snaps, res = _tables(seed=21)
    base = _features(snaps, res, p, {})
    # a resolution that was known in time, now seen a moment too late
    rows = res.to_pylist()
    moved = 0
    for row in rows:
        d_s = _decision_ms(row["slot_ts"] + row["window_s"], row["window_s"], p) / 1000.0
        if row["resolved_at"] is not None and row["resolved_at"] < d_s:
            row["resolved_at"] = d_s  # "earlier than D" is strict: at D it is not known yet
            moved += 1
    assert moved > 10
    later = _features(snaps, pa.Table.from_pylist(rows, schema=res.schema), p, {})
    assert {"prev_known_source"} <= _changed(base, later)
    # a snapshot row at or before the decision instant counts as known
    srows = snaps.to_pylist()
    for row in srows:
        if row["tick_ms"] <= _decision_ms(row["slot_ts"], row["window_s"], p):
            row["bid_up"] = 0.123
    changed = _changed(base, _features(pa.Table.from_pylist(srows, schema=snaps.schema), res, p, {}))
    assert {"bid_up", "up_mid", "spread_up"} <= changed
    # the spot at the decision row moves lead_move_pct (and its z with stats), nothing else
    stats = {"move_vol_per_min": {}, "default_move_vol_per_min": 0.05}
    base = _features(snaps, res, p, stats)
    srows = snaps.to_pylist()
    for row in srows:
        if row["tick_ms"] <= _decision_ms(row["slot_ts"], row["window_s"], p) \
                and row["chainlink_price"] is not None:
            row["chainlink_price"] *= 1.001
    changed = _changed(base, _features(pa.Table.from_pylist(srows, schema=snaps.schema), res, p, stats))
    assert changed == {"lead_move_pct", "lead_move_z", "lead_rv_z", "lead_blend_z"}


def test_earlier_windows_closed_rows_move_only_the_regime_features() -> None:
    """A window's rows after its own decision instant but before its end are known to the next
    windows' decisions: changing them moves the regime features of later windows (prev_vol_k and
    lead_blend_z's prior) and nothing else."""
    p = DEFAULT_POINTS[1]
    snaps, res = _tables(seed=31)
    stats = {"move_vol_per_min": {}, "default_move_vol_per_min": 0.05}
    base = _features(snaps, res, p, stats)
    srows = snaps.to_pylist()
    moved = 0
    for row in srows:
        end_ms = (row["slot_ts"] + row["window_s"]) * 1000
        if _decision_ms(row["slot_ts"], row["window_s"], p) < row["tick_ms"] < end_ms \
                and row["dir_move_pct"] is not None:
            row["dir_move_pct"] *= 3
            moved += 1
    assert moved > 20
    changed = _changed(base, _features(pa.Table.from_pylist(srows, schema=snaps.schema), res, p, stats))
    assert changed == {"prev_vol_1", "prev_vol_4", "lead_blend_z"}
    # rows stamped at or after a window's end are not its closed rows: they move nothing
    srows = snaps.to_pylist()
    late = [{**row, "tick_ms": (row["slot_ts"] + row["window_s"]) * 1000 + 5, "dir_move_pct": 99.0}
            for row in srows if row["tick_ms"] == max(r["tick_ms"] for r in srows
                                                       if r["slot_ts"] == row["slot_ts"])]
    assert late
    changed = _changed(base, _features(pa.Table.from_pylist(srows + late, schema=snaps.schema), res, p, stats))
    assert changed == set()
