"""Read the lake: a DuckDB connection whose views cover exactly the manifest's live files.

Used by features, train, the dashboard and ``slotml sql``. The views read the file list the
manifest named when ``connect`` was called, so a concurrent export never shows half a run;
a long-lived reader should reconnect (or call ``refresh``) after an export, because superseded
files are deleted after the export's grace period.

Hive partition columns are NOT used: the files already hold ``symbol`` and the views expose
exactly the store's columns (``hive_partitioning=false``), so nothing duplicates or clashes.

Files the manifest lists but that are gone (deleted by hand, a restored backup) are one line,
``LakeFilesMissing`` naming them and what to run (``slotml export`` rewrites them from the
store), not a DuckDB traceback.

A lake written by an older schema still reads: a table the manifest lacks is an empty view, and
files without a column the schema has since gained (e.g. version 2's depth columns, before the
next export rebuilds them) show it as NULL.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from slotml.errors import UserError
from slotml.ingest.schema import TABLES, Table
from slotml.lake.arrow_schema import duckdb_type, fingerprint
from slotml.lake.manifest import Manifest, read_manifest


def default_lake_dir() -> Path:
    import argparse

    from slotml.settings import CommonSettings

    return CommonSettings.from_args(argparse.Namespace()).lake_dir


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ref(name: str) -> str:
    return f'"{name}"'


def _file_columns(lake_dir: Path, table: Table, manifest: Manifest) -> set[str]:
    """The columns the table's files hold. One export writes all of a table's files with one
    schema (a changed fingerprint means a full rebuild), so only a lake written by another
    schema needs a look, at one file's footer."""
    state = manifest.tables.get(table.name)
    if state is None or not state.files or state.fingerprint == fingerprint(table):
        return set(table.names)
    return set(pq.read_schema(Path(lake_dir) / state.files[0].path).names)


def view_sql(lake_dir: Path, table: Table, manifest: Manifest) -> str:
    files = manifest.files(table.name)
    if not files:
        empty = ", ".join(f'CAST(NULL AS {duckdb_type(c)}) AS "{c.name}"' for c in table.columns)
        return f"CREATE OR REPLACE VIEW {table.name} AS SELECT {empty} WHERE false"
    have = _file_columns(lake_dir, table, manifest)
    cols = ", ".join(f'CAST({_ref(c.name) if c.name in have else "NULL"} AS {duckdb_type(c)}) '
                     f'AS {_ref(c.name)}' for c in table.columns)
    paths = ", ".join(_sql_str(str(Path(lake_dir).resolve() / f.path)) for f in files)
    return (f"CREATE OR REPLACE VIEW {table.name} AS SELECT {cols} FROM "
            f"read_parquet([{paths}], hive_partitioning=false, union_by_name=false)")


class LakeFilesMissing(UserError):
    """The manifest lists files that are not there (the CLI prints it as one line, exit 2)."""

    def __init__(self, lake_dir: Path, missing: list[str]) -> None:
        self.missing = missing
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        super().__init__(f"lake {lake_dir}: {len(missing)} file(s) its manifest lists are missing "
                         f"({shown}): run `slotml export` (it rewrites them from the store)")


def missing_files(lake_dir: Path | str, manifest: Manifest) -> list[str]:
    """The manifest's files that are not on disk (relative paths, sorted)."""
    root = Path(lake_dir)
    return sorted(p for p in manifest.live_paths() if not (root / p).is_file())


def refresh(con: duckdb.DuckDBPyConnection, lake_dir: Path | str | None = None,
            manifest: Manifest | None = None) -> Manifest:
    """(Re)create the views over the lake's current manifest (or over ``manifest``, e.g. a
    ``Manifest.only_dates`` subset); returns that manifest."""
    lake = Path(lake_dir) if lake_dir is not None else default_lake_dir()
    if manifest is None:
        manifest = read_manifest(lake)
    missing = missing_files(lake, manifest)
    if missing:
        raise LakeFilesMissing(lake, missing)
    for table in TABLES.values():
        con.execute(view_sql(lake, table, manifest))
    return manifest


def connect(lake_dir: Path | str | None = None, database: str = ":memory:",
            threads: int | None = None, manifest: Manifest | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per store table (``slot_snapshots``, ``slot_resolutions``,
    ``slot_trades``, ``slot_tape_gaps``).

    ``lake_dir`` defaults to the settings' lake (``$SLOTML_HOME/lake`` or ``./data/lake``). An
    empty or missing lake gives empty views with the right columns and types; a manifest
    naming files that are gone raises ``LakeFilesMissing``.
    """
    con = duckdb.connect(database)
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    refresh(con, lake_dir, manifest)
    return con
