"""The CLOB market channel: order-book frames for a changing set of tokens into a ``BookStore``.

Tokens come and go while the socket stays open (subscribe/unsubscribe operations); a book that
looks wrong is resynced by re-subscribing its token on the same socket (a fresh ``book``
snapshot, ordered with the updates). Reconnects, pings and the stall watchdog are ``WsFeed``'s.
Each frame is decoded once; its events go to the books and, unless the tape is off, to a
``TapeRecorder`` (``tape_feed``), with ``clob:sub``/``clob:unsub`` capture lines so a rederive
knows which tokens were followed, and from when.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from slotml.ingest.books import BookStore
from slotml.ingest.metrics import Metrics
from slotml.ingest.tape_feed import TapeRecorder, WindowKeys
from slotml.ingest.transport.ws import RawHook, WsFeed


class ClobFeed(WsFeed):
    """The CLOB market channel for a changing set of tokens, feeding a ``BookStore``."""

    name = "clob"

    def __init__(self, url: str, books: BookStore, metrics: Metrics, ping_interval: float = 10.0,
                 stall_after: float = 30.0, backoff_max: float = 30.0,
                 on_raw: RawHook | None = None, tape: TapeRecorder | None = None) -> None:
        super().__init__(url, metrics, ping_interval, stall_after, backoff_max, on_raw)
        self.books = books
        self.tape = tape
        # a token's window keys for the tape (the collector's map; None: not tracked)
        self.window_of: Callable[[str], WindowKeys | None] = lambda _token: None
        self.tokens: set[str] = set()
        # After close 1000 "all subscribed assets resolved": tokens to keep following (the
        # collector keeps those of windows not yet ended; the venue would not close for them).
        self.keep: Callable[[str], bool] = lambda _token: False
        self.resync_every = 2.0
        self._resynced: dict[str, float] = {}

    def wanted(self) -> bool:
        return bool(self.tokens)

    def add_tokens(self, tokens: Iterable[str]) -> None:
        new = [t for t in tokens if t not in self.tokens]
        if not new:
            return
        self.tokens.update(new)
        if self._ws is not None:
            asyncio.ensure_future(self.send({"operation": "subscribe", "assets_ids": new,
                                             "custom_feature_enabled": True}))
            self._tape_subscribed(new, time.time(), on_open=False)
        self._wake.set()

    def remove_tokens(self, tokens: Iterable[str]) -> None:
        tokens = list(tokens)
        gone = [t for t in tokens if t in self.tokens]
        self._forget(tokens)  # also tokens a close already forgot (a later retire may have marked them)
        if not gone:
            return
        if self._ws is not None:
            asyncio.ensure_future(self.send({"operation": "unsubscribe", "assets_ids": gone}))

    def _forget(self, gone: list[str]) -> None:
        """Tokens no longer followed: their books, retired marks and resync times go too."""
        self.tokens.difference_update(gone)
        self.books.drop(gone)
        for t in gone:
            self._resynced.pop(t, None)
        if self.tape is not None and gone:
            self.tape.forget(gone)
            if self.on_raw is not None:
                self.on_raw("clob:unsub", json.dumps(sorted(gone)), time.time())

    def _tape_subscribed(self, tokens: Iterable[str], t: float, on_open: bool) -> None:
        if self.tape is None:
            return
        keys = {tok: k for tok in sorted(tokens) if (k := self.window_of(tok)) is not None}
        if self.on_raw is not None:
            self.on_raw("clob:sub", json.dumps({"open": on_open, "tokens": keys}), t)
        self.tape.subscribed(keys, t, on_open)

    async def on_open(self, ws: Any) -> None:
        self.books.invalidate_all()
        await ws.send(json.dumps({"type": "market", "assets_ids": sorted(self.tokens),
                                  "custom_feature_enabled": True}))
        if self.tape is not None:  # subscribed as of the open (the clob:open capture time)
            t = self.last_data_at if self.last_data_at is not None else time.time()
            self.tape.opened(t)
            self._tape_subscribed(self.tokens, t, on_open=True)

    def on_close(self) -> None:
        self.books.invalidate_all()
        if self.tape is not None:
            self.tape.closed(self.last_message_at)

    def on_all_resolved(self) -> None:
        self.books.invalidate_all()
        self._forget([t for t in self.tokens if not self.keep(t)])
        if self.tokens:
            self.metrics.inc("close_all_resolved_unexpected", stream=self.name)

    def on_frame(self, text: str, recv_ts: float) -> bool:
        s = text.strip()
        if s == "PONG" or not s:
            return False
        events = self.books.decode(s)
        self.books.apply_events(events, recv_ts)
        if self.tape is not None and events:
            self.tape.events(events, recv_ts)
        if self.books.suspect:
            # at most one resync per token per resync_every seconds (the snapshot needs a
            # round trip, and updates keep arriving meanwhile)
            toks = sorted(t for t in self.books.suspect & self.tokens
                          if recv_ts - self._resynced.get(t, 0.0) >= self.resync_every)
            self.books.suspect.clear()
            for t in toks:
                self._resynced[t] = recv_ts
            if toks:
                self.metrics.inc("book_resyncs", len(toks), stream=self.name)
                asyncio.ensure_future(self._resync(toks))
        return True

    async def _resync(self, tokens: list[str]) -> None:
        """Ask for fresh ``book`` snapshots on the same socket (kept in order with updates)."""
        await self.send({"operation": "unsubscribe", "assets_ids": tokens})
        await self.send({"operation": "subscribe", "assets_ids": tokens,
                         "custom_feature_enabled": True})
