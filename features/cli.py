"""Subcommands of the features stage (parsers only; work is imported lazily in handlers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    from slotml.argtypes import (
        day_text,
        existing_dir,
        existing_file,
        integer,
        output_file,
        window_fraction,
        window_fractions,
    )
    from slotml.settings import add_common_args

    p = sub.add_parser(
        "features", help="build the point-in-time training set from the lake into a Parquet file",
        description="One row per window and decision point (features/contract.py defines every "
        "column): the latest snapshot at or before each decision instant, within the tolerance. "
        "The contract, the points and the fitted statistics go into the file's metadata.",
    )
    add_common_args(p, db=False)
    p.add_argument("--lake", type=existing_dir, help="lake directory (default: <data-dir>/lake)")
    p.add_argument("--out", type=output_file,
                   help="output Parquet file (default: <data-dir>/features/training_set.parquet)")
    p.add_argument("--points", type=window_fractions, default="5/15,7/15,10/15",
                   help="decision points as fractions of the window (default 5/15,7/15,10/15)")
    p.add_argument("--tolerance", type=window_fraction, default="1/15",
                   help="max age of the decision row, fraction of the window (default 1/15)")
    p.add_argument("--lookback", type=window_fraction, default="2/15",
                   help="move_velocity lookback, fraction of the window (default 2/15)")
    p.add_argument("--window-s", type=integer(1, 7 * 86400, "seconds"),
                   help="only this window family (e.g. 900)")
    p.add_argument("--symbols", help="only these assets, comma-separated")
    p.add_argument("--from", dest="date_from", type=day_text, help="first window day, YYYY-MM-DD (UTC)")
    p.add_argument("--to", dest="date_to", type=day_text, help="last window day, YYYY-MM-DD (UTC, inclusive)")
    p.add_argument("--resolved-only", action="store_true",
                   help="keep only windows with an official outcome (the rows train fits on)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stats", type=existing_file,
                   help="fitted statistics JSON to use (a model's, or a training set's)")
    g.add_argument("--fit-before", metavar="YYYY-MM-DD", type=day_text,
                   help="fit the statistics on windows before this day only (default: on all "
                   "selected windows, fine for exploration; train fits on its training days)")
    p.set_defaults(func=_features)


def _features(args: argparse.Namespace) -> int:
    import logging

    from slotml.features.run import config_from_args, run_features
    from slotml.settings import log_config, start_command

    start_command(args)
    cfg = config_from_args(args)
    log_config(cfg, logging.getLogger("slotml.features.run"))
    return run_features(cfg)
