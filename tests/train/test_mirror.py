"""The Up/Down mirror: the contract's rules equal the features of a really mirrored lake, and
training uses the mirror only where it should (fit and calibration, never the test days)."""

from __future__ import annotations

import dataclasses

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from slotml.features.build import build_training_set
from slotml.features.contract import FEATURES, MIRROR
from slotml.features.synth import SynthConfig, generate, load_into
from slotml.train.mirror import mirror_features, with_mirror

ROUGH = SynthConfig(n_windows=20, p_missing=0.15, p_one_sided=0.15, p_null_move=0.1,
                    p_null_size=0.1, p_unresolved=0.1, p_no_final=0.15, jitter=True,
                    symbols=("BTC", "ETH"), seed=5)
STATS = {"move_vol_per_min": {"BTC": 0.04}, "default_move_vol_per_min": 0.06}
SWAPPED = ("bid", "ask", "bid_size", "ask_size", "spread")


def _mirror_lake(snaps: pa.Table, res: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The mirrored world, row by row: moves change sign, the Up and Down books trade places,
    outcomes flip (final price and price to beat swap, so the measured outcome flips too)."""
    out = []
    for r in snaps.to_pylist():
        m = dict(r)
        for c in SWAPPED:
            m[f"{c}_up"], m[f"{c}_down"] = r[f"{c}_down"], r[f"{c}_up"]
        for c in ("dir_move_pct", "spot_move_pct"):
            m[c] = None if r[c] is None else -r[c]
        m["chainlink_twap"] = m["chainlink_price"]  # lead_move_pct == the move: neg is exact
        out.append(m)
    flipped = []
    for r in res.to_pylist():
        m = dict(r)
        m["resolved_up"] = None if r["resolved_up"] is None else (not r["resolved_up"])
        m["final_price"], m["price_to_beat"] = r["price_to_beat"], r["final_price"]
        flipped.append(m)
    return pa.Table.from_pylist(out, schema=snaps.schema), pa.Table.from_pylist(flipped, schema=res.schema)


def _features(snaps: pa.Table, res: pa.Table) -> pa.Table:
    con = duckdb.connect()
    load_into(con, snaps, res)
    return build_training_set(con, stats=STATS, float64=True)


def _matrix(t: pa.Table) -> np.ndarray:
    return np.column_stack([t.column(n).to_numpy() for n in FEATURES])


def test_contract_mirror_equals_the_mirrored_lake() -> None:
    snaps, res = generate(ROUGH)
    base = snaps.to_pylist()
    for r in base:
        r["chainlink_twap"] = r["chainlink_price"]
    snaps = pa.Table.from_pylist(base, schema=snaps.schema)
    t = _features(snaps, res)
    m = _features(*_mirror_lake(snaps, res))
    assert t.num_rows > 100 and t.num_rows == m.num_rows
    assert t.column("slot_ts").to_pylist() == m.column("slot_ts").to_pylist()
    X, M = _matrix(t), _matrix(m)
    got = mirror_features(X, FEATURES)
    for j, name in enumerate(FEATURES):
        assert np.allclose(got[:, j], M[:, j], rtol=1e-9, atol=1e-12, equal_nan=True), name
    # the label flips with the world
    y, ym = (np.array(x.column("resolved_up").to_pylist(), dtype=float) for x in (t, m))
    assert np.array_equal(1 - y, ym, equal_nan=True)
    # and the comparison has teeth: the rules that move a value really moved it
    for name in FEATURES:
        if MIRROR[name] != "same":
            j = FEATURES.index(name)
            assert not np.allclose(X[:, j], M[:, j], equal_nan=True), f"{name}: mirror is a no-op here"


def test_mirror_is_an_involution_and_doubles_rows_with_flipped_labels() -> None:
    snaps, res = generate(dataclasses.replace(ROUGH, seed=9))
    X = _matrix(_features(snaps, res)).astype(np.float32)
    back = mirror_features(mirror_features(X, FEATURES), FEATURES)
    assert np.allclose(back, X, rtol=1e-6, equal_nan=True)
    y = (np.arange(len(X)) % 2).astype(np.int8)
    X2, y2 = with_mirror(X, y, FEATURES)
    assert X2.shape == (2 * len(X), X.shape[1]) and X2.dtype == np.float32
    assert np.array_equal(y2, np.r_[y, 1 - y]) and y2.dtype == np.int8
    assert np.array_equal(X2[: len(X)], X, equal_nan=True)


def test_a_feature_without_a_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="no mirror rule for features \\['mystery'\\]"):
        mirror_features(np.zeros((2, 2), np.float32), ["dir_move_pct", "mystery"])
