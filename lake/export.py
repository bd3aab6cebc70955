"""``slotml export``: mirror the store into the Parquet lake, incrementally and idempotently.

One run: take the lake's lock, clear what a killed run left behind, then for each table read the
rows with ``updated_at >= cutoff`` (the previous run's database clock minus an overlap, so rows
committed out of order are re-read rather than skipped), drop those the lake already holds in
the same version (same id and updated_at), and route the rest to their ``symbol/date``
partitions. A partition that already has files is rewritten: old rows minus the keys that came
back (anti-join on the table's unique key) plus the new versions, into a new file. Then the
manifest is swapped atomically; the files it no longer lists are deleted after a grace period.

Memory stays bounded: rows stream in chunks, partitions are flushed to files as the buffer
fills (the store yields rows roughly in time order, so a flushed partition is usually done),
at most ``WRITE_AHEAD`` merged partitions wait for the writers at a time, and only the overlap
window's (id, updated_at) pairs are held to recognise unchanged rows. ``bound_native_heap``
stops glibc's heap from growing with the rows read (see there).

About 450 lines, one module: the merge, the writer threads and the manifest commit share one
run's state and its crash-safety argument, which reads best in one place.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import logging
import os
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slotml.errors import UserError
from slotml.ingest.schema import TABLES, Table
from slotml.lake.arrow_schema import arrow_schema, dictionary_columns, fingerprint
from slotml.lake.manifest import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    TableState,
    read_manifest,
    write_manifest,
)
from slotml.lake.readers import Source, normalize, open_source
from slotml.settings import DbUrl

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 122_880  # DuckDB's row-group size: one Parquet row group per DuckDB task
LOCK_NAME = ".export.lock"
WRITER_THREADS = 2  # Parquet writer threads
WRITE_AHEAD = WRITER_THREADS  # merged partitions waiting for the writers, at most
MMAP_THRESHOLD = 256 << 10  # glibc: allocations this large get their own mapping


def bound_native_heap() -> bool:
    """Keep glibc's malloc from retaining freed Arrow buffers (True if applied).

    connectorx builds each id range's Arrow columns (~1 MB buffers) in its own threads with the
    system allocator. glibc raises its mmap threshold every time such a mapped block is freed,
    so later buffers land in the threads' arenas, whose freed holes are rarely returned: RSS
    grew with the rows read (measured: 445, 517, 579 MiB after 5, 10, 15M rows in one process).
    A fixed threshold (which also disables the dynamic raise) maps every large buffer and unmaps
    it on free: flat ~335 MiB, same CPU time. Process-wide but harmless; a no-op off glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(-3, MMAP_THRESHOLD))  # M_MMAP_THRESHOLD


@dataclass(frozen=True)
class ExportConfig:
    db: DbUrl
    lake_dir: Path
    full: bool = False
    overlap_s: float = 300.0  # re-read window for rows committed out of order
    grace_s: float = 30.0  # readers on the previous manifest keep its files this long
    reader: str = "auto"  # MySQL reader: auto | connectorx | cli | python
    buffer_rows: int = 250_000  # rows held in partition buffers before flushing to files
    row_group_rows: int = ROW_GROUP_ROWS
    fsync: bool = True
    progress_s: float = 5.0
    tables: tuple[str, ...] = tuple(TABLES)  # every store table (they all have the window keys)


@dataclass
class TableStats:
    rows_read: int = 0
    rows_unchanged: int = 0
    rows_written: int = 0  # new or changed versions
    files_written: int = 0
    partitions_rewritten: int = 0
    seconds: float = 0.0


@dataclass
class ExportResult:
    manifest_id: int
    tables: dict[str, TableStats] = field(default_factory=dict)
    files_deleted: int = 0
    leftovers_cleared: int = 0
    seconds: float = 0.0

    @property
    def files_written(self) -> int:
        return sum(t.files_written for t in self.tables.values())


def partition_dir(table: str, symbol: str, date: str) -> str:
    return f"{table}/symbol={quote(symbol, safe='')}/date={date}"


def utc_date(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


class _Tail:
    """(id, updated_at) of the lake's rows inside the overlap window, to skip re-read rows."""

    def __init__(self, lake_dir: Path, files: Iterable[FileEntry], since: float) -> None:
        ids: list[np.ndarray] = []
        upd: list[np.ndarray] = []
        for f in files:
            if f.max_updated_at < since:
                continue
            t = pq.read_table(lake_dir / f.path, columns=["id", "updated_at"])
            t = t.filter(pc.greater_equal(t["updated_at"], since))
            ids.append(t["id"].to_numpy())
            upd.append(t["updated_at"].to_numpy())
        self.ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        u = np.concatenate(upd) if upd else np.empty(0, np.float64)
        order = np.argsort(self.ids, kind="stable")
        self.ids, self.upd = self.ids[order], u[order]

    def __len__(self) -> int:
        return len(self.ids)

    def drop_unchanged(self, chunk: pa.Table) -> pa.Table:
        if not len(self.ids) or not chunk.num_rows:
            return chunk
        ids = chunk["id"].to_numpy()
        upd = chunk["updated_at"].to_numpy()
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        same = (self.ids[pos] == ids) & (self.upd[pos] == upd)
        return chunk.filter(pa.array(~same)) if same.any() else chunk


class _TableWriter:
    """Routes one table's rows to partitions and writes/rewrites their files."""

    def __init__(self, cfg: ExportConfig, table: Table, run_id: int,
                 live: list[FileEntry]) -> None:
        self.cfg = cfg
        self.table = table
        self.schema = arrow_schema(table)
        self.dict_cols = dictionary_columns(table)
        self.run_id = run_id
        self.files: dict[tuple[str, str], list[FileEntry]] = defaultdict(list)
        for f in live:
            self.files[(f.symbol, f.date)].append(f)
        self.old_paths = {f.path for f in live}
        self.pending: dict[tuple[str, str], list[pa.Table]] = defaultdict(list)
        self.buffered = 0
        self.seq = 0
        self.superseded: list[FileEntry] = []  # old-manifest files replaced by this run
        self.stats = TableStats()
        self.pool = ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="lake-write")

    def add(self, chunk: pa.Table) -> None:
        if not chunk.num_rows:
            return
        # One vectorised sort by (symbol, day), then zero-copy slices per partition.
        day = np.floor_divide(chunk["slot_ts"].to_numpy().astype(np.int64), 86400)
        sym = pc.dictionary_encode(chunk["symbol"]).combine_chunks()
        codes = sym.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        names = sym.dictionary.to_pylist()
        d0 = int(day.min())
        span = int(day.max()) - d0 + 1
        key = codes * span + (day - d0)
        if len(key) > 1 and not (np.diff(key) >= 0).all():
            order = np.argsort(key, kind="stable")
            key = key[order]
            chunk = chunk.take(pa.array(order))
        starts = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1))
        ends = np.append(starts[1:], len(key))
        fresh = set()
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            k = int(key[a])
            part = (names[k // span], utc_date(d0 + k % span))
            self.pending[part].append(chunk.slice(a, b - a))
            fresh.add(part)
        self.buffered += chunk.num_rows
        if self.buffered > self.cfg.buffer_rows:
            # partitions this chunk did not touch are most likely done
            self._flush([k for k in self.pending if k not in fresh])
            if self.buffered > self.cfg.buffer_rows // 2:
                self._flush(list(self.pending))

    def finish(self) -> None:
        self._flush(list(self.pending))
        self.pool.shutdown()

    def live(self) -> list[FileEntry]:
        return sorted((f for fs in self.files.values() for f in fs), key=lambda f: f.path)

    def _flush(self, keys: list[tuple[str, str]]) -> None:
        """Merge each partition's rows with its existing files; write them two at a time
        (Parquet encoding releases the GIL, so it overlaps with the next partition's merge)."""
        # Merge a partition only when a writer is about to be free: merging every key up front
        # would hold all their rows (old files included, when rewriting) in memory at once.
        inflight: deque = deque()
        for key in keys:
            while len(inflight) >= WRITE_AHEAD:
                self._written(*inflight.popleft())
            data, existing = self._merge(key)
            rel = (f"{partition_dir(self.table.name, *key)}/"
                   f"{self.run_id:08d}-{self.seq:05d}.parquet")
            self.seq += 1
            inflight.append((key, existing, self.pool.submit(self._write, key, rel, data)))
            del data
        while inflight:
            self._written(*inflight.popleft())

    def _written(self, key: tuple[str, str], existing: list[FileEntry],
                 fut: Future[FileEntry]) -> None:
        entry = fut.result()
        self.stats.files_written += 1
        for f in existing:
            if f.path in self.old_paths:
                self.superseded.append(f)
            else:  # written earlier in this run, in no manifest: no reader has it
                (self.cfg.lake_dir / f.path).unlink(missing_ok=True)
                self.stats.files_written -= 1
        self.files[key] = [entry]

    def _merge(self, key: tuple[str, str]) -> tuple[pa.Table, list[FileEntry]]:
        new = pa.concat_tables(self.pending.pop(key))
        self.buffered -= new.num_rows
        self.stats.rows_written += new.num_rows
        existing = self.files.get(key, [])
        data = new
        if existing:
            old = pa.concat_tables([pq.read_table(self.cfg.lake_dir / f.path, schema=self.schema)
                                    for f in existing])
            keys = list(self.table.unique)
            kept = old.join(new.select(keys), keys=keys, join_type="left anti",
                            use_threads=False).select(self.schema.names)
            data = pa.concat_tables([kept.cast(self.schema), new])
            self.stats.partitions_rewritten += 1
        return data, existing

    def _write(self, key: tuple[str, str], rel: str, data: pa.Table) -> FileEntry:
        data = data.sort_by([(k, "ascending") for k in self.table.unique])
        path = self.cfg.lake_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, path, compression="zstd", row_group_size=self.cfg.row_group_rows,
                       use_dictionary=self.dict_cols)
        max_upd = pc.max(data["updated_at"]).as_py()
        return FileEntry(path=rel, rows=data.num_rows, symbol=key[0], date=key[1],
                         max_updated_at=float(max_upd))


class _Lock:
    def __init__(self, lake_dir: Path) -> None:
        try:
            lake_dir.mkdir(parents=True, exist_ok=True)
            self.f = open(lake_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held for the run
        except OSError as e:
            raise UserError(f"cannot write the lake at {lake_dir}: {e.strerror or e}") from None
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise UserError(f"another export is running on {lake_dir}") from None

    def release(self) -> None:
        self.f.close()


def clear_leftovers(lake_dir: Path, manifest: Manifest, grace_s: float,
                    now: float | None = None) -> tuple[int, list[dict]]:
    """Delete files no manifest needs: a killed run's data, superseded files past their grace.

    Returns (files deleted, superseded entries still within their grace).
    """
    now = time.time() if now is None else now
    live = manifest.live_paths()
    keep_pending = [s for s in manifest.superseded if now - float(s["since"]) < grace_s]
    protected = live | {s["path"] for s in keep_pending}
    deleted = 0
    for name in TABLES:
        root = lake_dir / name
        if not root.is_dir():
            continue
        for p in root.rglob("*"):
            if p.is_file() and p.relative_to(lake_dir).as_posix() not in protected:
                p.unlink(missing_ok=True)
                deleted += 1
        for d in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            try:
                d.rmdir()  # only succeeds when empty
            except OSError:
                pass
    for p in lake_dir.glob(f".{MANIFEST_NAME}.tmp-*"):
        p.unlink(missing_ok=True)
        deleted += 1
    return deleted, keep_pending


def _prefetch(it: Iterator[pa.Table], depth: int = 1) -> Iterator[pa.Table]:
    """Read the next chunk in a thread while this one is partitioned and written (the readers
    release the GIL: connectorx, the CSV parser, sqlite3). Errors surface in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    th = threading.Thread(target=work, name="lake-read", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        th.join(timeout=5)
        close = getattr(it, "close", None)
        if close and not th.is_alive():
            close()


def _export_table(cfg: ExportConfig, source: Source, table: Table, run_id: int,
                  state: TableState | None) -> tuple[TableState, _TableWriter]:
    t0 = time.monotonic()
    fp = fingerprint(table)
    full = cfg.full or state is None or state.cutoff is None or state.fingerprint != fp
    if state is not None and state.fingerprint and state.fingerprint != fp:
        log.warning("%s: the schema changed since the last export: rebuilding it in full", table.name)
    if not full and state is not None:
        gone = [f.path for f in state.files if not (cfg.lake_dir / f.path).is_file()]
        if gone:  # repaired here, so the operator never needs --full for it
            log.warning("%s: %d file(s) the manifest lists are missing (%s%s): rebuilding the "
                        "table from the store", table.name, len(gone), ", ".join(gone[:3]),
                        " ..." if len(gone) > 3 else "")
            full = True
    live = [] if full or state is None else state.files
    since = None if full else state.cutoff  # type: ignore[union-attr]
    db_now = source.db_now()  # before the read: rows committed after it are next run's
    tail = _Tail(cfg.lake_dir, live, since) if since is not None else None
    writer = _TableWriter(cfg, table, run_id, live)
    log.info("%s: reading %s via %s (%s)", table.name,
             "everything" if since is None else f"updated_at >= {since:.3f}", source.name,
             "full rebuild" if full else f"{len(live)} live files, {len(tail or ())} rows in overlap")
    st = writer.stats
    last_log = time.monotonic()
    for raw in _prefetch(source.read(table, since)):
        chunk = normalize(raw, table)
        st.rows_read += chunk.num_rows
        if tail is not None:
            kept = tail.drop_unchanged(chunk)
            st.rows_unchanged += chunk.num_rows - kept.num_rows
            chunk = kept
        writer.add(chunk)
        if time.monotonic() - last_log >= cfg.progress_s:
            last_log = time.monotonic()
            el = last_log - t0
            log.info("%s: %d rows read (%.0f rows/s), %d files written", table.name,
                     st.rows_read, st.rows_read / el if el else 0.0, st.files_written)
    writer.finish()
    st.seconds = time.monotonic() - t0
    if full and state is not None:
        writer.superseded.extend(state.files)
    new_state = TableState(files=writer.live(), cutoff=db_now - cfg.overlap_s, fingerprint=fp)
    log.info("%s: %d rows read (%.0f rows/s), %d unchanged, %d new or changed, %d files written, "
             "%d partitions rewritten, %.1fs", table.name, st.rows_read,
             st.rows_read / st.seconds if st.seconds else 0.0, st.rows_unchanged, st.rows_written,
             st.files_written, st.partitions_rewritten, st.seconds)
    return new_state, writer


def run_export(cfg: ExportConfig, source: Source | None = None) -> ExportResult:
    """One export run (see the module docstring). Safe to kill at any point."""
    t0 = time.monotonic()
    bound_native_heap()
    lake = cfg.lake_dir
    lock = _Lock(lake)
    own_source = source is None
    try:
        old = read_manifest(lake)
        cleared, pending = clear_leftovers(lake, old, cfg.grace_s)
        if cleared:
            log.info("cleared %d leftover files (a killed run's, or superseded past the grace)",
                     cleared)
        if old.source_key and old.source_key != cfg.db.key() and not cfg.full:
            log.warning("the lake mirrors %s, not %s: rebuilding it in full", old.source, cfg.db)
            cfg = dataclasses.replace(cfg, full=True)
        run_id = old.id + 1
        result = ExportResult(manifest_id=run_id, leftovers_cleared=cleared)
        if source is None:
            source = open_source(cfg.db, cfg.reader)
        tables = dict(old.tables)
        superseded: list[FileEntry] = []
        try:
            for name in cfg.tables:
                state, writer = _export_table(cfg, source, TABLES[name], run_id, old.tables.get(name))
                tables[name] = state
                superseded += writer.superseded
                result.tables[name] = writer.stats
        finally:
            if own_source:
                source.close()
        if cfg.fsync and result.files_written:
            # the new files durable before the manifest names them: one sync(2), not an fsync
            # per file (a run writes thousands of small partition files)
            os.sync()
        now = time.time()
        new = Manifest(id=run_id, created_at=now, tables=tables, source=str(cfg.db),
                       source_key=cfg.db.key(),
                       superseded=pending + [{"path": f.path, "since": now} for f in superseded])
        write_manifest(lake, new)
        log.info("manifest %d committed: %d live files, %d superseded", run_id,
                 len(new.live_paths()), len(superseded))
        if superseded:
            if cfg.grace_s > 0:
                log.info("waiting %.0fs before deleting superseded files (readers on manifest %d)",
                         cfg.grace_s, old.id)
                time.sleep(cfg.grace_s)
            for f in superseded:
                (lake / f.path).unlink(missing_ok=True)
            result.files_deleted = len(superseded)
            new.superseded = pending
            write_manifest(lake, new)
        result.seconds = time.monotonic() - t0
        return result
    finally:
        lock.release()
