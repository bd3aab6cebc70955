"""A minimal TD maker bot loop wired to slotml's scorer and entry gate.

    python examples/td_maker_bot.py --model-path data/models/current --demo-windows 4
    python examples/td_maker_bot.py --demo-windows 4            # manual filters, no model
    python examples/td_maker_bot.py --model-path data/models/current --warm-from sqlite:///data/store.db

Every 30 s grid tick the bot turns its own book/price state into the collector's snapshot row
(``make_snapshot``: the same code, so the same features), feeds the online builder, and asks
the gate once per window for an entry (a resting bid at the side's best bid). ``kill -HUP <pid>``
or a new ``models/current`` (``slotml train --promote``) swaps the model in without a restart.
At start the bot warms its features from the collector's store (``--warm-from``): the regime
features read the previous hour of rows, which a cold start would not have until an hour passed.

The market here is a small random walk (``DemoMarket``) so the example runs anywhere; a real bot
replaces ``DemoMarket`` with its own websocket state and ``place_bid`` with its order code.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import signal
import sys
from dataclasses import dataclass

from slotml.argtypes import count
from slotml.errors import UserError
from slotml.features.contract import REGIME_WINDOWS
from slotml.ingest.snapshot import SNAPSHOT_INTERVAL_S, BookTop, WindowRef, make_snapshot
from slotml.model_file import ModelFileError
from slotml.serve import EntryGate, OnlineFeatures, add_model_args
from slotml.serve.gate import FeeSchedule
from slotml.serve.online import warm_span

log = logging.getLogger("td_maker_bot")
WINDOW_S = 900


@dataclass
class DemoMarket:
    """Stand-in for the bot's live state: a spot price and the two tokens' tops of book."""

    symbol: str = "BTC"
    price: float = 90_000.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def step(self, slot_ts: int, now: float, ptb: float) -> tuple[BookTop, BookTop, float]:
        self.price *= math.exp(self.rng.gauss(0, 0.0006))
        left = max(slot_ts + WINDOW_S - now, 1.0) / 60
        z = math.log(self.price / ptb) / (0.0005 * math.sqrt(left))
        p_up = min(max(0.5 * (1 + math.erf(z / math.sqrt(2))), 0.02), 0.98)
        bid = round(p_up - 0.01, 2)
        up = BookTop(bid, round(bid + 0.01, 2), 500.0, 400.0, now)
        down = BookTop(round(0.99 - bid - 0.01, 2), round(1.0 - bid, 2), 450.0, 500.0, now)
        return up, down, self.price


class Bot:
    def __init__(self, args: argparse.Namespace) -> None:
        self.gate = EntryGate.from_args(args)  # loads and checks the model, or the manual filters
        # the model's statistics, tolerance and lookback (the contract's defaults without one)
        scorer = self.gate.scorer
        self.online = OnlineFeatures.for_model(scorer) if scorer else OnlineFeatures()
        self.reload_requested = False
        self.entered: set[tuple[str, int]] = set()
        signal.signal(signal.SIGHUP, self._on_hup)

    def warm_start(self, store_url: str, now: float) -> dict[str, int]:
        """Feed the store's recent rows as known at ``now`` (the span the features read back):
        the first decision then sees what a bot running all along would have seen."""
        from slotml.ingest.store.query import recent_rows  # only when warming: a store client

        snaps, res = recent_rows(store_url, now, warm_span(WINDOW_S), window_s=WINDOW_S)
        fed = self.online.warm(snaps, res, now)
        log.info("warm start from %s: %d snapshots, %d resolutions (%d after the start skipped)",
                 store_url, fed["snapshots"], fed["resolutions"], fed["skipped"])
        return fed

    def _on_hup(self, signum: int, frame: object) -> None:
        self.reload_requested = True  # reload between ticks, never inside a decision

    def maybe_reload(self) -> bool:
        """On SIGHUP or a new models/current: swap the model; keep the old one if it is bad."""
        scorer = self.gate.scorer
        if scorer is None or not (self.reload_requested or scorer.source_changed()):
            return False
        self.reload_requested = False
        try:
            changed = self.gate.reload()
        except ModelFileError as e:
            log.error("model reload refused, keeping %s: %s", scorer.path.name, e)
            return False
        if changed:
            self.online.set_model(self.gate.scorer)
        return changed

    def on_tick(self, symbol: str, slot_ts: int, tick_ms: int, now: float, up: BookTop,
                down: BookTop, spot: float, twap: float, ptb: float) -> None:
        ref = WindowRef(symbol, WINDOW_S, slot_ts, "twap60", ptb, ptb)
        row, rejects = make_snapshot(ref, tick_ms, now, up, down, spot, twap)
        self.online.add_snapshot(row)
        if (symbol, slot_ts) in self.entered:
            return
        d = self.gate.decide_online(
            self.online, symbol, WINDOW_S, slot_ts, tick_ms,
            prices={"Up": row["bid_up"], "Down": row["bid_down"]},  # maker: rest at the best bid
            min_order_size=5.0, fee=FeeSchedule(0.07, 1.0, True), taker=False,
            context={"symbol": symbol, "slot_ts": slot_ts, "tick_ms": tick_ms})
        if d.enter:
            self.entered.add((symbol, slot_ts))
            place_bid(symbol, slot_ts, d.outcome, d.price, d.size)
        else:
            log.debug("%s %d: no entry (%s)", symbol, slot_ts, d.reason)

    def on_resolution(self, symbol: str, slot_ts: int, up_won: bool, known_at: float) -> None:
        self.online.add_resolution({"symbol": symbol, "window_s": WINDOW_S, "slot_ts": slot_ts,
                                    "resolved_up": up_won}, known_at=known_at)


def place_bid(symbol: str, slot_ts: int, outcome: str, price: float, size: float) -> None:
    print(f"ENTER {symbol} window {slot_ts}: bid {size:g} {outcome} @ {price:.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbol", default="BTC")
    parser.add_argument("--demo-windows", type=count(1, 10_000), default=4,
                        help="simulated windows to run (1..10000)")
    parser.add_argument("--warm-from", default=None, metavar="DB_URL",
                        help="the collector's store (sqlite:///path.db or mysql://...): feed its "
                             "recent rows at start so the regime features are there at once")
    add_model_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        bot = Bot(args)
    except ModelFileError as e:
        print(f"td_maker_bot: {e}", file=sys.stderr)
        return 2
    market = DemoMarket(args.symbol)
    slot0 = 1_767_225_600  # the demo's clock starts here (a real bot: time.time())
    if args.warm_from:
        try:
            bot.warm_start(args.warm_from, now=float(slot0))
        except UserError as e:
            print(f"td_maker_bot: {e}", file=sys.stderr)
            return 2
    else:
        log.warning("cold start (no --warm-from): the regime features stay NaN until %d windows "
                    "have passed", max(REGIME_WINDOWS))
    for k in range(args.demo_windows):  # simulated time: no sleeping in the demo
        slot = slot0 + k * WINDOW_S
        ptb = market.price
        for i in range(int(WINDOW_S / SNAPSHOT_INTERVAL_S)):
            bot.maybe_reload()
            tick_ms = slot * 1000 + int(i * SNAPSHOT_INTERVAL_S * 1000)
            now = tick_ms / 1000 + 0.05
            up, down, spot = market.step(slot, now, ptb)
            bot.on_tick(args.symbol, slot, tick_ms, now, up, down, spot, spot, ptb)
        bot.on_resolution(args.symbol, slot, market.price >= ptb, slot + WINDOW_S + 60.0)
    print(f"done: {len(bot.entered)} entries over {args.demo_windows} windows "
          f"({'model ' + bot.gate.scorer.path.name if bot.gate.scorer else 'manual filters'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
