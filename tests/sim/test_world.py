"""The world is a pure function of (config, seed, time), whatever order it is asked in."""

from __future__ import annotations

import numpy as np
import pytest

from slotml import venue
from slotml.errors import UserError
from slotml.sim.config import SimConfig
from slotml.sim.prices import EPOCH, AssetPath
from slotml.sim.world import World

T = 1795000000 // 900 * 900


def test_path_does_not_depend_on_access_order() -> None:
    a = AssetPath(7, "SOL")
    late = a.spot(T + 86400 * 40, T + 86400 * 40 + 100)  # far ahead first
    early = a.spot(T - 86400 * 30, T - 86400 * 30 + 5000)  # then back in time
    b = AssetPath(7, "SOL")
    assert np.array_equal(b.spot(T - 86400 * 30, T - 86400 * 30 + 5000), early)
    assert np.array_equal(b.spot(T + 86400 * 40, T + 86400 * 40 + 100), late)
    assert a.block_stats(T + 100) == b.block_stats(T + 100)
    assert not np.array_equal(AssetPath(8, "SOL").spot(T, T + 10), b.spot(T, T + 10))


def test_path_is_continuous_across_blocks_and_days() -> None:
    a = AssetPath(1, "BTC")
    day = (T - EPOCH) // 86400 * 86400 + EPOCH
    s = a.log_spot(day - 1000, day + 1000)
    assert np.abs(np.diff(s)).max() < 0.01  # no level jump at the day/block seams


def test_before_epoch_is_a_user_error() -> None:
    with pytest.raises(UserError, match="epoch"):
        AssetPath(1, "BTC").spot(EPOCH - 10, EPOCH)


def test_markets_and_families() -> None:
    assert venue.slug("BTC", "15m", 1767200400) == "btc-updown-15m-1767200400"
    assert venue.parse_slug("eth-updown-10s-1767200410") == ("ETH", "10s", 1767200410)
    assert venue.parse_slug("btc-updown-7m-1") is None
    w1, w2 = World(SimConfig(seed=4)), World(SimConfig(seed=4))
    m1, m2 = w1.market("XRP", T), w2.market("XRP", T)
    assert m1 == m2 and w1.market_by_slug(m1.slug) is m1
    assert m1.end - m1.start == 900 and m1.listed_at == T - 96 * 900
    assert m1.end + 21 <= m1.p2b_at <= m1.end + 143 and m1.end + 1054 <= m1.final_at <= m1.end + 1296
    assert m1.resolved_at is not None and m1.end + 311 <= m1.resolved_at <= m1.end + 600
    assert m1.question == "XRP Up or Down - November 18, 6:00AM-6:15AM ET"  # 11:00Z = 6:00 EST
    short = World(SimConfig(family="10s", seed=4)).market("BTC", T)
    assert short.resolved_at - short.end == pytest.approx((m1.resolved_at - m1.end) / 90, rel=0.9)
    assert short.resolved_at - short.end < 7
    with pytest.raises(ValueError):
        w1.market("BTC", T + 1)
    with pytest.raises(UserError):
        SimConfig(family="3h")


def test_several_families_at_a_time_scale() -> None:
    """One world, 5m + 15m + 1h + 1d at scale 300: each market on its family's grid with its
    real slug form, its rule stated as the venue states it, the kline stream's candles the
    world's truth."""
    from collections import Counter

    from slotml.ingest.feeds.gamma import read_settlement
    from slotml.sim import render
    from slotml.sim.services.binance import Binance

    k = 300
    w = World(SimConfig(family="5m", families=("5m", "15m", "1h", "1d"), time_scale=k,
                        symbols=("BTC",), seed=3))
    t0 = venue.window_start(1796529600, "1h", k)
    ms = w.markets_between(t0, t0 + 11)
    assert Counter(m.family for m in ms) == {"5m": 12, "15m": 4, "1h": 1}  # no noon in it
    for m in ms:
        assert w.market_by_slug(m.slug) is m and m.end == venue.window_end(m.start, m.family, k)
        ev = render.gamma_event(w, m, m.start, m.start)
        assert read_settlement(ev["markets"][0]) == ({"1h": "binance1h"}.get(m.family, "twap60"),
                                                     False)
    hour = next(m for m in ms if m.family == "1h")
    assert hour.slug.startswith("bitcoin-up-or-down-") and hour.slug.endswith("-et")
    wd = w.window(hour)
    b = Binance(w, None, None, None)
    first = b.event("btcusdt@kline_1h", hour.start, 0.0)["data"]["k"]
    last = b.event("btcusdt@kline_1h", hour.end - 1, 0.0)["data"]["k"]
    assert not first["x"] and last["x"] and first["t"] == last["t"] == hour.start * 1000
    assert (float(last["o"]), float(last["c"])) == (wd.p2b, wd.final)
    assert wd.up is (wd.final >= wd.p2b)
    day = w.market("BTC", venue.window_start(t0, "1d", k), "1d")
    dd = w.window(day)
    noon = b.event("btcusdt@kline_1m", day.end, 0.0)["data"]["k"]  # the 1 s candle at noon
    assert noon["x"] and float(noon["c"]) == dd.final and day.settlement == "binance_noon"
