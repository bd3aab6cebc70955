"""Two reasons for the gate not to trust its model at a decision: it expired, or the input is
unlike anything it was fitted on. ``EntryGate`` (``serve/gate.py``) asks ``ModelGuards``; the
backtest reports how often each happened (``guard_rates``). numpy and stdlib only (bots).

Expiry (``--expires-after`` days, default 14; ``--on-expired``): the model expires that long
after its ANCHOR, which is

- ``validated_at`` of the record beside ``current`` (``slotml/model_file.py``'s ``current.json``,
  which ``slotml train --challenge`` updates when a champion is re-validated) when the record
  names this model file and that time is not after the decision instant (a backtest replaying
  days before the validation must not use a validation the bot could not yet have had);
- else the model's training end: the end of the last window it was fitted, calibrated or had
  its policy chosen on (the ``splits`` key's train, early_stop, calibration and policy slices:
  the same range the backtest calls "seen"). Not the test slice: the test days judge the model
  but teach it nothing, and a ``--final`` model has none, so counting them would let an
  evaluation model live days longer than the same model trained ``--final``.

A model without ``splits`` (hand-built or very old files) has no training end: it never
expires unless a record validates it. The clock is the decision instant (``now``); the record is
re-read at most once a minute (``RECORD_REFRESH_S``) and at once after a model reload, never once
per decision.

Out of distribution (``--ood-max``, default 2): a feature is OUTSIDE when its value lies below
its training 0.1% quantile or above its 99.9% quantile (``train/ranges.py``, the model file's
``feature_ranges``). NaN: a feature that was never NaN on the training rows (NaN share 0)
counts a NaN as outside; a feature that was NaN on some training rows does not (the booster
has a branch for it). A feature whose training values were all NaN counts every finite value
as outside. The gate declines when MORE than ``ood_max`` features are outside. A model file
without ``feature_ranges`` skips the check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from slotml.model_file import read_record

log = logging.getLogger(__name__)

DAY_S = 86400.0
RECORD_REFRESH_S = 60.0  # re-read the record at most this often (and at once after a reload)
WARN_EVERY_S = 3600.0  # one WARNING per hour at most about an expired model
ON_EXPIRED = ("fallback", "refuse", "ignore")
SEEN_SLICES = ("train", "early_stop", "calibration", "policy")


def parse_iso(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 time (UTC when no zone), None when empty or unreadable."""
    if not text:
        return None
    try:
        d = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        from datetime import UTC

        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def training_end(meta: Any) -> float | None:
    """End (epoch s) of the last window the model was fitted, calibrated or tuned on."""
    splits = getattr(meta, "splits", None) or {}
    ends = [int(s["to"]) for k in SEEN_SLICES
            if isinstance(s := splits.get(k), dict) and s.get("to") is not None]
    return float(max(ends) + int(meta.window_s)) if ends else None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class Ranges:
    """A model's ``feature_ranges`` as arrays in its feature order, ready for comparisons: a
    feature that was all NaN in training gets the empty range [+inf, -inf] (every finite value
    is outside), one the key does not describe gets [-inf, +inf] (never outside); ``nan_out``:
    a NaN counts as outside."""

    names: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray
    nan_out: np.ndarray

    @classmethod
    def of(cls, meta: Any) -> Ranges | None:
        fr = getattr(meta, "feature_ranges", None)
        if not fr:
            return None
        feats = fr.get("features") or {}
        names = tuple(meta.features)
        get = [feats.get(n) for n in names]

        def bound(g: dict | None, key: str, missing: float, empty: float) -> float:
            return missing if g is None else empty if g[key] is None else float(g[key])

        lo = np.array([bound(g, "lo", -np.inf, np.inf) for g in get], np.float64)
        hi = np.array([bound(g, "hi", np.inf, -np.inf) for g in get], np.float64)
        nan_out = np.array([g is not None and float(g["nan_share"]) == 0.0 for g in get])
        return cls(names, lo, hi, nan_out)

    def outside(self, X: Any) -> np.ndarray:
        """Bool [N, n_features] (or [n_features] for one vector): which values are outside."""
        x = np.asarray(X)
        with np.errstate(invalid="ignore"):  # NaN compares False: only nan_out makes it outside
            return (x < self.lo) | (x > self.hi) | (np.isnan(x) & self.nan_out)

    def count(self, vector: Any) -> int:
        return int(np.count_nonzero(self.outside(vector)))


class ModelGuards:
    """Expiry and out-of-distribution for one gate (see the module docstring). Caches what it
    derives from a model by the identity of its metadata object (a reload swaps it)."""

    def __init__(self, expires_after_days: float, on_expired: str, ood_max: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.expires_after_s = float(expires_after_days) * DAY_S
        self.on_expired = on_expired
        self.ood_max = int(ood_max)
        self._monotonic = monotonic
        self._meta: Any = None
        self._ranges: Ranges | None = None
        self._train_end: float | None = None
        self._validated: float | None = None
        self._read_at: float | None = None  # monotonic time of the last record read
        self._warned_at: float | None = None

    def _model(self, scorer: Any) -> None:
        meta = scorer.meta
        if meta is not self._meta:  # first use or a reload: derive again, re-read the record
            self._meta = meta
            self._ranges = Ranges.of(meta)
            self._train_end = training_end(meta)
            self._read_at = None

    def _record(self, scorer: Any) -> float | None:
        t = self._monotonic()
        if self._read_at is None or t - self._read_at >= RECORD_REFRESH_S:
            path = Path(scorer.path)
            self._validated = parse_iso(read_record(path.parent, path.name).validated_at)
            self._read_at = t
        return self._validated

    def anchors(self, scorer: Any) -> tuple[float | None, float | None]:
        """(the record's validated_at for this model, its training end), epoch s or None."""
        self._model(scorer)
        return self._record(scorer), self._train_end

    def anchor(self, scorer: Any, now: float) -> tuple[float | None, str]:
        """(epoch s the expiry counts from, what it is) at decision instant ``now``."""
        v, end = self.anchors(scorer)
        if v is not None and v <= now:
            return v, "validated_at"
        return end, "training end"

    def expired(self, scorer: Any, now: float) -> str | None:
        """Why the model is expired at ``now`` (text), or None when it is not."""
        anchor, what = self.anchor(scorer, now)
        if anchor is None or now < anchor + self.expires_after_s:
            return None
        detail = (f"model {Path(scorer.path).name} expired at {_iso(anchor + self.expires_after_s)} "
                  f"({what} {_iso(anchor)} + {self.expires_after_s / DAY_S:g} days)")
        t = self._monotonic()
        if self._warned_at is None or t - self._warned_at >= WARN_EVERY_S:
            self._warned_at = t
            log.warning("%s; --on-expired %s (at most one such WARNING an hour; counted in "
                        "counters['model_expired'])", detail, self.on_expired)
        return detail

    def out_of_distribution(self, scorer: Any, vector: Any) -> str | None:
        """Why ``vector`` is out of distribution (text), or None (also without ranges)."""
        self._model(scorer)
        r = self._ranges
        if r is None:
            return None
        out = r.outside(vector)
        n = int(out.sum())
        if n <= self.ood_max:
            return None
        names = [r.names[i] for i in np.flatnonzero(out)]
        return (f"{n} features outside their training 0.1%..99.9% range (more than --ood-max "
                f"{self.ood_max}): {', '.join(names)}")


def guard_rates(scorer: Any, guards: ModelGuards, X: np.ndarray,
                instants: np.ndarray) -> dict[str, Any]:
    """Over decision rows (vectors ``X``, decision instants in epoch s): how many are out of
    distribution and how many fall after expiry, each counted on its own (a row can be both)."""
    n = int(len(X))
    ranges = Ranges.of(scorer.meta)
    if ranges is None or n == 0:
        ood = 0
    else:
        ood = int((ranges.outside(X).sum(axis=1) > guards.ood_max).sum())
    expired = 0
    if n:
        # the anchor depends on the instant only through "is validated_at after it": two values
        v, end = guards.anchors(scorer)
        t = np.asarray(instants, dtype=np.float64)
        anchor = np.full(n, np.nan if end is None else end)
        if v is not None:
            anchor = np.where(v <= t, v, anchor)
        with np.errstate(invalid="ignore"):
            expired = int((t >= anchor + guards.expires_after_s).sum())
    return {"rows": n, "out_of_distribution": ood, "expired": expired,
            "ood_rate": ood / n if n else None, "expired_rate": expired / n if n else None,
            "ood_checked": ranges is not None, "ood_max": guards.ood_max,
            "expires_after_days": guards.expires_after_s / DAY_S, "on_expired": guards.on_expired}
