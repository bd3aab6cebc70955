"""The store's schema: every column of every table, documented in this one place.

Both backends (SQLite, MySQL/MariaDB) and the lake's Parquet schema are generated from these
definitions, so a column is added here once. ``docs()`` renders the column reference that the
README links to (``slotml schema --docs``).

Departures from the original design, on purpose: DOUBLE instead of FLOAT (ticks go down to
0.001; float32 adds noise at the tick grid), ``window_s`` in both keys (several families in one
store), ``tick_ms`` in the snapshot key (a retried writer can never duplicate a tick), and the
settlement / measured-vs-official / fee columns (since August 2026 the markets settle on
Chainlink's 60 s TWAP).

Version 2 (the trade tape and five levels of depth): ``slot_trades``, ``slot_tape_gaps`` and the
40 depth columns of ``slot_snapshots``; a version-1 store is upgraded in place.

Version 3 (a second price source, PolyBolt): ``spot_source`` on ``slot_snapshots`` and
``slot_resolutions``, naming whose spot series a window's spot columns come from (Chainlink's
through the relay, or Pyth's through PolyBolt); appended, a version-2 store is upgraded in place.

Version 4 (every Up/Down family, docs/venue.md): ``settlement`` widened from 8 to 24 characters
for the Binance candle rules (``binance_noon_perp`` is 17), and ``resolution_source`` (the
market's raw URL, so a later parser can re-derive a rule) appended to ``slot_resolutions``.

Version 5 (book-through fills): the touch's range since a token's previous row
(``ask_up_low``, ``bid_up_high``, ``ask_down_low``, ``bid_down_high``) appended to
``slot_snapshots``: a 30 s grid hides a book that moves through a resting bid and back between
two ticks, and the collector applies every book update anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 5
SPOT_SOURCES = ("chainlink", "pyth")
# slot_resolutions.settlement: the rule read from each market (ingest/feeds/gamma.py)
SETTLEMENTS = ("spot", "twap30", "twap60", "binance1h", "binance1h_perp", "binance_noon",
               "binance_noon_perp", "unknown")
_SETTLEMENT_DOC = (
    "Settlement rule read from the market's description, resolutionSource and "
    "cryptoMarketConfig (docs/venue.md §6): `spot` (Chainlink spot stream, end >= start is Up), "
    "`twap30` / `twap60` (Chainlink 30 s / 60 s TWAP stream), `binance1h` (Binance spot 1H "
    "candle, close >= open is Up), `binance_noon` (Binance spot 1m candle closing at 12:00 ET, "
    "the day before vs the day; a tie is 50-50), `_perp` variants of both on the USDⓈ-M "
    "perpetual (HYPE), `unknown` (a text the parser does not know: no price_to_beat, no moves).")
_SPOT_DOC = ("Whose spot series the row's spot columns (`chainlink_price`, `spot_move_pct`; "
             "`spot_price_to_beat`) come from: `chainlink` (Chainlink spot, the live-data relay) "
             "or `pyth` (Pyth spot, PolyBolt: a different series with its own basis and lag). "
             "Pinned at the window's start, so a window's spot move never spans two series. "
             "NULL in rows written before schema version 3 (then: Chainlink, the relay's). The "
             "sim's backfill writes `chainlink`, as a relay collector would.")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # int | bigint | tinyint | double | bool | str
    nullable: bool = True
    doc: str = ""
    length: int = 0  # VARCHAR length for kind == "str"
    default: str | None = None  # SQL literal
    # value checks ``coerce_row`` applies (a row failing one is rejected, never stored):
    lo: float | None = None  # minimum (inclusive, exclusive with lo_open)
    hi: float | None = None  # maximum (inclusive)
    lo_open: bool = False
    choices: tuple[str, ...] = ()  # the only values a str column may hold
    null_is_default: bool = False  # a missing/None value means the default, not "required"

    @property
    def mysql_type(self) -> str:
        return {
            "int": "INT",
            "bigint": "BIGINT",
            "tinyint": "TINYINT",
            "double": "DOUBLE",
            "bool": "BOOLEAN",
            "str": f"VARCHAR({self.length})",
        }[self.kind]

    @property
    def sqlite_type(self) -> str:
        return {"double": "REAL", "str": "TEXT"}.get(self.kind, "INTEGER")

    @property
    def python_type(self) -> type:
        return {"double": float, "str": str, "bool": bool}.get(self.kind, int)

    @property
    def default_value(self) -> int | float | str | None:
        """The SQL default as the Python value a writer would have sent."""
        if self.default is None:
            return None
        if self.kind == "str":
            return self.default[1:-1].replace("''", "'")
        return float(self.default) if self.kind == "double" else int(self.default)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    unique: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...]
    doc: str

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def data_columns(self) -> list[Column]:
        """Columns a writer supplies (the database assigns id and updated_at)."""
        return [c for c in self.columns if c.name not in ("id", "updated_at")]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_ID = Column("id", "bigint", False, "Surrogate key (AUTO_INCREMENT); tie-break for incremental export.")
_SYMBOL = Column("symbol", "str", False, "Asset, upper case: BTC, ETH, SOL, XRP.", length=10)
_WINDOW = Column("window_s", "int", False, "Window length in seconds (900 for the 15m family).", default="900")
_SLOT = Column("slot_ts", "int", False, "Window start, epoch seconds UTC.")
_UPDATED = Column(
    "updated_at", "double", False,
    "Epoch seconds stamped by the DATABASE at commit (its clock, not the writer's); moves only "
    "when the row really changes. Incremental export keys on it.",
)

DEPTH_LEVELS = 5


def _depth_columns() -> tuple[Column, ...]:
    """bid_up_l1, bid_size_up_l1, ..., ask_size_down_l5: price/size pairs, best level first."""
    out: list[Column] = []
    for token in ("up", "down"):
        for side, best in (("bid", "highest"), ("ask", "lowest")):
            for lvl in range(1, DEPTH_LEVELS + 1):
                which = ("best", "2nd-best", "3rd-best", "4th-best", "5th-best")[lvl - 1]
                out.append(Column(
                    f"{side}_{token}_l{lvl}", "double",
                    doc=f"Price of the {token.capitalize()} token's {which} {side} level "
                        f"(level 1 = the {best} price, equal to {side}_{token} when both are "
                        "filled); NULL when the level is empty, the book was stale/crossed or "
                        "no depth was captured (a fixed nullable column, not a list: see above)."))
                out.append(Column(
                    f"{side}_size_{token}_l{lvl}", "double",
                    doc=f"Size (shares) at {side}_{token}_l{lvl}; NULL when that level is "
                        "empty (never 0)."))
    return tuple(out)


DEPTH = _depth_columns()

_TOUCH_DOC = ("The {what} {side} of the {token} token over every book state applied since the "
              "token's previous row (its first book, for the first), this row's included: a book "
              "that moved through a resting order and back between two ticks shows here "
              "(backtest maker-queue's book-through fills). NULL when the row has no book, or from "
              "a writer that does not follow every update (rows before schema version 5, the "
              "sim's backfill without its tape).")
TOUCH = tuple(Column(f"{side}_{token}_{end}", "double", lo=0.0, hi=1.0,
                     doc=_TOUCH_DOC.format(what=what, side=side, token=token.capitalize()))
              for token in ("up", "down")
              for side, end, what in (("ask", "low", "lowest best"), ("bid", "high", "highest best")))
TOUCH_COLUMNS: tuple[str, ...] = tuple(c.name for c in TOUCH)
DEPTH_COLUMNS: tuple[str, ...] = tuple(c.name for c in DEPTH)

SNAPSHOTS = Table(
    name="slot_snapshots",
    doc=("One row per window per snapshot tick (30 s grid); written once, never updated. "
         f"Since schema version 2 it also carries the top {DEPTH_LEVELS} levels of each side "
         "of each token's book as fixed, nullable price/size columns (`bid_up_l1` ... "
         "`ask_size_down_l5`) rather than list columns: every backend (SQLite, MySQL) and the "
         "lake's Arrow schema take them as they are, DuckDB reads them as plain columns, and "
         "a row without depth (rows written before version 2, stale or rejected books, "
         "writers that capture no depth) is simply NULLs. The collector reads the levels "
         "with the best ones (one read of its book); the sim's backfill writes the levels "
         "the sim publishes. They come last, after `updated_at`: ADD COLUMN appends, "
         "so a fresh store and an upgraded one have the same column order."),
    columns=(
        _ID,
        _SYMBOL,
        _WINDOW,
        _SLOT,
        Column("tick_ms", "bigint", False, "Scheduled grid instant of the capture, epoch ms (all assets share it)."),
        Column("captured_at", "double", False, "When the snapshot was actually taken, epoch s."),
        Column("minutes_into_slot", "double", False, "(tick_ms/1000 - slot_ts) / 60."),
        Column("bid_up", "double", doc="Best bid of the Up token (max of bid levels); NULL if that side is empty or the book is stale/crossed."),
        Column("ask_up", "double", doc="Best ask of the Up token (min of ask levels); NULL as above."),
        Column("bid_down", "double", doc="Best bid of the Down token."),
        Column("ask_down", "double", doc="Best ask of the Down token."),
        Column("bid_size_up", "double", doc="Size (shares) at the Up best bid."),
        Column("ask_size_up", "double", doc="Size at the Up best ask."),
        Column("bid_size_down", "double", doc="Size at the Down best bid."),
        Column("ask_size_down", "double", doc="Size at the Down best ask."),
        Column("spread_up", "double", doc="ask_up - bid_up; NULL when either side is missing."),
        Column("spread_down", "double", doc="ask_down - bid_down."),
        Column("chainlink_price", "double", doc="Latest spot value of the window's spot source (`spot_source`): Chainlink's (live-data `crypto_prices_chainlink`) or, with `--price-source polybolt|auto`, Pyth's (PolyBolt `price.crypto`)."),
        Column("chainlink_twap", "double", doc="Latest Chainlink 60 s TWAP value (relay `crypto_prices_twap_sixty` or PolyBolt `price.crypto.twap`: the same series; with `auto`, the newer stamp of the two)."),
        Column("dir_move_pct", "double", doc="Signed move of the market's SETTLEMENT series since price_to_beat, percent."),
        Column("abs_move_pct", "double", doc="abs(dir_move_pct)."),
        Column("spot_move_pct", "double", doc="Signed move of the spot stream since spot_price_to_beat, percent (what the manual filters use)."),
        Column("book_age_s", "double", doc="Seconds since the older of the two tokens' last book update at capture."),
        Column("hour_utc", "tinyint", doc="Hour of tick_ms, UTC."),
        Column("day_of_week", "tinyint", doc="Weekday of tick_ms, UTC, 0 = Monday."),
        _UPDATED,
        *DEPTH,
        Column("spot_source", "str", doc=_SPOT_DOC, length=12, choices=SPOT_SOURCES),
        *TOUCH,
    ),
    unique=("symbol", "window_s", "slot_ts", "tick_ms"),
    indexes=(("symbol", "slot_ts"), ("slot_ts",), ("updated_at",)),
)

RESOLUTIONS = Table(
    name="slot_resolutions",
    doc="One row per window, filled in over time (column by column: a known value is never blanked).",
    columns=(
        _ID,
        _SYMBOL,
        _WINDOW,
        _SLOT,
        Column("end_ts", "int", doc="Window end, epoch s (market's endDate)."),
        Column("slug", "str", doc="Market slug, e.g. btc-updown-15m-1767200400.", length=80),
        Column("condition_id", "str", doc="CLOB condition id (0x hex, opaque).", length=66),
        Column("up_token_id", "str", doc="Up outcome token id (decimal string).", length=80),
        Column("down_token_id", "str", doc="Down outcome token id (decimal string).", length=80),
        Column("settlement", "str", doc=_SETTLEMENT_DOC, length=24, choices=SETTLEMENTS),
        Column("tick_size", "double", doc="Market tick size at discovery (orderPriceMinTickSize)."),
        Column("min_order_size", "double", doc="Minimum order size, shares (orderMinSize)."),
        Column("fee_rate", "double", doc="Fee schedule rate (feeSchedule.rate); 0 when fees are disabled."),
        Column("fee_exponent", "double", doc="Fee schedule exponent: fee = shares * rate * (p(1-p))^exponent."),
        Column("fee_taker_only", "bool", doc="Fee charged only to takers."),
        Column("price_to_beat", "double", doc="Settlement-series observation stamped at the window start, measured by the collector."),
        Column("spot_price_to_beat", "double", doc="Spot-stream observation stamped at the window start, measured by the collector."),
        Column("final_price", "double", doc="Settlement-series observation stamped at the window end, measured by the collector."),
        Column("final_seen_at", "double", doc="Epoch s when the collector first saw final_price."),
        Column("official_price_to_beat", "double", doc="Gamma eventMetadata.priceToBeat (published after the end)."),
        Column("official_final_price", "double", doc="Gamma eventMetadata.finalPrice (up to ~22 min after the end)."),
        Column("resolved_up", "bool", doc="1 = Up won, 0 = Down won, NULL = not resolved yet (from Gamma)."),
        Column("prev_resolved_up", "bool", doc="resolved_up of the same asset and family's previous window."),
        Column("resolved_at", "double", doc="Wall time the collector FIRST saw the resolved state (not the venue's close time)."),
        _UPDATED,
        Column("spot_source", "str", doc=_SPOT_DOC, length=12, choices=SPOT_SOURCES),
        Column("resolution_source", "str", doc="The market's raw resolutionSource URL (e.g. https://www.binance.com/en/trade/BTC_USDT); NULL before schema version 4.", length=128),
    ),
    unique=("symbol", "window_s", "slot_ts"),
    indexes=(("slot_ts",), ("updated_at",)),
)

_TOKEN = Column("token_id", "str", False, "Outcome token id (decimal string).", length=80)

TRADES = Table(
    name="slot_trades",
    doc=("One row per `last_trade_price` print of a tracked window's token (the trade tape); "
         "written once, never updated. The unique key is the print's own fields plus an "
         "occurrence counter, so a replay of the spool or of a raw capture stores nothing "
         "twice while two identical prints (same token, time, price, size, side and hash) "
         "stay two rows. The tx hash alone is not unique (one transaction can fill several "
         "orders), and `frame_index` is not in the key (a replayed frame could be split "
         "differently)."),
    columns=(
        _ID,
        _SYMBOL,
        _WINDOW,
        _SLOT,
        _TOKEN,
        Column("outcome", "str", False, "Which token printed: `Up` or `Down`.", length=4,
               choices=("Up", "Down")),
        Column("condition_id", "str", False, "CLOB condition id of the window's market.",
               length=66),
        Column("price", "double", False, "Trade price, in [0, 1].", lo=0.0, hi=1.0),
        Column("size", "double", False, "Trade size, shares (> 0).", lo=0.0, lo_open=True),
        Column("side", "str", False, "The taker's side as the venue sends it: `BUY` or `SELL`.",
               length=4, choices=("BUY", "SELL")),
        Column("fee_rate_bps", "double", doc="Fee rate of the trade, basis points, as the venue "
               "sends it; NULL when it sent none."),
        Column("ts_ms", "bigint", False, "The venue's timestamp of the print, epoch ms."),
        Column("received_at", "double", False, "When the collector received the frame, epoch s."),
        Column("tx_hash", "str", False, "Transaction hash; '' when the venue sent none (so the "
               "unique key works on MySQL, where NULLs never collide).", length=66,
               default="''", null_is_default=True),
        Column("frame_index", "int", False, "The print's index within its websocket frame."),
        Column("occurrence", "int", False, "0 for the first print with the same (token_id, "
               "ts_ms, price, size, side, tx_hash), 1 for the next identical one, ...", lo=0),
        _UPDATED,
    ),
    unique=("token_id", "ts_ms", "price", "size", "side", "tx_hash", "occurrence"),
    indexes=(("symbol", "slot_ts"), ("slot_ts",), ("updated_at",)),
)

TAPE_GAPS = Table(
    name="slot_tape_gaps",
    doc=("One row per interval in which a tracked token's trade tape may be incomplete "
         "(written once, never updated). Prints are not resent after a reconnect, so a window "
         "whose tokens have a gap overlapping it has an incomplete tape; the backtest excludes "
         "such windows."),
    columns=(
        _ID,
        _SYMBOL,
        _WINDOW,
        _SLOT,
        _TOKEN,
        Column("from_ts", "double", False, "Last moment the tape is known whole, epoch s."),
        Column("to_ts", "double", False, "First moment it is whole again, epoch s (>= from_ts)."),
        Column("reason", "str", False, "Why: e.g. `reconnect`, `spool-full`, `start`.",
               length=16),
        _UPDATED,
    ),
    unique=("token_id", "from_ts", "reason"),
    indexes=(("symbol", "slot_ts"), ("slot_ts",), ("updated_at",)),
)

TABLES: dict[str, Table] = {t.name: t for t in (SNAPSHOTS, RESOLUTIONS, TRADES, TAPE_GAPS)}


def docs() -> str:
    """The column reference as Markdown (one place documents every column)."""
    out: list[str] = []
    for t in TABLES.values():
        out.append(f"### `{t.name}`\n\n{t.doc}\n")
        out.append(f"Unique key: ({', '.join(t.unique)}).\n")
        out.append("| column | type | null | meaning |\n|---|---|---|---|")
        for c in t.columns:
            out.append(f"| `{c.name}` | {c.mysql_type} | {'yes' if c.nullable else 'no'} | {c.doc} |")
        out.append("")
    return "\n".join(out)
