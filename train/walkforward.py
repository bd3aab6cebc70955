"""`slotml walkforward`: retrain on a schedule over the lake and score each next period out of
sample with the model that would have been live then.

Plan: from the lake's first resolved window, an initial span (``initial_days``), then periods of
``every_days``. Period k's model is ``slotml train``'s own run (``pipeline.run``) on the windows
before the period (all of them, or the last ``sliding_days``: ``TrainConfig.slot_from``), with
the period as its test days (``slot_to`` = the period's end, ``test_days`` = its length): the
same split, calibration, policy-slice thresholds and policy table as a `slotml train`. Its model
never saw a window at or after the period's start (the test slice is embargoed from the rest).

Layout of ``out_dir``: ``plan.json`` (the lake's manifest id and span, the options, the
periods), one ``period_NNN/`` per period holding its model, card, diagram, ``rows.npz`` (the
test rows: y, model, book mid, oracle) and ``done.json``, written atomically LAST. A killed run
resumes: periods with a ``done.json`` of the same plan are kept, the rest retrained; a run with
other options (or over a changed lake) is refused. Periods run in parallel
(``ProcessPoolExecutor``, ``jobs`` processes, XGBoost threads = cores // jobs); one log line per
finished period with done/total and the ETA. The pooled report is ``walkforward_report.py``.

About 430 lines, one module: plan, resume, the worker's period and the parallel loop share one
plan dict and one directory layout; splitting them would spread the resume contract over files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from slotml.errors import UserError
from slotml.train.pipeline import TrainConfig

log = logging.getLogger(__name__)

DAY_S = 86400
PLAN_FILE = "plan.json"
DONE_FILE = "done.json"
ROWS_FILE = "rows.npz"
MIN_LAST_SHARE = 0.5  # a last, shorter period is kept if it spans at least this share of --every


@dataclass(frozen=True)
class Period:
    index: int
    train_from: int | None  # None: from the lake's start (expanding)
    test_from: int  # window starts in [test_from, test_to) are scored
    test_to: int

    @property
    def name(self) -> str:
        return f"period_{self.index:03d}"

    @property
    def test_days(self) -> float:
        return (self.test_to - self.test_from) / DAY_S

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WalkConfig:
    train: TrainConfig  # the base run; slot_from/slot_to, test_days, models_dir set per period
    out_dir: Path
    initial_days: float = 30.0
    every_days: float = 7.0
    sliding_days: float | None = None  # None: expanding span
    jobs: int | None = None  # None: the cores
    stop_after: int | None = None  # this run trains at most N periods (the next run resumes)

    @property
    def n_jobs(self) -> int:
        return max(1, self.jobs or os.cpu_count() or 1)


# ---------------------------------------------------------------- the plan

def lake_span(con: Any, window_s: int) -> tuple[int, int] | None:
    """(first window start, end of the last window) over the family's resolved windows."""
    first, last = con.execute(
        "SELECT min(slot_ts), max(slot_ts) FROM slot_resolutions WHERE window_s = ? "
        "AND resolved_up IS NOT NULL", [int(window_s)]).fetchone()
    if first is None:
        return None
    return int(first), int(last) + int(window_s)


def plan_periods(first: int, end: int, window_s: int, initial_days: float, every_days: float,
                 sliding_days: float | None = None) -> list[Period]:
    """The periods over [first, end): boundaries on whole windows, the last one kept if it
    spans at least half of ``every_days``."""
    w = int(window_s)

    def snap(t: float) -> int:  # the window start nearest t (relative to the lake's first)
        return first + int(round((t - first) / w)) * w

    step = every_days * DAY_S
    periods: list[Period] = []
    k = 0
    while True:
        a = snap(first + initial_days * DAY_S + k * step)
        b = min(snap(first + initial_days * DAY_S + (k + 1) * step), end)
        if a >= end or (b - a) < MIN_LAST_SHARE * step or b <= a:
            break
        train_from = None
        if sliding_days is not None:
            s = snap(a - sliding_days * DAY_S)
            train_from = s if s > first else None
        periods.append(Period(k, train_from, a, b))
        k += 1
    return periods


def _options(cfg: WalkConfig) -> dict[str, Any]:
    """Everything that decides a period's model (what a resumed run must share)."""
    t = cfg.train
    split = dataclasses.asdict(t.split)
    split.pop("test_days", None)
    if split.get("layout") == "standard":  # absent = standard: plans written before
        split.pop("layout")                # --split-layout keep their id (and resume)
    if split.get("es_days") is None:       # the same for --es-days
        split.pop("es_days", None)
    return {
        "initial_days": cfg.initial_days, "every_days": cfg.every_days,
        "sliding_days": cfg.sliding_days, "params": t.params, "calibration": t.calibration,
        "oracle": str(t.oracle_path) if t.oracle_path else None, "window_s": t.window_s,
        "points": list(t.points), "tolerance": t.tolerance, "lookback": t.lookback,
        "prob_floor": t.prob_floor, "mirror": t.mirror, "policy": t.policy,
        "filters": dataclasses.asdict(t.filters), "split": split,
        # absent when unset: plans written before --half-life-days keep their id (and resume)
        **({"half_life_days": t.half_life_days} if t.half_life_days else {}),
        **({"refit_booster": True} if t.refit_booster else {}),  # the same for --refit-booster
        **({"fit_points": list(t.fit_points)} if t.fit_points else {}),  # and for --fit-points
        "lake": str(Path(t.lake_dir).resolve()),
    }


def make_plan(cfg: WalkConfig) -> dict[str, Any]:
    """The lake's manifest and span, the options and the periods (UserError if none fit)."""
    import duckdb

    from slotml.lake.query import refresh
    from slotml.train.pipeline import _family

    con = duckdb.connect(":memory:")
    try:
        manifest = refresh(con, cfg.train.lake_dir)
        window_s = _family(con, cfg.train.window_s)
        span = lake_span(con, window_s)
    finally:
        con.close()
    if span is None:
        raise UserError("the lake holds no resolved windows: run the collector (or the sim's "
                        "backfill) and `slotml export` first")
    first, end = span
    if cfg.every_days * DAY_S < window_s:
        raise UserError(f"--every {cfg.every_days:g} days is shorter than one window "
                        f"({window_s} s)")
    periods = plan_periods(first, end, window_s, cfg.initial_days, cfg.every_days, cfg.sliding_days)
    if not periods:
        have = (end - first) / DAY_S
        raise UserError(
            f"the lake spans {have:.2f} days: --initial-days {cfg.initial_days:g} and one period "
            f"of --every {cfg.every_days:g} need at least "
            f"{cfg.initial_days + MIN_LAST_SHARE * cfg.every_days:g}")
    options = _options(cfg)
    key = {"lake_manifest_id": int(manifest.id) if manifest.id else None,
           "window_s": window_s, "lake_from": first, "lake_to": end, "options": options}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {**key, "plan_id": digest, "split_layout": cfg.train.split.layout,
            "periods": [p.describe() for p in periods]}


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}")
    return out


def _explicit(options: Any) -> Any:
    """Options with the split's defaults that ``_options`` leaves out spelled out (for messages)."""
    if not isinstance(options, dict) or not isinstance(options.get("split"), dict):
        return options
    return {**options, "split": {"layout": "standard", **options["split"]}}


def check_resume(out_dir: Path, plan: dict[str, Any]) -> bool:
    """Whether ``out_dir`` already holds this plan (True) or nothing (False); UserError if it
    holds another one (other options, or another state of the lake)."""
    path = out_dir / PLAN_FILE
    if not path.exists():
        return False
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--out {out_dir}: its {PLAN_FILE} is unreadable ({e}); use another --out") from None
    if old.get("plan_id") == plan["plan_id"]:
        return True
    keys = ("lake_manifest_id", "window_s", "lake_from", "lake_to", "options")
    diff = _differences({k: _explicit(old.get(k)) for k in keys},
                        {k: _explicit(plan.get(k)) for k in keys})
    shown = "; ".join(diff[:3]) + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")
    raise UserError(f"--out {out_dir} holds a walk-forward with other options or another lake "
                    f"({shown or 'plan differs'}): rerun with its options or use another --out")


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def finished(out_dir: Path, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Periods whose done.json belongs to this plan."""
    out = {}
    for p in plan["periods"]:
        f = out_dir / Period(**p).name / DONE_FILE
        try:
            done = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if done.get("plan_id") == plan["plan_id"] and (f.parent / ROWS_FILE).exists():
            out[p["index"]] = done
    return out


# ---------------------------------------------------------------- one period (a worker process)

def period_config(base: TrainConfig, period: Period, period_dir: Path, nthread: int,
                  test_days: float | None = None) -> TrainConfig:
    """``slotml train``'s config for one period: the span up to the period's end, the period as
    its test days, single-purpose models dir, XGBoost threads (unless --params sets them).
    ``test_days``: from the period's start to its last window in the lake (default: to its end)."""
    params = dict(base.params)
    params.setdefault("nthread", nthread)
    days = period.test_days if test_days is None else test_days
    return replace(base, models_dir=period_dir, promote=False, slot_from=period.train_from,
                   slot_to=period.test_to, params=params,
                   split=replace(base.split, test_days=days, final=False))


def _worker_init(log_format: str, log_level: str, parent: int) -> None:
    import threading

    from slotml.log import setup_logging

    # the stages of N parallel trainings would interleave: a worker says only what went wrong
    setup_logging(log_format, "DEBUG" if log_level.upper() == "DEBUG" else "WARNING")

    def orphaned() -> None:  # a killed (SIGKILL) walk must not leave workers training on
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=orphaned, name="walkforward-parent-watch", daemon=True).start()


# A worker's first pass over the whole lake (its plan id -> resolved rows, unresolved slots): the
# split pass has no statistics, so every period's is a slice of it (built once per process, not
# once per period: on the year bench that pass was about a fifth of a period's time).
_SPLIT_PASS: dict[str, tuple[Any, np.ndarray]] = {}


def split_pass(base: TrainConfig, plan: dict[str, Any], period: Period) -> Any:
    """The period's first-pass rows (``pipeline.load_dataset``'s ``split_pass``), unresolved rows
    counted within its span as ``slotml train`` counts them."""
    import duckdb

    from slotml.features.build import build_training_set
    from slotml.features.contract import TARGET
    from slotml.lake.query import refresh
    from slotml.train.pipeline import dataset_from_arrow, in_span

    key = plan["plan_id"]
    if key not in _SPLIT_PASS:
        _SPLIT_PASS.clear()
        con = duckdb.connect(":memory:")
        try:
            refresh(con, base.lake_dir)
            shape = {"tolerance": base.tolerance, "lookback": base.lookback}
            t0 = build_training_set(con, base.build_points, None, resolved_only=False,
                                    window_s=plan["window_s"], **shape)
        finally:
            con.close()
        y = np.asarray(t0.column(TARGET).to_numpy(zero_copy_only=False), dtype=np.float64)
        slots = np.asarray(t0.column("slot_ts").to_numpy(zero_copy_only=False), dtype=np.int64)
        ds0 = dataset_from_arrow(t0, window_s=plan["window_s"], points=base.points, stats={},
                                 manifest_id=plan["lake_manifest_id"], **shape)
        _SPLIT_PASS[key] = (ds0, slots[~np.isfinite(y)])
    ds0, unresolved = _SPLIT_PASS[key]
    out = in_span(ds0, period.train_from, period.test_to)
    lo = period.train_from if period.train_from is not None else np.iinfo(np.int64).min
    out.skipped = {"unresolved_rows": int(((unresolved >= lo) & (unresolved < period.test_to)).sum())}
    return out


def run_period(base: TrainConfig, period: Period, period_dir: Path, nthread: int,
               plan: dict[str, Any]) -> dict[str, Any]:
    """Train and score one period; writes its files and, last, done.json. Returns done.json."""
    from slotml.train.pipeline import run

    t0, c0 = time.perf_counter(), time.process_time()
    plan_id = plan["plan_id"]
    if period_dir.exists():  # what a killed run left half-written
        shutil.rmtree(period_dir)
    period_dir.mkdir(parents=True)
    sp = split_pass(base, plan, period)
    # train's test slice is the last test_days before the span's last window: measured from
    # the windows there are, so missing windows at a period's end never pull its test days
    # into the period before (they would be scored, and their PnL counted, twice)
    there = sp.slot_ts[sp.slot_ts >= period.test_from]
    if len(there) == 0:
        raise UserError(f"{period.name}: no resolved window in the lake between "
                        f"{_when(period.test_from)} and {_when(period.test_to)}")
    test_days = (int(there.max()) + int(plan["window_s"]) - period.test_from) / DAY_S
    res = run(period_config(base, period, period_dir, nthread, test_days), sp)
    rows = res.test_rows
    if rows is None:  # cannot happen: test_days > 0
        raise UserError(f"{period.name}: the run had no test days")
    keep = (rows["slot_ts"] >= period.test_from) & (rows["slot_ts"] < period.test_to)
    np.savez(period_dir / ROWS_FILE, **{k: np.asarray(v)[keep] for k, v in rows.items()})
    splits = res.card["splits"]
    choice = res.card.get("entry_policy") or {}
    done = {
        "plan_id": plan_id, "period": period.describe(), "model": res.model_path.name,
        "card": res.card_path.name, "rows": int(keep.sum()),
        "trained_to": splits["train"]["to"], "calibration_to": splits["calibration"]["to"],
        "policy_to": (splits.get("policy") or {}).get("to"), "test": splits["test"],
        "entry_policy": choice.get("chosen") and {k: choice["chosen"][k]
                                                  for k in ("min_edge", "kelly_fraction")},
        "policy_table": {k: v for k, v in res.card["policy"].items() if k != "table"},
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(time.process_time() - c0, 2),  # all of the worker's threads
        "timings_s": res.timings,
    }
    write_json_atomic(period_dir / DONE_FILE, done)
    return done


# ---------------------------------------------------------------- the whole walk

@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread while the workers run."""
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _clock(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _when(t: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def walk(cfg: WalkConfig) -> dict[str, Any]:
    """Plan, resume, train the missing periods in parallel, then the pooled report."""
    from slotml.train.walkforward_report import build_report

    out = cfg.out_dir
    plan = make_plan(cfg)
    resumed = check_resume(out, plan)
    out.mkdir(parents=True, exist_ok=True)
    if not resumed:
        write_json_atomic(out / PLAN_FILE, plan)
    periods = [Period(**p) for p in plan["periods"]]
    done = finished(out, plan)
    before = len(done)
    todo = [p for p in periods if p.index not in done]
    if cfg.stop_after is not None:
        todo = todo[:cfg.stop_after]
    jobs = min(cfg.n_jobs, max(1, len(todo)))
    nthread = max(1, (os.cpu_count() or 1) // jobs)
    total = len(periods)
    log.info("walk-forward in %s: %d periods (%s .. %s), %d finished before, %d to train now "
             "(%d jobs x %d XGBoost threads)", out, total, _when(periods[0].test_from),
             _when(periods[-1].test_to), len(done), len(todo), jobs, nthread)
    t0 = time.perf_counter()
    if todo:
        import multiprocessing

        root = logging.getLogger()
        fmt = "json" if any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers) else "text"
        ctx = multiprocessing.get_context("forkserver")
        with _terminate_as_interrupt(), ProcessPoolExecutor(
                max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                initargs=(fmt, logging.getLevelName(root.level), os.getpid())) as ex:
            pending: dict[Future, Period] = {
                ex.submit(run_period, cfg.train, p, out / p.name, nthread, plan): p
                for p in todo}
            # a period's cost grows with its training span: the ETA weighs periods by it
            weight = {p.index: p.test_to - (p.train_from or plan["lake_from"]) for p in todo}
            work_left, work_done = sum(weight.values()), 0
            while pending:
                try:
                    finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the workers, keep what is done
                    for proc in list(getattr(ex, "_processes", {}).values()):
                        proc.terminate()
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise
                for f in finished_now:
                    p = pending.pop(f)
                    try:
                        d = f.result()
                    except BaseException as e:
                        for other in pending:
                            other.cancel()
                        if isinstance(e, KeyboardInterrupt):
                            raise
                        if not isinstance(e, UserError):
                            log.error("%s failed", p.name, exc_info=e)
                        why = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
                        raise UserError(
                            f"{p.name} ({_when(p.test_from)} .. {_when(p.test_to)}) failed: "
                            f"{why} (finished periods are kept: rerun to resume)") from e
                    done[p.index] = d
                    work_done += weight[p.index]
                    work_left -= weight[p.index]
                    el = time.perf_counter() - t0
                    eta = el / work_done * work_left
                    log.info("%s done (%s .. %s, %d rows, %.0fs): %d/%d, elapsed %s, ETA %s",
                             p.name, _when(p.test_from), _when(p.test_to), d["rows"], d["seconds"],
                             len(done), total, _clock(el), _clock(eta))
    rows_of = {}
    for i in done:
        with np.load(out / periods[i].name / ROWS_FILE, allow_pickle=False) as z:
            rows_of[i] = {k: z[k] for k in z.files}
    report = build_report(out, plan, done, rows_of)
    report["run"] = {"trained_now": len(done) - before, "reused": before,
                     "missing": total - len(done), "seconds": round(time.perf_counter() - t0, 2),
                     "jobs": jobs, "xgboost_threads": nthread}
    write_json_atomic(out / "report.json", report)
    return report

