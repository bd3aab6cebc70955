"""Subcommands of the ingest stage (parsers only; work is imported lazily in handlers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    _register_db(sub)
    _register_collect(sub)


# --- slotml collect / rederive: the collector daemon (see ingest/collector.py) ----------------

def _register_collect(sub: argparse._SubParsersAction) -> None:
    from slotml.argtypes import (
        count,
        days,
        existing_dir,
        existing_file,
        http_url,
        integer,
        megabytes,
        output_dir,
        port,
        seconds,
        ws_url,
    )
    from slotml.ingest.config import PRICE_SOURCES
    from slotml.ingest.heap import MAX_KIB
    from slotml.settings import add_common_args

    p = sub.add_parser("collect", help="run the collector daemon (Gamma + CLOB + live-data -> store)",
                       description="Discover the family's windows, snapshot books and Chainlink "
                       "prices on a clock grid, record resolutions. Venue URLs default to the real "
                       "venue's; env SLOTML_GAMMA_URL, SLOTML_CLOB_URL, SLOTML_CLOB_WS_URL, "
                       "SLOTML_RTDS_WS_URL, SLOTML_POLYBOLT_WS_URL.")
    add_common_args(p)
    p.add_argument("--family", default="15m",
                   help="window families, comma-separated, all in this one process: 5m, 15m, "
                   "1h, 4h, 1d (the venue's), 1m, 10s, 5s (the sim's) (default 15m)")
    p.add_argument("--symbols", default="BTC,ETH,SOL,XRP",
                   help="assets (default BTC,ETH,SOL,XRP); all = every asset of the venue table "
                   "(slotml/venue.py ASSETS) that Gamma lists for each family")
    p.add_argument("--time-scale", type=integer(1, 300, "time scale"), default=1,
                   help="divide the families' lengths by this, as the sim's --time-scale (tests, "
                   "demos; a divisor of 300; default 1: the venue's)")
    p.add_argument("--snapshots-per-window", type=count(1, 10_000), default=None,
                   help="snapshot each family every window_s / N seconds, 1..10000 (default: "
                   "every --snapshot-interval, whatever the family)")
    p.add_argument("--gamma-url", type=http_url, help="Gamma REST base (env SLOTML_GAMMA_URL)")
    p.add_argument("--clob-url", type=http_url, help="CLOB REST base (env SLOTML_CLOB_URL)")
    p.add_argument("--clob-ws-url", type=ws_url,
                   help="CLOB market websocket URL (env SLOTML_CLOB_WS_URL)")
    p.add_argument("--rtds-ws-url", type=ws_url,
                   help="live-data websocket URL (env SLOTML_RTDS_WS_URL)")
    p.add_argument("--price-source", choices=PRICE_SOURCES, default=PRICE_SOURCES[0],
                   help="where Chainlink prices come from: relay = the live-data websocket; "
                   "polybolt = its authenticated successor (Chainlink TWAP, Pyth spot); auto = "
                   f"both, each filling the other's gaps (default {PRICE_SOURCES[0]})")
    p.add_argument("--binance-ws-url", type=ws_url,
                   help="Binance's public kline stream, read for the families settling on Binance "
                   "candles (1h, 1d) (env SLOTML_BINANCE_WS_URL)")
    p.add_argument("--polybolt-ws-url", type=ws_url,
                   help="PolyBolt websocket URL (env SLOTML_POLYBOLT_WS_URL)")
    p.add_argument("--polybolt-credentials", type=existing_file,
                   help="JSON file with PolyBolt's L2 key, secret and passphrase, mode 0600 "
                   "(default: env SLOTML_POLYBOLT_KEY, _SECRET, _PASSPHRASE)")
    p.add_argument("--polybolt-auth-retry", type=seconds(1, 86400), default=300.0,
                   help="after PolyBolt refuses the credentials (4001), wait this long before "
                   "trying again (doubling, at most an hour); seconds, 1..86400 (default 300)")
    p.add_argument("--snapshot-interval", type=seconds(0.05, 3600), default=30.0,
                   help="seconds, 0.05..3600 (default 30)")
    p.add_argument("--discovery-interval", type=seconds(0.05, 3600), default=60.0,
                   help="seconds, 0.05..3600 (default 60)")
    p.add_argument("--resolution-interval", type=seconds(0.05, 3600), default=60.0,
                   help="seconds, 0.05..3600 (default 60)")
    p.add_argument("--stale-after", type=seconds(0.5, 3600), default=30.0,
                   help="a stream silent this long is reconnected and its data NULLed; seconds, "
                   "0.5..3600 (default 30)")
    p.add_argument("--retry-limit", type=seconds(0, 30 * 86400, lo_open=False), default=3600.0,
                   help="seconds after a window's end to keep polling its resolution, "
                   "0..2592000 (default 3600)")
    p.add_argument("--health-port", type=port(allow_zero=True), default=9108,
                   help="/health and /metrics on 127.0.0.1 (default 9108; 0 = off)")
    p.add_argument("--raw-dir", type=output_dir,
                   help="capture every frame and REST body here (hourly gzip JSON lines)")
    p.add_argument("--raw-keep-days", type=days(0, 3650, lo_open=True), default=None,
                   help="delete raw capture files older than this many days, (0, 3650] (default: keep all)")
    p.add_argument("--queue-max", type=count(1, 10**7), default=1000,
                   help="rows the durable writer caches in memory, 1..10^7 (default 1000)")
    p.add_argument("--spool-max-mb", type=megabytes(1, 10**6), default=512.0,
                   help="spool size while the database is down before the oldest rows are "
                   "dropped, MB, 1..10^6 (default 512)")
    p.add_argument("--lookahead", type=count(0, 10_000), default=None,
                   help="windows ahead of the current one to discover and subscribe, 0..10000 "
                   "(0: the current one only; default: enough to cover one discovery interval, "
                   "at least 3)")
    p.add_argument("--no-trades", action="store_true",
                   help="do not record the trade tape (last_trade_price prints, tape gaps)")
    p.add_argument("--mmap-threshold-kib", type=integer(0, MAX_KIB, "KiB"), default=128,
                   help="fix glibc's mmap threshold at this many KiB so large frames are given "
                   f"back to the OS and RSS stays flat over days (ingest/heap.py), 0..{MAX_KIB}; 0 = "
                   "glibc's dynamic threshold; env MALLOC_MMAP_THRESHOLD_ wins (default 128)")
    p.set_defaults(func=_collect)

    r = sub.add_parser("rederive", help="rebuild snapshot rows and the trade tape from a "
                       "--raw-dir capture",
                       description="Replay a raw capture through the same books, prices, "
                       "snapshot function and tape recorder into a (separate) store; prints and "
                       "gaps already there are not stored twice.")
    add_common_args(r)
    r.add_argument("raw_dir", type=existing_dir, help="the collector's --raw-dir")
    r.add_argument("--cadence", type=seconds(0.05, 3600), default=30.0,
                   help="snapshot interval, s, 0.05..3600 (default 30)")
    r.add_argument("--family", default="15m")
    r.add_argument("--symbols", default="BTC,ETH,SOL,XRP")
    r.add_argument("--stale-after", type=seconds(0.5, 3600), default=30.0,
                   help="seconds, 0.5..3600 (default 30)")
    r.set_defaults(func=_rederive)


def _collect(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from slotml.ingest.collector import run_collector
    from slotml.ingest.config import config_from_args
    from slotml.ingest.heap import fix_mmap_threshold
    from slotml.settings import start_command

    cfg = config_from_args(args)
    start_command(args, cfg)
    logging.getLogger("slotml.ingest").info(fix_mmap_threshold(cfg.mmap_threshold_kib))
    return asyncio.run(run_collector(cfg))


def _rederive(args: argparse.Namespace) -> int:
    import asyncio

    from slotml.ingest.raw import rederive
    from slotml.settings import start_command

    settings = start_command(args)
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    n = asyncio.run(rederive(args.raw_dir, settings.db, args.family, symbols, args.cadence,
                             args.stale_after))
    print(f"rederive: {n['slot_snapshots']} snapshot rows, {n['slot_trades']} prints, "
          f"{n['slot_tape_gaps']} tape gaps written to {settings.db}"
          + (f"; {n['rejected']} invalid row(s) skipped" if n.get("rejected") else ""))
    return 0


# --- slotml db: the store (owned by the store; see ingest/store/) ---------------------------

def _register_db(sub: argparse._SubParsersAction) -> None:
    from slotml.argtypes import seconds
    from slotml.settings import add_common_args

    p = sub.add_parser("db", help="the store: create/upgrade its tables, print its schema",
                       description="Create or upgrade the store's tables, or print the column "
                       "reference. The database comes from --db / SLOTML_DB_URL (default: SQLite "
                       "under the data dir).")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = dsub.add_parser("init", help="connect, create or upgrade the tables (idempotent), "
                           "print what was done")
    add_common_args(init)
    init.add_argument("--connect-timeout", type=seconds(0.1, 600), default=5.0,
                      help="seconds to wait for the server, 0.1..600 (default 5)")
    init.set_defaults(func=_db_init)
    schema = dsub.add_parser("schema", help="print the column reference (Markdown) or the DDL")
    schema.add_argument("--ddl", choices=["mysql", "sqlite"],
                        help="print the CREATE statements for this backend instead")
    schema.set_defaults(func=_db_schema)


def _db_init(args: argparse.Namespace) -> int:
    import asyncio

    from slotml.ingest.schema import TABLES
    from slotml.ingest.store import open_store
    from slotml.settings import start_command

    settings = start_command(args)
    opts = {"connect_timeout": args.connect_timeout} if settings.db.scheme == "mysql" else {}

    async def run() -> list[str]:
        store = open_store(settings.db, **opts)
        await store.connect()
        try:
            done = await store.ensure_schema()
            counts = {t: await store.count(t) for t in TABLES}
        finally:
            await store.close()
        return [*done, "rows: " + ", ".join(f"{t} {n}" for t, n in counts.items())]

    lines = asyncio.run(run())
    print(f"store {settings.db}:")
    if len(lines) == 1:
        print("  schema up to date, nothing to do")
    for line in lines:
        print(f"  {line}")
    return 0


def _db_schema(args: argparse.Namespace) -> int:
    if args.ddl:
        from slotml.ingest.store.ddl import full_ddl

        print(full_ddl(args.ddl), end="")
    else:
        from slotml.ingest.schema import docs

        print(docs(), end="")
    return 0
