"""Every family's settlement rule from the markets' own text (docs/venue.md §2, §6.2), on real
Gamma payloads: tests/fixtures/ingest/gamma_events_families.json (see the README there)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from slotml.ingest.feeds.gamma import SETTLEMENT_RULES, parse_market, read_settlement

FIX = json.loads((Path(__file__).parents[1] / "fixtures" / "ingest"
                  / "gamma_events_families.json").read_text())


def _event(name: str) -> dict:
    return copy.deepcopy(FIX[name]["response"])


@pytest.mark.parametrize("name,family,start,end,rule,up,ptb,final", [
    ("hourly", "1h", 1790611200, 1790614800, "binance1h", True, 83370.0, 83723.1),
    ("daily", "1d", 1790524800, 1790611200, "binance_noon", False, 84487.11, 83375.57),
    ("5m_twap60", "5m", 1790617500, 1790617800, "twap60", False, 83972.53784826923,
     83901.4134409019),
    ("15m_spot", "15m", 1785931200, 1785932100, "spot", True, 64018.04470022631,
     64146.480148224604),
])
def test_real_payloads(name, family, start, end, rule, up, ptb, final) -> None:
    ev = _event(name)
    m = parse_market(ev, family, end - start)
    assert (m.symbol, m.family, m.slot_ts, m.end_ts) == ("BTC", family, start, end)
    assert m.slug_ts == start  # the human slugs read back to Gamma's own window start
    assert m.settlement == rule and not m.settlement_conflict
    assert m.resolution_source == ev["markets"][0]["resolutionSource"]
    assert m.resolution_row()["resolution_source"] == m.resolution_source
    assert (m.resolved_up, m.official_price_to_beat, m.official_final_price) == (up, ptb, final)


def _hype(name: str) -> dict:
    """The same text on HYPE's perpetual (docs/venue.md §2.2: the futures URL replaces the
    spot pair in both the description and resolutionSource)."""
    m = _event(name)["markets"][0]
    perp = "https://www.binance.com/en/futures/HYPEUSDT"
    m["description"] = m["description"].replace("https://www.binance.com/en/trade/BTC_USDT", perp)
    m["resolutionSource"] = perp
    return m


def test_the_perpetual_variants() -> None:
    assert read_settlement(_hype("hourly")) == ("binance1h_perp", False)
    assert read_settlement(_hype("daily")) == ("binance_noon_perp", False)


def test_every_rule_fits_the_column() -> None:
    from slotml.ingest.schema import RESOLUTIONS

    width = RESOLUTIONS.column("settlement").length
    assert max(len(r) for r in SETTLEMENT_RULES) == 17 <= width


def _market(name: str, **changes) -> dict:
    m = _event(name)["markets"][0]
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    return m


def test_no_default_to_spot() -> None:
    """Today's fallback called every non-TWAP market ``spot``: an hourly market without its
    candle text, or with nothing readable, is ``unknown`` instead."""
    assert read_settlement({}) == ("unknown", False)
    assert read_settlement(_market("hourly", description=None)) == ("unknown", False)
    assert read_settlement(_market("daily", description="Something new.")) == ("unknown", False)


def test_the_description_wins_and_the_disagreement_is_flagged() -> None:
    # a TWAP stream named in resolutionSource under the spot-era text: the text wins
    m = _market("15m_spot", resolutionSource="https://data.chain.link/streams/btc-usd-twap-60s-streams")
    assert read_settlement(m) == ("spot", True)
    # a Chainlink text under a Binance source
    assert read_settlement(_market("5m_twap60", resolutionSource="https://www.binance.com/en/trade/BTC_USDT")) == ("twap60", True)
    # a Binance candle text under the perpetual's URL: market types disagree
    assert read_settlement(_market("hourly", resolutionSource="https://www.binance.com/en/futures/BTCUSDT")) == ("binance1h", True)


def test_the_thirty_second_week_and_unknown_lookbacks() -> None:
    """5m windows of 2026-08-07..14 settled on the 30 s TWAP (docs/venue.md §2.1)."""
    cfg = {"id": "btc-5m-twap-30", "asset": "btc", "duration": "5m", "twapEnabled": True,
           "twapLookbackSeconds": 30}
    src = "https://data.chain.link/streams/btc-usd-twap-30s-streams"
    desc = _event("5m_twap60")["markets"][0]["description"].replace("twap-60s", "twap-30s")
    assert read_settlement({"description": desc, "resolutionSource": src,
                            "cryptoMarketConfig": cfg}) == ("twap30", False)
    assert read_settlement({"cryptoMarketConfig": {**cfg, "twapLookbackSeconds": 45}})[0] == "unknown"
    # no text, a spot source and a TWAP config: the config says TWAP (docs/venue.md §6.2)
    assert read_settlement({"resolutionSource": "https://data.chain.link/streams/btc-usd",
                            "cryptoMarketConfig": {**cfg, "twapLookbackSeconds": 60}}) == ("twap60", True)


def test_a_daily_tie_is_a_split() -> None:
    ev = _event("daily")
    ev["markets"][0]["outcomePrices"] = '["0.5", "0.5"]'
    m = parse_market(ev, "1d", 86400)
    assert m.resolved_up is None and m.split and m.settlement == "binance_noon"
