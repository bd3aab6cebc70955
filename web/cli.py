"""Subcommands of the web stage (parsers only; work is imported lazily in handlers).

``slotml api``: the read-only ``/slots`` HTTP API (with ``--model-path``: the live calibration
monitor too); ``slotml monitor``: the monitor alone; ``slotml dashboard``: the Streamlit page.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from slotml.argtypes import count, existing_dir, output_dir, port, seconds, time_text
from slotml.settings import add_common_args

if TYPE_CHECKING:
    from slotml.settings import CommonSettings
    from slotml.web.monitor import MonitorConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `slotml` parser."""
    _register_api(sub)
    _register_monitor(sub)
    _register_dashboard(sub)


MONITOR_ROWS = count(30, 1_000_000)
MONITOR_INTERVAL = seconds(1.0, 86400.0)


def add_monitor_args(p: argparse.ArgumentParser, *, api: bool) -> None:
    """The monitor's options (``slotml monitor`` and ``slotml api``)."""
    g = p.add_argument_group("live calibration monitor")
    g.add_argument("--model-path", default=None,
                   help="model file or <data-dir>/models/current (a pointer change is followed)"
                   + ("; enables the monitor (default: off)" if api else
                      " (default <data-dir>/models/current)"))
    g.add_argument("--monitor-windows", type=MONITOR_ROWS, default=400,
                   help="resolved decision rows in the rolling window (default 400)")
    g.add_argument("--monitor-interval", type=MONITOR_INTERVAL, default=30.0,
                   help="seconds between passes over the store (default 30)")
    g.add_argument("--monitor-dir", type=output_dir, default=None,
                   help="where the ledger of scored rows goes, one file per model (default "
                        "<data-dir>/monitor)")
    g.add_argument("--since", type=time_text, default=None,
                   help="first window start to score: epoch s or ISO 8601 (default: the first "
                        "window after the model's training data)")


def monitor_config(args: argparse.Namespace, common: CommonSettings) -> MonitorConfig:
    """``MonitorConfig`` from the options (a missing or bad model: one line)."""
    from pathlib import Path

    from slotml.venue import parse_time
    from slotml.web.monitor import MonitorConfig

    since = parse_time(args.since) if args.since else None
    return MonitorConfig(db=common.db, model_path=Path(args.model_path or common.models_dir / "current"),
                         monitor_dir=Path(args.monitor_dir or common.data_dir / "monitor"),
                         rows=args.monitor_windows, since=None if since is None else int(since),
                         interval_s=args.monitor_interval)


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
    add_monitor_args(p, api=True)
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
    monitor = monitor_config(args, common) if args.model_path else None
    cfg = ApiConfig(db=common.db, lake_dir=Path(args.lake_dir) if args.lake_dir else common.lake_dir,
                    host=args.host, port=args.port, monitor=monitor)
    log_config(cfg, logging.getLogger("slotml.web.api"))
    if cfg.db.scheme == "sqlite" and not Path(cfg.db.path).is_file():
        raise UserError(f"no store at {cfg.db} (collect first, or pass --db)")
    if monitor is not None:
        from slotml.serve.scorer import Scorer

        Scorer.load(monitor.model_path)  # a bad model is one line now, not a task's traceback

    async def check() -> None:  # a wrong password is one line here, not a uvicorn traceback
        store = open_store(cfg.db)
        await store.connect()
        await store.close()

    asyncio.run(check())
    serve(cfg, bind_listener(cfg.host, cfg.port, "api"))  # a busy port: one line, not uvicorn's
    return 0


def _register_monitor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="live calibration monitor: score the model on every newly resolved window",
        description="For every newly resolved window in the store, score the model at its "
        "decision points with the bot's online features; rolling Brier, ECE and log loss of "
        "the model and the book, the model's expected Brier, and the health rule (README, "
        "'Live calibration monitor'). Rows go to a ledger the dashboard reads.",
    )
    add_monitor_args(p, api=False)
    p.add_argument("--once", action="store_true",
                   help="one pass, print the state as JSON and exit (exit 1 when unhealthy)")
    add_common_args(p)
    p.set_defaults(func=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import logging
    import signal
    from pathlib import Path

    from slotml.errors import UserError
    from slotml.ingest.store import open_store
    from slotml.settings import log_config, start_command
    from slotml.web.monitor import Monitor

    common = start_command(args)
    cfg = monitor_config(args, common)
    log_config(cfg, logging.getLogger("slotml.web.monitor"))
    if cfg.db.scheme == "sqlite" and not Path(cfg.db.path).is_file():
        raise UserError(f"no store at {cfg.db} (collect first, or pass --db)")

    async def main() -> int:
        store = open_store(cfg.db)
        await store.connect()
        try:
            mon = Monitor(cfg, store)
            if args.once:
                await mon.step()
                print(json.dumps(mon.state(), indent=1))
                return 1 if mon.summary["status"] == "unhealthy" else 0
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await mon.run(stop)
            return 0
        finally:
            await store.close()

    return asyncio.run(main())


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
    p.add_argument("--monitor-dir", default=None,
                   help="the live monitor's ledgers, for the 'live model' page (default "
                        "<data-dir>/monitor)")
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
    return run_streamlit(lake_dir, model, host=args.host, port=args.port,
                         monitor_dir=args.monitor_dir or common.data_dir / "monitor")
