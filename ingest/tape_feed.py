"""The trade tape of the CLOB market channel: prints into ``slot_trades``, holes into ``slot_tape_gaps``.

``TapeRecorder`` is driven by ``ClobFeed`` (live) and by ``raw.Replay`` (``slotml rederive``) with
the same calls in the same order and with the same times, so a rederive yields the same rows
(same occurrence keys: a store that already has them stores nothing twice):

* ``opened(t)``: a connection is up (``t``: the ``clob:open`` capture time);
* ``subscribed(windows, t, on_open)``: tokens subscribed at ``t`` with their window keys (the
  ``clob:sub`` capture line); on a reopen, every token gets a ``reconnect`` gap from the last
  moment the previous connection was known alive; a token first subscribed while its window is
  in progress gets a ``start`` gap (window start -> ``t``);
* ``events(events, t)``: one frame's decoded events (the books decoded them already);
* ``closed(last_alive)``: the connection dropped; ``last_alive`` is the last frame (PONG too);
* ``forget(tokens)``: tokens no longer followed (the ``clob:unsub`` capture line).

Prints for tokens not subscribed through ``subscribed`` are counted (``trades_untracked``), bad
prints are counted by ``tape.py``'s reason (``trades_skipped``). Metrics: ``trades_received``
(valid prints), ``trades_accepted`` (handed to the durable writer, which counts what became of
them: ``trades_stored``, ``trades_dropped``, ``trades_rejected``), ``tape_gaps`` (by reason).
``spool-full`` gaps (prints a full spool dropped) are recorded and counted by the durable
writer (``slotml.ingest.store.writer``), which alone knows what it dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from slotml.ingest.metrics import Metrics
from slotml.ingest.tape import Occurrences, has_prints, parse_prints, trade_row

Row = dict[str, Any]


class WindowKeys(NamedTuple):
    """Where a token's prints go: its window's keys and which outcome the token is."""

    symbol: str
    window_s: int
    slot_ts: int
    outcome: str  # Up | Down


def window_keys(windows: Mapping[Any, Any], by_token: Mapping[str, Any],
                token: str) -> WindowKeys | None:
    """A token's ``WindowKeys`` from the collector's maps (``None``: not tracked)."""
    key = by_token.get(token)
    win = windows.get(key) if key is not None else None
    if win is None:
        return None
    i = win.info
    return WindowKeys(i.symbol, int(i.window_s), int(i.slot_ts),
                      "Up" if token == i.up_token_id else "Down")


class TapeRecorder:
    """Prints and gaps of one market-channel feed (one ``Occurrences`` for all its tokens)."""

    def __init__(self, metrics: Metrics, put_trade: Callable[[Row], None],
                 put_gap: Callable[[Row], None]) -> None:
        self.metrics = metrics
        self.put_trade = put_trade
        self.put_gap = put_gap
        self.occ = Occurrences()
        self.windows: dict[str, WindowKeys] = {}  # subscribed tokens
        self._open_at: float | None = None
        self._drop_from: float | None = None  # a drop not yet followed by a resubscription

    def opened(self, t: float) -> None:
        self._open_at = t

    def closed(self, last_alive: float | None) -> None:
        if self._drop_from is not None:
            return  # the previous drop was never resubscribed: its gap starts earlier
        alive = [x for x in (last_alive, self._open_at) if x is not None]
        if alive:
            self._drop_from = max(alive)

    def subscribed(self, windows: Mapping[str, WindowKeys], t: float, on_open: bool) -> None:
        for token, keys in windows.items():
            keys = WindowKeys(*keys)
            first = token not in self.windows
            self.windows[token] = keys
            if on_open and self._drop_from is not None:
                self._gap(token, keys, self._drop_from, t, "reconnect")
            if first and keys.slot_ts < t:
                self._gap(token, keys, float(keys.slot_ts), t, "start")
        if on_open:
            self._drop_from = None

    def forget(self, tokens: Iterable[str]) -> None:
        tokens = list(tokens)
        for token in tokens:
            self.windows.pop(token, None)
        self.occ.forget(tokens)

    def events(self, events: list[Any], t: float) -> int:
        """Record one frame's prints; returns how many were handed to the writer."""
        if not has_prints(events):
            return 0
        prints, bad = parse_prints(events, t)
        for reason in bad:
            self.metrics.inc("trades_skipped", reason=reason)
        if not prints:
            return 0
        accepted = 0
        windows, occ, put = self.windows, self.occ, self.put_trade
        for p in prints:
            keys = windows.get(p.token_id)
            if keys is None:
                continue
            put(trade_row(p, occ.next(p), symbol=keys.symbol, window_s=keys.window_s,
                          slot_ts=keys.slot_ts, outcome=keys.outcome))
            accepted += 1
        self.metrics.inc("trades_received", len(prints))  # once per frame, not per print
        if accepted < len(prints):
            self.metrics.inc("trades_untracked", len(prints) - accepted)
        if accepted:
            self.metrics.inc("trades_accepted", accepted)
        return accepted

    def _gap(self, token: str, keys: WindowKeys, from_ts: float, to_ts: float,
             reason: str) -> None:
        self.metrics.inc("tape_gaps", reason=reason)
        self.put_gap({"symbol": keys.symbol, "window_s": keys.window_s, "slot_ts": keys.slot_ts,
                      "token_id": token, "from_ts": from_ts, "to_ts": max(from_ts, to_ts),
                      "reason": reason})
