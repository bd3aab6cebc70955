"""``slotml collect``: the collector daemon (discovery, snapshot and resolution loops).

Three independent asyncio loops share in-memory state (windows, books, prices) and write only
through the ``DurableWriter`` (spool first, so a dead database or a SIGKILL loses nothing):

* discovery (``--discovery-interval``): look up the slugs of the window in progress and the
  next few on Gamma, record each new window in ``slot_resolutions`` and subscribe its tokens;
* snapshot (``--snapshot-interval``, on a clock grid shared by all assets): one row per window
  in progress via ``ingest.snapshot.make_snapshot`` (the one snapshot function);
* resolution (``--resolution-interval``): measured final price, then Gamma until resolved with
  both official prices, or the retry limit passes; cross-checks counted.

``price_to_beat`` is the settlement-series observation stamped exactly at the window start. If
that exact second never arrives (the collector started later than the relay's backfill covers,
or the relay skipped it), it stays NULL and so do the window's moves: rows are never revised
and a neighbouring second is not the venue's strike. It is counted (``price_to_beat_missing``).
Data older than ``--stale-after`` is never written as fresh: the columns are NULL and counted.

Around 670 lines on purpose (resume from store, spool and Gamma; several families in one
process since issue 23): one class, because the three loops share its window maps
(``windows``, ``by_token``, ``by_condition``, ``outcomes``). What does not need them lives
elsewhere: the feeds come from ``feeds.factory``, a window's row from ``window``, the
``/health`` and ``/metrics`` bodies from ``health``.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from slotml import venue
from slotml.errors import UserError
from slotml.ingest.config import CollectorConfig
from slotml.ingest.feeds.factory import build_feeds
from slotml.ingest.feeds.gamma import (
    MarketInfo,
    candidate_starts,
    clob_winner,
    parse_market,
)
from slotml.ingest.health import HealthServer, health_status, metrics_text
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import PriceSource
from slotml.ingest.snapshot import grid_tick_ms
from slotml.ingest.store.base import merge_resolutions
from slotml.ingest.tape_feed import window_keys
from slotml.ingest.window import (
    Window,
    build_row,
    capture,
    fill_bases,
    final_lookup,
    info_from_row,
    settle_at,
    settle_series,
)
from slotml.ingest.wire import ParseError

log = logging.getLogger(__name__)

PRICE_TOL = 1e-9  # relative: official prices are the same observations rounded to double


class Collector:
    """The daemon. ``run()`` until ``stop()``; every loop iteration is isolated (a bug or a
    venue surprise in one round is counted and logged, never fatal)."""

    def __init__(self, cfg: CollectorConfig, store: Any, writer: Any,
                 prices: PriceSource | None = None, clock: Callable[[], float] = time.time,
                 raw: Any = None) -> None:
        self.cfg = cfg
        self.store = store
        self.writer = writer
        self.clock = clock
        self.raw = raw
        # one set of counters: the durable writer counts its spool-full tape gaps in it too
        m = getattr(writer, "metrics", None)
        self.metrics = m if isinstance(m, Metrics) else Metrics()
        feeds = build_feeds(cfg, self.metrics, on_resolved=self._on_ws_resolved,
                            on_raw=raw.write if raw is not None else None, prices=prices,
                            writer=writer)
        self.books = feeds.books
        self.clob = feeds.clob
        self.clob.keep = self._token_still_live
        self.prices: PriceSource = feeds.prices
        self.http = feeds.http
        # every map is keyed (symbol, window_s, slot_ts): one process collects several families
        self.windows: dict[tuple[str, int, int], Window] = {}
        self.by_token: dict[str, tuple[str, int, int]] = {}
        self.by_condition: dict[str, tuple[str, int, int]] = {}
        self.outcomes: dict[tuple[str, int, int], bool] = {}  # resolved_up by key
        self.family_of = {cfg.length(f): f for f in cfg.fams}  # window_s -> family
        self.scale = cfg.time_scale
        self.clob.window_of = partial(window_keys, self.windows, self.by_token)  # the tape's
        self.known_keys: set[tuple[str, int, int]] = set()  # rows known to exist in the store
        self.uncarried: set[str] = set()  # settlement series markets named that we cannot get
        self.last_tick_ms: int | None = None
        self.last_capture_spread: float | None = None  # duration of the last read pass, s
        self.pass_times: collections.deque[float] = collections.deque(maxlen=1000)
        self.started_at = clock()
        self.health: HealthServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    # ---------------------------------------------------------------- life cycle
    async def run(self) -> None:
        await self.http.start()
        try:
            await self.resume()
            self.clob.start()
            self.prices.start()
            await self._check_polybolt_auth()
            if self.cfg.health_port:
                self.health = HealthServer(self.cfg.health_port, partial(health_status, self),
                                           partial(metrics_text, self))
                try:
                    await self.health.start()
                except OSError as e:  # collecting matters more than the endpoint
                    self.metrics.inc("health_port_errors")
                    log.error("health endpoint on 127.0.0.1:%d unavailable (%s); collecting "
                              "without it", self.cfg.health_port, e)
                    self.health = None
            self._tasks = [
                asyncio.create_task(self._loop("discovery", self.cfg.discovery_interval,
                                               self.discover_once), name="discovery"),
                *(asyncio.create_task(self._snapshot_loop(f), name=f"snapshot-{f}")
                  for f in self.cfg.fams),
                asyncio.create_task(self._loop("resolution", self.cfg.resolution_interval,
                                               self.resolve_once), name="resolution"),
            ]
            self._ready.set()
            log.info("collector running: families %s, symbols %s", ",".join(self.cfg.fams),
                     ",".join(self.cfg.symbols))
            await self._stop.wait()
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            await self.clob.stop()
            await self.prices.stop()
            if self.health is not None:
                await self.health.stop()
            await self.http.close()
            if self.raw is not None:
                self.raw.close()

    def stop(self) -> None:
        self._stop.set()

    async def _check_polybolt_auth(self) -> None:
        """``--price-source polybolt``: credentials PolyBolt refuses at start-up end the run
        with one line (waiting will not fix them). Unreachable: collect, it keeps trying."""
        first_auth = getattr(self.prices, "first_auth", None)
        if self.cfg.price_source != "polybolt" or first_auth is None:
            return
        if await first_auth(max(10.0, 2 * self.cfg.http_timeout)) is False:
            raise UserError("PolyBolt refused the credentials (4001 auth): check the key, "
                            "secret and passphrase (--polybolt-credentials or "
                            "SLOTML_POLYBOLT_KEY/_SECRET/_PASSPHRASE)")

    async def _loop(self, name: str, interval: float, once: Callable) -> None:
        while True:
            t0 = time.monotonic()
            try:
                await once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad round must not end the daemon
                self.metrics.inc("loop_errors", loop=name)
                log.exception("%s round failed", name)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))

    # ---------------------------------------------------------------- restart
    async def resume(self) -> None:
        """Pick up windows in progress and unresolved ones younger than the retry limit: those
        the store knows and those only the spool knows (discovered, then not yet committed:
        an outage, a SIGKILL). When the store cannot be read (down at start-up), the windows
        that ended within the retry limit and are not tracked are asked of Gamma again, so
        the ones only the store knew are resolved too."""
        now = self.clock()
        since = {w: int(now - self.cfg.retry_limit - 2 * w) for w in self.family_of}
        store_ok = True
        rows = []
        try:
            for w, t in since.items():
                rows += await self.store.fetch_resolutions(window_s=w, slot_ts_min=t)
        except Exception as e:  # noqa: BLE001 - collect anyway; discovery refills the rest
            self.metrics.inc("resume_errors")
            log.error("could not read windows back from the store (%s): resuming from the "
                      "spool, asking Gamma for the rest", e)
            rows, store_ok = [], False
        spooled = [r for r in self._spooled_resolutions()
                   if r.get("window_s") in since and int(r["slot_ts"]) >= since[r["window_s"]]]
        rows = merge_resolutions([*rows, *spooled])  # the store's known values first
        resumed = 0
        for row in sorted(rows, key=lambda r: r["slot_ts"]):
            if row["symbol"] not in self.cfg.symbols:
                continue
            key = (row["symbol"], int(row["window_s"]), int(row["slot_ts"]))
            if row.get("resolved_up") is not None:
                self.outcomes[key] = bool(row["resolved_up"])
            info = info_from_row(row, self.family_of[int(row["window_s"])])
            if info is None:  # a partial row (the spool's later columns, the store unread):
                continue  # not "known", so discovery (or Gamma, once ended) registers it
            self.known_keys.add(key)
            complete = (row.get("resolved_up") is not None
                        and row.get("official_price_to_beat") is not None
                        and row.get("official_final_price") is not None)
            if complete or info.end_ts + self.cfg.retry_limit < now:
                continue
            win = Window(info, price_to_beat=row.get("price_to_beat"),
                         spot_price_to_beat=row.get("spot_price_to_beat"),
                         final_price=row.get("final_price"),
                         final_seen_at=row.get("final_seen_at"),
                         resolved_up=row.get("resolved_up"), resolved_at=row.get("resolved_at"),
                         official_ptb=row.get("official_price_to_beat"),
                         official_final=row.get("official_final_price"),
                         prev_resolved_up=row.get("prev_resolved_up"),
                         spot_source=row.get("spot_source"))
            self._track(win)
            resumed += 1
        if resumed:
            self.metrics.inc("windows_resumed", resumed)
            log.info("resumed %d windows from the store and the spool (%d from the spool)",
                     resumed, len(spooled))
        if not store_ok:
            await self._reask_ended(now)

    def _spooled_resolutions(self) -> list[dict[str, Any]]:
        get = getattr(self.writer, "spooled_resolutions", None)
        return get() if get is not None else []

    async def _reask_ended(self, now: float) -> None:
        """The store is unreadable: ask Gamma for the windows that ended within the retry
        limit and are not tracked, so none the store alone knew goes unresolved (a window
        the store had complete is only resolved again: the upserts change nothing)."""
        todo = []
        for fam in self.cfg.fams:
            w, k = self.cfg.length(fam), self.scale
            ts = venue.window_start(now - self.cfg.retry_limit, fam, k)
            while venue.window_end(ts, fam, k) <= now:
                todo += [(sym, fam, ts) for sym in self.cfg.symbols
                         if (sym, w, ts) not in self.windows]
                ts = venue.window_end(ts, fam, k)
        sem = asyncio.Semaphore(8)

        async def one(sym: str, fam: str, ts: int) -> None:
            async with sem:
                try:
                    await self._discover(sym, ts, ended_ok=True, family=fam)
                except Exception:  # noqa: BLE001 - one window must not stop the start-up
                    log.exception("re-asking Gamma for %s %s %d failed", sym, fam, ts)

        await asyncio.gather(*(one(s, f, t) for s, f, t in todo))
        if todo:
            self.metrics.inc("windows_reasked", len(todo))

    def resolutions_lost(self, rows: list[dict[str, Any]]) -> None:
        """The writer's full spool dropped these resolution rows: put again what this process
        still knows of each window (registration from Gamma's metadata, measured values)."""
        for row in rows:
            win = self.windows.get((row.get("symbol"), row.get("window_s"), row.get("slot_ts")))
            if win is None:
                continue
            again = win.info.resolution_row()
            for col, val in (("price_to_beat", win.price_to_beat),
                             ("spot_price_to_beat", win.spot_price_to_beat),
                             ("final_price", win.final_price),
                             ("final_seen_at", win.final_seen_at),
                             ("resolved_up", win.resolved_up), ("resolved_at", win.resolved_at),
                             ("official_price_to_beat", win.official_ptb),
                             ("official_final_price", win.official_final),
                             ("prev_resolved_up", win.prev_resolved_up),
                             ("spot_source", win.spot_source)):
                if val is not None:
                    again[col] = val
            self.metrics.inc("resolutions_reput")
            # later, not now: the writer is in the middle of accounting a drop
            asyncio.get_running_loop().call_soon(self.writer.put_resolution, again)

    def _track(self, win: Window) -> None:
        self.windows[win.key] = win
        self.known_keys.add(win.key)
        self.by_token[win.info.up_token_id] = win.key
        self.by_token[win.info.down_token_id] = win.key
        if win.info.condition_id:
            self.by_condition[win.info.condition_id] = win.key
        if win.info.end_ts > self.clock() and not win.done:
            self.clob.add_tokens([win.info.up_token_id, win.info.down_token_id])

    def _untrack(self, win: Window) -> None:
        self.windows.pop(win.key, None)
        toks = [win.info.up_token_id, win.info.down_token_id]
        for t in toks:
            self.by_token.pop(t, None)
        self.by_condition.pop(win.info.condition_id, None)
        self.clob.remove_tokens(toks)

    def _token_still_live(self, token: str) -> bool:
        key = self.by_token.get(token)
        win = self.windows.get(key) if key else None
        return win is not None and win.info.end_ts > self.clock()

    # ---------------------------------------------------------------- discovery
    async def discover_once(self) -> None:
        now = self.clock()
        todo = []
        for fam in self.cfg.fams:  # each family on its own grid
            w = self.cfg.length(fam)
            starts = candidate_starts(now, fam, self.cfg.lookahead_of(fam), self.scale)
            todo += [(sym, fam, ts) for sym in self.cfg.symbols for ts in starts
                     if (sym, w, ts) not in self.windows and (sym, w, ts) not in self.known_keys]
        sem = asyncio.Semaphore(8)

        async def one(sym: str, fam: str, ts: int) -> None:
            async with sem:
                await self._discover(sym, ts, family=fam)

        await asyncio.gather(*(one(s, f, t) for s, f, t in todo))

    async def _discover(self, symbol: str, start: int, ended_ok: bool = False,
                        family: str | None = None) -> None:
        fam = family or self.cfg.family
        # an hourly or daily window before 2026-04-17 may be spelled without the year
        cands = (venue.slugs(symbol, fam, start) if self.scale == 1
                 else [venue.slug(symbol, fam, start, scale=self.scale)])
        body = None
        for slug in cands:
            body = await self.http.get_json(f"{self.cfg.gamma_url}/events/slug/{slug}", "gamma")
            if body is not None:
                break
        if body is None:
            return  # not listed yet (or Gamma down: next round)
        try:
            info = parse_market(body, fam, self.cfg.length(fam), self.scale)
        except ParseError as e:
            self.metrics.inc("metadata_rejected", reason=e.reason)
            log.warning("gamma %s: unusable metadata (%s)", slug, e)
            return
        if info.slug != slug or info.symbol != symbol or info.family != fam:
            self.metrics.inc("metadata_rejected", reason="slug_mismatch")
            return
        if info.slug_ts != info.slot_ts:
            self.metrics.inc("metadata_anomalies", kind="slug_start_mismatch")
        if info.end_ts != venue.window_end(info.slot_ts, fam, self.scale):
            self.metrics.inc("metadata_anomalies", kind="window_length")
        if info.end_ts <= self.clock() and not ended_ok:
            return  # already over: nothing to snapshot (its row, if any, came from a past run)
        if info.settlement_conflict:  # the description's rule is kept (docs/venue.md §4)
            self.metrics.inc("settlement_conflict", symbol=info.symbol)
        series = settle_series(info.settlement)
        if info.settlement == "unknown":  # collected, but no price_to_beat and no moves
            self.metrics.inc("settlement_unknown", symbol=info.symbol)
        elif series is None and info.settlement not in self.uncarried:
            self.uncarried.add(info.settlement)  # e.g. a Binance candle rule: no source yet
            self.metrics.inc("settlement_not_carried", series=info.settlement)
            log.warning("%s settles on %s, which no price source here carries: its settlement "
                        "prices and moves stay NULL", info.slug, info.settlement)
        elif series is not None and not self.prices.carries(series) and series not in self.uncarried:
            self.uncarried.add(series)  # /health warns too
            self.metrics.inc("settlement_not_carried", series=series)
            log.warning("%s settles on %s, which --price-source %s does not carry: its "
                        "settlement prices and moves stay NULL", info.slug, series,
                        self.cfg.price_source)
        win = Window(info)
        if win.key in self.windows:
            return
        prev = venue.window_start(info.slot_ts - 1, fam, self.scale)  # 4h, 1d: 3-25 h before
        win.prev_resolved_up = self.outcomes.get((info.symbol, info.window_s, prev))
        row = info.resolution_row()
        if win.prev_resolved_up is not None:
            row["prev_resolved_up"] = win.prev_resolved_up
        self.writer.put_resolution(row)
        self._track(win)
        self.metrics.inc("windows_discovered", symbol=info.symbol)
        log.info("discovered %s (%s, ends %d, settles on %s)", info.slug, info.condition_id[:12],
                 info.end_ts, info.settlement)

    # ---------------------------------------------------------------- snapshots
    async def _snapshot_loop(self, family: str | None = None) -> None:
        """One family's ticks, on its own clock grid (``CollectorConfig.cadence``)."""
        fam = family or self.cfg.family
        interval = self.cfg.cadence(fam)
        step_ms = round(interval * 1000)
        only = self.cfg.length(fam) if len(self.cfg.fams) > 1 else None
        while True:
            next_ms = grid_tick_ms(self.clock(), interval) + step_ms
            delay = next_ms / 1000.0 - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                self.snapshot_tick(next_ms, only)
            except Exception:  # noqa: BLE001
                self.metrics.inc("loop_errors", loop="snapshot")
                log.exception("snapshot tick failed")

    def _fill_bases(self, win: Window) -> None:
        changed = fill_bases(win, self.prices, self.clock())
        if changed:
            self.writer.put_resolution(win.keycols() | changed)

    def snapshot_tick(self, tick_ms: int, window_s: int | None = None) -> int:
        """One row per window in progress at ``tick_ms`` (of one family: ``window_s``).
        Returns rows written."""
        captured_at = self.clock()
        tick_s = tick_ms / 1000.0
        clob_fresh = (self.clob.connected and self.clob.last_data_at is not None
                      and captured_at - self.clob.last_data_at <= self.cfg.stale_after)
        active = [w for w in self.windows.values()
                  if w.info.slot_ts <= tick_s < w.info.end_ts
                  and (window_s is None or w.info.window_s == window_s)]
        for win in active:
            self._fill_bases(win)
            if win.price_to_beat is None and not win.ptb_missing_counted \
                    and tick_s - win.info.slot_ts > self.cfg.stale_after:
                win.ptb_missing_counted = True
                self.metrics.inc("price_to_beat_missing", symbol=win.info.symbol)
        # Read every window's state in one synchronous pass (no frame can be applied in
        # between, so all rows of a tick see one state), then build and spool the rows.
        gc_was = gc.isenabled()
        gc.disable()  # a collection mid-pass would stretch it by tens of ms
        try:
            t_read = self.clock()
            caps = [capture(w, t_read, self.books, self.prices, clob_fresh,
                            self.cfg.stale_after, self.metrics) for w in active]
            pass_s = self.clock() - t_read
        finally:
            if gc_was:
                gc.enable()
        if caps:
            self.pass_times.append(pass_s)
        for cap in caps:
            self.writer.put_snapshot(build_row(cap, tick_ms, self.metrics))
        n = len(caps)
        if self.raw is not None and n:
            times = {f"{c.win.info.symbol}:{c.win.info.slot_ts}": c.at for c in caps}
            mark: dict[str, Any] = {"tick_ms": tick_ms, "captured": times}
            if window_s is not None:  # one family's tick of several (rederive picks its own)
                mark["window_s"] = window_s
            self.raw.write("tick", json.dumps(mark), captured_at)
        self.last_tick_ms = tick_ms
        self.last_capture_spread = pass_s if caps else None
        self.metrics.inc("snapshots_written", n)
        return n

    # ---------------------------------------------------------------- resolution
    def _on_ws_resolved(self, condition_id: str, winning_asset_id: str, _ev: dict) -> None:
        key = self.by_condition.get(condition_id)
        win = self.windows.get(key) if key else None
        if win is None:
            return
        if winning_asset_id == win.info.up_token_id:
            win.ws_winner = True
        elif winning_asset_id == win.info.down_token_id:
            win.ws_winner = False
        else:
            self.metrics.inc("metadata_anomalies", kind="ws_winner_unknown_token")
        self._cross_check(win)

    async def resolve_once(self) -> None:
        now = self.clock()
        ended = [w for w in self.windows.values() if w.info.end_ts <= now and not w.done]
        sem = asyncio.Semaphore(8)

        async def one(win: Window) -> None:
            async with sem:
                await self._resolve(win)

        await asyncio.gather(*(one(w) for w in ended))
        self._prune_keys(now)

    def _prune_keys(self, now: float) -> None:
        """Forget the keys of windows past any use, so a daemon running for weeks stays flat
        (``known_keys`` and ``outcomes`` gained an entry per window, forever). The horizon is
        ``resume``'s: what a restart reads back (``slot_ts`` >= now - retry limit - 2 windows).
        Older keys are no discovery candidate (discovery looks at windows in progress and
        ahead), no window still to be discovered is their next one (it ended a retry limit
        ago), and a key stays while it or the window before it is tracked (its resolution
        may still fill this one's ``prev_resolved_up``)."""
        ends = {(w.info.symbol, w.info.window_s, w.info.end_ts) for w in self.windows.values()}
        since = {w: now - self.cfg.retry_limit - 2 * w for w in self.family_of}

        def old(key: tuple[str, int, int]) -> bool:
            return (key[2] < since.get(key[1], key[2]) and key not in self.windows
                    and key not in ends)

        gone = [k for k in self.known_keys if old(k)]
        self.known_keys.difference_update(gone)
        for k in [k for k in self.outcomes if old(k)]:
            del self.outcomes[k]

    async def _resolve(self, win: Window) -> None:
        info = win.info
        # ended: keep the subscription (market_resolved), drop the books (idempotent)
        self.books.retire([info.up_token_id, info.down_token_id])
        self._fill_bases(win)
        if win.final_price is None:
            where = final_lookup(info.settlement, info.slot_ts, info.end_ts)
            o = settle_at(self.prices, info.symbol, *where) if where else None
            if o is not None:
                win.final_price, win.final_seen_at = o.value, o.recv_ts
                self.writer.put_resolution(win.keycols() | {"final_price": o.value,
                                                            "final_seen_at": o.recv_ts})
        body = await self.http.get_json(f"{self.cfg.gamma_url}/events/slug/{info.slug}", "gamma")
        now = self.clock()
        if body is not None:
            try:
                g = parse_market(body, info.family, info.window_s, self.scale)
            except ParseError as e:
                self.metrics.inc("metadata_rejected", reason=e.reason)
                g = None
            if g is not None:
                self._apply_gamma(win, g, now)
        if win.resolved_up is not None and win.clob_winner is None and info.condition_id:
            cm = await self.http.get_json(f"{self.cfg.clob_url}/markets/{info.condition_id}",
                                          "clob")
            if cm is not None:
                try:
                    win.clob_winner = clob_winner(cm)
                except ParseError as e:
                    self.metrics.inc("metadata_rejected", reason=e.reason)
        self._cross_check(win)
        if win.resolved_up is not None and win.official_ptb is not None \
                and win.official_final is not None:
            win.done = True
            self.metrics.inc("windows_resolved", symbol=info.symbol)
        elif now - info.end_ts > self.cfg.retry_limit:
            win.done = True
            self.metrics.inc("resolution_gave_up", symbol=info.symbol)
            log.warning("%s: gave up after %.0f s (resolved_up=%s, official prices %s/%s)",
                        info.slug, now - info.end_ts, win.resolved_up, win.official_ptb,
                        win.official_final)
        if win.done:
            self._untrack(win)

    def _apply_gamma(self, win: Window, g: MarketInfo, now: float) -> None:
        changed: dict[str, Any] = {}
        if g.split and "split" not in win.checked:
            win.checked.add("split")
            self.metrics.inc("resolution_split", symbol=g.symbol)
        if g.resolved_up is not None and win.resolved_up is None:
            win.resolved_up, win.resolved_at = g.resolved_up, now
            changed |= {"resolved_up": g.resolved_up, "resolved_at": now}
            log.info("%s resolved %s", g.slug, "Up" if g.resolved_up else "Down")
            self._propagate_prev(win)
        if g.official_price_to_beat is not None and win.official_ptb is None:
            win.official_ptb = changed["official_price_to_beat"] = g.official_price_to_beat
        if g.official_final_price is not None and win.official_final is None:
            win.official_final = changed["official_final_price"] = g.official_final_price
        if changed:
            self.writer.put_resolution(win.keycols() | changed)

    def _propagate_prev(self, win: Window) -> None:
        """Window k resolved: it is window k+1's prev (windows resolve out of order)."""
        info = win.info
        self.outcomes[win.key] = bool(win.resolved_up)
        nxt = (info.symbol, info.window_s, info.end_ts)  # the next starts where this one ends
        nwin = self.windows.get(nxt)
        if nwin is not None:
            nwin.prev_resolved_up = win.resolved_up
        if nwin is not None or nxt in self.known_keys:
            self.writer.put_resolution({"symbol": info.symbol, "window_s": info.window_s,
                                        "slot_ts": info.end_ts, "prev_resolved_up": win.resolved_up})

    def _disagree(self, win: Window, kind: str, detail: str) -> None:
        if kind in win.checked:
            return
        win.checked.add(kind)
        self.metrics.inc("disagreements", kind=kind)
        log.warning("%s: %s disagrees (%s)", win.info.slug, kind, detail)

    def _cross_check(self, win: Window) -> None:
        up = win.resolved_up
        if up is None:
            return
        if win.final_price is not None and win.price_to_beat is not None:
            measured = win.final_price >= win.price_to_beat  # ties resolve Up
            if win.info.settlement.startswith("binance_noon") \
                    and win.final_price == win.price_to_beat:
                measured = None  # a tie resolves 50-50: Gamma shows no winner
            if measured is not None and measured != up:
                self._disagree(win, "measured_outcome", f"measured {measured}, official {up}")
        for kind, ours, theirs in (("price_to_beat", win.price_to_beat, win.official_ptb),
                                   ("final_price", win.final_price, win.official_final)):
            if ours is not None and theirs is not None and \
                    abs(ours - theirs) > PRICE_TOL * max(abs(theirs), 1.0):
                self._disagree(win, kind, f"measured {ours!r}, official {theirs!r}")
        if win.official_ptb is not None and win.official_final is not None:
            if (win.official_final >= win.official_ptb) != up:
                self._disagree(win, "official_prices_outcome", "")
        if win.clob_winner is not None and win.clob_winner != up:
            self._disagree(win, "clob_winner", f"clob {win.clob_winner}, gamma {up}")
        if win.ws_winner is not None and win.ws_winner != up:
            self._disagree(win, "ws_market_resolved", f"ws {win.ws_winner}, gamma {up}")


async def run_collector(cfg: CollectorConfig) -> int:
    """``slotml collect``: open the store and the durable writer, run until SIGTERM/SIGINT.

    A database that cannot be reached at start-up (refused, reset, silent) does not stop the
    collector: it collects into the spool, creates or upgrades the schema when the database is
    first reached (the writer's ``prepare`` hook), replays, and carries on; ``/health`` says
    the database is unreachable meanwhile. An error waiting will not fix (wrong password,
    unknown database, a newer schema) still ends it at once: one line, exit 2."""
    import signal

    from slotml.ingest.raw import RawWriter
    from slotml.ingest.store import open_store
    from slotml.ingest.store.base import StoreUnavailable, StoreUnreachable
    from slotml.ingest.store.writer import DurableWriter, close_writer

    store = open_store(cfg.common.db)
    reachable = True
    try:
        await store.connect()
    except StoreUnreachable as e:
        reachable = False
        log.warning("database unreachable at start-up (%s): collecting into the spool; the "
                    "schema is made and the spool replayed when it answers", e)
    try:
        if reachable:
            try:
                for line in await store.ensure_schema():
                    log.info("store: %s", line)
            except StoreUnavailable as e:  # e.g. SQLite locked by another process: wait
                reachable = False
                log.warning("cannot create/upgrade the schema now (%s): collecting into the "
                            "spool until the database answers", e)

        async def prepare() -> None:
            for line in await store.ensure_schema():
                log.info("store: %s", line)

        c: Collector | None = None

        def lost(rows: list[dict[str, Any]]) -> None:
            if c is not None:
                c.resolutions_lost(rows)

        writer = DurableWriter(store, cfg.common.spool_dir, queue_max=cfg.queue_max,
                               spool_max_mb=cfg.spool_max_mb,
                               prepare=None if reachable else prepare,
                               on_resolutions_lost=lost, db_up=reachable)
        await writer.start()
        try:
            raw = RawWriter(cfg.raw_dir, keep_days=cfg.raw_keep_days) if cfg.raw_dir else None
            c = Collector(cfg, store, writer, raw=raw)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, c.stop)
            await c.run()
            log.info("collector stopping")
        finally:
            await close_writer(writer)
    finally:
        await store.close()
    return 0
