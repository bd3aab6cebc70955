"""THE feature contract: names, order, dtypes and the exact definition of every model input.

Two implementations follow it: the DuckDB SQL in ``features/build.py`` (offline, the training
set) and serve/'s online builder (live). ``features/reference.py`` is a plain-Python reading of
this text for one window; tests hold both implementations to it. Change a definition here, in
the SQL and in the reference together, and bump ``CONTRACT_VERSION`` (models record it).
A new listed asset only appends to the asset table under a new version, which joins
``SCORABLE_CONTRACTS``: older models still load, and every implementation takes the model's
version (``asset_codes(version)``) so their vectors mean what they meant at training.

Terms (every time is derived from integer ``tick_ms`` / ``slot_ts``, never from the wall clock):

- window: one (symbol, window_s, slot_ts); its start is ``S = slot_ts * 1000`` (ms).
- window rows: the window's ``slot_snapshots`` rows with ``tick_ms >= S``, in ``tick_ms`` order
  (a row stamped before the window start is not part of it).
- ``ms(frac) = floor(frac * window_s * 1000.0 + 0.5)``: a fraction of the window in ms,
  computed in IEEE doubles in that order (Python and DuckDB agree bit for bit).
- decision point p (a fraction of the window, default 5/15, 7/15, 10/15) -> decision instant
  ``D = S + ms(p)`` (ms), reported as ``decision_ts = D / 1000`` (s).
- decision row r: the LAST window row with ``tick_ms <= D`` (an ASOF match, never "nearest"),
  kept only if ``D - r.tick_ms <= ms(tolerance)`` (default tolerance 1/15 of the window,
  inclusive). No such row -> no training row for (window, p).
- rows so far: the window rows with ``tick_ms <= r.tick_ms`` (= those with tick_ms <= D).
- scaled minute: a window is 15 scaled minutes long whatever its length, so
  ``minutes(ms) = 15 * ms / (window_s * 1000)``. For 900 s windows this is the real minute; a
  sim test window of a few seconds maps onto the same 0..15 scale, and one model/statistic
  applies to both. Velocities and volatilities are per scaled minute.
- move series: ``dir_move_pct`` of the settlement series (the market's own, see ingest/schema).
- missing: SQL NULL / float NaN. A missing input makes a feature missing, never 0.

Features (all float32 in this order; NaN = missing; r = decision row):

``dir_move_pct``     r.dir_move_pct.
``abs_move_pct``     abs(r.dir_move_pct).
``spot_move_pct``    r.spot_move_pct (spot stream vs spot_price_to_beat: what manual filters use).
``minutes_into``     minutes(r.tick_ms - S)  (time of the data, not of D).
``minutes_left``     15 - minutes_into.
``bid_up`` ``ask_up`` ``bid_down`` ``ask_down``   r's best prices (NULL side -> NaN).
``up_mid``           (r.bid_up + r.ask_up) / 2: the book's own P(Up); NaN if either is missing.
``spread_up``        r.ask_up - r.bid_up; ``spread_down`` likewise (NaN if a side is missing).
``spread_ratio``     spread_up / spread_down; NaN if either is missing or spread_down == 0.
``imbalance_up``     (bid_size_up - ask_size_up) / (bid_size_up + ask_size_up) of r; NaN if a
                     size is missing or the sum is 0. ``imbalance_down`` likewise (Down token).
``move_velocity``    l = the last window row with ``tick_ms <= D - ms(lookback)`` (ASOF at the
                     instant lookback before the decision; lookback default 2/15 of the window);
                     (r.dir_move_pct - l.dir_move_pct) / minutes(r.tick_ms - l.tick_ms);
                     NaN if there is no such l, l is r, or either move is missing.
``realised_vol``     m_1..m_k = the non-missing dir_move_pct of the rows so far, at ticks
                     t_1 < .. < t_k; sqrt(sum_{i=2..k} (m_i - m_{i-1})^2 / minutes(t_k - t_1)):
                     percent per sqrt(scaled minute), robust to missing snapshots (squared
                     increments add up over time); NaN if k < 2.
``move_z``           dir_move_pct / (sigma * sqrt(minutes_left)): the move in units of the
                     volatility expected over the time left. sigma = the fitted statistic
                     ``stats["move_vol_per_min"][symbol]`` (else ``stats["default_move_vol_per_min"]``),
                     same units as realised_vol, fitted by ``build.fit_stats`` on TRAINING days
                     only and stored in the model's metadata. NaN if no stats, the move is
                     missing, sigma <= 0 or minutes_left <= 0.
``lead_move_pct``    the settlement move carried forward to the spot stream:
                     ``((1 + r.dir_move_pct / 100) * r.chainlink_price / r.chainlink_twap - 1) * 100``
                     (computed in that order). For a TWAP-settled market this is exactly the spot
                     against price_to_beat: the 60 s TWAP lags the spot by ~30 s, and the final
                     TWAP is centred on where the spot is NOW, so this is the move the outcome
                     hinges on (on the sim it closed about a third of the model's Brier gap to
                     the oracle). For a spot-settled market it is the move times spot/twap (a
                     defined, harmless number; such markets ended in August 2026). NaN if any of
                     the three is missing or chainlink_twap == 0.
``lead_move_z``      lead_move_pct / (sigma * sqrt(minutes_left)), sigma as for move_z; NaN under
                     the same conditions as move_z (or lead_move_pct missing).
``prev_vol_1``       the volatility regime the window opened in, relative to the asset's norm:
``prev_vol_4``       over the earlier windows of the same symbol and window_s that start
                     ``j * window_s`` before this one, j = 1..k (k = 1 resp. 4; those that exist),
                     each earlier window's CLOSED rows (``slot_ts * 1000 <= tick_ms <
                     (slot_ts + window_s) * 1000``: all stamped before S, so known at D) give
                     Q_j = the sum of squared increments of their non-missing dir_move_pct and
                     T_j = minutes(t_last - t_first) of those moves (Q_j = T_j = 0 with fewer
                     than two). ``prev_vol_k = sqrt(sum Q_j / sum T_j) / sigma`` (sigma as for
                     move_z): realised_vol's estimator over the last k windows, in units of the
                     fitted norm. Volatility clusters (the sim's regimes, real hourly vol), and
                     the oracle knows the regime exactly. NaN if sum T_j == 0 (no earlier
                     window, or none with two moves), no stats or sigma <= 0.
``lead_rv_z``        lead_move_pct / (realised_vol * sqrt(minutes_left)): the lead move in units
                     of the window's OWN volatility so far (a tree cannot divide two inputs;
                     the outcome hinges on this ratio). NaN if either is missing,
                     realised_vol <= 0 or minutes_left <= 0. Needs no fitted statistic.
``lead_blend_z``     lead_move_pct / (b * sqrt(minutes_left)) with the blended volatility
                     ``b = sqrt((Q + P * V4^2) / (T + P))``: Q and T are realised_vol's sums over
                     the rows so far (squared increments, minutes(t_k - t_1); both 0 if k < 2),
                     V4 = sqrt(sum Q_j / sum T_j) is prev_vol_4 before the division by sigma,
                     and ``P = PRIOR_MINUTES`` (15): the earlier windows count as one window's
                     worth of evidence, so early in a window b leans on the regime and late in
                     it on the window itself. Without V4 (sum T_j == 0) the P terms drop out
                     (b = realised_vol). NaN if lead_move_pct is missing, the denominator is 0,
                     b <= 0 or minutes_left <= 0. Needs no fitted statistic.
``snapshot_count``   number of rows so far (including r).
``hour``             UTC hour of r.tick_ms: (tick_ms // 3_600_000) % 24.
``weekday``          UTC weekday of r.tick_ms, 0 = Monday: (tick_ms // 86_400_000 + 3) % 7
                     (1970-01-01 was a Thursday; equals DuckDB ``isodow - 1``, NOT ``dayofweek``
                     which counts from Sunday).
``asset``            ``asset_codes(v)[symbol]`` for the model's contract version v (fixed, not
                     fitted); NaN for a symbol that version does not know. Codes are appended,
                     never renumbered, so an older model keeps its meaning:

                     ======  ==========================================
                     code    symbol (contract version that added it)
                     ======  ==========================================
                     0..3    BTC, ETH, SOL, XRP (1)
                     4..7    DOGE, BNB, HYPE, ZEC (4)
                     ======  ==========================================

                     A contract-3 model scores DOGE..ZEC with asset NaN, as it was trained
                     (``SCORABLE_CONTRACTS``: the versions this code builds vectors for).
``prev_up``          the previous window (same symbol and window_s, slot_ts - window_s) as KNOWN
                     AT D, from its slot_resolutions row p: p.resolved_up (1/0) if it is not
                     NULL and ``p.resolved_at < D / 1000``; else measured
                     ``1 if p.final_price >= p.price_to_beat else 0`` if final_price,
                     price_to_beat and final_seen_at are not NULL and ``p.final_seen_at < D / 1000``;
                     else NaN (also when p does not exist). Official prices are never used: they
                     are published long after.
``prev_known_source`` 2 = official, 1 = measured, 0 = unknown (which branch prev_up took).

The Up/Down mirror (``MIRROR``): the features the same decision row would have in the mirrored
world, where every move changes sign and the two outcome tokens trade places (the Up token's
book is the Down token's, and the outcome flips). Up and Down are symmetric by construction
(the "at or above" tie is measure zero on 8-decimal prices), so train/ fits and calibrates on
each row AND its mirror: twice the rows, and no base rate learnt from a slice's luck. Rules:
``same``; ``neg`` (minus; for the percent moves exact in log terms, off by a second-order
term of < 1e-4 % at these sizes); ``swap:X`` (feature X's value); ``inv`` (1/x, NaN at 0);
``one_minus``; ``mean:X,Y`` (the mean of features X and Y: the Down token's mid).

Non-feature columns of the training set: keys ``symbol, window_s, slot_ts, point`` (the
fraction), ``tick_ms`` (r's), ``decision_ts``; labels ``resolved_up`` (the target: the window's
official outcome, 1/0, NULL while unresolved) and ``measured_up`` (final_price >=
price_to_beat, NULL when either is missing).
"""

from __future__ import annotations

import math
from fractions import Fraction

from slotml import model_file as mf
from slotml.errors import UserError
from slotml.venue import SCALE_MINUTES  # noqa: F401 - part of the contract: a window is 15 scaled minutes

# 2: lead_move_pct, lead_move_z; 3: prev_vol_1/_4, lead_rv_z, lead_blend_z; 4: asset codes for
# DOGE, BNB, HYPE, ZEC (the features and every other definition as in 3)
CONTRACT_VERSION = 4
# The versions whose vectors this code builds: the same FEATURES and definitions, differing only
# in the asset table. A model of any of them loads and is scored with its own version's codes.
SCORABLE_CONTRACTS: tuple[int, ...] = (3, 4)

FEATURES: tuple[str, ...] = (
    "dir_move_pct",
    "abs_move_pct",
    "spot_move_pct",
    "minutes_into",
    "minutes_left",
    "bid_up",
    "ask_up",
    "bid_down",
    "ask_down",
    "up_mid",
    "spread_up",
    "spread_down",
    "spread_ratio",
    "imbalance_up",
    "imbalance_down",
    "move_velocity",
    "realised_vol",
    "move_z",
    "lead_move_pct",
    "lead_move_z",
    "prev_vol_1",
    "prev_vol_4",
    "lead_rv_z",
    "lead_blend_z",
    "snapshot_count",
    "hour",
    "weekday",
    "asset",
    "prev_up",
    "prev_known_source",
)
FEATURE_DTYPE = "float32"  # the model's input: one float32 vector in FEATURES order

# The Up/Down mirror of every feature (see the module text); train/ applies it.
MIRROR: dict[str, str] = {
    "dir_move_pct": "neg",
    "abs_move_pct": "same",
    "spot_move_pct": "neg",
    "minutes_into": "same",
    "minutes_left": "same",
    "bid_up": "swap:bid_down",
    "ask_up": "swap:ask_down",
    "bid_down": "swap:bid_up",
    "ask_down": "swap:ask_up",
    "up_mid": "mean:bid_down,ask_down",
    "spread_up": "swap:spread_down",
    "spread_down": "swap:spread_up",
    "spread_ratio": "inv",
    "imbalance_up": "swap:imbalance_down",
    "imbalance_down": "swap:imbalance_up",
    "move_velocity": "neg",
    "realised_vol": "same",
    "move_z": "neg",
    "lead_move_pct": "neg",
    "lead_move_z": "neg",
    "prev_vol_1": "same",
    "prev_vol_4": "same",
    "lead_rv_z": "neg",
    "lead_blend_z": "neg",
    "snapshot_count": "same",
    "hour": "same",
    "weekday": "same",
    "asset": "same",
    "prev_up": "one_minus",
    "prev_known_source": "same",
}

KEYS: tuple[str, ...] = ("symbol", "window_s", "slot_ts", "point", "tick_ms", "decision_ts")
LABELS: tuple[str, ...] = ("resolved_up", "measured_up")
TARGET = "resolved_up"

# The assets each contract version appended to the code table (codes count on in this order).
_ASSETS_ADDED: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, ("BTC", "ETH", "SOL", "XRP")),
    (4, ("DOGE", "BNB", "HYPE", "ZEC")),
)

DEFAULT_POINTS: tuple[float, ...] = (5 / 15, 7 / 15, 10 / 15)
DEFAULT_TOLERANCE = 1 / 15  # of the window: the decision row may be at most this old
DEFAULT_LOOKBACK = 2 / 15  # of the window: move_velocity's lookback
REGIME_WINDOWS: tuple[int, ...] = (1, 4)  # prev_vol_k: how many earlier windows each one pools
PRIOR_MINUTES = 15.0  # lead_blend_z: the weight (scaled minutes) of the earlier windows' vol

PREV_OFFICIAL, PREV_MEASURED, PREV_UNKNOWN = 2, 1, 0
assert tuple(MIRROR) == FEATURES, "every feature needs its mirror rule, in contract order"


def contract_number(version: int | str) -> int:
    """A contract version as recorded (``"3"``) or given (3) -> int; ValueError if it is not one
    this code knows (a non-number, below 1, or newer than ``CONTRACT_VERSION``)."""
    try:
        v = int(str(version).strip())
    except ValueError:
        raise ValueError(f"feature contract {version!r} is not a version number") from None
    if not 1 <= v <= CONTRACT_VERSION:
        raise ValueError(f"feature contract {v} is unknown here (this code knows 1..{CONTRACT_VERSION})")
    return v


def asset_codes(version: int | str = CONTRACT_VERSION) -> dict[str, int]:
    """The ``asset`` feature's code table of contract ``version``: every asset added up to it,
    numbered in order of addition (a later version only appends, so shared codes agree)."""
    v = contract_number(version)
    names = [a for since, added in _ASSETS_ADDED if since <= v for a in added]
    return {a: i for i, a in enumerate(names)}


def frac_ms(frac: float, window_s: int) -> int:
    """A fraction of the window in ms, exactly as the SQL computes it."""
    return int(math.floor(frac * window_s * 1000.0 + 0.5))


def parse_points(text: str) -> tuple[float, ...]:
    """``"5/15,7/15,10/15"`` or ``"0.33,0.5"`` -> fractions in (0, 1), sorted, no duplicates."""
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            f = float(Fraction(part))
        except (ValueError, ZeroDivisionError, OverflowError):
            raise ValueError(f"decision point {part!r} is not a fraction like 5/15 or 0.33") from None
        if not 0.0 < f < 1.0:
            raise ValueError(f"decision point {part!r} must lie strictly inside the window (0, 1)")
        out.append(f)
    if not out:
        raise ValueError("no decision points given")
    return tuple(sorted(set(out)))


def parse_fraction(text: str, flag: str) -> float:
    """A fraction of the window given on the command line (``"1/15"`` or ``"0.066"``), strictly
    inside (0, 1): ``--tolerance`` and ``--lookback`` of ``slotml features`` and ``slotml train``."""
    try:
        f = float(Fraction(text))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise UserError(f"{flag} {text!r}: expected a fraction like 1/15 or 0.066") from None
    if not 0.0 < f < 1.0:
        raise UserError(f"{flag} {text!r}: must lie strictly between 0 and 1 (of the window)")
    return f


def metadata(points: tuple[float, ...] = DEFAULT_POINTS, tolerance: float = DEFAULT_TOLERANCE,
             lookback: float = DEFAULT_LOOKBACK, contract: int | str = CONTRACT_VERSION) -> dict:
    """What a model file must record to be scored under this contract (JSON-able); ``contract``
    the version the set was built with (its asset table).

    The keys shared with the model file have the model file's names and encodings
    (``slotml.model_file``): the training-set Parquet and the model speak one vocabulary.
    """
    return {
        mf.KEY_CONTRACT: str(contract_number(contract)),
        mf.KEY_FEATURES: list(FEATURES),
        mf.KEY_DECISION_POINTS: list(points),
        mf.KEY_TOLERANCE: tolerance,
        mf.KEY_LOOKBACK: lookback,
        "feature_dtype": FEATURE_DTYPE,
        "asset_codes": asset_codes(contract),
    }
