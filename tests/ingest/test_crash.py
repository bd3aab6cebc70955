"""A writer process SIGKILLed while MariaDB is cut off loses nothing it had accepted: the
restarted process replays the spool, and every accepted row is there exactly once, in order."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from slotml.ingest.store import open_store
from tests.ingest import test_store as _fx
from tests.ingest.test_writer import assert_exactly_in_order, ticks_of
from tests.tcp_proxy import ThreadedProxy
from tests.util import wait_for

pytestmark = pytest.mark.mysql
mysql_db = _fx.mysql_db

# The test's own writer process: puts rows start.. (printing each index once put() returned,
# i.e. once accepted) and then waits to be killed; with count 0 it only replays and flushes.
WRITER = r"""
import asyncio, json, sys
from slotml.ingest.store import open_store
from slotml.ingest.store.writer import DurableWriter
from slotml.settings import DbUrl
from tests.ingest.test_store import snap

url, spool, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

async def main():
    store = open_store(DbUrl.parse(url), connect_timeout=1.0, op_timeout=2.0)
    w = DurableWriter(store, spool, queue_max=50, batch_max=100, retry_min_s=0.05,
                      retry_max_s=0.3)
    await w.start()
    print("replayed", w.stats()["replayed"], flush=True)
    for i in range(start, start + count):
        w.put_snapshot(snap(i))
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


def spawn(url: str, spool: Path, start: int, count: int) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen([sys.executable, "-c", WRITER, url, str(spool), str(start),
                             str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=root)


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


async def test_sigkill_while_cut_loses_nothing(mysql_db, tmp_path: Path) -> None:
    direct = open_store(mysql_db)
    await direct.connect()
    await direct.ensure_schema()
    proxy = ThreadedProxy(mysql_db.host, mysql_db.port)
    url = dataclasses.replace(mysql_db, host="127.0.0.1", port=proxy.port).raw
    spool = tmp_path / "spool"
    try:
        p1 = spawn(url, spool, 0, 100_000)
        out1 = Lines(p1)
        # some rows reach the database, then the link is cut and the rest only spools
        wait_for(lambda: len(out1.accepted()) >= 150, timeout=20, what="rows accepted")
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
        p2 = spawn(url, spool, 0, 0)
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
    finally:
        proxy.close()
        await direct.close()
