"""`slotml features` end to end over a small lake (Parquet files + the lake's manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from slotml.cli import main
from slotml.features.build import build_training_set, fit_stats, read_training_set
from slotml.features.contract import CONTRACT_VERSION, DEFAULT_POINTS, FEATURES
from slotml.features.synth import SynthConfig, generate
from slotml.lake import connect
from slotml.lake.manifest import FileEntry, Manifest, TableState, write_manifest

CFG = SynthConfig(n_windows=200, p_missing=0.05, p_one_sided=0.05, p_unresolved=0.05,
                  symbols=("BTC", "ETH"), seed=3)  # 200 windows = 2026-01-01 .. 01-03 02:00


def _lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    snaps, res = generate(CFG)
    tables = {}
    for name, table in (("slot_snapshots", snaps), ("slot_resolutions", res)):
        files = []
        for sym in CFG.symbols:
            part = table.filter(pc.equal(table["symbol"], sym))
            rel = f"{name}/symbol={sym}/date=2026-01-01/part-0.parquet"
            (lake / rel).parent.mkdir(parents=True)
            pq.write_table(part, lake / rel)
            files.append(FileEntry(rel, part.num_rows, sym, "2026-01-01", 0.0))
        tables[name] = TableState(files=files)
    write_manifest(lake, Manifest(id=7, created_at=1.0, tables=tables))
    return lake


def test_features_command_writes_the_set_with_its_contract(tmp_path: Path, capsys) -> None:
    lake = _lake(tmp_path)
    out = tmp_path / "ts.parquet"
    rc = main(["features", "--data-dir", str(tmp_path), "--lake", str(lake), "--out", str(out),
               "--resolved-only", "--fit-before", "2026-01-02"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    table, meta = read_training_set(out)
    assert summary["rows"] == table.num_rows > 0 and summary["windows"] > 300
    assert table.column("resolved_up").null_count == 0
    assert meta["features"] == list(FEATURES) and meta["decision_points"] == list(DEFAULT_POINTS)
    assert meta["tolerance"] == 1 / 15 and meta["lookback"] == 2 / 15
    assert meta["feature_contract"] == str(CONTRACT_VERSION)
    assert meta["lake_manifest_id"] == 7
    # the stats were fitted on the first day only: the same as fitting them directly
    con = connect(lake)
    direct = fit_stats(con, "slot_ts < ?", [1_767_312_000])
    assert meta["stats"]["move_vol_per_min"] == pytest.approx(direct["move_vol_per_min"], rel=1e-12)
    # and the file equals build_training_set over the lake's views with those stats
    again = build_training_set(con, stats=meta["stats"], resolved_only=True)
    assert again.column_names == table.column_names
    for name in FEATURES:
        a, b = table.column(name).to_numpy(), again.column(name).to_numpy()
        assert ((a == b) | ((a != a) & (b != b))).all(), name

    # --stats reuses a fitted table (here: the file's own metadata dumped to JSON)
    stats_file = tmp_path / "stats.json"
    stats_file.write_text(json.dumps({"stats": meta["stats"]}))
    out2 = tmp_path / "ts2.parquet"
    assert main(["features", "--lake", str(lake), "--out", str(out2), "--stats", str(stats_file),
                 "--symbols", "eth", "--points", "7/15", "--from", "2026-01-02"]) == 0
    t2 = pq.read_table(out2)
    assert set(t2.column("symbol").to_pylist()) == {"ETH"}
    assert set(t2.column("point").to_pylist()) == {7 / 15}
    assert min(t2.column("slot_ts").to_pylist()) >= 1_767_312_000


@pytest.mark.parametrize(("argv", "message"), [
    (["--points", "5/15,2"], "--points"),
    (["--tolerance", "0"], "--tolerance"),
    (["--from", "2026-13-01"], "--from"),
    (["--stats", "/nonexistent/stats.json"], "no such file"),
    ([], "no snapshot rows"),  # an empty lake
])
def test_operator_errors_are_one_line(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    rc = main(["features", "--data-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_a_selection_with_no_decision_rows_is_a_clear_error(tmp_path: Path, capsys) -> None:
    lake = _lake(tmp_path)
    rc = main(["features", "--lake", str(lake), "--out", str(tmp_path / "x.parquet"),
               "--from", "2026-01-01", "--to", "2026-01-01", "--tolerance", "0.0001",
               "--points", "0.51"])
    assert rc == 2 and "no decision rows" in capsys.readouterr().err


def test_read_training_set_refuses_a_foreign_file(tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not a slotml training set"):
        read_training_set(tmp_path / "x.parquet")
