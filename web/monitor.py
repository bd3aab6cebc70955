"""The live calibration monitor (``slotml monitor``; a background task of ``slotml api``).

For every window of the store resolved since the last pass, the current model is scored at its
decision points exactly as a bot scores it: a fresh ``serve.online.OnlineFeatures`` is fed the
store's snapshot rows and resolution rows in time order (the window and the earlier windows its
regime features read; a resolution counts only from the ``resolved_at`` / ``final_seen_at`` the
collector stamped), ``serve.scorer.Scorer`` gives P(Up), and ``serve.gate.EntryGate.choose`` is
asked with what ``decide_online`` would give it as the bot asks (``EntryGate.online_inputs``:
the fraction, and an expired model's fallback filters' move and minutes) and the book's bids (a
maker's limits), so the declines can be tallied by reason; the gate's own ``model_expired`` /
``out_of_distribution`` counters are in the state and the metrics.

Each scored row is appended to a ledger, one JSON line per row, one file per model file
(``<monitor-dir>/<model file stem>.jsonl``): a restart reads it back, so no window is counted
twice, and the dashboard's "live model" page reads it. The numbers over the last
``--monitor-windows`` rows (Brier, ECE, log loss of the model and of the book mid, expected
Brier, the health rule) are ``web/monitor_stats.py``'s. A change of the model pointer starts a
new ledger and an empty rolling window for the new model.

Windows resolved more than ``PENDING_S`` after their start are never scored (counted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slotml.features.contract import frac_ms
from slotml.ingest.metrics import Metrics, prometheus_text
from slotml.ingest.store import Store
from slotml.model_file import ModelFileError
from slotml.serve.gate import (
    INVALID_P_WIN,
    MODEL_EXPIRED,
    OUT_OF_DISTRIBUTION,
    EntryGate,
    FeeSchedule,
    GateConfig,
)
from slotml.serve.online import IDX, OnlineFeatures
from slotml.serve.scorer import DOWN, UP, Scorer
from slotml.settings import DbUrl
from slotml.web import monitor_stats as ms

log = logging.getLogger(__name__)

DEFAULT_ROWS = 400
DEFAULT_INTERVAL_S = 30.0
PENDING_S = 6 * 3600  # a window not resolved within this of its start is given up
CHUNK_S = 86400  # windows scored per store read (a day's slots)
LEAD_WINDOWS = 5  # earlier windows fed first: prev_vol_4 reads four, prev_up one
GATE_COUNTERS = (MODEL_EXPIRED, OUT_OF_DISTRIBUTION, INVALID_P_WIN)  # /health, /metrics


@dataclass(frozen=True)
class MonitorConfig:
    """``slotml monitor``'s typed config (logged once at start-up)."""

    db: DbUrl
    model_path: Path
    monitor_dir: Path
    rows: int = DEFAULT_ROWS  # --monitor-windows: resolved decision rows in the rolling window
    since: int | None = None  # first window start scored; None: after the model's training data
    interval_s: float = DEFAULT_INTERVAL_S


def model_since(scorer: Scorer) -> int | None:
    """The first window after everything the model was fitted or calibrated on (its splits)."""
    splits = scorer.meta.splits or {}
    seen = [int((splits.get(k) or {}).get("to")) for k in ("train", "early_stop", "calibration")
            if (splits.get(k) or {}).get("to") is not None]
    return max(seen) + int(scorer.meta.window_s) if seen else None


def ledger_path(monitor_dir: Path, model_file: Path) -> Path:
    return Path(monitor_dir) / f"{Path(model_file).stem}.jsonl"


def read_ledger(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(rows, unreadable lines) of a ledger; a missing file is empty. A line cut by a crash
    is skipped and counted (its window is scored again: it was never complete)."""
    rows: list[dict[str, Any]] = []
    bad = 0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    bad += 1
    except FileNotFoundError:
        pass
    return rows, bad


def rows_arrays(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, p, book mid with NaN for none) of ledger rows."""
    y = np.array([r["y"] for r in rows], np.float64)
    p = np.array([r["p"] for r in rows], np.float64)
    mid = np.array([math.nan if r.get("mid") is None else r["mid"] for r in rows], np.float64)
    return y, p, mid


class Rolling:
    """The last ``size`` rows and the health rule's CUSUM over every row added (in order)."""

    def __init__(self, size: int = DEFAULT_ROWS) -> None:
        self.size = size
        self.window: deque[dict[str, Any]] = deque()
        self.v_sum: Counter = Counter()  # per point: sum of p(1-p)(1-2p)^2 in the window
        self.n: Counter = Counter()  # per point: rows in the window
        self.cusum = ms.Cusum()

    def add(self, r: dict[str, Any]) -> None:
        """One scored row into the rolling window and the CUSUM."""
        if len(self.window) >= self.size:
            old = self.window.popleft()
            self.v_sum[old["point"]] -= _v(old["p"])
            self.n[old["point"]] -= 1
        self.window.append(r)
        pt, p = r["point"], r["p"]
        self.v_sum[pt] += _v(p)
        self.n[pt] += 1
        if len(self.window) >= ms.MIN_ROWS:  # the point's mean variance is settled enough
            self.cusum.add(pt, (r["y"] - p) * (1 - 2 * p), self.v_sum[pt] / self.n[pt])

    def summary(self) -> dict[str, Any]:
        rows = list(self.window)
        return ms.summary(*rows_arrays(rows), cusum=self.cusum.value(),
                          warming=len(rows) < ms.MIN_ROWS)


@dataclass
class _Model:
    scorer: Scorer
    gate: EntryGate
    ledger: Path
    since: int
    rolling: Rolling
    done: set = field(default_factory=set)  # (symbol, slot_ts) of windows scored
    frontier: int = 0  # latest slot_ts scored


def _v(p: float) -> float:
    return p * (1 - p) * (1 - 2 * p) ** 2


class Monitor:
    """One model's live calibration over a store. ``await step()`` scores what is new;
    ``state()`` is the JSON of /health, ``metrics_text()`` the Prometheus text.

    ``on_window(monitor, symbol, slot_ts, rows)`` (optional) is called after each window is
    added and the state recomputed (the acceptance bench counts rows to the first alarm)."""

    def __init__(self, cfg: MonitorConfig, store: Store,
                 on_window: Callable[[Monitor, str, int, int], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.on_window = on_window
        self.metrics = Metrics()
        self.model: _Model | None = None
        self.summary: dict[str, Any] = ms.summary([], [], [])
        self.alarms = 0  # transitions into "unhealthy"
        self.last_pass_at: float | None = None
        self.last_error: str | None = None
        self._load()

    # -- the model ------------------------------------------------------------------------------
    def _load(self) -> None:
        scorer = Scorer.load(self.cfg.model_path)
        since = self.cfg.since if self.cfg.since is not None else model_since(scorer)
        if since is None:
            since = int(time.time()) // scorer.window_s * scorer.window_s
        m = _Model(scorer, EntryGate(GateConfig(model_path=str(self.cfg.model_path)), scorer),
                   ledger_path(self.cfg.monitor_dir, scorer.path), int(since), Rolling(self.cfg.rows))
        m.ledger.parent.mkdir(parents=True, exist_ok=True)
        rows, bad = read_ledger(m.ledger)
        if bad:
            log.warning("monitor ledger %s: %d unreadable line(s) skipped", m.ledger, bad)
        for r in rows:
            m.done.add((r["symbol"], int(r["slot_ts"])))
            m.frontier = max(m.frontier, int(r["slot_ts"]))
            m.rolling.add(r)
        self.model = m
        self._evaluate()
        log.info("monitor: model %s, windows from %d, %d rows already in %s", scorer.path,
                 m.since, len(rows), m.ledger)

    def _follow_pointer(self) -> None:
        m = self.model
        if m is None or not m.scorer.source_changed():
            return
        try:
            self._load()
        except ModelFileError as e:  # keep monitoring the old model; say so once per pass
            log.warning("monitor: model changed but cannot be loaded (%s); keeping %s", e, m.scorer.path)

    # -- a pass ---------------------------------------------------------------------------------
    async def step(self) -> int:
        """Score every newly resolved window; returns how many windows were scored."""
        self._follow_pointer()
        m = self.model
        assert m is not None
        w = m.scorer.window_s
        lo = max(m.since, m.frontier - PENDING_S)
        res = await self.store.fetch_resolutions(window_s=w, slot_ts_min=lo)
        pending = sorted((int(r["slot_ts"]), r["symbol"]) for r in res
                         if r.get("resolved_up") is not None and (r["symbol"], int(r["slot_ts"])) not in m.done)
        scored = 0
        while pending:
            first = pending[0][0]
            chunk = [k for k in pending if k[0] < first + CHUNK_S]
            pending = pending[len(chunk):]
            scored += await self._score_chunk(m, chunk)
        m.done = {k for k in m.done if k[1] >= m.frontier - 2 * PENDING_S}
        self.last_pass_at = time.time()
        return scored

    async def _score_chunk(self, m: _Model, chunk: list[tuple[int, str]]) -> int:
        w = m.scorer.window_s
        a, b = chunk[0][0], chunk[-1][0]
        snaps = await self.store.fetch_snapshots(window_s=w, slot_ts_min=a - LEAD_WINDOWS * w, slot_ts_max=b)
        res = await self.store.fetch_resolutions(window_s=w, slot_ts_min=a - LEAD_WINDOWS * w, slot_ts_max=b)
        snaps.sort(key=lambda r: (int(r["slot_ts"]), int(r["tick_ms"]), r["symbol"]))
        res.sort(key=lambda r: int(r["slot_ts"]))
        by_key = {(r["symbol"], int(r["slot_ts"])): r for r in res}
        wanted = set(chunk)
        online = OnlineFeatures.for_model(m.scorer)
        si = ri = 0
        done = 0
        for slot in range(a - LEAD_WINDOWS * w, b + 1, w):
            while si < len(snaps) and int(snaps[si]["slot_ts"]) <= slot:
                online.add_snapshot(snaps[si])
                si += 1
            while ri < len(res) and int(res[ri]["slot_ts"]) < slot:  # the previous windows'
                online.add_resolution(res[ri])
                ri += 1
            for sym in sorted({k[1] for k in wanted if k[0] == slot}):
                self._score_window(m, online, by_key[(sym, slot)])
                done += 1
            await asyncio.sleep(0)  # inside `slotml api`: let requests through between windows
        return done

    def _score_window(self, m: _Model, online: OnlineFeatures, res: dict[str, Any]) -> None:
        sym, slot, w = res["symbol"], int(res["slot_ts"]), m.scorer.window_s
        y = 1.0 if res["resolved_up"] else 0.0
        fee = FeeSchedule.from_row(res)
        rows = []
        for point in m.scorer.decision_points:
            decision_ms = slot * 1000 + frac_ms(point, w)
            vec = online.vector_at(sym, w, slot, decision_ms)
            # the gate gets what decide_online gives it as the bot asks (the fraction, and the
            # filters' move and minutes for an expired model's fallback), with this vector;
            # expiry is judged at the decision instant, as the bot met it, not today
            fraction, move, minutes = m.gate.online_inputs(online, sym, w, slot, decision_ms)
            now = decision_ms / 1000.0
            if vec is None:
                d = m.gate.choose(None, fraction, move_pct=move, minutes_into=minutes, now=now)
                self.metrics.inc("monitor_decisions", reason=d.code)
                continue
            vec = vec.copy()
            p = m.scorer.p_up(vec)
            bid_up, bid_down = float(vec[IDX["bid_up"]]), float(vec[IDX["bid_down"]])
            d = m.gate.choose(vec, fraction, prices={UP: bid_up, DOWN: bid_down},
                              min_order_size=res.get("min_order_size"), fee=fee, move_pct=move,
                              minutes_into=minutes, now=now)
            self.metrics.inc("monitor_decisions", reason=d.code)
            mid = float(vec[IDX["up_mid"]])
            if not (0.0 <= p <= 1.0):  # the gate declined it as invalid_p_win: no probability
                continue
            row = {"symbol": sym, "window_s": w, "slot_ts": slot, "point": round(point, 6),
                   "p": p, "y": y, "mid": mid if math.isfinite(mid) else None,
                   "code": d.code, "at": round(time.time(), 3)}
            if f"{MODEL_EXPIRED}:" in d.reason:  # decided past expiry (the fallback's code above)
                row["expired"] = True
            rows.append(row)
        with open(m.ledger, "a", encoding="utf-8") as f:  # the window's rows in one write
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        for r in rows:
            m.rolling.add(r)
        m.done.add((sym, slot))
        m.frontier = max(m.frontier, slot)
        self.metrics.inc("monitor_windows")
        self.metrics.inc("monitor_rows", len(rows))
        self._evaluate()
        if self.on_window is not None:
            self.on_window(self, sym, slot, len(rows))

    def _evaluate(self) -> None:
        m = self.model
        before = self.summary.get("status")
        self.summary = m.rolling.summary() if m is not None else ms.summary([], [], [])
        if self.summary["status"] == "unhealthy" and before != "unhealthy":
            self.alarms += 1
            log.warning("monitor: model %s unhealthy: calibration CUSUM %.1f > %.1f; over the "
                        "last %d rows observed Brier %.4f vs expected %.4f (Z %.2f)",
                        m.scorer.path if m else "?", self.summary["cusum"], self.summary["cusum_h"],
                        self.summary["rows"], self.summary["brier"], self.summary["expected_brier"],
                        self.summary["z"])

    # -- reporting ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The monitor's state as JSON-safe values (``/health``'s ``monitor``)."""
        m = self.model
        s = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in self.summary.items()}
        declined = Counter({k: int(v) for k, v in self.metrics.by_label("monitor_decisions", "reason").items()
                            if k != "enter"})
        return {**s, "cusum_points": m.rolling.cusum.state()["points"] if m else {},
                "gate_counters": self.gate_counters(),
                "model": str(m.scorer.path) if m else None, "ledger": str(m.ledger) if m else None,
                "since": m.since if m else None, "window_rows": self.cfg.rows,
                "windows_scored": int(self.metrics.get("monitor_windows")),
                "alarms": self.alarms, "declined": dict(declined),
                "latest_slot_ts": m.frontier or None if m else None,
                "last_pass_at": self.last_pass_at, "last_error": self.last_error}

    def gate_counters(self) -> dict[str, int]:
        """The current model's gate's own counters of the declines worth watching (an expired
        model's decisions, each counted whatever the fallback filters answered; out of
        distribution; invalid output), since the model was loaded."""
        c = self.model.gate.counters if self.model is not None else Counter()
        return {k: int(c.get(k, 0)) for k in GATE_COUNTERS}

    def gauges(self) -> dict[str, float | int | None]:
        s = self.summary
        out: dict[str, float | int | None] = {
            f"monitor_{k}": s[k] for k in ("rows", "z", "cusum", "cusum_h", "brier", "expected_brier", "ece", "log_loss",
                                           "book_brier", "book_ece", "book_log_loss",
                                           "book_rows_brier")}
        out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
        out["monitor_healthy"] = {"healthy": 1, "unhealthy": 0}.get(s["status"])
        out["monitor_alarms"] = self.alarms
        out.update({f"monitor_gate_{k}": v for k, v in self.gate_counters().items()})
        return out

    def metrics_text(self) -> str:
        return prometheus_text(self.metrics, self.gauges())

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Pass after pass every ``interval_s`` until ``stop`` is set; a store error is logged
        and retried at the next pass (the state keeps its last value)."""
        from slotml.ingest.store import StoreUnavailable

        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                n = await self.step()
                self.last_error = None
                if n:
                    s = self.summary
                    log.info("monitor: %d window(s) scored; %s over %d rows: Brier %.4f "
                             "(expected %.4f, book %.4f), Z %.2f", n, s["status"], s["rows"],
                             s["brier"], s["expected_brier"], s["book_brier"], s["z"])
            except StoreUnavailable as e:
                self.last_error = f"store unavailable: {e}"
                log.warning("monitor: %s", self.last_error)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.cfg.interval_s)
            except TimeoutError:
                pass
