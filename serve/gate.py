"""The entry gate: for a window and an outcome, enter or not, how many shares, and why.

With a model (``--model-path``): enter when p_win >= ``--min-confidence``; size = order_size x
(p_win - 0.5) / 0.5 (or fractional Kelly with ``--sizing kelly``), floored to whole shares and
clamped to [0, order_size]; below the market's minimum order size there is no entry. Asked
before the first or after the last trained decision point, the gate declines rather than
extrapolate. ``--min-edge E`` (off by default) also requires p_win - price - fee >= E, the fee
being the market's shares x rate x (p(1 - p))^exponent charged only to an order that TAKES
liquidity (a resting maker bid pays none).

The entry POLICY (``--policy``, default: the model file's ``policy`` key, else ``design``):
``design`` is the rule above, exactly as before (a model file without a ``policy`` key keeps it,
so reloading an old model never changes a running bot); ``edge`` is price-aware: enter when
edge = p_win - price - fee >= min_edge (the model's chosen value unless ``--min-edge`` says),
sized by fractional Kelly for a binary contract, f = (p_win - P)/(1 - P) with P = price + fee:
order_size x F x f shares, floored, raised to the market's minimum and capped at order_size
(entering is min_edge's call, Kelly only scales the size above the minimum).

A p_win that is not finite or lies outside [0, 1] (a graph that returns 5.0 or inf at run
time: the scorer checks its range only on two rows at load) is never sized: the gate declines
with ``invalid_p_win``, counts it in ``counters["invalid_p_win"]`` and logs a WARNING once per
loaded model.

Guards (``serve/guards.py``, checked before the model is scored): past ``--expires-after``
days (default 14) from the record's ``validated_at`` (else the model's training end) the model
is EXPIRED: ``--on-expired fallback`` (default) lets the manual filters decide, their reason
followed by ``; model_expired: ...``; ``refuse`` declines with ``model_expired``; ``ignore``
scores as usual. Every expired decision is counted in ``counters["model_expired"]``, with one
WARNING an hour at most. The clock is the decision instant: ``now=`` (epoch s; default the wall
clock), the decision tick in ``decide_online`` and the backtest. A vector with more than
``--ood-max`` (default 2) features outside the model's training 0.1%..99.9% range is declined
with ``out_of_distribution`` (counted in ``counters``); a model file without ranges skips it.

Without a model: the manual filters as bots always used them, on the spot move since the
window's start (``--filter-series settlement`` for the settlement series): enter the side the
move favours when ``--min-move-pct`` <= |move| <= ``--max-move-pct`` and at least
``--min-entry-minutes`` into the window, with the full order size.

``add_model_args(parser)`` adds every option to a bot's argparse parser (skipping any the bot
already defines, e.g. its own ``--order-size``); ``EntryGate.from_args(args)`` builds the gate.
Every decision can be logged as one JSON line (features, p_win, decision, size, reason).

About 520 lines, one module: every rule above is a step of the one decision a bot asks for;
what could live apart does (options in ``options.py``, expiry and OOD in ``guards.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from slotml.errors import UserError
from slotml.features.contract import FEATURES, SCALE_MINUTES
from slotml.serve.guards import ON_EXPIRED, ModelGuards
from slotml.serve.options import (  # noqa: F401 - re-exported: bots import them from here
    DEFAULT_EXPIRES_AFTER,
    DEFAULT_KELLY_FRACTION,
    DEFAULT_MAX_MOVE_PCT,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_ENTRY_MINUTES,
    DEFAULT_MIN_MOVE_PCT,
    DEFAULT_MIN_ORDER_SIZE,
    DEFAULT_OOD_MAX,
    DEFAULT_ORDER_SIZE,
    add_model_args,
)
from slotml.serve.scorer import DOWN, UP, Scorer, normalize_outcome

log = logging.getLogger(__name__)

# Flooring tolerance, relative to order_size: p_win comes from a float32 model output (0.7 is
# 0.69999999), and 10 x (p - 0.5) / 0.5 must still give 4 shares, not 3.
SIZE_EPS = 1e-6


@dataclass(frozen=True)
class FeeSchedule:
    """A market's fee schedule (slot_resolutions fee_rate, fee_exponent, fee_taker_only; a
    ``fee_rebate_share`` where a source records one: the share of the taker fee paid back to
    the maker, 0 = no rebate)."""

    rate: float = 0.0
    exponent: float = 1.0
    taker_only: bool = True
    rebate_share: float = 0.0

    @classmethod
    def from_row(cls, row: Any) -> FeeSchedule:
        """From a ``slot_resolutions`` row (missing values: no fee)."""
        get = row.get if hasattr(row, "get") else lambda k: getattr(row, k, None)
        rate = get("fee_rate")
        exp = get("fee_exponent")
        taker_only = get("fee_taker_only")
        return cls(rate=float(rate or 0.0), exponent=float(1.0 if exp is None else exp),
                   taker_only=True if taker_only is None else bool(taker_only),
                   rebate_share=float(get("fee_rebate_share") or 0.0))

    def per_share(self, price: float, taker: bool) -> float:
        """Fee per share for an order at ``price``: rate x (p(1 - p))^exponent, takers only."""
        if not taker or self.rate <= 0.0:
            return 0.0
        return self.rate * (price * (1.0 - price)) ** self.exponent


NO_FEE = FeeSchedule()


@dataclass(frozen=True)
class GateConfig:
    """Every gate option (one field per command-line flag of ``add_model_args``)."""

    model_path: str | None = None
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    order_size: float = DEFAULT_ORDER_SIZE
    min_order_size: float = DEFAULT_MIN_ORDER_SIZE
    min_edge: float | None = None
    sizing: str = "linear"  # linear | kelly
    kelly_fraction: float = DEFAULT_KELLY_FRACTION
    min_move_pct: float = DEFAULT_MIN_MOVE_PCT
    max_move_pct: float = DEFAULT_MAX_MOVE_PCT
    min_entry_minutes: float = DEFAULT_MIN_ENTRY_MINUTES
    filter_series: str = "spot"  # spot | settlement
    decision_log: str | None = None
    policy: str | None = None  # edge | design | None: the model file's, else design
    expires_after: float = DEFAULT_EXPIRES_AFTER  # days (serve/guards.py)
    on_expired: str = "fallback"  # fallback | refuse | ignore
    ood_max: int = DEFAULT_OOD_MAX  # features outside their training range before declining

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {self.min_confidence}")
        if self.order_size < 0 or self.min_order_size < 0:
            raise ValueError("order sizes must not be negative")
        if self.sizing not in ("linear", "kelly"):
            raise ValueError(f"sizing must be 'linear' or 'kelly', got {self.sizing!r}")
        if not 0.0 < self.kelly_fraction <= 1.0:
            raise ValueError(f"kelly_fraction must lie in (0, 1], got {self.kelly_fraction}")
        if self.filter_series not in ("spot", "settlement"):
            raise ValueError(f"filter_series must be 'spot' or 'settlement', got {self.filter_series!r}")
        if self.policy not in (None, "edge", "design"):
            raise ValueError(f"policy must be 'edge' or 'design', got {self.policy!r}")
        if self.min_edge is not None and not -1.0 < self.min_edge < 1.0:
            raise ValueError(f"min_edge must lie in (-1, 1), got {self.min_edge}")
        if self.min_move_pct < 0 or self.max_move_pct < self.min_move_pct:
            raise ValueError("need 0 <= min_move_pct <= max_move_pct")
        if not 0.0 < self.expires_after <= 3650.0:
            raise ValueError(f"expires_after must lie in (0, 3650] days, got {self.expires_after}")
        if self.on_expired not in ON_EXPIRED:
            raise ValueError(f"on_expired must be one of {ON_EXPIRED}, got {self.on_expired!r}")
        if isinstance(self.ood_max, bool) or not isinstance(self.ood_max, int) or self.ood_max < 0:
            raise ValueError(f"ood_max must be a whole number >= 0, got {self.ood_max!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer. ``reason`` is ``"<code>: <detail>"``; ``code`` is the first part."""

    enter: bool
    outcome: str | None
    size: float
    p_win: float | None
    reason: str
    price: float | None = None
    edge: float | None = None  # p_win - price - fee per share, when a price was given

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


# reason codes
ENTER = "enter"
NO_FEATURES = "no_features"
BEFORE_FIRST_POINT = "before_first_decision_point"
AFTER_LAST_POINT = "after_last_decision_point"
LOW_CONFIDENCE = "below_min_confidence"
LOW_EDGE = "below_min_edge"
NO_PRICE = "no_price"
ZERO_SIZE = "zero_size"
BELOW_MIN_ORDER = "below_min_order_size"
NO_MOVE = "no_move"
TOO_EARLY = "too_early"
MOVE_TOO_SMALL = "move_too_small"
MOVE_TOO_LARGE = "move_too_large"
OTHER_SIDE = "move_favours_other_side"
INVALID_P_WIN = "invalid_p_win"
MODEL_EXPIRED = "model_expired"
OUT_OF_DISTRIBUTION = "out_of_distribution"


def _no(outcome: str | None, reason: str, p_win: float | None = None,
        price: float | None = None, edge: float | None = None) -> Decision:
    return Decision(False, outcome, 0.0, p_win, reason, price, edge)


class DecisionLog:
    """Decisions as JSON lines (one object per decision, flushed), for audits and replays."""

    def __init__(self, path: str | Path | IO[str]) -> None:
        if hasattr(path, "write"):
            self._f: IO[str] = path  # type: ignore[assignment]
            self._own = False
        else:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(p, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._own = True

    def write(self, d: Decision, features: dict[str, float | None] | None, context: dict | None) -> None:
        rec: dict[str, Any] = {"ts": time.time()}
        if context:
            rec.update({k: _finite(v) for k, v in context.items()})
        rec.update({"decision": "enter" if d.enter else "skip", "outcome": d.outcome,
                    "size": d.size, "p_win": d.p_win, "price": d.price, "edge": d.edge,
                    "reason": d.reason, "features": features or {}})
        rec = {k: _finite(v) for k, v in rec.items()}
        self._f.write(json.dumps(rec, allow_nan=False, default=_json_default) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._own:
            self._f.close()


def _price(p: float | None) -> float | None:
    """A usable limit price or None: NaN, infinities and prices outside (0, 1) are no price."""
    if p is None:
        return None
    p = float(p)
    return p if 0.0 < p < 1.0 else None  # NaN fails the comparison too


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _json_default(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


class EntryGate:
    """Model gate when a scorer is given, else the manual filters. See the module docstring."""

    def __init__(self, config: GateConfig | None = None, scorer: Scorer | None = None,
                 log: DecisionLog | None = None) -> None:
        self.config = config or GateConfig()
        self.scorer = scorer
        self.log = log
        if log is None and self.config.decision_log:
            self.log = DecisionLog(self.config.decision_log)
        self.counters: Counter[str] = Counter()  # declines worth watching: invalid, expired, OOD
        self._warned: set[tuple[str, int]] = set()  # models already logged as invalid
        c = self.config
        self.guards = ModelGuards(c.expires_after, c.on_expired, c.ood_max)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EntryGate:
        """Build the gate from ``add_model_args`` options; loads the model when one is named."""
        cfg = config_from_args(args)
        scorer = Scorer.load(cfg.model_path) if cfg.model_path else None
        return cls(cfg, scorer)

    @property
    def uses_model(self) -> bool:
        return self.scorer is not None

    def reload(self) -> bool:
        """Reload the model (no-op without one); the old one stays on error (ModelFileError)."""
        return self.scorer.reload() if self.scorer is not None else False

    # -- the decision -------------------------------------------------------------------------
    def decide(self, outcome: str, vector: Any = None, fraction: float | None = None, *,
               price: float | None = None, min_order_size: float | None = None,
               fee: FeeSchedule = NO_FEE, taker: bool = False, move_pct: float | None = None,
               minutes_into: float | None = None, context: dict | None = None,
               now: float | None = None) -> Decision:
        """Decide for ONE outcome ("Up"/"Down").

        Model gate: ``vector`` (contract order, None = no snapshot within tolerance) and
        ``fraction`` (where the decision instant lies in the window). Manual filters:
        ``move_pct`` (the filter series' move, percent) and ``minutes_into`` (scaled minutes).
        ``price``: the order's limit (the side's bid for a maker order, ask for a taker);
        needed by ``--min-edge`` and Kelly sizing. ``min_order_size``: the market's. ``now``:
        the decision instant for the expiry check (epoch s; default the wall clock).
        """
        outcome = normalize_outcome(outcome)
        price = _price(price)

        def filters() -> Decision:
            return self._manual(outcome, price, move_pct, minutes_into, min_order_size)

        if self.scorer is None:
            d = filters()
        else:
            d = self._expired(now, filters, outcome) or self._model_precheck(outcome, vector, fraction)
            if d is None:
                p_win = self.scorer.p_win(outcome, vector)
                d = self._invalid(outcome, p_win) or \
                    self._model(outcome, p_win, price, min_order_size, fee, taker)
        if self.log is not None:
            self._log(d, vector, context)
        return d

    def choose(self, vector: Any = None, fraction: float | None = None, *,
               prices: dict[str, float | None] | None = None, min_order_size: float | None = None,
               fee: FeeSchedule = NO_FEE, taker: bool = False, move_pct: float | None = None,
               minutes_into: float | None = None, context: dict | None = None,
               now: float | None = None) -> Decision:
        """Pick the side and decide: the higher p_win (model) or the side the move favours
        (filters). ``prices``: {"Up": limit, "Down": limit}; ``now``: as in ``decide``."""
        prices = {k: _price(v) for k, v in (prices or {}).items()}

        def filters() -> Decision:
            side = UP if (move_pct or 0.0) > 0 else DOWN
            return self._manual(side, prices.get(side), move_pct, minutes_into, min_order_size)

        if self.scorer is None:
            d = filters()
        else:
            d = self._expired(now, filters, None) or self._model_precheck(None, vector, fraction)
            if d is None:
                p_up = self.scorer.p_up(vector)
                d = self._invalid(None, p_up)
                if d is None:
                    side, p_win = (UP, p_up) if p_up >= 0.5 else (DOWN, 1.0 - p_up)
                    d = self._model(side, p_win, prices.get(side), min_order_size, fee, taker)
        if self.log is not None:
            self._log(d, vector, context)
        return d

    def _expired(self, now: float | None, filters: Any, outcome: str | None) -> Decision | None:
        """The decision when the model is expired at ``now`` and ``--on-expired`` is not
        ignore (fallback: ``filters()``'s, its reason saying why), else None: score as usual."""
        why = self.guards.expired(self.scorer, time.time() if now is None else float(now))
        if why is None:
            return None
        self.counters[MODEL_EXPIRED] += 1
        mode = self.config.on_expired
        if mode == "ignore":
            return None
        if mode == "refuse":
            return _no(outcome, f"{MODEL_EXPIRED}: {why}")
        d = filters()
        return replace(d, reason=f"{d.reason}; {MODEL_EXPIRED}: {why}, the manual filters decided")

    def _model_precheck(self, outcome: str | None, vector: Any, fraction: float | None) -> Decision | None:
        if vector is None:
            return _no(outcome, f"{NO_FEATURES}: no snapshot within tolerance of the decision tick")
        if fraction is None:
            raise ValueError("the model gate needs the decision's fraction of the window")
        dps = self.scorer.decision_points  # type: ignore[union-attr]
        if not self.scorer.in_range(fraction):  # type: ignore[union-attr]
            code, bound = (BEFORE_FIRST_POINT, dps[0]) if fraction < dps[0] else (AFTER_LAST_POINT, dps[-1])
            return _no(outcome, f"{code}: fraction {fraction:.4f} outside the trained "
                                f"{dps[0]:.4f}..{dps[-1]:.4f} (bound {bound:.4f})")
        why = self.guards.out_of_distribution(self.scorer, vector)
        if why is not None:
            self.counters[OUT_OF_DISTRIBUTION] += 1
            return _no(outcome, f"{OUT_OF_DISTRIBUTION}: {why}")
        return None

    def _invalid(self, outcome: str | None, p: float) -> Decision | None:
        """Decline a model output that is not a probability (NaN, inf, < 0, > 1)."""
        p = float(p)
        if 0.0 <= p <= 1.0:  # NaN fails both comparisons
            return None
        self.counters[INVALID_P_WIN] += 1
        model = (str(getattr(self.scorer, "path", "?")), id(getattr(self.scorer, "meta", None)))
        if model not in self._warned:
            self._warned.add(model)
            log.warning("model %s returned %r, not a probability: declining (%s; logged once per "
                        "model, counted in counters[%r])", model[0], p, INVALID_P_WIN, INVALID_P_WIN)
        return _no(outcome, f"{INVALID_P_WIN}: model output {p!r} is not in [0, 1]")

    def policy(self) -> tuple[str, float | None, float]:
        """(name, min_edge, kelly_fraction) of the rule in force: ``--policy`` or the model
        file's ``policy`` key; without either, the design's rule. Recomputed only when the
        model's metadata object changes (a reload), as it is asked on every decision."""
        source = self.scorer.meta if self.scorer is not None else None
        cached = self.__dict__.get("_policy_cache")
        if cached is not None and cached[0] is source:
            return cached[1]
        got = self._policy_of(getattr(source, "policy", None))
        self.__dict__["_policy_cache"] = (source, got)
        return got

    def _policy_of(self, meta: dict | None) -> tuple[str, float | None, float]:
        cfg = self.config
        name = cfg.policy or (meta or {}).get("name") or "design"
        if name == "design":
            return "design", cfg.min_edge, cfg.kelly_fraction
        chosen = meta if meta and meta.get("name") == "edge" else {}
        min_edge = cfg.min_edge if cfg.min_edge is not None else chosen.get("min_edge", 0.0)
        # --kelly-fraction left at its default: the model's chosen fraction, when it has one
        kf = chosen.get("kelly_fraction", cfg.kelly_fraction) \
            if cfg.kelly_fraction == DEFAULT_KELLY_FRACTION else cfg.kelly_fraction
        return "edge", float(min_edge), float(kf)

    def _model(self, outcome: str, p_win: float, price: float | None,
               min_order_size: float | None, fee: FeeSchedule, taker: bool) -> Decision:
        name, min_edge, kf = self.policy()
        if name == "edge":
            return self._edge(outcome, p_win, price, min_order_size, fee, taker, min_edge or 0.0, kf)
        cfg = self.config
        fee_ps = fee.per_share(price, taker) if price is not None else 0.0
        edge = None if price is None else p_win - price - fee_ps
        if p_win < cfg.min_confidence:
            return _no(outcome, f"{LOW_CONFIDENCE}: p_win {p_win:.4f} < {cfg.min_confidence:.4f}",
                       p_win, price, edge)
        if cfg.min_edge is not None:
            if edge is None:
                return _no(outcome, f"{NO_PRICE}: --min-edge needs the order's price", p_win)
            if edge < cfg.min_edge:
                return _no(outcome, f"{LOW_EDGE}: p_win - price - fee = {edge:.4f} < {cfg.min_edge:.4f}",
                           p_win, price, edge)
        if cfg.sizing == "kelly":
            if price is None:
                return _no(outcome, f"{NO_PRICE}: Kelly sizing needs the order's price", p_win)
            cost = price + fee_ps
            f_star = (p_win - cost) / (1.0 - cost) if cost < 1.0 else 0.0
            raw = cfg.order_size * cfg.kelly_fraction * f_star
        else:
            raw = cfg.order_size * (p_win - 0.5) / 0.5
        size = float(math.floor(min(max(raw, 0.0), cfg.order_size) + SIZE_EPS * max(1.0, cfg.order_size)))
        size = min(size, math.floor(cfg.order_size))
        return self._sized(outcome, size, p_win, price, edge, min_order_size)

    def _edge(self, outcome: str, p_win: float, price: float | None, min_order_size: float | None,
              fee: FeeSchedule, taker: bool, min_edge: float, kelly_fraction: float) -> Decision:
        """The price-aware rule: edge >= min_edge, fractional-Kelly size (module docstring)."""
        if price is None:
            return _no(outcome, f"{NO_PRICE}: the edge policy needs the order's price", p_win)
        fee_ps = fee.per_share(price, taker)
        cost = price + fee_ps
        edge = p_win - cost
        if edge < min_edge:
            return _no(outcome, f"{LOW_EDGE}: p_win - price - fee = {edge:.4f} < {min_edge:.4f}",
                       p_win, price, edge)
        cfg = self.config
        f_star = max(edge / (1.0 - cost), 0.0) if cost < 1.0 else 0.0
        mos = cfg.min_order_size if min_order_size is None else float(min_order_size)
        raw = max(cfg.order_size * kelly_fraction * f_star, mos)
        size = float(math.floor(min(raw, cfg.order_size) + SIZE_EPS * max(1.0, cfg.order_size)))
        return self._sized(outcome, size, p_win, price, edge, min_order_size)

    def _sized(self, outcome: str, size: float, p_win: float | None, price: float | None,
               edge: float | None, min_order_size: float | None) -> Decision:
        mos = self.config.min_order_size if min_order_size is None else float(min_order_size)
        if size <= 0:
            return _no(outcome, f"{ZERO_SIZE}: sized to 0 shares", p_win, price, edge)
        if size < mos:
            return _no(outcome, f"{BELOW_MIN_ORDER}: {size:g} shares < market minimum {mos:g}",
                       p_win, price, edge)
        detail = "" if p_win is None else f"p_win {p_win:.4f}"
        return Decision(True, outcome, size, p_win, f"{ENTER}: {size:g} shares {detail}".rstrip(),
                        price, edge)

    def _manual(self, outcome: str, price: float | None, move_pct: float | None,
                minutes_into: float | None, min_order_size: float | None) -> Decision:
        cfg = self.config
        if move_pct is None or move_pct != move_pct:
            return _no(outcome, f"{NO_MOVE}: no {cfg.filter_series} move at this tick")
        if minutes_into is None or minutes_into < cfg.min_entry_minutes - 1e-9:
            return _no(outcome, f"{TOO_EARLY}: {minutes_into} < {cfg.min_entry_minutes:g} minutes", price=price)
        mag = abs(move_pct)
        if mag < cfg.min_move_pct or mag == 0.0:  # no move favours no side
            return _no(outcome, f"{MOVE_TOO_SMALL}: |move| {mag:.4f}% < {cfg.min_move_pct:g}%", price=price)
        if mag > cfg.max_move_pct:
            return _no(outcome, f"{MOVE_TOO_LARGE}: |move| {mag:.4f}% > {cfg.max_move_pct:g}%", price=price)
        favoured = UP if move_pct > 0 else DOWN
        if outcome != favoured:
            return _no(outcome, f"{OTHER_SIDE}: move {move_pct:+.4f}% favours {favoured}", price=price)
        size = float(math.floor(cfg.order_size + SIZE_EPS * max(1.0, cfg.order_size)))
        return self._sized(outcome, size, None, price, None, min_order_size)

    # -- with the online builder --------------------------------------------------------------
    def decide_online(self, online: Any, symbol: str, window_s: int, slot_ts: int,
                      decision_ms: int, outcome: str | None = None, **kw: Any) -> Decision:
        """One full decision from the online feature builder (``serve.online.OnlineFeatures``):
        the vector at ``decision_ms``, its window fraction, the filter move and minutes; then
        ``decide`` (for ``outcome``) or ``choose`` (outcome None). ``kw``: prices/price,
        min_order_size, fee, taker, context, now (default: ``decision_ms``, the expiry clock)."""
        vector = online.vector_at(symbol, window_s, slot_ts, decision_ms)
        fraction, move, minutes = self.online_inputs(online, symbol, window_s, slot_ts, decision_ms)
        kw.setdefault("now", decision_ms / 1000.0)
        if outcome is None:
            return self.choose(vector, fraction, move_pct=move, minutes_into=minutes, **kw)
        return self.decide(outcome, vector, fraction, move_pct=move, minutes_into=minutes, **kw)

    def online_inputs(self, online: Any, symbol: str, window_s: int, slot_ts: int,
                      decision_ms: int) -> tuple[float, float | None, float | None]:
        """The window fraction at ``decision_ms`` and the filters' move and minutes (None when
        the gate has a model the expiry never hands over to the filters, or no row yet)."""
        fraction = (decision_ms - int(slot_ts) * 1000) / (int(window_s) * 1000)
        move = minutes = None
        if self.scorer is None or self.config.on_expired == "fallback":
            w = online.windows.get((symbol, int(window_s), int(slot_ts)))
            row = w.row_at(decision_ms) if w is not None else None
            if row is not None:
                key = "spot_move_pct" if self.config.filter_series == "spot" else "dir_move_pct"
                move = row.get(key)
                minutes = SCALE_MINUTES * fraction
        return fraction, move, minutes

    def _log(self, d: Decision, vector: Any, context: dict | None) -> None:
        feats = None
        if vector is not None:
            names = self.scorer.features if self.scorer is not None else None
            vals = vector.tolist() if hasattr(vector, "tolist") else list(vector)
            if names is None:
                names = FEATURES
            feats = {n: (None if x != x else float(x)) for n, x in zip(names, vals, strict=False)}
        self.log.write(d, feats, context)  # type: ignore[union-attr]


def config_from_args(args: argparse.Namespace) -> GateConfig:
    """The gate's config from parsed ``add_model_args`` options (bad combinations: UserError)."""
    try:
        return GateConfig(**{f: getattr(args, f) for f in GateConfig.__dataclass_fields__
                             if getattr(args, f, None) is not None})
    except ValueError as e:
        raise UserError(f"entry gate: {e}") from None
