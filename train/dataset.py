"""The in-memory training set train/ works on: one row per (window, decision point).

Decoupled from how it was built (features/ over the lake, or a synthetic generator) so that
split, fit, export and metrics are testable on their own. Columns are numpy arrays of equal
length; ``X`` is float32 in feature-contract order with NaN for missing values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slotml.features.contract import DEFAULT_LOOKBACK, DEFAULT_TOLERANCE


@dataclass
class TrainingSet:
    X: np.ndarray  # float32 [n, n_features], contract order, NaN = missing
    y: np.ndarray  # int8 [n]: 1 = Up won, 0 = Down won (resolved rows only)
    symbol: np.ndarray  # str [n]
    slot_ts: np.ndarray  # int64 [n], window start (s)
    tick_ms: np.ndarray  # int64 [n], the snapshot tick the row was taken from
    point: np.ndarray  # float64 [n], decision point as a fraction of the window
    feature_names: list[str]
    window_s: int
    decision_points: list[float]
    # Baseline inputs, same rows (None when the source cannot provide them):
    up_mid: np.ndarray | None = None  # the book's P(Up) at the tick (see metrics.book_probability)
    spot_move_pct: np.ndarray | None = None  # signed spot move, percent (the manual filters' input)
    stats: dict[str, Any] = field(default_factory=dict)  # fitted statistics for the online builder
    contract_version: str = ""
    tolerance: float = DEFAULT_TOLERANCE  # of the window: the features were built with these
    lookback: float = DEFAULT_LOOKBACK
    lake_manifest_id: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)  # rows left out and why (e.g. unresolved)

    def __post_init__(self) -> None:
        n = len(self.y)
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        if self.X.ndim != 2 or self.X.shape[0] != n or self.X.shape[1] != len(self.feature_names):
            raise ValueError(
                f"X has shape {self.X.shape}; expected ({n}, {len(self.feature_names)})"
            )
        self.y = np.asarray(self.y, dtype=np.int8)
        self.slot_ts = np.asarray(self.slot_ts, dtype=np.int64)
        self.tick_ms = np.asarray(self.tick_ms, dtype=np.int64)
        self.point = np.asarray(self.point, dtype=np.float64)
        self.symbol = np.asarray(self.symbol).astype(str)
        for name in ("symbol", "slot_ts", "tick_ms", "point", "up_mid", "spot_move_pct"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"column {name} has {len(col)} rows, y has {n}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def take(self, mask: np.ndarray) -> TrainingSet:
        """The rows selected by a boolean mask (or index array), all columns alike."""
        opt = lambda a: None if a is None else a[mask]  # noqa: E731
        return TrainingSet(
            X=self.X[mask], y=self.y[mask], symbol=self.symbol[mask], slot_ts=self.slot_ts[mask],
            tick_ms=self.tick_ms[mask], point=self.point[mask], feature_names=self.feature_names,
            window_s=self.window_s, decision_points=self.decision_points,
            up_mid=opt(self.up_mid), spot_move_pct=opt(self.spot_move_pct), stats=self.stats,
            contract_version=self.contract_version, tolerance=self.tolerance,
            lookback=self.lookback, lake_manifest_id=self.lake_manifest_id,
            skipped=self.skipped,
        )

    def n_windows(self, mask: np.ndarray | None = None) -> int:
        """Distinct (asset, window) pairs among the selected rows."""
        sym, slot = (self.symbol, self.slot_ts) if mask is None else (self.symbol[mask], self.slot_ts[mask])
        if len(slot) == 0:
            return 0
        _, codes = np.unique(sym, return_inverse=True)
        return int(len(np.unique((codes.astype(np.int64) << 40) | slot)))  # slot_ts < 2**40
