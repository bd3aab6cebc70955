"""Fill models on hand-made rows and tapes: taker depth walk and fee, maker-queue's queue,
complementary prints, latency, cancel and gaps, maker-optimistic, rebates and markouts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotml.backtest.fills import MakerOptimistic, MakerQueue, Taker, make_fill
from slotml.backtest.policies import AlwaysEnter
from slotml.backtest.rows import DecisionRow, Tape, WindowInfo
from slotml.backtest.simulate import simulate
from slotml.serve.gate import FeeSchedule, GateConfig

SLOT = 1_000 * 900
T0 = SLOT * 1000 + 300_000  # decision tick: 5 minutes in
FEE = FeeSchedule(0.07, 1.0, True)


def _row(**kw) -> DecisionRow:
    base = dict(symbol="BTC", window_s=900, slot_ts=SLOT, point=1 / 3, tick_ms=T0,
                vector=np.zeros(3, np.float32), bid_up=0.50, ask_up=0.52, bid_down=0.47,
                ask_down=0.49, spot_move_pct=0.1, dir_move_pct=0.1, bid_size_up=100.0,
                bid_size_down=40.0)
    base.update(kw)
    return DecisionRow(**base)


def _tape(prints: list[tuple[int, str, float, float, str]]) -> Tape:
    """prints: (ms after the decision tick, 'Up'/'Down', price, size, 'BUY'/'SELL')."""
    prints = sorted(prints)
    return Tape(np.array([T0 + p[0] for p in prints], np.int64), np.array([p[1] == "Up" for p in prints]),
                np.array([p[2] for p in prints]), np.array([p[3] for p in prints]),
                np.array([p[4] == "BUY" for p in prints]))


def _info(prints=(), up=True, fee=FEE, **kw) -> WindowInfo:
    return WindowInfo(up, fee, 1.0, kw.get("ticks", ()), kw.get("asks_up", ()), kw.get("asks_down", ()),
                      kw.get("bids_up", ()), kw.get("bids_down", ()), (SLOT + 900) * 1000,
                      _tape(list(prints)), kw.get("gap", False), None, None,
                      kw.get("ask_lows_up", ()), kw.get("ask_lows_down", ()),
                      kw.get("bid_highs_up", ()), kw.get("bid_highs_down", ()))


def test_taker_walks_the_depth_and_pays_the_fee_per_level() -> None:
    row = _row(ask_depth_up=((0.52, 4.0), (0.53, 3.0), (0.55, 100.0)))
    f = Taker().execute(row, _info(), "Up", 0.52, 10)
    assert f.shares == 10
    assert f.price == pytest.approx((4 * 0.52 + 3 * 0.53 + 3 * 0.55) / 10)
    fees = [0.07 * p * (1 - p) for p in (0.52, 0.53, 0.55)]
    assert f.fee_per_share == pytest.approx((4 * fees[0] + 3 * fees[1] + 3 * fees[2]) / 10)
    # a book thinner than the order fills what it shows; no depth recorded: the best ask
    assert Taker().execute(_row(ask_depth_up=((0.52, 4.0),)), _info(), "Up", 0.52, 10).shares == 4
    assert Taker().execute(_row(), _info(), "Up", 0.52, 10).price == 0.52


def test_maker_queue_waits_for_the_queue_ahead() -> None:
    mq = MakerQueue(latency_ms=250, cancel_before_s=30)
    row = _row()  # Up bid 0.50 with 100 shares ahead
    # 60 + 30 shares sold into 0.50: the queue ahead is 10 from gone; then 25 more: 10 ahead, 15 ours
    info = _info([(1000, "Up", 0.50, 60, "SELL"), (2000, "Up", 0.50, 30, "SELL"),
                  (3000, "Up", 0.50, 25, "SELL")])
    f = mq.execute(row, info, "Up", 0.50, 10)
    assert f.shares == 10 and f.price == 0.50 and f.fee_per_share == 0 and f.ms == T0 + 3000
    info = _info([(1000, "Up", 0.50, 60, "SELL"), (3000, "Up", 0.50, 45, "SELL")])
    assert mq.execute(row, info, "Up", 0.50, 10).shares == 5  # partial
    # taker BUYs of our own token lift asks: they never reach a bid
    assert mq.execute(row, _info([(1000, "Up", 0.50, 500, "BUY")]), "Up", 0.50, 10) is None


def test_maker_queue_counts_complementary_prints_and_fills_through() -> None:
    mq = MakerQueue()
    row = _row()
    # a Down BUY at 0.50 is matched against Up bids at 1 - 0.50 = 0.50
    f = mq.execute(row, _info([(1000, "Down", 0.50, 120, "BUY")]), "Up", 0.50, 10)
    assert f is not None and f.shares == 10
    # a Down BUY at 0.52 = an Up sale at 0.48: through our 0.50 bid, fills all at our price
    f = mq.execute(row, _info([(1000, "Down", 0.52, 1, "BUY")]), "Up", 0.50, 10)
    assert f.shares == 10 and f.price == 0.50
    # prints above our bid (Up sold at 0.51) do not move us
    assert mq.execute(row, _info([(1000, "Up", 0.51, 500, "SELL")]), "Up", 0.50, 10) is None
    # the Down side's bid 0.47 (40 ahead): an Up BUY at 0.53 is a Down sale at 0.47
    assert mq.execute(row, _info([(1000, "Up", 0.53, 45, "BUY")]), "Down", 0.47, 10).shares == 5


def test_maker_queue_latency_and_cancel() -> None:
    mq = MakerQueue(latency_ms=250, cancel_before_s=30)
    through = lambda ms: _info([(ms, "Up", 0.40, 5, "SELL")])  # noqa: E731
    assert mq.execute(_row(), through(100), "Up", 0.50, 10) is None  # before the bid rested
    assert mq.execute(_row(), through(300), "Up", 0.50, 10) is not None
    end = (SLOT + 900) * 1000 - T0
    assert mq.execute(_row(), through(end - 29_000), "Up", 0.50, 10) is None  # cancelled
    assert mq.execute(_row(), through(end - 31_000), "Up", 0.50, 10) is not None


def test_maker_queue_fills_when_the_book_moves_through_between_ticks() -> None:
    """The touch range (schema 5) shows the Up ask at our 0.50 bid between two 30 s ticks, or
    a Down bid at 0.50 (its complement): filled in full at that tick, with no print at all."""
    mq = MakerQueue(latency_ms=250, cancel_before_s=30)
    ticks = [T0 + 30_000 * i for i in range(5)]
    nan = float("nan")
    calm = dict(ticks=ticks, ask_lows_up=[0.52] * 5, bid_highs_down=[0.48] * 5,
                ask_lows_down=[0.50] * 5, bid_highs_up=[0.50] * 5)
    assert mq.execute(_row(), _info(**calm), "Up", 0.50, 10) is None
    dip = dict(calm, ask_lows_up=[0.52, 0.52, 0.50, 0.52, 0.52])
    f = mq.execute(_row(), _info(**dip), "Up", 0.50, 10)
    assert (f.shares, f.price, f.ms) == (10, 0.50, ticks[2])
    comp = dict(calm, bid_highs_down=[0.48, 0.48, 0.48, 0.51, nan])
    assert mq.execute(_row(), _info(**comp), "Up", 0.50, 10).ms == ticks[3]
    # the decision tick's own range is before the order rested; NaN (unknown) never fills
    early = dict(calm, ask_lows_up=[0.49, 0.52, 0.52, 0.52, 0.52])
    assert mq.execute(_row(), _info(**early), "Up", 0.50, 10) is None
    assert mq.execute(_row(), _info(**dict(calm, ask_lows_up=[nan] * 5)), "Up", 0.50, 10) is None
    # a print at our price before the move still fills what it reaches first, then the book the rest
    f = mq.execute(_row(), _info([(1000, "Up", 0.50, 104, "SELL")], **dip), "Up", 0.50, 10)
    assert (f.shares, f.ms) == (10, T0 + 1000)
    # past the cancel (30 s before the end), a through does not count
    late = (SLOT + 900) * 1000 - 10_000
    info = _info(ticks=[T0, late], ask_lows_up=[0.52, 0.40], bid_highs_down=[0.48, 0.48],
                 ask_lows_down=[0.5, 0.5], bid_highs_up=[0.5, 0.5])
    assert mq.execute(_row(), info, "Up", 0.50, 10) is None


def test_backtest_names_the_stores_touch_columns() -> None:
    from slotml.backtest.rows import TOUCH_COLUMNS
    from slotml.ingest.schema import TOUCH_COLUMNS as STORE

    assert TOUCH_COLUMNS == STORE


@settings(max_examples=60, deadline=None)
@given(ahead=st.floats(0, 500), more=st.floats(0, 500),
       sizes=st.lists(st.floats(1, 200), min_size=0, max_size=12))
def test_more_queue_ahead_never_fills_more(ahead: float, more: float, sizes: list[float]) -> None:
    prints = [(1000 + 100 * i, "Up", 0.50, s, "SELL") for i, s in enumerate(sizes)]
    info = _info(prints)
    got = [(f.shares if f else 0.0) for f in (
        MakerQueue().execute(_row(bid_size_up=a), info, "Up", 0.50, 10) for a in (ahead, ahead + more))]
    assert 0 <= got[1] <= got[0] <= 10


def test_optimistic_and_rebates_only_from_the_schedule() -> None:
    ticks = [T0 + 30_000, T0 + 60_000]
    info = _info(ticks=ticks, asks_up=[0.55, 0.50], asks_down=[0.5, 0.5])
    f = MakerOptimistic().execute(_row(), info, "Up", 0.50, 10)
    assert f.shares == 10 and f.ms == T0 + 60_000 and f.rebate_per_share == 0.0
    rebate = FeeSchedule(0.07, 1.0, True, rebate_share=0.2)
    f = MakerOptimistic().execute(_row(), _info(fee=rebate, ticks=ticks, asks_up=[0.55, 0.50]),
                                  "Up", 0.50, 10)
    assert f.rebate_per_share == pytest.approx(0.2 * 0.07 * 0.25)


def test_simulate_excludes_gap_windows_and_reports_markouts() -> None:
    cfg = GateConfig(order_size=10, min_order_size=1)
    ticks = [T0 + 1000 + k * 10_000 for k in range(8)]
    info = _info([(1000, "Up", 0.49, 5, "SELL")], up=False, ticks=ticks,
                 asks_up=[0.48] * 8, bids_up=[0.44] * 8, asks_down=[0.5] * 8, bids_down=[0.5] * 8)
    r = simulate([_row()], {_row().key: info}, AlwaysEnter(cfg), make_fill("maker-queue"), "always-enter")
    (e,) = r.entries
    assert e.filled and e.outcome == "Up" and e.price == 0.50 and e.minute == 5
    assert e.pnl == pytest.approx(-10 * 0.50)
    assert e.markout_10s == pytest.approx(0.46 - 0.50) and e.markout_res == pytest.approx(-0.50)
    assert r.markouts_by_minute()[5]["fills"] == 1
    gap = _info([(1000, "Up", 0.49, 5, "SELL")], gap=True)
    r = simulate([_row()], {_row().key: gap}, AlwaysEnter(cfg), make_fill("maker-queue"), "always-enter")
    assert r.entries == [] and r.excluded == {"tape_gap": 1} and r.windows == 0
    # the taker and the optimistic maker do not need the tape
    assert simulate([_row()], {_row().key: gap}, AlwaysEnter(cfg), "taker").n_fills == 1
