"""A writer process SIGKILLed while its database is cut off (MariaDB behind a proxy that refuses;
SQLite locked by another connection) loses nothing it had accepted: the restarted process
replays the spool, and every accepted row (snapshots and trade-tape prints) is there exactly
once, in order."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slotml.ingest.store import open_store
from tests.ingest import test_store as _fx
from tests.ingest.test_store_tape import assert_trades_exactly_in_order
from tests.ingest.test_writer import assert_exactly_in_order, ticks_of
from tests.tcp_proxy import ThreadedProxy
from tests.util import wait_for

mysql_db = _fx.mysql_db

# The test's own writer process: puts rows start.. (a snapshot and a print per index, printing
# the index once both put() returned, i.e. once accepted) and then waits to be killed; with
# count 0 it only replays and flushes.
WRITER = r"""
import asyncio, json, sys
from slotml.ingest.store import open_store
from slotml.ingest.store.writer import DurableWriter
from slotml.settings import DbUrl
from tests.ingest.test_store import snap
from tests.ingest.test_store_tape import trade

url, spool, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
opts = json.loads(sys.argv[5])

async def main():
    store = open_store(DbUrl.parse(url), **opts)
    if url.startswith("sqlite"):  # a file: opened once (MySQL's pool connects on demand)
        await store.connect()
    w = DurableWriter(store, spool, queue_max=50, batch_max=100, retry_min_s=0.05,
                      retry_max_s=0.3)
    await w.start()
    print("replayed", w.stats()["replayed"], flush=True)
    for i in range(start, start + count):
        w.put_snapshot(snap(i))
        w.put_trade(trade(i, tx_hash=""))
        print(i, flush=True)
        if i % 10 == 0:
            await asyncio.sleep(0.005)
    if count:
        await asyncio.sleep(3600)  # until killed
    ok = await w.flush(20)
    print("flushed", ok, json.dumps(w.stats()), flush=True)
    await w.close()
    await store.close()

asyncio.run(main())
"""


def spawn(url: str, spool: Path, start: int, count: int, opts: dict) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen([sys.executable, "-c", WRITER, url, str(spool), str(start),
                             str(count), json.dumps(opts)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=root)


class Lines:
    """Collect a child's stdout lines on a thread (so the test can poll with a deadline)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.t.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.strip())

    def accepted(self) -> list[int]:
        return [int(x) for x in self.lines if x.isdigit()]


class SqliteCut:
    """SQLite's cut: another connection holds the write lock (WAL readers still read)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)

    def refuse(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")

    def restore(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql), "sqlite"])
async def test_sigkill_while_cut_loses_nothing(backend: str, request, tmp_path: Path) -> None:
    db = request.getfixturevalue(f"{backend}_db")
    direct = open_store(db)
    await direct.connect()
    await direct.ensure_schema()
    if backend == "mysql":
        proxy = ThreadedProxy(db.host, db.port)
        url = dataclasses.replace(db, host="127.0.0.1", port=proxy.port).raw
        opts = {"connect_timeout": 1.0, "op_timeout": 2.0}
    else:
        proxy = SqliteCut(db.path)
        url, opts = db.raw, {"busy_timeout": 0.2}
    spool = tmp_path / "spool"
    try:
        p1 = spawn(url, spool, 0, 100_000, opts)
        out1 = Lines(p1)
        # some rows reach the database, then the link is cut and the rest only spools
        wait_for(lambda: len(out1.accepted()) >= 150, timeout=20, what="rows accepted")
        deadline = time.monotonic() + 20
        while await direct.count("slot_trades") == 0:  # some of them committed, too
            assert time.monotonic() < deadline, "nothing committed"
            await asyncio.sleep(0.02)
        proxy.refuse()
        n_cut = len(out1.accepted())
        wait_for(lambda: len(out1.accepted()) >= n_cut + 400, timeout=20, what="spooled rows")
        p1.send_signal(signal.SIGKILL)
        p1.wait(10)
        out1.t.join(5)
        accepted = out1.accepted()
        assert accepted == list(range(len(accepted)))
        before = await direct.count("slot_snapshots")
        assert 0 < before < len(accepted)  # the cut really left rows behind

        proxy.restore()
        p2 = spawn(url, spool, 0, 0, opts)
        so, se = p2.communicate(timeout=60)
        assert p2.returncode == 0, se
        assert "flushed True" in so, so + se
        replayed = int(so.split()[1])
        assert replayed >= len(accepted) - before
        # every accepted row exactly once, in order (a row put but killed before its print
        # may be there too: it was accepted, just not reported)
        rows = await direct.fetch_snapshots()
        n = len(rows)
        assert len(accepted) <= n <= len(accepted) + 1
        await assert_exactly_in_order(direct, ticks_of(range(n)))
        # the prints too (the kill may fall between an index's snapshot and its print)
        n_trades = await direct.count("slot_trades")
        assert len(accepted) <= n_trades <= n
        await assert_trades_exactly_in_order(direct, range(n_trades))
    finally:
        proxy.close()
        await direct.close()
