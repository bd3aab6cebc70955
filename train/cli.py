"""Subcommands of the train stage (parsers only; work is imported lazily in handlers)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from slotml.argtypes import (
    count,
    days,
    existing_dir,
    existing_file,
    fraction,
    integer,
    output_dir,
    probability,
    window_fraction,
    window_fractions,
)
from slotml.settings import add_common_args

DEFAULT_TEST_DAYS = 3.0
DEFAULT_EVERY = 7.0  # days: --challenge's test slice is at least one retraining period


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    p = sub.add_parser(
        "train",
        help="train the calibrated XGBoost model from the lake and write one ONNX file",
        description="lake -> point-in-time features -> temporal split (train | calibration | "
        "test, embargoed) -> XGBoost -> ONNX -> calibration appended in the graph -> export "
        "checks -> report. Writes <data-dir>/models/td_model_YYYYMMDD_HHMMSS.onnx, its model "
        "card (JSON) and a reliability diagram (PNG).",
    )
    add_common_args(p, db=False)
    p.add_argument("--lake", type=existing_dir, help="lake directory (default <data-dir>/lake)")
    p.add_argument("--test-days", type=days(0, 3650), default=None,
                   help="the last N days are the test set, used only for the report "
                   "(0..3650, default 3; with --challenge at least --every)")
    p.add_argument("--final", action="store_true",
                   help="production: fit on everything but the latest calibration slice, no test "
                   "days; the card links the latest evaluation run (or --eval-card)")
    p.add_argument("--eval-card", type=existing_file,
                   help="with --final: the evaluation run's card to link")
    add_model_args(p)
    p.add_argument("--promote", action="store_true",
                   help="point <data-dir>/models/current at the new model (atomic)")
    p.add_argument("--challenge", action="store_true",
                   help="champion and challenger: train a challenger whose test slice is the "
                   "last max(--test-days, --every) days, compare it with <models>/current on "
                   "those days (paired per-window Brier, day block bootstrap: promoted when the "
                   "90%% CI upper end of challenger - champion is below +0.001 and its maker PnL "
                   "is not worse beyond its CI); promoted: refit --final and point current at "
                   "it; refused: the champion stays, re-validated. Both logged in "
                   "<models>/registry.jsonl; exit 0 either way")
    p.add_argument("--every", type=days(0, 365, lo_open=True), default=None,
                   help="with --challenge: the retraining period; the challenger's test slice "
                   "is at least this long ((0, 365] days, default 7)")
    p.add_argument("--models-dir", type=output_dir, help="where models go (default <data-dir>/models)")
    p.set_defaults(func=_train)

    w = sub.add_parser(
        "walkforward",
        help="retrain on a schedule over the lake and score each next period out of sample",
        description="From the lake's first window: an initial span, then every --every days a "
        "model trained (calibrated, given its policy thresholds) exactly as `slotml train` does "
        "on the windows before, scored on the next period; log loss, Brier and ECE per period "
        "and pooled beside the book's mid and the sim's oracle, the policy table summed. Writes "
        "report.json, report.png and one folder per period into --out; a killed run resumes.",
    )
    add_common_args(w, db=False)
    w.add_argument("--lake", type=existing_dir, help="lake directory (default <data-dir>/lake)")
    w.add_argument("--out", type=output_dir,
                   help="output directory (default <data-dir>/walkforward/<--name or the UTC "
                   "time>); rerun with the same --out to resume")
    w.add_argument("--name", help="with no --out: <data-dir>/walkforward/NAME")
    w.add_argument("--initial-days", type=days(0, 3650, lo_open=True), default=30.0,
                   help="days before the first scored period (0..3650, default 30)")
    w.add_argument("--every", type=days(0, 3650, lo_open=True), default=7.0,
                   help="days between retrains: each period's length (0..3650, default 7)")
    w.add_argument("--sliding", type=days(0, 3650, lo_open=True), default=None,
                   help="train on the last N days only (default: everything before the period)")
    w.add_argument("--jobs", type=count(1, 1024), default=None,
                   help="periods trained in parallel (1..1024, default: the cores)")
    w.add_argument("--stop-after", type=count(1, 10**6), default=None,
                   help="train at most N periods in this run; the next run resumes")
    add_model_args(w)
    w.set_defaults(func=_walkforward)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The options that decide a model (train's and walkforward's alike)."""
    p.add_argument("--params", help="XGBoost parameters as a JSON object (or @file.json) overriding "
                   "the defaults; also num_boost_round and early_stopping_rounds")
    p.add_argument("--calibration", choices=["isotonic", "platt"], default="isotonic")
    p.add_argument("--no-mirror", action="store_true",
                   help="fit and calibrate on the rows only, not also on their Up/Down mirror "
                   "images (features/contract.py MIRROR; on by default)")
    p.add_argument("--prob-floor", type=probability(0, 0.5, hi_open=True), default=0.005,
                   help="calibrated P(Up) is kept in [floor, 1 - floor] (default 0.005): a finite "
                   "calibration slice cannot justify certainty")
    p.add_argument("--oracle", type=existing_file, help="the sim's oracle parquet (default <data-dir>/sim/oracle.parquet "
                   "when present)")
    p.add_argument("--window-s", type=integer(1, 7 * 86400, "seconds"),
                   help="window family to train (default: the lake's only one)")
    p.add_argument("--points", type=window_fractions, help="decision points as fractions of the window (default 5/15,7/15,10/15)")
    p.add_argument("--fit-points", type=window_fractions,
                   help="extra points whose rows the booster also fits and early-stops on (e.g. "
                   "every minute: 1/15,...,14/15); calibration, policy and test stay on --points, "
                   "the points the model is scored at (default: none)")
    p.add_argument("--tolerance", type=window_fraction, default="1/15",
                   help="max age of the decision row, fraction of the window (default 1/15); "
                   "recorded in the model, which every reader then uses")
    p.add_argument("--lookback", type=window_fraction, default="2/15",
                   help="move_velocity lookback, fraction of the window (default 2/15); "
                   "recorded in the model")
    p.add_argument("--embargo-windows", type=count(1, 10_000), default=1,
                   help="whole windows dropped between slices (1..10000, default 1)")
    p.add_argument("--calib-frac", type=fraction(0, 1, lo_open=True, hi_open=True), default=0.4,
                   help="share of the time before the test days used for calibration, in (0, 1) "
                   "(default 0.4)")
    p.add_argument("--refit-booster", action="store_true",
                   help="after early stopping, refit the booster for the chosen rounds on the fit "
                   "and early-stopping days together; the calibration map stays fitted on the "
                   "first booster's scores of the calibration days")
    p.add_argument("--es-days", type=days(0, 3650, lo_open=True), default=None,
                   help="the early-stopping slice (with --split-layout latest also the "
                   "calibration slice): the last N days of the training span (default: its "
                   "latest 15%%)")
    p.add_argument("--split-layout", choices=["standard", "recent", "latest"], default="standard",
                   help="the slices' order in time: standard (fit | early stop | calibration | "
                   "policy | test), recent (calibration | policy | fit | early stop | test: the "
                   "booster fits the latest days) or latest (policy | fit | early stop = "
                   "calibration | test: booster and calibration both on the latest days); "
                   "embargoed, the test days last (default standard)")
    p.add_argument("--half-life-days", type=days(0, 3650, lo_open=True), default=None,
                   help="weigh the booster's fit rows by recency: a row's weight halves every "
                   "this many days before the fit slice's last window (default: equal weights)")
    p.add_argument("--min-windows", type=count(1, 10**8),
                   help="minimum resolved windows in the training slice (default 200)")
    p.add_argument("--policy", choices=["edge", "design"], default="edge",
                   help="entry policy in the model: edge (min_edge and Kelly fraction chosen by "
                        "the backtest on the policy slice, maker-queue fills; default) or design "
                        "(no policy key: min_confidence and linear size)")
    p.add_argument("--policy-days", type=days(0, 3650, lo_open=False), default=None,
                   help="days after calibration (before the test days; before the fit with "
                        "--split-layout recent or latest) where --policy edge chooses its thresholds "
                        "(default: 15%% of the span, at most --test-days)")


def train_config(args: argparse.Namespace, common: Any, *, test_days: float, final: bool = False,
                 models_dir: Path | None = None, promote: bool = False,
                 eval_card: Path | None = None) -> Any:
    """The TrainConfig that ``add_model_args``' options (and the caller's) describe."""
    from slotml.errors import UserError
    from slotml.features.contract import DEFAULT_POINTS, parse_fraction, parse_points
    from slotml.train.fit import parse_params
    from slotml.train.pipeline import TrainConfig
    from slotml.train.split import SplitConfig

    try:
        points = parse_points(args.points) if args.points else DEFAULT_POINTS
    except ValueError as e:
        raise UserError(f"--points: {e}") from None
    try:
        fit_points = parse_points(args.fit_points) if args.fit_points else ()
    except ValueError as e:
        raise UserError(f"--fit-points: {e}") from None
    fit_points = tuple(f for f in fit_points if not any(abs(f - q) < 1e-9 for q in points))
    split_kw = {"test_days": test_days, "final": final,
                "embargo_windows": args.embargo_windows, "calib_frac": args.calib_frac,
                "policy_days": args.policy_days if args.policy == "edge" else 0.0,
                "layout": args.split_layout, "es_days": args.es_days}
    if args.min_windows is not None:
        split_kw["min_fit_windows"] = args.min_windows
    cfg = TrainConfig(
        data_dir=common.data_dir,
        lake_dir=Path(args.lake) if args.lake else common.lake_dir,
        models_dir=models_dir or common.models_dir,
        split=SplitConfig(**split_kw),
        params=parse_params(args.params),
        calibration=args.calibration,
        promote=promote,
        oracle=Path(args.oracle) if args.oracle else None,
        window_s=args.window_s,
        points=points,
        fit_points=fit_points,
        tolerance=parse_fraction(args.tolerance, "--tolerance"),
        lookback=parse_fraction(args.lookback, "--lookback"),
        eval_card=eval_card,
        prob_floor=args.prob_floor,
        mirror=not args.no_mirror,
        policy=args.policy,
        half_life_days=args.half_life_days,
        refit_booster=args.refit_booster,
    )
    if cfg.oracle is not None and not cfg.oracle.exists():
        raise UserError(f"--oracle {cfg.oracle}: no such file")
    return cfg


def _train(args: argparse.Namespace) -> int:
    from slotml.settings import log_config, start_command

    common = start_command(args)

    from slotml.errors import UserError
    from slotml.train.pipeline import run

    if args.every is not None and not args.challenge:
        raise UserError("--every applies only with --challenge")
    if args.challenge:
        for flag, given in (("--final", args.final), ("--promote", args.promote),
                            ("--eval-card", args.eval_card is not None)):
            if given:
                raise UserError(f"--challenge decides the promotion and refits --final itself: "
                                f"drop {flag}")
    every = args.every or DEFAULT_EVERY
    if args.challenge:  # the test slice is at least one retraining period
        test_days = every if args.test_days is None else max(args.test_days, every)
    else:
        test_days = DEFAULT_TEST_DAYS if args.test_days is None else args.test_days
    cfg = train_config(args, common, test_days=test_days, final=args.final,
                       models_dir=Path(args.models_dir) if args.models_dir else None,
                       promote=args.promote,
                       eval_card=Path(args.eval_card) if args.eval_card else None)
    log_config(cfg)
    if args.challenge:
        return _challenge(cfg)
    res = run(cfg)
    _register(cfg, res, (res.metrics or {}).get("evaluation_model"))
    print(res.report)
    print(f"\nmodel:  {res.model_path}\ncard:   {res.card_path}")
    if res.png_path:
        print(f"plot:   {res.png_path}")
    if res.promoted:
        print(f"promoted: {cfg.models_dir / 'current'} -> {res.model_path.name}")
    return 0


def _register(cfg: Any, res: Any, evaluation_model: str | None) -> None:
    """Append the model just written to <models>/registry.jsonl."""
    from slotml.train import registry

    registry.append(cfg.models_dir, registry.model_record(
        res.card, span=(cfg.slot_from, cfg.slot_to), evaluation_model=evaluation_model))


def _challenge(cfg: Any) -> int:
    from slotml.train.challenge import run_challenge

    out = run_challenge(cfg, on_model=lambda res, ev: _register(cfg, res, ev))
    print(out.challenger.report)
    print(f"\nchallenger: {out.challenger.model_path}\ncard:       {out.challenger.card_path}")
    if out.final is not None:
        print(f"final:      {out.final.model_path}")
    print(out.line())
    return 0


def _walkforward(args: argparse.Namespace) -> int:
    import datetime as dt

    from slotml.settings import log_config, start_command

    common = start_command(args)

    from slotml.errors import UserError
    from slotml.train.walkforward import WalkConfig, walk
    from slotml.train.walkforward_report import render

    if args.name is not None and (not args.name or args.name.startswith(".")
                                  or "/" in args.name or "\\" in args.name):
        raise UserError(f"--name {args.name!r}: a plain folder name (no '/', not starting with '.')")
    base = train_config(args, common, test_days=args.every)
    if args.out:
        out = Path(args.out)
    else:
        name = args.name or dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")
        out = common.data_dir / "walkforward" / name
    cfg = WalkConfig(train=base, out_dir=out, initial_days=args.initial_days,
                     every_days=args.every, sliding_days=args.sliding, jobs=args.jobs,
                     stop_after=args.stop_after)
    log_config(cfg)
    report = walk(cfg)
    print(render(report))
    print(f"\nreport: {out / 'report.json'}")
    if report.get("plot"):
        print(f"plot:   {out / report['plot']}")
    if report["run"]["missing"]:
        print(f"{report['run']['missing']} period(s) not trained yet: rerun with --out {out} "
              "to resume")
    return 0
