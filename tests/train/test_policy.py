"""train --policy: thresholds chosen on the policy slice (maker-queue fills over the lake's
tape), written to the model file and card; --policy design writes no policy key."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slotml.backtest.choose import KELLY_FRACTIONS, MIN_EDGES
from slotml.features.contract import CONTRACT_VERSION, FEATURES
from slotml.features.synth import SynthConfig, generate
from slotml.lake.manifest import FileEntry, read_manifest, write_manifest
from slotml.model_file import validate_metadata

from .test_pipeline import FAST, write_lake


def _tape(snaps: pa.Table) -> pa.Table:
    """Every snapshot's Up and Down bids sold into, 1000 shares, 2 s after the tick."""
    parts = []
    for outcome, col in (("Up", "bid_up"), ("Down", "bid_down")):
        t = snaps.filter(pc.is_valid(snaps[col]))
        n = t.num_rows
        parts.append(pa.table({
            "symbol": t["symbol"], "window_s": t["window_s"], "slot_ts": t["slot_ts"],
            "token_id": pa.array([outcome.lower()] * n), "outcome": pa.array([outcome] * n),
            "condition_id": pa.array(["0x1"] * n), "price": t[col],
            "size": pa.array([1000.0] * n), "side": pa.array(["SELL"] * n),
            "ts_ms": pc.add(t["tick_ms"], 2000), "occurrence": pa.array([0] * n, pa.int32())}))
    return pa.concat_tables(parts)


def write_lake_with_tape(d: Path, n_windows: int, seed: int) -> None:
    """A synthetic lake in ``d/lake`` with ``_tape``'s prints as its ``slot_trades``."""
    snaps, res = generate(SynthConfig(n_windows=n_windows, seed=seed, p_missing=0.02, p_one_sided=0.02))
    write_lake(d / "lake", snaps, res)
    trades = _tape(snaps)
    pq.write_table(trades, d / "lake" / "slot_trades.parquet")
    m = read_manifest(d / "lake")
    m.tables["slot_trades"] = type(m.tables["slot_snapshots"])(files=[FileEntry(
        path="slot_trades.parquet", rows=trades.num_rows, symbol="ALL", date="", max_updated_at=0.0)])
    write_manifest(d / "lake", m)


def _lake(d: Path) -> None:
    write_lake_with_tape(d, 160, 3)


def _meta(d: Path) -> object:
    name = (d / "models" / "current").read_text().strip()
    props = {p.key: p.value for p in onnx.load(d / "models" / name).metadata_props}
    return validate_metadata(props, list(FEATURES), contract_version=str(CONTRACT_VERSION)), name


def test_train_chooses_the_edge_policy_on_its_slice(tmp_path: Path, capsys) -> None:
    from slotml.cli import main

    _lake(tmp_path)
    rc = main(["train", "--data-dir", str(tmp_path), "--test-days", "0.3", "--promote",
               "--params", json.dumps(FAST)])
    out = capsys.readouterr().out
    assert rc == 0, out
    meta, name = _meta(tmp_path)
    pol = meta.policy
    assert pol["name"] == "edge" and pol["fill"] == "maker-queue" and len(pol["grid"]) == len(MIN_EDGES) * len(KELLY_FRACTIONS)
    assert (pol["min_edge"], pol["kelly_fraction"]) in {(g["min_edge"], g["kelly_fraction"]) for g in pol["grid"]}
    # the slice lies after calibration, before the test days
    sp = meta.splits
    assert sp["calibration"]["to"] < sp["policy"]["from"] <= sp["policy"]["to"] < sp["test"]["from"]
    assert pol["slice"]["from"] == sp["policy"]["from"]
    card = json.loads((tmp_path / "models" / name.replace(".onnx", "_card.json")).read_text())
    assert card["entry_policy"]["chosen"]["min_edge"] == pol["min_edge"]
    assert "entry policy: edge, min_edge" in out and "model beats filters as a maker:" in out
    assert "maker-queue" in out and "unavailable" not in out


def test_train_policy_design_writes_no_policy_key(tmp_path: Path, capsys) -> None:
    from slotml.cli import main

    _lake(tmp_path)
    assert main(["train", "--data-dir", str(tmp_path), "--test-days", "0.3", "--promote",
                 "--policy", "design", "--params", json.dumps(FAST)]) == 0
    meta, _ = _meta(tmp_path)
    assert meta.policy is None and meta.splits["policy"] is None
    assert "entry policy: design rule" in capsys.readouterr().out


def test_split_layout_recent_through_the_cli(tmp_path: Path, capsys) -> None:
    """--split-layout recent: calibration | policy | fit | early stop | test in the model file
    and card; the policy is still chosen on its own slice (now before the fit), the feature
    statistics on the booster's days only; a bad value is one line, exit 2."""
    import pytest

    from slotml.cli import main

    _lake(tmp_path)
    rc = main(["train", "--data-dir", str(tmp_path), "--test-days", "0.3", "--promote",
               "--split-layout", "recent", "--params", json.dumps(FAST)])
    out = capsys.readouterr().out
    assert rc == 0, out
    meta, name = _meta(tmp_path)
    sp = meta.splits
    assert sp["layout"] == "recent"
    assert (sp["calibration"]["to"] < sp["policy"]["from"] <= sp["policy"]["to"] < sp["train"]["from"]
            <= sp["early_stop"]["from"] <= sp["train"]["to"] == sp["early_stop"]["to"]
            < sp["test"]["from"])
    assert sp["test"]["from"] - sp["train"]["to"] == 2 * 900  # one embargo window between
    pol = meta.policy
    assert pol["name"] == "edge" and pol["slice"]["from"] == sp["policy"]["from"]
    # statistics: the training slice's windows only (not the calibration and policy days)
    fitted = sum(meta.stats["fit_windows"].values())
    assert fitted == 4 * ((sp["train"]["to"] - sp["train"]["from"]) // 900 + 1)
    card = json.loads((tmp_path / "models" / name.replace(".onnx", "_card.json")).read_text())
    assert card["splits"]["layout"] == "recent"
    with pytest.raises(SystemExit) as e:  # argparse's errors exit; UserErrors return 2
        raise SystemExit(main(["train", "--data-dir", str(tmp_path), "--split-layout", "sideways"]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--split-layout" in err and "'sideways'" in err, err
