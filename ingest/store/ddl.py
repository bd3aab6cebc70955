"""DDL for both backends, generated from ``slotml.ingest.schema`` (the one place columns live).

MySQL/MariaDB gets the issue's types (DOUBLE, BIGINT, VARCHAR(n), BOOLEAN) and InnoDB/utf8mb4;
SQLite gets the nearest types (INTEGER, REAL, TEXT) with the same names, keys and indexes, so
code and the lake can treat both stores alike. Also the SQL the backends share: the DB-clock
expression for ``updated_at`` and the legacy-design derivations used by the upgrade.
"""

from __future__ import annotations

from slotml.ingest.schema import DEPTH_COLUMNS, TABLES, Column, Table

SCHEMA_VERSION_TABLE = "schema_version"

# updated_at is stamped by the database at commit, never by the writer.
NOW_SQL = {
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
    # this SQLite is 3.40: no unixepoch('subsec'); julianday('now') has ms resolution
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def q(dialect: str, name: str) -> str:
    """Quote an identifier."""
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


def column_type(col: Column, dialect: str) -> str:
    return col.mysql_type if dialect == "mysql" else col.sqlite_type


def column_def(col: Column, dialect: str) -> str:
    if col.name == "id":
        if dialect == "mysql":
            return f"{q(dialect, 'id')} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"
        # AUTOINCREMENT: ids are never reused, so "id > last exported" stays a valid cursor
        return f"{q(dialect, 'id')} INTEGER PRIMARY KEY AUTOINCREMENT"
    parts = [q(dialect, col.name), column_type(col, dialect)]
    parts.append("NULL" if col.nullable else "NOT NULL")
    if col.default is not None:
        parts.append(f"DEFAULT {col.default}")
    elif col.name == "updated_at" and dialect == "sqlite":
        parts.append(f"DEFAULT ({NOW_SQL['sqlite']})")
    return " ".join(parts)


def name_list(names: list[str]) -> str:
    """Column names for a message; a run of depth columns is summarised (40 names are noise)."""
    depth = [n for n in names if n in DEPTH_COLUMNS]
    if len(depth) == len(DEPTH_COLUMNS):
        rest = [n for n in names if n not in DEPTH_COLUMNS]
        return ", ".join([*rest, f"the {len(depth)} depth columns {depth[0]} .. {depth[-1]}"])
    return ", ".join(names)


def unique_name(table: Table) -> str:
    return f"uq_{table.name}"


def index_name(table: Table, cols: tuple[str, ...]) -> str:
    return f"ix_{table.name}__{'_'.join(cols)}"


def index_ddl(table: Table, cols: tuple[str, ...], dialect: str, unique: bool = False) -> str:
    """A stand-alone CREATE INDEX (SQLite) / ALTER TABLE ADD KEY (MySQL) statement."""
    name = unique_name(table) if unique else index_name(table, cols)
    collist = ", ".join(q(dialect, c) for c in cols)
    if dialect == "mysql":
        kind = "UNIQUE KEY" if unique else "KEY"
        return f"ALTER TABLE {q(dialect, table.name)} ADD {kind} {q(dialect, name)} ({collist})"
    kind = "UNIQUE INDEX" if unique else "INDEX"
    return f"CREATE {kind} IF NOT EXISTS {q(dialect, name)} ON {q(dialect, table.name)} ({collist})"


def create_table(table: Table, dialect: str, name: str | None = None) -> list[str]:
    """Statements creating ``table`` (optionally under another name) with its keys/indexes."""
    tname = name or table.name
    defs = [column_def(c, dialect) for c in table.columns]
    if dialect == "mysql":
        defs.append(f"UNIQUE KEY {q(dialect, unique_name(table))} "
                    f"({', '.join(q(dialect, c) for c in table.unique)})")
        for cols in table.indexes:
            defs.append(f"KEY {q(dialect, index_name(table, cols))} "
                        f"({', '.join(q(dialect, c) for c in cols)})")
        body = ",\n  ".join(defs)
        return [f"CREATE TABLE IF NOT EXISTS {q(dialect, tname)} (\n  {body}\n) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"]
    body = ",\n  ".join(defs)
    out = [f"CREATE TABLE IF NOT EXISTS {q(dialect, tname)} (\n  {body}\n)"]
    if name is None:
        out.append(index_ddl(table, table.unique, dialect, unique=True))
        out += [index_ddl(table, cols, dialect) for cols in table.indexes]
    return out


def create_schema_version(dialect: str) -> str:
    if dialect == "mysql":
        return ("CREATE TABLE IF NOT EXISTS `schema_version` (\n"
                "  `version` INT NOT NULL PRIMARY KEY,\n"
                "  `applied_at` DOUBLE NOT NULL,\n"
                "  `description` VARCHAR(255) NULL\n"
                ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    return ('CREATE TABLE IF NOT EXISTS "schema_version" (\n'
            '  "version" INTEGER NOT NULL PRIMARY KEY,\n'
            '  "applied_at" REAL NOT NULL,\n'
            '  "description" TEXT NULL\n)')


def full_ddl(dialect: str) -> str:
    """Every statement of a fresh schema, for docs and for operators who create tables by hand."""
    stmts = [create_schema_version(dialect)]
    for t in TABLES.values():
        stmts += create_table(t, dialect)
    return ";\n\n".join(stmts) + ";\n"


# --- the legacy design's tables (FLOAT columns, no window_s / tick_ms) ---------------------

# Values for NOT NULL columns the legacy tables lack, as SQL over the (already upgraded) row.
# tick_ms: captured_at rounded to the nearest 30 s grid instant (floor(x + 0.5): the same on
# both backends, whose ROUND() disagree on halves).
def derived_sql(table: Table, col: str, dialect: str) -> str | None:
    cap = q(dialect, "captured_at")
    tick = q(dialect, "tick_ms")
    if col == "tick_ms":
        if dialect == "mysql":
            return f"CAST(FLOOR({cap} / 30 + 0.5) AS SIGNED) * 30000"
        return f"CAST((({cap} / 30.0) + 0.5) AS INTEGER) * 30000"
    if col == "window_s":
        return "900"
    if col == "minutes_into_slot":
        return f"({tick} / 1000.0 - {q(dialect, 'slot_ts')}) / 60.0"
    if col == "hour_utc":
        return (f"FLOOR(MOD(FLOOR({tick} / 1000), 86400) / 3600)" if dialect == "mysql"
                else f"((({tick} / 1000) % 86400) / 3600)")
    if col == "day_of_week":  # 1970-01-01 was a Thursday (3 with Monday = 0)
        return (f"MOD(FLOOR({tick} / 86400000) + 3, 7)" if dialect == "mysql"
                else f"((({tick} / 86400000) + 3) % 7)")
    if col == "updated_at":
        return NOW_SQL[dialect]
    return None


# Order matters: tick_ms first, the rest may use it.
DERIVE_ORDER = ("window_s", "tick_ms", "minutes_into_slot", "hour_utc", "day_of_week", "updated_at")
