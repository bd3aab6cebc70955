"""Replay a store through the online builder: every feature equals the DuckDB training set's
within 1e-6 on every decision row (the guard against train/serve skew)."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest

from slotml.features.build import build_training_set, fit_stats
from slotml.features.contract import CONTRACT_VERSION, DEFAULT_POINTS, FEATURES
from slotml.features.synth import SynthConfig, generate, load_into
from slotml.serve.online import OnlineFeatures

POINTS = (*DEFAULT_POINTS, 0.2, 0.9)


@pytest.mark.parametrize(("window_s", "contract"), [(900, CONTRACT_VERSION), (12, 3)])
def test_online_equals_duckdb_on_every_decision_row(window_s: int, contract: int) -> None:
    """Under the model's contract version (BNB: NaN for a contract-3 model, its code from 4)."""
    cfg = SynthConfig(symbols=("BTC", "ETH", "XRP", "BNB"), n_windows=40, window_s=window_s,
                      snaps_per_window=30, seed=11, p_missing=0.1, p_one_sided=0.1,
                      p_null_move=0.08, p_null_ptb=0.05, p_null_size=0.1, p_unresolved=0.2,
                      p_no_final=0.2, p_pre_row=0.2, jitter=True)
    snaps, res = generate(cfg)
    con = duckdb.connect()
    load_into(con, snaps, res)
    stats = fit_stats(con)
    table = build_training_set(con, POINTS, stats, float64=True, contract=contract)
    assert table.num_rows > 300
    bnb = {str(a) for s, a in zip(table.column("symbol").to_pylist(),
                                  table.column("asset").to_pylist(), strict=True) if s == "BNB"}
    assert bnb == ({"nan"} if contract < 4 else {"5.0"})

    online = OnlineFeatures(stats, keep_windows=10_000, contract=contract)
    for r in res.to_pylist():
        online.add_resolution(r)  # each carries the times its fields became known
    for r in sorted(snaps.to_pylist(), key=lambda r: (r["tick_ms"], r["symbol"])):
        online.add_snapshot(r)  # live order: by tick, assets interleaved

    cols = table.to_pydict()
    mismatches = []
    for i in range(table.num_rows):
        d_ms = round(cols["decision_ts"][i] * 1000)
        got = online.vector_at(cols["symbol"][i], cols["window_s"][i], cols["slot_ts"][i], d_ms)
        assert got is not None, f"row {i}: online has no vector where the SQL has a row"
        for j, name in enumerate(FEATURES):
            want = np.float32(cols[name][i])
            g = got[j]
            same = (math.isnan(want) and math.isnan(g)) or abs(float(g) - float(want)) <= 1e-6 * max(1.0, abs(float(want)))
            if not same:
                mismatches.append((i, name, float(g), float(want)))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"

    # and no vector where the SQL has no row (a decision without a snapshot within tolerance)
    from slotml.features.contract import frac_ms

    sql_keys = {(cols["symbol"][i], cols["slot_ts"][i], round(cols["decision_ts"][i] * 1000))
                for i in range(table.num_rows)}
    extra = []
    for (sym, ws, slot) in online.windows:
        for p in POINTS:
            d_ms = slot * 1000 + frac_ms(p, ws)
            if online.vector_at(sym, ws, slot, d_ms) is not None and (sym, slot, d_ms) not in sql_keys:
                extra.append((sym, slot, p))
    assert not extra, f"online rows the SQL does not have: {extra[:5]}"
    assert len(sql_keys) < len(online.windows) * len(POINTS)  # some points had no row: tested
