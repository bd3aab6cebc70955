"""Subcommands of the backtest stage (parsers only; work is imported lazily in handlers).

``slotml replay``: paper trading over the lake with the model gate and the manual filters side
by side.
"""

from __future__ import annotations

import argparse

from slotml.settings import add_common_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    _register_replay(sub)


def _register_replay(sub: argparse._SubParsersAction) -> None:
    from slotml.serve.options import add_model_args  # stdlib only

    p = sub.add_parser(
        "replay",
        help="paper-trade the entry gate over the lake (model vs manual filters, taker/maker)",
        description="Run the entry gate over resolved windows the model never trained or "
        "calibrated on, at its decision points, exactly as the live bot would: at most one entry "
        "per window. Reports taker and maker fills for the model and the manual filters side by "
        "side, and writes a PNG of cumulative PnL.",
    )
    add_model_args(p)
    p.add_argument("--from", dest="slot_from", default=None,
                   help="first window start (epoch s or ISO date, UTC); default: after the "
                        "model's calibration slice")
    p.add_argument("--to", dest="slot_to", default=None,
                   help="end (exclusive) of window starts (epoch s or ISO date, UTC)")
    p.add_argument("--lake-dir", default=None, help="lake directory (default <data-dir>/lake)")
    p.add_argument("--png", default=None,
                   help="cumulative PnL chart (default <data-dir>/replay/<model>_replay.png)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON")
    add_common_args(p, db=False)
    p.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    import json
    import logging
    from pathlib import Path

    from slotml.backtest.replay import default_range, pnl_png, replay, time_arg
    from slotml.errors import UserError
    from slotml.serve.gate import config_from_args
    from slotml.serve.scorer import Scorer
    from slotml.settings import start_command

    cfg = config_from_args(args)
    common = start_command(args, cfg, logging.getLogger("slotml.backtest.replay"))
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
        result = replay(con, scorer, cfg, slot_from=slot_from, slot_to=slot_to)
    finally:
        con.close()
    print(result.table())
    if result.windows == 0:
        print("no resolved, unseen windows in that range: nothing to replay")
        return 0
    png = Path(args.png) if args.png else common.data_dir / "replay" / f"{scorer.path.stem}_replay.png"
    pnl_png(result, png)
    print(f"cumulative PnL chart: {png}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result.to_dict(), indent=1))
    return 0
