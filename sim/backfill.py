"""History generator: N days of the rows the collector WOULD have written, straight into a store.

Same world as ``slotml sim serve`` (same seed -> same prices, books, outcomes, publication times),
rendered at the collector's 30 s grid and through the collector's own snapshot function
(``ingest.snapshot.make_snapshot``). What a live collector sees at a tick g (captured within
~50 ms of g) is reproduced exactly:

- books: the state the server publishes for second g (at g - 0.25 s), its five levels of depth too;
- prices: the relay lags 1.5 +- 0.3 s, so the latest observation is the one stamped g - 2;
- price_to_beat: the settlement observation stamped at the window start, once it has arrived
  (so the first tick of a window has no base yet, as live);
- resolutions: measured values from the relay (final_seen_at = end + relay lag), official ones
  from Gamma at the venue's (scaled) delays, resolved_at = publication + a polling lag (the
  collector polls every 60 s); nothing published after the backfill's end T is known;
- a few missing snapshots (collector outages: all assets at once, bursts of 1-4 ticks).

Timing columns (captured_at, book_age_s, resolved_at, final_seen_at, updated_at) are plausible,
not identical to a live run. The oracle per snapshot goes to <data-dir>/sim/oracle.parquet.

Past 400 lines on purpose: the rows are built twice, through ``make_snapshot`` one by one (exact)
and column-wise (fast, ~10x), and a test holds the two equal; splitting them would part the twins.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from slotml.errors import UserError
from slotml.ingest.schema import TOUCH_COLUMNS
from slotml.ingest.snapshot import SNAPSHOT_INTERVAL_S, BookTop, WindowRef, make_snapshot
from slotml.settings import CommonSettings
from slotml.sim.config import SimConfig
from slotml.sim.depth import book_depth, depth_columns, levels_at
from slotml.sim.flow import window_flow
from slotml.sim.maker import MAKER, maker_prob, quote_books, regime_prob
from slotml.sim.oracle import known_sum, p_up
from slotml.sim.prices import _rng, asset_key, twap_of
from slotml.sim.render import FEE_SCHEDULE, MIN_ORDER_SIZE, TICK
from slotml.sim.services.books import BOOK_LEAD_S
from slotml.sim.shift import backload_weights
from slotml.sim.touch import touch_ranges
from slotml.sim.trades import trade_rows
from slotml.sim.world import World

log = logging.getLogger(__name__)

RELAY_STEP_S = 2  # at a tick g the latest relayed observation is stamped g - 2 (see services/relay.py)
POLL_S = 60.0  # the collector's Gamma resolution polling interval (15m; scaled for short families)
CHUNK = 20000


@dataclass
class Backfill:
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    resolutions: list[dict[str, Any]] = field(default_factory=list)
    oracle: dict[str, list] = field(default_factory=lambda: {
        "symbol": [], "window_s": [], "slot_ts": [], "tick_ms": [], "p_up": [], "p_maker": []})
    t_start: int = 0
    t_end: int = 0
    missing_ticks: int = 0
    trades: list[dict[str, Any]] = field(default_factory=list)


def parse_end(end: str | float | None) -> float:
    if end is None or end == "":
        return time.time()
    if isinstance(end, int | float):
        return float(end)
    try:
        return float(end)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--end {end!r}: use epoch seconds or ISO 8601 (2026-11-24T15:00:00Z)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def span(window_s: int, days: float, end: float | str | None) -> tuple[int, int]:
    """(first window start, end floored to the window): what ``generate`` covers."""
    t_end = int(parse_end(end) // window_s) * window_s
    t_start = int(math.ceil((t_end - days * 86400) / window_s)) * window_s
    if t_start >= t_end:
        raise UserError("--days must cover at least one window")
    return t_start, t_end


def _missing_ticks(seed: int, grid: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of grid ticks the collector missed (bursts of 1-4 ticks, all assets)."""
    mask = np.zeros(len(grid), dtype=bool)
    if fraction <= 0 or len(grid) == 0:
        return mask
    r = _rng(seed, 5, int(grid[0]), len(grid))
    n_bursts = r.poisson(fraction * len(grid) / 2.5)
    for s, ln in zip(r.integers(0, len(grid), n_bursts), r.integers(1, 5, n_bursts), strict=True):
        mask[s: s + ln] = True
    return mask


def generate(cfg: SimConfig, days: float, end: float | str | None = None,
             missing_fraction: float = 0.002, exact: bool = False,
             interval_s: int = int(SNAPSHOT_INTERVAL_S), trades: bool = True) -> Backfill:
    """All rows for ``days`` days ending at ``end`` (floored to the window). Pure: same in, same out.

    ``exact``: build every row with ``ingest.snapshot.make_snapshot`` (slow); the default builds
    the same rows with numpy (tests/sim/test_backfill.py checks they are identical).
    ``trades``: the prints too (``slot_trades``: the order flow of every window).
    """
    out: Backfill | None = None
    for part in generate_parts(cfg, days, end, missing_fraction, exact, interval_s, trades):
        if out is None:
            out = part
            continue
        out.snapshots += part.snapshots
        out.resolutions += part.resolutions
        out.trades += part.trades
        for k, v in part.oracle.items():
            out.oracle[k] += v
    assert out is not None
    return out


def generate_parts(cfg: SimConfig, days: float, end: float | str | None = None,
                   missing_fraction: float = 0.002, exact: bool = False,
                   interval_s: int = int(SNAPSHOT_INTERVAL_S), trades: bool = True) -> Iterator[Backfill]:
    """``generate`` one asset at a time (what the CLI streams into the store: bounded memory).
    ``interval_s``: the collector's snapshot grid (whole seconds; 30 in production)."""
    cfg.check_backfill()
    world = World(cfg)
    w, sc = world.window_s, world.scale
    t_start, t_end = span(w, days, end)
    step = int(interval_s)
    if step < 1 or step != interval_s:
        raise UserError("the snapshot interval must be a whole number of seconds >= 1")
    grid = np.arange(int(math.ceil(t_start / step)) * step, t_end, step, dtype=np.int64)
    missing = _missing_ticks(cfg.seed, grid, missing_fraction)
    grid = grid[~missing]
    starts = np.arange(t_start, t_end, w, dtype=np.int64)
    for sym in cfg.symbols:
        out = Backfill(t_start=t_start, t_end=t_end, missing_ticks=int(missing.sum()))
        gc_was = gc.isenabled()
        gc.disable()  # ~170k small dicts per asset: the cyclic GC would rescan them over and over
        try:
            _one_symbol(world, sym, starts, grid, t_end, sc, out, exact, trades, step)
        finally:
            if gc_was:
                gc.enable()
        yield out


def _one_symbol(world: World, sym: str, starts: np.ndarray, grid: np.ndarray, t_end: int,
                sc: float, out: Backfill, exact: bool, trades: bool, step: int) -> None:
    cfg = world.config
    w = world.window_s
    rule = cfg.settlement
    path = world.path(sym)
    shift = world.shift  # a regime shift (sim/shift.py): the settlement TWAP's lag per second
    # earlier only if the lagged TWAP needs it: known_sum's running sum starts at t0 (its last bits)
    # (and earlier by the lag itself where the history opens lagged: --shift unlag)
    first = int(starts[0]) - 200
    t0 = min(first - int(shift.lag(first)), shift.spot_from(int(starts[0]), t_end + 5))
    spot = path.spot(t0, t_end + 5)
    tw = twap_of(spot)  # tw[i] = TWAP at second t0 + 59 + i

    def twap(t: np.ndarray) -> np.ndarray:
        i = t - shift.lag(t) - t0 - 59
        if i.size and int(i.min()) < 0:  # numpy would wrap to the END of the path, silently
            raise AssertionError(f"internal: TWAP read {-int(i.min())} s before the path starts")
        return tw[i]

    def settle(t: np.ndarray) -> np.ndarray:
        return twap(t) if rule == "twap60" else spot[t - t0]

    ends = starts + w
    p2b, final = settle(starts), settle(ends)
    up = final >= p2b
    # ---- per tick ------------------------------------------------------------------------
    wstart = (grid // w) * w
    widx = (wstart - starts[0]) // w
    wend = wstart + w
    v, lam, jvar = path.block_stats_array(wstart)
    te = wend - shift.lag(wend)  # the settlement is decided at te (World.compute_window)
    backloaded = shift.backloaded(wstart)  # --shift backload: the window's variance profile
    profile = backload_weights() if backloaded.any() else None

    def oracle_at(ts: np.ndarray) -> np.ndarray:
        tc = np.minimum(ts, te)
        return p_up(rule=rule, spot_t=spot[tc - t0], m=(te - tc).astype(float), v=v, lam=lam,
                    jvar=jvar, p2b=p2b[widx], profile=profile, profile_on=backloaded,
                    known_sum=known_sum(spot, t0, tc, te) if rule == "twap60" else 0.0)

    oracle = oracle_at(grid)
    draws = [world.draws(sym, int(s)) for s in starts]

    def maker() -> np.ndarray:
        noise = np.array([draws[i].noise[k] for i, k in zip(widx, grid - wstart, strict=True)])
        return maker_prob(rule=rule, spot=spot, spot_t0=t0, ts=np.minimum(grid, te + MAKER.lag_s), end=te,
                          p2b=p2b[widx], vbar=world.vbar[sym], noise=noise, v_regime=v + lam * jvar,
                          profile=profile, profile_on=backloaded)

    pm = regime_prob(cfg.book, oracle, maker, lambda lead: oracle_at(np.minimum(grid + lead, wend)))
    books = quote_books(pm, grid, wstart, w, draws, widx)
    lw0 = np.array([draws[i].level_w[0] for i in widx])
    lw1 = np.array([draws[i].level_w[1] for i in widx])
    size_a = np.round(books.top5 * lw0, 2)  # Up best bid / Down best ask
    size_b = np.round(books.top5 * lw1, 2)  # Up best ask / Down best bid
    depth = book_depth(books, [draws[i].level_w for i in widx])
    obs = grid - RELAY_STEP_S
    spot_obs = spot[obs - t0]
    twap_obs = twap(obs)
    u = _rng(cfg.seed, asset_key(sym), 6, w, int(starts[0])).random(len(grid))
    captured = grid + 0.005 + 0.03 * u
    # the base (stamped at the start) is known once relayed
    relay_at_start = np.array([world.relay_delay(int(s)) for s in starts.tolist()])
    base_known = grid + 0.005 >= wstart + relay_at_start[widx]
    spot_base = spot[wstart - t0]
    gl, ws = grid.tolist(), wstart.tolist()
    o = out.oracle
    o["symbol"] += [sym] * len(gl)
    o["window_s"] += [w] * len(gl)
    o["slot_ts"] += ws
    o["tick_ms"] += [g * 1000 for g in gl]
    o["p_up"] += oracle.tolist()
    o["p_maker"] += np.asarray(pm).tolist()
    # ---- per window: slot_resolutions ----------------------------------------------------
    prev: bool | None = None
    poll = POLL_S * min(1.0, sc * 4)
    touch = {c: np.zeros(len(grid)) for c in TOUCH_COLUMNS}  # cents, 0 = none
    rr_all = _rng(cfg.seed, asset_key(sym), 7, w, int(starts[0])).random((len(starts), 2))
    for k, s in enumerate(starts.tolist()):
        m = world.market(sym, s)
        rr = rr_all[k]
        row: dict[str, Any] = {
            "symbol": sym, "window_s": w, "slot_ts": s, "end_ts": m.end, "slug": m.slug,
            "condition_id": m.condition_id, "up_token_id": m.up_token, "down_token_id": m.down_token,
            "settlement": rule, "tick_size": float(TICK), "min_order_size": float(MIN_ORDER_SIZE),
            "fee_rate": float(FEE_SCHEDULE["rate"]), "fee_exponent": float(FEE_SCHEDULE["exponent"]),
            "fee_taker_only": FEE_SCHEDULE["takerOnly"], "spot_source": "chainlink",
            "price_to_beat": float(p2b[k]), "spot_price_to_beat": float(spot[s - t0]),
        }
        seen = m.end + world.relay_delay(m.end)
        if seen <= t_end:
            row["final_price"] = float(final[k])
            row["final_seen_at"] = float(seen + 0.01 * rr[0])
        if m.p2b_at <= t_end:
            row["official_price_to_beat"] = float(p2b[k])
        if m.final_at <= t_end:
            row["official_final_price"] = float(final[k])
        resolved = None
        if m.resolved_at is not None:
            seen_at = m.resolved_at + poll * rr[1]
            if seen_at <= t_end:
                resolved = bool(up[k])
                row["resolved_up"] = resolved
                row["resolved_at"] = float(seen_at)
        if prev is not None:
            row["prev_resolved_up"] = prev
        prev = resolved
        out.resolutions.append(row)
        if trades:
            wd = world.compute_window(m, draws[k])  # not cached: a backfill sees each window once
            out.trades += trade_rows(m, window_flow(cfg.seed, sym, s, w, wd.books, wd.oracle,
                                                    cfg.print_rate), cfg.seed)
            lo, hi = np.searchsorted(widx, [k, k + 1])  # this window's ticks
            for col, v in touch_ranges(wd.books, s, grid[lo:hi], step).items():
                touch[col][lo:hi] = v
    rows = (_rows_exact if exact else _rows_fast)(
        sym, w, rule, grid, wstart, captured, books, size_a, size_b, base_known, p2b[widx],
        spot_base, spot_obs, twap_obs, depth, touch if trades else None)
    out.snapshots.extend(rows)


def _rows_exact(sym, w, rule, grid, wstart, captured, books, size_a, size_b, base_known, p2b,
                spot_base, spot_obs, twap_obs, depth, touch) -> list[dict[str, Any]]:
    """Every row through the collector's own snapshot function."""
    sp = [None if x == 0 else x / 100 for x in range(100)]
    tr = {c: ([None] * len(grid) if touch is None else [sp[int(x)] for x in touch[c].tolist()])
          for c in TOUCH_COLUMNS}
    ub, ua, db, da = (books.up_bid.tolist(), books.up_ask.tolist(), books.down_bid.tolist(),
                      books.down_ask.tolist())
    sa, sb, cap, gl = size_a.tolist(), size_b.tolist(), captured.tolist(), grid.tolist()
    bk, p2bl, spb = base_known.tolist(), p2b.tolist(), spot_base.tolist()
    so, to, ws = spot_obs.tolist(), twap_obs.tolist(), wstart.tolist()
    rows = []
    for i in range(len(gl)):
        g, c = gl[i], cap[i]
        upd = g - BOOK_LEAD_S
        upt = BookTop(sp[ub[i]], sp[ua[i]], sa[i] if ub[i] else None, sb[i] if ua[i] else None, upd,
                      levels_at(depth, "up", "bid", i), levels_at(depth, "up", "ask", i),
                      tr["ask_up_low"][i], tr["bid_up_high"][i])
        dnt = BookTop(sp[db[i]], sp[da[i]], sb[i] if db[i] else None, sa[i] if da[i] else None, upd,
                      levels_at(depth, "down", "bid", i), levels_at(depth, "down", "ask", i),
                      tr["ask_down_low"][i], tr["bid_down_high"][i])
        ref = WindowRef(sym, w, ws[i], rule, p2bl[i] if bk[i] else None, spb[i] if bk[i] else None,
                        "chainlink")
        row, _ = make_snapshot(ref, g * 1000, c, upt, dnt, so[i], to[i])
        rows.append(row)
    return rows


def _rows_fast(sym, w, rule, grid, wstart, captured, books, size_a, size_b, base_known, p2b,
               spot_base, spot_obs, twap_obs, depth, touch) -> list[dict[str, Any]]:
    """The same rows as ``_rows_exact``, column-wise. The sim's books are never crossed, ghost or
    out of range (ask = bid + spread >= 1 cent, prices in [0.01, 0.99]), so make_snapshot's
    rejections cannot fire; the equality test would catch a change."""
    assert not np.any((books.up_bid > 0) & (books.up_ask > 0) & (books.up_bid >= books.up_ask))
    assert not np.any((books.down_bid > 0) & (books.down_ask > 0) & (books.down_bid >= books.down_ask))

    def price(c: np.ndarray) -> list:
        return [None if x == 0 else x / 100 for x in c.tolist()]

    def size(c: np.ndarray, s: np.ndarray) -> list:
        return [None if x == 0 else y for x, y in zip(c.tolist(), s.tolist(), strict=True)]

    def spread(b: list, a: list) -> list:
        return [None if x is None or y is None else round(y - x, 10) for x, y in zip(b, a, strict=True)]

    def move(v: np.ndarray, base: np.ndarray, known: np.ndarray) -> list:
        with np.errstate(divide="ignore", invalid="ignore"):
            mv = (v / base - 1.0) * 100.0
        ok = known & (base != 0)
        return [x if k else None for x, k in zip(mv.tolist(), ok.tolist(), strict=True)]

    bu, au, bd, ad = price(books.up_bid), price(books.up_ask), price(books.down_bid), price(books.down_ask)
    n = len(grid)
    settle = twap_obs if rule == "twap60" else spot_obs
    dmove = move(settle, p2b, base_known)
    cols = {
        "symbol": [sym] * n, "window_s": [int(w)] * n, "slot_ts": wstart.tolist(),
        "tick_ms": (grid * 1000).tolist(), "captured_at": captured.tolist(),
        "minutes_into_slot": ((grid * 1000 / 1000.0 - wstart) / 60.0).tolist(),
        "bid_up": bu, "ask_up": au, "bid_down": bd, "ask_down": ad,
        "bid_size_up": size(books.up_bid, size_a), "ask_size_up": size(books.up_ask, size_b),
        "bid_size_down": size(books.down_bid, size_b), "ask_size_down": size(books.down_ask, size_a),
        "spread_up": spread(bu, au), "spread_down": spread(bd, ad),
        "chainlink_price": spot_obs.tolist(), "chainlink_twap": twap_obs.tolist(),
        "dir_move_pct": dmove, "abs_move_pct": [None if x is None else abs(x) for x in dmove],
        "spot_move_pct": move(spot_obs, spot_base, base_known),
        "book_age_s": (captured - (grid - BOOK_LEAD_S)).tolist(),
        "hour_utc": ((grid // 3600) % 24).tolist(),
        "day_of_week": ((grid // 86400 + 3) % 7).tolist(),  # 1970-01-01 was a Thursday; 0 = Monday
        **depth_columns(depth), "spot_source": ["chainlink"] * n,  # a relay collector's spot
        **{c: [None] * n if touch is None else price(touch[c].astype(np.int64)) for c in TOUCH_COLUMNS},
    }
    keys = list(cols)
    return [dict(zip(keys, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


def write_oracle(frames: list, data_dir: Path) -> Path:
    """The oracle per snapshot, keyed (symbol, window_s, slot_ts, tick_ms), written atomically."""
    import polars as pl

    path = Path(data_dir) / "sim" / "oracle.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    df = pl.concat(frames) if frames else oracle_frame(Backfill())
    tmp = path.with_suffix(".parquet.tmp")
    df.write_parquet(tmp)
    tmp.replace(path)
    return path


def oracle_frame(bf: Backfill):
    import polars as pl

    return pl.DataFrame(bf.oracle, schema={"symbol": pl.Utf8, "window_s": pl.Int32, "slot_ts": pl.Int64,
                                           "tick_ms": pl.Int64, "p_up": pl.Float64, "p_maker": pl.Float64})


async def _write(store, bf: Backfill) -> tuple[int, int]:
    n_snap = n_res = n_trades = 0
    for i in range(0, len(bf.snapshots), CHUNK):
        n_snap += await store.insert_snapshots(bf.snapshots[i: i + CHUNK])
    for i in range(0, len(bf.trades), CHUNK):
        n_trades += await store.insert_trades(bf.trades[i: i + CHUNK])
    for i in range(0, len(bf.resolutions), CHUNK):
        n_res += await store.upsert_resolutions(bf.resolutions[i: i + CHUNK])
    return n_snap, n_res, n_trades


async def write_store(bf: Backfill, url) -> tuple[int, int, int]:
    from slotml.ingest.store import open_store

    store = open_store(url)
    await store.connect()
    try:
        await store.ensure_schema()
        return await _write(store, bf)
    finally:
        await store.close()


async def backfill_into(cfg: SimConfig, url, data_dir: Path, *, days: float, end: str | float | None,
                        missing_fraction: float) -> dict[str, Any]:
    """Generate asset by asset and write each into the store as it comes (bounded memory)."""
    from slotml.ingest.store import open_store

    store = open_store(url)
    await store.connect()
    stats: dict[str, Any] = {"snapshots": 0, "resolutions": 0, "trades": 0, "generate_s": 0.0,
                             "write_s": 0.0}
    frames = []
    try:
        await store.ensure_schema()
        parts = generate_parts(cfg, days, end, missing_fraction)
        while True:
            t = time.perf_counter()
            bf = next(parts, None)
            stats["generate_s"] += time.perf_counter() - t
            if bf is None:
                break
            t = time.perf_counter()
            n_snap, n_res, n_trades = await _write(store, bf)
            stats["write_s"] += time.perf_counter() - t
            for k, n in (("snapshots", n_snap), ("resolutions", n_res), ("trades", n_trades)):
                stats[k] += n
            stats.update(t_start=bf.t_start, t_end=bf.t_end, missing_ticks=bf.missing_ticks)
            frames.append(oracle_frame(bf))
            del bf
    finally:
        await store.close()
    stats["oracle_path"] = write_oracle(frames, data_dir)
    return stats


def run_backfill(cfg: SimConfig, settings: CommonSettings, *, days: float, end: str | float | None,
                 missing_fraction: float) -> int:
    """``slotml sim backfill``: generate, write both tables and the oracle file, report."""
    st = asyncio.run(backfill_into(cfg, settings.db, settings.data_dir, days=days, end=end,
                                   missing_fraction=missing_fraction))
    print(f"backfilled {cfg.family} {','.join(cfg.symbols)} {st['t_start']}..{st['t_end']} into "
          f"{settings.db}: {st['snapshots']} new snapshots ({st['missing_ticks']} ticks missing), "
          f"{st['resolutions']} resolution rows, {st['trades']} prints written; oracle -> {st['oracle_path']} "
          f"(generate {st['generate_s']:.1f} s, write {st['write_s']:.1f} s)", flush=True)
    return 0
