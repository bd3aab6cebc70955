"""Read a store table into Arrow chunks, fast and in bounded memory, from SQLite or MySQL.

MySQL is the hard part: decoding rows in Python (PyMySQL, aiomysql) tops out near pandas' speed,
and any TEXT-protocol reader is bound by the server formatting every DOUBLE as text (measured
here: the mariadb client alone manages ~100k rows/s of snapshot rows). So, in order of
preference (``bench/bench_lake.py`` measures them side by side):

1. ``connectorx`` over the BINARY protocol (doubles travel as 8 bytes), straight into Arrow,
   one bounded id range per query so memory stays flat (~5x the text protocol here);
2. the MariaDB/MySQL client's ``--batch --quick`` TSV streamed into pyarrow's CSV reader with
   explicit column types (password in the client's environment, never on a command line);
3. PyMySQL's unbuffered cursor, with a warning.

Every reader yields chunks in the *raw* layout (BOOLEAN columns as integers);
``normalize`` turns them into the lake's schema.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from slotml.errors import UserError
from slotml.ingest.schema import Table
from slotml.lake.arrow_schema import arrow_schema, kind_type
from slotml.settings import DbUrl, mask_url

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
CSV_BLOCK_BYTES = 16 << 20
SQLITE_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"
MYSQL_NOW = "SELECT UNIX_TIMESTAMP(NOW(6))"


class Source(Protocol):
    name: str

    def db_now(self) -> float: ...

    def read(self, table: Table, since: float | None) -> Iterator[pa.Table]: ...

    def close(self) -> None: ...


def raw_type(kind: str) -> pa.DataType:
    """Type a reader produces before ``normalize`` (BOOLEANs are small ints in both stores)."""
    return pa.int64() if kind == "bool" else kind_type(kind)


def normalize(chunk: pa.Table, table: Table) -> pa.Table:
    """Raw reader output -> the lake schema (booleans from 0/1, NULL kept, widths checked)."""
    schema = arrow_schema(table)
    cols = []
    for col, field in zip(table.columns, schema, strict=True):
        arr = chunk.column(col.name)
        if col.kind == "bool":
            if not pa.types.is_boolean(arr.type):
                arr = pc.not_equal(arr, 0)
        elif arr.type != field.type:
            arr = arr.cast(field.type)  # safe cast: an out-of-range value raises, never wraps
        if not col.nullable and arr.null_count:
            raise UserError(f"{table.name}.{col.name} holds NULL although the schema says NOT NULL")
        cols.append(arr)
    return pa.Table.from_arrays(cols, schema=schema)


def _where(since: float | None) -> str:
    return "" if since is None else f" WHERE updated_at >= {since!r}"


def _columns_to_table(rows: list[tuple], table: Table) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in table.columns]
    arrays = [pa.array(v, type=raw_type(c.kind)) for v, c in zip(cols, table.columns, strict=True)]
    return pa.Table.from_arrays(arrays, names=table.names)


class SqliteSource:
    """One SELECT per table: SQLite gives it a consistent snapshot while we stream."""

    name = "sqlite"

    def __init__(self, url: DbUrl, chunk_rows: int = CHUNK_ROWS) -> None:
        path = Path(url.path or "")
        if not path.exists():
            raise UserError(f"SQLite store {path} does not exist")
        self.chunk_rows = chunk_rows
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30,
                                    check_same_thread=False)  # read in the prefetch thread

    def db_now(self) -> float:
        return float(self.conn.execute(SQLITE_NOW).fetchone()[0])

    def read(self, table: Table, since: float | None) -> Iterator[pa.Table]:
        sql = f"SELECT {', '.join(table.names)} FROM {table.name}{_where(since)}"
        try:
            cur = self.conn.execute(sql)
        except sqlite3.OperationalError as e:
            raise UserError(f"cannot read {table.name} from the SQLite store: {e}") from None
        while rows := cur.fetchmany(self.chunk_rows):
            yield _columns_to_table(rows, table)

    def close(self) -> None:
        self.conn.close()


class PyMysqlSource:
    """Fallback: PyMySQL's unbuffered cursor (pure-Python decoding, ~5x slower than the CLI)."""

    name = "pymysql"

    def __init__(self, url: DbUrl, chunk_rows: int = CHUNK_ROWS) -> None:
        import pymysql

        self.chunk_rows = chunk_rows
        try:
            self.conn = pymysql.connect(host=url.host, port=url.port, user=url.user,
                                        password=url.password, database=url.database,
                                        connect_timeout=10, charset="utf8mb4")
        except pymysql.MySQLError as e:
            raise UserError(f"cannot connect to {url}: {mask_url(str(e))}") from None

    def db_now(self) -> float:
        with self.conn.cursor() as cur:
            cur.execute(MYSQL_NOW)
            return float(cur.fetchone()[0])

    def read(self, table: Table, since: float | None) -> Iterator[pa.Table]:
        import pymysql

        sql = f"SELECT {', '.join(table.names)} FROM `{table.name}`{_where(since)}"
        with self.conn.cursor(pymysql.cursors.SSCursor) as cur:
            try:
                cur.execute(sql)
            except pymysql.MySQLError as e:
                raise UserError(f"cannot read {table.name}: {e}") from None
            while rows := cur.fetchmany(self.chunk_rows):
                yield _columns_to_table(list(rows), table)

    def close(self) -> None:
        self.conn.close()


_ESCAPES = {"0": "\0", "t": "\t", "n": "\n", "\\": "\\", "r": "\r", "b": "\b", "Z": "\x1a"}
_ESCAPE_RE = re.compile(r"\\(.)", re.S)


def _unescape(s: str | None) -> str | None:
    if s is None:
        return None
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), s)


def find_mysql_client() -> str | None:
    return shutil.which("mariadb") or shutil.which("mysql")


class MysqlCliSource:
    """The client's batch TSV into pyarrow's CSV reader.

    String columns are selected as ``CONCAT('s', col)``: the client prints NULL and the string
    'NULL' alike, the prefix keeps them apart (a NULL stays NULL through CONCAT). The client
    escapes tab, newline, NUL and backslash in batch mode; values holding a backslash are
    unescaped after parsing (rare: the common case costs one vectorised check).
    """

    name = "mysql-cli"

    def __init__(self, url: DbUrl, binary: str, block_bytes: int = CSV_BLOCK_BYTES) -> None:
        self.url = url
        self.binary = binary
        self.block_bytes = block_bytes
        # The password goes to the client through its environment (MYSQL_PWD, readable only by
        # this user), never on a command line and never in a file a SIGKILL could leave behind.
        self.env = {k: v for k, v in os.environ.items() if k != "MYSQL_PWD"}
        if url.password:
            self.env["MYSQL_PWD"] = url.password

    def _cmd(self, sql: str) -> list[str]:
        u = self.url
        return [self.binary, "--no-defaults", f"--user={u.user}", f"--host={u.host}",
                f"--port={u.port}", "--protocol=TCP", "--default-character-set=utf8mb4",
                "--batch", "--quick", "--skip-column-names", "--connect-timeout=10",
                f"--database={u.database}", "-e", sql]

    def _fail(self, what: str, stderr: str) -> UserError:
        msg = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        return UserError(f"{what} ({self.url}): {mask_url(msg)}")

    def db_now(self) -> float:
        p = subprocess.run(self._cmd(MYSQL_NOW), capture_output=True, text=True, timeout=60,
                           env=self.env)
        if p.returncode != 0:
            raise self._fail("cannot query the MySQL store", p.stderr)
        return float(p.stdout.strip())

    def read(self, table: Table, since: float | None) -> Iterator[pa.Table]:
        exprs = [f"CONCAT('s', `{c.name}`)" if c.kind == "str" else f"`{c.name}`"
                 for c in table.columns]
        sql = f"SELECT {', '.join(exprs)} FROM `{table.name}`{_where(since)}"
        errf = tempfile.TemporaryFile()
        proc = subprocess.Popen(self._cmd(sql), stdout=subprocess.PIPE, stderr=errf,
                                bufsize=1 << 20, env=self.env)
        try:
            yield from self._parse(proc.stdout, table)  # type: ignore[arg-type]
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errf.seek(0)
        err = errf.read().decode(errors="replace")
        errf.close()
        if rc != 0:
            raise self._fail(f"cannot read {table.name} from the MySQL store", err)

    def _parse(self, stream: io.BufferedReader, table: Table) -> Iterator[pa.Table]:
        if not stream.peek(1):
            return
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=table.names, block_size=self.block_bytes,
                                           use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                             double_quote=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c.name: raw_type(c.kind) for c in table.columns},
                null_values=["NULL"], strings_can_be_null=True, quoted_strings_can_be_null=False),
        )
        str_cols = [i for i, c in enumerate(table.columns) if c.kind == "str"]
        for batch in reader:
            t = pa.Table.from_batches([batch])
            for i in str_cols:
                arr = pc.utf8_slice_codeunits(t.column(i), start=1)
                if pc.any(pc.match_substring(arr, "\\")).as_py():
                    arr = pa.chunked_array([pa.array([_unescape(s) for s in arr.to_pylist()],
                                                     type=pa.string())])
                t = t.set_column(i, table.columns[i].name, arr)
            yield t

    def close(self) -> None:
        pass


class ConnectorxSource:
    """connectorx, binary protocol, one id range per query (bounded memory, one Arrow chunk each).

    A full read walks the primary key in ranges of ``range_rows`` ids. An incremental read
    first counts the matching rows through the updated_at index: few rows -> one query on
    updated_at; many -> id ranges between the min and max matching id, still filtered on
    updated_at. Ranges are separate statements, not one snapshot: a row committed meanwhile is
    read by the next run anyway (its updated_at is later than this run's start).
    """

    name = "connectorx"

    def __init__(self, url: DbUrl, range_rows: int = 100_000) -> None:
        from urllib.parse import quote

        import connectorx  # noqa: F401 - fail here if missing

        self.meta = PyMysqlSource(url)
        self.range_rows = range_rows
        self.cx_url = (f"mysql://{quote(url.user, safe='')}:{quote(url.password, safe='')}"
                       f"@{url.host}:{url.port}/{quote(url.database, safe='')}")
        self.url = url

    def db_now(self) -> float:
        return self.meta.db_now()

    def _scalar(self, sql: str) -> tuple:
        import pymysql

        with self.meta.conn.cursor() as cur:
            try:
                cur.execute(sql)
            except pymysql.MySQLError as e:
                raise UserError(f"cannot read the MySQL store ({self.url}): {e}") from None
            return cur.fetchone()

    def _query(self, sql: str) -> pa.Table:
        import connectorx as cx

        try:
            return cx.read_sql(self.cx_url, sql, return_type="arrow", protocol="binary")
        except Exception as e:  # noqa: BLE001 - connectorx raises bare RuntimeErrors
            raise UserError(f"cannot read the MySQL store ({self.url}): "
                            f"{mask_url(str(e)).splitlines()[0]}") from None

    def read(self, table: Table, since: float | None) -> Iterator[pa.Table]:
        cols = ", ".join(f"`{n}`" for n in table.names)
        base = f"SELECT {cols} FROM `{table.name}`"
        cond = "" if since is None else f"updated_at >= {since!r}"
        if since is not None:
            n, lo, hi = self._scalar(f"SELECT COUNT(*), MIN(id), MAX(id) FROM `{table.name}` "
                                     f"WHERE {cond}")
            if not n:
                return
            if n <= self.range_rows:
                yield self._query(f"{base} WHERE {cond}")
                return
        else:
            lo, hi = self._scalar(f"SELECT MIN(id), MAX(id) FROM `{table.name}`")
            if lo is None:
                return
        extra = f" AND {cond}" if cond else ""
        for a in range(int(lo), int(hi) + 1, self.range_rows):
            b = min(a + self.range_rows - 1, int(hi))
            t = self._query(f"{base} WHERE id BETWEEN {a} AND {b}{extra}")
            if t.num_rows:
                yield t

    def close(self) -> None:
        self.meta.close()


def open_source(url: DbUrl, reader: str = "auto") -> Source:
    """The fastest reader available for ``url`` (``reader``: auto | connectorx | cli | python)."""
    if url.scheme == "sqlite":
        return SqliteSource(url)
    if reader in ("auto", "connectorx"):
        try:
            import connectorx  # noqa: F401
        except ImportError:
            if reader == "connectorx":
                raise UserError("connectorx is not installed (pip install connectorx)") from None
        else:
            return ConnectorxSource(url)
    if reader in ("auto", "cli"):
        binary = find_mysql_client()
        if binary:
            return MysqlCliSource(url, binary)
        if reader == "cli":
            raise UserError("no mariadb/mysql client binary on PATH (install mariadb-client)")
        log.warning("no mariadb/mysql client binary on PATH: falling back to PyMySQL streaming, "
                    "about 5x slower (install mariadb-client)")
    return PyMysqlSource(url)
