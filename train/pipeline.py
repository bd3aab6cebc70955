"""`slotml train`: lake -> features -> split -> fit -> export -> calibrate -> check -> report.

Each stage logs its duration. Nothing is written unless both export checks pass; the model
file, its card and its reliability diagram share one stem, ``td_model_YYYYMMDD_HHMMSS``.
Statistics the features need (per-asset volatility) are fitted on the training slice only:
the split is decided on a first pass over the resolved rows (it depends only on window start
times and outcomes), then the set is rebuilt with those statistics.

About 550 lines, one module: the run is one sequence of steps over one config and one split;
the steps themselves (split, fit, export, metrics, importance, report) each have their own module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slotml import __version__
from slotml import model_file as mf
from slotml.errors import UserError
from slotml.features.contract import DEFAULT_LOOKBACK, DEFAULT_POINTS, DEFAULT_TOLERANCE
from slotml.train.dataset import TrainingSet
from slotml.train.metrics import FilterRule
from slotml.train.split import Split, SplitConfig, scored_only, temporal_split

log = logging.getLogger(__name__)

ORACLE_KEYS = ("symbol", "window_s", "slot_ts", "tick_ms")
ORACLE_COLUMNS = ("p_up", "oracle_p_up", "p_true", "p")  # first one present is used
CHECK_FIT_ROWS = 20_000  # training rows added to the export check (besides calibration + test)


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path
    lake_dir: Path
    models_dir: Path
    split: SplitConfig = field(default_factory=SplitConfig)
    params: dict[str, Any] = field(default_factory=dict)
    calibration: str = "isotonic"
    promote: bool = False
    oracle: Path | None = None  # None: <data-dir>/sim/oracle.parquet when present
    window_s: int | None = None  # None: the only family in the lake
    points: tuple[float, ...] = DEFAULT_POINTS
    # --fit-points: extra points (not in ``points``) whose rows only the booster's fit and
    # early stopping see: neighbouring minutes of a window share the map from move and time
    # left to P(Up), so the booster learns it from more rows; the model is still calibrated,
    # given its policy and scored on ``points`` alone (train/split.py ``scored_only``)
    fit_points: tuple[float, ...] = ()
    tolerance: float = DEFAULT_TOLERANCE  # of the window: max age of the decision row
    lookback: float = DEFAULT_LOOKBACK  # of the window: move_velocity's lookback
    filters: FilterRule = field(default_factory=FilterRule)
    eval_card: Path | None = None  # --final: the evaluation run's card (default: latest)
    prob_floor: float = 0.005  # calibrated P(Up) kept in [floor, 1 - floor] (onnx_export.PROB_FLOOR)
    mirror: bool = True  # fit and calibrate on each row and its Up/Down mirror (train/mirror.py)
    policy: str = "edge"  # edge: thresholds chosen on the policy slice; design: no policy key
    # Window starts kept, [slot_from, slot_to) (None: unbounded): a walk-forward period or a
    # challenger sees the lake as it stood then; the split then runs on what is left.
    slot_from: int | None = None
    slot_to: int | None = None
    # --half-life-days: a fit row's weight halves for every this many days between its window
    # and the fit slice's last one (None: equal weights), so a retrain after a regime change
    # leans on the new regime without dropping the old days' data
    half_life_days: float | None = None
    # --refit-booster: after early stopping, the booster is refitted for the chosen rounds on
    # the fit AND early-stopping rows; the calibration map is still fitted on the first
    # booster's scores of the calibration rows (out of its fit) and applied to the refit, as
    # scikit-learn's CalibratedClassifierCV(ensemble=False) does. With --split-layout latest
    # the booster then sees the days right before the test.
    refit_booster: bool = False

    @property
    def build_points(self) -> tuple[float, ...]:
        """The points whose rows are built: the decision points and any ``fit_points``."""
        return tuple(sorted({*self.points, *self.fit_points}))

    @property
    def oracle_path(self) -> Path | None:
        if self.oracle is not None:
            return self.oracle
        p = self.data_dir / "sim" / "oracle.parquet"
        return p if p.exists() else None


@dataclass
class TrainResult:
    model_path: Path
    card_path: Path
    png_path: Path | None
    metrics: dict[str, Any]
    card: dict[str, Any]
    report: str
    promoted: bool
    timings: dict[str, float]
    # the test rows (symbol, slot_ts, point, y, model, book, oracle), for pooled scores over
    # several runs (walk-forward); None with --final
    test_rows: dict[str, np.ndarray] | None = None


class Stages:
    """Times each stage and logs it (the progress the operator sees)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        log.info("stage %s ...", name)
        t = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t, 3)
        log.info("stage %s done in %.2fs", name, self.timings[name])

    @property
    def total(self) -> float:
        return time.perf_counter() - self.t0


# ---------------------------------------------------------------- features -> TrainingSet

def dataset_from_arrow(table: Any, *, window_s: int, points: tuple[float, ...],
                       stats: dict[str, Any], manifest_id: int | None = None,
                       tolerance: float = DEFAULT_TOLERANCE,
                       lookback: float = DEFAULT_LOOKBACK) -> TrainingSet:
    """features/'s training-set table (KEYS, FEATURES, LABELS) -> TrainingSet (resolved rows)."""
    from slotml.features.contract import CONTRACT_VERSION, FEATURES, TARGET

    cols = set(table.column_names)
    missing = [c for c in (*FEATURES, TARGET, "symbol", "slot_ts", "tick_ms", "point") if c not in cols]
    if missing:
        raise UserError(f"the feature set lacks columns {missing}: features/ and train/ disagree")
    target = table.column(TARGET).to_numpy(zero_copy_only=False)
    target = np.asarray(target, dtype=np.float64)
    resolved = np.isfinite(target)
    n_unresolved = int((~resolved).sum())

    def col(name: str, dtype: Any) -> np.ndarray:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=dtype)[resolved]

    X = np.column_stack([col(f, np.float32) for f in FEATURES])
    book = book_probability_from_quotes(
        col("bid_up", np.float64), col("ask_up", np.float64),
        col("bid_down", np.float64), col("ask_down", np.float64))
    return TrainingSet(
        X=X, y=target[resolved].astype(np.int8),
        symbol=np.asarray(table.column("symbol").to_pylist(), dtype=object)[resolved].astype(str),
        slot_ts=col("slot_ts", np.int64), tick_ms=col("tick_ms", np.int64),
        point=col("point", np.float64), feature_names=list(FEATURES), window_s=int(window_s),
        decision_points=[float(p) for p in points], up_mid=book,
        spot_move_pct=col("spot_move_pct", np.float64), stats=dict(stats),
        contract_version=str(CONTRACT_VERSION), tolerance=float(tolerance),
        lookback=float(lookback), lake_manifest_id=manifest_id,
        skipped={"unresolved_rows": n_unresolved},
    )


def book_probability_from_quotes(bid_up: np.ndarray, ask_up: np.ndarray, bid_down: np.ndarray,
                                 ask_down: np.ndarray) -> np.ndarray:
    """The book's own P(Up) per row: the Up mid; else 1 - the Down mid; else the mean of the
    quotes there are, as P(Up) (bid_up, ask_up, 1 - bid_down, 1 - ask_down); NaN if none.

    One-sided books happen at the extremes (an Up book with a 0.99 bid and no ask): scoring
    those rows 0.5 would charge the book ~0.25 of Brier each for the venue's empty side (on the
    sim's efficient book that alone made the book look 5% worse than the oracle it quotes).
    """
    up_mid = (bid_up + ask_up) / 2
    down_mid = (bid_down + ask_down) / 2
    quotes = np.column_stack([bid_up, ask_up, 1.0 - bid_down, 1.0 - ask_down])
    have = np.isfinite(quotes)
    n = have.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_q = np.where(n > 0, np.where(have, quotes, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    return np.where(np.isfinite(up_mid), up_mid, np.where(np.isfinite(down_mid), 1.0 - down_mid, mean_q))


def _family(con: Any, wanted: int | None) -> int:
    fams = [int(r[0]) for r in con.execute(
        "SELECT DISTINCT window_s FROM slot_snapshots ORDER BY 1").fetchall()]
    if not fams:
        raise UserError("the lake holds no snapshots: run the collector (or the sim's backfill) "
                        "and `slotml export` first")
    if wanted is None:
        if len(fams) > 1:
            raise UserError(f"the lake holds several window families {fams}: pick one with --window-s")
        return fams[0]
    if wanted not in fams:
        raise UserError(f"--window-s {wanted}: the lake holds only {fams}")
    return wanted


def in_span(ds: TrainingSet, slot_from: int | None, slot_to: int | None) -> TrainingSet:
    """The rows whose window starts in [slot_from, slot_to) (all when both are None)."""
    if slot_from is None and slot_to is None:
        return ds
    keep = np.ones(len(ds), dtype=bool)
    if slot_from is not None:
        keep &= ds.slot_ts >= slot_from
    if slot_to is not None:
        keep &= ds.slot_ts < slot_to
    out = ds.take(keep)
    out.skipped = dict(ds.skipped)
    return out


def load_dataset(con: Any, cfg: TrainConfig, stages: Stages, manifest_id: int | None = None,
                 split_pass: TrainingSet | None = None) -> tuple[TrainingSet, Split]:
    """Two passes: split on the resolved rows, fit stats on the training slice, rebuild.

    ``split_pass``: the first pass's rows of the span, already built (a walk-forward builds the
    lake's once and slices it per period: the pass has no statistics, so it is the same)."""
    from slotml.features.build import build_training_set, fit_stats

    window_s = _family(con, cfg.window_s)
    shape = {"tolerance": cfg.tolerance, "lookback": cfg.lookback}  # built with, and recorded
    # the SQL reads only the span (and the windows before it its features look back on): a
    # walk-forward period's build costs its span, not the lake's; in_span below still applies
    with stages("features (split pass)"):
        if split_pass is None:
            # all rows (unresolved ones are counted, then dropped, by dataset_from_arrow)
            t0 = build_training_set(con, cfg.build_points, None, resolved_only=False,
                                    window_s=window_s, slot_from=cfg.slot_from,
                                    slot_to=cfg.slot_to, **shape)
            ds0 = dataset_from_arrow(t0, window_s=window_s, points=cfg.points, stats={},
                                     manifest_id=manifest_id, **shape)
        else:
            ds0 = split_pass
        ds0 = in_span(ds0, cfg.slot_from, cfg.slot_to)
        split = temporal_split(ds0, cfg.split)
        log.info("%d resolved rows, %d windows; split %s", len(ds0), ds0.n_windows(),
                 json.dumps(split.describe()))
    train = split.train
    with stages("fit statistics (training slice)"):
        where, args = "window_s = ? AND slot_ts <= ?", [window_s, int(train.last_slot)]
        if cfg.slot_from is not None:
            where, args = where + " AND slot_ts >= ?", [*args, int(cfg.slot_from)]
        if split.layout != "standard":  # calibration and policy come first: not the booster's
            where, args = where + " AND slot_ts >= ?", [*args, int(train.first_slot)]
        stats = fit_stats(con, where, args)
    with stages("features"):
        t1 = build_training_set(con, cfg.build_points, stats, resolved_only=True, window_s=window_s,
                                slot_from=cfg.slot_from, slot_to=cfg.slot_to, **shape)
        ds = dataset_from_arrow(t1, window_s=window_s, points=cfg.points, stats=stats,
                                manifest_id=manifest_id, **shape)
        ds = in_span(ds, cfg.slot_from, cfg.slot_to)
    ds.skipped = dict(ds0.skipped)
    same = (len(ds) == len(ds0) and np.array_equal(ds.slot_ts, ds0.slot_ts)
            and np.array_equal(ds.symbol, ds0.symbol) and np.array_equal(ds.point, ds0.point))
    if not same:  # the lake changed between the passes (an export landed): split again
        split = temporal_split(ds, cfg.split)
    if cfg.fit_points:
        split = scored_only(split, ds, cfg.points)
    return ds, split


# ---------------------------------------------------------------- oracle

def load_oracle(path: Path, ds: TrainingSet, rows: np.ndarray) -> np.ndarray | None:
    """The sim's true P(Up) for ``ds`` rows ``rows`` (NaN where the oracle has no row)."""
    import polars as pl

    try:
        o = pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the operator's to fix
        raise UserError(f"--oracle {path}: cannot read ({e})") from None
    col = next((c for c in ORACLE_COLUMNS if c in o.columns), None)
    missing = [k for k in ORACLE_KEYS if k not in o.columns]
    if col is None or missing:
        raise UserError(f"--oracle {path}: needs columns {list(ORACLE_KEYS)} and one of "
                        f"{list(ORACLE_COLUMNS)}; has {o.columns}")
    o = o.select(
        pl.col("symbol").cast(pl.Utf8), pl.col("window_s").cast(pl.Int64),
        pl.col("slot_ts").cast(pl.Int64), pl.col("tick_ms").cast(pl.Int64),
        pl.col(col).cast(pl.Float64).alias("_oracle"),
    ).unique(subset=list(ORACLE_KEYS), keep="last")
    q = pl.DataFrame({
        "symbol": ds.symbol[rows], "window_s": np.full(len(rows), ds.window_s, np.int64),
        "slot_ts": ds.slot_ts[rows], "tick_ms": ds.tick_ms[rows],
        "_i": np.arange(len(rows)),
    })
    j = q.join(o, on=list(ORACLE_KEYS), how="left").sort("_i")
    out = j["_oracle"].to_numpy().astype(np.float64)
    log.info("oracle %s: %d of %d test rows matched", path, int(np.isfinite(out).sum()), len(rows))
    return out


# ---------------------------------------------------------------- serve's replay (policy table)

def policy_table(model_path: Path, cfg: TrainConfig, split: Split) -> dict[str, Any]:
    """The policy table of serve/'s replay (one implementation, in serve/) over the test days.

    Calls ``slotml.backtest.replay.policy_table(model_path=, lake_dir=, slot_from=, slot_to=)``
    (text). The model file is already written when this runs: a replay failure is reported in
    the card and the log, never fatal.
    """
    if split.test is None:
        return {"available": False, "reason": "no test days (--final)"}
    try:
        from slotml.backtest.replay import policy_report
    except ImportError as e:
        return {"available": False, "reason": f"serve's replay cannot be imported ({e})"}
    try:
        table, numbers = policy_report(model_path=model_path, lake_dir=cfg.lake_dir,
                                       slot_from=split.test.first_slot,
                                       slot_to=split.test.last_slot + 1)
    except Exception as e:  # noqa: BLE001 - the report's extra must not lose a written model
        log.exception("serve replay failed; the report goes without its policy table")
        return {"available": False, "reason": f"replay failed: {type(e).__name__}: {e}"}
    return {"available": True, "table": table, **numbers}


def choose_policy(model_path: Path, cfg: TrainConfig, split: Split) -> dict[str, Any]:
    """The edge policy's thresholds from the backtest on the policy slice (``backtest/choose``);
    never fatal: a failure leaves the model on the design's rule and says why."""
    if cfg.policy != "edge":
        return {"chosen": None, "reason": "--policy design: the model keeps the design's rule"}
    if split.policy is None:
        return {"chosen": None, "reason": "no policy slice (--policy-days 0)"}
    try:
        from slotml.backtest.choose import choose_policy as backtest_choose

        return backtest_choose(model_path, cfg.lake_dir, split.policy.first_slot,
                               split.policy.last_slot + 1)
    except Exception as e:  # noqa: BLE001 - the policy is an extra; the model stands without it
        log.exception("policy choice failed; the model keeps the design's rule")
        return {"chosen": None, "reason": f"policy choice failed: {type(e).__name__}: {e}"}


# ---------------------------------------------------------------- training proper

def _model_stem(models_dir: Path) -> str:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    while True:
        name = mf.model_file_name(now)
        if not (models_dir / name).exists():
            return name.removesuffix(mf.MODEL_FILE_SUFFIX)
        now += dt.timedelta(seconds=1)


def promote(models_dir: Path, model_path: Path) -> Path:
    """Point ``<models>/current`` at ``model_path`` atomically (a one-line text file)."""
    pointer = mf.write_pointer(models_dir, model_path)
    log.info("promoted: %s -> %s", pointer, model_path.name)
    return pointer


def _latest_eval_card(models_dir: Path) -> Path | None:
    cards = sorted(models_dir.glob(f"{mf.MODEL_FILE_PREFIX}*_card.json"), reverse=True)
    for c in cards:
        try:
            if not json.loads(c.read_text()).get("final", True):
                return c
        except (OSError, ValueError):
            continue
    return None


def _eval_card(cfg: TrainConfig) -> Path | None:
    return cfg.eval_card or _latest_eval_card(cfg.models_dir)


def _evaluation_summary(ec: Path | None) -> dict[str, Any]:
    """--final: the evaluation card's name and its overall test-day scores (for the metadata)."""
    if ec is None:
        return {"evaluation_card": None}
    try:
        card = json.loads(Path(ec).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--eval-card {ec}: cannot read it ({e})") from None
    m = card.get("metrics") or {}
    return {"evaluation_card": Path(ec).name, "evaluation_model": card.get("model"),
            "evaluation_overall": m.get("overall"), "evaluation_oracle": m.get("oracle")}


def _check_rows(split: Split) -> np.ndarray:
    fit_idx = np.flatnonzero(split.fit.mask)
    step = max(1, len(fit_idx) // CHECK_FIT_ROWS)
    m = split.calibration.mask.copy()
    if split.test is not None:
        m |= split.test.mask
    m[fit_idx[::step]] = True
    return m


def _recency_weights(slot_ts: np.ndarray, half_life_days: float | None,
                     mirrored: bool) -> np.ndarray | None:
    """Fit rows' weights: 1 for the latest window, halving every ``half_life_days`` before it
    (a row and its mirror weigh the same); None without a half-life."""
    if not half_life_days or len(slot_ts) == 0:
        return None
    w = np.exp2(-(float(slot_ts.max()) - slot_ts.astype(np.float64)) / (half_life_days * 86400.0))
    return np.concatenate([w, w]) if mirrored else w


def train_on_dataset(ds: TrainingSet, split: Split, cfg: TrainConfig,
                     stages: Stages | None = None) -> TrainResult:
    """Everything after the features: fit, export + calibrate + check, metrics, write."""
    from slotml.train import metrics as M
    from slotml.train.fit import fit_booster, refit_booster
    from slotml.train.importance import format_importance, importance
    from slotml.train.mirror import with_mirror
    from slotml.train.onnx_export import (
        INPUT_NAME,
        OUTPUT_NAME,
        export_calibrated,
        raw_onnx_probabilities,
        run_batched,
        session,
        set_metadata,
        write_atomic,
    )
    from slotml.train.ranges import feature_ranges
    from slotml.train.report import (
        format_entry_policy,
        format_policy,
        format_report,
        reliability_png,
        write_card,
    )

    stages = stages or Stages()
    fit, es, cal = split.fit.mask, split.early_stop.mask, split.calibration.mask
    eval_card = _eval_card(cfg) if cfg.split.final else None  # --final: the run it links

    def fit_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A slice's rows for fitting: with their mirror images unless --no-mirror."""
        if cfg.mirror:
            return with_mirror(ds.X[mask], ds.y[mask], ds.feature_names)
        return ds.X[mask], ds.y[mask]

    if cfg.mirror:
        log.info("fitting and calibrating on each row and its Up/Down mirror (--no-mirror: off)")
    with stages("fit booster"):
        X_fit, y_fit = fit_rows(fit)
        fr = fit_booster(X_fit, y_fit, *fit_rows(es), cfg.params, w_fit=_recency_weights(
            ds.slot_ts[fit], cfg.half_life_days, mirrored=cfg.mirror))
        booster, scorer, fitted = fr.booster, None, "fit slice"
        if cfg.refit_booster:  # the early-stopped booster only scores the calibration rows
            scorer, fitted = fr.booster, "fit and early-stopping slices"
            X_fit, y_fit = fit_rows(fit | es)
            booster = refit_booster(X_fit, y_fit, fr.best_iteration + 1, fr.params,
                                    _recency_weights(ds.slot_ts[fit | es], cfg.half_life_days,
                                                     mirrored=cfg.mirror))
        # the gate's out-of-distribution ranges: the rows just fitted on (train/ranges.py)
        ranges = feature_ranges(X_fit, ds.feature_names, fitted + (
            " and the Up/Down mirror" if cfg.mirror else ""))
        del X_fit, y_fit
    with stages(f"export + {cfg.calibration} calibration + checks"):
        check_mask = _check_rows(split)
        ex = export_calibrated(booster, ds.n_features, *fit_rows(cal), cfg.calibration,
                               ds.X[check_mask], cfg.prob_floor, scorer=scorer)
        log.info("export checks passed on %d rows: raw vs XGBoost %.2g, calibrated vs sklearn %.2g",
                 ex.check.rows, ex.check.raw_max_abs_diff, ex.check.calibrated_max_abs_diff)

    metrics: dict[str, Any] = {}
    p_test = y_test = book_test = None
    test_rows: dict[str, np.ndarray] | None = None
    base_rate = float(np.mean(ds.y[fit | es]))
    with stages("metrics"):
        if split.test is not None:
            tm = split.test.mask
            sess = session(ex.model)
            p_test = run_batched(sess, ds.X[tm], [OUTPUT_NAME])[0].astype(np.float64)
            y_test = ds.y[tm]
            rows = np.flatnonzero(tm)
            oracle = load_oracle(cfg.oracle_path, ds, rows) if cfg.oracle_path else None
            metrics = M.evaluate(
                y=y_test, p_model=p_test, symbol=ds.symbol[tm], slot_ts=ds.slot_ts[tm],
                point=ds.point[tm], base_rate=base_rate,
                up_mid=None if ds.up_mid is None else ds.up_mid[tm],
                spot_move_pct=None if ds.spot_move_pct is None else ds.spot_move_pct[tm],
                oracle_p=oracle, rule=cfg.filters,
            )
            book_test = M.book_probability(None if ds.up_mid is None else ds.up_mid[tm], len(rows))[0]
            # what the calibration did: the same booster's uncalibrated (exported) probabilities
            metrics["overall"]["model_uncalibrated"] = M.score(
                y_test, raw_onnx_probabilities(ex.raw, ds.X[tm]))
            metrics["test_windows"] = split.test.windows
            test_rows = {"symbol": ds.symbol[tm], "slot_ts": ds.slot_ts[tm], "point": ds.point[tm],
                         "y": y_test, "model": p_test, "book": book_test,
                         "oracle": np.full(len(rows), np.nan) if oracle is None else oracle}
        else:
            # no test days: carry the evaluation run that justified this model
            metrics = {"final": True, **_evaluation_summary(eval_card)}

    with stages("feature importance (gain; permutation on the calibration days)"):
        cal_sess = session(ex.model)
        imp = importance(booster, lambda X: run_batched(cal_sess, X, [OUTPUT_NAME])[0],
                         ds.X[cal], ds.y[cal], ds.feature_names)

    stats = {**ds.stats}
    models_dir = cfg.models_dir
    stem = _model_stem(models_dir)
    model_path = models_dir / (stem + mf.MODEL_FILE_SUFFIX)
    card_path = models_dir / f"{stem}_card.json"
    png_path = models_dir / f"{stem}_reliability.png" if p_test is not None else None
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = mf.ModelMeta(
        features=tuple(ds.feature_names), decision_points=tuple(sorted(ds.decision_points)),
        window_s=ds.window_s, tolerance=ds.tolerance, lookback=ds.lookback,
        stats=stats, calibration=cfg.calibration,
        feature_contract=str(ds.contract_version), slotml_version=__version__,
        splits=split.describe(), lake_manifest_id=ds.lake_manifest_id,
        metrics=metrics, created_at=created, importance=imp,
        feature_ranges=ranges,
    ).to_metadata()
    mf.validate_metadata(meta, ds.feature_names, source="model being written",
                         contract_version=str(ds.contract_version))

    with stages("write model, card, diagram"):
        set_metadata(ex.model, meta)
        if [i.name for i in ex.model.graph.input] != [INPUT_NAME]:
            raise UserError("internal: exported graph input is not 'features'")
        write_atomic(ex.model.SerializeToString(), model_path)
        if png_path is not None:
            reliability_png(png_path, y_test, {"model": p_test, "book mid": book_test},
                            title=f"reliability on the test days ({len(y_test):,} rows)")
        eval_link = None
        if cfg.split.final:
            eval_link = {"card": str(eval_card) if eval_card else None,
                         "note": None if eval_card else "no evaluation run found: run without --final first"}
        card = {
            "model": model_path.name,
            "created_at": created,
            "slotml_version": __version__,
            "final": cfg.split.final,
            "evaluation_run": eval_link,
            "feature_contract": ds.contract_version,
            "features": ds.feature_names,
            "decision_points": ds.decision_points,
            "window_s": ds.window_s,
            "tolerance": ds.tolerance,
            "lookback": ds.lookback,
            "lake_manifest_id": ds.lake_manifest_id,
            "rows": len(ds),
            "windows": ds.n_windows(),
            "skipped": {**ds.skipped, "embargo_rows": split.dropped_rows},
            "splits": split.describe(),
            "booster": {"params": fr.params, "best_iteration": fr.best_iteration,
                        "rounds_trained": fr.rounds_trained, "early_stop_logloss": fr.es_logloss,
                        "fit_half_life_days": cfg.half_life_days, "refit": cfg.refit_booster},
            "mirror_augmentation": cfg.mirror,
            "calibration": {"kind": cfg.calibration, "fitted_rows": ex.calibration.n,
                            **ex.calibration.info},
            "export_checks": ex.check.describe(),
            "stats": stats,
            "metrics": metrics,
            "importance": imp,
            "policy": None,
            "reliability_png": png_path.name if png_path else None,
            "timings_s": dict(stages.timings),
        }
        write_card(card_path, card)
    with stages("policy thresholds (backtest on the policy slice, maker-queue fills)"):
        choice = choose_policy(model_path, cfg, split)
        if choice.get("chosen") is not None:
            meta = {**meta, mf.KEY_POLICY: json.dumps(choice["chosen"], sort_keys=True)}
            mf.validate_metadata(meta, ds.feature_names, source="model being written",
                                 contract_version=str(ds.contract_version))
            set_metadata(ex.model, meta)
            write_atomic(ex.model.SerializeToString(), model_path)
    card["entry_policy"] = {"requested": cfg.policy, **choice}
    with stages("policy table (serve replay over the test days)"):
        policy = policy_table(model_path, cfg, split)
    card["policy"] = policy
    card["timings_s"] = dict(stages.timings)
    write_card(card_path, card)
    promoted = False
    if cfg.promote:
        promote(models_dir, model_path)
        promoted = True
    report = (format_report(metrics, ds.window_s) + "\n\n" + format_importance(imp) + "\n\n"
              + format_entry_policy(card["entry_policy"]) + "\n\n" + format_policy(policy))
    return TrainResult(model_path=model_path, card_path=card_path, png_path=png_path,
                       metrics=metrics, card=card, report=report, promoted=promoted,
                       timings=dict(stages.timings), test_rows=test_rows)


def run(cfg: TrainConfig, split_pass: TrainingSet | None = None) -> TrainResult:
    """The whole command: read the lake, build features, train, write (and maybe promote).
    ``split_pass``: see ``load_dataset``."""
    import duckdb

    from slotml.lake.query import refresh

    stages = Stages()
    with stages("open lake"):
        con = duckdb.connect(":memory:")
        manifest = refresh(con, cfg.lake_dir)
        manifest_id = int(manifest.id) if manifest.id else None
    ds, split = load_dataset(con, cfg, stages, manifest_id, split_pass)
    res = train_on_dataset(ds, split, cfg, stages)
    log.info("trained %s in %.1fs (%d rows)", res.model_path.name, stages.total, len(ds))
    return res
