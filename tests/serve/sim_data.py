"""Fixture data for the API and dashboard tests: the sim's backfill into a real SQLite store,
exported to a real lake, and (for the dashboard) a tiny model file with train-style splits.

One day of the 5m family (288 windows per asset, 10 snapshots each on the collector's 30 s
grid) is enough to exercise every filter and chart in a second or two.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slotml.settings import DbUrl

END = 1_795_000_200  # 2026-11-18 ~11:10 UTC, a 5m boundary after flooring


def backfill_store(path: Path, *, family: str = "5m", days: float = 1.0, seed: int = 3,
                   symbols: tuple[str, ...] = ("BTC", "ETH"),
                   unresolved_fraction: float = 0.03) -> DbUrl:
    """A SQLite store holding ``days`` of sim history (the collector's rows, exactly)."""
    from slotml.sim.backfill import generate, write_store
    from slotml.sim.config import SimConfig

    url = DbUrl(scheme="sqlite", path=path)
    cfg = SimConfig(family=family, symbols=symbols, seed=seed,
                    unresolved_fraction=unresolved_fraction)
    bf = generate(cfg, days, END, missing_fraction=0.01)
    asyncio.run(write_store(bf, url))
    return url


def export_lake(url: DbUrl, lake_dir: Path) -> Path:
    from slotml.lake.export import ExportConfig, run_export

    run_export(ExportConfig(db=url, lake_dir=lake_dir, fsync=False, progress_s=1e9))
    return lake_dir


def tiny_model(models_dir: Path, lake_dir: Path, window_s: int = 300) -> Path:
    """A logistic model on the move (no xgboost: instant) whose metadata names train/test
    slices of the lake's windows, as train/ writes them: the first 60 % trained on, the next
    20 % test days, the rest "later"."""
    from slotml.features.contract import CONTRACT_VERSION, FEATURES
    from slotml.lake import connect
    from tests.serve.models import make_model

    con = connect(lake_dir)
    try:
        slots = [r[0] for r in con.execute(
            "SELECT DISTINCT slot_ts FROM slot_snapshots WHERE window_s = ? ORDER BY 1",
            [window_s]).fetchall()]
    finally:
        con.close()
    assert len(slots) >= 10, "not enough windows for a split"
    a, b = slots[int(len(slots) * 0.6)], slots[int(len(slots) * 0.8)]
    splits = {"train": {"from": slots[0], "to": a - window_s, "windows": 0, "rows": 0},
              "calibration": {"from": a - window_s, "to": a - window_s, "windows": 0, "rows": 0},
              "test": {"from": a, "to": b, "windows": 0, "rows": 0}, "embargo_windows": 0}
    weights = [0.0] * len(FEATURES)
    weights[FEATURES.index("move_z")] = 1.7
    path = make_model(models_dir / "td_model_20261118_120000.onnx", list(FEATURES), weights,
                      window_s=window_s, stats={"move_vol_per_min": {}, "default_move_vol_per_min": 0.05},
                      meta_over={"splits": json.dumps(splits),
                                 "feature_contract": str(CONTRACT_VERSION),
                                 "importance": json.dumps(tiny_importance())})
    (models_dir / "current").write_text(path.name + "\n")
    return path


def tiny_importance() -> dict[str, Any]:
    """The tiny model's ``importance`` key, as train writes it: the model reads move_z alone, so
    shuffling any other column changes nothing (0) and move_z holds all the gain. (Fixture
    values for the dashboard to show; train/'s own test measures real ones.)"""
    from slotml.features.contract import FEATURES

    zero = dict.fromkeys(FEATURES, 0.0)
    return {"gain": {**zero, "move_z": 12.5}, "permutation": {**zero, "move_z": 0.031},
            "permutation_std": {**zero, "move_z": 0.002}, "metric": "brier",
            "slice": "calibration", "base": 0.21, "rows": 1000, "repeats": 3, "seed": 0}


_SHARED: dict[Path, dict[str, Any]] = {}


def shared_sim_data(base: Path) -> dict[str, Any]:
    """One backfilled store + exported lake + tiny model per test session (read-only users
    share it: the backfill and export cost seconds). ``base``: the session's basetemp."""
    base = Path(base)
    if base not in _SHARED:
        d = base / "serve_sim_data"
        d.mkdir(parents=True, exist_ok=True)
        url = backfill_store(d / "store.db")
        lake = export_lake(url, d / "lake")
        model = tiny_model(d / "models", lake)
        _SHARED[base] = {"dir": d, "url": url, "db": d / "store.db", "lake": lake, "model": model}
    return _SHARED[base]


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app on uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    from tests.util import free_port, wait_for

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    t = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    t.start()
    try:
        wait_for(lambda: server.started or not t.is_alive(), timeout=20, what="uvicorn start")
        assert server.started, "the API did not start (see the log above)"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)
