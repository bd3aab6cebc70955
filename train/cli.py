"""Subcommands of the train stage (parsers only; work is imported lazily in handlers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
