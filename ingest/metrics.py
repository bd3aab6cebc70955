"""Counters every part of the collector increments, and their Prometheus text.

Every part of the collector counts what it skipped or repaired here, by name and labels, so a
silent degradation (a stalled relay, crossed books, 429s) shows up as a number instead of a
quiet hole in the data. A leaf module: feeds, transport and books import it freely.
"""

from __future__ import annotations

from collections import defaultdict

LabelKey = tuple[tuple[str, str], ...]


class Metrics:
    """Monotonic counters keyed by name and labels (cheap: one dict update per event)."""

    def __init__(self) -> None:
        self._c: dict[str, dict[LabelKey, float]] = defaultdict(lambda: defaultdict(float))

    def inc(self, name: str, n: float = 1, **labels: str) -> None:
        self._c[name][tuple(sorted((k, str(v)) for k, v in labels.items()))] += n

    def get(self, name: str, **labels: str) -> float:
        """Sum of the series whose labels include ``labels`` (all series when none given)."""
        series = self._c.get(name, {})
        want = {(k, str(v)) for k, v in labels.items()}
        return sum(v for key, v in series.items() if want <= set(key))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, v in self._c.get(name, {}).items():
            lv = dict(key).get(label, "")
            out[lv] = out.get(lv, 0.0) + v
        return out

    def snapshot(self) -> dict[str, dict[LabelKey, float]]:
        return {k: dict(v) for k, v in self._c.items()}


def _labels(key: LabelKey) -> str:
    if not key:
        return ""
    esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in key) + "}"


def prometheus_text(metrics: Metrics, gauges: dict[str, float | int | None]) -> str:
    """Prometheus exposition format 0.0.4: counters get ``slotml_`` prefix and ``_total``."""
    lines: list[str] = []
    for name, series in sorted(metrics.snapshot().items()):
        full = f"slotml_{name}_total"
        lines.append(f"# TYPE {full} counter")
        for key, v in sorted(series.items()):
            lines.append(f"{full}{_labels(key)} {v:g}")
    for name, v in sorted(gauges.items()):
        if v is None:
            continue
        full = f"slotml_{name}"
        lines.append(f"# TYPE {full} gauge")
        lines.append(f"{full} {float(v):g}")
    return "\n".join(lines) + "\n"
