"""Issue 18: the collector loses nothing it can know, through crashes, outages and restarts in
any order; on both backends (MariaDB through the tests' TCP proxy, SQLite locked by another
connection).

Writer level: a full spool drops snapshots and prints first and keeps every resolution and
tape-gap row; the ledger (accepted = stored + dropped + rejected + spooled, per kind) survives
a restart; hand-edited spool lines are counted and skipped. Collector level (the real
``slotml collect`` process against the sim, 5 s windows): windows only the spool knew are
resolved after a crash during an outage; start-up while MySQL is down; a restart while it is
still down resolves the windows only the store knew (asked of Gamma again); a wrong password
or database still exits 2 at once; the SQLite file deleted or replaced fails ``/health``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

from slotml.ingest.raw import RawWriter
from slotml.ingest.store import open_store
from slotml.ingest.store.writer import DurableWriter
from slotml.settings import DbUrl
from slotml.sim.config import SimConfig
from slotml.sim.runner import sim_in_thread
from tests.ingest import test_store as _fx
from tests.ingest.collector_harness import CollectorThread, collector_config, get_json
from tests.ingest.test_crash import SqliteCut
from tests.ingest.test_store import SLOT, snap
from tests.ingest.test_store_tape import trade
from tests.tcp_proxy import ThreadedProxy
from tests.util import async_wait_for, free_port, wait_for

mysql_db = _fx.mysql_db  # <test db>_store: the store suites' own database
ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTC", "ETH")
BACKENDS = [pytest.param("mysql", marks=pytest.mark.mysql), "sqlite"]


# --- writer level ---------------------------------------------------------------------------

class Rig:
    """A store the test can cut: MariaDB behind a proxy (refused), or SQLite locked."""

    def __init__(self, backend: str, db: DbUrl) -> None:
        self.backend, self.db = backend, db
        if backend == "mysql":
            self.proxy = ThreadedProxy(db.host, db.port)
            self.url = dataclasses.replace(db, host="127.0.0.1", port=self.proxy.port)
            self.opts = {"connect_timeout": 1.0, "op_timeout": 2.0}
        else:
            self.proxy = None
            self.url, self.opts = db, {"busy_timeout": 0.2}
        self.cut_ = None

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.refuse()
        else:
            self.cut_ = SqliteCut(self.db.path)
            self.cut_.refuse()

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        elif self.cut_ is not None:
            self.cut_.restore()
            self.cut_.close()
            self.cut_ = None

    def close(self) -> None:
        self.restore()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
async def rig(request, tmp_path: Path):
    backend = request.param
    db = request.getfixturevalue(f"{backend}_db")
    direct = open_store(db)
    await direct.connect()
    await direct.ensure_schema()
    r = Rig(backend, db)
    r.direct = direct
    r.spool = tmp_path / "spool"
    yield r
    r.close()
    await direct.close()


async def open_writer(rig: Rig, **kw) -> tuple[DurableWriter, object]:
    store = open_store(rig.url, **rig.opts)
    if rig.backend == "sqlite":
        await store.connect()
    w = DurableWriter(store, rig.spool, retry_min_s=0.05, retry_max_s=0.3, **kw)
    await w.start()
    return w, store


def resolution(k: int) -> dict:
    """Window k's measured base: one resolution row (what a full spool must not lose)."""
    return {"symbol": "ETH", "window_s": 900, "slot_ts": SLOT + 900 * k,
            "price_to_beat": 3000.0 + k, "final_seen_at": SLOT + 900 * k + 901.5}


def gap(k: int) -> dict:
    return {"symbol": "BTC", "window_s": 900, "slot_ts": SLOT, "token_id": "77", "from_ts":
            SLOT + k, "to_ts": SLOT + k + 0.5, "reason": "reconnect"}


def check_ledger(led: dict, put: dict[str, int]) -> None:
    for k, n in put.items():
        parts = sum(led[w].get(k, 0) for w in ("stored", "dropped", "rejected", "merged",
                                                "spooled"))
        assert led["accepted"][k] == parts == n, (k, led)


@pytest.mark.parametrize("rig", BACKENDS, indirect=True)
async def test_full_spool_drops_snapshots_and_prints_first_never_resolutions(rig) -> None:
    """Issue 18 item 3: 60 windows' resolution rows and 30 gap rows among 1,500 snapshots and
    prints, through a 40 KB spool during an outage: every resolution and gap is stored, only
    snapshot and trade rows are dropped (oldest first), the dropped prints become spool-full
    tape gaps, and the ledger adds up exactly."""
    w, store = await open_writer(rig, spool_max_mb=40 / 1024, queue_max=50)
    try:
        rig.cut()
        for i in range(1500):
            w.put_snapshot(snap(i % 400, slot_ts=SLOT + 900 * (i // 400)))
            w.put_trade(trade(i))
            if i % 25 == 0:
                w.put_resolution(resolution(i // 25))
            if i % 50 == 0:
                w.put_tape_gap(gap(i))
            if i % 100 == 0:
                await asyncio.sleep(0)
        led = w.ledger()
        assert led["dropped"].get("s", 0) > 500 and led["dropped"].get("t", 0) > 500
        assert "r" not in led["dropped"] and "g" not in led["dropped"]
        rig.restore()
        assert await w.flush(60)
        res = await rig.direct.fetch_resolutions()
        assert [r["price_to_beat"] for r in res] == [3000.0 + k for k in range(60)]
        assert all(r["final_seen_at"] is not None for r in res)
        gaps = await rig.direct.fetch_tape_gaps()
        assert {g["from_ts"] for g in gaps if g["reason"] == "reconnect"} == \
            {SLOT + i for i in range(0, 1500, 50)}
        full = [g for g in gaps if g["reason"] == "spool-full"]
        assert full, "dropped prints left no spool-full gap"
        # the newest prints survived; the first dropped print is inside a spool-full gap
        trades = await rig.direct.fetch_trades()
        assert trades and trades[-1]["ts_ms"] == (SLOT + 1499) * 1000 + 123
        assert min(g["from_ts"] for g in full) <= SLOT + 0.2
        assert w.stats()["spool_bytes"] == 0  # all of it acknowledged and trimmed
        led = w.ledger()
        check_ledger(led, {"s": 1500, "t": 1500, "r": 60})
        assert led["stored"]["s"] == await rig.direct.count("slot_snapshots")
        assert led["stored"]["t"] == await rig.direct.count("slot_trades")
        # gap rows: the 30 reconnect gaps, plus one spool-full gap per drop; a spool-full gap
        # dropped in turn is folded into the next one ("merged"), never lost
        check_ledger(led, {"g": 30 + w.tape_gaps})
        # (stored counts commits: a spool-full gap folded while its narrower twin was being
        # committed has the same key, a no-op in the table)
        assert led["merged"]["g"] > 0 and led["stored"]["g"] >= len(gaps)
        assert led["lost_fields"] == {}
    finally:
        await w.close()
        await store.close()


@pytest.mark.parametrize("rig", BACKENDS, indirect=True)
async def test_ledger_is_exact_across_restarts(rig) -> None:
    """Issue 18: the ledger lives in the spool's ack file: two runs (the first closed while the
    database is down, with drops), one account."""
    w, store = await open_writer(rig, spool_max_mb=30 / 1024)
    rig.cut()
    for i in range(600):
        w.put_snapshot(snap(i % 400, slot_ts=SLOT + 900 * (i // 400)))
        if i % 30 == 0:
            w.put_resolution(resolution(i // 30))
    w.put_snapshot({**snap(0), "bid_up": 0.7, "ask_up": 0.6})  # crossed: rejected at once
    first = w.ledger()
    assert first["dropped"]["s"] > 0 and first["rejected"] == {"s": 1}
    await w.close(timeout=0.3)
    await store.close()
    rig.restore()
    w2, store2 = await open_writer(rig)
    try:
        assert w2.ledger() == first  # the same account, read back from the ack file
        for i in range(600, 700):
            w2.put_snapshot(snap(i % 400, slot_ts=SLOT + 900 * (i // 400)))
        assert await w2.flush(30)
        led = w2.ledger()
        check_ledger(led, {"s": 701, "r": 20})
        assert led["spooled"] == {}
        assert led["stored"]["s"] == await rig.direct.count("slot_snapshots")
        assert led["stored"]["r"] == 20 and len(await rig.direct.fetch_resolutions()) == 20
    finally:
        await w2.close()
        await store2.close()


@pytest.mark.parametrize("rig", BACKENDS, indirect=True)
async def test_hand_edited_spool_lines_are_counted_and_skipped(rig) -> None:
    """Issue 18 item 4: a replayed spool row passes the live row's validation; lines that are
    not rows are counted as corrupt. Nothing crashes, nothing wrong is stored."""
    rig.spool.mkdir(parents=True)
    lines = [
        {"n": 1, "k": "s", "r": snap(0)},
        {"n": 2, "k": "s", "r": {**snap(1), "bid_up": 7.5, "ask_up": 0.9}},  # the issue's
        "not json at all",
        {"n": 3, "k": "s", "r": [1, 2, 3]},
        {"n": 4, "k": "x", "r": {"a": 1}},  # no such table
        {"n": 5, "k": "r", "r": {"symbol": "BTC", "window_s": 900, "slot_ts": "soon"}},
        {"n": 6, "k": "s", "r": {**snap(2), "ask_down": -0.2}},
        {"n": 7, "k": "t", "r": trade(1, price=1.7)},
        {"n": 8, "k": "s", "r": snap(3)},
        {"n": 9, "k": "t", "r": trade(2)},
    ]
    (rig.spool / f"{1:016d}.jsonl").write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    w, store = await open_writer(rig)
    try:
        assert await w.flush(20)
        st = w.stats()
        assert st["spool_corrupt"] == 2 and st["rows_rejected"] == 5
        got = await rig.direct.fetch_snapshots()
        assert [r["tick_ms"] for r in got] == [snap(0)["tick_ms"], snap(3)["tick_ms"]]
        assert [t["ts_ms"] for t in await rig.direct.fetch_trades()] == [trade(2)["ts_ms"]]
        assert await rig.direct.fetch_resolutions() == []
        led = w.ledger()
        assert led["rejected"] == {"s": 2, "x": 1, "r": 1, "t": 1}
        assert led["stored"] == {"s": 2, "t": 1}
    finally:
        await w.close()
        await store.close()


def test_raw_capture_retention(tmp_path: Path) -> None:
    """--raw-keep-days: hourly files older than the limit go, at start-up and every new hour."""
    now = 1_767_225_600.0 + 1800  # 2026-01-01 00:30 UTC: keep what ended after Dec 31 00:30
    for hour in ("2025122500", "2025122923", "2025123023", "2025123100", "2026010100"):
        (tmp_path / f"raw-{hour}.jsonl.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not ours")
    clock = [now]
    w = RawWriter(tmp_path, keep_days=1, clock=lambda: clock[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "raw-2025123100.jsonl.gz", "raw-2026010100.jsonl.gz"]
    clock[0] = now + 3600
    w.write("clob", "{}", now + 3600)  # a new hour: prune again (Dec 31 00:00-01:00 goes)
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "raw-2026010100.jsonl.gz", "raw-2026010101.jsonl.gz"]
    assert w.deleted == 4
    keep_all = RawWriter(tmp_path)
    assert keep_all.prune() == 0


# --- the collector process against the sim ----------------------------------------------------

@pytest.fixture(scope="module")
def sim():
    with sim_in_thread(SimConfig(family="5s", symbols=SYMBOLS, seed=18)) as s:
        yield s


class Collect:
    """``slotml collect`` as a child process (so the test can SIGKILL it)."""

    def __init__(self, sim, url: str, home: Path, port: int, *extra: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / f"collect-{time.monotonic_ns()}.log"
        self.port = port
        cmd = [sys.executable, "-m", "slotml.cli", "collect", "--db", url, "--data-dir",
               str(home), "--family", "5s", "--symbols", ",".join(SYMBOLS),
               "--gamma-url", sim.gamma_url, "--clob-url", sim.clob_url,
               "--clob-ws-url", sim.ws_market_url, "--rtds-ws-url", sim.rtds_url,
               "--snapshot-interval", "0.5", "--discovery-interval", "1",
               "--resolution-interval", "0.5", "--stale-after", "3", "--retry-limit", "40",
               "--health-port", str(port), *extra]
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})

    def health(self) -> tuple[int, dict | None]:
        return get_json(f"http://127.0.0.1:{self.port}/health", timeout=2)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def text(self) -> str:
        return self.log.read_text()


def _backend(request, tmp_path: Path) -> tuple[Rig, str]:
    backend = request.param
    db = request.getfixturevalue(f"{backend}_db")
    r = Rig(backend, db)
    return r, (r.url.raw if backend == "mysql" else db.raw)


def _rows(db: DbUrl, sql: str) -> list[tuple]:
    if db.scheme == "sqlite":
        con = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    con = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                          database=db.database)
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        con.close()


def _count(db: DbUrl, table: str = "slot_snapshots") -> int:
    try:
        return _rows(db, f"select count(*) from {table}")[0][0]
    except (sqlite3.OperationalError, pymysql.err.ProgrammingError):
        return 0


def _log_ts(line: str) -> float:
    """The epoch time of a text log line (``2026-12-05T07:21:50.233Z INFO ...``)."""
    from datetime import datetime

    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def _outcome(sim, sym: str, ts: int) -> bool:
    return get_json(f"{sim.control_url}/outcome?slug={sim.market(sym, ts).slug}")[1]["up"]


def _assert_resolved(sim, db: DbUrl, slots: list[int]) -> None:
    got = {(s, t): up for s, t, up in _rows(db, "select symbol, slot_ts, resolved_up "
                                                 "from slot_resolutions")}
    for sym in SYMBOLS:
        for ts in slots:
            assert (sym, ts) in got, f"{sym} {ts}: no slot_resolutions row"
            assert got[(sym, ts)] is not None, f"{sym} {ts}: never resolved"
            assert bool(got[(sym, ts)]) is _outcome(sim, sym, ts), (sym, ts)


def _resolved(db: DbUrl, slots: list[int]) -> bool:
    rows = _rows(db, "select symbol, slot_ts from slot_resolutions where resolved_up is not null")
    have = {(s, t) for s, t in rows}
    return all((s, t) in have for s in SYMBOLS for t in slots)


@pytest.fixture
def link(request, tmp_path: Path):
    r, url = _backend(request, tmp_path)
    if r.backend == "sqlite":  # the store exists before the lock can be taken
        con = sqlite3.connect(str(r.db.path))
        con.close()
    yield r, url
    r.close()


@pytest.mark.parametrize("link", BACKENDS, indirect=True)
def test_windows_only_the_spool_knew_are_resolved_after_a_crash_in_an_outage(
        sim, link, tmp_path: Path) -> None:
    """Issue 18 item 1: windows discovered while the database was cut (their rows only in the
    spool) and ended before the restart are resumed from the spool and resolved."""
    rig, url = link
    home = tmp_path / "home"
    c1 = Collect(sim, url, home, free_port(), "--lookahead", "1")
    try:
        wait_for(lambda: _count(rig.db) > 10, timeout=30, what="first snapshots")
        rig.cut()
        t_cut = time.time()

        def new_windows() -> list[int]:
            # windows first discovered during the cut: only the spool will know them
            return sorted({int(x.split("-5s-")[1].split()[0]) for x in c1.text().splitlines()
                           if "discovered btc-updown-5s-" in x and _log_ts(x) > t_cut})

        wait_for(lambda: len(new_windows()) >= 2, timeout=30, interval=0.2,
                 what="two windows discovered during the cut")
        # their registrations (one resolution row per asset) are in the spool before the kill
        wait_for(lambda: ((c1.health()[1] or {}).get("ledger") or {}).get("spooled", {})
                 .get("r", 0) >= len(SYMBOLS) * len(new_windows()), timeout=10, interval=0.2,
                 what="the new windows' rows spooled")
        c1.kill()
    finally:
        if c1.proc.poll() is None:
            c1.kill()
    spool_only = new_windows()  # left to end before the restart
    assert spool_only, c1.text()
    restart_at = max(spool_only) + 5 + 1.0
    time.sleep(max(0.0, restart_at - time.time()))
    rig.restore()
    c2 = Collect(sim, url, home, free_port(), "--lookahead", "1")
    try:
        try:
            wait_for(lambda: _resolved(rig.db, spool_only), timeout=25, interval=0.3,
                     what=f"windows {spool_only} resolved after the restart")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{c1.text()[-3000:]}\n---\n{c2.text()[-6000:]}") from None
    finally:
        assert c2.stop() == 0, c2.text()[-2000:]
    _assert_resolved(sim, rig.db, spool_only)
    resumed = [x for x in c2.text().splitlines() if "from the spool)" in x]
    assert resumed and int(resumed[0].split("(")[1].split()[0]) >= 2 * len(spool_only)
    assert not any(f"discovered {s.lower()}-updown-5s-{t}" in c2.text()
                   for s in SYMBOLS for t in spool_only)  # resumed, not asked again


@pytest.mark.mysql
@pytest.mark.parametrize("link", ["mysql"], indirect=True)
def test_starts_while_mysql_is_down_and_catches_up(sim, link, tmp_path: Path) -> None:
    """Issue 18 item 2: the database refuses at start-up: the collector collects into the
    spool (``/health`` says the database is unreachable the whole time), makes the schema when
    the database answers, replays, and carries on."""
    rig, url = link
    rig.cut()
    c = Collect(sim, url, tmp_path / "home", free_port())
    try:
        wait_for(lambda: ((c.health()[1] or {}).get("ledger") or {}).get("spooled", {})
                 .get("s", 0) > 10, timeout=30, interval=0.2,
                 what="snapshots spooled while the database is down")
        for _ in range(3):
            status, body = c.health()
            assert status == 503 and body["db_up"] == 0, body
            assert any(p.startswith("database unreachable") for p in body["problems"]), body
            time.sleep(0.5)
        assert _count(rig.db) == 0  # no schema yet: nothing reached it
        t_restore = time.time()
        rig.restore()
        wait_for(lambda: (c.health()[1] or {}).get("db_up") == 1, timeout=20, interval=0.2,
                 what="the database reached")
        wait_for(lambda: _count(rig.db) > 40, timeout=20, what="rows after the outage")
        _, body = c.health()
        assert not any(p.startswith("database") for p in body["problems"]), body
    finally:
        assert c.stop() == 0, c.text()[-2000:]
    first = _rows(rig.db, "select min(captured_at) from slot_snapshots")[0][0]
    assert first < t_restore - 1  # the rows spooled during the outage were replayed
    assert _rows(rig.db, "select symbol, slot_ts, tick_ms, count(*) c from slot_snapshots "
                         "group by 1, 2, 3 having c > 1") == []
    assert _rows(rig.db, "select max(version) from schema_version")[0][0] >= 2
    assert "database unreachable at start-up" in c.text()


@pytest.mark.parametrize("link", BACKENDS, indirect=True)
def test_restart_while_still_down_resolves_windows_only_the_store_knew(
        sim, link, tmp_path: Path) -> None:
    """Crash during an outage, restart while it lasts: the store cannot be read, so the
    windows it alone knew (registered before the cut, ended during it) are asked of Gamma
    again; all of them are resolved once the database is back."""
    rig, url = link
    home = tmp_path / "home"
    c1 = Collect(sim, url, home, free_port(), "--lookahead", "1")
    try:
        wait_for(lambda: _count(rig.db) > 10, timeout=30, what="first snapshots")
        rig.cut()
        t_cut = time.time()
        time.sleep(1.0)
        c1.kill()
    finally:
        if c1.proc.poll() is None:
            c1.kill()
    # windows registered before the cut that end before the restart
    store_only = [t for t in (int(t_cut // 5) * 5, int(t_cut // 5) * 5 + 5)]
    time.sleep(max(0.0, store_only[-1] + 5 + 1.0 - time.time()))
    c2 = Collect(sim, url, home, free_port(), "--lookahead", "1")
    try:
        wait_for(lambda: (c2.health()[1] or {}).get("windows_tracked", 0) > 0, timeout=30,
                 interval=0.2, what="the restarted collector")
        time.sleep(2.0)  # it resolves them into the spool meanwhile
        rig.restore()
        wait_for(lambda: _resolved(rig.db, store_only), timeout=25, interval=0.3,
                 what=f"windows {store_only} resolved")
    finally:
        assert c2.stop() == 0, c2.text()[-2000:]
    _assert_resolved(sim, rig.db, store_only)


@pytest.mark.mysql
def test_wrong_password_or_database_exits_2_at_once(sim, mysql_db, tmp_path: Path) -> None:
    """An error waiting will not fix still fails at once: one line, exit 2."""
    for url, says in ((dataclasses.replace(mysql_db, password="pw-0f-nobody").raw,
                       "access denied"),
                      (dataclasses.replace(mysql_db, database="slotml_test_nosuchdb").raw,
                       "unknown database")):
        t0 = time.monotonic()
        c = Collect(sim, url, tmp_path / "home", 0)
        assert c.proc.wait(20) == 2
        assert time.monotonic() - t0 < 15
        errs = [x for x in c.text().splitlines() if "error" in x.lower()]
        assert len(errs) == 1 and says in errs[0] and "Traceback" not in c.text(), c.text()
        assert "pw-0f-nobody" not in c.text()  # the password is masked


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_sqlite_file_deleted_or_replaced_fails_health(sim, tmp_path: Path, how: str) -> None:
    """Issue 18 item 5: the file under a running collector goes away (or another takes its
    place): /health fails saying so, and rows are no longer counted as written (they stay in
    the spool)."""
    cfg = collector_config(sim, tmp_path)
    db = cfg.common.db.path
    with CollectorThread(cfg, flush_s=0.5) as c:
        wait_for(lambda: c.collector.writer.stats()["rows_written"] > 20, timeout=20,
                 what="rows written")
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        if how == "replaced":
            sqlite3.connect(str(db)).close()
        wait_for(lambda: c.collector.writer.stats()["db_up"] == 0, timeout=10,
                 what="the writer to notice")
        written = c.collector.writer.stats()["rows_written"]
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
            get_json(f"http://127.0.0.1:{cfg.health_port}/health")), timeout=10,
            what="/health 503")
        assert any(f"was {how} under us" in p for p in body["problems"]), body
        queued = c.collector.writer.stats()["queue_depth"]
        wait_for(lambda: c.collector.writer.stats()["queue_depth"] > queued + 10, timeout=10,
                 what="rows spooling")
        assert c.collector.writer.stats()["rows_written"] == written


@pytest.mark.mysql
async def test_permanent_and_transient_connect_errors_differ(mysql_db) -> None:
    """The MySQL store tells 'wait' (refused: StoreUnreachable) from 'fix the config'."""
    from slotml.errors import UserError
    from slotml.ingest.store.base import StoreUnreachable

    port = free_port()  # nothing listens there
    s = open_store(dataclasses.replace(mysql_db, host="127.0.0.1", port=port),
                   connect_timeout=1.0)
    with pytest.raises(StoreUnreachable, match="cannot reach"):
        await s.connect()
    s = open_store(dataclasses.replace(mysql_db, password="wrong"), connect_timeout=2.0)
    with pytest.raises(UserError, match="access denied") as e:
        await s.connect()
    assert not isinstance(e.value, StoreUnreachable)
    s = open_store(dataclasses.replace(mysql_db, database="slotml_test_nosuchdb"))
    with pytest.raises(UserError, match="unknown database") as e:
        await s.connect()
    assert not isinstance(e.value, StoreUnreachable)


def test_collect_flags(tmp_path: Path) -> None:
    """--raw-keep-days reaches the config; a non-positive value is one clear error."""
    import argparse

    from slotml.ingest import cli
    from slotml.ingest.config import config_from_args

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["collect", "--data-dir", str(tmp_path), "--raw-dir",
                              str(tmp_path / "raw"), "--raw-keep-days", "7"])
    assert config_from_args(args).raw_keep_days == 7
    with pytest.raises(SystemExit) as e:  # the days type refuses it while parsing
        parser.parse_args(["collect", "--data-dir", str(tmp_path), "--raw-keep-days", "0"])
    assert e.value.code == 2


async def test_spool_knows_its_windows(tmp_path: Path) -> None:
    """``spooled_resolutions``: the pending resolution rows merged per window, for resume."""
    db = DbUrl(scheme="sqlite", path=tmp_path / "s.db")
    store = open_store(db)
    await store.connect()
    await store.ensure_schema()
    lock = SqliteCut(db.path)
    s2 = open_store(db, busy_timeout=0.1)
    await s2.connect()
    w = DurableWriter(s2, tmp_path / "spool", retry_min_s=0.05, retry_max_s=0.2)
    await w.start()
    try:
        lock.refuse()
        w.put_resolution({"symbol": "BTC", "window_s": 5, "slot_ts": 100, "slug": "x"})
        w.put_resolution({"symbol": "BTC", "window_s": 5, "slot_ts": 100, "final_price": 2.0})
        w.put_resolution({"symbol": "ETH", "window_s": 5, "slot_ts": 105, "end_ts": 110})
        await async_wait_for(lambda: w.stats()["db_up"] == 0, what="the cut noticed")
        got = w.spooled_resolutions()
        assert [(r["symbol"], r["slot_ts"], r.get("slug"), r.get("final_price")) for r in got] \
            == [("BTC", 100, "x", 2.0), ("ETH", 105, None, None)]
        lock.restore()
        assert await w.flush(10)
        assert w.spooled_resolutions() == []
    finally:
        lock.close()
        await w.close()
        await s2.close()
        await store.close()
