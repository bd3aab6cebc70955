"""A lake whose manifest lists a file that is gone: readers say which and what to run (one line,
exit 2), and a plain incremental ``slotml export`` repairs it from the store (no ``--full``).
Before issue 19: ``slotml sql``, ``slotml train`` and incremental ``export`` ended in a traceback,
and ``slotml sql`` on a lake path that does not exist printed 0 rows with exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotml.cli import main
from slotml.ingest.schema import SNAPSHOTS
from slotml.lake import connect, read_manifest
from slotml.lake.query import LakeFilesMissing
from slotml.settings import DbUrl
from tests.lake.storedb import populate

COUNT = "SELECT count(*) AS n FROM slot_snapshots"


def _export(db: DbUrl, lake: Path) -> int:
    return main(["export", "--db", db.raw, "--lake", str(lake), "--grace", "0"])


def _one_line(capsys) -> str:
    """The one error line (start-up log lines, stamped, may precede it); no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [x for x in err.strip().splitlines() if not x[:4].isdigit()]
    assert len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


@pytest.fixture
def lake_with_a_hole(sqlite_db: DbUrl, tmp_path: Path) -> tuple[DbUrl, Path, str]:
    populate(sqlite_db, n_slots=8)
    lake = tmp_path / "lake"
    assert _export(sqlite_db, lake) == 0
    gone = read_manifest(lake).files(SNAPSHOTS.name)[0].path
    (lake / gone).unlink()
    return sqlite_db, lake, gone


def test_readers_name_the_missing_file_and_the_fix(lake_with_a_hole, capsys) -> None:
    _db, lake, gone = lake_with_a_hole
    capsys.readouterr()
    assert main(["sql", COUNT, "--lake", str(lake)]) == 2
    line = _one_line(capsys)
    assert gone in line and "slotml export" in line and line.startswith("slotml sql: error:")
    assert main(["train", "--lake", str(lake), "--data-dir", str(lake.parent)]) == 2
    line = _one_line(capsys)
    assert gone in line and "slotml export" in line
    with pytest.raises(LakeFilesMissing) as ei:
        connect(lake)
    assert ei.value.missing == [gone]


def test_incremental_export_repairs_without_full(lake_with_a_hole, capsys) -> None:
    db, lake, gone = lake_with_a_hole
    before = read_manifest(lake)
    assert _export(db, lake) == 0  # no --full
    after = read_manifest(lake)
    assert after.id == before.id + 1
    assert all((lake / p).is_file() for p in after.live_paths())
    capsys.readouterr()
    assert main(["sql", COUNT, "--lake", str(lake), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == str(8 * 3 * 4)  # every row is back
    # the other table was not touched: only the table with the hole was rebuilt
    res = "slot_resolutions"
    assert [f.path for f in after.files(res)] == [f.path for f in before.files(res)]


def test_sql_on_a_lake_that_does_not_exist_is_an_error(tmp_path: Path, capsys) -> None:
    assert main(["sql", COUNT, "--lake", str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_line(capsys)
    assert main(["sql", COUNT, "--data-dir", str(tmp_path)]) == 2  # the default lake under it
    assert "no lake at" in _one_line(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["sql", COUNT, "--lake", str(tmp_path / "empty")]) == 2  # a folder, not a lake
    assert "slotml export" in _one_line(capsys)


def test_export_to_an_unwritable_lake_is_one_line(sqlite_db: DbUrl, tmp_path: Path, capsys) -> None:
    populate(sqlite_db, n_slots=2)
    for lake in ("/proc/nope", str(tmp_path / "file")):
        (tmp_path / "file").write_text("x")
        assert main(["export", "--db", sqlite_db.raw, "--lake", lake]) == 2
        assert "--lake" in _one_line(capsys)


def test_train_on_an_empty_lake_names_the_real_export_command(tmp_path: Path, capsys) -> None:
    from slotml.lake.manifest import Manifest, write_manifest

    write_manifest(tmp_path / "lake", Manifest())
    assert main(["train", "--data-dir", str(tmp_path)]) == 2
    line = _one_line(capsys)
    assert "`slotml export`" in line and "lake export" not in line
