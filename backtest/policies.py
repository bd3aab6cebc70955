"""The policies a backtest compares: the model's gate under the ``edge`` and ``design`` rules,
the manual ``filters``, and ``always-enter`` (the no-information baseline: the book's favourite
side, full order size, at the first decision point with a quote). Each is something with the
gate's ``choose`` signature."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from slotml.serve.gate import DOWN, SIZE_EPS, UP, Decision, EntryGate, FeeSchedule, GateConfig
from slotml.serve.scorer import Scorer

POLICIES = ("edge", "design", "filters", "always-enter")


class Precomputed:
    """A scorer whose P(Up) for the backtest's rows was computed in one batch (one ONNX call
    instead of one per row and policy); anything else is the wrapped scorer's."""

    def __init__(self, scorer: Scorer, vectors: list[Any]) -> None:
        self._scorer = scorer
        p = scorer.p_up_batch(np.stack(vectors)) if vectors else np.zeros(0)
        self._vectors = vectors  # keeps the ids below alive and unique
        self._p = {id(v): float(x) for v, x in zip(vectors, p.tolist(), strict=True)}

    def p_up(self, vector: Any) -> float:
        p = self._p.get(id(vector))
        return self._scorer.p_up(vector) if p is None else p

    def p_win(self, outcome: str, vector: Any) -> float:
        p = self.p_up(vector)
        return p if outcome == UP else 1.0 - p

    @property
    def meta(self) -> Any:  # read at every decision (the guards): not through __getattr__'s miss
        return self._scorer.meta

    @property
    def path(self) -> Any:
        return self._scorer.path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scorer, name)


class AlwaysEnter:
    """Enter every window: the side the book prices higher, the full order size."""

    uses_model = False

    def __init__(self, config: GateConfig) -> None:
        self.config = config

    def choose(self, vector: Any = None, fraction: float | None = None, *,
               prices: dict[str, float | None] | None = None, min_order_size: float | None = None,
               fee: FeeSchedule | None = None, taker: bool = False, move_pct: float | None = None,
               minutes_into: float | None = None, context: dict | None = None,
               now: float | None = None) -> Decision:
        prices = prices or {}
        up, down = prices.get(UP), prices.get(DOWN)
        if up is None and down is None:
            return Decision(False, None, 0.0, None, "no_price: no quote on either side")
        side = UP if down is None or (up is not None and up >= down) else DOWN
        size = float(math.floor(self.config.order_size + SIZE_EPS * max(1.0, self.config.order_size)))
        mos = self.config.min_order_size if min_order_size is None else float(min_order_size)
        if size < mos or size <= 0:
            return Decision(False, side, 0.0, None, "below_min_order_size")
        return Decision(True, side, size, None, f"enter: {size:g} shares", prices.get(side))


def make_policy(name: str, config: GateConfig, scorer: Scorer | None) -> Any:
    """The gate for one policy (ValueError for an unknown name; the model's policies need it)."""
    if name not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {name!r}")
    if name == "filters":
        return EntryGate(replace(config, policy=None), None)
    if name == "always-enter":
        return AlwaysEnter(config)
    if scorer is None:
        raise ValueError(f"policy {name!r} needs a model")
    if name == "design":  # the design's rule exactly: min_confidence, linear size
        return EntryGate(replace(config, policy="design", min_edge=None, sizing="linear"), scorer)
    return EntryGate(replace(config, policy="edge"), scorer)
