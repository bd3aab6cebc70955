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
    with pytest.raises(UserError, match=r"^the 15m family \(900 s windows\): too little data: 80 resolved "
                       r"windows \(4 assets over 0.208 days\), need at least 330 \(fit 200 \+ "
                       r"early stop 30 \+ calibration 50 \+ test 50\): 250 more"):
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


# ------------------------------------------------------------------ --split-layout recent

ORDER_RECENT = ("calibration", "policy", "fit", "early_stop", "test")


@pytest.mark.parametrize("final", [False, True])
@pytest.mark.parametrize("policy_days", [None, 0.0])
def test_recent_layout_puts_the_booster_on_the_latest_days(ds, final, policy_days):
    """calibration | policy | fit | early_stop | test: disjoint, each one contiguous span of
    window starts, in that order, an embargo (with rows in it) at every boundary, the test
    slice the last test_days and the booster's slices right before it."""
    cfg = SplitConfig(test_days=1.0, final=final, policy_days=policy_days, layout="recent", **SMALL)
    sp = temporal_split(ds, cfg)
    slices = [s for s in (getattr(sp, n) for n in ORDER_RECENT) if s is not None]
    assert [s.name for s in slices] == [n for n in ORDER_RECENT
                                        if not (n == "test" and final)
                                        and not (n == "policy" and policy_days == 0)]
    w = ds.window_s
    masks = np.stack([s.mask for s in slices])
    assert masks.sum(axis=0).max() == 1, "a row sits in two slices"
    for s in slices:  # contiguous: every row of its span is in it (no other slice inside)
        span = (ds.slot_ts >= s.first_slot) & (ds.slot_ts <= s.last_slot)
        assert np.array_equal(span, s.mask), s.name
        assert s.windows > 0
    for a, b in zip(slices, slices[1:], strict=False):
        assert a.last_slot < b.first_slot, (a.name, b.name)
        gap_windows = (b.first_slot - (a.last_slot + w)) / w
        assert gap_windows >= cfg.embargo_windows, (a.name, b.name, gap_windows)
        assert ((ds.slot_ts >= a.last_slot + w) & (ds.slot_ts < b.first_slot)).any()
    assert sp.dropped_rows == int((~masks.any(axis=0)).sum()) > 0
    assert sp.calibration.first_slot == ds.slot_ts.min()  # the held-out slices come first
    end = ds.slot_ts.max() + w
    if final:
        assert sp.test is None and sp.early_stop.last_slot == ds.slot_ts.max()
    else:
        # the test slice is the last test_days, untouched; the booster's days end one embargo
        # before it (the standard layout puts calibration/policy there instead)
        assert sp.test.first_slot >= end - 86400 > sp.test.first_slot - w
        assert sp.test.last_slot == ds.slot_ts.max()
        assert sp.early_stop.last_slot == sp.test.first_slot - (cfg.embargo_windows + 1) * w
    d = sp.describe()
    assert d["layout"] == "recent"
    assert (d["train"]["from"], d["train"]["to"]) == (sp.fit.first_slot, sp.early_stop.last_slot)


# ------------------------------------------------------------------ --split-layout latest

@pytest.mark.parametrize("final", [False, True])
@pytest.mark.parametrize("policy_days", [None, 0.0])
def test_latest_layout_calibrates_on_the_early_stop_days(ds, final, policy_days):
    """policy | fit | early_stop = calibration | test: the booster's slices and the
    calibration are the latest days before the test slice, the policy slice the first days;
    disjoint apart from calibration = early stop, an embargo (with rows) at every boundary."""
    cfg = SplitConfig(test_days=1.0, final=final, policy_days=policy_days, layout="latest", **SMALL)
    sp = temporal_split(ds, cfg)
    assert np.array_equal(sp.calibration.mask, sp.early_stop.mask)
    assert (sp.calibration.first_slot, sp.calibration.last_slot) == (
        sp.early_stop.first_slot, sp.early_stop.last_slot)
    order = [s for s in (sp.policy, sp.fit, sp.early_stop, sp.test) if s is not None]
    assert [s.name for s in order] == [n for n in ("policy", "fit", "early_stop", "test")
                                       if not (n == "test" and final)
                                       and not (n == "policy" and policy_days == 0)]
    w = ds.window_s
    masks = np.stack([s.mask for s in order])
    assert masks.sum(axis=0).max() == 1, "a row sits in two slices"
    for s in order:
        span = (ds.slot_ts >= s.first_slot) & (ds.slot_ts <= s.last_slot)
        assert np.array_equal(span, s.mask), s.name
        assert s.windows > 0
    for a, b in zip(order, order[1:], strict=False):
        assert (b.first_slot - (a.last_slot + w)) / w >= cfg.embargo_windows, (a.name, b.name)
        assert ((ds.slot_ts >= a.last_slot + w) & (ds.slot_ts < b.first_slot)).any()
    assert sp.dropped_rows == int((~masks.any(axis=0)).sum()) > 0
    assert order[0].first_slot == ds.slot_ts.min()
    if final:
        assert sp.test is None and sp.early_stop.last_slot == ds.slot_ts.max()
    else:
        assert sp.early_stop.last_slot == sp.test.first_slot - (cfg.embargo_windows + 1) * w
    # the fit takes the days standard gives calibration: it is longer than standard's fit
    std = temporal_split(ds, SplitConfig(test_days=1.0, final=final, policy_days=policy_days,
                                         **SMALL))
    assert sp.fit.windows > std.fit.windows
    assert sp.describe()["layout"] == "latest"


@pytest.mark.parametrize("final", [False, True])
def test_recent_layout_keeps_the_standard_slice_lengths(ds, final):
    """Only the order changes: each slice spans the same time (within an embargo or two)."""
    kw = dict(test_days=1.0, final=final, policy_days=None, embargo_windows=2, **SMALL)
    std = temporal_split(ds, SplitConfig(**kw))
    rec = temporal_split(ds, SplitConfig(**kw, layout="recent"))
    assert std.describe()["layout"] == "standard"
    w = ds.window_s
    for name in ("fit", "early_stop", "calibration", "policy", "test"):
        a, b = getattr(std, name), getattr(rec, name)
        if a is None:
            assert b is None and name == "test" and final
            continue
        assert abs(a.windows - b.windows) <= 4 * 3 * 4, name  # 4 assets x a few windows
        assert abs((a.last_slot - a.first_slot) - (b.last_slot - b.first_slot)) <= 6 * w, name
    assert rec.dropped_rows == pytest.approx(std.dropped_rows, rel=0.2)


def test_recent_layout_embargo_width(ds):
    one = temporal_split(ds, SplitConfig(test_days=1.0, layout="recent", policy_days=None, **SMALL))
    three = temporal_split(ds, SplitConfig(test_days=1.0, layout="recent", policy_days=None,
                                           embargo_windows=3, **SMALL))
    w = ds.window_s
    for sp, k in ((one, 1), (three, 3)):
        order = [sp.calibration, sp.policy, sp.fit, sp.early_stop, sp.test]
        assert min((b.first_slot - a.last_slot - w) // w
                   for a, b in zip(order, order[1:], strict=False)) == k


def test_recent_layout_too_little_data_names_the_family(ds):
    small = ds.take(ds.slot_ts < ds.slot_ts.min() + 20 * ds.window_s)  # 80 windows
    with pytest.raises(UserError, match=r"^the 15m family \(900 s windows\): too little data: 80 "
                       r"resolved windows"):
        temporal_split(small, SplitConfig(test_days=0.1, layout="recent"))
    # enough in total, not for the fit slice once calibration and policy came first
    with pytest.raises(UserError, match=r"^the 15m family \(900 s windows\): the fit slice holds "
                       r"\d+ resolved windows, need at least 2000: collect about \d+ more"):
        temporal_split(ds, SplitConfig(test_days=1.0, layout="recent",
                                       **{**SMALL, "min_fit_windows": 2000}))
    # a hole at the start of the data: the calibration slice (first in time) is empty
    start = ds.slot_ts.min()
    hole = (ds.slot_ts > start) & (ds.slot_ts < start + 2.3 * 86400)  # calibration: ~2.1 days
    with pytest.raises(UserError, match=r"^the 15m family \(900 s windows\): the calibration "
                       r"slice holds \d+ resolved windows \(too few\)"):
        temporal_split(ds.take(~hole), SplitConfig(test_days=1.0, layout="recent", **SMALL))


def test_unknown_layout_is_a_user_error():
    with pytest.raises(UserError, match=r"^--split-layout 'sideways': not a layout; use one of "
                       r"standard, recent, latest$"):
        SplitConfig(layout="sideways")


# ------------------------------------------------------------------ --es-days

@pytest.mark.parametrize("layout", ["standard", "latest"])
@pytest.mark.parametrize("es_days", [0.5, 1.5])
def test_es_days_fixes_the_early_stop_slice_to_the_training_spans_last_days(ds, layout, es_days):
    """--es-days N: early stopping (with latest also calibration) is the last N days of the
    training span, whatever its length; the fit gets the rest."""
    w = ds.window_s
    sp = temporal_split(ds, SplitConfig(test_days=1.0, layout=layout, es_days=es_days, **SMALL))
    frac = temporal_split(ds, SplitConfig(test_days=1.0, layout=layout, **SMALL))
    es = sp.early_stop
    assert es.last_slot == frac.early_stop.last_slot  # the training span ends where it did
    assert es.last_slot + w - es.first_slot == pytest.approx(es_days * 86400, abs=w)
    assert sp.fit.first_slot == frac.fit.first_slot
    assert sp.fit.last_slot + w <= es.first_slot - w  # the embargo
    if layout == "latest":
        assert np.array_equal(sp.calibration.mask, es.mask)
    else:
        assert np.array_equal(sp.calibration.mask, frac.calibration.mask)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_es_days_must_be_a_positive_number(bad):
    with pytest.raises(UserError, match=r"^--es-days must be a positive number of days"):
        SplitConfig(es_days=bad)
