"""What every venue parser shares, whatever the feed: ``ParseError`` and ``parse_time``.

A leaf module (no ingest imports), so the feeds, the books and the transport can all raise and
count the same error without importing one another.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any


class ParseError(ValueError):
    """A venue payload that does not have the shape we rely on (counted and skipped)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_time(value: Any) -> float | None:
    """Lenient timestamp: ISO with any precision, ``2026-07-07 21:25:17+00``, epoch s or ms."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        v = float(value)
        return v / 1000.0 if v > 1e11 else v
    s = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return parse_time(float(s))
    s = s.replace(" ", "T", 1)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    m = re.search(r"([+-]\d\d)$", s)
    if m:  # "+00" -> "+00:00"
        s = s + ":00"
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", s)
    if m:  # fromisoformat wants at most 6 fractional digits
        s = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()

