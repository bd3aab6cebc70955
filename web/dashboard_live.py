"""The dashboard's "live model" page: what the calibration monitor saw since the model went live.

Read from the monitor's ledger (``web/monitor.py``: one JSON line per scored decision row, one
file per model under ``<data-dir>/monitor``, written by ``slotml monitor`` or ``slotml api
--model-path``): the reliability curve of the model and of the book mid over the last rolling
window, the rolling Brier against the model's expected Brier and the book's, the health rule's
CUSUM, and the gate's declines by reason. Its own module so the page merges apart from the
lake pages of ``dashboard_app.py``; the numbers (``live_model_data``) need no Streamlit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slotml.web import monitor_stats as ms
from slotml.web.monitor import DEFAULT_ROWS, Rolling, ledger_path, read_ledger, rows_arrays

LIVE_TITLE = "Live model"
MAX_POINTS = 400  # points of the rolling series drawn


def rolling(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of the last ``n`` values at each position (NaN ignored; NaN where none)."""
    ok = np.isfinite(x)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - n, 0)
    cnt = cn[i] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (cs[i] - cs[lo]) / cnt, np.nan)


def live_model_data(monitor_dir: Path, model_file: Path, rows: int = DEFAULT_ROWS) -> dict[str, Any]:
    """The page's numbers from the model's ledger (empty lists when it has none yet)."""
    ledger = ledger_path(monitor_dir, model_file)
    data, bad = read_ledger(ledger)
    out: dict[str, Any] = {"ledger": str(ledger), "rows": len(data), "unreadable": bad,
                           "summary": None, "bins": [], "series": [], "declined": []}
    if not data:
        return out
    y, p, mid = rows_arrays(data)
    last = slice(max(len(data) - rows, 0), None)
    replay = Rolling(rows)  # the monitor's own state, the health rule's CUSUM included
    for r in data:
        replay.add(r)
    out["summary"] = replay.summary()
    b = ms.book_p(mid)
    for name, q, yy in (("model", p[last], y[last]),
                        ("book mid", b[last][np.isfinite(b[last])], y[last][np.isfinite(b[last])])):
        rel = ms.reliability(yy, q)
        out["bins"] += [{"series": name, "bin": i, "n": n, "mean_p": m, "observed": o}
                        for i, (n, m, o) in enumerate(zip(rel["count"], rel["mean_pred"], rel["observed"],
                                                          strict=True)) if n]
    brier, expected = rolling((p - y) ** 2, rows), rolling(p * (1 - p), rows)
    book = rolling((b - y) ** 2, rows)
    step = max(1, len(data) // MAX_POINTS)
    for i in sorted({*range(step - 1, len(data), step), len(data) - 1}):  # the last row too
        out["series"] += [{"slot_ts": int(data[i]["slot_ts"]), "row": i + 1, "curve": c, "brier": float(v[i])}
                          for c, v in (("model observed", brier), ("model expected", expected),
                                       ("book mid", book)) if np.isfinite(v[i])]
    codes: dict[str, int] = {}
    for r in data:
        if r.get("code") and r["code"] != "enter":
            codes[r["code"]] = codes.get(r["code"], 0) + 1
    out["declined"] = [{"reason": k, "rows": v} for k, v in sorted(codes.items(), key=lambda kv: -kv[1])]
    out["entered"] = sum(1 for r in data if r.get("code") == "enter")
    out["expired"] = sum(1 for r in data if r.get("expired"))
    return out


def live_model_section(monitor_dir: Path, model_file: Path | None, rows: int = DEFAULT_ROWS) -> None:
    """Draw the page (Streamlit); every chart has its table beside it."""
    import datetime as dt

    import altair as alt
    import pandas as pd
    import streamlit as st

    st.header(LIVE_TITLE)
    if model_file is None:
        st.info("no model: the live page follows the model the monitor scores")
        return
    d = live_model_data(monitor_dir, model_file, rows)
    if not d["rows"]:
        st.info(f"no rows scored yet for {model_file.name} ({d['ledger']}): run `slotml monitor` "
                "or `slotml api --model-path ...`")
        return
    s = d["summary"]
    st.caption(f"{model_file.name}: {d['rows']} decision rows scored since it went live (ledger "
               f"{d['ledger']}); the numbers below are over the last {s['rows']}. Health rule "
               f"(README, 'Live calibration monitor'): {s['status']}, CUSUM {s['cusum']:.1f} of "
               f"{s['cusum_h']:.0f}; observed Brier {s['brier']:.4f}, expected {s['expected_brier']:.4f}, "
               f"book {s['book_brier']:.4f} on the {s['book_rows']} rows with a quote (the model "
               f"on those rows {s['book_rows_brier']:.4f}).")
    bins = pd.DataFrame(d["bins"])
    title = "Reliability over the rolling window"
    diag = alt.Chart(pd.DataFrame({"p": [0.0, 1.0]})).mark_line(strokeDash=[4, 4], color="gray"
                                                                ).encode(x="p:Q", y="p:Q")
    enc = {"x": alt.X("mean_p:Q", title="predicted P(Up)", scale=alt.Scale(domain=[0, 1])),
           "y": alt.Y("observed:Q", title="observed Up frequency", scale=alt.Scale(domain=[0, 1])),
           "color": alt.Color("series:N", title=None)}
    curve = alt.Chart(bins).mark_line(point=True).encode(**enc, order="bin:Q",
                                                         tooltip=["series", "bin", "n", "mean_p", "observed"])
    st.altair_chart((diag + curve).properties(title=title, height=340), alt=title, width="stretch")
    st.table(bins.round(3))
    series = pd.DataFrame(d["series"])
    series["time"] = [dt.datetime.fromtimestamp(t, dt.UTC) for t in series["slot_ts"]]
    title = f"Rolling Brier (last {rows} rows): observed vs expected vs book"
    chart = alt.Chart(series).mark_line().encode(
        x=alt.X("time:T", title="window start (UTC)"), y=alt.Y("brier:Q", title="Brier"),
        color=alt.Color("curve:N", title=None), tooltip=["time", "row", "curve", "brier"])
    st.altair_chart(chart.properties(title=title, height=300), alt=title, width="stretch")
    st.table(pd.DataFrame([{k: v for k, v in s.items() if not isinstance(v, dict)}]).round(4))
    st.subheader("Decisions declined by reason (the gate asked with the book's bids)")
    expired = (f" {d['expired']} rows were decided past the model's expiry (--on-expired: "
               "under fallback the manual filters' reasons are shown)." if d["expired"] else "")
    st.caption(f"{d['entered']} rows entered; the rows without a snapshot (no_features) are "
               f"counted in /health and /metrics only.{expired}")
    st.table(pd.DataFrame(d["declined"]) if d["declined"] else pd.DataFrame({"reason": ["none"]}))
