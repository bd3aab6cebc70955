"""Raw capture (``--raw-dir``): every websocket frame and REST body with its receipt time.

Hourly gzip JSON lines, ``raw-YYYYMMDDHH.jsonl.gz``, one object per line:
``{"t": receipt epoch s, "src": "clob" | "rtds" | "clob:open" | "clob:close" | "rtds:open" |
"rtds:close" | "gamma:<url>" | "clob:<url>" | "tick", "body": text}``. ``tick`` lines mark when
each live snapshot was taken (``body`` = ``{"tick_ms": .., "captured": {"SYM:slot_ts": epoch s}}``,
with ``"window_s"`` when the collector ran several families: a replay reads its family's)
so ``slotml rederive`` can cut the replay at the same instants and reproduce the live rows
exactly. ``clob:sub`` (``{"open": bool, "tokens": {token: [symbol, window_s, slot_ts, outcome]}}``)
and ``clob:unsub`` (a list of tokens) lines say which tokens the trade tape followed from when, so
the replay reproduces the prints (same occurrence keys) and the tape gaps. Each hour's file is a series of gzip members (flushed every ``flush_s``), so a killed
collector loses at most the last few seconds and the file stays readable up to there.
"""

from __future__ import annotations

import calendar
import gzip
import json
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slotml import venue
from slotml.errors import UserError
from slotml.ingest.books import BookStore
from slotml.ingest.feeds.gamma import parse_market
from slotml.ingest.metrics import Metrics
from slotml.ingest.prices import PriceBook
from slotml.ingest.schema import SNAPSHOTS, TAPE_GAPS, TRADES
from slotml.ingest.snapshot import grid_tick_ms
from slotml.ingest.store import open_store
from slotml.ingest.store.base import RowRejected, coerce_row
from slotml.ingest.tape_feed import TapeRecorder
from slotml.ingest.window import Window, fill_bases, window_row
from slotml.ingest.wire import ParseError

log = logging.getLogger(__name__)


class RawWriter:
    def __init__(self, raw_dir: Path, flush_s: float = 2.0, keep_days: float | None = None,
                 clock: Any = time.time) -> None:
        self.dir = Path(raw_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_s
        self.keep_days = keep_days
        self.clock = clock
        self.deleted = 0  # files removed by retention
        self._hour: str | None = None
        self._buf: list[str] = []
        self._last_flush = time.monotonic()
        self.lines = 0
        self.errors = 0
        self.prune()

    def _path(self, hour: str) -> Path:
        return self.dir / f"raw-{hour}.jsonl.gz"

    def prune(self) -> int:
        """Delete capture files whose hour ended more than ``keep_days`` ago; how many."""
        if self.keep_days is None:
            return 0
        cutoff = self.clock() - self.keep_days * 86400
        n = 0
        for path in self.dir.glob("raw-*.jsonl.gz"):
            try:
                start = calendar.timegm(time.strptime(path.name[4:14], "%Y%m%d%H"))
            except ValueError:
                continue  # not ours
            if start + 3600 <= cutoff:
                try:
                    path.unlink()
                    n += 1
                except OSError as e:
                    log.warning("raw capture retention: cannot delete %s (%s)", path, e)
        if n:
            self.deleted += n
            log.info("raw capture retention: deleted %d file(s) older than %g day(s)", n,
                     self.keep_days)
        return n

    def write(self, src: str, body: str, recv_ts: float) -> None:
        hour = time.strftime("%Y%m%d%H", time.gmtime(recv_ts))
        if hour != self._hour:
            self.flush()
            self._hour = hour
            self.prune()
        self._buf.append(json.dumps({"t": recv_ts, "src": src, "body": body},
                                    separators=(",", ":")))
        self.lines += 1
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buf or self._hour is None:
            return
        data = ("\n".join(self._buf) + "\n").encode()
        self._buf = []
        try:
            with open(self._path(self._hour), "ab") as f:
                f.write(gzip.compress(data, compresslevel=6))
        except OSError as e:  # a full disk must not stop collection
            self.errors += 1
            log.warning("raw capture write failed: %s", e)

    def close(self) -> None:
        self.flush()


def read_raw(raw_dir: Path) -> Iterator[dict[str, Any]]:
    """Every captured line in time order of files (lines within a file are in receipt order).

    A truncated last member (a killed writer) ends that file quietly.
    """
    for path in sorted(Path(raw_dir).glob("raw-*.jsonl.gz")):
        data = path.read_bytes()
        text = _gunzip_members(data)
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _gunzip_members(data: bytes) -> str:
    out: list[bytes] = []
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(d.decompress(data))
        except zlib.error:
            break
        if not d.eof:
            break
        data = d.unused_data
    return b"".join(out).decode("utf-8", "replace")


class Replay:
    """Feeds a raw capture through the collector's own books, prices and row function.

    At the live cadence the ``tick`` markers give the exact cut (the capture is in processing
    order) and the exact capture times, so the rows come out equal to the live ones; at any
    other cadence the grid instants are synthesised from receipt times.
    """

    def __init__(self, family: str, symbols: tuple[str, ...], stale_after: float) -> None:
        self.family = family
        self.window_s = venue.family_seconds(family)
        self.symbols = symbols
        self.stale_after = stale_after
        self.metrics = Metrics()
        self.books = BookStore(self.metrics)
        self.prices = PriceBook(symbols, self.metrics, max(3600.0, 4 * self.window_s + 600.0),
                                boundary_s=self.window_s)
        self.windows: dict[tuple[str, int], Any] = {}
        self.clob_connected = False
        self.clob_last_data: float | None = None
        self.clob_last_message: float | None = None
        self.trades: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self.tape = TapeRecorder(self.metrics, self.trades.append, self.gaps.append)

    def feed(self, line: dict[str, Any]) -> None:
        src, body, t = str(line.get("src", "")), line.get("body", ""), float(line.get("t", 0))
        if src == "clob":
            self.clob_last_message = t
            s = body.strip()
            if s and s != "PONG":
                events = self.books.decode(s)
                self.books.apply_events(events, t)
                if events:
                    self.tape.events(events, t)
                self.clob_last_data = t
        elif src == "rtds":
            self.prices.apply_frame(body, t)
        elif src == "clob:open":
            self.books.invalidate_all()
            self.clob_connected, self.clob_last_data = True, t
            self.tape.opened(t)
        elif src == "clob:close":
            self.books.invalidate_all()
            self.clob_connected = False
            self.tape.closed(self.clob_last_message)
        elif src == "clob:sub":
            sub = json.loads(body)
            self.tape.subscribed(sub["tokens"], t, bool(sub["open"]))
        elif src == "clob:unsub":
            self.tape.forget(json.loads(body))
        elif src.startswith("gamma:") and "/events/slug/" in src:
            try:
                info = parse_market(json.loads(body), self.family, self.window_s)
            except (ParseError, json.JSONDecodeError):
                return
            if info.family != self.family:
                return  # a capture of several families: replayed one family at a time
            if info.symbol in self.symbols and (info.symbol, info.slot_ts) not in self.windows:
                self.windows[(info.symbol, info.slot_ts)] = Window(info)

    def rows_at(self, tick_ms: int, captured: dict[str, float] | None, now: float
                ) -> list[dict[str, Any]]:
        out = []
        tick_s = tick_ms / 1000.0
        fresh = (self.clob_connected and self.clob_last_data is not None
                 and now - self.clob_last_data <= self.stale_after)
        for win in self.windows.values():
            info = win.info
            if not (info.slot_ts <= tick_s < info.end_ts):
                continue
            name = f"{info.symbol}:{info.slot_ts}"
            if captured is not None and name not in captured:
                continue  # the live collector did not have this window at that tick
            at = captured[name] if captured is not None else now
            fill_bases(win, self.prices)
            out.append(window_row(win, tick_ms, at, self.books, self.prices, fresh,
                                  self.stale_after, self.metrics))
        return out

    def run(self, lines: Iterator[dict[str, Any]], cadence: float) -> list[dict[str, Any]]:
        step = round(cadence * 1000)
        rows: list[dict[str, Any]] = []
        markers = None  # decided by the first tick marker: same cadence -> use markers
        next_ms: int | None = None
        for line in lines:
            t = float(line.get("t", 0))
            if line.get("src") == "tick":
                info = json.loads(line["body"])
                if info.get("window_s", self.window_s) != self.window_s:
                    continue  # another family's tick (a --family a,b capture)
                if markers is None:
                    markers = info["tick_ms"] % step == 0
                if markers and info["tick_ms"] % step == 0:
                    rows += self.rows_at(int(info["tick_ms"]), info.get("captured"), t)
                continue
            if not markers:
                if next_ms is None:
                    next_ms = grid_tick_ms(t, cadence) + step
                while t * 1000 >= next_ms:
                    rows += self.rows_at(next_ms, None, next_ms / 1000.0)
                    next_ms += step
            self.feed(line)
        return rows


def derive(raw_dir: str | Path, family: str, symbols: tuple[str, ...], cadence: float,
           stale_after: float = 30.0) -> tuple[list[dict[str, Any]], Replay]:
    """Snapshot rows of a capture, and the replay (its ``trades`` and ``gaps`` rows)."""
    if not Path(raw_dir).is_dir():
        raise UserError(f"raw capture directory {raw_dir} does not exist")
    replay = Replay(family, symbols, stale_after)
    return replay.run(read_raw(Path(raw_dir)), cadence), replay


def derive_rows(raw_dir: str | Path, family: str, symbols: tuple[str, ...], cadence: float,
                stale_after: float = 30.0) -> list[dict[str, Any]]:
    return derive(raw_dir, family, symbols, cadence, stale_after)[0]


async def rederive(raw_dir: str | Path, db: Any, family: str, symbols: tuple[str, ...],
                   cadence: float, stale_after: float = 30.0) -> dict[str, int]:
    """``slotml rederive``: rebuild snapshot rows, prints and tape gaps from a capture into the
    store at ``db``; returns the rows written per table (rows already there are not rewritten)."""
    rows, replay = derive(raw_dir, family, symbols, cadence, stale_after)
    rejected = 0

    def valid(table: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal rejected
        out = []
        for r in batch:
            try:
                out.append(coerce_row(table, r))
            except RowRejected as e:
                rejected += 1
                if rejected <= 5:
                    log.warning("rederive: row skipped (%s)", e)
        return out

    store = open_store(db)
    await store.connect()
    try:
        await store.ensure_schema()
        return {"slot_snapshots": await store.insert_snapshots(valid(SNAPSHOTS, rows)),
                "slot_trades": await store.insert_trades(valid(TRADES, replay.trades)),
                "slot_tape_gaps": await store.insert_tape_gaps(valid(TAPE_GAPS, replay.gaps)),
                "rejected": rejected}
    finally:
        await store.close()
