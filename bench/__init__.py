"""Benchmarks (`make bench`): every ``bench/bench_*.py`` module reports rows into ONE table.

A module defines ``run(quick: bool) -> list[Row]``. Each row gives the figure measured, the
baseline measured beside it IN THE SAME RUN where its issue names one, their ratio, and the
aim from the issue. Speed and memory targets live here, never in timed unit tests.
"""

from __future__ import annotations

import platform
import resource
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    issue: int
    name: str  # what was measured
    figure: float
    unit: str
    baseline: float | None = None  # measured in the same run
    baseline_name: str = ""
    higher_is_better: bool = True
    aim: str = ""  # the issue's target, as text
    met: bool | None = None  # whether the aim was met (None: no pass/fail aim)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.figure == 0:
            return None
        return self.figure / self.baseline if self.higher_is_better else self.baseline / self.figure


def machine() -> str:
    import os

    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def cpu_s() -> float:
    """This process's CPU time (user + system), s."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    """The 1-minute load average, printed beside wall times measured on a shared box."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def render(rows: list[Row]) -> str:
    head = ["issue", "benchmark", "figure", "unit", "baseline (same run)", "ratio", "aim", "met"]
    body = [
        [
            str(r.issue), r.name, fmt(r.figure), r.unit,
            f"{fmt(r.baseline)} {r.baseline_name}".strip() if r.baseline is not None else "-",
            (f"{r.ratio:.2f}x" if r.ratio < 10 else f"{r.ratio:.1f}x") if r.ratio is not None else "-",
            r.aim or "-",
            {True: "yes", False: "NO", None: "-"}[r.met],
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    return "\n".join(out)
