"""The Streamlit page of ``slotml dashboard`` (run by ``streamlit run``; args after ``--``).

Every number comes from DuckDB and is shown in a plain table beside its chart: from the
per-date aggregate cache (``slotml.web.dashboard_cache``, brought up to date with the lake's
manifest on the first load after an export: only changed dates are recomputed), or, if the
cache cannot be written, straight from the lake (``slotml.lake.connect()`` with
``slotml.web.dashboard`` / ``slotml.web.slot_stats``; the same numbers, slower). Results are
also kept in memory per lake manifest, model file and selection, so switching assets back and
forth is instant and a new export shows up on the next load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from slotml.venue import family_of
from slotml.web import dashboard as dash
from slotml.web import slot_stats
from slotml.web.dashboard_live import live_model_section

HEATMAP_TITLE = "Win rate of the side the move favours"
CALIBRATION_TITLE = "Calibration"
IMPORTANCE_TITLE = "Feature importance"
HEALTH_TITLE = "Data health"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dashboard_app")
    p.add_argument("--lake-dir", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-cache", action="store_true", help="aggregate over the lake itself")
    p.add_argument("--monitor-dir", default=None, help="the live monitor's ledgers")
    args, _ = p.parse_known_args(sys.argv[1:])
    return args


def _family(window_s: int) -> str:
    """The venue's name (``1h``, ``1d``: not ``60m``, ``1440m``), else the length in seconds."""
    return family_of(window_s) or f"{window_s}s"


def _day(t: int | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _connect(lake_dir: str) -> Any:
    from slotml.lake import connect

    return connect(lake_dir)


@st.cache_data(show_spinner="bringing the day cache up to date", max_entries=16)
def load_cache(lake_dir: str, manifest_id: int, cache_dir: str | None) -> str | None:
    """The cache folder, up to date with the lake; None if it cannot be (read-only disk...):
    the page then aggregates over the lake itself."""
    from slotml.web.dashboard_cache import DashboardCache

    cache = DashboardCache(lake_dir, cache_dir)
    try:
        cache.update()
    except Exception:  # noqa: BLE001 - the uncached path gives the same numbers
        logging.getLogger(__name__).exception("dashboard cache unavailable; reading the lake")
        return None
    return str(cache.dir)


def _cache(lake_dir: str, cache_dir: str | None) -> Any:
    from slotml.web.dashboard_cache import DashboardCache

    return DashboardCache(lake_dir, cache_dir)


@st.cache_data(show_spinner=False, max_entries=64)
def load_families(lake_dir: str, manifest_id: int, cache_dir: str | None) -> list[dict]:
    if cache_dir:
        return _cache(lake_dir, cache_dir).families()
    con = _connect(lake_dir)
    try:
        return slot_stats.families(con)
    finally:
        con.close()


@st.cache_data(show_spinner=False, max_entries=64)
def load_heatmap(lake_dir: str, manifest_id: int, cache_dir: str | None, symbol: str,
                 window_s: int) -> list[dict]:
    if cache_dir:
        return _cache(lake_dir, cache_dir).heatmap_rows(symbol, window_s)
    con = _connect(lake_dir)
    try:
        return dash.heatmap_rows(con, symbol, window_s)
    finally:
        con.close()


@st.cache_data(show_spinner=False, max_entries=16)
def load_calibration(lake_dir: str, manifest_id: int, cache_dir: str | None, model_path: str,
                     mtime: float) -> dict:
    from slotml.serve.scorer import Scorer

    scorer = Scorer.load(model_path)
    if cache_dir:
        out = _cache(lake_dir, cache_dir).calibration_rows(scorer, model_path)
    else:
        con = _connect(lake_dir)
        try:
            out = dash.calibration_rows(con, scorer)
        finally:
            con.close()
    out["window_s"] = scorer.window_s
    return out


@st.cache_data(show_spinner=False, max_entries=16)
def load_health(lake_dir: str, manifest_id: int, cache_dir: str | None, window_s: int
                ) -> dict[str, list[dict]]:
    if cache_dir:
        c = _cache(lake_dir, cache_dir)
        return {
            "per_window": c.snapshots_per_window(window_s),
            "gaps": c.collection_gaps(window_s),
            "outages": c.feed_outages(window_s),
            "unresolved": c.unresolved_windows(window_s),
        }
    con = _connect(lake_dir)
    try:
        return {
            "per_window": slot_stats.snapshots_per_window(con, window_s),
            "gaps": slot_stats.collection_gaps(con, window_s),
            "outages": slot_stats.feed_outages(con, window_s),
            "unresolved": slot_stats.unresolved_windows(con, window_s),
        }
    finally:
        con.close()


def _models(model_arg: str | None, lake_dir: Path) -> list[Path]:
    """Model files to choose from: the designated one first, then the rest of its folder."""
    from slotml.model_file import resolve_model_path

    cands: list[Path] = []
    try:
        first = resolve_model_path(model_arg or lake_dir.parent / "models")
        cands.append(first)
        cands += sorted((p for p in first.parent.glob("*.onnx") if p != first), reverse=True)
    except Exception as e:  # noqa: BLE001 - no model is a normal state for this page
        st.sidebar.info(f"no model: {e}")
    return cands


def heatmap_section(lake_dir: str, mid: int, cdir: str | None, symbol: str, window_s: int
                    ) -> None:
    title = f"{HEATMAP_TITLE} — {symbol} {_family(window_s)}"
    st.header(title)
    st.caption("Per resolved window and minute into it (scaled to 15 minutes), the last "
               "snapshot in that minute; the favoured side is Up for a positive settlement move, "
               "Down for a negative one. Cell text: windows counted.")
    hm = load_heatmap(lake_dir, mid, cdir, symbol, window_s)
    if not hm:
        st.info("no resolved windows with a move for this asset and family")
        return
    df = pd.DataFrame(hm)
    order = list(reversed(dash.bucket_labels()))
    x = alt.X("minute:O", title="minute into the window")
    y = alt.Y("label:N", sort=order, title="signed move since price to beat (%)")
    rect = alt.Chart(df).mark_rect().encode(
        x=x, y=y,
        color=alt.Color("win_rate:Q", title="win rate",
                        scale=alt.Scale(domain=[0.5, 1.0], scheme="redyellowgreen", clamp=True)),
        tooltip=["minute", "label", "windows", "wins", alt.Tooltip("win_rate:Q", format=".3f")])
    text = alt.Chart(df).mark_text(fontSize=10).encode(x=x, y=y, text="windows:Q")
    st.altair_chart((rect + text).properties(title=title, height=360), alt=title,
                    width="stretch")
    t = dash.heatmap_table(hm)
    st.subheader("Win rate (windows) by move bucket and minute")
    st.table(pd.DataFrame(t["data"], index=t["index"], columns=t["columns"]))


def calibration_section(lake_dir: str, mid: int, cdir: str | None, models: list[Path]
                        ) -> None:
    st.header(CALIBRATION_TITLE)
    if not models:
        st.info("no model to check: train one (slotml train --promote) or pass --model")
        return
    names = [m.name for m in models]
    choice = st.sidebar.selectbox("model", names, index=0, key="model")
    path = models[names.index(choice)]
    try:
        cal = load_calibration(lake_dir, mid, cdir, str(path), path.stat().st_mtime)
    except Exception as e:  # noqa: BLE001 - a bad model file is shown, not a crash
        st.error(f"cannot check {path.name}: {e}")
        return
    t_from, t_to = cal["test"]
    title = f"{CALIBRATION_TITLE} — {path.name}"
    st.caption(f"Test days {_day(t_from)} .. {_day(t_to)} UTC; later days after that. "
               "Decision rows of resolved windows at the model's decision points; the book's "
               "mid (bid_up + ask_up) / 2 is the baseline.")
    if not cal["bins"]:
        st.info("no resolved windows on or after the model's test days in this lake")
        return
    df = pd.DataFrame(cal["bins"])
    df["curve"] = df["series"] + " · " + df["slice"]
    diag = alt.Chart(pd.DataFrame({"p": [0.0, 1.0]})).mark_line(
        strokeDash=[4, 4], color="gray").encode(x="p:Q", y="p:Q")
    enc = {
        "x": alt.X("mean_p:Q", title="predicted P(Up)", scale=alt.Scale(domain=[0, 1])),
        "y": alt.Y("observed:Q", title="observed Up frequency", scale=alt.Scale(domain=[0, 1])),
        "color": alt.Color("curve:N", title=None),
    }
    lines = alt.Chart(df).mark_line().encode(**enc, order="bin:Q")
    points = alt.Chart(df).mark_circle(opacity=0.8).encode(
        **enc, size=alt.Size("n:Q", title="rows"),
        tooltip=["curve", "bin", "n", alt.Tooltip("mean_p:Q", format=".3f"),
                 alt.Tooltip("observed:Q", format=".3f")])
    curves = lines + points
    st.altair_chart((diag + curves).properties(title=title, height=380), alt=title,
                    width="stretch")
    st.subheader("Reliability bins")
    show = df[["series", "slice", "bin", "n", "mean_p", "observed"]].copy()
    st.table(show.round(3))
    st.subheader("Summary (Brier score: lower is better)")
    st.table(pd.DataFrame(cal["summary"]).round(4))


@st.cache_data(show_spinner=False, max_entries=16)
def load_importance(model_path: str, mtime: float) -> list[dict]:
    from slotml.serve.scorer import Scorer

    return dash.importance_rows(Scorer.load(model_path).meta)


def importance_section(models: list[Path]) -> None:
    """The chosen model's feature importance (the model file's ``importance`` key)."""
    if not models:
        return
    names = [m.name for m in models]
    path = models[names.index(st.session_state.get("model") or names[0])]
    title = f"{IMPORTANCE_TITLE} — {path.name}"
    st.header(title)
    try:
        rows = load_importance(str(path), path.stat().st_mtime)
    except Exception as e:  # noqa: BLE001 - a bad model file is shown, not a crash
        st.error(f"cannot read {path.name}: {e}")
        return
    if not rows:
        st.info("this model file carries no feature importance (written before slotml stored it)")
        return
    st.caption("Permutation importance: how much the calibrated model's Brier score rises when "
               "one feature's column is shuffled on its calibration days (mean of a few "
               "shuffles, fixed seed; near 0: the model does without it). Gain share: XGBoost's "
               "gain importance over the total, what the trees leaned on while fitting.")
    df = pd.DataFrame(rows)
    chart = alt.Chart(df).mark_bar().encode(
        x=alt.X("permutation:Q", title="Brier rise when shuffled"),
        y=alt.Y("feature:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
        tooltip=["feature", alt.Tooltip("permutation:Q", format=".5f"),
                 alt.Tooltip("permutation_std:Q", format=".5f"),
                 alt.Tooltip("gain_share:Q", format=".1%")])
    st.altair_chart(chart.properties(title=title, height=24 * len(df)), alt=title, width="stretch")
    st.table(df.round(5))


def health_section(lake_dir: str, mid: int, cdir: str | None, window_s: int) -> None:
    st.header(f"{HEALTH_TITLE} — {_family(window_s)}")
    h = load_health(lake_dir, mid, cdir, window_s)
    per = pd.DataFrame(h["per_window"])
    if not per.empty:
        title = "Snapshots per window, by day"
        chart = alt.Chart(per).mark_line(point=True).encode(
            x=alt.X("day:T", title="day (UTC)"), y=alt.Y("snapshots_per_window:Q", title="mean"),
            color="symbol:N", tooltip=list(per.columns))
        st.altair_chart(chart.properties(title=title, height=240), alt=title,
                        width="stretch")
        st.table(per)
    for key, title, empty in (
        ("gaps", "Collection gaps (no snapshot of any asset)", "no gaps"),
        ("outages", "Feed outages (runs of snapshots without prices or books)", "no outages"),
        ("unresolved", "Unresolved windows (ended, still no official outcome)", "none"),
    ):
        st.subheader(title)
        df = pd.DataFrame(h[key])
        if df.empty:
            st.write(empty)
        else:
            st.table(df)


def main() -> None:
    from slotml.lake import read_manifest
    from slotml.lake.query import default_lake_dir

    args = _args()
    lake = Path(args.lake_dir) if args.lake_dir else default_lake_dir()
    st.set_page_config(page_title="slotml dashboard", layout="wide")
    st.title("slotml: collected data and model check")
    manifest = read_manifest(lake)
    st.caption(f"lake {lake} · export #{manifest.id}"
               + (f" at {_day(int(manifest.created_at))} UTC" if manifest.created_at else ""))
    cdir = None if args.no_cache else load_cache(str(lake), manifest.id, args.cache_dir)
    if cdir is None:
        st.caption("numbers aggregated over the lake itself (no day cache: slower)")
    fams = load_families(str(lake), manifest.id, cdir)
    if not fams:
        st.warning("the lake is empty: run `slotml export` after collecting")
        return
    counts: dict[int, int] = {}
    for f in fams:
        counts[f["window_s"]] = counts.get(f["window_s"], 0) + int(f["windows"])
    windows = sorted(counts, reverse=True)  # longest first; the one with most windows preselected
    window_s = st.sidebar.selectbox("family", windows, index=windows.index(max(windows, key=counts.get)),
                                    format_func=lambda w: f"{_family(w)} ({counts[w]:,} windows)")
    symbols = [f["symbol"] for f in fams if f["window_s"] == window_s]
    symbol = st.sidebar.selectbox("asset", symbols)
    heatmap_section(str(lake), manifest.id, cdir, symbol, window_s)
    models = _models(args.model, lake)
    calibration_section(str(lake), manifest.id, cdir, models)
    importance_section(models)
    live_model_section(Path(args.monitor_dir) if args.monitor_dir else lake.parent / "monitor",
                       models[0] if models else None)
    health_section(str(lake), manifest.id, cdir, window_s)


main()
