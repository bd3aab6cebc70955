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
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.acceptance_parts import (  # noqa: F401 - history, backtest, sim_*: the tests' seam
    END,
    FINAL_BOOKS,
    SYMBOLS,
    backtest,
    cell_of,
    finding_verdict,
    history,
    oracle_expectation,
    phantom_verdict,
    power_of,
    power_verdict,
    sim_config,
    sim_digest,
    sim_orders,
    truth_of,
    truth_verdict,
)

RESERVED_SEEDS = tuple(range(101, 106))  # pre-registered (issue 17): the finding only
FINAL = {"seeds": RESERVED_SEEDS, "books": FINAL_BOOKS, "test_days": 30.0}
PARTS = {  # part: (book, default seeds)
    "truth": ("default", (301, 302, 303)),
    "power": ("shrunk", tuple(range(311, 321))),
    "phantom": ("efficient", tuple(range(331, 336))),
}
DAYS, TEST_DAYS = 60.0, 30.0


class Refused(Exception):
    """Bad input: one line, exit 2."""


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
    out["cells"] = {f"{p}/{f}": cell_of(result, p, f) for p, f in cells}
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(f"[{book} {seed}] {part}: {out['windows']} windows over {out['test_days']} days in "
          f"{out['seconds']:.0f}s; {out['verdict']}", flush=True)
    return out


# ----------------------------------------------------------------------------- report

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
                f"entry rate {_pct(v['entry_rate'], False)} of windows; markouts (c/share) 10 s / 60 s / "
                "resolution: " + " / ".join("-" if mk[k] is None else f"{mk[k] * 100:+.2f}" for k in mk),
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
