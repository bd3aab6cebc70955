"""The durable write path: the collector never blocks on the database and loses nothing.

``put_snapshot`` / ``put_resolution`` / ``put_trade`` / ``put_tape_gap`` validate the row, append it to the spool (the write-ahead
log, see ``slotml.ingest.store.spool``) and keep it in a bounded in-memory queue that caches the
spool's tail; they never block and never raise on database trouble. Each row is validated once,
there (``coerce_row``), and stored as it is (``Store.insert_clean``; rows read back from the
spool file are validated again). One flusher task commits batches strictly in accepted order,
records the ack position after each commit and trims the spool. Commits are paced
(``commit_interval_s``, 0.25 s between the starts of two): rows arriving meanwhile share the next
transaction; a full batch, ``flush()`` and ``close()`` do not wait. While the database is down
(refused, reset, hung: the store's deadlines turn a hang into an error) the flusher retries
with exponential backoff and the spool grows up to ``spool_max_mb``; only then are the oldest rows dropped, counted and logged. After a SIGKILL
the next ``start()`` replays the un-acknowledged spool first; the tables' keys make a replay of
rows that did reach the database harmless (snapshot, trade and tape-gap duplicates are no-ops,
resolution upserts are idempotent). ``close()`` flushes what it can within its timeout and leaves the rest in the
spool for the next run.

Prints (``t`` rows) a full spool drops leave a hole in the trade tape, so the writer records it:
per token with prints among the dropped rows, one ``slot_tape_gaps`` row of reason
``spool-full`` from the earliest to the latest dropped print's receipt time (``received_at``,
wall time like the other gaps), with the token's window keys, counted as
``tape_gaps{reason="spool-full"}``. The spool summarises its ``t`` rows per segment as they are
appended (``_tally``), so a drop costs no re-read. The gap row goes through the spool like any
row, so it lands once the database is back; appended as the newest record while the oldest
are dropped first, it survives unless the outage lasts long enough to drop its own segment
too, and even then it is not lost silently: a dropped ``spool-full`` gap row is folded into
the next gap of its token (which then starts at the older gap's ``from_ts``). A gap may cover
prints that did arrive (rows of a commit in flight while their segment was dropped): it errs
towards "incomplete". One known residue of that race: if a ``spool-full`` gap row itself was in
that commit and is folded into a wider one, the wider row has the same key and is ignored, so
only the narrower range is stored.

A row the database itself rejects (e.g. a value out of range) cannot be fixed by retrying:
it is skipped and counted as ``rows_rejected``; every other error is retried forever. Rows
replayed from the spool go through the same ``coerce_row`` as live ones (in the store).

A full spool keeps resolution and (non spool-full) tape-gap rows: the spool compacts them
out of a dropped segment to its tail (``spool.py``), the writer caches them again and counts
only snapshots and prints as dropped. The ledger (``ledger()``): per kind, rows stored,
dropped, rejected, merged (spool-full gaps folded into a wider one) and still spooled;
accepted is their sum, exactly, because the counts are saved with the ack position in one
file. A row dropped or moved while its commit was in flight is settled when the commit ends.
``prepare`` (the collector's schema step) runs before the first commit when the database was
unreachable at start-up; ``db_up`` starts at 0 then, so ``/health`` says so from the start.

About 590 lines: the flusher, the drop accounting and the ledger all move the same counters
and the same ack position, so they stay in one class.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from slotml.errors import UserError
from slotml.ingest.metrics import Metrics
from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS, TAPE_GAPS, TRADES, Table
from slotml.ingest.store.base import (
    RowRejected,
    Store,
    StoreUnavailable,
    coerce_row,
    merge_resolutions,
)
from slotml.ingest.store.spool import Record, Spool, SpoolBusy

log = logging.getLogger(__name__)

# A spool record's kind -> its table. Resolutions are upserted (partial rows); the others are
# inserted once per key. The letters are in spool files: never reuse one for another table.
KINDS: dict[str, Table] = {"s": SNAPSHOTS, "r": RESOLUTIONS, "t": TRADES, "g": TAPE_GAPS}

SPOOL_FULL = "spool-full"
_WINDOW_KEYS = ("symbol", "window_s", "slot_ts")


COUNTS = "#n"  # summary key of the per-kind row counts (token ids are decimal strings)
FOLDED = "g~"  # ... and of the spool-full gap rows among them (folded, not lost)
LEDGER_KEYS = ("stored", "dropped", "rejected", "merged", "lost_fields")
# measured once, never asked again: a resolution row dropped with one of these loses it
MEASURED = ("price_to_beat", "spot_price_to_beat", "final_price", "final_seen_at",
            "resolved_at")


def _keep(kind: str, row: dict[str, Any]) -> bool:
    """What the spool compacts out of a dropped segment rather than drop: resolution rows and
    tape gaps, except ``spool-full`` gaps (those are folded into the next one instead)."""
    return kind == "r" or (kind == "g" and row.get("reason") != SPOOL_FULL)


def _tally(summary: dict[str, Any], kind: str, row: dict[str, Any]) -> None:
    """The spool's per-segment summary: rows per kind (``#n``), and for each token with prints
    (or ``spool-full`` gaps) ``[earliest, latest, symbol, window_s, slot_ts]`` of their times
    (print: ``received_at``; gap: ``from_ts``..``to_ts``). One or two dict updates per row."""
    n = summary.get(COUNTS)
    if n is None:
        n = summary[COUNTS] = {}
    if kind == "t":
        lo = hi = row.get("received_at")
    elif kind == "g" and row.get("reason") == SPOOL_FULL:
        lo, hi = row.get("from_ts"), row.get("to_ts")
        kind = FOLDED
    else:
        n[kind] = n.get(kind, 0) + 1
        return
    n[kind] = n.get(kind, 0) + 1
    token = row.get("token_id")
    if token is None or lo is None or hi is None:
        return
    cur = summary.get(token)
    if cur is None:
        summary[token] = [lo, hi, *(row.get(k) for k in _WINDOW_KEYS)]
    else:
        cur[0] = min(cur[0], lo)
        cur[1] = max(cur[1], hi)


class DurableWriter:
    def __init__(self, store: Store, spool_dir: Path, queue_max: int = 1000,
                 spool_max_mb: float = 512, batch_max: int = 500, *,
                 retry_min_s: float = 0.2, retry_max_s: float = 5.0,
                 fsync_interval_s: float = 1.0, commit_interval_s: float = 0.25,
                 metrics: Metrics | None = None,
                 prepare: Callable[[], Awaitable[Any]] | None = None,
                 on_resolutions_lost: Callable[[list[dict[str, Any]]], None] | None = None,
                 db_up: bool = True) -> None:
        self.store = store
        self.spool = Spool(Path(spool_dir), int(spool_max_mb * 1024 * 1024), summarize=_tally,
                           keep=_keep)
        # run once before the first commit (the collector's: create/upgrade the schema when
        # the database is first reached); retried like a commit until it succeeds
        self.prepare = prepare
        self._prepared = prepare is None
        # told which resolution rows a full spool could not keep (the collector re-puts what
        # it still knows of those windows)
        self.on_resolutions_lost = on_resolutions_lost
        self.last_error: str | None = None
        # ``tape_gaps{reason="spool-full"}`` is counted here; the collector hands in its own
        self.metrics = metrics if metrics is not None else Metrics()
        self.queue_max = max(1, int(queue_max))
        self.batch_max = max(1, int(batch_max))
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.fsync_interval_s = fsync_interval_s
        # Paced commits: after a commit, rows gather for up to this long before the next one
        # (a print arriving alone would otherwise cost a transaction, an fsync and an ack-file
        # rewrite of its own: at 200 prints/s that was ~40% of the collector's CPU). A full
        # batch, flush() and close() cut the wait short. Acceptance is unchanged: a row is
        # safe once spooled, and acknowledged only after its commit.
        self.commit_interval_s = max(0.0, commit_interval_s)
        self._hurry = asyncio.Event()  # set: commit now (a flush waits, closing, a full batch)
        self._flushing = 0  # flush() calls waiting
        self._batch_clean = False  # the batch came from the memory queue (rows coerced once)
        self._queue: collections.deque[Record] = collections.deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._closed = asyncio.Event()  # close() was called: retry briskly, cut backoffs short
        self._task: asyncio.Task | None = None
        self._stop = False
        self._inflight: list[Record] | None = None  # the run being committed
        self._inflight_dropped: set[int] = set()  # its seqs a drop counted meanwhile
        self._inflight_moved: set[int] = set()  # its seqs a drop moved to the tail meanwhile
        self.pending: dict[str, int] = {}  # accepted, neither committed nor dropped, per kind
        self._ledger_dirty = False  # counted without an ack since the last save
        self._down_since: float | None = None
        self._last_drop_log = 0.0
        self._last_reject_log = 0.0
        self.rows_written = 0
        self.commits = 0  # transactions committed (paced: a few per second, not one per row)
        self.rows_dropped = 0
        self.rows_rejected = 0
        self.tape_gaps = 0  # spool-full gap rows recorded
        self.db_errors = 0
        self.db_up = 1 if db_up else 0  # False: started while the database was unreachable
        self.reconnects = 0
        self.replayed = 0

    # --- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the spool (replaying what a previous run left) and start the flusher."""
        if self._task is not None:
            return
        try:
            self.spool.open()
        except SpoolBusy as e:
            raise UserError(f"{e}: one writer per database and data dir") from None
        except OSError as e:
            raise UserError(f"spool {self.spool.dir}: {e.strerror or e}") from None
        self.replayed = self.spool.replay_rows
        self.pending = dict(self.spool.pending_kinds)
        for key in LEDGER_KEYS:
            v = self.spool.ledger.get(key)
            self.spool.ledger[key] = {k: int(n) for k, n in v.items()} \
                if isinstance(v, dict) else {}
        led = self.spool.ledger
        self.rows_written = sum(led["stored"].values())
        self.rows_dropped = sum(led["dropped"].values())
        self.rows_rejected = sum(led["rejected"].values())
        if self.replayed:
            log.info("spool %s: replaying %d row(s) left by a previous run", self.spool.dir,
                     self.replayed)
        self._task = asyncio.create_task(self._flusher(), name="durable-writer")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row accepted so far is committed (or dropped). False on timeout."""
        target = self.spool.next_seq - 1
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flushing += 1
        self._hurry.set()
        try:
            return await self._flush_wait(target, deadline)
        finally:
            self._flushing -= 1

    async def _flush_wait(self, target: int, deadline: float | None) -> bool:
        while self.spool.floor < target:
            if self._task is None or self._task.done():
                return False
            self._progress.clear()
            if self.spool.floor >= target:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                async with asyncio.timeout(left):
                    await self._progress.wait()
            except TimeoutError:
                return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed within ``timeout`` s, then stop; the rest stays spooled."""
        if self._task is None:
            return
        self._closed.set()
        self._hurry.set()
        self._wake.set()
        flushed = await self.flush(timeout)
        task, self._task = self._task, None
        self._stop = True
        self._wake.set()
        try:  # the flusher stops by itself between batches; a hung commit is cancelled
            async with asyncio.timeout(0.5 if flushed else 0.05):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._save()
        self.spool.close()
        if not flushed:
            log.warning("writer closed with %d row(s) still spooled in %s (replayed on next start)",
                        self.spool.pending, self.spool.dir)

    # --- accepting rows -----------------------------------------------------------------------
    def put_snapshot(self, row: Mapping[str, Any]) -> None:
        self._put("s", row)

    def put_resolution(self, row: Mapping[str, Any]) -> None:
        self._put("r", row)

    def put_trade(self, row: Mapping[str, Any]) -> None:
        """One ``slot_trades`` row (a print of the tape)."""
        self._put("t", row)

    def put_tape_gap(self, row: Mapping[str, Any]) -> None:
        """One ``slot_tape_gaps`` row (an interval the tape may be incomplete)."""
        self._put("g", row)

    def _put(self, kind: str, row: Mapping[str, Any]) -> None:
        if self._task is None:
            raise RuntimeError("DurableWriter.start() first")
        try:
            clean = coerce_row(KINDS[kind], row, partial=(kind == "r"))
        except RowRejected as e:
            self._rejected(kind, str(e))
            return
        self._append(kind, clean)
        self._account_drops()
        self._wake.set()
        if self.spool.pending >= self.batch_max:
            self._hurry.set()  # a full batch is waiting: no point in pacing it

    def _count(self, what: str, kind: str, n: int = 1) -> None:
        d = self.spool.ledger[what]
        d[kind] = d.get(kind, 0) + n

    def _append(self, kind: str, clean: dict[str, Any]) -> None:
        seq = self.spool.append(kind, clean)
        if seq is None:  # the disk refused it
            self.rows_dropped += 1
            self._count("dropped", kind)
            if kind == "t":
                self.metrics.inc("trades_dropped")
            return
        self.pending[kind] = self.pending.get(kind, 0) + 1
        self._cache(Record(seq, kind, clean))

    def _cache(self, rec: Record) -> None:
        self._queue.append(rec)
        if len(self._queue) > self.queue_max:
            self._queue.popleft()  # still in the spool file: read back from there

    def _rejected(self, kind: str, why: str) -> None:
        self.rows_rejected += 1
        self._count("rejected", kind)
        if kind == "t":
            self.metrics.inc("trades_rejected")
        self._ledger_dirty = True  # saved by the flusher within a second
        now = time.monotonic()
        if now - self._last_reject_log > 10:
            self._last_reject_log = now
            log.warning("row rejected (%d so far): %s", self.rows_rejected, why)

    def _account_drops(self) -> None:
        dropped = False
        while drops := self.spool.take_drops():  # a gap row appended below may drop again
            dropped = True
            for drop in drops:
                self._account_drop(drop)
        if dropped:  # the floor moved past the dropped rows: persist it with the ledger
            self._save()

    def _save(self) -> None:
        self._ledger_dirty = False
        try:
            self.spool.save()
        except OSError as e:
            log.error("spool %s: cannot save the ack file (%s)", self.spool.dir, e)

    def _account_drop(self, drop: Any) -> None:
        """Count a dropped spool segment by kind, cache the rows it moved, record its prints'
        tape gaps and tell the collector which resolution rows were lost."""
        lo, hi = drop.lo, drop.hi
        moved_old = {old for old, _ in drop.moved}
        for _, rec in drop.moved:  # re-appended at the tail: still pending, under a new seq
            self._cache(rec)
        by_kind = dict((drop.summary or {}).get(COUNTS, {}))
        for _, rec in drop.moved:
            by_kind[rec.kind] = by_kind.get(rec.kind, 0) - 1
        for kind, n in by_kind.items():
            if n > 0 and kind == FOLDED:  # spool-full gaps: folded into the new gap below
                self._count("merged", "g", n)
                self.pending["g"] = self.pending.get("g", 0) - n
            elif n > 0:
                self._count("dropped", kind, n)
                self.pending[kind] = self.pending.get(kind, 0) - n
        self.rows_dropped += drop.rows
        self._progress.set()
        prints = by_kind.get("t", 0)
        if self._inflight:
            for rec in self._inflight:
                if lo <= rec.seq <= hi:
                    if rec.seq in moved_old:
                        self._inflight_moved.add(rec.seq)
                    else:
                        self._inflight_dropped.add(rec.seq)
                        if rec.kind == "t":  # counted dropped only if that commit fails
                            prints -= 1
        if prints > 0:
            self.metrics.inc("trades_dropped", prints)
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.warning("spool %s over %.0f MB: dropped the oldest %d snapshot/trade row(s) "
                        "(%d so far), kept %d resolution/gap row(s)", self.spool.dir,
                        self.spool.max_bytes / 2**20, drop.rows, self.rows_dropped,
                        len(drop.moved))
        gaps = {t: v for t, v in (drop.summary or {}).items() if t != COUNTS}
        lost_res: list[dict[str, Any]] = []
        for rec in drop.lost:  # the last resort: a spool of (nearly) nothing but these
            if rec.kind == "r":
                lost_res.append(rec.row)
                for f in MEASURED:
                    if rec.row.get(f) is not None:
                        self._count("lost_fields", f)
        if drop.lost:
            log.error("spool %s full of resolution/gap rows: dropped %d of them",
                      self.spool.dir, len(drop.lost))
        for token, (first, last, *keys) in gaps.items():
            self._spool_full_gap(token, first, last, dict(zip(_WINDOW_KEYS, keys, strict=True)))
        if lost_res and self.on_resolutions_lost is not None:
            try:
                self.on_resolutions_lost(lost_res)
            except Exception:  # noqa: BLE001 - the writer must not die of its caller's bug
                log.exception("on_resolutions_lost failed")

    def _spool_full_gap(self, token: str, first: float, last: float,
                        keys: dict[str, Any]) -> None:
        """Record that ``token``'s prints received from ``first`` to ``last`` were dropped."""
        row = {**keys, "token_id": token, "from_ts": first, "to_ts": max(first, last),
               "reason": SPOOL_FULL}
        try:
            clean = coerce_row(TAPE_GAPS, row)
        except RowRejected as e:  # only if the prints themselves were odd: say so, go on
            self._rejected("g", f"spool-full gap: {e}")
            return
        self.tape_gaps += 1
        self.metrics.inc("tape_gaps", reason=SPOOL_FULL)
        self._append("g", clean)

    def stats(self) -> dict[str, Any]:
        return {
            "queue_depth": self.spool.pending,  # accepted, not yet committed (memory + spool)
            "queue_cached": len(self._queue),  # of which cached in memory (<= queue_max)
            "spool_bytes": self.spool.bytes,
            "rows_written": self.rows_written,
            "commits": self.commits,
            "rows_dropped": self.rows_dropped,
            "rows_rejected": self.rows_rejected,
            "tape_gaps": self.tape_gaps,  # spool-full gap rows recorded for dropped prints
            "spool_corrupt": self.spool.corrupt,
            "replayed": self.replayed,
            "db_errors": self.db_errors,
            "db_up": self.db_up,
            "reconnects": self.reconnects,
            "db_error": self.last_error,
        }

    def ledger(self) -> dict[str, dict[str, int]]:
        """Rows per kind (s snapshot, r resolution, t trade, g tape gap), kept across restarts
        in the spool's ack file: accepted = stored + dropped + rejected + merged + spooled,
        exactly. ``merged``: spool-full gap rows a later drop folded into a wider gap row.
        ``lost_fields``: measured resolution values a full spool could not keep, by column."""
        led = self.spool.ledger
        kinds = sorted({*self.pending, *led["stored"], *led["dropped"], *led["rejected"],
                        *led["merged"]})
        out: dict[str, dict[str, int]] = {
            "stored": dict(led["stored"]), "dropped": dict(led["dropped"]),
            "rejected": dict(led["rejected"]), "merged": dict(led["merged"]),
            "spooled": {k: n for k, n in self.pending.items() if n},
            "lost_fields": dict(led["lost_fields"])}
        out["accepted"] = {k: sum(out[w].get(k, 0) for w in ("stored", "dropped", "rejected",
                                                               "merged", "spooled"))
                           for k in kinds}
        return out

    def spooled_resolutions(self) -> list[dict[str, Any]]:
        """The resolution rows not yet committed, merged per window (first known value wins),
        so a restart resumes windows the spool knows and the database does not (yet)."""
        return merge_resolutions([r.row for s, r in sorted(self.spool.kept.items())
                                  if r.kind == "r"])

    # --- the flusher --------------------------------------------------------------------------
    def _next_batch(self) -> list[Record]:
        start = self.spool.floor + 1
        q = self._queue
        while q and q[0].seq < start:
            q.popleft()
        if start >= self.spool.next_seq:
            return []
        if q and q[0].seq == start:
            n = min(self.batch_max, len(q))
            self._batch_clean = True  # coerced by _put: stored as they are
            return [q[i] for i in range(n)]
        self._batch_clean = False  # read back from the file: coerced again on the way in
        upto = q[0].seq if q else self.spool.next_seq
        recs = self.spool.read(start, min(self.batch_max, upto - start))
        recs = [r for r in recs if r.seq < upto]
        if not recs:  # only torn/missing lines before the cached tail: nothing to commit there
            self.spool.ack(upto - 1)
            self._progress.set()
        return recs

    async def _flusher(self) -> None:
        backoff = self.retry_min_s
        last_sync = time.monotonic()
        last_commit = -1e9
        while not self._stop:
            await self._pace(last_commit)
            if self.spool.needs_sync and time.monotonic() - last_sync >= self.fsync_interval_s:
                last_sync = time.monotonic()
                await self._fsync()
            if self._ledger_dirty:
                self._save()
            if not self._prepared:
                if await self._prepare():
                    backoff = self.retry_min_s
                else:
                    await self._backoff(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
                    continue
            try:
                batch = self._next_batch()
            except OSError as e:  # the spool cannot be read back: keep trying, never die
                log.error("spool %s: cannot read back (%s); retrying", self.spool.dir, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            if not batch:
                self._wake.clear()
                if self.spool.pending == 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.fsync_interval_s):
                            await self._wake.wait()
                continue
            last_commit = time.monotonic()
            if await self._commit(batch):
                backoff = self.retry_min_s
            else:
                await self._backoff(backoff)
                backoff = min(backoff * 2, self.retry_max_s)

    async def _backoff(self, delay: float) -> None:
        if self._closed.is_set():  # close() is waiting: retry briskly, but do not spin
            await asyncio.sleep(min(delay, self.retry_min_s))
        else:
            with contextlib.suppress(TimeoutError):  # close() cuts a long backoff short
                async with asyncio.timeout(delay):
                    await self._closed.wait()

    async def _prepare(self) -> bool:
        """Run the ``prepare`` hook (schema) once the database answers. False: retry later."""
        assert self.prepare is not None
        try:
            await self.prepare()
        except Exception as e:  # noqa: BLE001 - unreachable, or worse: log it, keep spooling
            self._failed(e)
            return False
        self._prepared = True
        self._succeeded()
        return True

    async def _pace(self, last_commit: float) -> None:
        """Wait until ``commit_interval_s`` after the last commit began, unless hurried."""
        left = last_commit + self.commit_interval_s - time.monotonic()
        if left <= 0 or self._stop:
            return
        if not (self._flushing or self._closed.is_set()
                or self.spool.pending >= self.batch_max):
            self._hurry.clear()
        if self._hurry.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(left):
                await self._hurry.wait()

    async def _fsync(self) -> None:
        fds = self.spool.sync_fds()
        if fds:
            await asyncio.to_thread(_sync_and_close, fds)

    async def _commit(self, batch: list[Record]) -> bool:
        """Commit runs of same-kind rows in order, acking after each. False: retry later."""
        i = 0
        while i < len(batch):
            j = i
            while j < len(batch) and batch[j].kind == batch[i].kind:
                j += 1
            run = batch[i:j]
            try:
                await self._write(run)
            except RowRejected:
                if not await self._write_one_by_one(run):
                    return False
            except StoreUnavailable as e:
                self._failed(e)
                return False
            except Exception as e:  # noqa: BLE001 - unexpected: retry, never drop a row
                log.exception("unexpected error writing %d row(s); will retry", len(run))
                self._failed(e)
                return False
            i = j
        return True

    async def _write(self, run: list[Record]) -> None:
        hi = run[-1].seq
        self._inflight, self._inflight_dropped, self._inflight_moved = run, set(), set()
        ok = False
        try:
            rows = [r.row for r in run]
            table = KINDS.get(run[0].kind)
            if table is None:  # a spool line of no known kind: retrying cannot help
                raise RowRejected(f"spool record of unknown kind {run[0].kind!r}")
            if table is RESOLUTIONS:
                await self.store.upsert_resolutions(rows)
            elif self._batch_clean:
                await self.store.insert_clean(table, rows)
            else:
                await self.store.insert_once(table, rows)
            ok = True
        finally:
            dropped, moved = self._inflight_dropped, self._inflight_moved
            self._inflight = None
            if not ok and dropped and run[0].kind == "t":  # gone from the spool, not stored
                self.metrics.inc("trades_dropped", len(dropped))
        for rec in run:
            if rec.seq in moved:  # its copy at the tail is committed (again) and counted then
                continue
            if rec.seq in dropped:  # dropped while this commit was in flight: it did arrive
                self._count("dropped", rec.kind, -1)
                self.rows_dropped -= 1
            else:
                self.pending[rec.kind] = self.pending.get(rec.kind, 0) - 1
            self._count("stored", rec.kind)
            self.rows_written += 1
        self.commits += 1
        if run[0].kind == "t":  # the tape's counters: /metrics mirrors the ledger's stored
            self.metrics.inc("trades_stored", len(run) - len(moved))
        if dropped or moved:  # settled above the ack position: save the ledger soon
            self._ledger_dirty = True
        self._succeeded()
        self.spool.ack(hi)
        self._progress.set()

    async def _write_one_by_one(self, run: list[Record]) -> bool:
        for rec in run:
            if rec.seq <= self.spool.floor:
                continue
            try:
                await self._write([rec])
            except RowRejected as e:
                if rec.seq <= self.spool.floor:  # dropped (or moved) meanwhile: counted there
                    continue
                self.pending[rec.kind] = self.pending.get(rec.kind, 0) - 1
                self._rejected(rec.kind, f"database refused row {rec.seq}: {e}")
                self.spool.ack(rec.seq)
                self._progress.set()
            except Exception as e:  # noqa: BLE001
                self._failed(e)
                return False
        return True

    def _failed(self, e: BaseException) -> None:
        self.db_errors += 1
        self.last_error = str(e) or type(e).__name__
        if self.db_up:
            self.db_up = 0
            self._down_since = time.monotonic()
            log.warning("database unavailable (%s); spooling %d row(s) in %s", e,
                        self.spool.pending, self.spool.dir)
        elif self.db_errors % 50 == 0:
            log.warning("database still unavailable after %.0f s (%s); %d row(s) spooled",
                        time.monotonic() - (self._down_since or time.monotonic()), e,
                        self.spool.pending)

    def _succeeded(self) -> None:
        self.last_error = None
        if not self.db_up:
            self.db_up = 1
            if self._down_since is None:  # never up before: the first contact, not a return
                log.info("database reached; flushing %d spooled row(s)", self.spool.pending)
                return
            self.reconnects += 1
            log.info("database back after %.1f s; flushing %d spooled row(s)",
                     time.monotonic() - (self._down_since or time.monotonic()), self.spool.pending)


def _sync_and_close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


async def close_writer(writer: Any, timeout: float = 5.0) -> None:
    """``writer.close(timeout)`` with a hard deadline on top: rows it could not commit stay in
    the spool (replayed at the next start), so shutting down never hangs on the database."""
    try:
        await asyncio.wait_for(writer.close(timeout), timeout + 2.0)
    except TimeoutError:
        log.warning("writer did not stop within %.0f s; rows not committed stay spooled for the "
                    "next start", timeout + 2.0)
