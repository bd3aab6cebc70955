"""Temporal split: fit | early-stop | calibration | policy | test, with an embargo between each.

Why this shape: the booster must be judged out of time, so every slice is a contiguous span of
window start times and the test slice is strictly after all the others. Adjacent windows share
information (the previous window's outcome is a feature; volatility clusters), so at least one
whole window (``embargo_windows``) is dropped at every boundary. All rows of one window
(its decision points) share its ``slot_ts`` and therefore always fall on one side.

Layouts on the time axis (``|`` = embargo gap; ``--split-layout``)::

    standard:    fit | early_stop | calibration | policy | test (last ``test_days``)
    recent:      calibration | policy | fit | early_stop | test
    latest:      policy | fit | early_stop = calibration | test
    --final:     the same without the test slice

``recent`` gives the booster the most recent days (a weekly retrain after a regime change
fits the new regime instead of only calibrating on it); the held-out slices move before the
fit span. Leakage does not depend on their order: calibration and policy are days the booster
did not fit, and the policy slice is distinct from calibration (isotonic is in-sample on its own
days), whichever comes first; only the test slice must be last. Both layouts give the slices
the same lengths: policy ``policy_days``, calibration ``calib_frac`` of the rest of the time
before the test days, early stopping ``es_frac`` of the training span (the latest share of it).

``latest`` calibrates on the early-stopping slice, so both the booster and the isotonic map see
the latest days (after a shift, ``recent``'s calibration on the oldest days adapts nothing). The
early-stopping slice only chooses the number of rounds, one integer, so calibrating on the same
rows adds little in-sample bias; ``calib_frac`` is unused and the fit gets its days. Measured on
the lag shift (README "Walk-forward"): 0.2-0.5 point of Brier/oracle better than ``recent`` on
three histories, not yet on the stationary ones.

The calibration slice is never used to fit the booster; the policy slice (``policy_days``, 0 =
none: ``--policy design``) is where the backtest chooses the edge policy's thresholds; the test
slice is used only for the report. Too little data is a ``UserError`` that names the family (a
daily family's 60 days are 60 windows per asset, far below what the slices need) and says how
much more is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from slotml.errors import UserError
from slotml.train.dataset import TrainingSet
from slotml.venue import family_text

DAY_S = 86400
POLICY_SHARE = 0.15  # the auto policy slice's share of the whole span, at most test_days
LAYOUTS = ("standard", "recent", "latest")  # --split-layout: see the module docstring


@dataclass(frozen=True)
class SplitConfig:
    test_days: float = 3.0
    final: bool = False
    # Share of the span before the test days given to calibration. 0.4, not 0.2: isotonic on
    # 10 of 50 sim days added ~0.008 of ECE on the test days (its steps carry the slice's
    # noise) and failed the oracle + 0.01 bar; 20 days kept it ~0.003-0.006 under, while the
    # booster, fitted on 30 days instead of 40, lost < 0.2% of Brier (README "calibration").
    calib_frac: float = 0.4
    es_frac: float = 0.15  # latest share of the training span used for early stopping
    # --es-days: the early-stopping slice as the last N days of the training span instead of
    # es_frac of it (None: es_frac). With ``latest`` it is also the calibration slice, so a
    # fixed week keeps the booster's fit close to now as the expanding span grows.
    es_days: float | None = None
    embargo_windows: int = 1
    # Minimum resolved (asset, window) pairs per slice; below them training refuses to run.
    min_fit_windows: int = 200
    min_es_windows: int = 30
    min_calib_windows: int = 50
    min_test_windows: int = 50
    # days before the test days where the policy's thresholds are chosen: 0 = no policy slice
    # (--policy design); None = auto, min(test_days, POLICY_SHARE of the span)
    policy_days: float | None = 0.0
    min_policy_windows: int = 50
    # standard: fit | early_stop | calibration | policy | test; recent: calibration | policy |
    # fit | early_stop | test (the booster fits the latest days); latest: policy | fit |
    # early_stop = calibration | test
    layout: str = "standard"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise UserError(f"--split-layout {self.layout!r}: not a layout; use one of "
                            f"{', '.join(LAYOUTS)}")
        if self.embargo_windows < 1:
            raise UserError("the embargo must be at least one window")
        if not 0 < self.calib_frac < 1 or not 0 < self.es_frac < 1:
            raise UserError("calib_frac and es_frac must be fractions in (0, 1)")
        if self.es_days is not None and not (0 < self.es_days < float("inf")):
            raise UserError(f"--es-days must be a positive number of days, got {self.es_days}")
        if self.policy_days is not None and self.policy_days < 0:
            raise UserError(f"--policy-days must not be negative, got {self.policy_days}")
        if not self.final and self.test_days <= 0:
            raise UserError(f"--test-days must be positive, got {self.test_days}")

    @property
    def min_total_windows(self) -> int:
        return (self.min_fit_windows + self.min_es_windows + self.min_calib_windows
                + (0 if self.final else self.min_test_windows)
                + (self.min_policy_windows if self.policy_days != 0 else 0))

    def minimums_text(self) -> str:
        """Where ``min_total_windows`` comes from: ``fit 200 + early stop 30 + ...``."""
        parts = [("fit", self.min_fit_windows), ("early stop", self.min_es_windows),
                 ("calibration", self.min_calib_windows)]
        if self.policy_days != 0:
            parts.append(("policy", self.min_policy_windows))
        if not self.final:
            parts.append(("test", self.min_test_windows))
        return " + ".join(f"{name} {n}" for name, n in parts)


@dataclass(frozen=True)
class Slice:
    name: str
    mask: np.ndarray  # bool over the training set's rows
    first_slot: int | None  # earliest slot_ts in the slice (None when empty)
    last_slot: int | None
    windows: int  # distinct (asset, window) pairs
    rows: int

    def describe(self) -> dict[str, Any]:
        return {"from": self.first_slot, "to": self.last_slot, "windows": self.windows,
                "rows": self.rows}


@dataclass(frozen=True)
class Split:
    fit: Slice
    early_stop: Slice
    calibration: Slice
    test: Slice | None
    embargo_windows: int
    dropped_rows: int  # rows in embargo gaps
    policy: Slice | None = None  # where the backtest chooses the policy's thresholds
    layout: str = "standard"  # SplitConfig.layout: the slices' order in time

    @property
    def train(self) -> Slice:
        """fit + early_stop (everything the booster saw), for the model card."""
        f, e = self.fit, self.early_stop
        return Slice("train", f.mask | e.mask, f.first_slot, e.last_slot, f.windows + e.windows,
                     f.rows + e.rows)

    def describe(self) -> dict[str, Any]:
        """The model file's ``splits`` metadata."""
        return {
            "train": self.train.describe(),
            "early_stop": self.early_stop.describe(),
            "calibration": self.calibration.describe(),
            "policy": self.policy.describe() if self.policy is not None else None,
            "test": self.test.describe() if self.test is not None else None,
            "embargo_windows": self.embargo_windows,
            "layout": self.layout,
        }


def _slice(ds: TrainingSet, name: str, mask: np.ndarray) -> Slice:
    slots = ds.slot_ts[mask]
    return Slice(
        name=name, mask=mask,
        first_slot=int(slots.min()) if len(slots) else None,
        last_slot=int(slots.max()) if len(slots) else None,
        windows=ds.n_windows(mask), rows=int(mask.sum()),
    )


def scored_only(split: Split, ds: TrainingSet, points: tuple[float, ...]) -> Split:
    """``--fit-points``: rows at the extra points stay in the fit and early-stopping slices
    only; calibration, policy and test keep the rows at ``points``, where the model is scored
    (an isotonic map fitted on other minutes would be judged on rows it never meant)."""
    at = np.isclose(ds.point[:, None], np.asarray(points, dtype=np.float64)[None, :],
                    rtol=0.0, atol=1e-9).any(axis=1)

    def cut(s: Slice | None) -> Slice | None:
        return None if s is None else _slice(ds, s.name, s.mask & at)

    cal = cut(split.calibration)
    assert cal is not None
    return replace(split, calibration=cal, policy=cut(split.policy), test=cut(split.test))


def _boundary(slots: np.ndarray, t: float) -> int:
    """The first window start at or after time ``t`` (so a slice starts on a whole window)."""
    i = int(np.searchsorted(slots, t, side="left"))
    return int(slots[min(i, len(slots) - 1)])


def _rate_text(per_day: float, more: int) -> str:
    if per_day <= 0:
        return ""
    days = more / per_day
    return f" (about {days * 24:.1f} more hours of collection)" if days < 2 else f" (about {days:.1f} more days of collection)"


def temporal_split(ds: TrainingSet, cfg: SplitConfig) -> Split:
    """Split ``ds`` in time; raise ``UserError`` naming the family and saying how much more
    data is needed."""
    try:
        return _split(ds, cfg)
    except UserError as e:
        raise UserError(f"{family_text(ds.window_s)}: {e}") from None


def _split(ds: TrainingSet, cfg: SplitConfig) -> Split:
    if len(ds) == 0:
        raise UserError(
            f"no resolved decision rows to train on; need at least {cfg.min_total_windows} "
            f"resolved windows ({cfg.minimums_text()}): collect or backfill more, then export "
            "the lake"
        )
    total = ds.n_windows()
    slots = np.unique(ds.slot_ts)
    w = int(ds.window_s)
    span_s = float(slots[-1] + w - slots[0])
    per_day = total / (span_s / DAY_S) if span_s > 0 else 0.0
    if total < cfg.min_total_windows:
        more = cfg.min_total_windows - total
        assets = len(np.unique(ds.symbol))
        raise UserError(
            f"too little data: {total} resolved windows ({assets} asset{'s' * (assets != 1)} over "
            f"{span_s / DAY_S:.3g} days), need at least {cfg.min_total_windows} "
            f"({cfg.minimums_text()}): {more} more{_rate_text(per_day, more)}"
        )
    classes = np.unique(ds.y)
    if len(classes) < 2:
        side = "Up" if classes[0] == 1 else "Down"
        raise UserError(
            f"all {total} resolved windows resolved {side}: need both outcomes to train; "
            "collect more windows"
        )

    gap = cfg.embargo_windows * w
    end = float(slots[-1] + w)
    keep = np.zeros(len(ds), dtype=bool)
    test: Slice | None = None
    if cfg.final:
        pre_end = end
    else:
        test_start = _boundary(slots, end - cfg.test_days * DAY_S)
        if test_start <= slots[0]:
            raise UserError(
                f"--test-days {cfg.test_days:g} covers all the data ({span_s / DAY_S:.2f} days); "
                "use fewer test days or collect more"
            )
        tmask = ds.slot_ts >= test_start
        test = _slice(ds, "test", tmask)
        if test.windows < cfg.min_test_windows:
            more = cfg.min_test_windows - test.windows
            raise UserError(
                f"the test slice (last {cfg.test_days:g} days) holds {test.windows} resolved "
                f"windows, need at least {cfg.min_test_windows}: raise --test-days or collect "
                f"{more} more{_rate_text(per_day, more)}"
            )
        keep |= tmask
        pre_end = test_start - gap

    first = float(slots[0])
    policy_days = cfg.policy_days
    if policy_days is None:
        policy_days = POLICY_SHARE * span_s / DAY_S
        if not cfg.final:
            policy_days = min(policy_days, cfg.test_days)
    # Each slice is [lo, hi) in window starts; the next one starts an embargo after hi.
    # Every layout: the policy slice is policy_days long, early stopping es_frac of the training
    # span; calibration calib_frac of the rest of the time before the test days (less the
    # policy slice and its gap), or the early-stopping slice itself (latest).
    pol: tuple[float, float] | None = None
    cal: tuple[float, float] | None = None  # None: latest, the early-stopping slice
    if cfg.layout == "recent":  # calibration | policy | fit | early_stop, from the first window
        pol_s = policy_days * DAY_S + gap if policy_days > 0 else 0.0
        rest_end = pre_end - pol_s
        nxt = _boundary(slots, first + cfg.calib_frac * (rest_end - first) + gap)
        cal = (first, min(nxt - gap, pre_end))
        if policy_days > 0:
            after = _boundary(slots, nxt + pol_s)
            pol = (nxt, min(after - gap, pre_end))
            nxt = after
        train_from, train_end = float(nxt), pre_end
    elif cfg.layout == "latest":  # policy | fit | early_stop = calibration, from the first window
        train_from = first
        if policy_days > 0:
            after = _boundary(slots, first + policy_days * DAY_S + gap)
            pol = (first, min(after - gap, pre_end))
            train_from = float(after)
        train_end = pre_end
    else:  # fit | early_stop | calibration | policy, from the test days back
        rest_end = pre_end
        if policy_days > 0:
            policy_start = _boundary(slots, pre_end - policy_days * DAY_S)
            pol = (policy_start, pre_end)
            rest_end = policy_start - gap
        calib_start = _boundary(slots, rest_end - cfg.calib_frac * (rest_end - first))
        cal = (calib_start, rest_end)
        train_from, train_end = first, calib_start - gap

    policy: Slice | None = None
    if pol is not None:
        pmask = (ds.slot_ts >= pol[0]) & (ds.slot_ts < pol[1])
        policy = _slice(ds, "policy", pmask)
        if policy.windows < cfg.min_policy_windows:
            more = cfg.min_policy_windows - policy.windows
            raise UserError(
                f"the policy slice (--policy-days {policy_days:g}) holds {policy.windows} "
                f"resolved windows, need at least {cfg.min_policy_windows}: raise --policy-days, "
                f"use --policy design, or collect {more} more{_rate_text(per_day, more)}")
        keep |= pmask
    es_len = cfg.es_frac * (train_end - train_from) if cfg.es_days is None else cfg.es_days * DAY_S
    es_start = _boundary(slots, max(train_end - es_len, train_from))
    if cal is None:  # latest: calibration = early stopping
        cal = (es_start, train_end)
    cmask = (ds.slot_ts >= cal[0]) & (ds.slot_ts < cal[1])
    calibration = _slice(ds, "calibration", cmask)
    if calibration.windows < cfg.min_calib_windows:
        more = cfg.min_calib_windows - calibration.windows
        raise UserError(
            f"the calibration slice holds {calibration.windows} resolved windows "
            f"({'empty' if calibration.windows == 0 else 'too few'}), need at least "
            f"{cfg.min_calib_windows}: collect {more / cfg.calib_frac:.0f} more"
            f"{_rate_text(per_day, int(more / cfg.calib_frac))}"
        )
    if len(np.unique(ds.y[cmask])) < 2:
        raise UserError("the calibration slice holds only one outcome; collect more windows")
    keep |= cmask

    emask = (ds.slot_ts >= es_start) & (ds.slot_ts < train_end)
    fmask = (ds.slot_ts >= train_from) & (ds.slot_ts < es_start - gap)
    early_stop = _slice(ds, "early_stop", emask)
    fit = _slice(ds, "fit", fmask)
    for sl, need in ((fit, cfg.min_fit_windows), (early_stop, cfg.min_es_windows)):
        if sl.windows < need:
            more = need - sl.windows
            raise UserError(
                f"the {sl.name} slice holds {sl.windows} resolved windows, need at least {need}: "
                f"collect about {more / (1 - cfg.calib_frac):.0f} more"
                f"{_rate_text(per_day, int(more / (1 - cfg.calib_frac)))}"
            )
    if len(np.unique(ds.y[fmask])) < 2:
        raise UserError("the training slice holds only one outcome; collect more windows")
    keep |= emask | fmask
    return Split(fit=fit, early_stop=early_stop, calibration=calibration, test=test,
                 embargo_windows=cfg.embargo_windows, dropped_rows=int((~keep).sum()),
                 policy=policy, layout=cfg.layout)
