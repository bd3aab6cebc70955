"""Subcommands of the backtest stage (parsers only; work is imported lazily in handlers).

``slotml backtest`` (alias ``slotml replay``): every policy (edge, design, filters,
always-enter) under every fill model (taker, maker-queue, maker-optimistic) over the lake's
unseen days, and the verdict "does the model beat the filters as a maker?".
"""

from __future__ import annotations

import argparse

from slotml.argtypes import count, existing_dir, integer, output_file, seconds, time_text
from slotml.settings import add_common_args

POLICY_NAMES = ("edge", "design", "filters", "always-enter")  # backtest/policies.py POLICIES
FILL_NAMES = ("taker", "maker-queue", "maker-optimistic")  # backtest/fills.py FILLS


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    _register_backtest(sub)


def _csv(allowed: tuple[str, ...], what: str):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> tuple[str, ...]:
        got = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in got if x not in allowed]
        if bad or not got:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or repr(text)} (choose from {', '.join(allowed)})")
        return got
    return parse


def _register_backtest(sub: argparse._SubParsersAction) -> None:
    from slotml.serve.options import add_model_args  # stdlib only

    p = sub.add_parser(
        "backtest", aliases=["replay"],
        help="the verdict: does the model beat the filters as a maker? (policies x fill models)",
        description="Run every entry policy (edge, design, filters, always-enter) under every "
        "fill model (taker, maker-queue, maker-optimistic) over resolved windows the model never "
        "trained, calibrated or chose its policy on, at its decision points, exactly as the live "
        "bot would: at most one entry per window. Reports per cell entries, fill rate, PnL, PnL "
        "per staked with a 95%% CI (block bootstrap over whole days), daily Sharpe, drawdown and "
        "markouts; the paired difference edge - filters under maker-queue; one verdict line; "
        "and a PNG of cumulative PnL with its band. Reads only the lake.",
    )
    add_model_args(p)
    p.add_argument("--policies", type=_csv(POLICY_NAMES, "policy"), default=POLICY_NAMES,
                   help=f"comma-separated policies (default {','.join(POLICY_NAMES)})")
    p.add_argument("--fills", type=_csv(FILL_NAMES, "fill model"), default=FILL_NAMES,
                   help=f"comma-separated fill models (default {','.join(FILL_NAMES)})")
    p.add_argument("--latency-ms", type=integer(0, 600_000, "milliseconds"), default=250,
                   help="maker-queue: ms from decision to the bid joining the queue "
                   "(0..600000, default 250)")
    p.add_argument("--cancel-before-s", type=seconds(0, 86400, lo_open=False), default=30.0,
                   help="maker-queue: cancel the bid this many seconds before the end "
                   "(0..86400, default 30)")
    p.add_argument("--bootstrap", type=count(100, 10**6), default=2000,
                   help="bootstrap resamples of whole days for the CIs (100..10^6, default 2000)")
    p.add_argument("--from", dest="slot_from", type=time_text, default=None,
                   help="first window start (epoch s or ISO date, UTC); default: after "
                        "everything the model saw (its test days)")
    p.add_argument("--to", dest="slot_to", type=time_text, default=None,
                   help="end (exclusive) of window starts (epoch s or ISO date, UTC)")
    p.add_argument("--window-s", type=integer(1, 7 * 86400, "seconds"), default=None,
                   help="the window family to backtest: the model's own (recorded in its file; "
                   "the default); another length is refused. A lake of several families is "
                   "backtested on the model's only")
    p.add_argument("--lake-dir", type=existing_dir, default=None,
                   help="lake directory (default <data-dir>/lake)")
    p.add_argument("--png", type=output_file, default=None,
                   help="cumulative PnL chart (default <data-dir>/replay/<model>_backtest.png)")
    p.add_argument("--json", dest="json_out", type=output_file, default=None,
                   help="also write the results as JSON")
    add_common_args(p, db=False)
    p.set_defaults(func=_backtest)


def _backtest(args: argparse.Namespace) -> int:
    import json
    import logging
    from pathlib import Path

    from slotml.backtest.replay import check_family, default_range, replay, time_arg
    from slotml.backtest.verdict import pnl_png
    from slotml.errors import UserError
    from slotml.serve.gate import config_from_args
    from slotml.serve.scorer import Scorer
    from slotml.settings import start_command

    cfg = config_from_args(args)
    common = start_command(args, cfg, logging.getLogger("slotml.backtest"))
    model_path = cfg.model_path or str(common.models_dir)
    scorer = Scorer.load(model_path)
    slot_from, slot_to = time_arg(args.slot_from), time_arg(args.slot_to)
    if slot_from is None and slot_to is None:
        slot_from, slot_to = default_range(scorer)
    lake_dir = Path(args.lake_dir) if args.lake_dir else common.lake_dir
    if not lake_dir.exists():
        raise UserError(f"no lake at {lake_dir} (run `slotml export` first, or pass --lake-dir)")
    from slotml.lake import connect

    con = connect(lake_dir)
    try:
        check_family(con, scorer, args.window_s)
        result = replay(con, scorer, cfg, slot_from=slot_from, slot_to=slot_to,
                        policies=args.policies, fills=args.fills, latency_ms=args.latency_ms,
                        cancel_before_s=args.cancel_before_s, n_boot=args.bootstrap)
    finally:
        con.close()
    print(result.table())
    if result.windows == 0:
        print("no resolved, unseen windows in that range: nothing to backtest")
        return 0
    png = Path(args.png) if args.png else common.data_dir / "replay" / f"{scorer.path.stem}_backtest.png"
    pnl_png(result, png)
    print(f"cumulative PnL chart: {png}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return 0
