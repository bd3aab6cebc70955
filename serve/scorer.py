"""The scorer: one ONNX model file -> calibrated P(Up) in microseconds, refusing what it can't trust.

Only onnxruntime and numpy are imported here (a bot loading us must not pay for xgboost,
duckdb or polars). The session is single-threaded with every graph optimisation: one row per
call, where thread pools only add wake-up latency. Nothing is ever unpickled: the model is an
ONNX graph and its metadata are JSON strings.

``Scorer.load`` accepts a model file, the ``<data-dir>/models/current`` pointer (a text file
naming the model, or a symlink), a models directory or a data directory. ``reload()`` re-reads
the same place and swaps the whole state in one assignment, so a weekly retrain plus
``--promote`` needs no restart (the example bot wires it to SIGHUP and to a change of
``current``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slotml.model_file import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelFileError,
    ModelMeta,
    resolve_model_path,
    validate_metadata,
)

log = logging.getLogger(__name__)

UP = "Up"
DOWN = "Down"
OUTCOMES = (UP, DOWN)
_OUTCOME_ALIASES = {"up": UP, "down": DOWN, "yes": UP, "no": DOWN}
# Decision fractions within this of the trained range count as inside it (float noise only).
RANGE_EPS = 1e-6

_DEFAULT = object()


def normalize_outcome(outcome: str) -> str:
    """``"Up"`` or ``"Down"`` (case-insensitive input); anything else is a ValueError."""
    if outcome in OUTCOMES:
        return outcome
    try:
        return _OUTCOME_ALIASES[str(outcome).lower()]
    except KeyError:
        raise ValueError(f"outcome must be 'Up' or 'Down', got {outcome!r}") from None


def contract_feature_list() -> tuple[list[str], tuple[str, ...]]:
    """(feature names, the contract versions this code scores) of the feature contract (a pure
    module): a model of an older version with the same features keeps its own asset table."""
    from slotml.features.contract import FEATURES, SCORABLE_CONTRACTS

    return list(FEATURES), tuple(str(v) for v in SCORABLE_CONTRACTS)


@dataclass(frozen=True)
class _State:
    """Everything one loaded model needs; swapped as a whole by ``reload``."""

    session: Any  # onnxruntime.InferenceSession
    meta: ModelMeta
    path: Path  # the model file itself
    stamp: tuple[str, int, int]  # (resolved path, mtime_ns, size) of the source, for change checks
    buf: np.ndarray  # preallocated float32 [1, n_features] input row
    feed: dict[str, np.ndarray]
    outputs: list[str]


def session_options() -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def _stamp(source: Path) -> tuple[str, int, int]:
    try:
        target = resolve_model_path(source)
        st = target.stat()
        return (str(target), st.st_mtime_ns, st.st_size)
    except (ModelFileError, OSError):
        return ("", 0, 0)


def _load_state(source: Path, contract_features: Any, contract_version: Any) -> _State:
    import onnxruntime as ort

    path = resolve_model_path(source)
    if contract_features is _DEFAULT or contract_version is _DEFAULT:
        names, version = contract_feature_list()
        if contract_features is _DEFAULT:
            contract_features = names
        if contract_version is _DEFAULT:
            contract_version = version
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(),
                                       providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: corrupt or not an ONNX model ({first[:200]})") from None
    props = dict(session.get_modelmeta().custom_metadata_map or {})
    meta = validate_metadata(props, contract_features, source=str(path),
                             contract_version=contract_version)
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ModelFileError(f"{path}: expected one input named {INPUT_NAME!r}, got "
                             f"{[i.name for i in inputs]}")
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise ModelFileError(f"{path}: input {INPUT_NAME!r} must be float32, got {inp.type}")
    shape = list(inp.shape)
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != meta.n_features):
        raise ModelFileError(f"{path}: input shape {shape} does not match the {meta.n_features} "
                             "features its metadata lists")
    out_names = [o.name for o in session.get_outputs()]
    if OUTPUT_NAME not in out_names:
        raise ModelFileError(f"{path}: no output named {OUTPUT_NAME!r} (outputs: {out_names})")
    buf = np.zeros((1, meta.n_features), dtype=np.float32)
    state = _State(session=session, meta=meta, path=path, stamp=_stamp(source), buf=buf,
                   feed={INPUT_NAME: buf}, outputs=[OUTPUT_NAME])
    # Smoke-score an all-missing row and a zero row: a graph that cannot answer fails now, not
    # at the first decision.
    for fill in (np.nan, 0.0):
        buf[0, :] = fill
        try:
            out = session.run(state.outputs, state.feed)[0]
        except Exception as e:  # noqa: BLE001
            raise ModelFileError(f"{path}: the model fails on a test row ({e})") from None
        if out.size != 1 or not (0.0 <= float(out.reshape(-1)[0]) <= 1.0):
            raise ModelFileError(f"{path}: output {OUTPUT_NAME!r} must be one probability in "
                                 f"[0, 1] per row, got shape {out.shape}")
    buf[0, :] = 0.0
    return state


class Scorer:
    """Calibrated P(Up) from a feature vector in contract order.

    Not reentrant: one input buffer per scorer (use one Scorer per thread). ``reload`` is safe
    between calls from a signal handler: a call in flight keeps the state it started with.
    """

    def __init__(self, state: _State, source: Path, contract_features: Any = _DEFAULT,
                 contract_version: Any = _DEFAULT) -> None:
        self._state = state
        self._source = source
        self._contract = (contract_features, contract_version)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, contract_features: Any = _DEFAULT,
             contract_version: Any = _DEFAULT) -> Scorer:
        """Load and check a model (file, ``current`` pointer, models dir or data dir).

        ``contract_features`` defaults to features/contract.py's list (pass a list to check
        against another, ``None`` to skip: inspection tools only). Raises ``ModelFileError``.
        """
        source = Path(path)
        state = _load_state(source, contract_features, contract_version)
        m = state.meta
        log.info("model loaded: %s (%s, %d features, decision points %s, window %ds, "
                 "tolerance %.4g, lookback %.4g)", state.path, m.format, m.n_features,
                 list(m.decision_points), m.window_s, m.tolerance, m.lookback)
        return cls(state, source, contract_features, contract_version)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def meta(self) -> ModelMeta:
        """The model's metadata (``slotml.model_file.ModelMeta``): decision_points, window_s,
        tolerance, lookback, stats, ... as the file records them."""
        return self._state.meta

    @property
    def path(self) -> Path:
        """The model file in use (the pointer's target when loaded through ``current``)."""
        return self._state.path

    @property
    def features(self) -> tuple[str, ...]:
        return self._state.meta.features

    @property
    def decision_points(self) -> tuple[float, ...]:
        return self._state.meta.decision_points

    @property
    def window_s(self) -> int:
        return self._state.meta.window_s

    @property
    def tolerance(self) -> float:
        """Max age of the decision row, as a fraction of the window (the model was built with it)."""
        return self._state.meta.tolerance

    @property
    def lookback(self) -> float:
        """move_velocity's lookback, as a fraction of the window (the model was built with it)."""
        return self._state.meta.lookback

    @property
    def stats(self) -> dict[str, Any]:
        return self._state.meta.stats

    def in_range(self, fraction: float) -> bool:
        """Whether a decision at this fraction of the window lies within the trained points."""
        dps = self._state.meta.decision_points
        return dps[0] - RANGE_EPS <= fraction <= dps[-1] + RANGE_EPS

    # -- scoring ----------------------------------------------------------------------------
    def p_up(self, vector: Any) -> float:
        """Calibrated P(Up) for one feature vector (length n_features, contract order, NaN = missing)."""
        st = self._state
        if len(vector) != st.buf.shape[1]:
            raise ValueError(f"expected {st.buf.shape[1]} features, got {len(vector)}")
        st.buf[0] = vector
        return float(st.session.run(st.outputs, st.feed)[0].item(0))

    def p_win(self, outcome: str, vector: Any) -> float:
        """P(outcome wins): P(Up) for ``"Up"``, 1 - P(Up) for ``"Down"``."""
        p = self.p_up(vector)
        if outcome == UP:
            return p
        if outcome == DOWN:
            return 1.0 - p
        return p if normalize_outcome(outcome) == UP else 1.0 - p

    def p_up_batch(self, matrix: Any) -> np.ndarray:
        """P(Up) for many rows at once (replay, reports): float64 array of length N."""
        st = self._state
        x = np.ascontiguousarray(matrix, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != st.meta.n_features:
            raise ValueError(f"expected shape [N, {st.meta.n_features}], got {x.shape}")
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        return st.session.run(st.outputs, {INPUT_NAME: x})[0].reshape(-1).astype(np.float64)

    # -- hot swap ---------------------------------------------------------------------------
    def source_changed(self) -> bool:
        """Whether the place we loaded from now designates a different or rewritten file."""
        return _stamp(self._source) != self._state.stamp

    def reload(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Load the model again (from ``path`` or the original place) and swap it in atomically.

        Returns True if a different file (or a rewritten one) is now in use. On any error the
        old model stays in place and ``ModelFileError`` is raised.
        """
        source = Path(path) if path is not None else self._source
        old = self._state
        new = _load_state(source, *self._contract)
        self._state = new  # one assignment: a call in flight keeps its own state
        self._source = source
        changed = new.stamp != old.stamp or new.path != old.path
        log.info("model reloaded: %s%s", new.path, "" if changed else " (unchanged)")
        return changed
