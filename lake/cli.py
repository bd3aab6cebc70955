"""Subcommands of the lake stage (parsers only; work is imported lazily in handlers)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    from slotml.argtypes import count, existing_dir, output_dir, output_file, seconds
    from slotml.settings import add_common_args

    p = sub.add_parser(
        "export", help="mirror the store into the Parquet lake (incremental, idempotent)",
        description="Mirror slot_snapshots and slot_resolutions into the hive-partitioned Parquet "
        "lake (lake/<table>/symbol=X/date=YYYY-MM-DD/*.parquet). Incremental on updated_at; a "
        "run can be killed at any point and re-run.",
    )
    add_common_args(p)
    p.add_argument("--lake", type=output_dir, help="lake directory (default: <data-dir>/lake)")
    p.add_argument("--full", action="store_true",
                   help="rebuild the lake from scratch (not needed to repair missing files: an "
                   "incremental run rebuilds a table whose listed files are gone)")
    p.add_argument("--overlap", type=seconds(0, 30 * 86400, lo_open=False), default=300.0,
                   help="seconds re-read before the last run's cutoff, 0..2592000 (default 300)")
    p.add_argument("--grace", type=seconds(0, 86400, lo_open=False), default=30.0,
                   help="seconds superseded files stay for readers of the old manifest, "
                   "0..86400 (default 30)")
    p.add_argument("--reader", choices=["auto", "connectorx", "cli", "python"], default="auto",
                   help="MySQL reader: connectorx (binary protocol), the mariadb client's TSV "
                   "(cli), PyMySQL (python); auto picks the first available")
    p.add_argument("--buffer-rows", type=count(1, 10**9), default=250_000,
                   help="rows buffered before partitions are flushed (bounds memory; "
                   "1..10^9, default 250000)")
    p.add_argument("--no-fsync", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_export)

    q = sub.add_parser(
        "sql", help="run a DuckDB query over the lake and print the result",
        description="Views: slot_snapshots, slot_resolutions (exactly the manifest's files). "
        "Example: slotml sql \"SELECT symbol, count(*) FROM slot_snapshots GROUP BY 1\"",
    )
    add_common_args(q, db=False, writes=False)
    q.add_argument("query", help="SQL (DuckDB dialect)")
    q.add_argument("--lake", type=existing_dir, help="lake directory (default: <data-dir>/lake)")
    q.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    q.add_argument("--out", type=output_file,
                   help="output file (required for parquet; csv defaults to stdout)")
    q.add_argument("--max-rows", type=count(1, 10**7), default=40,
                   help="rows shown in table format, 1..10^7 (default 40)")
    q.set_defaults(func=_sql)


def _export(args: argparse.Namespace) -> int:
    import logging

    from slotml.lake.export import ExportConfig, run_export
    from slotml.settings import log_config, start_command

    s = start_command(args)
    cfg = ExportConfig(db=s.db, lake_dir=args.lake or s.lake_dir, full=args.full,
                       overlap_s=args.overlap, grace_s=args.grace, reader=args.reader,
                       buffer_rows=args.buffer_rows, fsync=not args.no_fsync)
    log = logging.getLogger("slotml.lake")
    log_config(cfg, log)
    r = run_export(cfg)
    log.info("export done: manifest %d, %d files written, %d deleted, %.1fs",
             r.manifest_id, r.files_written, r.files_deleted, r.seconds)
    return 0


def _sql(args: argparse.Namespace) -> int:
    import sys

    import duckdb

    from slotml.errors import UserError
    from slotml.lake.manifest import MANIFEST_NAME
    from slotml.lake.query import connect
    from slotml.settings import start_command

    s = start_command(args)
    lake = args.lake or s.lake_dir
    if not (Path(lake) / MANIFEST_NAME).is_file():  # not a lake: 0 rows would be a lie
        raise UserError(f"no lake at {lake} (no {MANIFEST_NAME}): run `slotml export` first, "
                        "or pass --lake / --data-dir")
    con = connect(lake)  # files the manifest lists but that are gone: one line (LakeFilesMissing)
    try:
        rel = con.sql(args.query)
    except duckdb.Error as e:
        raise UserError(f"query failed: {str(e).splitlines()[0]}") from None
    if rel is None:  # a statement without a result
        return 0
    try:
        if args.format == "table":
            rel.show(max_rows=args.max_rows, max_width=200)
        elif args.format == "csv":
            if args.out:
                rel.write_csv(str(args.out))
            else:
                import pyarrow.csv as pacsv

                pacsv.write_csv(rel.to_arrow_table(), sys.stdout.buffer)
        else:
            if not args.out:
                raise UserError("--format parquet needs --out FILE")
            rel.write_parquet(str(args.out), compression="zstd")
    except duckdb.Error as e:
        raise UserError(f"query failed: {str(e).splitlines()[0]}") from None
    return 0
