"""Subcommands of the sim stage (parsers only; work is imported lazily in handlers).

``slotml sim serve`` runs the local venue; ``slotml sim backfill`` writes history into a store.
"""

from __future__ import annotations

import argparse

from slotml.argtypes import count, days, fraction, integer, port, rate, time_text
from slotml.settings import add_common_args


def _world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", default="15m",
                   help="a family, or (serve) a comma list served together: 5m, 15m, 1h, 4h, 1d "
                        "(the venue's), 1m, 10s, 5s (the sim's) (default 15m; slotml/venue.py)")
    p.add_argument("--symbols", default="BTC,ETH,SOL,XRP", help="comma-separated assets")
    p.add_argument("--seed", type=integer(0, 2**32 - 1, "seed"), default=1)
    p.add_argument("--book", choices=["default", "sharp", "efficient", "shrunk"], default="default",
                   help="book regime: default (Dec 2025 Polymarket), sharp (Kalshi 2026), efficient "
                        "(quotes the true probability: a leak detector), shrunk (the true probability "
                        "pulled 15%% toward 0.5: an edge of known size)")
    p.add_argument("--efficient-book", action="store_const", const="efficient", dest="book",
                   help="alias of --book efficient")
    p.add_argument("--settlement", choices=["twap60", "spot"], default="twap60")
    p.add_argument("--unresolved-fraction", type=fraction(), default=None,
                   help="windows that never resolve (default 0 for serve, 0.003 for backfill)")
    p.add_argument("--shift", choices=["none", "lag", "unlag", "backload"], default="none",
                   help="a regime shift from --shift-day on (sim/shift.py): lag = the settlement "
                        "TWAP lags spot 200 s more from then on; unlag = it lagged 200 s more "
                        "until then; backload = each 15-minute window's volatility moves to its "
                        "last 5 minutes (default none: the world is unchanged)")
    p.add_argument("--shift-day", type=days(0, 3650), default=None,
                   help="days after the start (serve: now; backfill: the history's first window) "
                        "at which --shift begins, rounded up to a window start")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    sim = sub.add_parser("sim", help="the local venue (serve) and history generator (backfill)")
    ssub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")

    serve = ssub.add_parser("serve", help="serve Gamma, CLOB REST/WS, live-data and /_sim on one port")
    _world_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port(allow_zero=True), default=8765,
                       help="0..65535 (default 8765; 0 = any free port)")
    serve.add_argument("--time-scale", type=integer(1, 300, "time scale"), default=1,
                       help="divide the venue's families' lengths by this (a divisor of 300; "
                            "60: an hour lasts a minute; default 1)")
    serve.add_argument("--synthetic-assets", type=count(0, 10_000), default=0,
                       help="extra assets (load; 0..10000)")
    serve.add_argument("--book-rate", type=rate(0, 1000), default=2.0,
                       help="book changes per token per second (0..1000, default 2)")
    serve.add_argument("--print-rate", type=rate(0, 100), default=None,
                       help="taker arrivals per token per second (default: the calibrated order "
                            "flow, sim/flow.py; 0: no prints)")
    serve.add_argument("--order-key", default="sim-order-key",
                       help="POLY_API_KEY the shadow-order endpoint (/clob/order) accepts")
    serve.add_argument("--fault", action="append", default=[], dest="faults",
                       help="a fault kind active from the start (repeatable; see /_sim/faults)")
    add_common_args(serve, db=False)
    serve.set_defaults(func=_serve)

    bf = ssub.add_parser("backfill", help="write N days of collector-identical history into a store")
    _world_args(bf)
    bf.add_argument("--days", type=days(0, 3650), default=60.0, help="(0, 3650], default 60")
    bf.add_argument("--end", type=time_text, default=None,
                    help="end time (epoch s or ISO 8601 UTC; default now), floored to the window")
    bf.add_argument("--missing-fraction", type=fraction(), default=0.002,
                    help="share of snapshot ticks the collector missed")
    add_common_args(bf)
    bf.set_defaults(func=_backfill)
    sim.set_defaults(func=lambda args: (sim.print_help(), 2)[1])


def _shift_at(args: argparse.Namespace, anchor: float) -> int | None:
    """The shift's epoch second from --shift / --shift-day (None without a shift)."""
    from slotml import venue
    from slotml.errors import UserError
    from slotml.sim.shift import shift_second

    if args.shift == "none":
        if args.shift_day is not None:
            raise UserError("--shift-day needs --shift lag, unlag or backload")
        return None
    if args.shift_day is None:
        raise UserError(f"--shift {args.shift} needs --shift-day")
    return shift_second(anchor, args.shift_day, venue.family_seconds(_families(args)[0]))


def _families(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(f.strip() for f in str(args.family).split(",") if f.strip()) or ("",)


def _config(args: argparse.Namespace, anchor: float, **extra):
    from slotml.sim.config import SimConfig

    fams = _families(args)
    return SimConfig(
        family=fams[0], families=fams, time_scale=getattr(args, "time_scale", 1), symbols=tuple(s.strip() for s in args.symbols.split(",") if s.strip()),
        seed=args.seed, book=args.book, settlement=args.settlement, shift=args.shift,
        shift_at=_shift_at(args, anchor), **extra,
    )


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from slotml.net import bind_listener

    sock = bind_listener(args.host, args.port, "sim serve")  # a busy port: one line, first

    import time

    from slotml.settings import start_command
    from slotml.sim.server import SimServer
    from slotml.sim.world import World

    cfg = _config(args, time.time(), host=args.host, port=args.port, synthetic_assets=args.synthetic_assets,
                  book_rate=args.book_rate, print_rate=args.print_rate, faults=tuple(args.faults),
                  order_key=args.order_key, unresolved_fraction=args.unresolved_fraction or 0.0)
    start_command(args, cfg)

    async def main() -> None:
        server = SimServer(World(cfg), sock)
        await server.start()
        print(f"sim serving on {server.base_url} (gamma {server.base_url}/gamma, clob "
              f"{server.base_url}/clob, ws ws://{cfg.host}:{server.port}/ws/market, "
              f"rtds ws://{cfg.host}:{server.port}/rtds)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    asyncio.run(main())
    return 0


def _backfill(args: argparse.Namespace) -> int:
    import logging

    from slotml import venue
    from slotml.errors import UserError
    from slotml.settings import start_command
    from slotml.sim.backfill import parse_end, run_backfill, span

    uf = 0.003 if args.unresolved_fraction is None else args.unresolved_fraction
    end = parse_end(args.end)  # once: "now" must not move between the shift's anchor and the run
    t_start, _ = span(venue.family_seconds(_families(args)[0]), args.days, end)
    if args.shift_day is not None and args.shift_day >= args.days:
        raise UserError(f"--shift-day {args.shift_day:g} is not inside the history (--days {args.days:g})")
    cfg = _config(args, t_start, unresolved_fraction=uf)
    common = start_command(args, cfg, logging.getLogger("slotml.sim.backfill"))
    return run_backfill(cfg, common, days=args.days, end=end,
                        missing_fraction=args.missing_fraction)
