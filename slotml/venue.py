"""The venue's grammar, written once: window families, slugs, the scaled minute, time parsing.

Every stage that names a market or a window reads it here (ingest, sim, web, backtest), so the
collector, the sim and the API can never disagree on what ``btc-updown-15m-1767200400`` means.

A family is one row of ``FAMILIES``: its name as the venue spells it in slugs, and its window
length. ``15m`` is the venue's; the shorter ones are the sim's fast families for tests and demos.
A market's settlement rule (``twap60``, ``spot``, ...) is read from its own metadata by the
Gamma feed (``ingest/feeds/gamma.py``, ``settlement_rule``): adding a family is one row here, plus
its rule there when the venue states a new one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slotml.errors import UserError

# Features measure time in "scaled minutes": a window of any length is 15 of them, so one model
# contract serves every family (a 10 s sim window's 5th scaled minute is its 1/3 point).
SCALE_MINUTES = 15.0
REAL_WINDOW_S = 900  # the venue's measured delays (15m markets) scale by window_s / this


@dataclass(frozen=True)
class Family:
    """One window family: its slug name and window length (starts are multiples of it, UTC)."""

    name: str
    window_s: int
    listed: bool  # the venue lists it (the others exist only in the sim)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("15m", 900, listed=True),
    Family("5m", 300, listed=False),
    Family("1m", 60, listed=False),
    Family("10s", 10, listed=False),
    Family("5s", 5, listed=False),
)}

SLUG_PATTERN = "{asset}-updown-{family}-{start}"  # asset lower case, start in epoch seconds
_SLUG = re.compile(r"^([a-z0-9]+)-updown-([0-9a-z]+)-(\d+)$")


def family(name: str) -> Family:
    """The family called ``name``; a one-line ``UserError`` naming the known ones otherwise."""
    f = FAMILIES.get(str(name).strip())
    if f is None:
        raise UserError(f"unknown family {name!r}; use one of {', '.join(FAMILIES)}")
    return f


def family_seconds(name: str) -> int:
    """Window length of a family: ``15m`` -> 900, ``5s`` -> 5."""
    return family(name).window_s


def family_of(window_s: int) -> str | None:
    """The family name of a window length (None if no family has it)."""
    return next((f.name for f in FAMILIES.values() if f.window_s == int(window_s)), None)


def slug(asset: str, family_name: str, start: int) -> str:
    """``slug("BTC", "15m", 1767200400)`` -> ``btc-updown-15m-1767200400``."""
    return SLUG_PATTERN.format(asset=asset.lower(), family=family_name, start=int(start))


def parse_slug(text: str) -> tuple[str, str, int] | None:
    """``eth-updown-5s-1767200405`` -> ("ETH", "5s", 1767200405); None unless an Up/Down slug of a
    known family."""
    m = _SLUG.match(text or "")
    if not m or m.group(2) not in FAMILIES:
        return None
    return m.group(1).upper(), m.group(2), int(m.group(3))


def window_start(t: float, window_s: int) -> int:
    """Start of the window containing ``t`` (epoch s)."""
    return int(t // window_s) * window_s


def scaled_minutes(ms: float, window_s: int) -> float:
    """Milliseconds into a window as scaled minutes (``SCALE_MINUTES`` per window)."""
    return SCALE_MINUTES * ms / (window_s * 1000)


def parse_time(value: Any, *, ms: bool = False) -> float | None:
    """Epoch seconds from a number, a numeric string or ISO 8601; None if empty or unreadable.

    ISO takes any fractional precision and a zone as ``Z``, ``+00`` or ``+00:00`` (UTC when it has
    none; a space may stand for the ``T``). With ``ms``, numbers past 1e11 are read as epoch
    milliseconds (the venue sends both). Non-finite numbers are unreadable.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            v = float(value)
        except OverflowError:  # an int beyond any float
            return None
    else:
        s = str(value).strip()
        if not s:
            return None
        try:
            v = float(s)
        except ValueError:
            return _parse_iso(s)
    if not math.isfinite(v):
        return None
    return v / 1000.0 if ms and v > 1e11 else v


def _parse_iso(s: str) -> float | None:
    s = s.replace(" ", "T", 1)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    if re.search(r"T.*[+-]\d\d$", s):  # "+00" -> "+00:00"
        s = s + ":00"
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", s)
    if m:  # fromisoformat wants at most 6 fractional digits
        s = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    try:
        return t.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
