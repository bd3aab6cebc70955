"""The ``slotml`` console script.

Each stage owns its subcommands in its own ``cli.py`` with a ``register(subparsers)`` function
that only builds argparse parsers (no heavy imports: the work is imported inside the handler),
so ``slotml --help`` stays instant and a stage never pulls in another's dependencies.
A handler takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from slotml import __version__
from slotml.argtypes import OneLineParser
from slotml.errors import UserError
from slotml.settings import mask_url

# Order = the pipeline's: collect -> export -> features/train -> backtest -> web; the sim last.
STAGE_CLIS = (
    "slotml.ingest.cli",
    "slotml.lake.cli",
    "slotml.features.cli",
    "slotml.train.cli",
    "slotml.backtest.cli",
    "slotml.web.cli",
    "slotml.sim.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="slotml",
        description="Polymarket Up/Down slot collector and entry model (ingest -> lake -> "
        "features -> train -> serve; backtest replays, web shows; sim is the local venue).",
    )
    parser.add_argument("--version", action="version", version=f"slotml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in STAGE_CLIS:
        importlib.import_module(mod).register(sub)
    demo = sub.add_parser("demo", help="the whole pipeline offline: sim + collector, history, "
                          "export, train, backtest (a few minutes)")
    demo.add_argument("demo_args", nargs=argparse.REMAINDER,
                      help="passed on (see `slotml demo -- --help`)")
    demo.set_defaults(func=_demo)
    return parser


def option_ranges() -> str:
    """Every command's ranged options as a Markdown table (docs/errors.md; a test keeps it
    current): the ranges are declared once, where each option is added."""
    from slotml import demo
    from slotml.argtypes import Number

    rows = []

    def walk(p: argparse.ArgumentParser, cmd: str) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            seen: set[int] = set()
            for name, child in subs[0].choices.items():
                if id(child) not in seen:
                    seen.add(id(child))
                    walk(child, f"{cmd} {name}".strip())
            return
        for a in p._actions:
            if isinstance(a.type, Number):
                rows.append(f"| `{cmd}` | `{a.option_strings[-1]}` | {a.type.range_text()} | "
                            f"{a.type.kind} | {a.default if a.default is not None else '-'} |")

    walk(build_parser(), "")
    walk(demo.build_parser(), "demo")
    head = "| command | option | valid range | unit | default |\n|---|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


def _demo(args: argparse.Namespace) -> int:
    from slotml.demo import main as demo_main

    rest = [a for a in args.demo_args if a != "--"]
    return demo_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input (a flag out of range, a missing file, a busy port) is one line
    on stderr and exit code 2, never a traceback (docs/errors.md)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # OneLineParser.error (2), --help / --version (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"slotml {args.command}: error: {mask_url(str(e))}", file=sys.stderr)
        return e.exit_code
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        # a path the environment gave (SLOTML_HOME, a default under the data dir) that the
        # flag types could not see: the operator's to fix, so one line too
        where = f": {e.filename}" if e.filename else ""
        print(f"slotml {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("slotml").info("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
