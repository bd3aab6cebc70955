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
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    seed: int = 1
    efficient_book: bool = False  # quote the oracle itself (no edge to find: a leak detector)
    synthetic_assets: int = 0  # extra assets SYN0..SYNn-1 (load tests); BTC-like dynamics
    book_rate: float = 2.0  # book changes per token per second on the market websocket
    print_rate: float = 0.5  # last_trade_price prints per token per second (0: none)
    settlement: str = "twap60"  # "twap60" (venue since Aug 2026) or "spot"
    unresolved_fraction: float = 0.0  # windows that never publish a resolution
    relay_delay_s: float = 1.5  # RTDS relay lag of an observation (jitter +-0.3 s)
    list_ahead_windows: int = 96  # markets are listed this many windows ahead (real: ~24 h of 15m)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    faults: tuple[str, ...] = field(default=())  # fault kinds active from start (see sim.faults)

    def __post_init__(self) -> None:
        venue.family(self.family)  # a one-line UserError naming the known families
        if self.settlement not in ("twap60", "spot"):
            raise UserError(f"settlement must be twap60 or spot, not {self.settlement!r}")
        if not 0.0 <= self.unresolved_fraction <= 1.0:
            raise UserError("unresolved_fraction must be in [0, 1]")
        if self.book_rate < 0:
            raise UserError("book_rate must be >= 0")
        if not 0 <= self.print_rate <= 100:  # per token per second; the Poisson draw needs e^-rate > 0
            raise UserError("print_rate must be in [0, 100]")
        syms = [s.upper() for s in self.symbols]
        if not syms or any(not s.isalnum() for s in syms):
            raise UserError(f"bad symbols {self.symbols!r}")
        object.__setattr__(self, "symbols", tuple(syms))

    @property
    def all_symbols(self) -> tuple[str, ...]:
        return self.symbols + tuple(f"SYN{i}" for i in range(self.synthetic_assets))
