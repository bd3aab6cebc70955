"""JSON shapes of the venue (Gamma, CLOB REST, websocket events), field by field as observed.

Kept apart from the server so the shapes can be read (and tested) in one place; see
../shared/protocol.md sections 1-4 for the real ones: JSON-encoded string fields in Gamma,
prices and sizes as decimal strings, timestamps as strings of epoch ms, levels worst-to-best.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from slotml import venue
from slotml.sim.world import Market, World, iso

MIN_ORDER_SIZE = 5
TICK = "0.01"
FEE_SCHEDULE = {"rate": 0.07, "exponent": 1, "takerOnly": True, "rebateRate": 0}


def px(cents: int) -> str:
    """1-cent price as the venue writes it: "0.5", "0.45", "0.01"."""
    return f"{cents / 100:.2f}".rstrip("0").rstrip(".") if cents % 100 else str(cents // 100)


def sz(size: float) -> str:
    s = f"{size:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def book_hash(token: str, t: float) -> str:
    return hashlib.sha1(f"{token}:{t}".encode()).hexdigest()


def wire_levels(book: dict) -> tuple[list[dict], list[dict]]:
    """Best-first (cents, size) levels -> wire order, worst to best (bids ascending, asks descending)."""
    bids = [{"price": px(c), "size": sz(s)} for c, s in reversed(book["bids"])]
    asks = [{"price": px(c), "size": sz(s)} for c, s in reversed(book["asks"])]
    return bids, asks


def top(book: dict) -> tuple[int | None, int | None]:
    return (book["bids"][0][0] if book["bids"] else None, book["asks"][0][0] if book["asks"] else None)


def closed_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def gamma_market(world: World, m: Market, now: float, second: int) -> dict[str, Any]:
    resolved = world.is_resolved(m, now)
    up_book, _ = world.book_levels(m, second)
    bid, ask = top(up_book)
    if resolved:
        prices = ["1", "0"] if world.outcome_up(m) else ["0", "1"]
    else:
        if bid is not None and ask is not None:
            mid = (bid + ask) / 200
        else:
            mid = (bid or ask or 50) / 100
        prices = [f"{mid:.3f}".rstrip("0").rstrip("."), f"{1 - mid:.3f}".rstrip("0").rstrip(".")]
    accepting = now < m.closed_at
    out: dict[str, Any] = {
        "id": m.market_id,
        "question": m.question,
        "conditionId": m.condition_id,
        "slug": m.slug,
        "resolutionSource": m.resolution_source,
        "endDate": iso(m.end),
        "startDate": iso(m.listed_at + 0.861305, frac=True),
        "createdAt": iso(m.listed_at - 500.972643, frac=True),
        "eventStartTime": iso(m.start),
        "endDateIso": iso(m.end)[:10],
        "description": m.description,
        "outcomes": json.dumps(["Up", "Down"]),
        "outcomePrices": json.dumps(prices),
        "clobTokenIds": json.dumps([m.up_token, m.down_token]),
        "active": True,
        "closed": resolved,
        "archived": False,
        "acceptingOrders": accepting,
        "acceptingOrdersTimestamp": iso(m.listed_at),
        "enableOrderBook": True,
        "negRisk": False,
        "restricted": True,
        "questionID": m.question_id,
        "orderPriceMinTickSize": 0.01,
        "orderMinSize": MIN_ORDER_SIZE,
        "volume": "0",
        "volumeNum": 0.0,
        "liquidity": "0",
        "liquidityNum": 0.0,
        "umaResolutionStatuses": "[]",
        "feesEnabled": True,
        "feeSchedule": dict(FEE_SCHEDULE),
        "automaticallyActive": True,
    }
    if not m.settlement.startswith("binance"):  # absent on the hourly and daily payloads
        out["cryptoMarketConfigId"] = f"{m.symbol.lower()}-{m.family}" + (
            "-twap-60" if m.settlement == "twap60" else "")
        out["cryptoMarketConfig"] = {"asset": m.symbol.lower(), "duration": m.family,
                                     "twapEnabled": m.settlement == "twap60",
                                     "twapLookbackSeconds": 60}
    if bid is not None:
        out["bestBid"] = bid / 100
    if ask is not None:
        out["bestAsk"] = ask / 100
    if bid is not None and ask is not None:
        out["spread"] = round((ask - bid) / 100, 4)
    if resolved:
        out["umaResolutionStatus"] = "resolved"
        out["closedTime"] = closed_time(m.resolved_at or now)
    return out


def gamma_event(world: World, m: Market, now: float, second: int) -> dict[str, Any]:
    mk = gamma_market(world, m, now, second)
    ev: dict[str, Any] = {
        "id": m.event_id,
        "ticker": m.slug,
        "slug": m.slug,
        "title": m.question,
        "description": m.description,
        "resolutionSource": m.resolution_source,
        "startDate": mk["startDate"],
        "creationDate": mk["createdAt"],
        "endDate": mk["endDate"],
        "startTime": mk["eventStartTime"],
        "eventStartTime": mk["eventStartTime"],
        "active": True,
        "closed": mk["closed"],
        "archived": False,
        "restricted": True,
        "negRisk": False,
        "markets": [mk],
        "series": [{"id": str(world.series_id(m.symbol, m.family)),
                    "slug": (venue.series_slug(m.symbol, m.family)
                             if venue.FAMILIES[m.family].listed
                             else f"{m.symbol.lower()}-up-or-down-{m.family}"),
                    "title": f"{m.symbol} Up or Down {m.family}", "recurrence": m.family}],
        "tags": [],
    }
    meta: dict[str, float] = {}
    wd = world.window(m) if now >= m.p2b_at else None
    if wd is not None:
        meta["priceToBeat"] = wd.p2b
        if now >= m.final_at:
            meta["finalPrice"] = wd.final
        ev["eventMetadata"] = meta
    return ev


def clob_market(world: World, m: Market, now: float) -> dict[str, Any]:
    winner_known = m.winner_at is not None and now >= m.winner_at
    up = world.outcome_up(m) if winner_known else None
    return {
        "condition_id": m.condition_id, "question_id": m.question_id, "market_slug": m.slug,
        "question": m.question, "description": m.description,
        "end_date_iso": iso(m.end), "game_start_time": None,
        "active": True, "closed": world.is_resolved(m, now), "archived": False,
        "accepting_orders": now < m.closed_at, "accepting_order_timestamp": iso(m.listed_at),
        "enable_order_book": True, "minimum_order_size": MIN_ORDER_SIZE, "minimum_tick_size": 0.01,
        "neg_risk": False, "is_50_50_outcome": False, "seconds_delay": 0,
        "maker_base_fee": 0, "taker_base_fee": 0,
        "tokens": [
            {"token_id": m.up_token, "outcome": "Up", "price": 1.0 if up else (0.0 if up is False else 0.5),
             "winner": bool(up) if winner_known else False},
            {"token_id": m.down_token, "outcome": "Down", "price": 0.0 if up else (1.0 if up is False else 0.5),
             "winner": (up is False) if winner_known else False},
        ],
    }


def clob_book(m: Market, token: str, book: dict, t_ms: int) -> dict[str, Any]:
    bids, asks = wire_levels(book)
    return {"market": m.condition_id, "asset_id": token, "timestamp": str(t_ms),
            "hash": book_hash(token, t_ms), "bids": bids, "asks": asks,
            "min_order_size": str(MIN_ORDER_SIZE), "tick_size": TICK, "neg_risk": False,
            "last_trade_price": ""}


def ws_book(m: Market, token: str, book: dict, t_ms: int) -> dict[str, Any]:
    """The market channel's ``book`` event (key order as in the real frame)."""
    bids, asks = wire_levels(book)
    return {"market": m.condition_id, "asset_id": token, "timestamp": str(t_ms),
            "hash": book_hash(token, t_ms), "bids": bids, "asks": asks, "tick_size": TICK,
            "event_type": "book", "last_trade_price": ""}


def last_trade_price_event(m: Market, token: str, cents: int, size: str, side: str, t_ms: int,
                           tx_hash: str | None) -> dict[str, Any]:
    """A print (key order as in the real frame; ``transaction_hash`` only sometimes, as observed)."""
    ev: dict[str, Any] = {"asset_id": token, "event_type": "last_trade_price", "fee_rate_bps": "0",
                          "market": m.condition_id, "price": px(cents), "side": side, "size": size,
                          "timestamp": str(t_ms)}
    if tx_hash is not None:
        ev["transaction_hash"] = tx_hash
    return ev


def new_market_event(m: Market, t_ms: int) -> dict[str, Any]:
    return {
        "event_type": "new_market", "id": m.market_id, "market": m.condition_id,
        "condition_id": m.condition_id, "question": m.question, "slug": m.slug,
        "description": m.description, "assets_ids": [m.up_token, m.down_token],
        "clob_token_ids": [m.up_token, m.down_token], "outcomes": ["Up", "Down"],
        "event_message": {"id": m.event_id, "ticker": m.slug, "slug": m.slug, "title": m.question,
                          "description": m.description},
        "tags": [], "active": True, "order_price_min_tick_size": TICK, "fees_enabled": True,
        "fee_schedule": dict(FEE_SCHEDULE), "taker_base_fee": 0, "game_start_time": None,
        "timestamp": str(t_ms),
    }


def market_resolved_event(world: World, m: Market, t_ms: int) -> dict[str, Any]:
    up = world.outcome_up(m)
    return {
        "event_type": "market_resolved", "id": m.market_id, "market": m.condition_id,
        "assets_ids": [m.up_token, m.down_token],
        "winning_asset_id": m.up_token if up else m.down_token,
        "winning_outcome": "Up" if up else "Down", "question": m.question, "slug": m.slug,
        "description": m.description,
        "event_message": {"id": m.event_id, "ticker": m.slug, "slug": m.slug, "title": m.question},
        "tags": [], "timestamp": str(t_ms),
    }


def chainlink_value(value: float) -> str:
    """E18 fixed-point integer string, as the relay's ``full_accuracy_value`` for Chainlink topics."""
    from decimal import Decimal

    return str(int(Decimal(repr(float(value))) * (10**18)))
