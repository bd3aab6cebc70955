"""The trade tape's tables on SQLite and MariaDB: ``slot_trades`` and ``slot_tape_gaps`` are
insert-once on their keys (a replay stores nothing twice, identical prints stay distinct by
their occurrence), bad rows are rejected, and the durable writer carries both through its
spool."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotml.ingest.schema import TAPE_GAPS, TRADES
from slotml.ingest.store import RowRejected, coerce_row, open_store
from tests.ingest import test_store as _fx
from tests.ingest.test_store import SLOT, snap
from tests.ingest.test_writer import ready_store, started

# the store suite's own database (see test_store.py)
any_db = _fx.any_db
mysql_db = _fx.mysql_db
store = _fx.store

UP = "1" * 77  # token ids are long decimal strings
DOWN = "2" * 77
HASH = "0x" + "ab" * 32


def trade(i: int, **kw) -> dict:
    """A print of the Up token, i seconds into the window."""
    row = {"symbol": "BTC", "window_s": 900, "slot_ts": SLOT, "token_id": UP, "outcome": "Up",
           "condition_id": "0x" + "cd" * 32, "price": 0.51, "size": 10.0, "side": "BUY",
           "fee_rate_bps": 0.0, "ts_ms": (SLOT + i) * 1000 + 123, "received_at": SLOT + i + 0.2,
           "tx_hash": HASH[:-4] + f"{i:04x}", "frame_index": 0, "occurrence": 0}
    return {**row, **kw}


async def assert_trades_exactly_in_order(store, idx) -> None:
    """``trade(i)`` for every i of ``idx``, each once, committed in that order."""
    rows = await store.fetch_trades()
    assert [r["ts_ms"] for r in sorted(rows, key=lambda r: r["id"])] == \
        [trade(i)["ts_ms"] for i in idx]


def gap(from_ts: float, to_ts: float, reason: str = "reconnect", token: str = UP) -> dict:
    return {"symbol": "BTC", "window_s": 900, "slot_ts": SLOT, "token_id": token,
            "from_ts": from_ts, "to_ts": to_ts, "reason": reason}


async def test_trades_are_stored_once(store) -> None:
    rows = [trade(i) for i in range(20)]
    assert await store.insert_trades(rows) == 20
    assert await store.insert_trades(rows) == 0  # a replay of the same prints
    assert await store.insert_trades([*rows[3:8], trade(20)]) == 1
    assert await store.count("slot_trades") == 21
    # frame_index is not in the key: a replayed frame split differently is still a duplicate
    assert await store.insert_trades([{**rows[0], "frame_index": 7}]) == 0
    got = await store.fetch_trades(symbol="BTC", window_s=900)
    assert [r["ts_ms"] for r in got] == [trade(i)["ts_ms"] for i in range(21)]


async def test_trade_round_trip_is_exact(store) -> None:
    rows = [trade(0, price=0.001, size=1234.56789, fee_rate_bps=None),
            trade(1, token_id=DOWN, outcome="Down", side="SELL", price=0.999, size=0.01,
                  fee_rate_bps=1000.0, frame_index=3)]
    await store.insert_trades(rows)
    got = await store.fetch_trades()
    for want, have in zip(rows, got, strict=True):
        for k, v in want.items():
            assert have[k] == v and type(have[k]) is type(v), k
        assert isinstance(have["id"], int) and isinstance(have["updated_at"], float)


async def test_identical_prints_are_distinct_by_occurrence(store) -> None:
    first = trade(0)
    assert await store.insert_trades([first, {**first, "occurrence": 1, "frame_index": 1}]) == 2
    assert await store.insert_trades([{**first, "occurrence": 1}]) == 0  # replayed
    assert [r["occurrence"] for r in await store.fetch_trades()] == [0, 1]


async def test_prints_without_hash_and_in_one_transaction_are_distinct(store) -> None:
    # one transaction filling several orders: same hash, another size or price
    same_tx = [trade(0, tx_hash=HASH), trade(0, tx_hash=HASH, size=3.0),
               trade(0, tx_hash=HASH, price=0.52)]
    no_hash = [trade(5, tx_hash=""), trade(5, tx_hash="", size=2.0)]
    assert await store.insert_trades(same_tx + no_hash) == 5
    # a print the venue sent without a hash is stored with '' (None means the same)
    assert await store.insert_trades([trade(5, tx_hash=None), {
        k: v for k, v in trade(5, size=2.0).items() if k != "tx_hash"}]) == 0
    assert await store.insert_trades([trade(6, tx_hash=None)]) == 1
    got = await store.fetch_trades()
    assert [r["tx_hash"] for r in got] == [HASH] * 3 + [""] * 3
    assert await store.count("slot_trades") == 6


@pytest.mark.parametrize(("change", "match"), [
    ({"price": 1.01}, "price"), ({"price": -0.01}, "price"), ({"size": 0.0}, "size"),
    ({"size": -1.0}, "size"), ({"size": float("nan")}, "size is required"),
    ({"side": "buy"}, "side"), ({"outcome": "UP"}, "outcome"), ({"occurrence": None}, "occurrence"),
    ({"occurrence": -1}, "occurrence"), ({"tx_hash": "0x" + "a" * 80}, "tx_hash"),
    ({"ts_ms": "soon"}, "ts_ms"), ({"token_id": None}, "token_id"),
])
def test_bad_trades_are_rejected(change: dict, match: str) -> None:
    with pytest.raises(RowRejected, match=match):
        coerce_row(TRADES, trade(0, **change))


async def test_a_bad_row_stores_nothing(store) -> None:
    with pytest.raises(RowRejected, match="price"):
        await store.insert_trades([trade(0), trade(1, price=2.0)])
    with pytest.raises(RowRejected, match="to_ts"):
        await store.insert_tape_gaps([gap(SLOT + 10.0, SLOT + 5.0)])
    assert await store.count("slot_trades") == 0 and await store.count("slot_tape_gaps") == 0
    # the edges are valid
    assert await store.insert_trades([trade(0, price=0.0), trade(1, price=1.0)]) == 2
    assert await store.insert_tape_gaps([gap(SLOT + 1.0, SLOT + 1.0)]) == 1


async def test_tape_gaps_are_stored_once_on_their_key(store) -> None:
    g = gap(SLOT + 100.5, SLOT + 103.25)
    assert await store.insert_tape_gaps([g, gap(SLOT - 5.0, SLOT, "start")]) == 2
    assert await store.insert_tape_gaps([g, {**g, "to_ts": SLOT + 200.0}]) == 0  # same key
    assert await store.insert_tape_gaps([{**g, "reason": "spool-full"}, {**g, "token_id": DOWN}]) == 2
    got = await store.fetch_tape_gaps(symbol="BTC")
    assert [(r["from_ts"], r["reason"], r["token_id"]) for r in got] == [
        (SLOT - 5.0, "start", UP), (SLOT + 100.5, "reconnect", UP),
        (SLOT + 100.5, "spool-full", UP), (SLOT + 100.5, "reconnect", DOWN)]
    assert got[1]["to_ts"] == SLOT + 103.25
    with pytest.raises(RowRejected, match="reason"):
        await store.insert_tape_gaps([gap(SLOT, SLOT + 1, "x" * 17)])


async def test_writer_routes_every_table_in_order(any_db, tmp_path: Path) -> None:
    s = await ready_store(any_db)
    w = await started(s, tmp_path / "spool", batch_max=7)
    for i in range(40):
        w.put_trade(trade(i))
        if i % 10 == 0:
            w.put_snapshot(snap(i))
            w.put_tape_gap(gap(SLOT + i, SLOT + i + 0.5))
            w.put_resolution({"symbol": "BTC", "window_s": 900, "slot_ts": SLOT + 900 * i})
    w.put_trade(trade(0, price=7.0))  # rejected, counted, never stored
    assert await w.flush(20)
    st = w.stats()
    assert st["rows_written"] == 52 and st["rows_rejected"] == 1 and st["queue_depth"] == 0
    assert w.metrics.get("trades_stored") == 40 and w.metrics.get("trades_rejected") == 1
    trades = await s.fetch_trades()
    assert [r["ts_ms"] for r in sorted(trades, key=lambda r: r["id"])] == [
        trade(i)["ts_ms"] for i in range(40)]
    assert await s.count("slot_tape_gaps") == 4 and await s.count("slot_snapshots") == 4
    assert await s.count("slot_resolutions") == 4
    await w.close()
    await s.close()


async def test_a_spool_replay_stores_nothing_twice(any_db, tmp_path: Path) -> None:
    """A kill between the commit and the ack: the next start replays rows the database
    already has; the keys make that a no-op, and the rows after them still arrive."""
    spool = tmp_path / "spool"
    down = open_store(any_db)  # never connected: every row stays spooled
    w1 = await started(down, spool)
    rows = [trade(i) for i in range(30)] + [{**trade(29), "occurrence": 1}]
    for r in rows:
        w1.put_trade(r)
    w1.put_tape_gap(gap(SLOT + 1.0, SLOT + 2.0))
    await w1.close(timeout=0.2)
    s = await ready_store(any_db)
    # what the killed run had committed before it could record the ack
    assert await s.insert_trades(rows[:20]) == 20
    assert await s.insert_tape_gaps([gap(SLOT + 1.0, SLOT + 2.0)]) == 1
    w2 = await started(s, spool)
    assert w2.stats()["replayed"] == 32
    w2.put_trade(trade(40))
    assert await w2.flush(20)
    assert await s.count("slot_trades") == 32 and await s.count("slot_tape_gaps") == 1
    got = await s.fetch_trades()
    assert [(r["ts_ms"], r["occurrence"]) for r in got] == [
        *((trade(i)["ts_ms"], 0) for i in range(30)), (trade(29)["ts_ms"], 1),
        (trade(40)["ts_ms"], 0)]
    await w2.close()
    await s.close()


def test_tape_tables_carry_the_window_keys() -> None:
    """Per-window reads, the lake's partitions and the backtest join need these."""
    for t in (TRADES, TAPE_GAPS):
        assert {"id", "symbol", "window_s", "slot_ts", "updated_at"} <= set(t.names)
        assert ("symbol", "slot_ts") in t.indexes and ("updated_at",) in t.indexes


def print_of(i: int) -> dict:
    """The i-th print of a two-token stream: Up and Down alternate, one second apart."""
    return trade(i) if i % 2 == 0 else trade(i, token_id=DOWN, outcome="Down")


async def test_prints_dropped_by_a_full_spool_become_spool_full_gaps(any_db, tmp_path: Path
                                                                      ) -> None:
    down = open_store(any_db)  # not connected: the database is down, the spool fills
    w = await started(down, tmp_path / "spool", spool_max_mb=64 / 1024, queue_max=10)
    n = 600
    pushed = [print_of(i) for i in range(n)]
    for row in pushed:
        w.put_trade(row)
    st = w.stats()
    assert st["rows_dropped"] > 0 and st["tape_gaps"] > 0
    assert w.metrics.get("tape_gaps", reason="spool-full") == st["tape_gaps"]
    await down.connect()
    await down.ensure_schema()
    assert await w.flush(20)
    # the oldest prints were dropped, every newer one arrived: stored + dropped = all pushed
    stored = sorted(await down.fetch_trades(), key=lambda r: r["id"])
    k = n - len(stored)
    assert 0 < k < n
    assert [r["ts_ms"] for r in stored] == [r["ts_ms"] for r in pushed[k:]]
    dropped = pushed[:k]
    # the writer's counts: every print pushed is stored or dropped, none twice
    assert w.metrics.get("trades_stored") == len(stored)
    assert w.metrics.get("trades_dropped") == k and w.metrics.get("trades_rejected") == 0
    gaps = await down.fetch_tape_gaps()
    assert gaps and {g["reason"] for g in gaps} == {"spool-full"}
    for token in (UP, DOWN):
        mine = [g for g in gaps if g["token_id"] == token]
        lost = [r["received_at"] for r in dropped if r["token_id"] == token]
        kept = [r["received_at"] for r in stored if r["token_id"] == token]
        assert lost and kept and mine
        assert all((g["symbol"], g["window_s"], g["slot_ts"]) == ("BTC", 900, SLOT) for g in mine)
        # the gaps cover exactly the dropped prints' receipt times: every one, nothing newer
        assert min(g["from_ts"] for g in mine) == min(lost)
        assert max(g["to_ts"] for g in mine) == max(lost)
        assert all(any(g["from_ts"] <= t <= g["to_ts"] for g in mine) for t in lost)
        assert all(t > g["to_ts"] for t in kept for g in mine)
    await w.close()
    await down.close()


async def test_no_drop_no_spool_full_gap(any_db, tmp_path: Path) -> None:
    down = open_store(any_db)
    w = await started(down, tmp_path / "spool", spool_max_mb=1.0)
    for i in range(300):  # an outage the spool absorbs
        w.put_trade(print_of(i))
    await down.connect()
    await down.ensure_schema()
    assert await w.flush(20)
    st = w.stats()
    assert st["rows_dropped"] == 0 and st["tape_gaps"] == 0
    assert await down.count("slot_trades") == 300 and await down.count("slot_tape_gaps") == 0
    await w.close()
    await down.close()


def test_a_partly_acknowledged_segment_summarises_only_its_dropped_prints(tmp_path: Path
                                                                           ) -> None:
    """The oldest segment of an outage was partly committed before the database went down:
    the drop's summary covers only the rows above the ack (the segment is re-read once)."""
    from slotml.ingest.store.spool import Spool
    from slotml.ingest.store.writer import _tally

    sp = Spool(tmp_path / "spool", 8 * 1024, segment_bytes=4 * 1024, summarize=_tally)
    sp.open()
    seqs = [sp.append("t", print_of(i)) for i in range(4)]
    sp.ack(seqs[1])  # prints 0 and 1 are in the database
    i = 4
    while not sp.drops:
        sp.append("t", print_of(i))
        i += 1
    (drop,) = sp.take_drops()
    assert drop.lo == seqs[2] and drop.rows == drop.hi - drop.lo + 1
    lost = [print_of(q - 1) for q in range(drop.lo, drop.hi + 1)]  # seq q holds print q - 1
    assert len(lost) >= 4  # the segment held more than the two unacknowledged prints
    for token in (UP, DOWN):
        times = [r["received_at"] for r in lost if r["token_id"] == token]
        assert drop.summary[token] == [min(times), max(times), "BTC", 900, SLOT]
    sp.close()
