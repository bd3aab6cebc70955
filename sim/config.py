"""The sim's typed configuration (logged once at start-up by ``slotml sim serve|backfill``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from slotml import venue
from slotml.errors import UserError

DEFAULT_SYMBOLS = ("BTC", "ETH", "SOL", "XRP")


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes the simulated venue. Same config + seed = same world."""

    family: str = "15m"
    # several families served at once on the one port (empty: ``family`` alone); ``family`` is
    # the "primary" one the single-family callers (backfill, runner) read (the first listed,
    # unless ``family`` is among them). Kept as given: ``fams`` is what is served, so
    # ``dataclasses.replace(cfg, family=...)`` still means that family alone.
    families: tuple[str, ...] = ()
    time_scale: int = 1  # every listed family's lengths divided by this (slotml/venue.py)
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    seed: int = 1
    book: str = "default"  # book regime: default | sharp | efficient | shrunk (sim/maker.py BOOKS)
    efficient_book: bool = False  # alias of book="efficient" (quote the oracle: a leak detector)
    synthetic_assets: int = 0  # extra assets SYN0..SYNn-1 (load tests); BTC-like dynamics
    book_rate: float = 2.0  # book changes per token per second on the market websocket
    # taker arrivals per token per second; None = the calibrated order flow (sim/flow.py), 0 = none
    print_rate: float | None = None
    settlement: str = "twap60"  # "twap60" (venue since Aug 2026) or "spot"
    unresolved_fraction: float = 0.0  # windows that never publish a resolution
    relay_delay_s: float = 1.5  # RTDS relay lag of an observation (jitter +-0.3 s)
    list_ahead_windows: int = 96  # markets are listed this many windows ahead (real: ~24 h of 15m)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    order_key: str = "sim-order-key"  # POLY_API_KEY of the shadow-order endpoint (services/orders.py)
    # PolyBolt (services/polybolt.py): the L2 credentials it accepts, its publish lag and ping
    polybolt_key: str = "sim-pb-key"
    polybolt_secret: str = "sim-pb-secret"
    polybolt_passphrase: str = "sim-pb-passphrase"
    polybolt_delay_s: float = 0.8  # publish lag of an observation (jitter +-0.2 s)
    polybolt_ping_s: float = 25.0  # the server's ping interval (tests scale it down)
    faults: tuple[str, ...] = field(default=())  # fault kinds active from start (see sim.faults)
    shift: str = "none"  # regime shift (sim/shift.py): none | lag | unlag | backload
    shift_at: int | None = None  # the shift's epoch second (window-aligned; the CLI's --shift-day)
    # tests only: keep every book state sent for GET /_sim/books_sent (services/books.py note);
    # off by default, since a many-market run would keep ~100 MB of them
    keep_sent_books: bool = False

    def __post_init__(self) -> None:
        fams = tuple(venue.family(f).name for f in (self.families or (self.family,)))
        if len(set(fams)) != len(fams):
            raise UserError(f"families listed twice: {','.join(fams)}")
        if self.family not in fams:
            object.__setattr__(self, "family", fams[0])
        venue.check_scale(self.time_scale)
        if self.time_scale != 1:
            for f in fams:
                venue.scaled_seconds(f, self.time_scale)  # UserError for the sim-only families
        if self.settlement not in ("twap60", "spot"):
            raise UserError(f"settlement must be twap60 or spot, not {self.settlement!r}")
        if not 0.0 <= self.unresolved_fraction <= 1.0:
            raise UserError("unresolved_fraction must be in [0, 1]")
        if not self.polybolt_ping_s > 0 or not 0 <= self.polybolt_delay_s < 30:
            raise UserError("polybolt_ping_s must be > 0 and polybolt_delay_s in [0, 30)")
        if self.book_rate < 0:
            raise UserError("book_rate must be >= 0")
        from slotml.sim.maker import BOOKS

        if self.efficient_book and self.book not in ("default", "efficient"):
            raise UserError(f"--efficient-book is book 'efficient', not {self.book!r}")
        if self.efficient_book:
            object.__setattr__(self, "book", "efficient")
        if self.book not in BOOKS:
            raise UserError(f"book must be one of {', '.join(BOOKS)}, not {self.book!r}")
        object.__setattr__(self, "efficient_book", self.book == "efficient")
        if self.print_rate is not None and not 0 <= self.print_rate <= 100:  # per token per second; the Poisson draw needs e^-rate > 0
            raise UserError("print_rate must be in [0, 100]")
        syms = [s.upper() for s in self.symbols]
        if not syms or any(not s.isalnum() for s in syms):
            raise UserError(f"bad symbols {self.symbols!r}")
        object.__setattr__(self, "symbols", tuple(syms))
        self.shift_spec  # noqa: B018 - validates shift / shift_at (one-line UserError)
        if self.shift in ("lag", "unlag") and self.settlement != "twap60":
            raise UserError(f"--shift {self.shift} delays the settlement TWAP: it needs --settlement twap60")
        if self.shift == "backload" and (fams != ("15m",) or self.time_scale != 1):
            raise UserError("--shift backload reshapes each 15-minute block: it needs the 15m family "
                            "alone at time scale 1")

    def check_backfill(self) -> None:
        """``slotml sim backfill`` writes one Chainlink-settled family at its real length."""
        if len(self.fams) > 1 or self.time_scale != 1 \
                or self.rule_of(self.family) != self.settlement:
            raise UserError("backfill writes one Chainlink-settled family at its real length, "
                            f"not {','.join(self.fams)} at time scale {self.time_scale}")

    @property
    def fams(self) -> tuple[str, ...]:
        """The families served (``families``, else ``family`` alone)."""
        return self.families or (self.family,)

    def rule_of(self, family: str) -> str:
        """The settlement rule the sim's markets of ``family`` state (docs/venue.md §2): the
        hourly and daily families settle on Binance candles, the others on ``settlement``."""
        return {"1h": "binance1h", "1d": "binance_noon"}.get(family, self.settlement)

    @property
    def shift_spec(self):
        from slotml.sim.shift import Shift

        return Shift(self.shift, self.shift_at)

    @property
    def all_symbols(self) -> tuple[str, ...]:
        return self.symbols + tuple(f"SYN{i}" for i in range(self.synthetic_assets))
