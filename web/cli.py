"""Subcommands of the web stage (parsers only; work is imported lazily in handlers).

``slotml api``: the read-only ``/slots`` HTTP API; ``slotml dashboard``: the Streamlit page.
"""

from __future__ import annotations

import argparse

from slotml.argtypes import existing_dir, port
from slotml.settings import add_common_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    _register_api(sub)
    _register_dashboard(sub)


def _register_api(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "api",
        help="read-only HTTP API: /slots (store), /slots/summary (lake), /health; OpenAPI at /docs",
        description="Serve the collected data over HTTP (FastAPI on uvicorn). It only reads: a "
        "read-only database user is enough (README, 'Read API').",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port(), default=8000, help="1..65535 (default 8000)")
    p.add_argument("--lake-dir", default=None,
                   help="lake directory (default <data-dir>/lake; may not exist yet: /health says so)")
    add_common_args(p)
    p.set_defaults(func=_api)


def _api(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    from pathlib import Path

    from slotml.errors import UserError
    from slotml.ingest.store import open_store
    from slotml.net import bind_listener
    from slotml.settings import log_config, start_command
    from slotml.web.api import ApiConfig, serve

    common = start_command(args)
    cfg = ApiConfig(db=common.db, lake_dir=Path(args.lake_dir) if args.lake_dir else common.lake_dir,
                    host=args.host, port=args.port)
    log_config(cfg, logging.getLogger("slotml.web.api"))
    if cfg.db.scheme == "sqlite" and not Path(cfg.db.path).is_file():
        raise UserError(f"no store at {cfg.db} (collect first, or pass --db)")

    async def check() -> None:  # a wrong password is one line here, not a uvicorn traceback
        store = open_store(cfg.db)
        await store.connect()
        await store.close()

    asyncio.run(check())
    serve(cfg, bind_listener(cfg.host, cfg.port, "api"))  # a busy port: one line, not uvicorn's
    return 0


def _register_dashboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="Streamlit dashboard over the lake: win-rate heatmap, calibration, data health",
        description="Run the Streamlit dashboard on the lake (read through slotml.lake.connect): "
        "win rate of the side the move favours by minute and move, the chosen model's "
        "calibration on its test days and later days beside the book's mid, and data health.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port(), default=8501, help="1..65535 (default 8501)")
    p.add_argument("--lake-dir", type=existing_dir, default=None,
                   help="lake directory (default <data-dir>/lake)")
    p.add_argument("--model", default=None,
                   help="model file or models dir (default <data-dir>/models/current)")
    add_common_args(p, db=False, writes=False)
    p.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slotml.errors import UserError
    from slotml.net import ensure_port_free
    from slotml.settings import start_command
    from slotml.web.dashboard_run import run_streamlit

    common = start_command(args)
    lake_dir = Path(args.lake_dir) if args.lake_dir else common.lake_dir
    if not lake_dir.exists():
        raise UserError(f"no lake at {lake_dir} (run `slotml export` first, or pass --lake-dir)")
    model = args.model or str(common.models_dir)
    ensure_port_free(args.host, args.port, "dashboard")
    return run_streamlit(lake_dir, model, host=args.host, port=args.port)
