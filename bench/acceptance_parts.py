"""Issue 17's acceptance, the measuring half (``acceptance_maker.py`` is the command): one seed's
history through the real pipeline, its backtest, and each part's measure and criterion.

Pooled CIs are day-block bootstraps over every (seed, day) of the pooled seeds (day numbers
repeat across seeds: the histories share their dates); truth pools by adding each seed's tally
(order ids repeat across seeds too).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

SYMBOLS = "BTC,ETH,SOL,XRP"
END = "2026-11-01"  # every history ends here: a rerun rebuilds the same history
FILL_RATE_TOL_PP, PNL_TOL_PT = 5.0, 1.0  # truth's tolerances
POWER_NEEDED = 0.9  # 9 of 10 seeds
FINAL_BOOKS = ("default", "sharp")  # the pre-registered finding's books

# ----------------------------------------------------------------------------- one history

def _slotml(*args: str) -> list[str]:
    return [sys.executable, "-m", "slotml.cli", *args]


def sim_digest() -> str:
    """A digest of the sim's source: a history backfilled by another sim is not reused (the
    truth part re-runs the sim in-process, so history and truth must come from one sim)."""
    import hashlib

    import slotml.sim

    h = hashlib.sha256()
    for f in sorted(Path(slotml.sim.__file__).parent.rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _stage(d: Path, name: str, cmd: list[str], tag: str, key: str, force: bool) -> float | None:
    """Run one pipeline command unless its marker holds ``key`` (and nothing before it ran);
    None when reused, else its seconds."""
    marker, log = d / f".done_{name}", d / "logs" / f"{name}.log"
    if not force and marker.exists() and marker.read_text() == key:
        return None
    marker.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"{tag}: `slotml {' '.join(cmd[3:])}` failed (exit {rc}); log {log}\n{tail}")
    marker.write_text(key)
    return time.monotonic() - t0


def history(work: Path, book: str, seed: int, days: float, test_days: float,
            symbols: str = SYMBOLS, train: bool = True) -> Path:
    """The seed's data dir: backfilled, exported and (``train``) trained. A stage is reused
    while its command (and, for the backfill, the sim's source) is unchanged; once one runs,
    every later one runs too, and a new backfill starts from an empty dir."""
    d = work / f"{book}_s{seed}_d{days:g}_t{test_days:g}"
    tag = f"[{book} {seed}]"
    d.mkdir(parents=True, exist_ok=True)
    dd = ("--data-dir", str(d))
    force = False
    for name, cmd in (
        ("backfill", _slotml("sim", "backfill", *dd, "--days", f"{days:g}", "--seed", str(seed),
                             "--book", book, "--symbols", symbols, "--end", END)),
        ("export", _slotml("export", *dd, "--grace", "0")),
        ("train", _slotml("train", *dd, "--test-days", f"{test_days:g}")),
    ):
        if name == "train" and not train:
            break
        key = " ".join(cmd[3:]) + (f" sim={sim_digest()}" if name == "backfill" else "")
        marker = d / f".done_{name}"
        if name == "backfill" and not (marker.exists() and marker.read_text() == key):
            shutil.rmtree(d)  # another sim or command: nothing of the old history is kept
            d.mkdir(parents=True)
        s = _stage(d, name, cmd, tag, key, force)
        if s is not None:
            force = True
            print(f"{tag} {name} done in {s:.0f}s", flush=True)
    if train:  # the lake and the model are all the parts read (the store is ~1 GB a history)
        for f in d.glob("slotml.db*"):
            f.unlink()
    return d


def model_of(d: Path) -> Path:
    """The newest model train wrote into the data dir."""
    got = sorted((d / "models").glob("td_model_*.onnx"), key=lambda p: p.stat().st_mtime)
    if not got:
        raise RuntimeError(f"no model in {d / 'models'}")
    return got[-1]


def sim_config(book: str, seed: int, symbols: str = SYMBOLS) -> Any:
    """The SimConfig ``slotml sim backfill`` built for this history (sim/cli.py ``_config``)."""
    from slotml.sim.config import SimConfig

    return SimConfig(family="15m", symbols=tuple(symbols.split(",")), seed=seed, book=book,
                     unresolved_fraction=0.003)


def backtest(d: Path, model: Path | None = None, n_boot: int = 2000,
             rows: bool = False) -> tuple[Any, Any, Any]:
    """(BacktestResult, decision rows, windows) over the model's unseen days, as ``slotml
    backtest`` computes them with its default options (rows and windows only if ``rows``), except
    expiry: the verdict judges the model on every unseen day, and a model past ``--expires-after``
    would fall back to the filters and compare them with themselves (``--on-expired ignore``)."""
    from slotml.backtest.replay import default_range, load_rows, replay
    from slotml.lake import connect
    from slotml.serve.gate import GateConfig
    from slotml.serve.scorer import Scorer

    scorer = Scorer.load(model or model_of(d))
    lo, hi = default_range(scorer)
    con = connect(d / "lake")
    try:
        result = replay(con, scorer, GateConfig(on_expired="ignore"), slot_from=lo, slot_to=hi, n_boot=n_boot)
        got, windows, _ = load_rows(con, scorer, lo, hi, tape=False) if rows else (None, None, None)
    finally:
        con.close()
    return result, got, windows


# ----------------------------------------------------------------------------- truth

def sim_orders(orders: list[Any]) -> tuple[list[Any], list[str]]:
    """The backtest's shadow orders as the sim's batch API takes them, one each, same ids
    (and the ids of any it cannot take: no token)."""
    from slotml.sim.shadow import ShadowOrder

    out, skipped = [], []
    for o in orders:
        if not o.token_id:
            skipped.append(o.order_id)
            continue
        out.append(ShadowOrder(o.token_id, round(o.price, 2), float(o.size), o.placed_ms / 1000.0,
                               o.cancel_ms / 1000.0, "BUY", o.order_id))
    return out, skipped


def truth_of(cfg: Any, result: Any, policy: str = "edge") -> dict[str, Any]:
    """One history: the policy's maker-queue orders, their true fills, and the tallies of
    maker-queue and maker-optimistic against them (over exactly the orders sent)."""
    from slotml.backtest.shadow import TruthFill, rates, shadow_orders, tally
    from slotml.sim.shadow import fills_over_history

    mq = result.cell(policy, "maker-queue").result
    mo = result.cell(policy, "maker-optimistic").result
    orders = shadow_orders(mq)
    ids = [o.order_id for o in orders]
    if len(set(ids)) != len(ids):
        raise RuntimeError("shadow order ids are not unique")
    sent, skipped = sim_orders(orders)
    got = fills_over_history(cfg, sent)
    if len(got) != len(sent):
        raise RuntimeError(f"the sim answered {len(got)} of {len(sent)} orders")
    truth, through = [], 0
    for o, fs in zip(sent, got, strict=True):
        sh = sum(f.size for f in fs)
        truth.append(TruthFill(o.order_id, sh, sum(f.size * f.price for f in fs) / sh if sh > 0 else 0.0))
        through += any(f.through for f in fs)
    keep = set(ids) - set(skipped)
    only = lambda r: replace(r, entries=[e for e in r.entries  # noqa: E731
                                         if f"{e.policy}:{e.symbol}:{e.slot_ts}:{e.outcome}" in keep])
    t_mq, t_mo = tally([only(mq)], truth), tally([only(mo)], truth)
    return {"orders": len(sent), "skipped_no_token": len(skipped), "truth_through_fills": through,
            "maker_queue": t_mq, "maker_optimistic": t_mo,
            "maker_queue_rates": rates(t_mq), "maker_optimistic_rates": rates(t_mo)}


def truth_verdict(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    from slotml.backtest.shadow import pooled, rates

    mq = rates(pooled([s["truth"]["maker_queue"] for s in seeds]))
    mo = rates(pooled([s["truth"]["maker_optimistic"] for s in seeds]))
    fr, ps = mq["fill_rate_error_pp"], mq["pnl_per_staked_error_pt"]
    met = fr is not None and ps is not None and abs(fr) <= FILL_RATE_TOL_PP and abs(ps) <= PNL_TOL_PT
    through = sum(s["truth"]["truth_through_fills"] for s in seeds)
    fills = sum(s["truth"]["maker_queue"]["truth_fills"] for s in seeds)
    return {"pooled_maker_queue": mq, "pooled_maker_optimistic": mo,
            "truth_fills_with_through": through, "truth_fills": fills,
            "criterion": f"|fill rate error| <= {FILL_RATE_TOL_PP:g} pp and |PnL/staked error| <= "
                         f"{PNL_TOL_PT:g} pt (maker-queue, pooled)", "met": bool(met)}


# ----------------------------------------------------------------------------- power

def oracle_expectation(d: Path, rows: list[Any], windows: dict) -> dict[str, Any]:
    """Expected PnL per staked of an oracle-informed gate on the test rows: at each window's
    first decision point where the oracle's P(win) beats the price (taker: ask + fee; maker:
    the bid, filled for sure: an upper bound), one share of that side."""
    import pyarrow.parquet as pq

    t = pq.read_table(d / "sim" / "oracle.parquet", columns=["symbol", "slot_ts", "tick_ms", "p_up"])
    sym, slot, tick = (t.column(c).to_pylist() for c in ("symbol", "slot_ts", "tick_ms"))
    p = dict(zip(zip(sym, slot, tick, strict=True), t.column("p_up").to_pylist(), strict=True))
    out: dict[str, Any] = {}
    for name, taker in (("taker", True), ("maker", False)):
        pnl = staked = 0.0
        n = 0
        done: set = set()
        for r in sorted(rows, key=lambda r: (r.key, r.point)):
            if r.key in done or r.key not in windows:
                continue
            pu = p.get((r.symbol, r.slot_ts, r.tick_ms))
            if pu is None:
                continue
            fee = windows[r.key].fee
            best = None
            for side, pw in (("Up", pu), ("Down", 1.0 - pu)):
                px = r.ask(side) if taker else r.bid(side)
                if px is None or not 0 < px < 1:
                    continue
                cost = px + (fee.per_share(px, True) if taker else 0.0)
                if pw - cost > 0 and (best is None or pw - cost > best[0]):
                    best = (pw - cost, cost)
            if best is not None:
                done.add(r.key)
                pnl += best[0]
                staked += best[1]
                n += 1
        out[name] = {"entries": n, "expected_pnl_per_staked": pnl / staked if staked else None}
    return out


def power_of(result: Any) -> dict[str, Any]:
    out = {}
    for fill in ("maker-queue", "taker"):
        d = result.difference("edge", "always-enter", fill)
        ci = d["ci95"] if d else None
        out[fill] = {"difference": d["difference"] if d else None, "ci95": ci,
                     "detected": bool(ci is not None and ci[0] > 0)}
    return out


def power_verdict(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(seeds)
    hits = sum(s["power"]["maker-queue"]["detected"] for s in seeds)
    taker_hits = sum(s["power"]["taker"]["detected"] for s in seeds)
    exp = {k: _mean([s["oracle"][k]["expected_pnl_per_staked"] for s in seeds]) for k in ("taker", "maker")}
    need = math.ceil(POWER_NEEDED * n)
    return {"detected": hits, "seeds": n, "needed": need, "detected_taker": taker_hits,
            "oracle_expected_pnl_per_staked": exp,
            "criterion": f"CI of edge - always-enter (maker-queue) above 0 in >= {need} of {n} seeds",
            "met": hits >= need}


# ----------------------------------------------------------------------------- phantom / finding

def _daily(result: Any, policy: str, fill: str) -> dict[str, list[float]]:
    from slotml.backtest.verdict import daily

    pnl, staked = daily(result.cell(policy, fill).result, result.days)
    return {"pnl": pnl.tolist(), "staked": staked.tolist()}


def cell_of(result: Any, policy: str, fill: str) -> dict[str, Any]:
    c = result.cell(policy, fill)
    r = c.result
    shares = {k: [(getattr(e, k), e.shares) for e in r.entries if e.filled and getattr(e, k) is not None]
              for k in ("markout_10s", "markout_60s", "markout_res")}
    return {"windows": r.windows, "entries": r.n_entries, "fills": r.n_fills, "pnl": r.pnl,
            "staked": r.staked, "pnl_per_staked": r.pnl_per_staked, "ci95": c.ci,
            "markout_sums": {k: [sum(x * s for x, s in v), sum(s for _, s in v)] for k, v in shares.items()},
            "daily": _daily(result, policy, fill)}


def pooled_ci(cells: list[dict[str, Any]], minus: list[dict[str, Any]] | None = None,
              n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Day-block bootstrap CI of PnL per staked over every (seed, day) of ``cells`` (or of the
    paired difference with ``minus``: the same resampled days for both)."""
    from slotml.backtest.verdict import _ratio, interval, resample

    def cat(cs: list[dict[str, Any]], k: str) -> np.ndarray:
        return np.concatenate([np.asarray(c["daily"][k], float) for c in cs]) if cs else np.zeros(0)

    pnl, staked = cat(cells, "pnl"), cat(cells, "staked")
    if len(pnl) == 0:
        return None
    idx = resample(len(pnl), n_boot, seed)
    x = _ratio(pnl, staked, idx)
    if minus is not None:
        x = x - _ratio(cat(minus, "pnl"), cat(minus, "staked"), idx)
    return interval(x)


def pooled_cell(cells: list[dict[str, Any]]) -> dict[str, Any]:
    ent, win = sum(c["entries"] for c in cells), sum(c["windows"] for c in cells)
    staked = sum(c["staked"] for c in cells)
    mk = {}
    for k in ("markout_10s", "markout_60s", "markout_res"):
        xs, w = sum(c["markout_sums"][k][0] for c in cells), sum(c["markout_sums"][k][1] for c in cells)
        mk[k] = xs / w if w > 0 else None
    return {"entries": ent, "windows": win, "entry_rate": ent / win if win else None,
            "fills": sum(c["fills"] for c in cells),
            "pnl_per_staked": sum(c["pnl"] for c in cells) / staked if staked > 0 else None,
            "markouts": mk}


def phantom_verdict(seeds: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    cells = [s["cells"]["edge/maker-queue"] for s in seeds]
    ci = pooled_ci(cells, n_boot=n_boot)
    out = pooled_cell(cells)
    out["ci95"] = ci
    out["criterion"] = "lower end of the edge policy's pooled maker-queue PnL/staked CI <= 0"
    out["met"] = bool(ci is not None and ci[0] <= 0)
    return out


def finding_verdict(seeds: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    out = {}
    for book in FINAL_BOOKS:
        ss = [s for s in seeds if s["book"] == book]
        e = [s["cells"]["edge/maker-queue"] for s in ss]
        f = [s["cells"]["filters/maker-queue"] for s in ss]
        pe, pf = pooled_cell(e), pooled_cell(f)
        diff = (None if pe["pnl_per_staked"] is None or pf["pnl_per_staked"] is None
                else pe["pnl_per_staked"] - pf["pnl_per_staked"])
        ci = pooled_ci(e, f, n_boot=n_boot)
        word = "inconclusive" if ci is None else "yes" if ci[0] > 0 else "no" if ci[1] < 0 else "inconclusive"
        out[book] = {"edge": pe, "filters": pf, "difference": diff, "ci95": ci,
                     "model_beats_filters_as_maker": word}
    return out


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None
