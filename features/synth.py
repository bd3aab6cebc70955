"""Synthetic lake tables (vectorised numpy -> pyarrow) for feature tests and benchmarks.

Not the sim: no market realism beyond what exercises every branch of the contract (missing
snapshots, off-grid ticks, rows before the window start, one-sided books, NULL moves and sizes,
resolutions known early, late or never). Columns and types follow ``ingest/schema.py`` (a test
checks that), so the tables can stand in for the lake's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from slotml.ingest.schema import SPOT_SOURCES

# Arrow types of ingest/schema.py's kinds (int -> int32, bigint -> int64, ...).
SNAPSHOT_COLUMNS: dict[str, str] = {
    "id": "int64", "symbol": "string", "window_s": "int32", "slot_ts": "int32", "tick_ms": "int64",
    "captured_at": "float64", "minutes_into_slot": "float64",
    "bid_up": "float64", "ask_up": "float64", "bid_down": "float64", "ask_down": "float64",
    "bid_size_up": "float64", "ask_size_up": "float64", "bid_size_down": "float64",
    "ask_size_down": "float64", "spread_up": "float64", "spread_down": "float64",
    "chainlink_price": "float64", "chainlink_twap": "float64", "dir_move_pct": "float64",
    "abs_move_pct": "float64", "spot_move_pct": "float64", "book_age_s": "float64",
    "hour_utc": "int8", "day_of_week": "int8", "updated_at": "float64",
    # five levels of depth per token and side, price/size pairs; all NULL here (no depth)
    **{f"{side}{kind}_{token}_l{lvl}": "float64" for token in ("up", "down")
       for side in ("bid", "ask") for lvl in range(1, 6) for kind in ("", "_size")},
    "spot_source": "string",
    # the touch's range since the previous row (schema 5); NULL here, as in a pre-5 lake
    "ask_up_low": "float64", "bid_up_high": "float64", "ask_down_low": "float64",
    "bid_down_high": "float64",
}
DEPTH = [c for c in SNAPSHOT_COLUMNS if c.endswith(("_l1", "_l2", "_l3", "_l4", "_l5"))]
RESOLUTION_COLUMNS: dict[str, str] = {
    "id": "int64", "symbol": "string", "window_s": "int32", "slot_ts": "int32", "end_ts": "int32",
    "slug": "string", "condition_id": "string", "up_token_id": "string", "down_token_id": "string",
    "settlement": "string", "tick_size": "float64", "min_order_size": "float64",
    "fee_rate": "float64", "fee_exponent": "float64", "fee_taker_only": "bool",
    "price_to_beat": "float64", "spot_price_to_beat": "float64", "final_price": "float64",
    "final_seen_at": "float64", "official_price_to_beat": "float64",
    "official_final_price": "float64", "resolved_up": "bool", "prev_resolved_up": "bool",
    "resolved_at": "float64", "updated_at": "float64", "spot_source": "string",
    "resolution_source": "string",
}
BASE_PRICE = {"BTC": 90000.0, "ETH": 3000.0, "SOL": 140.0, "XRP": 2.2}
VOL_PER_MIN = {"BTC": 0.046, "ETH": 0.093, "SOL": 0.10, "XRP": 0.10}  # percent per minute


@dataclass(frozen=True)
class SynthConfig:
    symbols: tuple[str, ...] = ("BTC", "ETH", "SOL", "XRP")
    n_windows: int = 96  # per symbol, consecutive
    window_s: int = 900
    snaps_per_window: int = 30
    start_ts: int = 1_767_225_600  # 2026-01-01 00:00 UTC, a Thursday
    seed: int = 0
    p_missing: float = 0.0  # drop a snapshot row
    p_one_sided: float = 0.0  # NULL one price (and its size) of a token
    p_null_move: float = 0.0  # NULL dir_move_pct on a row
    p_null_ptb: float = 0.0  # NULL price_to_beat for a whole window (all moves NULL)
    p_null_size: float = 0.0  # NULL a size while its price stays
    p_unresolved: float = 0.0  # resolved_up NULL
    p_no_final: float = 0.0  # final_price / final_seen_at NULL
    p_pre_row: float = 0.0  # add a row stamped before the window start
    jitter: bool = False  # ticks anywhere inside their grid step, not on the grid


def _strings(idx: np.ndarray, values: list[str]) -> Any:
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), pa.array(values)).cast(pa.string())


def _table(cols: dict[str, Any], types: dict[str, str]) -> Any:
    import pyarrow as pa

    arrays = []
    for name, typ in types.items():
        v = cols[name]
        if isinstance(v, pa.Array):
            arrays.append(v.cast(typ))
            continue
        v = np.asarray(v)
        mask = None
        if v.dtype.kind == "f":
            mask = np.isnan(v)
            if typ == "bool":
                arrays.append(pa.array(np.where(mask, 0, v).astype(bool), mask=mask))
                continue
            if typ.startswith("int"):
                arrays.append(pa.array(np.where(mask, 0, v).astype(typ), mask=mask))
                continue
        arrays.append(pa.array(v, type=typ, mask=mask if mask is not None and mask.any() else None))
    return pa.table(arrays, names=list(types))


def generate(cfg: SynthConfig = SynthConfig()) -> tuple[Any, Any]:
    """(slot_snapshots, slot_resolutions) as pyarrow Tables."""
    rng = np.random.default_rng(cfg.seed)
    n_sym, nw, ns, w = len(cfg.symbols), cfg.n_windows, cfg.snaps_per_window, cfg.window_s
    step_ms = w * 1000 // ns
    scale_min = 15.0 / ns  # scaled minutes per grid step

    # --- windows ---
    win_sym = np.repeat(np.arange(n_sym), nw)
    win_slot = cfg.start_ts + np.tile(np.arange(nw), n_sym) * w
    n_win = n_sym * nw
    sig = np.array([VOL_PER_MIN.get(s, 0.1) for s in cfg.symbols])[win_sym]
    base = np.array([BASE_PRICE.get(s, 100.0) for s in cfg.symbols])[win_sym]
    regime = np.exp(rng.normal(0, 0.4, n_win))  # quiet and busy windows
    ptb = base * np.exp(rng.normal(0, 0.01, n_win))
    ptb_null = rng.random(n_win) < cfg.p_null_ptb

    # --- snapshot grid ---
    incr = rng.normal(0, 1, (n_win, ns)) * (sig * regime)[:, None] * math.sqrt(scale_min)
    move = np.cumsum(incr, axis=1)  # percent, settlement series
    final_move = move[:, -1] + rng.normal(0, 1, n_win) * sig * regime * math.sqrt(scale_min)
    k = np.arange(ns)
    tick = win_slot[:, None].astype(np.int64) * 1000 + k[None, :] * step_ms
    if cfg.jitter:
        tick = tick + rng.integers(0, step_ms, (n_win, ns))
    minutes_left = 15.0 - (tick - win_slot[:, None] * 1000) * 15.0 / (w * 1000)
    z = move / ((sig * regime)[:, None] * np.sqrt(np.maximum(minutes_left, 0.05)))
    p_up = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))) if n_win * ns < 50_000 else \
        1 / (1 + np.exp(-1.6 * z))
    p_up = np.clip(p_up + rng.normal(0, 0.02, p_up.shape), 0.02, 0.98)
    half = rng.choice([0.005, 0.005, 0.01, 0.015], p_up.shape)
    bid_up = np.round(p_up - half, 3)
    ask_up = np.round(p_up + half, 3)
    bid_down = np.round(1 - ask_up + rng.choice([0, 0, 0.001], p_up.shape), 3)
    ask_down = np.round(1 - bid_up, 3)
    bid_down = np.minimum(bid_down, ask_down - 0.001)

    flat = lambda a: a.reshape(-1)  # noqa: E731
    rows_win = np.repeat(np.arange(n_win), ns)
    cols: dict[str, Any] = {
        "tick_ms": flat(tick), "bid_up": flat(bid_up), "ask_up": flat(ask_up),
        "bid_down": flat(bid_down), "ask_down": flat(ask_down),
        "dir_move_pct": flat(move),
    }
    n = n_win * ns
    for side in ("up", "down"):
        cols[f"bid_size_{side}"] = np.round(np.exp(rng.normal(7.5, 1.0, n)), 2)
        cols[f"ask_size_{side}"] = np.round(np.exp(rng.normal(7.5, 1.0, n)), 2)
        for pc in ("bid", "ask"):
            gone = rng.random(n) < cfg.p_one_sided / 2
            cols[f"{pc}_{side}"] = np.where(gone, np.nan, cols[f"{pc}_{side}"])
            cols[f"{pc}_size_{side}"] = np.where(gone | (rng.random(n) < cfg.p_null_size), np.nan,
                                                 cols[f"{pc}_size_{side}"])
    cols["dir_move_pct"] = np.where((rng.random(n) < cfg.p_null_move) | ptb_null[rows_win], np.nan,
                                    cols["dir_move_pct"])
    keep = rng.random(n) >= cfg.p_missing
    if cfg.p_pre_row > 0:  # rows before the window start (to be ignored by the contract)
        pre = rng.random(n_win) < cfg.p_pre_row
        pre_idx = np.flatnonzero(pre) * ns  # copy of each chosen window's first row
        extra = {c: v[pre_idx].copy() for c, v in cols.items()}
        extra["tick_ms"] = win_slot[pre].astype(np.int64) * 1000 - rng.integers(1, step_ms, pre.sum())
        cols = {c: np.concatenate([v[keep], extra[c]]) for c, v in cols.items()}
        rows_win = np.concatenate([rows_win[keep], np.flatnonzero(pre)])
    else:
        cols = {c: v[keep] for c, v in cols.items()}
        rows_win = rows_win[keep]
    n = len(rows_win)
    t_ms = cols["tick_ms"]
    slot = win_slot[rows_win]
    mv = cols["dir_move_pct"]
    cols.update(
        id=np.arange(1, n + 1), symbol=_strings(win_sym[rows_win], list(cfg.symbols)),
        window_s=np.full(n, w), slot_ts=slot,
        captured_at=t_ms / 1000.0 + 0.05, minutes_into_slot=(t_ms / 1000.0 - slot) / 60.0,
        spread_up=np.round(cols["ask_up"] - cols["bid_up"], 10),
        spread_down=np.round(cols["ask_down"] - cols["bid_down"], 10),
        chainlink_twap=np.where(np.isnan(mv), np.nan, ptb[rows_win] * (1 + np.nan_to_num(mv) / 100)),
        abs_move_pct=np.abs(mv),
        book_age_s=rng.exponential(2.0, n),
        hour_utc=(t_ms // 3_600_000) % 24, day_of_week=(t_ms // 86_400_000 + 3) % 7,
        updated_at=t_ms / 1000.0 + 1.0,
    )
    cols.update({c: np.full(n, np.nan) for c in (*DEPTH, "ask_up_low", "bid_up_high",
                                                 "ask_down_low", "bid_down_high")})
    spot_noise = rng.normal(0, 0.01, n)
    cols["spot_move_pct"] = np.where(rng.random(n) < cfg.p_null_move, np.nan,
                                     np.nan_to_num(mv) + spot_noise)
    cols["chainlink_price"] = base[rows_win] * (1 + cols["spot_move_pct"] / 100)
    # every third window's spot is Pyth's (PolyBolt): features must not care (no rng draw, so
    # the rest of the lake is what it was before the column existed)
    src = (np.arange(len(win_slot)) % 3 == 0).astype(int)
    cols["spot_source"] = _strings(src[rows_win], list(SPOT_SOURCES))
    snaps = _table(cols, SNAPSHOT_COLUMNS)

    # --- resolutions (one per window) ---
    end = win_slot + w
    final = ptb * (1 + final_move / 100)
    no_final = rng.random(n_win) < cfg.p_no_final
    measured_up = (final >= ptb).astype(float)
    official_up = np.where(rng.random(n_win) < 0.02, 1 - measured_up, measured_up)  # rare disagreement
    unresolved = rng.random(n_win) < cfg.p_unresolved
    sym_names = list(cfg.symbols)
    res_cols: dict[str, Any] = {
        "id": np.arange(1, n_win + 1), "symbol": _strings(win_sym, sym_names),
        "window_s": np.full(n_win, w), "slot_ts": win_slot, "end_ts": end,
        "slug": _strings(np.arange(n_win), [f"{sym_names[s].lower()}-updown-15m-{t}" for s, t in zip(win_sym, win_slot, strict=True)]),
        "condition_id": _strings(np.zeros(n_win, int), ["0xabc"]),
        "up_token_id": _strings(np.zeros(n_win, int), ["1"]),
        "down_token_id": _strings(np.zeros(n_win, int), ["2"]),
        "settlement": _strings(np.zeros(n_win, int), ["twap60"]),
        "tick_size": np.full(n_win, 0.001), "min_order_size": np.full(n_win, 5.0),
        "fee_rate": np.full(n_win, 0.02), "fee_exponent": np.full(n_win, 1.0),
        "fee_taker_only": np.ones(n_win),
        "price_to_beat": np.where(ptb_null, np.nan, ptb),
        "spot_price_to_beat": base,
        "final_price": np.where(no_final | ptb_null, np.nan, final),
        "final_seen_at": np.where(no_final | ptb_null, np.nan, end + rng.uniform(0, 0.6 * w, n_win)),
        "official_price_to_beat": np.where(unresolved, np.nan, ptb),
        "official_final_price": np.where(unresolved, np.nan, final),
        "resolved_up": np.where(unresolved, np.nan, official_up),
        "prev_resolved_up": np.full(n_win, np.nan),
        "resolved_at": np.where(unresolved, np.nan, end + rng.uniform(0, 1.5 * w, n_win)),
        "updated_at": end + 2.0 * w,
        "spot_source": _strings(src, list(SPOT_SOURCES)),
        "resolution_source": _strings(win_sym, [f"https://data.chain.link/streams/{n.lower()}-usd"
                                                for n in sym_names]),
    }
    return snaps, _table(res_cols, RESOLUTION_COLUMNS)


def load_into(con: Any, snaps: Any, res: Any) -> None:
    """Make ``slot_snapshots`` / ``slot_resolutions`` tables of these Arrow tables in ``con``."""
    con.register("_synth_snaps", snaps)
    con.register("_synth_res", res)
    con.execute("CREATE OR REPLACE TABLE slot_snapshots AS SELECT * FROM _synth_snaps")
    con.execute("CREATE OR REPLACE TABLE slot_resolutions AS SELECT * FROM _synth_res")
    con.unregister("_synth_snaps")
    con.unregister("_synth_res")
