"""``slotml dashboard`` as a person uses it: Streamlit on a sim-generated lake, opened in headless
Chromium through selenium.

The page must show the heatmap and the calibration chart under their titles, and the heatmap's
table must hold exactly the numbers of a DuckDB query written independently here. A screenshot
goes to the test's tmp dir (and to docs/dashboard.png with SLOTML_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from slotml.web.dashboard import MOVE_EDGES, bucket_labels, heatmap_rows
from slotml.web.dashboard_run import streamlit_command
from tests.serve.sim_data import shared_sim_data
from tests.util import free_port, wait_for

SYMBOL, WINDOW_S = "ETH", 300
DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return shared_sim_data(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def dashboard(lake: dict) -> str:
    port = free_port()
    log = open(lake["dir"] / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(streamlit_command(lake["lake"], str(lake["model"].parent), port=port),
                            stdout=log, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited: {(lake['dir'] / 'streamlit.log').read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                return r.read() == b"ok"
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=60, interval=0.2, what="streamlit health")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser(chromium: tuple[str, str], tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium[0]
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
              "--window-size=1280,1900", "--hide-scrollbars"):
        opts.add_argument(a)
    driver = webdriver.Chrome(options=opts, service=Service(chromium[1]))
    try:
        yield driver
    finally:
        driver.quit()


def independent_heatmap(lake_dir: Path, symbol: str, window_s: int) -> dict[tuple[str, str], tuple[float, int]]:
    """(move label, minute) -> (win rate, windows), from the lake's Parquet files directly:
    the last non-NULL move per window and minute (arg_max), the bucket by counting edges."""
    import duckdb

    con = duckdb.connect()
    snaps = str(lake_dir / "slot_snapshots" / "**" / "*.parquet")
    res = str(lake_dir / "slot_resolutions" / "**" / "*.parquet")
    out = con.execute("""
WITH m AS (
  SELECT slot_ts, CAST(floor((tick_ms / 1000.0 - slot_ts) * 15 / window_s) AS INTEGER) AS minute,
         arg_max(dir_move_pct, tick_ms) AS mv
  FROM read_parquet(?) WHERE symbol = ? AND window_s = ? AND tick_ms >= slot_ts * 1000::BIGINT
  GROUP BY ALL
)
SELECT minute, len(list_filter(?::DOUBLE[], lambda e: e <= mv)) AS bucket, count(*) AS n,
       avg(CASE WHEN (mv > 0) = r.resolved_up THEN 1.0 ELSE 0.0 END) AS rate
FROM m JOIN read_parquet(?) r USING (slot_ts)
WHERE r.symbol = ? AND r.window_s = ? AND r.resolved_up IS NOT NULL
  AND mv IS NOT NULL AND mv <> 0 AND minute <= 14
GROUP BY ALL""", [snaps, symbol, window_s, list(MOVE_EDGES), res, symbol, window_s]).fetchall()
    labels = bucket_labels()
    return {(labels[b], str(minute)): (round(rate, 3), n) for minute, b, n, rate in out}


def test_heatmap_rows_equal_an_independent_query(lake: dict) -> None:
    from slotml.lake import connect

    con = connect(lake["lake"])
    got = {(r["label"], str(r["minute"])): (round(r["win_rate"], 3), r["windows"])
           for r in heatmap_rows(con, SYMBOL, WINDOW_S)}
    want = independent_heatmap(lake["lake"], SYMBOL, WINDOW_S)
    assert got == want and len(want) > 20
    assert sum(n for _, n in want.values()) > 1000


def test_dashboard_in_chromium(dashboard: str, lake: dict, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(dashboard)

    def charts() -> dict[str, object]:
        els = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')
        return {e.get_attribute("aria-label") or "": e for e in els}

    wait_for(lambda: any(k.startswith("Win rate of the side the move favours") for k in charts())
             and any(k.startswith("Calibration") for k in charts()),
             timeout=90, interval=0.5, what="heatmap and calibration charts")
    titles = list(charts())
    assert "Win rate of the side the move favours — BTC 5m" in titles, titles
    assert f"Calibration — {lake['model'].name}" in titles, titles
    # the title is drawn in the chart itself too (SVG text), not only announced
    svg_text = {k: e.find_element(By.CSS_SELECTOR, "svg").text for k, e in charts().items()}
    assert any("Calibration" in t for t in svg_text.values()), svg_text
    # the model's feature importance (its file's importance key), in its own section
    wait_for(lambda: f"Feature importance — {lake['model'].name}" in charts(),
             timeout=60, interval=0.5, what="feature importance chart")

    # switch the asset in the sidebar, as a person would, and read the heatmap's table
    pick_asset(browser, SYMBOL)
    wait_for(lambda: f"Win rate of the side the move favours — {SYMBOL} 5m" in charts(),
             timeout=60, interval=0.5, what=f"heatmap of {SYMBOL}")
    table = read_first_table(browser)
    want = independent_heatmap(lake["lake"], SYMBOL, WINDOW_S)
    assert table == want, sorted(set(table.items()) ^ set(want.items()))[:6]

    # the page's numbers came from the day cache beside the lake (serve/dashboard_cache.py)
    from slotml.web.dashboard_cache import DashboardCache

    assert DashboardCache(lake["lake"]).is_current()

    shot = tmp_path / "dashboard.png"
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SLOTML_UPDATE_SCREENSHOT") == "1":
        small_png(shot, DOCS_PNG)


def pick_asset(browser, symbol: str) -> None:
    """Open the sidebar's 'asset' combo box and click ``symbol`` in its list."""
    from selenium.webdriver.common.by import By

    box = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, 'input[role="combobox"][aria-label="asset"]'),
                   timeout=30, what="asset select box")[0]
    box.click()
    option = wait_for(lambda: [o for o in browser.find_elements(By.CSS_SELECTOR, '[role="option"]')
                               if o.text.strip() == symbol], timeout=30, what=f"option {symbol}")[0]
    option.click()


def read_first_table(browser) -> dict[tuple[str, str], tuple[float, int]]:
    """The heatmap table (the page's first st.table) as (label, minute) -> (rate, windows)."""
    from selenium.webdriver.common.by import By

    def parse() -> dict | None:
        tables = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stTable"] table')
        if not tables:
            return None
        t = tables[0]
        head = [th.text.strip() for th in t.find_elements(By.CSS_SELECTOR, "thead th")][1:]
        out = {}
        for tr in t.find_elements(By.CSS_SELECTOR, "tbody tr"):
            label = tr.find_element(By.CSS_SELECTOR, "th").text.strip()
            for minute, td in zip(head, tr.find_elements(By.CSS_SELECTOR, "td"), strict=True):
                cell = td.text.strip()
                if cell:
                    rate, n = cell.split(" ")
                    out[(label, minute)] = (float(rate), int(n.strip("()")))
        return out or None

    return wait_for(parse, timeout=30, interval=0.3, what="the heatmap table")


def small_png(src: Path, dst: Path, width: int = 900) -> None:
    """A README-sized copy: scaled to ``width`` px, 64-colour palette."""
    from PIL import Image

    img = Image.open(src).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
