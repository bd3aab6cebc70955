"""Gamma REST (and the CLOB's market lookup): slugs, market metadata, resolution state.

Gamma encodes ``outcomes``, ``outcomePrices`` and ``clobTokenIds`` as JSON *strings*; tokens map
to outcomes by index of ``outcomes`` (never assumed to be Up first). The settlement series is
read per market (``resolutionSource`` / ``cryptoMarketConfig``) because the venue switched from
the Chainlink spot stream to its 60 s TWAP in August 2026. A market counts as resolved only when
``closed``, ``umaResolutionStatus`` says so and ``outcomePrices`` is exactly one "1" and one "0".
Pure parsing: the requests go through ``transport.http.HttpClient``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from slotml import venue
from slotml.ingest.wire import ParseError


def candidate_starts(now: float, window_s: int, ahead: int) -> list[int]:
    """Window starts worth looking up: the one in progress and the next ``ahead``."""
    cur = venue.window_start(now, window_s)
    return [cur + k * window_s for k in range(0, ahead + 1)]


def json_field(obj: dict, key: str) -> Any:
    """A field that Gamma sends as a JSON-encoded string (or, tolerated, already decoded)."""
    v = obj.get(key)
    if isinstance(v, str):
        if not v.strip():
            return None
        try:
            return json.loads(v)
        except json.JSONDecodeError as e:
            raise ParseError("bad_json_field", key) from e
    return v


def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None  # NaN, inf -> None


def settlement_rule(market: dict) -> str:
    """``twap60``, ``twap30`` or ``spot`` from the market's own metadata.

    resolutionSource wins (``...-usd-twap-60s-streams``); then cryptoMarketConfig; then the
    description; no TWAP mention means the pre-August-2026 spot rule.
    """
    src = str(market.get("resolutionSource") or "").lower()
    m = re.search(r"twap-(\d+)s", src)
    if m:
        return f"twap{int(m.group(1))}"
    cfg = market.get("cryptoMarketConfig")
    if isinstance(cfg, dict) and cfg.get("twapEnabled"):
        return f"twap{int(_num(cfg.get('twapLookbackSeconds')) or 60)}"
    desc = str(market.get("description") or "").lower()
    if "time-weighted average" in desc or "twap" in desc:
        return "twap60"
    return "spot"


@dataclass
class MarketInfo:
    """What the collector needs to know about one window's market, from Gamma."""

    symbol: str
    family: str
    window_s: int
    slot_ts: int
    end_ts: int
    slug: str
    condition_id: str
    up_token_id: str
    down_token_id: str
    settlement: str
    tick_size: float | None = None
    min_order_size: float | None = None
    fee_rate: float | None = None
    fee_exponent: float | None = None
    fee_taker_only: bool | None = None
    closed: bool = False
    uma_status: str = ""
    resolved_up: bool | None = None  # None = not resolved (or a 50/50 split)
    split: bool = False  # ["0.5","0.5"]
    official_price_to_beat: float | None = None
    official_final_price: float | None = None
    slug_ts: int | None = None  # the epoch in the slug; the caller counts a mismatch with slot_ts

    def resolution_row(self) -> dict[str, Any]:
        """The static columns of ``slot_resolutions`` known at discovery."""
        return {
            "symbol": self.symbol, "window_s": self.window_s, "slot_ts": self.slot_ts,
            "end_ts": self.end_ts, "slug": self.slug, "condition_id": self.condition_id,
            "up_token_id": self.up_token_id, "down_token_id": self.down_token_id,
            "settlement": self.settlement, "tick_size": self.tick_size,
            "min_order_size": self.min_order_size, "fee_rate": self.fee_rate,
            "fee_exponent": self.fee_exponent, "fee_taker_only": self.fee_taker_only,
        }


def resolution_state(market: dict) -> tuple[bool | None, bool]:
    """(resolved_up or None, is_split). Intermediate prices like "0.97" are never a resolution."""
    if market.get("closed") is not True:
        return None, False
    status = str(market.get("umaResolutionStatus") or "").lower()
    if status not in ("resolved", "settled"):
        return None, False
    outcomes = json_field(market, "outcomes")
    prices = json_field(market, "outcomePrices")
    if not isinstance(outcomes, list) or not isinstance(prices, list) or len(outcomes) != len(prices):
        raise ParseError("bad_outcome_prices", str(market.get("outcomePrices"))[:80])
    vals = [_num(p) for p in prices]
    if sorted(vals) == [0.0, 1.0]:
        winner = str(outcomes[vals.index(1.0)]).strip().lower()
        if winner not in ("up", "down"):
            raise ParseError("unknown_outcome", winner)
        return winner == "up", False
    if vals == [0.5, 0.5]:
        return None, True
    return None, False


def parse_market(event: dict, family: str, window_s: int) -> MarketInfo:
    """One Gamma event (``/events/slug/{slug}``) -> MarketInfo. Raises ParseError."""
    if not isinstance(event, dict):
        raise ParseError("not_an_object")
    markets = event.get("markets")
    if isinstance(markets, list) and markets:
        market = markets[0]
        if not isinstance(market, dict):
            raise ParseError("bad_market")
    elif "clobTokenIds" in event:  # a /markets/slug answer
        market = event
    else:
        raise ParseError("no_market")
    slug = str(market.get("slug") or event.get("slug") or "")
    parsed = venue.parse_slug(slug)
    if parsed is None:
        raise ParseError("bad_slug", slug)
    symbol, fam, slug_ts = parsed
    start = venue.parse_time(market.get("eventStartTime") or event.get("eventStartTime")
                             or event.get("startTime"), ms=True)
    end = venue.parse_time(market.get("endDate") or event.get("endDate"), ms=True)
    if start is None or end is None:
        raise ParseError("no_window_times", slug)
    if end <= start:
        raise ParseError("bad_window_times", slug)
    outcomes = json_field(market, "outcomes")
    tokens = json_field(market, "clobTokenIds")
    if not (isinstance(outcomes, list) and isinstance(tokens, list) and len(outcomes) == 2
            and len(tokens) == 2):
        raise ParseError("bad_tokens", slug)
    names = [str(o).strip().lower() for o in outcomes]
    if sorted(names) != ["down", "up"]:
        raise ParseError("unknown_outcome", ",".join(names))
    up = str(tokens[names.index("up")])
    down = str(tokens[names.index("down")])
    cid = str(market.get("conditionId") or "")
    if not cid:
        raise ParseError("no_condition_id", slug)
    fees = market.get("feeSchedule") if isinstance(market.get("feeSchedule"), dict) else {}
    fee_rate = 0.0 if market.get("feesEnabled") is False else _num(fees.get("rate"))
    taker_only = fees.get("takerOnly")
    resolved_up, split = resolution_state(market)
    meta = event.get("eventMetadata") if isinstance(event.get("eventMetadata"), dict) else {}
    return MarketInfo(
        symbol=symbol,
        family=fam,
        window_s=window_s,
        slot_ts=int(round(start)),
        end_ts=int(round(end)),
        slug=slug,
        condition_id=cid,
        up_token_id=up,
        down_token_id=down,
        settlement=settlement_rule(market),
        tick_size=_num(market.get("orderPriceMinTickSize")),
        min_order_size=_num(market.get("orderMinSize")),
        fee_rate=fee_rate,
        fee_exponent=_num(fees.get("exponent")),
        fee_taker_only=taker_only if isinstance(taker_only, bool) else None,
        closed=market.get("closed") is True,
        uma_status=str(market.get("umaResolutionStatus") or ""),
        resolved_up=resolved_up,
        split=split,
        official_price_to_beat=_num(meta.get("priceToBeat")),
        official_final_price=_num(meta.get("finalPrice")),
        slug_ts=slug_ts,
    )


def clob_winner(market: dict) -> bool | None:
    """CLOB ``GET /markets/{cid}``: True = Up won, False = Down, None = no winner flagged yet."""
    tokens = market.get("tokens") if isinstance(market, dict) else None
    if not isinstance(tokens, list):
        raise ParseError("bad_clob_market")
    for t in tokens:
        if isinstance(t, dict) and t.get("winner") is True:
            o = str(t.get("outcome") or "").strip().lower()
            if o in ("up", "down"):
                return o == "up"
    return None
