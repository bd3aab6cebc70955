"""Issue 4: the sim's history generator.

Aim: 60 days x 4 assets of 15m history "well under a minute". Measured: the generator's rows
per second with the vectorised row builder, against the baseline of building every row with
``ingest.snapshot.make_snapshot`` (same run, same span), projected to 60 days x 4 assets; and
the end-to-end ``backfill_into`` a SQLite store (dominated by the store's row coercion).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench import Row

ISSUE = 4
END = 1795000000


def run(quick: bool) -> list[Row]:
    from slotml.settings import DbUrl
    from slotml.sim.backfill import backfill_into, generate
    from slotml.sim.config import SimConfig

    days = 2.0 if quick else 10.0
    cfg = SimConfig(seed=1)
    generate(cfg, days=0.2, end=END)  # warm the coarse chains / imports
    t = time.perf_counter()
    bf = generate(cfg, days=days, end=END)
    fast = time.perf_counter() - t
    n = len(bf.snapshots)
    t = time.perf_counter()
    generate(cfg, days=days, end=END, exact=True)
    exact = time.perf_counter() - t
    proj = fast * 60 / days
    rows = [
        Row(ISSUE, f"backfill generate ({days:g} d x 4 assets)", n / fast, "rows/s",
            baseline=n / exact, baseline_name="make_snapshot per row", aim="60 d x 4 assets well under 1 min",
            met=proj < 30),
        Row(ISSUE, "backfill generate, projected to 60 d x 4 assets", proj, "s",
            higher_is_better=False, aim="< 30 s", met=proj < 30),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        url = DbUrl(scheme="sqlite", path=Path(tmp) / "bf.db")
        t = time.perf_counter()
        st = asyncio.run(backfill_into(cfg, url, Path(tmp), days=days, end=END, missing_fraction=0.002))
        total = time.perf_counter() - t
    rows.append(Row(ISSUE, f"backfill into SQLite ({days:g} d x 4 assets), projected to 60 d",
                    total * 60 / days, "s", higher_is_better=False,
                    aim="well under 1 min (store-bound)", met=total * 60 / days < 60))
    rows.append(Row(ISSUE, "  of which the store's writes", st["write_s"] / total * 100, "%",
                    higher_is_better=False))
    return rows
