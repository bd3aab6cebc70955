"""Issue 17's acceptance on sim history (``make acceptance``; minutes, not a unit test).

Each seed is the pipeline a trader runs, as real commands: ``slotml sim backfill`` (``--book``
as the part needs), ``slotml export``, ``slotml train --test-days T`` (edge policy: thresholds
chosen on the policy slice); then the backtest of the model's test days in-process (the same
``replay`` as ``slotml backtest``), because the parts need its entries, not only its table.

- ``truth`` (default book, seeds 301-303): the edge policy's maker-queue decisions go as shadow
  orders to the sim's batch API (``sim/shadow.py fills_over_history``) over the same history;
  the backtest's maker-queue and maker-optimistic fills of those orders are compared with the
  true ones. Met when, pooled over the seeds, maker-queue's fill rate is within 5 points of the
  truth and its PnL per staked within 1 point.
- ``power`` (shrunk book, seeds 311-320): an edge of known size; its expected taker and maker
  PnL per staked for an oracle-informed gate are printed. Met when the verdict detects the edge
  (maker-queue: the CI of edge - always-enter above zero) in at least 9 of 10 seeds.
- ``phantom`` (efficient book, seeds 331-335): no edge exists. Met when the lower end of the
  edge policy's pooled maker-queue PnL-per-staked CI is at or below zero.
- ``finding``: the pre-registered run (seeds 101-105, 30 test days, default and sharp books,
  edge - filters under maker-queue with its pooled CI). Those seeds are refused everywhere
  unless ``--preregistered-final`` is given, which runs exactly that and nothing else, once,
  after everything else is final; it is never used to tune anything.

Pooled CIs are day-block bootstraps over every (seed, day) of the pooled seeds. Work dirs are
kept and reused when a stage's command is unchanged (a marker holds it), so a rerun of the
analysis costs seconds. Output: a table per part and a JSON report (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

RESERVED_SEEDS = tuple(range(101, 106))  # pre-registered (issue 17): the finding only
FINAL = {"seeds": RESERVED_SEEDS, "books": ("default", "sharp"), "test_days": 30.0}
PARTS = {  # part: (book, default seeds)
    "truth": ("default", (301, 302, 303)),
    "power": ("shrunk", tuple(range(311, 321))),
    "phantom": ("efficient", tuple(range(331, 336))),
}
SYMBOLS = "BTC,ETH,SOL,XRP"
END = "2026-11-01"  # every history ends here: a rerun rebuilds the same history
DAYS, TEST_DAYS = 60.0, 30.0
FILL_RATE_TOL_PP, PNL_TOL_PT = 5.0, 1.0  # truth's tolerances
POWER_NEEDED = 0.9  # 9 of 10 seeds


class Refused(Exception):
    """Bad input: one line, exit 2."""


# ----------------------------------------------------------------------------- one history

def _slotml(*args: str) -> list[str]:
    return [sys.executable, "-m", "slotml.cli", *args]


def _stage(d: Path, name: str, cmd: list[str], tag: str) -> float:
    """Run one pipeline command unless its marker says it already ran with this command."""
    marker, log = d / f".done_{name}", d / "logs" / f"{name}.log"
    key = " ".join(cmd[3:])
    if marker.exists() and marker.read_text() == key:
        return 0.0
    marker.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"{tag}: `slotml {key}` failed (exit {rc}); log {log}\n{tail}")
    marker.write_text(key)
    return time.monotonic() - t0


def history(work: Path, book: str, seed: int, days: float, test_days: float,
            symbols: str = SYMBOLS, train: bool = True) -> Path:
    """The seed's data dir: backfilled, exported and (``train``) trained; stages reused."""
    d = work / f"{book}_s{seed}_d{days:g}_t{test_days:g}"
    tag = f"[{book} {seed}]"
    d.mkdir(parents=True, exist_ok=True)
    dd = ("--data-dir", str(d))
    for name, cmd in (
        ("backfill", _slotml("sim", "backfill", *dd, "--days", f"{days:g}", "--seed", str(seed),
                             "--book", book, "--symbols", symbols, "--end", END)),
        ("export", _slotml("export", *dd, "--grace", "0")),
        ("train", _slotml("train", *dd, "--test-days", f"{test_days:g}")),
    ):
        if name == "train" and not train:
            break
        s = _stage(d, name, cmd, tag)
        if s:
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
    backtest`` computes them with its default options (rows and windows only if ``rows``)."""
    from slotml.backtest.replay import default_range, load_rows, replay
    from slotml.lake import connect
    from slotml.serve.gate import GateConfig
    from slotml.serve.scorer import Scorer

    scorer = Scorer.load(model or model_of(d))
    lo, hi = default_range(scorer)
    con = connect(d / "lake")
    try:
        result = replay(con, scorer, GateConfig(), slot_from=lo, slot_to=hi, n_boot=n_boot)
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


def _cell(result: Any, policy: str, fill: str) -> dict[str, Any]:
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
    from slotml.backtest.verdict import _interval, _ratio, resample

    def cat(cs: list[dict[str, Any]], k: str) -> np.ndarray:
        return np.concatenate([np.asarray(c["daily"][k], float) for c in cs]) if cs else np.zeros(0)

    pnl, staked = cat(cells, "pnl"), cat(cells, "staked")
    if len(pnl) == 0:
        return None
    idx = resample(len(pnl), n_boot, seed)
    x = _ratio(pnl, staked, idx)
    if minus is not None:
        x = x - _ratio(cat(minus, "pnl"), cat(minus, "staked"), idx)
    return _interval(x)


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
    for book in FINAL["books"]:
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


# ----------------------------------------------------------------------------- one seed

def seed_job(job: dict[str, Any]) -> dict[str, Any]:
    """``seed_run``, or what went wrong (one failed history must not lose the others)."""
    try:
        return seed_run(job)
    except Exception as e:  # noqa: BLE001 - reported per seed in the report and the table
        print(f"[{job['book']} {job['seed']}] {job['part']}: FAILED: {e}", flush=True)
        return {"part": job["part"], "book": job["book"], "seed": job["seed"], "error": str(e)}


def seed_run(job: dict[str, Any]) -> dict[str, Any]:
    """Everything one (part, seed) needs, as plain data (runs in a worker process)."""
    part, book, seed = job["part"], job["book"], job["seed"]
    t0 = time.monotonic()
    symbols, model = job.get("symbols", SYMBOLS), job.get("model")  # a given model: no training
    d = history(Path(job["work"]), book, seed, job["days"], job["test_days"], symbols, model is None)
    result, rows, windows = backtest(d, Path(model) if model else None, job["n_boot"], part == "power")
    out: dict[str, Any] = {"part": part, "book": book, "seed": seed, "dir": str(d),
                           "test_days": len(result.days), "windows": result.windows,
                           "rows": result.rows, "edge_policy": list(result.edge_policy),
                           "verdict": result.verdict()}
    cells = [("edge", "maker-queue"), ("edge", "maker-optimistic"), ("edge", "taker")]
    if part == "truth":
        out["truth"] = truth_of(sim_config(book, seed, symbols), result)
    elif part == "power":
        out["power"] = power_of(result)
        out["oracle"] = oracle_expectation(d, rows, windows)
        cells.append(("always-enter", "maker-queue"))
    elif part == "finding":
        cells.append(("filters", "maker-queue"))
    out["cells"] = {f"{p}/{f}": _cell(result, p, f) for p, f in cells}
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(f"[{book} {seed}] {part}: {out['windows']} windows over {out['test_days']} days in "
          f"{out['seconds']:.0f}s; {out['verdict']}", flush=True)
    return out


# ----------------------------------------------------------------------------- report

def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _pct(x: float | None, signed: bool = True) -> str:
    return "-" if x is None else f"{x * 100:+.2f}%" if signed else f"{x * 100:.1f}%"


def _ci(ci: Any) -> str:
    return "-" if not ci else f"[{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}]"


def _table(head: list[str], body: list[list[str]]) -> str:
    w = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    line = lambda cells: "  ".join(c.rjust(n) for c, n in zip(cells, w, strict=False))  # noqa: E731
    return "\n".join([line(head), line(["-" * n for n in w])] + [line(b) for b in body])


def render(report: dict[str, Any]) -> str:
    out = []
    p = report["parts"]
    if (p.get("truth") or {}).get("verdict"):
        body = []
        for s in p["truth"]["seeds"]:
            q, o = s["truth"]["maker_queue_rates"], s["truth"]["maker_optimistic_rates"]
            body.append([str(s["seed"]), str(q["orders"]), _pct(q["truth_fill_rate"], False),
                         _pct(q["fill_rate"], False), _pct(o["fill_rate"], False), _pct(q["truth_pnl_per_staked"]), _pct(q["pnl_per_staked"]),
                         _pct(o["pnl_per_staked"]), str(s["truth"]["truth_through_fills"])])
        v = p["truth"]["verdict"]
        q, o = v["pooled_maker_queue"], v["pooled_maker_optimistic"]
        body.append(["pooled", str(q["orders"]), _pct(q["truth_fill_rate"], False),
                     _pct(q["fill_rate"], False), _pct(o["fill_rate"], False), _pct(q["truth_pnl_per_staked"]), _pct(q["pnl_per_staked"]),
                     _pct(o["pnl_per_staked"]), str(v["truth_fills_with_through"])])
        out += ["TRUTH (default book; edge policy's maker-queue orders vs the sim's shadow fills)",
                _table(["seed", "orders", "fill truth", "fill mq", "fill mo", "PnL/st truth", "PnL/st mq",
                        "PnL/st mo", "through"], body),
                f"maker-queue error: fill {q['fill_rate_error_pp']:+.1f} pp, PnL/staked "
                f"{q['pnl_per_staked_error_pt']:+.2f} pt; maker-optimistic: fill "
                f"{o['fill_rate_error_pp']:+.1f} pp, PnL/staked {o['pnl_per_staked_error_pt']:+.2f} pt"
                if q["fill_rate_error_pp"] is not None and q["pnl_per_staked_error_pt"] is not None
                and o["pnl_per_staked_error_pt"] is not None else "too few fills to compare",
                f"{v['criterion']}: {'MET' if v['met'] else 'NOT met'}", ""]
    if (p.get("power") or {}).get("verdict"):
        body = []
        for s in p["power"]["seeds"]:
            m, t = s["power"]["maker-queue"], s["power"]["taker"]
            body.append([str(s["seed"]), _pct(m["difference"]), _ci(m["ci95"]), "yes" if m["detected"] else "no",
                         _pct(t["difference"]), _ci(t["ci95"]),
                         _pct(s["oracle"]["taker"]["expected_pnl_per_staked"]),
                         _pct(s["oracle"]["maker"]["expected_pnl_per_staked"])])
        v = p["power"]["verdict"]
        out += ["POWER (shrunk book: edge - always-enter, PnL per staked)",
                _table(["seed", "mq diff", "mq CI95", "detected", "taker diff", "taker CI95",
                        "oracle taker", "oracle maker"], body),
                f"oracle-informed gate, expected PnL/staked (mean over seeds): taker "
                f"{_pct(v['oracle_expected_pnl_per_staked']['taker'])}, maker (upper bound: every bid "
                f"fills) {_pct(v['oracle_expected_pnl_per_staked']['maker'])}",
                f"detected {v['detected']}/{v['seeds']} (taker {v['detected_taker']}/{v['seeds']}); "
                f"{v['criterion']}: {'MET' if v['met'] else 'NOT met'}", ""]
    if (p.get("phantom") or {}).get("verdict"):
        body = []
        for s in p["phantom"]["seeds"]:
            c = s["cells"]["edge/maker-queue"]
            body.append([str(s["seed"]), str(c["entries"]), str(c["fills"]), _pct(c["pnl_per_staked"]), _ci(c["ci95"])])
        v = p["phantom"]["verdict"]
        mk = v["markouts"]
        body.append(["pooled", str(v["entries"]), str(v["fills"]), _pct(v["pnl_per_staked"]), _ci(v["ci95"])])
        out += ["PHANTOM (efficient book: edge policy, maker-queue)",
                _table(["seed", "entries", "fills", "PnL/staked", "CI95"], body),
                f"entry rate {_pct(v['entry_rate'])} of windows; markouts (c/share) 10s "
                + " ".join("-" if mk[k] is None else f"{mk[k] * 100:+.2f}" for k in mk) + " (10s 60s res)",
                f"{v['criterion']}: {'MET' if v['met'] else 'NOT met'}", ""]
    if (p.get("finding") or {}).get("verdict"):
        out.append("FINDING (pre-registered seeds 101-105: edge - filters, maker-queue, pooled)")
        for book, v in p["finding"]["verdict"].items():
            out.append(f"{book}: difference {_pct(v['difference'])} {_ci(v['ci95'])}: model beats filters "
                       f"as a maker: {v['model_beats_filters_as_maker']}; markouts edge "
                       f"{v['edge']['markouts']}, filters {v['filters']['markouts']}")
    for name, part in p.items():
        for f in part["failed"]:
            out.append(f"{name} seed {f['seed']} ({f['book']}) FAILED: {f['error']}")
    return "\n".join(out)


# ----------------------------------------------------------------------------- CLI

def _seeds(text: str) -> tuple[int, ...]:
    """'301,302' or '311-320' (plain parsing: a bad value is a one-line refusal)."""
    out: list[int] = []
    for part in (x.strip() for x in text.split(",") if x.strip()):
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()):
            raise Refused(f"--seeds {text!r}: use numbers like 311,312 or 311-320")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    if not out:
        raise Refused(f"--seeds {text!r}: no seed given")
    return tuple(out)


def plan(argv: list[str] | None) -> tuple[list[dict[str, Any]], argparse.Namespace]:
    """The jobs the arguments ask for; ``Refused`` for bad input (reserved seeds included)."""
    ap = argparse.ArgumentParser(prog="python -m bench.acceptance_maker", description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["truth", "power", "phantom", "all", "finding"], default="all")
    ap.add_argument("--seeds", default=None, help="override the part's seeds (e.g. 301-303); "
                    f"{RESERVED_SEEDS[0]}-{RESERVED_SEEDS[-1]} are refused (pre-registered)")
    ap.add_argument("--days", default=str(DAYS), help=f"days of history per seed (default {DAYS:g})")
    ap.add_argument("--test-days", default=str(TEST_DAYS), help=f"test days per seed (default {TEST_DAYS:g})")
    ap.add_argument("--jobs", default="2", help="worker processes (default 2)")
    ap.add_argument("--bootstrap", default="2000", help="bootstrap resamples (default 2000)")
    ap.add_argument("--work-dir", default="data/acceptance", help="histories (kept and reused)")
    ap.add_argument("--out", default=None, help="JSON report (default <work-dir>/acceptance_<part>.json)")
    ap.add_argument("--preregistered-final", action="store_true",
                    help="THE pre-registered run (issue 17): seeds 101-105, 30 test days, default "
                         "and sharp books, edge - filters under maker-queue; run once, after "
                         "everything else is final; never tune on it")
    a = ap.parse_args(argv)
    try:
        a.days, a.test_days, a.jobs, a.bootstrap = float(a.days), float(a.test_days), int(a.jobs), int(a.bootstrap)
    except ValueError:
        raise Refused("--days and --test-days take numbers, --jobs and --bootstrap integers") from None
    if not (a.days > a.test_days > 0 and 1 <= a.jobs <= 8 and a.bootstrap >= 100):
        raise Refused("need --days > --test-days > 0, --jobs in 1..8, --bootstrap >= 100")
    seeds = _seeds(a.seeds) if a.seeds else None
    if a.preregistered_final:
        if a.part != "finding" or (seeds and seeds != RESERVED_SEEDS) or a.test_days != FINAL["test_days"]:
            raise Refused("--preregistered-final runs exactly the pre-registered finding: --part "
                          "finding, seeds 101-105, --test-days 30 (nothing else may change)")
        marker = Path(a.work_dir) / "acceptance_finding.json"
        if marker.exists():
            raise Refused(f"the pre-registered run was already made ({marker}); it is run once")
        jobs = [{"part": "finding", "book": b, "seed": s} for b in FINAL["books"] for s in RESERVED_SEEDS]
    else:
        if a.part == "finding":
            raise Refused("--part finding is the pre-registered run: it needs --preregistered-final")
        bad = sorted(set(seeds or ()) & set(RESERVED_SEEDS))
        if bad:
            raise Refused(f"seeds {RESERVED_SEEDS[0]}-{RESERVED_SEEDS[-1]} are pre-registered for the "
                          f"final run only (got {', '.join(map(str, bad))}); pass --preregistered-final "
                          "for that run, or use other seeds")
        parts = list(PARTS) if a.part == "all" else [a.part]
        jobs = [{"part": p, "book": PARTS[p][0], "seed": s} for p in parts for s in (seeds or PARTS[p][1])]
    for j in jobs:
        j.update(work=str(Path(a.work_dir).resolve()), days=a.days, test_days=a.test_days, n_boot=a.bootstrap)
    return jobs, a


def assemble(done: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    """The report: per part, its seeds and its verdict."""
    parts: dict[str, Any] = {}
    for name, verdict in (("truth", lambda s: truth_verdict(s)), ("power", lambda s: power_verdict(s)),
                          ("phantom", lambda s: phantom_verdict(s, n_boot)),
                          ("finding", lambda s: finding_verdict(s, n_boot))):
        ss = sorted((s for s in done if s["part"] == name and "error" not in s),
                    key=lambda s: (s["book"], s["seed"]))
        failed = [s for s in done if s["part"] == name and "error" in s]
        if ss or failed:
            parts[name] = {"seeds": ss, "failed": failed, "verdict": verdict(ss) if ss else None}
    return {"parts": parts}


def main(argv: list[str] | None = None) -> int:
    try:
        jobs, a = plan(argv)
    except Refused as e:
        print(f"acceptance_maker: {e}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    print(f"acceptance_maker: {len(jobs)} histories ({a.days:g} days, {a.test_days:g} test days, "
          f"4 assets) with {a.jobs} workers into {a.work_dir}", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the workers are the parallelism
    if a.jobs > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(a.jobs, len(jobs))) as pool:
            done = list(pool.imap_unordered(seed_job, jobs))
    else:
        done = [seed_job(j) for j in jobs]
    report = assemble(done, a.bootstrap)
    report["sizes"] = {"days": a.days, "test_days": a.test_days, "assets": 4, "end": END,
                       "bootstrap": a.bootstrap, "wall_s": round(time.monotonic() - t0, 1)}
    part = "finding" if a.preregistered_final else a.part
    out = Path(a.out) if a.out and part != "finding" else Path(a.work_dir) / f"acceptance_{part}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print("\n" + render(report))
    print(f"\nreport: {out} ({report['sizes']['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
