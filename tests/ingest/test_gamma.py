"""Gamma metadata: JSON-string fields, token mapping by index, settlement rule, resolution."""

from __future__ import annotations

import json

import pytest

from slotml.errors import UserError
from slotml.ingest.feeds.gamma import candidate_starts, clob_winner, parse_market, settlement_rule
from slotml.ingest.wire import ParseError
from slotml.venue import family_seconds, parse_slug, parse_time
from slotml.venue import slug as slug_for
from tests.conftest import FIXTURES

EVENT = json.loads((FIXTURES / "ingest" / "gamma_event_btc_15m.json").read_text())
UP = "8851848546962572193739008211889046036776198486765606333032192644001246174440"
DOWN = "10181859819235412241349111952383458602722012323104397550162049365057126390549"


def event(**market_changes) -> dict:
    e = json.loads(json.dumps(EVENT))
    e["markets"][0].update(market_changes)
    return e


def test_real_market_parses() -> None:
    m = parse_market(EVENT, "15m", 900)
    assert (m.symbol, m.family, m.slot_ts, m.end_ts) == ("BTC", "15m", 1767200400, 1767201300)
    assert m.slug_ts == m.slot_ts
    assert (m.up_token_id, m.down_token_id) == (UP, DOWN)
    assert m.condition_id.startswith("0x2e6af11e")
    assert m.settlement == "spot"  # 2025: the Chainlink spot stream
    assert (m.tick_size, m.min_order_size, m.fee_rate) == (0.01, 5.0, 0.0)
    assert m.resolved_up is None and not m.closed
    row = m.resolution_row()
    assert row["up_token_id"] == UP and row["window_s"] == 900


def test_tokens_map_by_outcome_index_never_by_position() -> None:
    e = event(outcomes='["Down", "Up"]')
    m = parse_market(e, "15m", 900)
    assert (m.up_token_id, m.down_token_id) == (DOWN, UP)


def test_twap_era_metadata_and_fees() -> None:
    e = event(resolutionSource="https://data.chain.link/streams/btc-usd-twap-60s-streams",
              cryptoMarketConfig={"asset": "btc", "duration": "15m", "twapEnabled": True,
                                  "twapLookbackSeconds": 60},
              feesEnabled=True,
              feeSchedule={"rate": 0.07, "exponent": 1, "takerOnly": True, "rebateRate": 0})
    e["eventMetadata"] = {"priceToBeat": 78449.05813530706, "finalPrice": 78400.7017548936}
    m = parse_market(e, "15m", 900)
    assert m.settlement == "twap60"
    assert (m.fee_rate, m.fee_exponent, m.fee_taker_only) == (0.07, 1.0, True)
    assert (m.official_price_to_beat, m.official_final_price) == (78449.05813530706,
                                                                  78400.7017548936)


@pytest.mark.parametrize("market,rule", [
    ({"resolutionSource": "https://data.chain.link/streams/eth-usd-twap-60s-streams"}, "twap60"),
    ({"resolutionSource": "https://data.chain.link/streams/btc-usd-twap-30s-streams"}, "twap30"),
    ({"resolutionSource": "", "cryptoMarketConfig": {"twapEnabled": True,
                                                     "twapLookbackSeconds": 60}}, "twap60"),
    # a TWAP text naming no stream: the lookback is unknown (docs/venue.md §4 decision 3)
    ({"description": "resolve to Up if the time-weighted average price (TWAP) ..."}, "unknown"),
    ({"resolutionSource": "https://data.chain.link/streams/sol-usd"}, "spot"),
])
def test_settlement_rule(market: dict, rule: str) -> None:
    assert settlement_rule(market) == rule


@pytest.mark.parametrize("changes,up,split", [
    ({"closed": True, "umaResolutionStatus": "resolved", "outcomePrices": '["1", "0"]'}, True, False),
    ({"closed": True, "umaResolutionStatus": "resolved", "outcomePrices": '["0", "1"]'}, False, False),
    ({"closed": True, "umaResolutionStatus": "resolved", "outcomePrices": '["0.5", "0.5"]'}, None, True),
    ({"closed": True, "umaResolutionStatus": "proposed", "outcomePrices": '["1", "0"]'}, None, False),
    ({"closed": False, "umaResolutionStatus": "resolved", "outcomePrices": '["1", "0"]'}, None, False),
    ({"closed": True, "umaResolutionStatus": "resolved", "outcomePrices": '["0.97", "0.03"]'}, None, False),
])
def test_resolution_state(changes: dict, up: bool | None, split: bool) -> None:
    m = parse_market(event(**changes), "15m", 900)
    assert m.resolved_up is up and m.split is split


def test_resolution_follows_outcome_order() -> None:
    m = parse_market(event(closed=True, umaResolutionStatus="resolved",
                           outcomes='["Down", "Up"]', outcomePrices='["1", "0"]'), "15m", 900)
    assert m.resolved_up is False


@pytest.mark.parametrize("changes,reason", [
    ({"clobTokenIds": "[\"1\"]"}, "bad_tokens"),
    ({"clobTokenIds": "[not json"}, "bad_json_field"),
    ({"outcomes": '["Yes", "No"]'}, "unknown_outcome"),
    ({"eventStartTime": None}, "no_window_times"),
    ({"conditionId": ""}, "no_condition_id"),
    ({"slug": "bitcoin-above-100k"}, "bad_slug"),
    # found by test_wire_fuzz: distinct floats that round to the same stored second
    ({"eventStartTime": 1e-320, "endDate": 0.5}, "bad_window_times"),
    ({"eventStartTime": 1_788_600_000.2, "endDate": 1_788_600_000.4}, "bad_window_times"),
    ({"eventStartTime": -900, "endDate": 100}, "bad_window_times"),
])
def test_bad_metadata_raises_parse_error(changes: dict, reason: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse_market(event(**changes), "15m", 900)
    assert ei.value.reason == reason


def test_slugs_and_families() -> None:
    assert slug_for("BTC", "15m", 1767200400) == "btc-updown-15m-1767200400"
    assert parse_slug("eth-updown-5s-1767200405") == ("ETH", "5s", 1767200405)
    assert family_seconds("15m") == 900 and family_seconds("5s") == 5
    with pytest.raises(UserError):
        family_seconds("15x")
    assert candidate_starts(1767200410.5, 900, 2) == [1767200400, 1767201300, 1767202200]


@pytest.mark.parametrize("text,ts", [
    ("2025-12-31T17:00:00Z", 1767200400.0),
    ("2025-12-30T17:10:15.861305Z", 1767114615.861305),
    ("2026-07-07 21:25:17+00", 1783459517.0),
    ("2025-12-31T17:00:00.1234567Z", 1767200400.123456),
    ("1767200400", 1767200400.0),
    (1767200400000, 1767200400.0),
    ("garbage", None),
    ("", None),
])
def test_lenient_times(text, ts) -> None:
    got = parse_time(text, ms=True)  # as the Gamma feed reads its times
    assert got == (pytest.approx(ts) if ts is not None else None)


def test_clob_winner_flag() -> None:
    base = {"tokens": [{"token_id": "u", "outcome": "Up", "winner": False},
                       {"token_id": "d", "outcome": "Down", "winner": False}]}
    assert clob_winner(base) is None
    base["tokens"][1]["winner"] = True
    assert clob_winner(base) is False
    with pytest.raises(ParseError):
        clob_winner({"nope": 1})


async def test_http_client_backs_off_on_425_429_5xx_and_honours_retry_after() -> None:
    import time

    from aiohttp import web

    from slotml.ingest.metrics import Metrics
    from slotml.ingest.transport.http import HttpClient

    script = [(425, {"Retry-After": "0.4"}), (429, {"Retry-After": "0"}), (503, {}),
              (200, {})]
    hits: list[float] = []

    async def handler(_req: web.Request) -> web.Response:
        hits.append(time.monotonic())
        status, headers = script[min(len(hits) - 1, len(script) - 1)]
        return web.json_response({"ok": len(hits)} if status == 200 else {"error": "x"},
                                 status=status, headers=headers)

    async def missing(_req: web.Request) -> web.Response:
        return web.Response(status=404, text="not found")

    app = web.Application()
    app.router.add_get("/events/slug/{slug}", handler)
    app.router.add_get("/gone", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    bodies: list[str] = []
    m = Metrics()
    c = HttpClient(m, timeout=5, backoff_max=1.0, on_body=lambda src, body, t: bodies.append(src))
    await c.start()
    try:
        got = await c.get_json(f"http://127.0.0.1:{port}/events/slug/x")
        assert got == {"ok": 4}
        assert hits[1] - hits[0] >= 0.35  # Retry-After honoured
        assert m.get("http_retries") == 3
        assert m.get("http_responses", status="425") == 1
        assert m.get("http_responses", status="503") == 1
        assert len(bodies) == 4 and bodies[0].startswith("gamma:http://")
        assert await c.get_json(f"http://127.0.0.1:{port}/gone") is None
        assert m.get("http_retries") == 3  # a 404 is an answer, not retried
    finally:
        await c.close()
        await runner.cleanup()
