"""Market families as the venue names them (``15m`` real; ``5s``/``10s``/``1m`` for tests and demos).

A family fixes the window length; the slug is ``{asset}-updown-{family}-{start}`` with the window
start in epoch seconds, a multiple of the window length (UTC-aligned, as on the venue).
"""

from __future__ import annotations

import re

from slotml.errors import UserError

FAMILIES: dict[str, int] = {"15m": 900, "5m": 300, "1m": 60, "10s": 10, "5s": 5}
REAL_WINDOW_S = 900  # venue delays measured on 15m markets are scaled by window_s / 900

_SLUG = re.compile(r"^([a-z0-9]+)-updown-(\d+[ms])-(\d+)$")


def window_seconds(family: str) -> int:
    try:
        return FAMILIES[family]
    except KeyError:
        raise UserError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}") from None


def time_scale(family: str) -> float:
    """Factor applied to the venue's measured 15m delays (publication, lags) for this family."""
    return window_seconds(family) / REAL_WINDOW_S


def slug(asset: str, family: str, start: int) -> str:
    return f"{asset.lower()}-updown-{family}-{int(start)}"


def parse_slug(s: str) -> tuple[str, str, int] | None:
    """``btc-updown-15m-1767200400`` -> ("BTC", "15m", 1767200400); None if not an up/down slug."""
    m = _SLUG.match(s or "")
    if not m or m.group(2) not in FAMILIES:
        return None
    return m.group(1).upper(), m.group(2), int(m.group(3))


def window_start(t: float, window_s: int) -> int:
    """Start of the window containing ``t``."""
    return int(t // window_s) * window_s
