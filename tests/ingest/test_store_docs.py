"""docs/schema.md is the column reference `slotml db schema` prints: keep it current."""

from __future__ import annotations

from pathlib import Path

from slotml.ingest.schema import TABLES, docs
from slotml.ingest.store.ddl import full_ddl

ROOT = Path(__file__).resolve().parents[2]


def test_docs_schema_md_is_up_to_date() -> None:
    text = (ROOT / "docs" / "schema.md").read_text()
    assert text == docs(), "docs/schema.md is stale: run `slotml db schema > docs/schema.md`"


def test_ddl_has_every_column_key_and_index() -> None:
    for dialect in ("mysql", "sqlite"):
        sql = full_ddl(dialect)
        for t in TABLES.values():
            for c in t.columns:
                assert c.name in sql
            assert f"uq_{t.name}" in sql
            for cols in t.indexes:
                assert f"ix_{t.name}__{'_'.join(cols)}" in sql
    assert "DOUBLE" in full_ddl("mysql") and "FLOAT" not in full_ddl("mysql")
