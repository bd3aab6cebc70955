"""The model file format, agreed between train/ (writer) and serve/ (reader).

One ONNX file ``<data-dir>/models/td_model_YYYYMMDD_HHMMSS.onnx`` holds XGBoost and the
calibration in ONE graph: input ``features`` (float32 [N, n_features], contract order), output
``p_up`` (float32 [N] or [N, 1], calibrated P(Up)). Everything else the scorer and the online
feature builder need travels in the file's ``metadata_props`` (string values, JSON where
structured), so a model is self-describing and nothing is ever unpickled.

This module is deliberately light (stdlib only): train/ imports its key names, and the reader
validates them here, so the two sides can never drift. ``<data-dir>/models/current`` is a small
text file (or a symlink) naming the promoted model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from slotml.errors import UserError

FORMAT = "slotml-td-model/1"

INPUT_NAME = "features"
OUTPUT_NAME = "p_up"

# metadata_props keys
KEY_FORMAT = "slotml_format"
KEY_VERSION = "slotml_version"
KEY_CONTRACT = "feature_contract"
KEY_FEATURES = "features"
KEY_STATS = "stats"
KEY_DECISION_POINTS = "decision_points"
KEY_WINDOW_S = "window_s"
KEY_CALIBRATION = "calibration"
KEY_SPLITS = "splits"
KEY_LAKE_MANIFEST_ID = "lake_manifest_id"
KEY_METRICS = "metrics"
KEY_CREATED_AT = "created_at"

ALL_KEYS = (
    KEY_FORMAT, KEY_VERSION, KEY_CONTRACT, KEY_FEATURES, KEY_STATS, KEY_DECISION_POINTS,
    KEY_WINDOW_S, KEY_CALIBRATION, KEY_SPLITS, KEY_LAKE_MANIFEST_ID, KEY_METRICS, KEY_CREATED_AT,
)
# What the reader cannot work without; the rest is descriptive (defaults when absent).
REQUIRED_KEYS = (
    KEY_FORMAT, KEY_VERSION, KEY_CONTRACT, KEY_FEATURES, KEY_STATS, KEY_DECISION_POINTS,
    KEY_WINDOW_S, KEY_CALIBRATION,
)
CALIBRATIONS = ("isotonic", "platt")

MODELS_SUBDIR = "models"
CURRENT_POINTER = "current"  # <data-dir>/models/current
MODEL_FILE_PREFIX = "td_model_"
MODEL_FILE_SUFFIX = ".onnx"
MODEL_FILE_TIME_FORMAT = "%Y%m%d_%H%M%S"  # td_model_YYYYMMDD_HHMMSS.onnx (UTC)


class ModelFileError(UserError):
    """A model file that is missing, corrupt, not ours, or does not match this contract."""


@dataclass(frozen=True)
class ModelMeta:
    """A model file's metadata, parsed and checked."""

    features: tuple[str, ...]
    decision_points: tuple[float, ...]  # fractions of the window, ascending
    window_s: int
    stats: dict[str, Any] = field(default_factory=dict)
    calibration: str = "isotonic"
    feature_contract: str = ""
    slotml_version: str = ""
    splits: dict[str, Any] = field(default_factory=dict)
    lake_manifest_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format: str = FORMAT

    @property
    def n_features(self) -> int:
        return len(self.features)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` strings for this metadata (what train/ writes)."""
        return {
            KEY_FORMAT: self.format,
            KEY_VERSION: str(self.slotml_version),
            KEY_CONTRACT: str(self.feature_contract),
            KEY_FEATURES: json.dumps(list(self.features)),
            KEY_STATS: json.dumps(self.stats, sort_keys=True),
            KEY_DECISION_POINTS: json.dumps(list(self.decision_points)),
            KEY_WINDOW_S: json.dumps(int(self.window_s)),
            KEY_CALIBRATION: self.calibration,
            KEY_SPLITS: json.dumps(self.splits, sort_keys=True),
            KEY_LAKE_MANIFEST_ID: json.dumps(self.lake_manifest_id),
            KEY_METRICS: json.dumps(self.metrics, sort_keys=True),
            KEY_CREATED_AT: self.created_at,
        }


def _json(meta: dict[str, str], key: str, source: str) -> Any:
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{source}: metadata {key!r} is not valid JSON ({e})") from None


def _optional_json(meta: dict[str, str], key: str, source: str, default: Any) -> Any:
    if key not in meta or meta[key] in ("", None):
        return default
    return _json(meta, key, source)


def feature_difference(got: list[str] | tuple[str, ...], want: list[str] | tuple[str, ...]) -> str:
    """A one-line description of how two feature lists differ (for error messages)."""
    missing = [f for f in want if f not in got]
    extra = [f for f in got if f not in want]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unknown {extra}")
    if not parts:
        for i, (a, b) in enumerate(zip(got, want, strict=False)):
            if a != b:
                parts.append(f"order differs at position {i} ({a!r} where the contract has {b!r})")
                break
        else:
            parts.append(f"{len(got)} features where the contract has {len(want)}")
    return "; ".join(parts)


def validate_metadata(
    meta: dict[str, str],
    contract_features: list[str] | tuple[str, ...] | None,
    *,
    source: str = "model file",
    contract_version: str | None = None,
) -> ModelMeta:
    """Parse and check a model file's ``metadata_props``; raise ``ModelFileError`` with the reason.

    ``contract_features`` is the running code's feature list (features/contract.py); a model
    whose list differs in names or order is refused (``None`` skips that check, for tools that
    only inspect a file). ``contract_version``, when given, must equal the file's too.
    """
    fmt = meta.get(KEY_FORMAT)
    if fmt is None:
        raise ModelFileError(f"{source}: not a slotml model (no {KEY_FORMAT!r} in its metadata)")
    if fmt != FORMAT:
        raise ModelFileError(f"{source}: not a slotml model of this version "
                             f"({KEY_FORMAT}={fmt!r}, expected {FORMAT!r})")
    absent = [k for k in REQUIRED_KEYS if k not in meta]
    if absent:
        raise ModelFileError(f"{source}: metadata lacks {absent}")

    features = _json(meta, KEY_FEATURES, source)
    if (not isinstance(features, list) or not features
            or not all(isinstance(f, str) and f for f in features)):
        raise ModelFileError(f"{source}: metadata {KEY_FEATURES!r} must be a non-empty JSON list of names")
    if len(set(features)) != len(features):
        raise ModelFileError(f"{source}: metadata {KEY_FEATURES!r} repeats a name")
    if contract_features is not None and list(features) != list(contract_features):
        raise ModelFileError(
            f"{source}: its features differ from this version's feature contract "
            f"({feature_difference(features, list(contract_features))}); retrain with this version"
        )

    contract = str(meta[KEY_CONTRACT])
    if contract_version is not None and contract != str(contract_version):
        raise ModelFileError(f"{source}: built for feature contract {contract!r}, "
                             f"this version implements {contract_version!r}; retrain")

    stats = _json(meta, KEY_STATS, source)
    if not isinstance(stats, dict):
        raise ModelFileError(f"{source}: metadata {KEY_STATS!r} must be a JSON object")

    dps = _json(meta, KEY_DECISION_POINTS, source)
    if (not isinstance(dps, list) or not dps
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in dps)):
        raise ModelFileError(f"{source}: metadata {KEY_DECISION_POINTS!r} must be a non-empty list of fractions")
    dps = [float(x) for x in dps]
    if not all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in dps) or dps != sorted(dps):
        raise ModelFileError(f"{source}: {KEY_DECISION_POINTS!r} must be ascending fractions in [0, 1], got {dps}")

    window_s = _json(meta, KEY_WINDOW_S, source)
    if isinstance(window_s, bool) or not isinstance(window_s, int) or window_s <= 0:
        raise ModelFileError(f"{source}: metadata {KEY_WINDOW_S!r} must be a positive integer, got {window_s!r}")

    calibration = meta[KEY_CALIBRATION]
    if calibration not in CALIBRATIONS:
        raise ModelFileError(f"{source}: unknown calibration {calibration!r} (expected one of {CALIBRATIONS})")

    splits = _optional_json(meta, KEY_SPLITS, source, {})
    metrics = _optional_json(meta, KEY_METRICS, source, {})
    manifest = _optional_json(meta, KEY_LAKE_MANIFEST_ID, source, None)
    if not isinstance(splits, dict) or not isinstance(metrics, dict):
        raise ModelFileError(f"{source}: metadata {KEY_SPLITS!r} and {KEY_METRICS!r} must be JSON objects")
    if manifest is not None and (isinstance(manifest, bool) or not isinstance(manifest, int)):
        raise ModelFileError(f"{source}: metadata {KEY_LAKE_MANIFEST_ID!r} must be an integer or null")

    return ModelMeta(
        features=tuple(features),
        decision_points=tuple(dps),
        window_s=int(window_s),
        stats=stats,
        calibration=calibration,
        feature_contract=contract,
        slotml_version=str(meta[KEY_VERSION]),
        splits=splits,
        lake_manifest_id=manifest,
        metrics=metrics,
        created_at=str(meta.get(KEY_CREATED_AT, "")),
    )
