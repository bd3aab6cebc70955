"""The dashboard's per-day cache (serve/dashboard_cache.py) answers exactly what the reference
aggregates (slot_stats / dashboard) answer on the lake: after a full build on a sim-generated
lake, and after an incremental export that adds hours and rewrites an earlier day (with a price
outage across midnight), recomputing only the dates whose files changed."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from slotml.lake import connect, read_manifest
from slotml.serve.scorer import Scorer
from slotml.web import dashboard, slot_stats
from slotml.web.dashboard_cache import DashboardCache
from tests.serve.sim_data import END, shared_sim_data

W = 300
MIDNIGHT = END // 86400 * 86400  # 2026-11-18 00:00 UTC, inside the sim's day of data


def assert_same(cache: DashboardCache, lake: Path, model: Path) -> None:
    """Every number the page shows, cached vs reference, on the lake as it is now."""
    con = connect(lake)
    try:
        assert cache.families() == slot_stats.families(con)
        for sym in ("BTC", "ETH"):
            want = dashboard.heatmap_rows(con, sym, W)
            assert cache.heatmap_rows(sym, W) == want and want
        assert cache.grid_interval_ms(W) == slot_stats.grid_interval_ms(con, W) == 30_000
        assert cache.snapshots_per_window(W) == slot_stats.snapshots_per_window(con, W)
        for limit in (3, 10_000):
            assert cache.collection_gaps(W, limit=limit) == \
                slot_stats.collection_gaps(con, W, limit=limit)
        for min_ticks in (1, 2):
            assert cache.feed_outages(W, min_ticks=min_ticks, limit=10_000) == \
                slot_stats.feed_outages(con, W, min_ticks=min_ticks, limit=10_000)
        assert cache.unresolved_windows(W) == slot_stats.unresolved_windows(con, W)
        scorer = Scorer.load(model)
        want = dashboard.calibration_rows(con, scorer)
        got = cache.calibration_rows(scorer, model)
        assert want["bins"]
        assert got["test"] == want["test"]
        for key in ("bins", "summary"):  # counts exact; means up to DuckDB's summation order
            assert [{k: v for k, v in r.items() if isinstance(v, str | int)} for r in got[key]] \
                == [{k: v for k, v in r.items() if isinstance(v, str | int)} for r in want[key]]
            assert [{k: pytest.approx(v, rel=1e-12, abs=1e-15) for k, v in r.items()
                     if isinstance(v, float)} for r in want[key]] == \
                [{k: v for k, v in r.items() if isinstance(v, float)} for r in got[key]]
    finally:
        con.close()


def export_lake(url, lake: Path) -> None:
    from slotml.lake.export import ExportConfig, run_export

    run_export(ExportConfig(db=url, lake_dir=lake, fsync=False, progress_s=1e9, grace_s=0.0))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return shared_sim_data(tmp_path_factory.getbasetemp())


def test_full_build_equals_reference(sim: dict, tmp_path: Path) -> None:
    cache = DashboardCache(sim["lake"], tmp_path / "cache")
    st = cache.update()
    assert st.computed == st.dates == len({f.date for t in read_manifest(sim["lake"]).tables.values()
                                           for f in t.files}) >= 2
    assert_same(cache, sim["lake"], sim["model"])
    assert cache.update().computed == 0 and cache.is_current()


def test_incremental_export_rewrites_a_day(sim: dict, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copy(sim["db"], db)
    lake = tmp_path / "lake"
    cut = END - 3 * 3600  # the last three hours are "not collected yet"
    s = sqlite3.connect(db)
    s.execute("ATTACH ? AS orig", (str(sim["db"]),))
    s.execute("DELETE FROM slot_snapshots WHERE slot_ts >= ?", (cut,))
    s.execute("DELETE FROM slot_resolutions WHERE slot_ts >= ?", (cut,))
    s.commit()
    url = sim["url"].__class__(scheme="sqlite", path=db)
    export_lake(url, lake)
    cache = DashboardCache(lake, tmp_path / "cache")
    first = cache.update()
    assert first.computed == first.dates == 2
    assert_same(cache, lake, sim["model"])

    # Collection goes on (the last hours arrive) and an earlier day is rewritten: BTC's price
    # feed was down from 23:57 to 00:03 (a run across midnight) and an outcome is corrected.
    now = time.time() + 1
    s.execute("INSERT INTO slot_snapshots SELECT * FROM orig.slot_snapshots WHERE slot_ts >= ?",
              (cut,))
    s.execute("INSERT INTO slot_resolutions SELECT * FROM orig.slot_resolutions WHERE slot_ts >= ?",
              (cut,))
    s.execute("UPDATE slot_snapshots SET updated_at = ? WHERE slot_ts >= ?", (now, cut))
    s.execute("UPDATE slot_resolutions SET updated_at = ? WHERE slot_ts >= ?", (now, cut))
    n = s.execute("UPDATE slot_snapshots SET chainlink_price = NULL, updated_at = ? "
                  "WHERE symbol = 'BTC' AND tick_ms BETWEEN ? AND ?",
                  (now, (MIDNIGHT - 180) * 1000, (MIDNIGHT + 180) * 1000)).rowcount
    assert n >= 10
    day0 = MIDNIGHT - 86400 + 12 * 3600  # an earlier date's window: its outcome corrected
    s.execute("UPDATE slot_resolutions SET resolved_up = NOT resolved_up, updated_at = ? "
              "WHERE symbol = 'ETH' AND slot_ts = (SELECT min(slot_ts) FROM slot_resolutions "
              "WHERE slot_ts >= ? AND resolved_up IS NOT NULL)", (now, day0))
    s.commit()
    s.close()
    export_lake(url, lake)
    second = cache.update()
    assert second.computed == 2 and second.dates == 2  # both dates' files were rewritten
    assert_same(cache, lake, sim["model"])
    outages = cache.feed_outages(W)
    assert outages[0]["symbol"] == "BTC" and outages[0]["kind"] == "price"
    assert outages[0]["snapshots"] >= 10  # one run, joined across midnight
    assert outages[0]["start"].timestamp() < MIDNIGHT < outages[0]["end"].timestamp()

    # only the date whose files change is recomputed
    s = sqlite3.connect(db)
    s.execute("UPDATE slot_resolutions SET resolved_up = NOT resolved_up, updated_at = ? "
              "WHERE symbol = 'BTC' AND slot_ts = ?", (time.time() + 1, MIDNIGHT + 3600))
    s.commit()
    s.close()
    export_lake(url, lake)
    third = cache.update()
    assert third.computed_dates == [time.strftime("%Y-%m-%d", time.gmtime(MIDNIGHT))]
    assert_same(cache, lake, sim["model"])


def test_empty_lake(tmp_path: Path) -> None:
    cache = DashboardCache(tmp_path / "lake", tmp_path / "cache")
    assert cache.update().dates == 0
    assert cache.families() == [] and cache.heatmap_rows("BTC", W) == []
    assert cache.snapshots_per_window(W) == [] and cache.collection_gaps(W) == []
    assert cache.feed_outages(W) == [] and cache.unresolved_windows(W) == []


def page_tables(lake: Path, model: Path, *extra: str) -> list:
    """Every st.table of one run of the page (Streamlit's own script runner)."""
    import sys

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from slotml.web.dashboard_run import APP

    st.cache_data.clear()
    argv = sys.argv
    sys.argv = [str(APP), "--lake-dir", str(lake), "--model", str(model), *extra]
    try:
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.run()
    finally:
        sys.argv = argv
    assert not at.exception and not at.error
    return [t.value for t in at.table]


def test_page_shows_the_same_tables_with_and_without_the_cache(sim: dict, tmp_path: Path) -> None:
    cached = page_tables(sim["lake"], sim["model"], "--cache-dir", str(tmp_path / "cache"))
    assert (tmp_path / "cache" / "CURRENT").exists()
    direct = page_tables(sim["lake"], sim["model"], "--no-cache")
    assert len(cached) == len(direct) >= 6  # heatmap, 2 calibration, 4 health (gaps may be empty)
    for a, b in zip(cached, direct, strict=True):
        assert a.equals(b), (a, b)


def test_family_picker_names_the_venues_families(tmp_path: Path) -> None:
    """A lake of a 15m and a 1h family: the picker offers both by the venue's names (1h, not
    60m) with their window counts, preselects the one with most windows, and picking the other
    redraws the heatmap and the health sections for it."""
    import sys

    import pyarrow as pa
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from slotml.features.synth import SynthConfig, generate
    from slotml.web.dashboard_run import APP
    from tests.train.test_pipeline import write_lake

    s15, r15 = generate(SynthConfig(symbols=("BTC", "ETH"), n_windows=12, seed=3))
    s1h, r1h = generate(SynthConfig(symbols=("BTC",), window_s=3600, n_windows=5, seed=4))
    write_lake(tmp_path / "lake", pa.concat_tables([s15, s1h]), pa.concat_tables([r15, r1h]))
    st.cache_data.clear()
    argv = sys.argv
    sys.argv = [str(APP), "--lake-dir", str(tmp_path / "lake"), "--no-cache"]
    try:
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.run()
        assert not at.exception and not at.error
        picker = at.sidebar.selectbox[0]
        assert picker.options == ["1h (5 windows)", "15m (24 windows)"]  # (asset, window) pairs
        assert picker.value == 900
        headers = [h.value for h in at.header]
        assert any(h.endswith("BTC 15m") for h in headers) and any(h.endswith("— 15m") for h in headers)
        picker.select(3600).run()
        assert not at.exception and not at.error
        headers = [h.value for h in at.header]
        assert any(h.endswith("BTC 1h") for h in headers) and any(h.endswith("— 1h") for h in headers), headers
        assert at.sidebar.selectbox[1].options == ["BTC"]  # the 1h family's assets only
    finally:
        sys.argv = argv
