"""Subcommands of the ingest stage (parsers only; work is imported lazily in handlers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    _register_db(sub)


# --- slotml db: the store (owned by the store; see ingest/store.py) ---------------------------

def _register_db(sub: argparse._SubParsersAction) -> None:
    from slotml.settings import add_common_args

    p = sub.add_parser("db", help="the store: create/upgrade its tables, print its schema",
                       description="Create or upgrade the store's tables, or print the column "
                       "reference. The database comes from --db / SLOTML_DB_URL (default: SQLite "
                       "under the data dir).")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = dsub.add_parser("init", help="connect, create or upgrade the tables (idempotent), "
                           "print what was done")
    add_common_args(init)
    init.add_argument("--connect-timeout", type=float, default=5.0,
                      help="seconds to wait for the server (default 5)")
    init.set_defaults(func=_db_init)
    schema = dsub.add_parser("schema", help="print the column reference (Markdown) or the DDL")
    schema.add_argument("--ddl", choices=["mysql", "sqlite"],
                        help="print the CREATE statements for this backend instead")
    schema.set_defaults(func=_db_schema)


def _db_init(args: argparse.Namespace) -> int:
    import asyncio

    from slotml.ingest.store import open_store
    from slotml.log import setup_logging
    from slotml.settings import CommonSettings

    settings = CommonSettings.from_args(args)
    setup_logging(settings.log_format, settings.log_level)
    opts = {"connect_timeout": args.connect_timeout} if settings.db.scheme == "mysql" else {}

    async def run() -> list[str]:
        store = open_store(settings.db, **opts)
        await store.connect()
        try:
            done = await store.ensure_schema()
            counts = {t: await store.count(t) for t in ("slot_snapshots", "slot_resolutions")}
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
        from slotml.ingest.ddl import full_ddl

        print(full_ddl(args.ddl), end="")
    else:
        from slotml.ingest.schema import docs

        print(docs(), end="")
    return 0
