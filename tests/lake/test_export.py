"""The lake mirrors the store exactly, incrementally, and survives being killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from slotml.errors import UserError
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS, TABLES, Table
from slotml.lake import connect, read_manifest
from slotml.lake.export import ExportConfig, run_export
from slotml.settings import DbUrl
from tests.lake.storedb import (
    BASE_SLOT,
    StoreDb,
    populate,
    resolution_rows,
    snapshot_rows,
    write,
)
from tests.util import wait_for

ROOT = Path(__file__).resolve().parents[2]


def lake_rows(lake: Path, table: Table, threads: int | None = None) -> list[dict[str, Any]]:
    con = connect(lake, threads=threads)
    try:
        cur = con.execute(f"SELECT * FROM {table.name} ORDER BY id")
        names = [d[0] for d in cur.description]
        assert names == table.names  # exactly the store's columns: no hive symbol/date extras
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def files_on_disk(lake: Path) -> set[str]:
    return {p.relative_to(lake).as_posix() for name in TABLES for p in (lake / name).rglob("*")
            if p.is_file()} if lake.exists() else set()


def assert_lake_equals_store(lake: Path, db: StoreDb) -> None:
    for t in (SNAPSHOTS, RESOLUTIONS):
        store = db.rows(t)
        got = lake_rows(lake, t)
        assert len(got) == len(store), t.name
        for a, b in zip(got, store, strict=True):
            assert a == b, (t.name, a, b)
    # a finished lake holds exactly the manifest's files
    assert files_on_disk(lake) == read_manifest(lake).live_paths()


def export(url: DbUrl, lake: Path, **kw: Any):
    return run_export(ExportConfig(db=url, lake_dir=lake, grace_s=0, fsync=False, **kw))


def test_round_trip_and_changed_rows(any_db: DbUrl, tmp_path: Path) -> None:
    db = populate(any_db, n_slots=120)  # 120 windows span two UTC days
    lake = tmp_path / "lake"
    r1 = export(any_db, lake)
    assert r1.files_written > 0
    assert_lake_equals_store(lake, db)
    # the odd values survived: NULL bools, the string 'NULL', escapes, empty string
    res = lake_rows(lake, RESOLUTIONS)
    assert {r["resolved_up"] for r in res} == {None, True, False}
    assert {"NULL", "tab\there", "back\\slash", "new\nline", ""} <= {r["slug"] for r in res}
    before = read_manifest(lake)

    # resolutions fill in after the fact; new snapshots arrive for a later day
    first = next(r for r in db.rows(RESOLUTIONS) if r["resolved_up"] is None)
    key = {k: first[k] for k in RESOLUTIONS.unique}
    write(any_db, snapshot_rows(2, slot0=BASE_SLOT + 10 * 86400, seed=9),
          [{**key, "resolved_up": True, "official_final_price": 91_234.5, "resolved_at": 1.5}])
    r2 = export(any_db, lake)
    assert r2.tables[RESOLUTIONS.name].rows_written == 1
    assert r2.tables[RESOLUTIONS.name].partitions_rewritten == 1
    assert r2.tables[SNAPSHOTS.name].rows_written == 2 * 3 * 4
    assert_lake_equals_store(lake, db)
    after = read_manifest(lake)
    assert after.id == before.id + 1
    # untouched partitions keep their files; the changed one was replaced, the new day added
    old_files, new_files = before.live_paths(), after.live_paths()
    assert len(old_files - new_files) == 1
    assert len(new_files - old_files) == 1 + 4
    updated = [r for r in lake_rows(lake, RESOLUTIONS) if r["id"] == first["id"]]
    assert updated[0]["resolved_up"] is True and updated[0]["official_final_price"] == 91_234.5


def test_second_run_without_changes_writes_nothing(any_db: DbUrl, tmp_path: Path) -> None:
    populate(any_db, n_slots=20)
    lake = tmp_path / "lake"
    export(any_db, lake)
    m1 = read_manifest(lake)
    disk1 = {p: (lake / p).stat().st_mtime_ns for p in files_on_disk(lake)}
    r = export(any_db, lake)
    assert r.files_written == 0 and r.files_deleted == 0
    assert r.tables[SNAPSHOTS.name].rows_read > 0  # the overlap was re-read ...
    assert r.tables[SNAPSHOTS.name].rows_written == 0  # ... and recognised as unchanged
    m2 = read_manifest(lake)
    assert m2.id == m1.id + 1
    assert m2.live_paths() == m1.live_paths()
    assert {p: (lake / p).stat().st_mtime_ns for p in files_on_disk(lake)} == disk1


def test_full_rebuild_and_leftovers(sqlite_db: DbUrl, tmp_path: Path) -> None:
    db = populate(sqlite_db, n_slots=20)
    lake = tmp_path / "lake"
    export(sqlite_db, lake)
    stray = lake / "slot_snapshots" / "symbol=BTC" / "date=2001-01-01" / "00000099-00000.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a file from a killed run")
    old = read_manifest(lake).live_paths()
    r = export(sqlite_db, lake, full=True)
    assert r.leftovers_cleared == 1 and not stray.exists() and not stray.parent.exists()
    assert r.files_deleted == len(old)
    assert not (read_manifest(lake).live_paths() & old)
    assert_lake_equals_store(lake, db)


def test_empty_lake_gives_typed_empty_views(tmp_path: Path) -> None:
    con = connect(tmp_path / "nothing-here")
    for t in (SNAPSHOTS, RESOLUTIONS):
        cur = con.execute(f"SELECT * FROM {t.name}")
        assert [d[0] for d in cur.description] == t.names
        assert cur.fetchall() == []
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'slot_resolutions'").fetchall())
    assert types["resolved_up"] == "BOOLEAN" and types["slot_ts"] == "INTEGER"
    assert types["id"] == "BIGINT" and types["slug"] == "VARCHAR"


@pytest.mark.parametrize("reader", ["cli", "python"])
def test_mysql_fallback_readers_agree(mysql_db: DbUrl, tmp_path: Path, reader: str) -> None:
    db = populate(mysql_db, n_slots=40)
    lake = tmp_path / "lake"
    export(mysql_db, lake, reader=reader)
    assert_lake_equals_store(lake, db)


def test_bad_password_is_one_clear_line(mysql_db: DbUrl, tmp_path: Path) -> None:
    bad = DbUrl(scheme="mysql", user=mysql_db.user, password="wrong-pw-123", host=mysql_db.host,
                port=mysql_db.port, database=mysql_db.database)
    for reader in ("auto", "cli"):
        with pytest.raises(UserError) as e:
            export(bad, tmp_path / "lake", reader=reader)
        assert "wrong-pw-123" not in str(e.value) and "\n" not in str(e.value)
    assert read_manifest(tmp_path / "lake").id == 0


def _many_partitions(url: DbUrl, db: StoreDb, days: int) -> None:
    """One row per symbol per day: every row its own partition, so a run writes many files."""
    rows = [r for d in range(days)
            for r in snapshot_rows(1, ticks=1, slot0=BASE_SLOT - (d + 30) * 86400, seed=d)]
    write(url, rows, resolution_rows(1, slot0=BASE_SLOT - 40 * 86400))


def test_kill_mid_run_leaves_old_lake_then_rerun_completes(any_db: DbUrl, tmp_path: Path) -> None:
    db = populate(any_db, n_slots=10)
    lake = tmp_path / "lake"
    export(any_db, lake)
    old = read_manifest(lake)
    old_counts = {t.name: len(lake_rows(lake, t)) for t in (SNAPSHOTS, RESOLUTIONS)}
    _many_partitions(any_db, db, days=100)

    env = dict(os.environ, SLOTML_DB_URL=any_db.raw, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "slotml.cli", "export", "--lake", str(lake), "--grace", "0",
         "--buffer-rows", "200", "--no-fsync"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:  # a concurrent reader must only ever see the old lake, whole
        while not stop.wait(0.02):  # paced, one DuckDB thread: leave the CPU to the exporter
            seen.append(len(lake_rows(lake, SNAPSHOTS, threads=1)))

    th = threading.Thread(target=reader)
    th.start()
    try:
        new_run = f"{old.id + 1:08d}-"
        wait_for(lambda: sum(new_run in p for p in files_on_disk(lake)) >= 20, timeout=60,
                 what="the exporter to write its first files")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop.set()
        th.join()
    assert proc.returncode == -signal.SIGKILL
    assert read_manifest(lake).id == old.id  # killed before its commit point
    assert files_on_disk(lake) - old.live_paths()  # it did leave half a run behind ...
    assert seen and set(seen) == {old_counts[SNAPSHOTS.name]}  # ... that no reader ever saw
    for t in (SNAPSHOTS, RESOLUTIONS):
        assert len(lake_rows(lake, t)) == old_counts[t.name]

    r = export(any_db, lake)
    assert r.leftovers_cleared > 0
    assert_lake_equals_store(lake, db)


def test_another_store_means_full_rebuild(tmp_path: Path) -> None:
    a = DbUrl(scheme="sqlite", path=tmp_path / "a.db")
    b = DbUrl(scheme="sqlite", path=tmp_path / "b.db")
    populate(a, n_slots=12)
    db_b = populate(b, n_slots=5)
    lake = tmp_path / "lake"
    export(a, lake)
    r = export(b, lake)  # same ids, other rows: an incremental run would mix the two stores
    assert r.files_deleted > 0
    assert_lake_equals_store(lake, db_b)
