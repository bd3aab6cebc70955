"""One argparse type per kind of quantity, each option's valid range declared where it is added.

Every numeric option of every command is one of these (``tests/test_cli_fuzz.py`` walks every
parser and fails on a bare ``int``/``float``), so "is it finite, is it in range" is decided in one
place: ``--discovery-interval nan`` or ``--spool-max-mb -1`` is one line and exit code 2 before
any work starts, never a traceback, a spin or a silent wrong result. ``OneLineParser`` makes
argparse's own errors one line too (no usage block). Stdlib only: bots import it through
``serve/options.py``.

    p.add_argument("--stale-after", type=seconds(0.1, 3600), default=30.0)
    p.add_argument("--health-port", type=port(allow_zero=True), default=9108)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``slotml collect: error: argument --x: ...``, exit 2.

    Subparsers inherit the class (argparse builds them with ``type(parent)``)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


@dataclass(frozen=True)
class Number:
    """A finite number of one kind (``seconds``, ``megabytes`` ...) inside [lo, hi]; an open end
    excludes its bound. Called by argparse on the flag's text."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    zero_ok: bool = False  # 0 accepted whatever the range says (--health-port 0 = off)

    @property
    def __name__(self) -> str:  # argparse names the type in "invalid <name> value" messages
        return self.kind

    def range_text(self) -> str:
        lo = "-inf" if self.lo is None else _fmt(self.lo)
        hi = "inf" if self.hi is None else _fmt(self.hi)
        txt = f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        return txt + (" or 0" if self.zero_ok else "")

    def contains(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.zero_ok and v == 0:
            return True
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))

    def __call__(self, text: str) -> float | int:
        what = (f"{'an integer' if self.integer else 'a finite number'} in {self.range_text()} "
                f"({self.kind})")
        try:
            v: float | int = int(text, 10) if self.integer else float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not self.contains(float(v)):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return v

    def outside(self) -> list[str]:
        """Texts this type must refuse (the fuzz tests' seeds): non-finite, garbage and values
        just beyond each end."""
        out = ["nan", "inf", "-inf", "1e999", "garbage", "", "0x10"]
        if self.integer:
            out.append("1.5")
        step = 1 if self.integer else 1e-9
        if self.lo is not None:
            below = self.lo if self.lo_open else self.lo - max(step, abs(self.lo) * 1e-9)
            if not (self.zero_ok and below == 0):
                out.append(str(int(below)) if self.integer else repr(below))
            out.append(str(int(self.lo) - 10**6) if self.integer else repr(self.lo - 1e6))
        if self.hi is not None:
            above = self.hi if self.hi_open else self.hi + max(step, abs(self.hi) * 1e-9)
            out.append(str(int(above)) if self.integer else repr(above))
            out.append(str(int(self.hi) * 1000 + 10**9) if self.integer else "1e300")
        return out


def _open(lo: float, lo_open: bool | None) -> bool:
    """An amount whose range starts at 0 excludes 0 unless told (a zero interval spins)."""
    return lo == 0 if lo_open is None else lo_open


def seconds(lo: float = 0.0, hi: float = 7 * 86400.0, *, lo_open: bool | None = None) -> Number:
    """A duration in seconds: (0, hi] from 0 (``lo_open=False`` admits 0), else [lo, hi]."""
    return Number("seconds", lo, hi, lo_open=_open(lo, lo_open))


def days(lo: float = 0.0, hi: float = 3650.0, *, lo_open: bool | None = None) -> Number:
    return Number("days", lo, hi, lo_open=_open(lo, lo_open))


def megabytes(lo: float = 0.0, hi: float = 1024.0 ** 2, *, lo_open: bool | None = None) -> Number:
    return Number("megabytes", lo, hi, lo_open=_open(lo, lo_open))


def probability(lo: float = 0.0, hi: float = 1.0, *, lo_open: bool = False,
                hi_open: bool = False) -> Number:
    return Number("probability", lo, hi, lo_open=lo_open, hi_open=hi_open)


def fraction(lo: float = 0.0, hi: float = 1.0, *, lo_open: bool = False,
             hi_open: bool = False) -> Number:
    """A share of something (of windows, of the time, of Kelly's stake)."""
    return Number("fraction", lo, hi, lo_open=lo_open, hi_open=hi_open)


def rate(lo: float = 0.0, hi: float = 100.0) -> Number:
    """Events per second (0 = none)."""
    return Number("events per second", lo, hi)


def count(lo: int = 1, hi: int = 10**9) -> Number:
    """A whole number of things (rows, windows, resamples ...)."""
    return Number("count", lo, hi, integer=True)


def integer(lo: int, hi: int, kind: str = "integer") -> Number:
    return Number(kind, lo, hi, integer=True)


def port(*, allow_zero: bool = False) -> Number:
    """A TCP port 1..65535 (``allow_zero``: 0 = off / let the OS pick)."""
    return Number("port", 1, 65535, integer=True, zero_ok=allow_zero)


def nonneg(hi: float = 1e9, kind: str = "number") -> Number:
    return Number(kind, 0.0, hi)


def real(lo: float, hi: float, kind: str = "number", *, lo_open: bool = False,
         hi_open: bool = False) -> Number:
    return Number(kind, lo, hi, lo_open=lo_open, hi_open=hi_open)


# --- texts the stage parses itself, checked here first (the value stays the text) ----------

def _window_fraction(part: str) -> float | None:
    from fractions import Fraction

    try:
        f = float(Fraction(part.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return f if 0.0 < f < 1.0 else None


def window_fraction(text: str) -> str:
    """A fraction of the window strictly inside (0, 1): ``1/15`` or ``0.066``."""
    if _window_fraction(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a fraction of the window in (0, 1), like 1/15 or 0.066")
    return text


def window_fractions(text: str) -> str:
    """Comma-separated fractions of the window, each strictly inside (0, 1): ``5/15,7/15``."""
    parts = [p for p in text.split(",") if p.strip()]
    bad = [p for p in parts if _window_fraction(p) is None]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"{text!r}: need fractions of the window in (0, 1), like 5/15,7/15,10/15")
    return text


TIME_MIN, TIME_MAX = 946_684_800.0, 7_258_118_400.0  # 2000-01-01 .. 2200-01-01 UTC


def time_text(text: str) -> str:
    """A point in time: epoch seconds or ISO 8601 (UTC when no zone), 2000..2200."""
    from slotml.venue import parse_time

    t = parse_time(text)
    if t is None or not TIME_MIN <= t < TIME_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: epoch seconds or ISO 8601 like 2026-11-24T15:00:00Z, "
            "between 2000 and 2200")
    return text


def day_text(text: str) -> str:
    """A UTC day, YYYY-MM-DD."""
    from datetime import datetime

    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day like 2026-11-24") from None
    return text


day_text.__name__ = "day"
window_fraction.__name__ = "fraction of the window"
window_fractions.__name__ = "fractions of the window"
time_text.__name__ = "time"


# --- URLs ------------------------------------------------------------------------------------

def _url(text: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL ({e})") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {'/'.join(schemes)} URL (e.g. {schemes[0]}://host:port/path)")
    return text.strip().rstrip("/")


def http_url(text: str) -> str:
    """An http(s) base URL with a host (``notaurl`` is refused at start, not retried forever)."""
    return _url(text, ("https", "http"))


def ws_url(text: str) -> str:
    return _url(text, ("wss", "ws"))


http_url.__name__ = "URL"
ws_url.__name__ = "websocket URL"


# --- paths -----------------------------------------------------------------------------------

def existing_file(text: str) -> Path:
    p = Path(text)
    if not p.is_file():
        why = "is a directory" if p.is_dir() else "no such file"
        raise argparse.ArgumentTypeError(f"{text}: {why}")
    if not os.access(p, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable")
    return p


def existing_dir(text: str) -> Path:
    p = Path(text)
    if not p.is_dir():
        why = "not a directory" if p.exists() else "directory does not exist"
        raise argparse.ArgumentTypeError(f"{text}: {why}")
    return p


def _writable_dir(d: Path) -> str | None:
    """Why files cannot be created under ``d`` (its nearest existing ancestor), or None."""
    d = d.absolute()
    while not d.exists():
        d = d.parent
    if not d.is_dir():
        return f"{d} is not a directory"
    if str(d) == "/proc" or str(d).startswith(("/proc/", "/sys/")) or str(d) == "/sys":
        return f"{d} is a kernel pseudo-filesystem"
    if not os.access(d, os.W_OK | os.X_OK):
        return f"{d} is not writable"
    try:  # root passes os.access everywhere: a read-only mount still refuses
        if os.statvfs(d).f_flag & os.ST_RDONLY:
            return f"{d} is on a read-only filesystem"
    except OSError as e:
        return f"{d}: {e.strerror}"
    return None


def output_dir(text: str) -> Path:
    """A directory to write into: an existing writable one, or one that can be created."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a directory")
    why = _writable_dir(p)
    if why:
        raise argparse.ArgumentTypeError(f"{text}: cannot write there ({why})")
    return p


def output_file(text: str) -> Path:
    """A file to (over)write: not a directory, in a directory that exists or can be created."""
    p = Path(text)
    if p.is_dir() or text.endswith("/"):
        raise argparse.ArgumentTypeError(f"{text}: is a directory, name a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: not writable")
    why = _writable_dir(p.parent)
    if why:
        raise argparse.ArgumentTypeError(f"{text}: cannot write there ({why})")
    return p


for _f, _n in ((existing_file, "existing file"), (existing_dir, "existing directory"),
               (output_dir, "output directory"), (output_file, "output file")):
    _f.__name__ = _n


def log_level(text: str) -> str:
    v = text.strip().upper()
    if v not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level ({', '.join(LOG_LEVELS)})")
    return v


log_level.__name__ = "log level"
