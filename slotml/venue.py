"""The venue's grammar, written once: window families, slugs, the scaled minute, time parsing.

Every stage that names a market or a window reads it here (ingest, sim, web, backtest), so the
collector, the sim and the API can never disagree on what ``btc-updown-15m-1767200400`` means.

A family is one row of ``FAMILIES``: its name, nominal window length, how its windows are laid
on the clock (``anchor``) and how its slugs are spelled (``slug_form``). The facts behind each
row, with sources, are in docs/venue.md:

* ``5m``, ``15m``: UTC multiples of the length, epoch slugs ``btc-updown-15m-1767200400``;
* ``1h``: whole UTC hours (US Eastern offsets are whole hours), human slugs from the ET date and
  hour of the start, ``bitcoin-up-or-down-september-28-2026-12pm-et``;
* ``4h``: 00/04/08/12/16/20 on the US Eastern wall clock (``zoneinfo``: 3 h or 5 h on a DST-change
  day, which the venue has not confirmed; Gamma's bounds win), epoch slugs of the start;
* ``1d``: 12:00 ET to 12:00 ET (23 h or 25 h over a DST change), human slugs of the ET date the
  window *ends*, ``bitcoin-up-or-down-on-september-28-2026``;
* ``1m``, ``10s``, ``5s``: the sim's fast families (UTC multiples, epoch slugs).

A market's settlement rule (``twap60``, ``binance1h``, ...) is read from its own metadata by the
Gamma feed (``ingest/feeds/gamma.py``, ``settlement_rule``): adding a family is one row here, plus
its rule there when the venue states a new one. About 410 lines: the two human slug forms, the
Eastern grid and the time scale belong with the table they parse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from slotml.errors import UserError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

# Features measure time in "scaled minutes": a window of any length is 15 of them, so one model
# contract serves every family (a 10 s sim window's 5th scaled minute is its 1/3 point).
SCALE_MINUTES = 15.0
REAL_WINDOW_S = 900  # the venue's measured delays (15m markets) scale by window_s / this
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
# Scaled time (tests, demos): under a time scale k, a family's windows are those of a virtual
# clock running k times faster, anchored here (real and virtual time agree at this instant), so
# an "hour" passes in 3600/k s and keeps its real slug and Eastern grid. k must divide 300, so
# every family's scaled start is a whole second.
SCALE_EPOCH = 1767225600  # 2026-01-01 00:00 UTC
# Human slugs carry the year from this date on (docs/venue.md §1.1: between 2026-03-14 and
# 2026-04-17; before it both spellings are candidates).
YEAR_IN_SLUG_FROM = 1776384000  # 2026-04-17 00:00 UTC


@dataclass(frozen=True)
class Family:
    """One window family: its slug name, nominal window length and clock grid."""

    name: str
    window_s: int  # nominal length (1d: 23 h or 25 h on the days the US changes clocks)
    listed: bool  # the venue lists it (the others exist only in the sim)
    slug_form: str = "epoch"  # epoch | hourly | daily
    anchor: str = "utc"  # utc: multiples of window_s; et: ET midnight + k*window_s; et_noon
    series: str = ""  # the Gamma series slug's suffix ({prefix}-up-or-down-{series})
    candle: str = ""  # the Binance kline interval its markets settle on ("": Chainlink)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("15m", 900, listed=True, series="15m"),
    Family("5m", 300, listed=True, series="5m"),
    Family("1m", 60, listed=False),
    Family("10s", 10, listed=False),
    Family("5s", 5, listed=False),
    Family("1h", 3600, listed=True, slug_form="hourly", series="hourly", candle="1h"),
    Family("4h", 14400, listed=True, anchor="et", series="4h"),
    Family("1d", 86400, listed=True, slug_form="daily", anchor="et_noon", series="daily",
           candle="1m"),
)}


@dataclass(frozen=True)
class Asset:
    """One listed asset: its ticker, its long name in hourly/daily slugs, its Binance market."""

    ticker: str
    name: str
    binance_market: str = "spot"  # spot | perp (USDⓈ-M perpetual: HYPE's hourly/daily rule)
    long_series: frozenset[str] = field(default_factory=frozenset)  # series named by `name`

    @property
    def binance_symbol(self) -> str:
        return f"{self.ticker}USDT"


ASSETS: dict[str, Asset] = {a.ticker: a for a in (
    Asset("BTC", "bitcoin"),
    Asset("ETH", "ethereum"),
    Asset("SOL", "solana", long_series=frozenset({"1h", "1d"})),
    Asset("XRP", "xrp"),
    Asset("DOGE", "dogecoin", long_series=frozenset({"1d"})),
    Asset("BNB", "bnb"),
    Asset("HYPE", "hype", binance_market="perp"),
    Asset("ZEC", "zec"),
)}
_BY_NAME = {a.name: a.ticker for a in ASSETS.values()}

SLUG_PATTERN = "{asset}-updown-{family}-{start}"  # asset lower case, start in epoch seconds
_SLUG = re.compile(r"^([a-z0-9]+)-updown-([0-9a-z]+)-(\d+)$")
_M = "|".join(MONTHS)
_HOURLY = re.compile(rf"^([a-z0-9]+)-up-or-down-({_M})-(\d{{1,2}})(?:-(\d{{4}}))?-(\d{{1,2}})(am|pm)-et$")
_DAILY = re.compile(rf"^([a-z0-9]+)-up-or-down-on-({_M})-(\d{{1,2}})(?:-(\d{{4}}))?$")


def asset(ticker: str) -> Asset:
    """The asset row of ``ticker``; an unlisted ticker gets its own lower case as its name."""
    t = ticker.upper()
    return ASSETS.get(t) or Asset(t, t.lower())


def family(name: str | Family) -> Family:
    """The family called ``name``; a one-line ``UserError`` naming the known ones otherwise."""
    if isinstance(name, Family):
        return name
    f = FAMILIES.get(str(name).strip())
    if f is None:
        raise UserError(f"unknown family {name!r}; use one of {', '.join(FAMILIES)}")
    return f


def family_seconds(name: str) -> int:
    """Nominal window length of a family: ``15m`` -> 900, ``5s`` -> 5."""
    return family(name).window_s


def family_of(window_s: int) -> str | None:
    """The family name of a window length (None if no family has it)."""
    return next((f.name for f in FAMILIES.values() if f.window_s == int(window_s)), None)


def family_text(window_s: int) -> str:
    """``the 1d family (86400 s windows)``: how a message names the family of a window length
    (``the 9 s family`` for a length no family has)."""
    name = family_of(window_s)
    return f"the {name} family ({int(window_s)} s windows)" if name else f"the {int(window_s)} s family"


def series_slug(ticker: str, family_name: str) -> str:
    """Gamma's series slug: ``btc-up-or-down-hourly``, ``solana-up-or-down-daily``."""
    f, a = family(family_name), asset(ticker)
    prefix = a.name if f.name in a.long_series else a.ticker.lower()
    return f"{prefix}-up-or-down-{f.series or f.name}"


# ------------------------------------------------------------------ windows on the clock
def _grid(fam: Family | str | int) -> Family | int:
    """A family, or a bare length for the sim's scaled windows (a UTC grid)."""
    if isinstance(fam, int):
        name = family_of(fam)
        return FAMILIES[name] if name is not None else fam
    return family(fam)


@cache
def et_zone() -> ZoneInfo:
    """US Eastern time. Imported on first use: zoneinfo loads sysconfig, which a bot's imports
    (scorer, gate) must not pull in (tests/foundation/test_layout.py)."""
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/New_York")


def _et(d: date, hour: int) -> int:
    return int(datetime(d.year, d.month, d.day, hour, tzinfo=et_zone()).timestamp())


def check_scale(scale: int) -> int:
    """``scale`` if it is a valid time scale (a divisor of 300), else a one-line UserError."""
    if not isinstance(scale, int) or scale < 1 or 300 % scale:
        raise UserError(f"time scale {scale!r} must divide 300 (1, 2, 3, 5, 10, 60, 100, 300 ...)")
    return scale


def to_virtual(t: float, scale: int) -> float:
    return t if scale == 1 else SCALE_EPOCH + (t - SCALE_EPOCH) * scale


def to_real(v: float, scale: int) -> float:
    return v if scale == 1 else SCALE_EPOCH + (v - SCALE_EPOCH) / scale


def _scalable(fam: Family | str | int) -> Family:
    f = FAMILIES.get(family_of(fam)) if isinstance(fam, int) else family(fam)
    if f is None or not f.listed:
        raise UserError(f"a time scale applies to the venue's families "
                        f"({', '.join(n for n, x in FAMILIES.items() if x.listed)}), not {fam!r}")
    return f


def scaled_seconds(fam: Family | str, scale: int = 1) -> int:
    """A family's nominal window length under ``scale`` (``1h`` at 300 -> 12)."""
    if scale == 1:
        return family(fam).window_s
    return _scalable(fam).window_s // check_scale(scale)


def window_bounds(t: float, fam: Family | str | int, scale: int = 1) -> tuple[int, int]:
    """(start, end) of the window of ``fam`` containing ``t`` (epoch s). ``fam`` is a family,
    its name, or a window length (a listed length means its family; any other length is a UTC
    grid of that length). Under a time ``scale`` the window is the scaled one (``SCALE_EPOCH``)."""
    if scale != 1:
        f = _scalable(fam)
        s, e = window_bounds(to_virtual(t, check_scale(scale)), f)
        return round(to_real(s, scale)), round(to_real(e, scale))
    g = _grid(fam)
    if isinstance(g, int) or g.anchor == "utc":
        w = g if isinstance(g, int) else g.window_s
        s = int(t // w) * w
        return s, s + w
    d = datetime.fromtimestamp(t, et_zone()).date()
    if g.anchor == "et":
        step = g.window_s // 3600
        edges = [_et(d, h) for h in range(0, 24, step)] + [_et(d + timedelta(days=1), 0)]
        i = max(k for k in range(len(edges) - 1) if edges[k] <= t)
        return edges[i], edges[i + 1]
    noon = _et(d, 12)  # et_noon
    if t >= noon:
        return noon, _et(d + timedelta(days=1), 12)
    return _et(d - timedelta(days=1), 12), noon


def window_start(t: float, fam: Family | str | int, scale: int = 1) -> int:
    """Start of the window of ``fam`` containing ``t`` (epoch s); see ``window_bounds``."""
    return window_bounds(t, fam, scale)[0]


def window_end(start: int, fam: Family | str | int, scale: int = 1) -> int:
    """End of the window of ``fam`` that starts at ``start``."""
    return window_bounds(start, fam, scale)[1]


def next_starts(now: float, fam: Family | str | int, ahead: int, scale: int = 1) -> list[int]:
    """The start of the window in progress at ``now`` and of the next ``ahead`` windows."""
    out = [window_start(now, fam, scale)]
    for _ in range(ahead):
        out.append(window_end(out[-1], fam, scale))
    return out


def starts_between(t0: float, t1: float, fam: Family | str, scale: int = 1) -> list[int]:
    """Window starts in [t0, t1] on the family's grid."""
    s = window_start(t0, fam, scale)
    if s < t0:
        s = window_end(s, fam, scale)
    out = []
    while s <= t1:
        out.append(s)
        s = window_end(s, fam, scale)
    return out


# ------------------------------------------------------------------ slugs
def slug(ticker: str, family_name: str | Family, start: int, *, year: bool = True,
         scale: int = 1) -> str:
    """The market slug of the window of ``family_name`` starting at ``start``:
    ``slug("BTC", "15m", 1767200400)`` -> ``btc-updown-15m-1767200400``;
    ``slug("BTC", "1h", 1790611200)`` -> ``bitcoin-up-or-down-september-28-2026-12pm-et``.
    ``year=False``: the human forms as spelled before 2026-04 (``-february-24-9pm-et``).
    Under a time ``scale``: the slug of the virtual window (see ``SCALE_EPOCH``)."""
    f = family(family_name)
    if scale != 1:
        _scalable(f)
        start = int(to_virtual(start, check_scale(scale)))
    if f.slug_form == "epoch":
        return SLUG_PATTERN.format(asset=ticker.lower(), family=f.name, start=int(start))
    name = asset(ticker).name
    if f.slug_form == "hourly":
        lt = datetime.fromtimestamp(start, et_zone())
        h12 = lt.hour % 12 or 12
        y = f"-{lt.year}" if year else ""
        return (f"{name}-up-or-down-{MONTHS[lt.month - 1]}-{lt.day}{y}-{h12}"
                f"{'am' if lt.hour < 12 else 'pm'}-et")
    end = datetime.fromtimestamp(window_end(start, f), et_zone())  # daily: the ET date it ends
    y = f"-{end.year}" if year else ""
    return f"{name}-up-or-down-on-{MONTHS[end.month - 1]}-{end.day}{y}"


def slugs(ticker: str, family_name: str | Family, start: int) -> list[str]:
    """Every spelling the venue may use for this window (both human forms before 2026-04)."""
    first = slug(ticker, family_name, start)
    if family(family_name).slug_form == "epoch" or start >= YEAR_IN_SLUG_FROM:
        return [first]
    return [first, slug(ticker, family_name, start, year=False)]


def _ticker(name: str) -> str:
    return _BY_NAME.get(name, name.upper())


def _year(month: int, day: int, year: str | None, ref: float | None) -> int | None:
    """The slug's year, or the one nearest ``ref`` (default: now) for a slug without it."""
    if year:
        return int(year)
    r = datetime.fromtimestamp(ref if ref is not None else datetime.now(UTC).timestamp(), UTC)
    best = None
    for y in (r.year - 1, r.year, r.year + 1):
        try:
            gap = abs((date(y, month, day) - r.date()).days)
        except ValueError:
            continue
        if best is None or gap < best[0]:
            best = (gap, y)
    return best[1] if best else None


def parse_slug(text: str, *, ref: float | None = None,
               scale: int = 1) -> tuple[str, str, int] | None:
    """``eth-updown-5s-1767200405`` -> ("ETH", "5s", 1767200405);
    ``bitcoin-up-or-down-september-28-2026-12pm-et`` -> ("BTC", "1h", 1790611200);
    ``bitcoin-up-or-down-on-september-28-2026`` -> ("BTC", "1d", 1790524800) (the start).
    None unless an Up/Down slug of a known family. A human slug without its year takes the year
    nearest ``ref`` (default: now). The autumn DST day's repeated 1 AM ET hour reads as its
    first occurrence (docs/venue.md §5: how the venue names the second is unknown). Under a
    time ``scale`` the start is the real start of the scaled window (None if none has it)."""
    got = _parse(text or "", ref if ref is None or scale == 1 else to_virtual(ref, scale))
    if got is None or scale == 1:
        return got
    v = got[2] - SCALE_EPOCH
    if v % check_scale(scale):
        return None
    return got[0], got[1], SCALE_EPOCH + v // scale


def _parse(text: str, ref: float | None) -> tuple[str, str, int] | None:
    m = _SLUG.match(text)
    if m:
        f = FAMILIES.get(m.group(2))
        if f is None or f.slug_form != "epoch":
            return None
        return m.group(1).upper(), f.name, int(m.group(3))
    m = _HOURLY.match(text)
    if m:
        name, mon, day, yr, h, ampm = m.groups()
        month, d, h12 = MONTHS.index(mon) + 1, int(day), int(h)
        y = _year(month, d, yr, ref)
        if not 1 <= h12 <= 12 or y is None:
            return None
        try:
            start = _et(date(y, month, d), h12 % 12 + (12 if ampm == "pm" else 0))
        except ValueError:
            return None
        return _ticker(name), "1h", start
    m = _DAILY.match(text)
    if m:
        name, mon, day, yr = m.groups()
        month, d = MONTHS.index(mon) + 1, int(day)
        y = _year(month, d, yr, ref)
        if y is None:
            return None
        try:
            end_day = date(y, month, d)
        except ValueError:
            return None
        return _ticker(name), "1d", _et(end_day - timedelta(days=1), 12)
    return None


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
