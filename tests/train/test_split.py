"""The temporal split: embargo between slices, whole windows, clear too-little-data errors."""

from __future__ import annotations

import numpy as np
import pytest

from slotml.errors import UserError
from slotml.train.split import SplitConfig, temporal_split
from slotml.train.synthetic import synthetic_training_set

SMALL = dict(min_fit_windows=40, min_es_windows=8, min_calib_windows=12, min_test_windows=12)


@pytest.fixture(scope="module")
def ds():
    # 4 assets x 600 windows of 15 min = 6.25 days, 3 decision points each
    return synthetic_training_set(n_windows=600, seed=3)[0]


def _slots(ds, mask):
    return np.unique(ds.slot_ts[mask])


@pytest.mark.parametrize("final", [False, True])
def test_slices_are_ordered_embargoed_and_never_split_a_window(ds, final):
    cfg = SplitConfig(test_days=1.0, final=final, embargo_windows=1, **SMALL)
    sp = temporal_split(ds, cfg)
    slices = [sp.fit, sp.early_stop, sp.calibration] + ([sp.test] if not final else [])
    assert (sp.test is None) == final
    w = ds.window_s
    for a, b in zip(slices, slices[1:], strict=False):
        # at least one whole window between the end of a's last window and b's first
        gap_windows = (b.first_slot - (a.last_slot + w)) / w
        assert gap_windows >= 1, (a.name, b.name, gap_windows)
        # the dropped window really holds rows in the data (the embargo is not vacuous)
        dropped = (ds.slot_ts >= a.last_slot + w) & (ds.slot_ts < b.first_slot)
        assert dropped.any()
    masks = np.stack([s.mask for s in slices])
    assert masks.sum(axis=0).max() == 1, "a row sits in two slices"
    # every window's rows are all on one side (or all dropped)
    key = np.char.add(ds.symbol, ds.slot_ts.astype(str))
    for m in [*masks, ~masks.any(axis=0)]:
        inside = set(key[m])
        outside = set(key[~m])
        assert not inside & outside
    assert sp.dropped_rows == int((~masks.any(axis=0)).sum()) > 0
    if not final:
        # the test slice is the last test_days of the data
        end = ds.slot_ts.max() + w
        assert sp.test.first_slot >= end - 86400 and sp.test.last_slot == ds.slot_ts.max()
        assert sp.test.first_slot - w < end - 86400
    else:
        assert sp.calibration.last_slot == ds.slot_ts.max()
    d = sp.describe()
    assert d["train"]["windows"] == sp.fit.windows + sp.early_stop.windows
    assert (d["test"] is None) == final


def test_wider_embargo_drops_more_windows(ds):
    one = temporal_split(ds, SplitConfig(test_days=1.0, embargo_windows=1, **SMALL))
    three = temporal_split(ds, SplitConfig(test_days=1.0, embargo_windows=3, **SMALL))
    assert three.dropped_rows == 3 * one.dropped_rows
    assert three.calibration.first_slot - (three.early_stop.last_slot + ds.window_s) >= 3 * ds.window_s


def test_too_few_windows_says_how_many_more(ds):
    small = ds.take(ds.slot_ts < ds.slot_ts.min() + 20 * ds.window_s)  # 80 windows
    with pytest.raises(UserError, match=r"too little data: 80 resolved windows, need at least 330 \(250 more"):
        temporal_split(small, SplitConfig(test_days=0.1))


def test_empty_data_is_a_clear_error(ds):
    with pytest.raises(UserError, match="no resolved decision rows"):
        temporal_split(ds.take(np.zeros(len(ds), bool)), SplitConfig())


def test_one_class_only(ds):
    up = ds.take(ds.y == 1)
    with pytest.raises(UserError, match="resolved Up: need both outcomes"):
        temporal_split(up, SplitConfig(test_days=1.0, **SMALL))


def test_empty_calibration_slice(ds):
    # Remove every window between the training days and the test day: nothing to calibrate on.
    end = ds.slot_ts.max() + ds.window_s
    hole = (ds.slot_ts >= end - 2.2 * 86400) & (ds.slot_ts < end - 86400)
    with pytest.raises(UserError, match=r"calibration slice holds 0 resolved windows \(empty\)"):
        temporal_split(ds.take(~hole), SplitConfig(test_days=1.0, calib_frac=0.15, **SMALL))


def test_test_slice_too_small_names_the_remedy(ds):
    with pytest.raises(UserError, match="raise --test-days"):
        temporal_split(ds, SplitConfig(test_days=0.01, **SMALL))
    with pytest.raises(UserError, match="covers all the data"):
        temporal_split(ds, SplitConfig(test_days=30, **SMALL))


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError):
        SplitConfig(embargo_windows=0)
    with pytest.raises(UserError):
        SplitConfig(test_days=0)


def test_in_span_keeps_window_starts_in_the_half_open_range(ds):
    from slotml.train.pipeline import in_span

    slots = np.unique(ds.slot_ts)
    lo, hi = int(slots[10]), int(slots[40])
    sub = in_span(ds, lo, hi)
    assert sub.slot_ts.min() == lo and sub.slot_ts.max() == int(slots[39])
    assert len(sub) == int(((ds.slot_ts >= lo) & (ds.slot_ts < hi)).sum())
    assert in_span(ds, None, None) is ds
    assert in_span(ds, None, hi).slot_ts.max() < hi
