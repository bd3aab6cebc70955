"""The production store: MySQL/MariaDB through an aiomysql connection pool.

Every operation takes a connection from the pool under a deadline (``connect_timeout`` to get
one, ``op_timeout`` for the work), so a server that hangs can never hang the caller; a
connection that failed or timed out mid-statement is closed, never reused. Sessions run in UTC
with strict SQL mode, so a bad value is an error rather than a silently mangled row.
A little over 400 lines: one backend's pool, deadlines, error mapping and SQL, kept together;
the rules both backends share are in ``store.base``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiomysql
import pymysql

from slotml.errors import UserError
from slotml.ingest.schema import RESOLUTIONS, SCHEMA_VERSION, SNAPSHOTS, TABLES, Table
from slotml.ingest.store import ddl
from slotml.ingest.store.base import (
    CHUNK_ROWS,
    RowRejected,
    Store,
    StoreUnavailable,
    StoreUnreachable,
    from_db,
    present_columns,
)
from slotml.settings import DbUrl, mask_url

log = logging.getLogger(__name__)
T = TypeVar("T")
D = "mysql"
NOW = ddl.NOW_SQL[D]
INIT_SQL = ("SET time_zone = '+00:00', "
            "sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'")
# server errors that say "this row is wrong", as opposed to "the server is unwell"
ROW_ERRORS = {1048, 1062, 1264, 1265, 1292, 1366, 1406, 1411, 3819}


# client errors that waiting can fix: can't connect, server gone/lost, unknown host
TRANSIENT_CODES = {2002, 2003, 2005, 2006, 2013}
PERMANENT_CODES = {1044, 1045, 1049}  # no grant, wrong password, unknown database


def _q(name: str) -> str:
    return ddl.q(D, name)


def _transient(e: BaseException) -> bool:
    """A connect failure waiting may fix (refused, reset, silent) rather than a wrong
    password or a missing database."""
    code = e.args[0] if isinstance(e, pymysql.MySQLError) and e.args else None
    if code in PERMANENT_CODES:
        return False
    return code in TRANSIENT_CODES or isinstance(e, OSError | TimeoutError
                                                  | asyncio.IncompleteReadError)


def _values(conn: aiomysql.Connection, chunk: list[dict[str, Any]], names: list[str]) -> str:
    """The VALUES list of a multi-row INSERT, updated_at stamped by the server.

    Rows went through ``coerce_row``: every value is None, bool, int, a finite float or a str,
    so numbers are rendered directly (repr round-trips a double exactly) and only strings go
    through the driver's escaping: several times faster than per-parameter escaping.
    """
    out = []
    for r in chunk:
        parts = []
        for k in names:
            v = r.get(k)
            t = type(v)
            if v is None:
                parts.append("NULL")
            elif t is float:
                parts.append(repr(v))
            elif t is bool:
                parts.append("1" if v else "0")
            elif t is int:
                parts.append(str(v))
            else:
                parts.append(conn.escape(str(v)))
        out.append("(" + ", ".join(parts) + f", {NOW})")
    return ", ".join(out)


class MysqlStore(Store):
    MARK = "%s"

    def __init__(self, url: DbUrl, connect_timeout: float = 5.0, op_timeout: float = 30.0,
                 pool_size: int = 4) -> None:
        if url.scheme != "mysql":
            raise UserError(f"{url} is not a MySQL URL")
        self.url = url
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self.pool_size = pool_size
        self._pool: aiomysql.Pool | None = None
        self._pool_lock = asyncio.Lock()

    # --- connections --------------------------------------------------------------------------
    async def _make_pool(self) -> aiomysql.Pool:
        u = self.url
        # aiomysql's connect_timeout covers the TCP connect only; bound the handshake too
        async with asyncio.timeout(self.connect_timeout + 1.0):
            return await aiomysql.create_pool(
                host=u.host, port=u.port, user=u.user, password=u.password, db=u.database,
                minsize=1, maxsize=self.pool_size, autocommit=False, charset="utf8mb4",
                connect_timeout=self.connect_timeout, init_command=INIT_SQL, pool_recycle=3600,
            )

    async def connect(self) -> None:
        """Open the pool. ``StoreUnreachable`` (a ``UserError``) when the server cannot be
        reached, which waiting may fix; ``UserError`` for everything else (wrong password,
        unknown database, no grant): both one line."""
        if self._pool is not None:
            return
        try:
            self._pool = await self._make_pool()
        except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
            if _transient(e):
                raise StoreUnreachable(self._explain(e)) from None
            raise UserError(self._explain(e)) from None

    def _explain(self, e: BaseException) -> str:
        u = self.url
        where = f"MySQL server {u.host}:{u.port}"
        code = e.args[0] if isinstance(e, pymysql.MySQLError) and e.args else None
        if code == 1045:
            return f"{where}: access denied for user {u.user!r} (wrong user or password) [{u}]"
        if code == 1044:
            return f"{where}: user {u.user!r} may not use database {u.database!r} (GRANT it) [{u}]"
        if code == 1049:
            return (f"{where}: unknown database {u.database!r} "
                    f"(create it: CREATE DATABASE `{u.database}`) [{u}]")
        if code in (2003, 2005, 2013) or isinstance(e, OSError | TimeoutError):
            detail = str(e.args[1]) if code and len(e.args) > 1 else (str(e) or type(e).__name__)
            if isinstance(e, TimeoutError):
                detail = f"no answer within {self.connect_timeout:g} s"
            elif isinstance(e.__cause__, OSError) and e.__cause__.errno:
                detail = os.strerror(e.__cause__.errno).lower()
            return f"cannot reach {where}: {mask_url(detail)} [{u}]"
        return f"{where}: {type(e).__name__}: {mask_url(str(e))} [{u}]"

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:
                async with asyncio.timeout(2.0):
                    await pool.wait_closed()
            except TimeoutError:
                pool.terminate()

    async def _get_pool(self) -> aiomysql.Pool:
        if self._pool is None:  # never connected, or the server was down at start-up
            async with self._pool_lock:
                if self._pool is None:
                    try:
                        self._pool = await self._make_pool()
                    except Exception as e:  # noqa: BLE001
                        raise StoreUnavailable(self._explain(e)) from None
        return self._pool

    async def _run(self, work: Callable[[aiomysql.Cursor], Awaitable[T]], write: bool,
                   timeout: float | None = None) -> T:
        """Run ``work`` on a pooled connection, in a transaction when ``write``."""
        pool = await self._get_pool()
        try:
            async with asyncio.timeout(self.connect_timeout + 1.0):
                conn = await pool.acquire()
        except (pymysql.MySQLError, OSError, TimeoutError) as e:
            raise StoreUnavailable(self._explain(e)) from None
        ok = False
        try:
            async def body() -> T:
                async with conn.cursor() as cur:
                    out = await work(cur)
                if write:
                    await conn.commit()
                else:
                    await conn.rollback()  # end the read snapshot
                return out

            async with asyncio.timeout(timeout or self.op_timeout):
                out = await body()
            ok = True
            return out
        except (pymysql.err.IntegrityError, pymysql.err.DataError) as e:
            raise RowRejected(f"{self.url}: {e}") from e
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] in ROW_ERRORS:
                raise RowRejected(f"{self.url}: {e}") from e
            raise StoreUnavailable(f"{self.url}: {mask_url(str(e))}") from e
        except (pymysql.MySQLError, OSError, TimeoutError, asyncio.IncompleteReadError, RuntimeError) as e:
            # ProgrammingError (e.g. a missing table) also lands here: retry, never drop rows
            raise StoreUnavailable(f"{self.url}: {type(e).__name__}: {mask_url(str(e))}") from e
        finally:
            if not ok:
                conn.close()  # a failed/timed-out connection is in an unknown state
            pool.release(conn)

    # --- schema -------------------------------------------------------------------------------
    async def ensure_schema(self) -> list[str]:
        await self.connect()
        # an upgrade of a big production table may take minutes: no 30 s deadline here
        return await self._run(lambda cur: _ensure_schema(cur, self.url.database), write=True,
                               timeout=max(self.op_timeout, 3600.0))

    # --- writes -------------------------------------------------------------------------------
    async def _insert_once(self, table: Table, clean: list[dict[str, Any]]) -> int:
        async def work(cur: aiomysql.Cursor) -> int:
            n = 0
            for i in range(0, len(clean), CHUNK_ROWS):
                chunk = clean[i:i + CHUNK_ROWS]
                names = present_columns(table, chunk)
                cols = ", ".join(_q(n) for n in [*names, "updated_at"])
                # a duplicate key sets id to itself: a no-op that counts 0 affected rows
                # (INSERT IGNORE would also swallow real data errors)
                sql = (f"INSERT INTO {_q(table.name)} ({cols}) VALUES "
                       + _values(cur.connection, chunk, names)
                       + " ON DUPLICATE KEY UPDATE `id` = `id`")
                n += await cur.execute(sql)
            return n

        return await self._run(work, write=True)

    async def upsert_resolutions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        clean = self._resolution_rows(rows)
        if not clean:
            return 0
        names = [c.name for c in RESOLUTIONS.data_columns]
        key = list(RESOLUTIONS.unique)
        data = [n for n in names if n not in key]
        cols = ", ".join(_q(n) for n in [*names, "updated_at"])
        changed = " OR ".join(f"({_q(n)} IS NULL AND VALUES({_q(n)}) IS NOT NULL)" for n in data)
        # assignments run left to right and see updated values: updated_at must come first
        sets = ", ".join([f"`updated_at` = IF({changed}, {NOW}, `updated_at`)",
                          *(f"{_q(n)} = COALESCE({_q(n)}, VALUES({_q(n)}))" for n in data)])
        keycols = ", ".join(_q(k) for k in key)
        keyrow = "(" + ", ".join(["%s"] * len(key)) + ")"

        async def work(cur: aiomysql.Cursor) -> int:
            total = 0
            for i in range(0, len(clean), CHUNK_ROWS):
                chunk = clean[i:i + CHUNK_ROWS]
                # affected rows = inserts + 2 * changed updates: count the existing keys first
                # (in this transaction, locking them) to tell the two apart
                await cur.execute(
                    f"SELECT count(*) FROM {_q(RESOLUTIONS.name)} WHERE ({keycols}) IN ("
                    + ", ".join([keyrow] * len(chunk)) + ") FOR UPDATE",
                    [r[k] for r in chunk for k in key])
                existing = int((await cur.fetchone())[0])
                sql = (f"INSERT INTO {_q(RESOLUTIONS.name)} ({cols}) VALUES "
                       + _values(cur.connection, chunk, names)
                       + f" ON DUPLICATE KEY UPDATE {sets}")
                affected = await cur.execute(sql)
                inserted = len(chunk) - existing
                total += inserted + (affected - inserted) // 2
            return total

        return await self._run(work, write=True)

    # --- reads --------------------------------------------------------------------------------
    async def _select(self, table: Table, where: str, params: list[Any], order: str
                      ) -> list[dict[str, Any]]:
        names = table.names
        sql = (f"SELECT {', '.join(_q(n) for n in names)} FROM {_q(table.name)}{where} "
               f"ORDER BY {order}")

        async def work(cur: aiomysql.Cursor) -> list[dict[str, Any]]:
            await cur.execute(sql, params)
            return [from_db(table, names, r) for r in await cur.fetchall()]

        return await self._run(work, write=False)

    async def count(self, table: str) -> int:
        self._table(table)

        async def work(cur: aiomysql.Cursor) -> int:
            await cur.execute(f"SELECT count(*) FROM {_q(table)}")
            return int((await cur.fetchone())[0])

        return await self._run(work, write=False)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one raw statement (tests, tools) and commit; returns its rows."""
        async def work(cur: aiomysql.Cursor) -> list[tuple]:
            await cur.execute(sql, list(params) or None)
            return list(await cur.fetchall()) if cur.description else []

        return await self._run(work, write=True)


# --- create / upgrade ------------------------------------------------------------------------

async def _columns(cur: aiomysql.Cursor, db: str, table: str) -> dict[str, str]:
    await cur.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                      "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, table))
    return {r[0]: str(r[1]).lower() for r in await cur.fetchall()}


async def _indexes(cur: aiomysql.Cursor, db: str, table: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    """index name -> (columns, unique)."""
    await cur.execute("SELECT INDEX_NAME, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS "
                      "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                      (db, table))
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    for name, col, non_unique in await cur.fetchall():
        cols, _ = out.get(name, ((), True))
        out[name] = ((*cols, col), not int(non_unique))
    return out


async def _ensure_schema(cur: aiomysql.Cursor, db: str) -> list[str]:
    done: list[str] = []
    await cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                      (db,))
    have = {r[0] for r in await cur.fetchall()}
    if "schema_version" not in have:
        await cur.execute(ddl.create_schema_version(D))
        done.append("created table schema_version")
    await cur.execute("SELECT max(version) FROM schema_version")
    current = (await cur.fetchone())[0]
    if current is not None and current > SCHEMA_VERSION:
        raise UserError(f"database schema version {current} is newer than this slotml's "
                        f"({SCHEMA_VERSION}): upgrade slotml")
    for table in TABLES.values():
        if table.name not in have:
            for stmt in ddl.create_table(table, D):
                await cur.execute(stmt)
            done.append(f"created table {table.name}")
            continue
        done += await _upgrade(cur, db, table)
    if current is None or current < SCHEMA_VERSION:
        await cur.execute(f"INSERT INTO schema_version (version, applied_at, description) "
                          f"VALUES (%s, {NOW}, %s)", (SCHEMA_VERSION, "slotml schema"))
        done.append(f"schema version {current or 0} -> {SCHEMA_VERSION}")
    return done


_NUMERIC = {"float", "double", "decimal", "int", "bigint", "smallint", "tinyint", "mediumint"}
_TIMES = {"datetime", "timestamp"}


async def _upgrade(cur: aiomysql.Cursor, db: str, table: Table) -> list[str]:
    """Bring an existing table (e.g. the design's: FLOAT columns, no window_s/tick_ms) up to the
    schema in place. Each step checks the catalogue first, so it is idempotent and a re-run
    after an interruption (DDL commits implicitly) finishes the job."""
    done: list[str] = []
    name = table.name
    t = _q(name)
    cols = await _columns(cur, db, name)
    for essential in ("id", "symbol", "slot_ts", *(["captured_at"] if table is SNAPSHOTS else [])):
        if essential not in cols:
            raise UserError(f"{name} exists but has no {essential} column: not a slotml table, "
                            "refusing to upgrade it")
    # 1. datetime/timestamp columns where the schema has epoch seconds: convert via a new column
    for c in table.columns:
        if c.kind == "double" and cols.get(c.name) in _TIMES:
            old = f"{c.name}__legacy"
            await cur.execute(f"ALTER TABLE {t} RENAME COLUMN {_q(c.name)} TO {_q(old)}, "
                              f"ADD COLUMN {_q(c.name)} DOUBLE NULL")
            await cur.execute(f"UPDATE {t} SET {_q(c.name)} = UNIX_TIMESTAMP({_q(old)})")
            await cur.execute(f"ALTER TABLE {t} DROP COLUMN {_q(old)}")
            done.append(f"{name}: {c.name} {cols[c.name].upper()} -> epoch seconds DOUBLE (UTC)")
            cols[c.name] = "double"
    # 2. FLOAT (or other numeric) -> DOUBLE; float32 noise rounded off to 7 significant digits
    floats = [c for c in table.columns
              if c.kind == "double" and cols.get(c.name) in _NUMERIC - {"double"}]
    if floats:
        await cur.execute(f"ALTER TABLE {t} " + ", ".join(
            f"MODIFY {_q(c.name)} DOUBLE {'NULL' if c.nullable else 'NOT NULL'}" for c in floats))
        fl = [c for c in floats if cols[c.name] == "float"]
        if fl:
            await cur.execute(f"UPDATE {t} SET " + ", ".join(
                f"{_q(c.name)} = IF({_q(c.name)} IS NULL OR {_q(c.name)} = 0, {_q(c.name)}, "
                f"ROUND({_q(c.name)}, 6 - FLOOR(LOG10(ABS({_q(c.name)})))))" for c in fl))
        done.append(f"{name}: {', '.join(f'{c.name} {cols[c.name].upper()}' for c in floats)} "
                    "-> DOUBLE")
    # 2b. VARCHAR columns narrower than the schema's (version 4 widened `settlement`): MODIFY
    #     keeps the values and the nullability
    await cur.execute("SELECT COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE FROM "
                      "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                      "AND DATA_TYPE = 'varchar'", (db, name))
    widths = {r[0]: (int(r[1]), r[2] == "YES") for r in await cur.fetchall()}
    narrow = [(c, widths[c.name]) for c in table.columns
              if c.kind == "str" and c.name in widths and widths[c.name][0] < c.length]
    if narrow:
        await cur.execute(f"ALTER TABLE {t} " + ", ".join(
            f"MODIFY {_q(c.name)} {c.mysql_type} {'NULL' if null else 'NOT NULL'}"
            + (f" DEFAULT {c.default}" if c.default is not None else "") for c, (_, null) in narrow))
        done.append(f"{name}: widened " + ", ".join(
            f"{c.name} VARCHAR({w}) -> VARCHAR({c.length})" for c, (w, _) in narrow))
    # 3. missing columns: add (nullable), derive, then tighten to NOT NULL. Until the unique
    #    key exists the upgrade is unfinished (MySQL DDL commits as it goes): a re-run after an
    #    interruption derives whatever is still NULL.
    idx = await _indexes(cur, db, name)
    has_key = any(cols_ == table.unique and uq for cols_, uq in idx.values())
    missing = [c for c in table.columns if c.name not in cols]
    if missing:
        await cur.execute(f"ALTER TABLE {t} " + ", ".join(
            f"ADD COLUMN {_q(c.name)} {c.mysql_type} NULL" for c in missing))
        done.append(f"{name}: added columns {ddl.name_list([c.name for c in missing])}")
    added = {c.name for c in missing}
    if added or not has_key:
        for col in ddl.DERIVE_ORDER:
            if col in added or (col in cols and not has_key):
                n = await cur.execute(f"UPDATE {t} SET {_q(col)} = "
                                      f"{ddl.derived_sql(table, col, D)} WHERE {_q(col)} IS NULL")
                if col == "tick_ms" and n:
                    done.append(f"{name}: derived tick_ms from captured_at (nearest 30 s grid)")
    # 4. duplicates of the new key: keep the lowest id
    if not has_key:
        on = " AND ".join(f"a.{_q(k)} <=> b.{_q(k)}" for k in table.unique)
        n = await cur.execute(f"DELETE a FROM {t} a JOIN {t} b ON {on} AND a.id > b.id")
        if n:
            done.append(f"{name}: removed {n} duplicate rows of ({', '.join(table.unique)}), "
                        "kept the lowest id")
    # 5. required columns: rows that still lack one cannot be kept
    notnull = [c for c in table.columns if not c.nullable and c.name != "id"]
    if any(not c.nullable for c in missing) or not has_key:  # nullable columns: nothing to lose
        n = await cur.execute(f"DELETE FROM {t} WHERE "
                              + " OR ".join(f"{_q(c.name)} IS NULL" for c in notnull))
        if n:
            done.append(f"{name}: removed {n} rows lacking a required value")
    cols = await _columns(cur, db, name)
    await cur.execute("SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
                      "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, name))
    nullable = {r[0]: r[1] == "YES" for r in await cur.fetchall()}
    tighten = [c for c in notnull if nullable.get(c.name)]
    if tighten:
        await cur.execute(f"ALTER TABLE {t} " + ", ".join(
            f"MODIFY {_q(c.name)} {c.mysql_type} NOT NULL"
            + (f" DEFAULT {c.default}" if c.default is not None else "") for c in tighten))
    # 6. keys and indexes (a design-era unique key without window_s/tick_ms would reject the
    #    other families' rows: replaced by ours)
    adds = []
    for old, (cols_, uq) in idx.items():
        if uq and old != "PRIMARY" and cols_ != table.unique:
            adds.append(f"DROP INDEX {_q(old)}")
            done.append(f"{name}: dropped the old unique key {old} ({', '.join(cols_)})")
    if not has_key:
        adds.append(f"ADD UNIQUE KEY {_q(ddl.unique_name(table))} "
                    f"({', '.join(_q(k) for k in table.unique)})")
        done.append(f"{name}: added unique key ({', '.join(table.unique)})")
    have_cols = {c for c, _ in idx.values()}
    for cols_ in table.indexes:
        if cols_ not in have_cols:
            adds.append(f"ADD KEY {_q(ddl.index_name(table, cols_))} "
                        f"({', '.join(_q(k) for k in cols_)})")
            done.append(f"{name}: added index ({', '.join(cols_)})")
    if adds:
        await cur.execute(f"ALTER TABLE {t} " + ", ".join(adds))
    if done:
        log.info("upgraded %s: %s", name, "; ".join(done))
    return done
