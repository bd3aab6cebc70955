"""``slotml api``: the read-only HTTP API over what was collected (FastAPI on uvicorn).

- ``GET /slots``: snapshots joined with their window's resolution, from the STORE (fresh,
  index-backed; SQL in ``slotml.ingest.store.query``), filtered, keyset-paginated, as JSON, CSV
  or Parquet. ``point=`` / ``minute=`` return the feature contract's decision row per window.
- ``GET /slots/summary``: per asset, family and day, from the LAKE through DuckDB
  (``slotml.web.slot_stats``).
- ``GET /health``: store reachable, newest snapshot, lake manifest; with ``--model-path``, the
  live calibration monitor's state (``web/monitor.py``, run as a background task).
- ``GET /metrics``: the monitor's Prometheus gauges and counters (ingest's text format).

Every bad parameter is a 422 in FastAPI's own error shape (``{"detail": [{loc, msg, type}]}``),
so clients and the OpenAPI description see one format; a store or lake that cannot answer is a
503 with the reason, never a 500. Every value reaches SQL as a bound parameter. The API never
writes: a read-only database user is enough (README: "Read API").

About 450 lines, one module: the response models and the routes are one OpenAPI document;
the SQL lives in the store's query module and ``web/slot_stats``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import math
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from slotml import __version__
from slotml.errors import UserError
from slotml.features.contract import DEFAULT_TOLERANCE, frac_ms
from slotml.ingest.schema import SNAPSHOTS
from slotml.ingest.store import Store, StoreUnavailable, open_store
from slotml.ingest.store.query import (
    PickSpec,
    SlotQuery,
    fetch_slots,
    latest_slot,
    slot_columns,
    window_lengths,
)
from slotml.settings import DbUrl
from slotml.venue import FAMILIES, family_seconds, parse_time

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_EPOCH = 2**31 - 1  # slot_ts is a 32-bit INT in the store
MAX_ID = 2**62
PARQUET_TYPE = "application/vnd.apache.parquet"
CSV_TYPE = "text/csv"


@dataclass(frozen=True)
class ApiConfig:
    """``slotml api``'s typed config (logged once at start-up)."""

    db: DbUrl
    lake_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    tolerance: float = DEFAULT_TOLERANCE  # of the window, for point= / minute=
    monitor: Any = None  # web.monitor.MonitorConfig: run the live calibration monitor


# ------------------------------------------------------------------------------- validation

def invalid(param: str, msg: str, value: Any = None) -> RequestValidationError:
    """A 422 in FastAPI's own shape, for checks the type system cannot express."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", param),
                                    "msg": msg, "input": value}])


def time_param(param: str, text: str | None) -> int | None:
    """Epoch seconds (integer or decimal) or an ISO 8601 date/time (UTC unless it has a zone)."""
    if text is None or text.strip() == "":
        return None
    v = parse_time(text)
    if v is None:
        raise invalid(param, "use epoch seconds or an ISO 8601 time such as 2026-11-24 or "
                             "2026-11-24T15:00:00Z", text)
    if not 0 <= v <= MAX_EPOCH:
        raise invalid(param, f"time must lie in [0, {MAX_EPOCH}] epoch seconds (1970-2038)", text)
    return int(math.floor(v))


# a family name's shape (15m, 5s, 1h, 1d); family_window then takes only the venue's own
FAMILY_PATTERN = r"^[1-9][0-9]{0,5}[smhd]$"


def family_window(family: str | None) -> int | None:
    """``15m`` -> 900, ``1h`` -> 3600, ``1d`` -> 86400 (the venue's family names, as
    ``slotml collect --family`` reads them)."""
    if family is None:
        return None
    try:
        return family_seconds(family)
    except UserError:
        raise invalid("family", f"use a family name: {', '.join(FAMILIES)}", family) from None


def encode_cursor(after: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{after[0]}.{after[1]}".encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[int, int] | None:
    if text is None or text == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        slot_s, id_s = raw.split(".")
        if not (slot_s.isdigit() and id_s.isdigit() and len(slot_s) <= 12 and len(id_s) <= 20):
            raise ValueError(raw)
        slot, last_id = int(slot_s), int(id_s)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("cursor", "not a cursor this API issued (use next_cursor of the "
                                "previous page)", text) from None
    if not (0 <= slot <= MAX_EPOCH and 0 <= last_id <= MAX_ID):
        raise invalid("cursor", "cursor out of range", text)
    return slot, last_id


class Resolved(StrEnum):
    true = "true"
    false = "false"
    any = "any"


class Format(StrEnum):
    json = "json"
    csv = "csv"
    parquet = "parquet"


# ------------------------------------------------------------------------------- response models

_PY = {"int": int, "bigint": int, "tinyint": int, "double": float, "bool": bool, "str": str}


def _row_model() -> type[BaseModel]:
    """The /slots row, typed from ingest/schema.py (resolution fields: null without a row)."""
    fields: dict[str, Any] = {}
    for c in slot_columns():
        t: Any = _PY[c.kind]
        required = c.name in SNAPSHOTS.names and not c.nullable
        fields[c.name] = (t, Field(description=c.doc)) if required else \
            (t | None, Field(None, description=c.doc))
    return create_model("SlotRow", **fields)


SlotRow = _row_model()


class SlotsPage(BaseModel):
    rows: list[SlotRow]  # type: ignore[valid-type]
    count: int = Field(description="rows on this page")
    next_cursor: str | None = Field(description="pass as cursor= for the next page; null at the end")


class SummaryRow(BaseModel):
    symbol: str
    window_s: int
    day: str = Field(description="UTC date of the window starts, YYYY-MM-DD")
    windows: int
    snapshots: int
    snapshots_per_window: float | None
    windows_without_snapshots: int
    resolved: int
    resolution_rate: float | None
    compared: int = Field(description="windows with both a measured and an official outcome")
    disagreements: int = Field(description="measured outcome (final_price >= price_to_beat) != official")
    max_final_diff_bp: float | None = Field(description="largest |measured/official final price - 1|, bp")


class SummaryPage(BaseModel):
    rows: list[SummaryRow]
    lake_manifest_id: int


class StoreHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    ok: bool
    error: str | None = None
    latest_slot_ts: int | None = None
    latest_captured_at: float | None = None
    age_s: float | None = None


class LakeHealth(BaseModel):
    dir: str
    manifest_id: int
    exported_at: float | None
    snapshot_rows: int
    resolution_rows: int


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable when the store cannot be reached")
    version: str
    store: StoreHealth
    lake: LakeHealth
    monitor: dict[str, Any] | None = Field(None, description="the live calibration monitor's "
                                           "state (null without --model-path): status warming, "
                                           "healthy or unhealthy, rolling scores, declines")


class Problem(BaseModel):
    detail: str


_UNAVAILABLE = {503: {"model": Problem, "description": "the store or the lake cannot answer now"}}


# ------------------------------------------------------------------------------- the app

def _store(request: Request) -> Store:
    return request.app.state.store


def _page_table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    from slotml.lake.arrow_schema import arrow_type

    cols = slot_columns()
    return pa.table({c.name: pa.array([r[c.name] for r in rows], type=arrow_type(c))
                     for c in cols})


def _render(rows: list[dict[str, Any]], nxt: str | None, fmt: Format) -> Response:
    headers = {"X-Next-Cursor": nxt} if nxt else {}
    if fmt is Format.json:
        body = json.dumps({"rows": rows, "count": len(rows), "next_cursor": nxt},
                          separators=(",", ":"), allow_nan=False)
        return Response(body, media_type="application/json", headers=headers)
    table = _page_table(rows)
    buf = io.BytesIO()
    if fmt is Format.csv:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, buf)
        return Response(buf.getvalue(), media_type=CSV_TYPE, headers=headers)
    import pyarrow.parquet as pq

    pq.write_table(table, buf, compression="zstd")
    return Response(buf.getvalue(), media_type=PARQUET_TYPE, headers=headers)


def create_app(config: ApiConfig, store: Store | None = None) -> FastAPI:
    """The app. ``store``: an already-connected store to use (tests); else opened at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        app.state.store = open_store(config.db) if own else store
        if own:
            await app.state.store.connect()
        app.state.monitor, task, stop = None, None, asyncio.Event()
        if config.monitor is not None:
            from slotml.web.monitor import Monitor

            app.state.monitor = Monitor(config.monitor, app.state.store)
            task = asyncio.create_task(app.state.monitor.run(stop), name="calibration-monitor")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            if own:
                await app.state.store.close()

    app = FastAPI(
        title="slotml read API",
        version=__version__,
        description="Read-only access to the collected Polymarket Up/Down slot data: snapshots "
        "with their window's resolution (from the store) and daily summaries (from the lake).",
        lifespan=lifespan,
    )
    app.state.config = config

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    @app.get(
        "/slots",
        response_model=SlotsPage,
        summary="Snapshots joined with their window's resolution (from the store)",
        responses={
            200: {"content": {CSV_TYPE: {"schema": {"type": "string"}},
                              PARQUET_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                  "description": "a page of rows; the next page's cursor is in next_cursor "
                                 "(JSON) and the X-Next-Cursor header (every format)",
                  "headers": {"X-Next-Cursor": {"schema": {"type": "string"},
                                                "description": "cursor of the next page"}}},
            **_UNAVAILABLE,
        },
    )
    async def slots(
        request: Request,
        symbol: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,10}$",
                                            description="asset, e.g. BTC")] = None,
        family: Annotated[str | None, Query(pattern=FAMILY_PATTERN,
                                            description="window family: "
                                            f"{', '.join(FAMILIES)}")] = None,
        from_: Annotated[str | None, Query(alias="from", max_length=40,
                                           description="first window start (inclusive): epoch "
                                           "seconds or ISO 8601, UTC unless zoned")] = None,
        to: Annotated[str | None, Query(max_length=40,
                                        description="last window start (exclusive), as from")] = None,
        resolved: Annotated[Resolved, Query(description="true: outcome known; false: not "
                                            "(yet); any")] = Resolved.any,
        point: Annotated[float | None, Query(gt=0, lt=1, description="decision point as a "
                                             "fraction of the window: one row per window, the "
                                             "feature contract's pick")] = None,
        minute: Annotated[float | None, Query(gt=0, lt=15, description="decision point in "
                                              "minutes, 15m windows only (minute=5 is "
                                              "point=5/15)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=64,
                                            description="next_cursor of the previous page")] = None,
        format: Annotated[Format, Query(description="json, csv or parquet")] = Format.json,
    ) -> Response:
        window_s = family_window(family)
        slot_from, slot_to = time_param("from", from_), time_param("to", to)
        if slot_from is not None and slot_to is not None and slot_to <= slot_from:
            raise invalid("to", "to must be after from", to)
        if point is not None and minute is not None:
            raise invalid("minute", "give point or minute, not both", minute)
        if minute is not None:
            if window_s is None:
                window_s = 900
            elif window_s != 900:
                raise invalid("minute", "minute= is for 15m windows; use point= (a fraction "
                                        "of the window) for other families", minute)
            point = minute / 15.0
        after = decode_cursor(cursor)
        st = _store(request)
        pick = None
        if point is not None:
            lengths = [window_s] if window_s is not None else await window_lengths(st)
            if not lengths:
                return _render([], None, format)
            tol = config.tolerance
            pick = PickSpec({w: (frac_ms(point, w), frac_ms(tol, w)) for w in lengths})
        q = SlotQuery(symbol=symbol.upper() if symbol else None, window_s=window_s,
                      slot_from=slot_from, slot_to=slot_to,
                      resolved={Resolved.true: True, Resolved.false: False}.get(resolved),
                      pick=pick, after=after, limit=limit)
        rows, nxt = await fetch_slots(st, q)
        return _render(rows, encode_cursor(nxt) if nxt else None, format)

    @app.get("/slots/summary", response_model=SummaryPage, responses=_UNAVAILABLE,
             summary="Windows, snapshots per window, resolution rate and measured-vs-official "
                     "disagreements per asset, family and day (from the lake)")
    def summary(
        symbol: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,10}$")] = None,
        family: Annotated[str | None, Query(pattern=FAMILY_PATTERN,
                                            description=f"window family: {', '.join(FAMILIES)}")] = None,
        from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        to: Annotated[str | None, Query(max_length=40)] = None,
    ) -> Any:
        import duckdb

        from slotml.lake.query import refresh
        from slotml.web.slot_stats import summary_rows

        window_s = family_window(family)
        slot_from, slot_to = time_param("from", from_), time_param("to", to)
        if slot_from is not None and slot_to is not None and slot_to <= slot_from:
            raise invalid("to", "to must be after from", to)
        con = duckdb.connect()
        try:
            con.execute("SET threads = 2")
            manifest = refresh(con, config.lake_dir)  # the id below is the export the rows read
            rows = summary_rows(con, symbol=symbol.upper() if symbol else None,
                                window_s=window_s, slot_from=slot_from, slot_to=slot_to)
        except (duckdb.Error, OSError, ValueError) as e:  # unreadable manifest, file gone, corrupt
            return JSONResponse({"detail": f"lake unavailable: {e}"}, status_code=503)
        finally:
            con.close()
        return {"rows": rows, "lake_manifest_id": manifest.id}

    @app.get("/health", response_model=Health,
             responses={503: {"model": Health, "description": "the store cannot be reached"}},
             summary="Store reachable, newest snapshot, lake manifest")
    async def health(request: Request) -> Any:
        from slotml.lake import read_manifest

        st = _store(request)
        store = StoreHealth(url=str(config.db), ok=True)
        try:
            slot, cap = await latest_slot(st)
            store.latest_slot_ts, store.latest_captured_at = slot, cap
            store.age_s = None if cap is None else round(time.time() - cap, 3)
        except StoreUnavailable as e:
            store.ok, store.error = False, str(e)
        try:
            m = read_manifest(config.lake_dir)
            lake = LakeHealth(dir=str(config.lake_dir), manifest_id=m.id,
                              exported_at=m.created_at or None,
                              snapshot_rows=m.tables["slot_snapshots"].rows if "slot_snapshots" in m.tables else 0,
                              resolution_rows=m.tables["slot_resolutions"].rows if "slot_resolutions" in m.tables else 0)
        except (OSError, ValueError, KeyError) as e:
            log.warning("lake manifest unreadable: %s", e)
            lake = LakeHealth(dir=str(config.lake_dir), manifest_id=-1, exported_at=None,
                              snapshot_rows=0, resolution_rows=0)
        mon = request.app.state.monitor
        body = Health(status="ok" if store.ok else "unavailable", version=__version__,
                      store=store, lake=lake, monitor=None if mon is None else mon.state())
        return JSONResponse(body.model_dump(), status_code=200 if store.ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse,
             summary="The live calibration monitor's gauges and counters (Prometheus text)")
    async def metrics(request: Request) -> PlainTextResponse:
        mon = request.app.state.monitor
        text = mon.metrics_text() if mon is not None else "# no monitor: start with --model-path\n"
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app


def serve(config: ApiConfig, sock: socket.socket | None = None) -> None:
    """Run the API until interrupted (``slotml api``); ``sock``: already bound and listening
    (``slotml.net.bind_listener``), so a busy port was one line before anything started."""
    import uvicorn

    ucfg = uvicorn.Config(create_app(config), host=config.host, port=config.port,
                          log_level="info", access_log=False)
    server = uvicorn.Server(ucfg)
    server.run(sockets=[sock] if sock is not None else None)
