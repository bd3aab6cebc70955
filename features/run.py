"""``slotml features``: the training set from the lake into one Parquet file, with a summary.

The file carries the contract (features in order, decision points, tolerance, lookback: under
the model file's key names, ``slotml.model_file``) and the fitted statistics in its Parquet
metadata (key ``slotml.features``), so it can be read alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slotml.errors import UserError
from slotml.features.contract import parse_fraction, parse_points

log = logging.getLogger("slotml.features")


@dataclass(frozen=True)
class FeaturesConfig:
    lake_dir: Path
    out: Path
    points: tuple[float, ...]
    tolerance: float
    lookback: float
    window_s: int | None = None
    symbols: tuple[str, ...] = ()
    slot_from: int | None = None  # epoch s, inclusive
    slot_to: int | None = None  # epoch s, exclusive
    resolved_only: bool = False
    stats_path: Path | None = None
    fit_before: int | None = None  # epoch s; None = fit on the selected windows


def _day(text: str, flag: str) -> int:
    try:
        d = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected a day as YYYY-MM-DD") from None
    return int(d.timestamp())


def config_from_args(args: argparse.Namespace) -> FeaturesConfig:
    from slotml.settings import CommonSettings

    s = CommonSettings.from_args(args)
    try:
        points = parse_points(args.points)
    except ValueError as e:
        raise UserError(f"--points: {e}") from None
    return FeaturesConfig(
        lake_dir=args.lake or s.lake_dir,
        out=args.out or s.data_dir / "features" / "training_set.parquet",
        points=points,
        tolerance=parse_fraction(args.tolerance, "--tolerance"),
        lookback=parse_fraction(args.lookback, "--lookback"),
        window_s=args.window_s,
        symbols=tuple(x.strip().upper() for x in (args.symbols or "").split(",") if x.strip()),
        slot_from=_day(args.date_from, "--from") if args.date_from else None,
        slot_to=_day(args.date_to, "--to") + 86_400 if args.date_to else None,
        resolved_only=args.resolved_only,
        stats_path=args.stats,
        fit_before=_day(args.fit_before, "--fit-before") if args.fit_before else None,
    )


def load_stats(path: Path) -> dict[str, Any]:
    """Statistics from a JSON file: bare, or under a ``stats`` key (a model card, metadata)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"--stats {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise UserError(f"--stats {path}: not readable JSON ({e})") from None
    if isinstance(data, dict) and "move_vol_per_min" not in data and isinstance(data.get("stats"), dict):
        data = data["stats"]
    if not isinstance(data, dict) or not isinstance(data.get("move_vol_per_min"), dict):
        raise UserError(f"--stats {path}: no move_vol_per_min table in it")
    return data


def _fit_filter(cfg: FeaturesConfig) -> tuple[str, list[Any]]:
    where, params = ["TRUE"], []
    if cfg.window_s is not None:
        where.append("window_s = ?")
        params.append(cfg.window_s)
    if cfg.symbols:
        where.append("list_contains(?, symbol)")
        params.append(list(cfg.symbols))
    if cfg.slot_from is not None:
        where.append("slot_ts >= ?")
        params.append(cfg.slot_from)
    upper = cfg.fit_before if cfg.fit_before is not None else cfg.slot_to
    if upper is not None:
        where.append("slot_ts < ?")
        params.append(upper)
    return " AND ".join(where), params


def build_file(con: Any, cfg: FeaturesConfig, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit or load the stats, build the set on ``con``, write ``cfg.out``; returns a summary."""
    from slotml.features.build import build_training_set, fit_stats, write_training_set

    t0 = time.perf_counter()
    if cfg.stats_path is not None:
        stats = load_stats(cfg.stats_path)
    else:
        stats = fit_stats(con, *_fit_filter(cfg))
        if not stats["move_vol_per_min"]:
            raise UserError("no snapshot rows with a move to fit the statistics on: is the lake "
                            f"at {cfg.lake_dir} exported (slotml export) and the selection right?")
    t_fit = time.perf_counter() - t0
    try:
        table = build_training_set(
            con, cfg.points, stats, tolerance=cfg.tolerance, lookback=cfg.lookback,
            resolved_only=cfg.resolved_only, window_s=cfg.window_s, symbols=cfg.symbols or None,
            slot_from=cfg.slot_from, slot_to=cfg.slot_to,
        )
    except ValueError as e:
        raise UserError(f"lake at {cfg.lake_dir}: {e}") from None
    t_build = time.perf_counter() - t0 - t_fit
    if table.num_rows == 0:
        raise UserError(f"no decision rows: the lake at {cfg.lake_dir} has no snapshots within "
                        "the tolerance of a decision point for this selection "
                        "(export it first: slotml export)")
    write_training_set(table, cfg.out, points=cfg.points, tolerance=cfg.tolerance,
                       lookback=cfg.lookback, stats=stats, extra=extra_meta)
    import pyarrow.compute as pc

    per_point = {f"{p:.4f}": int(pc.sum(pc.equal(table["point"], p)).as_py() or 0) for p in cfg.points}
    windows = table.select(["symbol", "window_s", "slot_ts"]).group_by(
        ["symbol", "window_s", "slot_ts"]).aggregate([]).num_rows
    return {
        "out": str(cfg.out), "rows": table.num_rows, "windows": windows, "per_point": per_point,
        "resolved_rows": table.num_rows - table["resolved_up"].null_count,
        "fit_s": round(t_fit, 3), "build_s": round(t_build, 3),
    }


def run_features(cfg: FeaturesConfig) -> int:
    from slotml.lake import connect

    con = connect(cfg.lake_dir)
    extra: dict[str, Any] = {}
    try:
        from slotml.lake import read_manifest

        extra["lake_manifest_id"] = getattr(read_manifest(cfg.lake_dir), "id", None)
    except Exception:  # noqa: BLE001 - the id is informative only
        pass
    summary = build_file(con, cfg, extra)
    log.info("training set: %(rows)d rows from %(windows)d windows (%(resolved_rows)d resolved), "
             "points %(per_point)s; fit %(fit_s).2fs, build %(build_s).2fs -> %(out)s", summary)
    print(json.dumps(summary))
    return 0
