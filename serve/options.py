"""The gate's command-line options and their documented defaults (stdlib only).

Kept apart from gate.py so that building a parser (``slotml --help``, a bot's own argparse)
imports nothing heavy; ``slotml.serve.gate`` re-exports ``add_model_args``.
"""

from __future__ import annotations

import argparse
from typing import Any

from slotml.argtypes import count, days, fraction, nonneg, output_file, probability, real

# Documented defaults (README "Wiring the scorer into a bot").
DEFAULT_MIN_CONFIDENCE = 0.60
DEFAULT_ORDER_SIZE = 10.0  # shares
DEFAULT_MIN_ORDER_SIZE = 5.0  # shares: the venue's usual orderMinSize, when the bot has none
DEFAULT_KELLY_FRACTION = 0.25
DEFAULT_MIN_MOVE_PCT = 0.05  # percent
DEFAULT_MAX_MOVE_PCT = 0.50  # percent
DEFAULT_MIN_ENTRY_MINUTES = 5.0  # scaled minutes (= real minutes in a 15-minute window)
DEFAULT_EXPIRES_AFTER = 14.0  # days after validated_at (or the training end): serve/guards.py
DEFAULT_OOD_MAX = 2  # features outside their training 0.1%..99.9% range before declining


# Each option's valid range, in one place (slotml/argtypes.py checks finiteness and range).
SHARES = nonneg(1e9, "shares")
PERCENT = nonneg(100.0, "percent")
MINUTES = real(0.0, 15.0, "scaled minutes")  # SCALE_MINUTES: a window is 15 scaled minutes
EDGE = real(-1.0, 1.0, "edge", lo_open=True, hi_open=True)
KELLY = fraction(0.0, 1.0, lo_open=True)
EXPIRY_DAYS = days(0.0, 3650.0)  # (0, 3650]
OOD_FEATURES = count(0, 10_000)


def add_model_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the entry-model and manual-filter options to a bot's parser (existing flags kept)."""
    g = parser.add_argument_group("entry model (slotml)")
    have = set(getattr(parser, "_option_string_actions", {}))

    def add(flag: str, **kw: Any) -> None:
        if flag not in have:
            g.add_argument(flag, **kw)

    add("--model-path", default=None,
        help="ONNX model file, or <data-dir>/models/current (or the data dir); without it the "
             "manual filters decide")
    add("--min-confidence", type=probability(), default=DEFAULT_MIN_CONFIDENCE,
        help=f"enter when p_win >= this (default {DEFAULT_MIN_CONFIDENCE})")
    add("--order-size", type=SHARES, default=DEFAULT_ORDER_SIZE,
        help=f"full order size in shares (default {DEFAULT_ORDER_SIZE:g}); the model scales it "
             "by (p_win - 0.5) / 0.5")
    add("--min-order-size", type=SHARES, default=DEFAULT_MIN_ORDER_SIZE,
        help=f"market minimum order size in shares when the market does not say "
             f"(default {DEFAULT_MIN_ORDER_SIZE:g})")
    add("--policy", choices=["edge", "design"], default=None,
        help="entry policy: edge (p_win - price - fee >= min edge, fractional Kelly) or design "
             "(min confidence, linear size); default: the model file's, else design")
    add("--min-edge", type=EDGE, default=None,
        help="require p_win - price - fee >= this, in (-1, 1) (design: off by default; edge: "
             "the model file's chosen value)")
    add("--sizing", choices=["linear", "kelly"], default="linear",
        help="linear: order_size x (p_win-0.5)/0.5 (default); kelly: order_size x F x Kelly")
    add("--kelly-fraction", type=KELLY, default=DEFAULT_KELLY_FRACTION,
        help=f"F for --sizing kelly (default {DEFAULT_KELLY_FRACTION})")
    add("--min-move-pct", type=PERCENT, default=DEFAULT_MIN_MOVE_PCT,
        help=f"manual filter: minimum |move| in percent (default {DEFAULT_MIN_MOVE_PCT})")
    add("--max-move-pct", type=PERCENT, default=DEFAULT_MAX_MOVE_PCT,
        help=f"manual filter: maximum |move| in percent (default {DEFAULT_MAX_MOVE_PCT})")
    add("--min-entry-minutes", type=MINUTES, default=DEFAULT_MIN_ENTRY_MINUTES,
        help=f"manual filter: earliest entry, minutes into the window (default {DEFAULT_MIN_ENTRY_MINUTES:g})")
    add("--filter-series", choices=["spot", "settlement"], default="spot",
        help="manual filters' move: spot stream (default) or the settlement series")
    add("--expires-after", type=EXPIRY_DAYS, default=DEFAULT_EXPIRES_AFTER,
        help=f"the model expires this many days after its record's validated_at, else after its "
             f"training end (default {DEFAULT_EXPIRES_AFTER:g})")
    add("--on-expired", choices=["fallback", "refuse", "ignore"], default="fallback",
        help="past expiry: fallback (the manual filters decide; default), refuse (decline with "
             "model_expired) or ignore (score as usual)")
    add("--ood-max", type=OOD_FEATURES, default=DEFAULT_OOD_MAX,
        help=f"decline (out_of_distribution) when more than this many features lie outside "
             f"their training 0.1%%..99.9%% range (default {DEFAULT_OOD_MAX})")
    add("--decision-log", type=output_file, default=None, help="append every decision as a JSON line to this file")
    return parser
