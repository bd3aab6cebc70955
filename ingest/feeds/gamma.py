"""Gamma REST (and the CLOB's market lookup): slugs, market metadata, resolution state.

Gamma encodes ``outcomes``, ``outcomePrices`` and ``clobTokenIds`` as JSON *strings*; tokens map
to outcomes by index of ``outcomes`` (never assumed to be Up first). The settlement series is
read per market (description, ``resolutionSource``, ``cryptoMarketConfig``: docs/venue.md §6.2)
because the venue switched from the Chainlink spot stream to its TWAPs in August 2026, and the
hourly and daily families settle on Binance candles. A market counts as resolved only when
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
from slotml.ingest.schema import SETTLEMENTS
from slotml.ingest.wire import ParseError


def candidate_starts(now: float, family: str | int, ahead: int, scale: int = 1) -> list[int]:
    """Window starts worth looking up: the one in progress and the next ``ahead`` (on the
    family's own grid: the 4h and daily ones follow the US Eastern clock)."""
    return venue.next_starts(now, family, ahead, scale)


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


# The values of ``slot_resolutions.settlement`` (docs/schema.md, docs/venue.md §6.3).
SETTLEMENT_RULES = SETTLEMENTS
_TWAP_STREAM = re.compile(r"data\.chain\.link/streams/[a-z0-9]+-usd-twap-(\d+)s-streams")
_SPOT_STREAM = re.compile(r"data\.chain\.link/streams/[a-z0-9]+-usd(?![-a-z0-9])")
_BINANCE_SPOT = re.compile(r"binance\.com/en/trade/[a-z0-9]+_usdt")
_BINANCE_PERP = re.compile(r"binance\.com/en/futures/[a-z0-9]+usdt")


def _twap(n: int) -> str:
    rule = f"twap{n}"
    return rule if rule in SETTLEMENT_RULES else "unknown"  # a lookback we do not know


def _from_description(desc: str) -> str | None:
    """The rule the market's own text states (docs/venue.md §6.2), or None if it states none
    we know. A Binance candle rule takes the perpetual when the text names the futures pair."""
    perp = "_perp" if _BINANCE_PERP.search(desc) else ""
    if ("1 hour candle that begins on the time and date specified in the title" in desc
            and '"1h" candle' in desc):
        return "binance1h" + perp
    if "binance 1 minute candle for" in desc and "12:00 in the et timezone (noon)" in desc:
        return "binance_noon" + perp
    m = _TWAP_STREAM.search(desc)
    if "time-weighted average price (twap)" in desc and m:
        return _twap(int(m.group(1)))
    if "chainlink data stream" in desc and _SPOT_STREAM.search(desc):
        return "spot"
    return None


def _from_source(src: str) -> str | None:
    """``resolutionSource``: a Chainlink stream names the rule; a Binance page only the market
    (``binance`` / ``binance_perp``: the candle comes from the description)."""
    m = _TWAP_STREAM.search(src)
    if m:
        return _twap(int(m.group(1)))
    if _SPOT_STREAM.search(src):
        return "spot"
    if _BINANCE_PERP.search(src):
        return "binance_perp"
    if _BINANCE_SPOT.search(src):
        return "binance"
    return None


def _from_config(cfg: Any) -> str | None:
    """``cryptoMarketConfig`` (5m/15m/4h only): TWAP with its lookback, or the spot stream."""
    if not isinstance(cfg, dict) or "twapEnabled" not in cfg:
        return None
    if cfg.get("twapEnabled") is True:
        n = _num(cfg.get("twapLookbackSeconds"))
        return _twap(int(n)) if n is not None and n == int(n) else "unknown"
    return "spot" if cfg.get("twapEnabled") is False else None


def _agree(a: str, b: str) -> bool:
    if a == b:
        return True
    market = {"binance": "", "binance_perp": "_perp"}
    for x, y in ((a, b), (b, a)):
        if x in market and y.startswith("binance") and y not in market:
            return y.endswith("_perp") == bool(market[x])
    return False


def read_settlement(market: dict) -> tuple[str, bool]:
    """(rule, conflict): the market's settlement rule from its description, then
    ``resolutionSource``, then ``cryptoMarketConfig`` (docs/venue.md §4 decision 2, §6.2), and
    whether those sources disagree (counted by the caller as ``settlement_conflict``).

    A spot ``resolutionSource`` yields to a TWAP config; a Binance page without a candle text is
    ``unknown``; nothing readable is ``unknown`` (never ``spot`` by default: an hourly or daily
    market does not settle on Chainlink)."""
    desc = str(market.get("description") or "").lower()
    src = str(market.get("resolutionSource") or "").lower()
    d, s, c = _from_description(desc), _from_source(src), _from_config(
        market.get("cryptoMarketConfig"))
    readings = [r for r in (d, s, c) if r is not None]
    conflict = any(not _agree(a, b) for i, a in enumerate(readings) for b in readings[i + 1:])
    if d is not None:
        return d, conflict
    if s is not None and s.startswith("twap"):
        return s, conflict
    if c is not None:
        return c, conflict
    if s == "spot":
        return s, conflict
    return "unknown", conflict


def settlement_rule(market: dict) -> str:
    """The market's settlement rule, one of ``SETTLEMENT_RULES`` (see ``read_settlement``)."""
    return read_settlement(market)[0]


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
    resolution_source: str | None = None  # the raw URL, so a later parser can re-derive
    settlement_conflict: bool = False  # description, source and config disagree
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
            "settlement": self.settlement, "resolution_source": self.resolution_source,
            "tick_size": self.tick_size,
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


def parse_market(event: dict, family: str, window_s: int, scale: int = 1) -> MarketInfo:
    """One Gamma event (``/events/slug/{slug}``) -> MarketInfo. Raises ParseError. ``scale``:
    the time scale its slug is read under (slotml/venue.py)."""
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
    start = venue.parse_time(market.get("eventStartTime") or event.get("eventStartTime")
                             or event.get("startTime"), ms=True)
    # a slug without its year is read near the window's own start
    parsed = venue.parse_slug(slug, ref=start, scale=scale)
    if parsed is None:
        raise ParseError("bad_slug", slug)
    symbol, fam, slug_ts = parsed
    end = venue.parse_time(market.get("endDate") or event.get("endDate"), ms=True)
    if start is None or end is None:
        raise ParseError("no_window_times", slug)
    slot_ts, end_ts = int(round(start)), int(round(end))
    if slot_ts <= 0 or end_ts <= slot_ts:  # compared as stored: 1e-320 and 0.5 both round to 0
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
    rule, conflict = read_settlement(market)
    source = str(market.get("resolutionSource") or event.get("resolutionSource") or "")[:128]
    meta = event.get("eventMetadata") if isinstance(event.get("eventMetadata"), dict) else {}
    return MarketInfo(
        symbol=symbol,
        family=fam,
        window_s=window_s,
        slot_ts=slot_ts,
        end_ts=end_ts,
        slug=slug,
        condition_id=cid,
        up_token_id=up,
        down_token_id=down,
        settlement=rule,
        resolution_source=source or None,
        settlement_conflict=conflict,
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
