"""Every family on the clock: windows tile time without gaps or overlaps (also across the US
clock changes), slugs read back as they were written, the real slugs of docs/venue.md parse to
their Gamma bounds."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotml import venue

T0, T1 = 1704067200, 1893456000  # 2024-01-01 .. 2030-01-01 UTC
times = st.floats(min_value=T0, max_value=T1, allow_nan=False)
fams = st.sampled_from(list(venue.FAMILIES))
tickers = st.sampled_from(list(venue.ASSETS)) | st.from_regex(r"[A-Z]{2,5}", fullmatch=True)
# the autumn clock change and the spring one, 2026, with a margin of two days each side
DST_DAYS = st.sampled_from([1772946000, 1793512800]).flatmap(
    lambda c: st.floats(min_value=c - 2 * 86400, max_value=c + 2 * 86400))


def _check_tiling(t: float, name: str) -> None:
    f = venue.FAMILIES[name]
    s, e = venue.window_bounds(t, name)
    assert s <= t < e
    assert venue.window_bounds(s, name) == (s, e)  # a start is in its own window
    assert venue.window_bounds(e, name)[0] == e  # the next window starts where this ends
    assert venue.window_bounds(s - 1, name)[1] == s  # ... and the previous one ended here
    lt = datetime.fromtimestamp(s, venue.et_zone())
    if f.anchor == "utc":
        assert e - s == f.window_s and s % f.window_s == 0
    elif f.anchor == "et":
        assert (lt.hour, lt.minute) in {(h, 0) for h in range(0, 24, 4)}
        assert e - s in (f.window_s - 3600, f.window_s, f.window_s + 3600)
    else:
        assert (lt.hour, lt.minute) == (12, 0)
        assert e - s in (82800, 86400, 90000)


@settings(max_examples=300, deadline=None)
@given(times, fams)
def test_windows_tile_time(t: float, name: str) -> None:
    _check_tiling(t, name)


@settings(max_examples=300, deadline=None)
@given(DST_DAYS, st.sampled_from(["1h", "4h", "1d"]))
def test_windows_tile_time_across_clock_changes(t: float, name: str) -> None:
    _check_tiling(t, name)


@settings(max_examples=300, deadline=None)
@given(times, fams, tickers)
def test_slug_round_trips(t: float, name: str, ticker: str) -> None:
    start = venue.window_start(t, name)
    s = venue.slug(ticker, name, start)
    parsed = venue.parse_slug(s)
    assert parsed is not None and parsed[:2] == (ticker, name)
    assert venue.slug(ticker, name, parsed[2]) == s  # slug(parse(slug)) == slug, always
    lt = datetime.fromtimestamp(start, venue.et_zone())
    if not (name == "1h" and lt.fold):  # the repeated 1 AM reads as its first occurrence
        assert parsed[2] == start
    for spelled in venue.slugs(ticker, name, start):  # without the year: read near the window
        assert venue.parse_slug(spelled, ref=start + 86400 * 30) == parsed


def test_the_repeated_autumn_hour_shares_a_slug() -> None:
    first, second = 1793509200, 1793512800  # 2026-11-01 05:00Z (1 AM EDT), 06:00Z (1 AM EST)
    assert venue.slug("BTC", "1h", first) == venue.slug("BTC", "1h", second) \
        == "bitcoin-up-or-down-november-1-2026-1am-et"
    assert venue.parse_slug("bitcoin-up-or-down-november-1-2026-1am-et") == ("BTC", "1h", first)


@pytest.mark.parametrize("slug,family,start,end", [
    # docs/venue.md §1.1: real slugs with Gamma's eventStartTime / endDate
    ("bitcoin-up-or-down-september-28-2026-12pm-et", "1h", 1790611200, 1790614800),
    ("bitcoin-up-or-down-on-september-28-2026", "1d", 1790524800, 1790611200),
    ("btc-updown-4h-1772442000", "4h", 1772442000, 1772456400),  # March 2, 4-8AM ET (EST)
    ("btc-updown-4h-1775390400", "4h", 1775390400, 1775404800),  # April 5, 8AM-12PM ET (EDT)
    ("btc-updown-5m-1790611200", "5m", 1790611200, 1790611500),
])
def test_real_slugs(slug: str, family: str, start: int, end: int) -> None:
    got = venue.parse_slug(slug)
    assert got == ("BTC", family, start)
    assert venue.window_bounds(start, family) == (start, end)
    assert venue.slug("BTC", family, start) == slug


def test_four_hour_windows_are_not_a_floor_on_14400() -> None:
    t = 1772442000 + 60  # winter: starts are 3600 mod 14400
    assert 1772442000 % 14400 == 3600 and venue.window_start(t, "4h") == 1772442000
    assert venue.window_start(t, 14400) == 1772442000  # a listed length means its family


def test_clock_change_days() -> None:
    # spring 2026-03-08: 00:00 EST -> 04:00 EDT is 3 h; the noon-to-noon day is 23 h
    assert venue.window_bounds(1772946000, "4h") == (1772946000, 1772956800)
    s, e = venue.window_bounds(1772946000, "1d")
    assert e - s == 23 * 3600
    # autumn 2026-11-01: 00:00 EDT -> 04:00 EST is 5 h; the day is 25 h
    s, e = venue.window_bounds(1793505600, "4h")
    assert e - s == 5 * 3600
    s, e = venue.window_bounds(1793509200, "1d")  # 2026-11-01 05:00Z
    assert e - s == 25 * 3600


def test_slugs_before_the_year_entered_them() -> None:
    # docs/venue.md §1.1: 2026-02/03 slugs carried no year
    assert venue.parse_slug("bitcoin-up-or-down-february-24-9pm-et", ref=1771900000) == \
        ("BTC", "1h", 1771984800)
    assert venue.parse_slug("xrp-up-or-down-march-14-6am-et", ref=1773500000)[:2] == ("XRP", "1h")
    got = venue.parse_slug("bitcoin-up-or-down-on-march-3", ref=1772500000)
    assert got is not None and venue.window_end(got[2], "1d") == 1772557200  # 12:00 EST Mar 3
    assert venue.slugs("BTC", "1h", 1771984800) == [
        "bitcoin-up-or-down-february-24-2026-9pm-et", "bitcoin-up-or-down-february-24-9pm-et"]


def test_series_slugs_and_assets() -> None:
    assert venue.series_slug("BTC", "1h") == "btc-up-or-down-hourly"
    assert venue.series_slug("SOL", "1h") == "solana-up-or-down-hourly"
    assert venue.series_slug("SOL", "15m") == "sol-up-or-down-15m"
    assert venue.series_slug("DOGE", "1d") == "dogecoin-up-or-down-daily"
    assert venue.series_slug("DOGE", "4h") == "doge-up-or-down-4h"
    assert venue.asset("HYPE").binance_market == "perp"
    assert venue.asset("btc").binance_symbol == "BTCUSDT"
    assert venue.parse_slug("dogecoin-up-or-down-on-september-28-2026")[0] == "DOGE"


SCALES = st.sampled_from([2, 3, 60, 100, 300])


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1767225600, max_value=1830000000),
       st.sampled_from([n for n, f in venue.FAMILIES.items() if f.listed]), SCALES)
def test_scaled_windows_tile_and_keep_their_slugs(t: float, name: str, k: int) -> None:
    """Under a time scale an "hour" is 3600/k s: windows still tile time, start on whole
    seconds, and carry the slug of their virtual window, which reads back to the same start."""
    s, e = venue.window_bounds(t, name, k)
    assert s <= t < e and venue.window_bounds(e, name, k)[0] == e
    assert venue.window_bounds(s - 1, name, k)[1] == s
    if venue.FAMILIES[name].anchor == "utc":
        assert e - s == venue.scaled_seconds(name, k)
    sl = venue.slug("ETH", name, s, scale=k)
    got = venue.parse_slug(sl, scale=k)
    assert got is not None and got[:2] == ("ETH", name)
    assert venue.slug("ETH", name, got[2], scale=k) == sl


def test_scales_must_divide_300() -> None:
    from slotml.errors import UserError

    for bad in (0, 7, 400, -3):
        with pytest.raises(UserError, match="must divide 300"):
            venue.check_scale(bad)
    with pytest.raises(UserError, match="applies to the venue's families"):
        venue.window_bounds(1767225600, "5s", 60)
    assert venue.parse_slug("btc-updown-5m-1767225900", scale=2) == ("BTC", "5m", 1767225750)
    assert venue.parse_slug("btc-updown-5m-1767225601", scale=2) is None  # no whole second
    assert venue.parse_slug("btc-updown-5m-1767226200", scale=300) == ("BTC", "5m", 1767225602)
