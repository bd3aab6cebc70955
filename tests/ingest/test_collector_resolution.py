"""Resolution bookkeeping with the real store and writer: out-of-order prev, disagreements."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from slotml.ingest.collector import Collector
from slotml.ingest.config import CollectorConfig
from slotml.ingest.feeds.gamma import MarketInfo
from slotml.ingest.store import open_store
from slotml.ingest.store.writer import DurableWriter, close_writer
from slotml.ingest.window import Window
from slotml.settings import CommonSettings, DbUrl


def info(slot: int, **kw) -> MarketInfo:
    base = dict(symbol="BTC", family="5s", window_s=5, slot_ts=slot, end_ts=slot + 5,
                slug=f"btc-updown-5s-{slot}", condition_id=f"0x{slot:x}",
                up_token_id=f"u{slot}", down_token_id=f"d{slot}", settlement="twap60",
                slug_ts=slot)
    base.update(kw)
    return MarketInfo(**base)


async def make(tmp_path: Path):
    db = DbUrl(scheme="sqlite", path=tmp_path / "s.db")
    cfg = CollectorConfig(common=CommonSettings(data_dir=tmp_path, db=db), family="5s",
                          symbols=("BTC",), health_port=0)
    store = open_store(db)
    await store.connect()
    await store.ensure_schema()
    writer = DurableWriter(store, cfg.common.spool_dir)
    await writer.start()
    return Collector(cfg, store, writer), store, writer


async def test_windows_resolving_out_of_order_fill_prev(tmp_path: Path) -> None:
    c, store, writer = await make(tmp_path)
    try:
        wins = [Window(info(1000 + 5 * k)) for k in range(3)]
        for w in wins:
            writer.put_resolution(w.info.resolution_row())
            c._track(w)
        c._apply_gamma(wins[2], info(1010, resolved_up=True), now=2000.0)  # k+2 first
        c._apply_gamma(wins[1], info(1005, resolved_up=False), now=2001.0)  # then k+1
        c._apply_gamma(wins[1], info(1005, resolved_up=True), now=2002.0)  # never re-decided
        assert await writer.flush(10)
        rows = {r["slot_ts"]: r for r in await store.fetch_resolutions()}
        assert rows[1010]["prev_resolved_up"] is False and rows[1010]["resolved_up"] is True
        assert rows[1005]["resolved_up"] is False and rows[1005]["resolved_at"] == 2001.0
        assert rows[1005]["prev_resolved_up"] is None  # window k not resolved yet
        c._apply_gamma(wins[0], info(1000, resolved_up=True), now=2003.0)  # k last
        assert await writer.flush(10)
        rows = {r["slot_ts"]: r for r in await store.fetch_resolutions()}
        assert rows[1005]["prev_resolved_up"] is True
        assert c.metrics.get("disagreements") == 0
    finally:
        await close_writer(writer)
        await store.close()


async def test_disagreements_are_counted_once_per_kind(tmp_path: Path) -> None:
    c, store, writer = await make(tmp_path)
    try:
        w = Window(info(1000), price_to_beat=100.0, final_price=99.0)  # measured: Down
        c._track(w)
        g = info(1000, resolved_up=True, official_price_to_beat=100.5,
                 official_final_price=101.0)
        for _ in range(3):
            c._apply_gamma(w, g, now=2000.0)
            w.clob_winner, w.ws_winner = False, False
            c._cross_check(w)
        by = c.metrics.by_label("disagreements", "kind")
        assert by == {"measured_outcome": 1, "price_to_beat": 1, "final_price": 1,
                      "clob_winner": 1, "ws_market_resolved": 1}
        tie = Window(info(1005), price_to_beat=100.0, final_price=100.0)  # a tie resolves Up
        c._track(tie)
        c._apply_gamma(tie, info(1005, resolved_up=True), now=2001.0)
        assert c.metrics.get("disagreements", kind="measured_outcome") == 1
    finally:
        await close_writer(writer)
        await store.close()


async def test_resume_reads_back_unfinished_windows(tmp_path: Path) -> None:
    import time

    c, store, writer = await make(tmp_path)
    now = int(time.time()) // 5 * 5
    try:
        done = info(now - 20)
        open_ = info(now - 10)
        live = info(now)
        old = info(now - 5000)
        for i in (done, open_, live, old):
            writer.put_resolution(i.resolution_row())
        writer.put_resolution({"symbol": "BTC", "window_s": 5, "slot_ts": done.slot_ts,
                               "resolved_up": True, "official_price_to_beat": 1.0,
                               "official_final_price": 2.0})
        writer.put_resolution({"symbol": "BTC", "window_s": 5, "slot_ts": open_.slot_ts,
                               "price_to_beat": 42.0})
        assert await writer.flush(10)
        c2 = Collector(dataclasses.replace(c.cfg, retry_limit=600), store, writer)
        await c2.resume()
        assert set(c2.windows) == {("BTC", 5, open_.slot_ts), ("BTC", 5, live.slot_ts)}
        assert c2.windows[("BTC", 5, open_.slot_ts)].price_to_beat == 42.0
        assert c2.outcomes[("BTC", 5, done.slot_ts)] is True
        assert c2.clob.tokens == {live.up_token_id, live.down_token_id}  # only unended ones
        assert c2.metrics.get("windows_resumed") == 2
    finally:
        await close_writer(writer)
        await store.close()
