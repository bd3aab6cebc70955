"""THE model file contract: train/ writes it, serve/ and trading bots read it (stdlib only).

One ONNX file ``<data-dir>/models/td_model_YYYYMMDD_HHMMSS.onnx`` (UTC) holds XGBoost and the
calibration in ONE graph: input ``features`` (float32 [N, n_features], contract order), output
``p_up`` (float32 [N] or [N, 1], calibrated P(Up)). Everything else a reader needs travels in
the file's ``metadata_props`` (string values: text keys as they are, the others JSON), so a
model is self-describing and nothing is ever unpickled. ``KEYS`` below is the one table of
those keys; ``ModelMeta``, ``to_metadata`` and ``validate_metadata`` are built from it.

Format ``slotml-td-model/2`` (``FORMAT``); keys, as in ``KEYS`` ("required" = a file of this
format without it is refused; "format 1" = the value a format-1 file lacking it is read with):

==================  ===========  ========  ==========  =====  =========================================
key                 type         default   format 1    since  meaning
==================  ===========  ========  ==========  =====  =========================================
slotml_version      str          required  required    1      the slotml version that wrote the file
feature_contract    str          required  required    1      features/contract.py CONTRACT_VERSION (its asset codes)
features            list[str]    required  required    1      the input's feature names, in order
stats               dict         required  required    1      fitted statistics the features need
decision_points     list[float]  required  required    1      fractions of the window, ascending
window_s            int          required  required    1      the window length trained on (s)
tolerance           float        required  1/15        2      max age of the decision row (fraction)
lookback            float        required  2/15        2      move_velocity's lookback (fraction)
calibration         str          required  required    1      ``isotonic`` or ``platt``
splits              dict         {}        {}          1      train/calibration/test slices
lake_manifest_id    int | null   null      null        1      the lake manifest trained from
metrics             dict         {}        {}          1      the evaluation (test-day) metrics
created_at          str          ""        ""          1      ISO UTC time the file was written
policy              dict | null  null      null        2      the entry policy train chose (below)
importance          dict | null  null      null        2      feature importance: gain, permutation
feature_ranges      dict | null  null      null        2      training quantiles per feature (below)
==================  ===========  ========  ==========  =====  =========================================

``policy`` (optional; absent or null = the design's rule: ``min_confidence``, size = order_size
x (p - 0.5)/0.5, so reloading an old model never changes a running bot): ``{"name": "edge",
"min_edge": E, "kelly_fraction": F, "grid": [...], "slice": {...}}``, the price-aware rule whose
E and F the backtest chose on the policy slice (see ``serve/gate.py``).

``importance`` (optional; what ``train/importance.py`` measured, for the card, the report and the
dashboard; nothing reads it to decide): ``{"gain": {feature: g}, "permutation": {feature: rise},
"permutation_std": {feature: sd}, "metric": "brier", "slice": "calibration", "base": b, "rows":
n, "repeats": r, "seed": s}``, every value finite.

``feature_ranges`` (optional; absent or null = the gate skips its out-of-distribution check):
``{"quantiles": [0.001, 0.999], "rows": N, "rows_from": "...", "features": {name: {"lo": q0.1%,
"hi": q99.9%, "nan_share": s}}}`` over the rows the booster was fitted on (``train/ranges.py``;
``lo``/``hi`` null for a feature that was NaN on every row), read by ``serve/guards.py``.

The key names are also the training set's vocabulary: ``features.contract.metadata()`` (the
training-set Parquet's metadata) writes ``feature_contract``, ``features``,
``decision_points``, ``tolerance`` and ``lookback`` under these same names, from this module.

Compatibility rules:

- Format-1 files (``slotml-td-model/1``: no tolerance/lookback) still load; their missing keys
  take the "format 1" column (what every format-1 model was built with), so running bots can
  hot-reload an old model.
- Keys a file carries that this table does not know are ignored (forward compatible).
- A later OPTIONAL key with a default is added to format 2 WITHOUT bumping ``FORMAT``: one
  line in ``KEYS`` (``Key("name", "type", check, default=...)``); ``ModelMeta`` gains the
  field by itself, and older format-2 files read with the default. Only a new REQUIRED key,
  or a changed meaning, bumps the format (give the key ``since=`` and ``before=``).

The ``current`` pointer: ``<data-dir>/models/current`` is a one-line text file (or a symlink)
naming the promoted model; ``resolve_model_path`` follows it, ``write_pointer`` replaces it
atomically. Facts that change after a model is written (e.g. ``validated_at``) never rewrite
the model file: they live in the RECORD, ``<data-dir>/models/current.json`` (``RECORD_NAME``),
a JSON object beside the pointer naming the model it describes (``read_record`` /
``write_record``, atomic; a missing or unreadable record reads as ``ModelRecord()``, empty).

About 520 lines, one module on purpose: the key table, its validators, the pointer and the
record are one contract, and a bot that reads a model needs all of it and nothing else.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slotml.errors import UserError

FORMAT = "slotml-td-model/2"
FORMAT_PREFIX = "slotml-td-model/"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)

INPUT_NAME = "features"
OUTPUT_NAME = "p_up"

CALIBRATIONS = ("isotonic", "platt")
# What every format-1 model was built with (features/contract.py's defaults then): frozen here,
# whatever the contract's defaults become.
FORMAT1_TOLERANCE = 1 / 15
FORMAT1_LOOKBACK = 2 / 15

MODELS_SUBDIR = "models"
CURRENT_POINTER = "current"  # <data-dir>/models/current
RECORD_NAME = "current.json"  # <data-dir>/models/current.json: facts learnt after writing
MODEL_FILE_PREFIX = "td_model_"
MODEL_FILE_SUFFIX = ".onnx"
MODEL_FILE_TIME_FORMAT = "%Y%m%d_%H%M%S"  # td_model_YYYYMMDD_HHMMSS.onnx (UTC)


class ModelFileError(UserError):
    """A model file that is missing, corrupt, not ours, or does not match this contract."""


# ------------------------------------------------------------------------------ the key table

class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a Key default: the key must be present


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a string")
    return v


def _object(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError("must be a JSON object")
    return v


def _names(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(f, str) and f for f in v):
        raise ValueError("must be a non-empty JSON list of names")
    if len(set(v)) != len(v):
        raise ValueError("repeats a name")
    return tuple(v)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _points(v: Any) -> tuple[float, ...]:
    if not isinstance(v, list) or not v or not all(_number(x) for x in v):
        raise ValueError("must be a non-empty JSON list of fractions")
    out = [float(x) for x in v]
    if not all(0.0 <= x <= 1.0 for x in out) or out != sorted(out):
        raise ValueError(f"must be ascending fractions in [0, 1], got {out}")
    return tuple(out)


def _fraction(v: Any) -> float:
    if not _number(v) or not 0.0 < float(v) < 1.0:
        raise ValueError(f"must be a number strictly between 0 and 1 (of the window), got {v!r}")
    return float(v)


def _positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"must be a positive integer, got {v!r}")
    return v


def _optional_int(v: Any) -> int | None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
        raise ValueError(f"must be an integer or null, got {v!r}")
    return v


def _policy(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, dict) or v.get("name") not in ("edge", "design"):
        raise ValueError(f"must be null or an object with name 'edge' or 'design', got {v!r}")
    if v["name"] == "edge":
        e, f = v.get("min_edge"), v.get("kelly_fraction")
        if not _number(e) or not -1.0 < float(e) < 1.0:
            raise ValueError(f"min_edge must be a number in (-1, 1), got {e!r}")
        if not _number(f) or not 0.0 < float(f) <= 1.0:
            raise ValueError(f"kelly_fraction must be a number in (0, 1], got {f!r}")
    return v


def _importance(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError("must be null or a JSON object")
    for part in ("gain", "permutation"):
        d = v.get(part)
        if not isinstance(d, dict) or not d or not all(_number(x) for x in d.values()):
            raise ValueError(f"{part} must be a non-empty object of finite numbers per feature")
    return v


def _ranges(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    feats = v.get("features") if isinstance(v, dict) else None
    if not isinstance(feats, dict):
        raise ValueError("must be null or an object with a 'features' object")
    for name, r in feats.items():
        lo, hi, nan = (r.get(k) for k in ("lo", "hi", "nan_share")) if isinstance(r, dict) else (0, 0, None)
        bounds_ok = (lo is None and hi is None) or (_number(lo) and _number(hi) and lo <= hi)
        if not bounds_ok or not _number(nan) or not 0.0 <= float(nan) <= 1.0:
            raise ValueError(f"feature {name!r} needs lo <= hi (numbers, or both null) and a "
                             f"nan_share in [0, 1], got {r!r}")
    return v


def _calibration(v: Any) -> str:
    if v not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {v!r} (expected one of {CALIBRATIONS})")
    return v


@dataclass(frozen=True)
class Key:
    """One metadata key: its name (= the ``ModelMeta`` field), type, check and defaults."""

    name: str
    type: str  # "str" keys are stored as the text itself, every other type as JSON
    check: Callable[[Any], Any]  # decoded value -> field value; ValueError(reason) if wrong
    default: Any = REQUIRED  # absent from a file of the current format (REQUIRED: refused)
    since: int = 1  # the format that introduced the key
    before: Any = REQUIRED  # absent from a file of a format older than ``since``

    @property
    def text(self) -> bool:
        return self.type == "str"

    def absent(self, version: int) -> Any:
        """The value for a file of format ``version`` that lacks this key (REQUIRED: refuse)."""
        if version < self.since and self.before is not REQUIRED:
            return self.before
        return self.default


KEYS: tuple[Key, ...] = (
    Key("slotml_version", "str", _text),
    Key("feature_contract", "str", _text),
    Key("features", "list[str]", _names),
    Key("stats", "dict", _object),
    Key("decision_points", "list[float]", _points),
    Key("window_s", "int", _positive_int),
    Key("tolerance", "float", _fraction, since=2, before=FORMAT1_TOLERANCE),
    Key("lookback", "float", _fraction, since=2, before=FORMAT1_LOOKBACK),
    Key("calibration", "str", _calibration),
    Key("splits", "dict", _object, default={}),
    Key("lake_manifest_id", "int | null", _optional_int, default=None),
    Key("metrics", "dict", _object, default={}),
    Key("created_at", "str", _text, default=""),
    Key("policy", "dict | null", _policy, default=None),
    Key("importance", "dict | null", _importance, default=None),
    Key("feature_ranges", "dict | null", _ranges, default=None),
)
KEY_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}

KEY_FORMAT = "slotml_format"  # not a field: which table version the file follows
KEY_VERSION = "slotml_version"
KEY_CONTRACT = "feature_contract"
KEY_FEATURES = "features"
KEY_STATS = "stats"
KEY_DECISION_POINTS = "decision_points"
KEY_WINDOW_S = "window_s"
KEY_TOLERANCE = "tolerance"
KEY_LOOKBACK = "lookback"
KEY_CALIBRATION = "calibration"
KEY_SPLITS = "splits"
KEY_LAKE_MANIFEST_ID = "lake_manifest_id"
KEY_METRICS = "metrics"
KEY_CREATED_AT = "created_at"
KEY_POLICY = "policy"
KEY_IMPORTANCE = "importance"
KEY_FEATURE_RANGES = "feature_ranges"
ALL_KEYS: tuple[str, ...] = (KEY_FORMAT, *KEY_BY_NAME)
REQUIRED_KEYS: tuple[str, ...] = tuple(k.name for k in KEYS if k.default is REQUIRED)


# ------------------------------------------------------------------------------ ModelMeta

class _MetaMethods:
    """The methods of ``ModelMeta`` (its fields come from ``KEYS``)."""

    features: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return len(self.features)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` strings for this metadata, in the current format."""
        out = {KEY_FORMAT: FORMAT}
        for k in KEYS:
            v = getattr(self, k.name)
            if isinstance(v, tuple):
                v = list(v)
            out[k.name] = str(v) if k.text else json.dumps(v, sort_keys=True)
        return out


def _meta_field(k: Key) -> tuple[str, Any, Any]:
    if k.default is REQUIRED:
        return (k.name, Any, field())
    d = k.default
    if isinstance(d, dict | list):
        return (k.name, Any, field(default_factory=lambda d=d: copy.deepcopy(d)))
    return (k.name, Any, field(default=d))


ModelMeta = dataclasses.make_dataclass(
    "ModelMeta",
    [*(_meta_field(k) for k in KEYS),
     ("format", str, field(default=FORMAT))],  # the format the file was READ in (to_metadata: FORMAT)
    bases=(_MetaMethods,), frozen=True, kw_only=True,
)
ModelMeta.__module__ = __name__
ModelMeta.__doc__ = ("A model file's metadata, parsed and checked: one keyword field per entry "
                     "of ``KEYS`` (tuples for lists) plus ``format``.")


# ------------------------------------------------------------------------------ validation

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


def format_version(fmt: Any, source: str = "model file") -> int:
    """The format number of a ``slotml_format`` value we can read, else ``ModelFileError``."""
    if fmt is None:
        raise ModelFileError(f"{source}: not a slotml model (no {KEY_FORMAT!r} in its metadata)")
    num = str(fmt)[len(FORMAT_PREFIX):] if str(fmt).startswith(FORMAT_PREFIX) else ""
    if not num.isdigit():
        raise ModelFileError(f"{source}: not a slotml model ({KEY_FORMAT}={fmt!r}, expected {FORMAT!r})")
    if int(num) not in READABLE_FORMATS:
        raise ModelFileError(f"{source}: model format {fmt!r} is not one this version reads "
                             f"({[FORMAT_PREFIX + str(v) for v in READABLE_FORMATS]}); "
                             "upgrade slotml or retrain")
    return int(num)


def _parse(k: Key, raw: Any, source: str) -> Any:
    if k.text:
        value = raw
    else:
        try:
            value = json.loads(raw)
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{source}: metadata {k.name!r} is not valid JSON ({e})") from None
    try:
        return k.check(value)
    except ValueError as e:
        raise ModelFileError(f"{source}: metadata {k.name!r} ({k.type}) {e}") from None


def validate_metadata(
    meta: Mapping[str, str],
    contract_features: list[str] | tuple[str, ...] | None,
    *,
    source: str = "model file",
    contract_version: str | tuple[str, ...] | None = None,
) -> ModelMeta:
    """Parse and check a model file's ``metadata_props``; raise ``ModelFileError`` with the reason.

    ``contract_features`` is the running code's feature list (features/contract.py); a model
    whose list differs in names or order is refused (``None`` skips that check, for tools that
    only inspect a file). ``contract_version``, when given, must equal the file's too (or be
    one of them, given several: the versions the running code can score). Keys
    missing from an older format take that format's values (``Key.before``); unknown keys are
    ignored.
    """
    version = format_version(meta.get(KEY_FORMAT), source)
    values: dict[str, Any] = {}
    absent = []
    for k in KEYS:
        raw = meta.get(k.name)
        if raw is None or (raw == "" and k.default is not REQUIRED and not k.text):
            fallback = k.absent(version)
            if fallback is REQUIRED:
                absent.append(k.name)
            else:
                values[k.name] = copy.deepcopy(fallback)
            continue
        values[k.name] = _parse(k, raw, source)
    if absent:
        raise ModelFileError(f"{source}: metadata lacks {absent}")

    features = values[KEY_FEATURES]
    if contract_features is not None and list(features) != list(contract_features):
        raise ModelFileError(
            f"{source}: its features differ from this version's feature contract "
            f"({feature_difference(features, list(contract_features))}); retrain with this version"
        )
    contract = values[KEY_CONTRACT]
    accepted = ((str(contract_version),) if isinstance(contract_version, (str, int))
                else tuple(str(v) for v in contract_version or ()))
    if contract_version is not None and contract not in accepted:
        which = ", ".join(accepted)
        raise ModelFileError(f"{source}: built for feature contract {contract!r}, "
                             f"this version scores contract {which}; retrain")
    return ModelMeta(**values, format=FORMAT_PREFIX + str(version))


# ------------------------------------------------------------------------------ file names

def model_file_name(when: Any) -> str:
    """``td_model_YYYYMMDD_HHMMSS.onnx`` for a UTC ``datetime``."""
    return MODEL_FILE_PREFIX + when.strftime(MODEL_FILE_TIME_FORMAT) + MODEL_FILE_SUFFIX


def write_atomic_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (fsynced first)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ the pointer

def write_pointer(models_dir: Path, model_path: Path) -> Path:
    """Point ``<models>/current`` at ``model_path`` atomically (a one-line text file)."""
    pointer = Path(models_dir) / CURRENT_POINTER
    write_atomic_text(pointer, Path(model_path).name + "\n")
    return pointer


def _is_pointer_text(p: Path) -> bool:
    try:
        head = p.read_bytes()[:4096]
    except OSError:
        return False
    try:
        text = head.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False
    return bool(text) and "\n" not in text and text.endswith(MODEL_FILE_SUFFIX)


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """The model file that ``path`` designates (file, ``current`` pointer, models or data dir)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / CURRENT_POINTER, p / MODELS_SUBDIR / CURRENT_POINTER):
            if cand.exists() or cand.is_symlink():
                p = cand
                break
        else:
            raise ModelFileError(f"{path}: a directory without a {MODELS_SUBDIR}/{CURRENT_POINTER} "
                                 "pointer (train with --promote, or pass the model file)")
    if p.is_symlink():
        target = p.resolve()
        if not target.exists():
            raise ModelFileError(f"{p}: points at {target}, which does not exist")
        return target
    if not p.exists():
        raise ModelFileError(f"no model file at {p}")
    if p.name == CURRENT_POINTER or (p.stat().st_size < 4096 and _is_pointer_text(p)):
        try:
            name = p.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{p}: unreadable model pointer ({e})") from None
        if not name or "\n" in name:
            raise ModelFileError(f"{p}: a model pointer must hold one model file name")
        target = Path(name)
        if not target.is_absolute():
            target = p.parent / target
        if not target.exists():
            raise ModelFileError(f"{p}: names {target}, which does not exist")
        return target
    return p


# ------------------------------------------------------------------------------ the record

@dataclass(frozen=True)
class ModelRecord:
    """``<models>/current.json``: what was learnt about a model after it was written.

    ``model`` is the model file's name the facts are about ("" = none). Keys this version
    does not know are kept in ``extra`` and written back (forward compatible).
    """

    model: str = ""
    validated_at: str = ""  # ISO UTC time a validation run last passed ("" = never)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "model": self.model, "validated_at": self.validated_at}


def record_path(models_dir: Path) -> Path:
    return Path(models_dir) / RECORD_NAME


def read_record(models_dir: Path, model: str | None = None) -> ModelRecord:
    """The record beside ``<models>/current``; empty defaults when it is missing or
    unreadable, or (with ``model``, a file name) when it describes another model."""
    try:
        data = json.loads(record_path(models_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return ModelRecord(model=model or "")
    if not isinstance(data, dict):
        return ModelRecord(model=model or "")
    rec = ModelRecord(
        model=str(data.get("model") or ""),
        validated_at=str(data.get("validated_at") or ""),
        extra={k: v for k, v in data.items() if k not in ("model", "validated_at")},
    )
    if model is not None and rec.model != model:
        return ModelRecord(model=model)
    return rec


def write_record(models_dir: Path, record: ModelRecord) -> Path:
    """Replace the record atomically (the model file itself is never rewritten)."""
    path = record_path(models_dir)
    write_atomic_text(path, json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n")
    return path
