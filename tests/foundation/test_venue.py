"""The venue grammar (slotml/venue.py): one table of families, slugs both ways, time parsing."""

from __future__ import annotations

import math

import pytest

from slotml import venue
from slotml.errors import UserError


def test_families_table() -> None:
    assert venue.family_seconds("15m") == 900 and venue.family_seconds("5s") == 5
    assert venue.FAMILIES["15m"].listed and not venue.FAMILIES["10s"].listed
    assert venue.family_of(300) == "5m" and venue.family_of(7) is None
    for name, f in venue.FAMILIES.items():
        assert f.name == name and f.window_s > 0
    for bad in ("15x", "3h", "", "7m"):
        with pytest.raises(UserError, match="unknown family"):
            venue.family_seconds(bad)


@pytest.mark.parametrize("name", list(venue.FAMILIES))
def test_slugs_round_trip(name: str) -> None:
    start = venue.window_start(1767200400, name)
    s = venue.slug("BTC", name, start)
    if venue.FAMILIES[name].slug_form == "epoch":
        assert s == f"btc-updown-{name}-{start}"
    assert venue.parse_slug(s) == ("BTC", name, start)


@pytest.mark.parametrize("text", ["btc-updown-7m-1", "btc-updown-15m-", "btc-up-15m-1", "",
                                  "BTC-updown-15m-1", "btc-updown-1h-1790611200",
                                  "btc-updown-1d-1790524800",
                                  "bitcoin-up-or-down-september-31-2026-12pm-et",
                                  "bitcoin-up-or-down-september-28-2026-13pm-et",
                                  "bitcoin-up-or-down-september-28-2026-0am-et",
                                  "bitcoin-up-or-down-on-february-30-2026",
                                  "bitcoin-up-or-down-sept-28-2026-12pm-et"])
def test_not_our_slugs(text: str) -> None:
    assert venue.parse_slug(text) is None


def test_window_start_and_scaled_minutes() -> None:
    assert venue.window_start(1767200410.5, 900) == 1767200400
    assert venue.scaled_minutes(300_000, 900) == pytest.approx(5.0)
    assert venue.scaled_minutes(5_000, 10) == pytest.approx(7.5)


@pytest.mark.parametrize("text,ts", [
    ("2025-12-31T17:00:00Z", 1767200400.0),
    ("2025-12-30T17:10:15.861305Z", 1767114615.861305),
    ("2026-07-07 21:25:17+00", 1783459517.0),
    ("2025-12-31T17:00:00.1234567Z", 1767200400.123456),
    ("2026-01-01", 1767225600.0),
    ("2026-01-01T00:15:00+01:00", 1767222900.0),
    ("1767200400", 1767200400.0),
    (" 1767200400.5 ", 1767200400.5),
    (1767200400, 1767200400.0),
    ("garbage", None),
    ("", None),
    (None, None),
    ("nan", None),
    (math.inf, None),
    (True, None),
])
def test_parse_time(text, ts) -> None:
    got = venue.parse_time(text)
    assert got == (pytest.approx(ts) if ts is not None else None)


def test_parse_time_milliseconds_only_when_asked() -> None:
    assert venue.parse_time(1767200400000, ms=True) == pytest.approx(1767200400.0)
    assert venue.parse_time("1767200400000", ms=True) == pytest.approx(1767200400.0)
    assert venue.parse_time(1767200400, ms=True) == 1767200400.0
    assert venue.parse_time(1767200400000) == 1767200400000.0
