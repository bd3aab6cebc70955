"""The write-ahead spool: append-only segment files of JSON lines, one folder per database.

A row is *accepted* once its line is handed to the OS with one ``os.write`` (no user-space
buffer): a SIGKILL at any moment afterwards loses nothing. fsync policy: the writer fsyncs the
open segment about once a second while rows arrive and on close/rotation, so a power loss
can cost at most about the last second; a torn last line is detected and skipped on restart.

Each line is ``{"n": seq, "k": kind, "r": {...row...}}`` (kind: the table's letter, see
``writer.KINDS``); ``seq`` increases by one per row
across segments and restarts. The ``ack`` file holds the highest seq the database has
committed (or that was dropped): on restart everything above it is replayed, in order. A
segment is deleted once fully acknowledged; the open segment is truncated instead. When the
spool outgrows its limit, the OLDEST segments are deleted and their unacknowledged rows
counted as dropped (``drops``): the newest data is the most valuable to a live collector.

What a dropped segment held is told to the writer without re-reading it: a ``summarize`` hook
(given by the writer) folds each appended record into its segment's ``summary`` dict, and a
drop carries the summary of exactly its dropped rows. Only a segment already partly
acknowledged when dropped (the oldest one of an outage) is re-read, once, for its rows above
the ack; a segment left by a previous run is summarised by the scan at open.

Compaction (``keep``): records ``keep(kind, row)`` says to keep (the writer's resolutions and
tape gaps: a few per window, and what they measured cannot be asked again) are also held in memory
while unacknowledged. When the oldest segment is dropped, its kept records are first
re-appended at the tail under new seqs (``Drop.moved``), so a full spool drops snapshot and
trade rows, oldest first, and keeps the rest. Only when kept records fill more than half the
spool (an outage so long that nearly nothing else is left) are the oldest of them dropped
too (``Drop.lost``); the other half is always other rows, so compaction makes progress.

The ``ack`` file is a JSON object: ``{"ack": seq, "ledger": {...}}``: the writer's ledger
(rows stored / dropped / rejected per kind) is saved atomically with the ack position it
describes, so a restart resumes exact accounting. A plain integer (older spools) is read as
an ack with an empty ledger.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
ACK_FILE = "ack"
LOCK_FILE = "lock"


class SpoolBusy(Exception):
    """Another live process owns this spool (two writers would interleave their rows)."""


@dataclass(slots=True)
class Record:
    seq: int
    kind: str  # "s" snapshot, "r" resolution, "t" trade, "g" tape gap (writer.KINDS)
    row: dict[str, Any]


# folds one record (kind, row) into a segment's summary; must be cheap (called per append)
Summarize = Callable[[dict[str, Any], str, dict[str, Any]], None]


class Drop(NamedTuple):
    """Rows lo..hi deleted unacknowledged; ``summary``: what they held (all of them, moved
    ones included); ``moved``: (old seq, the new record) of kept rows re-appended at the
    tail; ``lost``: kept rows that could not be kept (dropped with the rest)."""

    lo: int
    hi: int
    rows: int  # dropped for good (moved rows not included)
    summary: dict[str, Any]
    moved: list[tuple[int, Record]]
    lost: list[Record]


@dataclass(slots=True)
class _Segment:
    path: Path
    size: int = 0
    first: int | None = None  # first seq in the file (None: no rows)
    last: int | None = None
    unsynced_fd: int | None = None  # rotated out, not yet fsynced/closed
    summary: dict[str, Any] = field(default_factory=dict)  # the summarize hook's, rows > floor


def encode_line(seq: int, kind: str, row: dict[str, Any]) -> bytes:
    """One spool line (JSON, newline-terminated). orjson: 20-50x faster than ``json.dumps`` on
    these rows, one per row the collector writes. What orjson refuses (an int beyond 64 bits,
    a lone surrogate) goes through ``json`` instead: a row is never lost to its encoding."""
    rec = {"n": seq, "k": kind, "r": row}
    try:
        return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(rec, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _parse(line: bytes) -> Record | None:
    """One spool line, or None when it is not one (torn, hand-edited into another shape)."""
    try:
        d = json.loads(line)
        rec = Record(int(d["n"]), str(d["k"]), d["r"])
    except (ValueError, KeyError, TypeError):
        return None
    if rec.seq < 1 or not isinstance(rec.row, dict) or not rec.kind:
        return None
    return rec


def _line_bytes(rec: Record) -> int:
    return len(encode_line(rec.seq, rec.kind, rec.row))  # what the spool file holds


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int | None = None,
                 summarize: Summarize | None = None,
                 keep: Callable[[str, dict[str, Any]], bool] | None = None) -> None:
        self.summarize = summarize
        self.keep = keep or (lambda _kind, _row: False)
        self.kept: dict[int, Record] = {}  # unacknowledged records of the ``keep`` kinds
        self.kept_bytes = 0  # their lines' bytes
        self.ledger: dict[str, Any] = {}  # the writer's, saved with the ack
        self.pending_kinds: dict[str, int] = {}  # rows above the ack found at open, per kind
        self.dir = Path(directory)
        self.max_bytes = max(int(max_bytes), 1024)
        # the unit of dropping on overflow: small against the limit, so a drop costs little
        self.segment_bytes = segment_bytes or max(1024, min(8 << 20, self.max_bytes // 16))
        self.segments: list[_Segment] = []
        self.floor = 0  # every seq <= floor is committed or dropped
        self.next_seq = 1
        self.corrupt = 0  # lines skipped at open (torn by a kill / power loss)
        self.replay_rows = 0  # rows above the ack found at open
        self.drops: list[Drop] = []  # not yet seen by the writer
        self.write_errors = 0
        self.dirty = False  # written since the last fsync
        self._fd: int | None = None
        self._lock: int | None = None
        self._hint: tuple[Path, int, int] | None = None  # (segment, offset, seq at offset)

    # --- open / close ---------------------------------------------------------------------------
    def open(self) -> None:
        """Scan what a previous run left, then start a fresh segment for new rows."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:  # released by the kernel however this process ends
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._lock, 64, 0).decode(errors="replace").strip()
            os.close(self._lock)
            self._lock = None
            raise SpoolBusy(f"spool {self.dir} is in use by another process "
                            f"(pid {holder or '?'})") from None
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, str(os.getpid()).encode(), 0)
        self.floor, self.ledger = _read_ack(self.dir / ACK_FILE)
        top = self.floor
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            seg = _Segment(path)
            data = path.read_bytes()
            seg.size = len(data)
            for line in data.splitlines(keepends=True):
                rec = _parse(line) if line.endswith(b"\n") else None
                if rec is None:
                    self.corrupt += 1
                    continue
                if seg.first is None:
                    seg.first = rec.seq
                seg.last = rec.seq
                if rec.seq > self.floor:
                    self.replay_rows += 1
                    self.pending_kinds[rec.kind] = self.pending_kinds.get(rec.kind, 0) + 1
                    if self.keep(rec.kind, rec.row):
                        self.kept[rec.seq] = rec
                        self.kept_bytes += len(line)
                    if self.summarize is not None:
                        self.summarize(seg.summary, rec.kind, rec.row)
            if seg.last is None or seg.last <= self.floor:
                path.unlink()
                continue
            top = max(top, seg.last)
            self.segments.append(seg)
        self.next_seq = top + 1
        if self.corrupt:
            log.warning("spool %s: skipped %d torn/corrupt line(s) left by a previous run",
                        self.dir, self.corrupt)
        self._new_segment()

    def _new_segment(self) -> None:
        path = self.dir / f"{self.next_seq:016d}{SUFFIX}"
        if any(s.path == path for s in self.segments):  # an empty open segment: reuse it
            path = self.dir / f"{self.next_seq:016d}-{len(self.segments)}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.segments.append(_Segment(path, size=os.fstat(self._fd).st_size))

    def close(self) -> None:
        fds = self.sync_fds()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None
        for fd in fds:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def sync_fds(self) -> list[int]:
        """Descriptors to fsync off the event loop, then close: rotated-out segments and a
        duplicate of the open one (so a rotation meanwhile cannot pull it away)."""
        fds = [s.unsynced_fd for s in self.segments if s.unsynced_fd is not None]
        for s in self.segments:
            s.unsynced_fd = None
        if self._fd is not None and self.dirty:
            fds.append(os.dup(self._fd))
        self.dirty = False
        return fds

    # --- state ----------------------------------------------------------------------------------
    @property
    def needs_sync(self) -> bool:
        return self.dirty or any(s.unsynced_fd is not None for s in self.segments)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def pending(self) -> int:
        """Rows accepted but neither committed nor dropped."""
        return self.next_seq - 1 - self.floor

    # --- writing --------------------------------------------------------------------------------
    def append(self, kind: str, row: dict[str, Any]) -> int | None:
        """Write one row; returns its seq, or None if the disk refused it (counted, logged)."""
        seq = self._write(kind, row)
        if seq is not None:
            self._enforce_limit()
        return seq

    def _write(self, kind: str, row: dict[str, Any]) -> int | None:
        assert self._fd is not None, "spool not open"
        seq = self.next_seq
        line = encode_line(seq, kind, row)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 1000 == 0:
                log.error("spool %s: cannot write (%s): %d row(s) refused so far",
                          self.dir, e, self.write_errors)
            return None
        seg = self.segments[-1]
        seg.size += len(line)
        if seg.first is None:
            seg.first = seq
        seg.last = seq
        if self.summarize is not None:
            self.summarize(seg.summary, kind, row)
        self.next_seq += 1
        self.dirty = True
        if self.keep(kind, row):
            self.kept[seq] = Record(seq, kind, row)
            self.kept_bytes += len(line)
        if seg.size >= self.segment_bytes:
            self._rotate()
        return seq

    def _rotate(self) -> None:
        assert self._fd is not None
        self.segments[-1].unsynced_fd = self._fd  # fsynced and closed by the writer's next sync
        self._fd = None
        self._new_segment()

    def _enforce_limit(self) -> None:
        while self.bytes > self.max_bytes and len(self.segments) > 1:
            seg = self.segments[0]
            if seg.last is None or seg.last <= self.floor:
                self._remove_oldest()
                continue
            lo = max(seg.first or 0, self.floor + 1)
            hi = seg.last
            keep = sorted(s for s in self.kept if lo <= s <= hi)
            recs = [self._unkeep(s) for s in keep]
            moved: list[tuple[int, Record]] = []
            lost: list[Record] = []
            if recs and self.kept_bytes + sum(_line_bytes(r) for r in recs) <= self.max_bytes // 2:
                for rec in recs:  # written before the old segment goes: a crash keeps both
                    new = self._write(rec.kind, rec.row)
                    if new is None:
                        lost.append(rec)
                    else:
                        moved.append((rec.seq, self.kept[new]))
            else:
                lost = recs
            seg = self._remove_oldest()
            self.drops.append(Drop(lo, hi, hi - lo + 1 - len(moved), seg.summary, moved, lost))
            self.floor = hi

    def _remove_oldest(self) -> _Segment:
        seg = self.segments[0]
        if (self.summarize is not None and seg.first is not None and seg.last is not None
                and seg.first <= self.floor < seg.last):
            seg.summary = self._summary_above_floor(seg)  # partly acked: its summary is too wide
        self.segments.pop(0)
        if seg.unsynced_fd is not None:  # gone anyway: no point in syncing it
            os.close(seg.unsynced_fd)
            seg.unsynced_fd = None
        seg.path.unlink(missing_ok=True)
        self._hint = None
        return seg

    def _summary_above_floor(self, seg: _Segment) -> dict[str, Any]:
        assert self.summarize is not None
        summary: dict[str, Any] = {}
        try:
            with open(seg.path, "rb") as f:
                for line in f:
                    rec = _parse(line) if line.endswith(b"\n") else None
                    if rec is not None and rec.seq > self.floor:
                        self.summarize(summary, rec.kind, rec.row)
        except OSError as e:  # keep the append-time summary (a superset) rather than nothing
            log.error("spool %s: cannot re-read %s before dropping it (%s)", self.dir,
                      seg.path.name, e)
            return seg.summary
        return summary

    # --- reading --------------------------------------------------------------------------------
    def read(self, start: int, limit: int) -> list[Record]:
        """Up to ``limit`` records with seq >= ``start``, in order, from the files."""
        out: list[Record] = []
        for seg in self.segments:
            if seg.last is None or seg.last < start:
                continue
            offset = 0
            if self._hint and self._hint[0] == seg.path and self._hint[2] <= start:
                offset = self._hint[1]
            with open(seg.path, "rb") as f:
                f.seek(offset)
                pos = offset
                for line in f:
                    pos += len(line)
                    if not line.endswith(b"\n"):
                        break  # a torn tail (counted at open)
                    rec = _parse(line)
                    if rec is None or rec.seq < start:
                        continue
                    out.append(rec)
                    if len(out) >= limit:
                        self._hint = (seg.path, pos, rec.seq + 1)
                        return out
        return out

    # --- acknowledging --------------------------------------------------------------------------
    def save(self) -> None:
        """Persist the ack position with the ledger that describes it (one atomic rename)."""
        tmp = self.dir / (ACK_FILE + ".tmp")
        tmp.write_text(json.dumps({"ack": self.floor, "ledger": self.ledger},
                                  separators=(",", ":")))
        os.replace(tmp, self.dir / ACK_FILE)

    def ack(self, seq: int) -> None:
        """Everything <= seq is in the database: persist that, delete/trim what is done."""
        if seq <= self.floor:
            return
        self.floor = seq
        self.save()
        if self.kept:
            for s in [s for s in self.kept if s <= seq]:
                self._unkeep(s)
        while len(self.segments) > 1 and (self.segments[0].last or 0) <= seq:
            self._remove_oldest()
        cur = self.segments[-1]
        if cur.size and cur.last is not None and cur.last <= seq and self._fd is not None:
            os.ftruncate(self._fd, 0)  # O_APPEND: the next write lands at offset 0
            cur.size, cur.first, cur.last = 0, None, None
            cur.summary = {}
            self._hint = None

    def _unkeep(self, seq: int) -> Record:
        rec = self.kept.pop(seq)
        self.kept_bytes -= _line_bytes(rec)
        return rec

    def take_drops(self) -> list[Drop]:
        out, self.drops = self.drops, []
        return out


def _read_ack(path: Path) -> tuple[int, dict[str, Any]]:
    """(ack seq, ledger) from the ack file; (0, {}) when absent or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return 0, {}
    try:
        d = json.loads(text or "0")
    except ValueError:
        log.warning("spool ack file %s unreadable: replaying everything it holds", path)
        return 0, {}
    if isinstance(d, int):
        return d, {}
    if isinstance(d, dict) and isinstance(d.get("ack"), int):
        ledger = d.get("ledger")
        return d["ack"], ledger if isinstance(ledger, dict) else {}
    return 0, {}
