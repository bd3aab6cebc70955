"""The embedded store: one SQLite file (WAL mode), driven from a single worker thread.

sqlite3 blocks, so every call runs on a one-thread executor owning the connection: the event
loop never waits on disk, and statements are naturally serialised. WAL lets readers (the lake
export, ``slotml`` tools) read while the collector writes; ``busy_timeout`` rides out their
short locks; ``synchronous=FULL`` makes a commit durable before the durable writer trims its
spool (one fsync per batch, not per row).

The file is identified by (device, inode) when opened and checked before every operation: a
file deleted or replaced under a running collector would otherwise swallow rows into an
unlinked inode. Once that happens every operation raises ``StoreUnavailable`` (the durable
writer keeps spooling, ``/health`` fails with the reason) until the collector is restarted
on the file that is there now.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from slotml.errors import UserError
from slotml.ingest.schema import RESOLUTIONS, SCHEMA_VERSION, SNAPSHOTS, TABLES, Table
from slotml.ingest.store import ddl
from slotml.ingest.store.base import (
    CHUNK_ROWS,
    RowRejected,
    Store,
    StoreUnavailable,
    from_db,
    present_columns,
)
from slotml.settings import DbUrl

log = logging.getLogger(__name__)
T = TypeVar("T")
D = "sqlite"
NOW = ddl.NOW_SQL[D]


def _q(name: str) -> str:
    return ddl.q(D, name)


class SqliteStore(Store):
    def __init__(self, url: DbUrl, busy_timeout: float = 10.0) -> None:
        if url.scheme != "sqlite" or url.path is None:
            raise UserError(f"{url} is not a SQLite URL")
        self.url = url
        self.path = Path(url.path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self.lost: str | None = None  # why the file we opened is no longer the one at path

    # --- plumbing -------------------------------------------------------------------------
    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None or self._conn is None:
            raise StoreUnavailable(f"{self.url}: store is not connected")
        self._check_file()
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, conn)
        except (sqlite3.IntegrityError, sqlite3.InterfaceError) as e:
            raise RowRejected(f"{self.url}: {e}") from e
        except sqlite3.Error as e:  # locked, I/O error, no such table: may pass; retry later
            raise StoreUnavailable(f"{self.url}: {e}") from e

    def _check_file(self) -> None:
        """Raise StoreUnavailable when the file we opened was deleted or replaced."""
        if self.lost is None and self._ident is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) != self._ident:
                    self.lost = f"the database file {self.path} was replaced under us"
            except FileNotFoundError:
                self.lost = f"the database file {self.path} was deleted under us"
            except OSError:
                return  # cannot tell (e.g. a permission glitch): the operation will say
            if self.lost:
                log.error("%s: %s; writes stop (rows stay spooled): restart the collector",
                          self.url, self.lost)
        if self.lost:
            raise StoreUnavailable(f"{self.url}: {self.lost}")

    async def connect(self) -> None:
        if self._conn is not None:
            return
        path = self.path
        if path.exists() and path.is_dir():
            raise UserError(f"database {self.url}: {path} is a directory, not a SQLite file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"database {self.url}: cannot create folder {path.parent}: "
                            f"{e.strerror or e}") from None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")

        def _open() -> sqlite3.Connection:
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=self.busy_timeout,
                                   check_same_thread=False)
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("%s: journal_mode is %s, not wal", self.url, mode)
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._pool, _open)
            st = os.stat(path)
            self._ident = (st.st_dev, st.st_ino)
        except sqlite3.Error as e:
            self._pool.shutdown(wait=False)
            self._pool = None
            raise UserError(f"database {self.url}: cannot open SQLite file {path}: {e}") from None

    async def close(self) -> None:
        if self._conn is None:
            return
        conn, pool = self._conn, self._pool
        self._conn = None
        self._pool = None
        assert pool is not None
        await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        pool.shutdown(wait=True)

    @staticmethod
    def _in_tx(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    # --- schema -----------------------------------------------------------------------------
    async def ensure_schema(self) -> list[str]:
        return await self._call(lambda c: self._in_tx(c, _ensure_schema))

    # --- writes -----------------------------------------------------------------------------
    async def _insert_once(self, table: Table, clean: list[dict[str, Any]]) -> int:
        # One single-row statement run for every row (executemany): prepared once and kept in
        # sqlite3's statement cache. A multi-row VALUES list per batch size made one cached
        # statement per distinct size (paced commits vary it): ~40 MB of RSS, and no faster.
        names = present_columns(table, clean)
        sql = _insert_sql(table.name, tuple(names))

        def work(conn: sqlite3.Connection) -> int:
            return conn.executemany(sql, [[r.get(k) for k in names] for r in clean]).rowcount

        return await self._call(lambda c: self._in_tx(c, work))

    async def upsert_resolutions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        clean = self._resolution_rows(rows)
        if not clean:
            return 0
        names = [c.name for c in RESOLUTIONS.data_columns]
        data = [n for n in names if n not in RESOLUTIONS.unique]
        cols = ", ".join(_q(n) for n in [*names, "updated_at"])
        one = "(" + ", ".join(["?"] * len(names)) + f", {NOW})"
        conflict = ", ".join(_q(c) for c in RESOLUTIONS.unique)
        sets = ", ".join(f"{_q(n)} = COALESCE({_q(n)}, excluded.{_q(n)})" for n in data)
        changed = " OR ".join(f"({_q(n)} IS NULL AND excluded.{_q(n)} IS NOT NULL)" for n in data)

        def work(conn: sqlite3.Connection) -> int:
            n = 0
            for i in range(0, len(clean), CHUNK_ROWS):
                chunk = clean[i:i + CHUNK_ROWS]
                sql = (f"INSERT INTO {_q(RESOLUTIONS.name)} ({cols}) VALUES "
                       + ", ".join([one] * len(chunk))
                       + f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}, "
                       f"{_q('updated_at')} = {NOW} WHERE {changed}")
                params = [r.get(k) for r in chunk for k in names]
                n += conn.execute(sql, params).rowcount
            return n

        return await self._call(lambda c: self._in_tx(c, work))

    # --- reads ------------------------------------------------------------------------------
    async def _select(self, table: Table, where: str, params: list[Any], order: str
                      ) -> list[dict[str, Any]]:
        names = table.names
        sql = (f"SELECT {', '.join(_q(n) for n in names)} FROM {_q(table.name)}{where} "
               f"ORDER BY {order}")

        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [from_db(table, names, r) for r in conn.execute(sql, params).fetchall()]

        return await self._call(work)

    async def count(self, table: str) -> int:
        self._table(table)
        return await self._call(
            lambda c: int(c.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one raw statement (tests, tools); returns its rows."""
        return await self._call(lambda c: c.execute(sql, list(params)).fetchall())


@functools.lru_cache(maxsize=64)
def _insert_sql(name: str, names: tuple[str, ...]) -> str:
    """INSERT of one row with these columns (updated_at by the database); a duplicate key is
    a no-op. Cached: the same few column sets come back every commit."""
    table = TABLES[name]
    cols = ", ".join(_q(n) for n in [*names, "updated_at"])
    marks = ", ".join(["?"] * len(names))
    conflict = ", ".join(_q(c) for c in table.unique)
    return (f"INSERT INTO {_q(table.name)} ({cols}) VALUES ({marks}, {NOW}) "
            f"ON CONFLICT ({conflict}) DO NOTHING")


# --- create / upgrade (runs inside one transaction on the worker thread) ----------------------

def _columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    return {r[1]: str(r[2]).upper() for r in conn.execute(f"PRAGMA table_info({_q(table)})")}


def _indexes(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA index_list({_q(table)})")}


def _ensure_schema(conn: sqlite3.Connection) -> list[str]:
    done: list[str] = []
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in have:
        conn.execute(ddl.create_schema_version(D))
        done.append("created table schema_version")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0]
    if current is not None and current > SCHEMA_VERSION:
        raise UserError(f"database schema version {current} is newer than this slotml's "
                        f"({SCHEMA_VERSION}): upgrade slotml")
    for table in TABLES.values():
        if table.name not in have:
            for stmt in ddl.create_table(table, D):
                conn.execute(stmt)
            done.append(f"created table {table.name}")
            continue
        cols = _columns(conn, table.name)
        missing = [c for c in table.columns if c.name not in cols]
        keyed = ddl.unique_name(table) in _indexes(conn, table.name)
        if keyed and missing and all(c.nullable and c.default is None for c in missing):
            # a later version's plain nullable columns (e.g. version 2's depth): ADD COLUMN
            # appends them, as in a fresh table, without rebuilding the table
            for c in missing:
                conn.execute(f"ALTER TABLE {_q(table.name)} ADD COLUMN {ddl.column_def(c, D)}")
            done.append(f"{table.name}: added columns {ddl.name_list([c.name for c in missing])}")
        elif missing or not keyed:
            done += _upgrade_legacy(conn, table, cols)
        idx = _indexes(conn, table.name)
        for cols_ in table.indexes:
            if ddl.index_name(table, cols_) not in idx:
                conn.execute(ddl.index_ddl(table, cols_, D))
                done.append(f"{table.name}: added index ({', '.join(cols_)})")
    if current is None or current < SCHEMA_VERSION:
        conn.execute(f"INSERT INTO schema_version (version, applied_at, description) "
                     f"VALUES (?, {NOW}, ?)", (SCHEMA_VERSION, "slotml schema"))
        done.append(f"schema version {current or 0} -> {SCHEMA_VERSION}")
    return done


def _upgrade_legacy(conn: sqlite3.Connection, table: Table, cols: dict[str, str]) -> list[str]:
    """Bring a design-era table up to the schema: SQLite cannot ALTER types or add keys to
    populated tables, so add + derive the missing columns in place, drop duplicate keys (the
    lowest id stays), then rebuild into the exact DDL (ids kept) and swap."""
    done: list[str] = []
    name = table.name
    missing = [c for c in table.columns if c.name not in cols]
    for essential in ("id", "symbol", "slot_ts", *(["captured_at"] if table is SNAPSHOTS else [])):
        if essential not in cols:
            raise UserError(f"{name} exists but has no {essential} column: not a slotml table, "
                            "refusing to upgrade it")
    if missing:
        for c in missing:
            conn.execute(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(c.name)} {c.sqlite_type}")
        done.append(f"{name}: added columns {ddl.name_list([c.name for c in missing])}")
    # derive what is missing or still NULL (a half-made table keeps nothing it can compute)
    for col in ddl.DERIVE_ORDER:
        if col in table.names:
            expr = ddl.derived_sql(table, col, D)
            n = conn.execute(f"UPDATE {_q(name)} SET {_q(col)} = {expr} "
                             f"WHERE {_q(col)} IS NULL").rowcount
            if col == "tick_ms" and n:
                done.append(f"{name}: derived tick_ms from captured_at (nearest 30 s grid)")
    key = ", ".join(_q(c) for c in table.unique)
    dup = conn.execute(f"DELETE FROM {_q(name)} WHERE id NOT IN "
                       f"(SELECT min(id) FROM {_q(name)} GROUP BY {key})").rowcount
    if dup:
        done.append(f"{name}: removed {dup} duplicate rows of ({', '.join(table.unique)}), "
                    "kept the lowest id")
    notnull = [c.name for c in table.columns if not c.nullable and c.name != "id"]
    bad = conn.execute(f"DELETE FROM {_q(name)} WHERE "
                       + " OR ".join(f"{_q(c)} IS NULL" for c in notnull)).rowcount
    if bad:
        done.append(f"{name}: removed {bad} rows lacking a required value")
    extra = [(n, t) for n, t in cols.items() if n not in table.names]
    tmp = f"{name}__upgrade"
    conn.execute(f"DROP TABLE IF EXISTS {_q(tmp)}")
    conn.execute(ddl.create_table(table, D, name=tmp)[0])
    for n, t in extra:
        conn.execute(f"ALTER TABLE {_q(tmp)} ADD COLUMN {_q(n)} {t}")
    allcols = ", ".join(_q(n) for n in [*table.names, *(n for n, _ in extra)])
    conn.execute(f"INSERT INTO {_q(tmp)} ({allcols}) SELECT {allcols} FROM {_q(name)} ORDER BY id")
    # the old indexes go with the old table; the new ones are created under their own names
    conn.execute(f"DROP TABLE {_q(name)}")
    conn.execute(f"ALTER TABLE {_q(tmp)} RENAME TO {_q(name)}")
    for stmt in ddl.create_table(table, D)[1:]:
        conn.execute(stmt)
    done.append(f"{name}: rebuilt with the current types and unique key ({', '.join(table.unique)})"
                + (f"; kept extra columns {', '.join(n for n, _ in extra)}" if extra else ""))
    log.info("upgraded %s: %s", name, "; ".join(done))
    return done
