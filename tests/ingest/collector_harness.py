"""Run the real collector (real SQLite store, real DurableWriter, real sockets) against a sim.

The collector runs in its own thread and event loop, the sim in another (``sim_in_thread``),
so a test drives both from plain synchronous code and reads the store afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from slotml.ingest.collector import Collector
from slotml.ingest.config import CollectorConfig
from slotml.ingest.raw import RawWriter
from slotml.settings import CommonSettings, DbUrl
from tests.util import free_port, wait_for

# the acceptance runs' module fixtures take these params: the same run on each backend
BACKENDS = ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]
T = TypeVar("T")


def backend_db(request: Any, tmp: Path, suffix: str, backend: str | None = None) -> DbUrl:
    """The store of a module-scoped run for ``backend`` (default ``request.param``): a SQLite
    file, or an empty MariaDB database ``<test db>_<suffix>`` of its own (the test user may
    create ``slotml_test_*``), so parallel suites never share tables."""
    if (backend or request.param) == "sqlite":
        return DbUrl(scheme="sqlite", path=tmp / "store.db")
    import dataclasses

    import pymysql

    from tests.conftest import drop_all_tables

    server = request.getfixturevalue("mysql_server")
    url = dataclasses.replace(server, database=f"{server.database}_{suffix}")
    conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
    finally:
        conn.close()
    drop_all_tables(url)
    return url


def side_by_side(run_one: Callable[[str], T], keys: Iterable[str]) -> dict[str, Future[T]]:
    """``run_one(key)`` for every key at the same time, one thread each; returns when all ended.

    Why: a module run (its own sim and collector) mostly waits on the wall clock, so two of
    them side by side take the time of one. Each key's outcome, or its error, stays its own."""
    keys = list(keys)
    with ThreadPoolExecutor(len(keys), thread_name_prefix="run") as ex:
        return {k: ex.submit(run_one, k) for k in keys}


def runs_on_backends(request: Any, tmp_path_factory: Any, suffix: str,
                     run_one: Callable[[DbUrl, Path], T]) -> dict[str, Future[T]]:
    """``run_one(store, tmp)`` on SQLite and, when its server answers, MariaDB, side by side.

    A missing server is not an error here: ``backend_run`` gives the MySQL param its skip (or
    its failure under CI) from the ``mysql_server`` fixture itself."""
    keys = ["sqlite"]
    try:
        request.getfixturevalue("mysql_server")
        keys.append("mysql")
    except (pytest.skip.Exception, pytest.fail.Exception):
        pass
    tmps = {k: tmp_path_factory.mktemp(f"{suffix}-{k}") for k in keys}
    dbs = {k: backend_db(request, tmps[k], suffix, k) for k in keys}
    return side_by_side(lambda k: run_one(dbs[k], tmps[k]), keys)


def backend_run(request: Any, runs: dict[str, Future[T]]) -> T:
    """The run of ``request.param``'s backend (from ``runs_on_backends``)."""
    if request.param == "mysql":
        request.getfixturevalue("mysql_server")  # skip, or fail under CI, as every MySQL test
    return runs[request.param].result()


def collector_config(sim: Any, tmp: Path, db: DbUrl | None = None,
                     **overrides: Any) -> CollectorConfig:
    common = CommonSettings(data_dir=tmp, db=db or DbUrl(scheme="sqlite", path=tmp / "store.db"))
    base = dict(
        common=common, family=sim.config.family, symbols=tuple(sim.config.symbols),
        gamma_url=sim.gamma_url, clob_url=sim.clob_url, clob_ws_url=sim.ws_market_url,
        rtds_ws_url=sim.rtds_url, polybolt_ws_url=sim.polybolt_url, binance_ws_url=sim.binance_url,
        snapshot_interval=0.5, discovery_interval=1.0,
        resolution_interval=0.5, stale_after=3.0, retry_limit=12.0, health_port=free_port(),
        clob_ping_interval=1.0, rtds_ping_interval=1.0, backoff_max=1.0, http_timeout=2.0,
    )
    base.update(overrides)
    return CollectorConfig(**base)


def sim_credentials(sim: Any, secret: str | None = None) -> Any:
    """The PolyBolt credentials the sim accepts (or a wrong ``secret``)."""
    from slotml.ingest.credentials import Credentials

    c = sim.config
    return Credentials(c.polybolt_key, secret or c.polybolt_secret, c.polybolt_passphrase,
                       origin="test")


class CollectorThread:
    """``with CollectorThread(cfg) as c:`` runs the daemon until the block ends."""

    def __init__(self, cfg: CollectorConfig, flush_s: float = 10.0) -> None:
        self.cfg = cfg
        self.flush_s = flush_s  # how long stop() lets the writer flush (a dead store: short)
        self.collector: Collector | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.writer_stats: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._main, name="collector", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    async def _run(self) -> None:
        from slotml.ingest.store import open_store
        from slotml.ingest.store.writer import DurableWriter, close_writer

        self.loop = asyncio.get_running_loop()
        store = open_store(self.cfg.common.db)
        await store.connect()
        await store.ensure_schema()
        writer = DurableWriter(store, self.cfg.common.spool_dir)
        await writer.start()
        raw = RawWriter(self.cfg.raw_dir) if self.cfg.raw_dir else None
        self.collector = Collector(self.cfg, store, writer, raw=raw)
        try:
            await self.collector.run()
        finally:
            await writer.flush(self.flush_s)
            self.writer_stats = writer.stats()
            await close_writer(writer, timeout=min(5.0, self.flush_s))
            await store.close()

    def start(self) -> CollectorThread:
        self._thread.start()
        wait_for(lambda: self.collector is not None and self.collector._ready.is_set()
                 or self.error is not None, timeout=20, what="collector start")
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        if self.loop is not None and self.collector is not None:
            self.loop.call_soon_threadsafe(self.collector.stop)
        self._thread.join(30)
        assert not self._thread.is_alive(), "collector did not stop"
        if self.error:
            raise self.error

    def __enter__(self) -> CollectorThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def metrics(self):
        return self.collector.metrics


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None  # nothing listening (yet)


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def post_json(url: str, body: dict) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def read_tables(db: DbUrl) -> tuple[list[dict], list[dict]]:
    from slotml.ingest.store import open_store

    async def go() -> tuple[list[dict], list[dict]]:
        s = open_store(db)
        await s.connect()
        try:
            return await s.fetch_snapshots(), await s.fetch_resolutions()
        finally:
            await s.close()

    return asyncio.run(go())


def sleep_until(t: float) -> None:
    d = t - time.time()
    if d > 0:
        time.sleep(d)


def book_second(t: float) -> int:
    """The second whose book the sim displays at wall time t (its BOOK_LEAD_S is 0.25 s)."""
    import math

    return math.floor(t + 0.25)


def last_published(delay, t: float) -> int:
    """The newest observation second the sim's relay had published by wall time t."""
    s = int(t) - 4
    while s + 1 + delay(s + 1) <= t:
        s += 1
    return s


# a snapshot's price columns: (the sim's /prices key, the collector's snapshot_nulls series)
PRICE_COLS = {"chainlink_price": ("spot", "spot"), "chainlink_twap": ("twap", "twap60")}


def first_price_seen(snaps: list[dict]) -> dict[tuple[str, str], float]:
    """(symbol, price column) -> the first capture holding a value in it. Spot and TWAP are
    separate relay frames, so at start-up one can arrive a capture before the other: before its
    first frame a column is rightly NULL (the collector counts it ``no_data``)."""
    first: dict[tuple[str, str], float] = {}
    for r in snaps:
        for col in PRICE_COLS:
            if r[col] is not None:
                key = (r["symbol"], col)
                first[key] = min(first.get(key, r["captured_at"]), r["captured_at"])
    return first


def sim_truth(sim: Any, snaps: list[dict]) -> tuple[dict, dict]:
    """What the sim quoted for every row's tick (books) and around its capture (prices)."""
    quotes: dict[tuple[str, int], dict] = {}
    prices: dict[tuple[str, int], dict] = {}
    for r in snaps:
        m = sim.market(r["symbol"], r["slot_ts"])
        second = book_second(r["tick_ms"] / 1000)
        for tok in m.tokens:
            if (tok, second) not in quotes:
                quotes[(tok, second)] = get_json(
                    f"{sim.control_url}/quote?token_id={tok}&t={second}")[1]
        s = last_published(sim.world.relay_delay, r["captured_at"])
        for ss in (s, s - 1):
            if (r["symbol"], ss) not in prices:
                prices[(r["symbol"], ss)] = get_json(
                    f"{sim.control_url}/prices?symbol={r['symbol']}&t={ss}")[1]
    return quotes, prices
