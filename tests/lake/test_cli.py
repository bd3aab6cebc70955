"""`slotml export` and `slotml sql` through the real console entry point."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from slotml.cli import main
from slotml.ingest.schema import RESOLUTIONS
from slotml.settings import DbUrl
from tests.lake.storedb import populate


def test_export_then_sql_formats(sqlite_db: DbUrl, tmp_path: Path, capsys) -> None:
    db = populate(sqlite_db, n_slots=8)
    lake = tmp_path / "lake"
    assert main(["export", "--db", sqlite_db.raw, "--lake", str(lake), "--grace", "0"]) == 0
    q = "SELECT symbol, count(*) AS n FROM slot_snapshots GROUP BY symbol ORDER BY symbol"
    capsys.readouterr()
    assert main(["sql", q, "--lake", str(lake), "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].replace('"', "") == "symbol,n"
    assert out[1:] == ["\"BTC\",24", "\"ETH\",24", "\"SOL\",24", "\"XRP\",24"]
    assert main(["sql", "SELECT count(*) AS n FROM slot_resolutions", "--lake", str(lake)]) == 0
    assert "32" in capsys.readouterr().out
    out_file = tmp_path / "r.parquet"
    assert main(["sql", "SELECT * FROM slot_resolutions", "--lake", str(lake), "--format",
                 "parquet", "--out", str(out_file)]) == 0
    assert pq.read_table(out_file).num_rows == db.count(RESOLUTIONS)


def test_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    from slotml.lake.manifest import Manifest, write_manifest

    write_manifest(tmp_path, Manifest())  # an empty lake: typed, empty views
    assert main(["sql", "SELECT count(*) FROM slot_snapshots", "--lake", str(tmp_path)]) == 0
    assert main(["sql", "SELECT nope FROM slot_snapshots", "--lake", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slotml sql: error: query failed") and err.count("\n") == 1
    assert main(["export", "--db", f"sqlite:///{tmp_path}/missing.db", "--lake",
                 str(tmp_path / "lake")]) == 2
    assert "does not exist" in capsys.readouterr().err
