"""The verdict: per policy x fill model, entries, fill rate, PnL, PnL per unit staked with a 95%
CI, daily Sharpe, worst drawdown and markouts; the paired difference edge - filters under
maker-queue with its own CI; one line "model beats filters as a maker: yes | no |
inconclusive"; and a chart of cumulative PnL with its band.

Statistics are honest about dependence: PnL within a window and a day is correlated, so every
CI is a block bootstrap over WHOLE DAYS (numpy: resample day indices with replacement; the
ratio is sum(PnL) / sum(staked) over the resampled days). The paired difference resamples the
same days for both policies. Percentile intervals; days with no entry count as days with 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slotml.backtest.simulate import PolicyResult
from slotml.venue import family_of, family_text

VERDICT_FILL = "maker-queue"
VERDICT_PAIR = ("edge", "filters")


def daily(result: PolicyResult, days: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(PnL, staked) per day over ``days`` (UTC day numbers; 0 where nothing filled)."""
    index = {d: i for i, d in enumerate(days)}
    pnl = np.zeros(len(days))
    staked = np.zeros(len(days))
    for e in result.entries:
        i = index.get(e.day)
        if i is not None and e.filled:
            pnl[i] += e.pnl
            staked[i] += e.staked
    return pnl, staked


def _ratio(pnl: np.ndarray, staked: np.ndarray, idx: np.ndarray) -> np.ndarray:
    s = staked[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, pnl[idx].sum(axis=1) / np.where(s > 0, s, 1.0), np.nan)


def interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The two-sided percentile interval of bootstrap draws ``x`` (non-finite draws dropped);
    None with fewer than 10 draws left."""
    x = x[np.isfinite(x)]
    if x.size < 10:
        return None
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(x, [a, 100 - a])
    return float(lo), float(hi)


def resample(n_days: int, n_boot: int, seed: int) -> np.ndarray:
    """Day indices [n_boot, n_days], drawn with replacement (one draw shared by every cell so
    that paired differences see the same days)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_days, size=(n_boot, n_days)) if n_days else np.zeros((n_boot, 0), int)


@dataclass
class CellStats:
    policy: str
    fill: str
    result: PolicyResult
    ci: tuple[float, float] | None
    sharpe: float | None  # mean / sd of daily PnL (not annualised)

    def summary(self) -> dict[str, Any]:
        out = self.result.summary()
        out["pnl_per_staked_ci95"] = list(self.ci) if self.ci else None
        out["daily_sharpe"] = self.sharpe
        return out


@dataclass
class BacktestResult:
    results: list[PolicyResult]
    rows: int
    windows: int
    skipped: dict[str, int]
    slot_from: int | None
    slot_to: int | None
    model: str
    days: list[int]
    unavailable: dict[str, str] = field(default_factory=dict)
    edge_policy: tuple[str, float | None, float] = ("edge", 0.0, 0.25)
    n_boot: int = 2000
    seed: int = 0
    # serve/guards.py guard_rates over the decision rows: out_of_distribution and expired
    guards: dict[str, Any] | None = None
    window_s: int | None = None  # the model's family: the only one backtested

    def __post_init__(self) -> None:
        self._idx = resample(len(self.days), self.n_boot, self.seed)
        self.cells: list[CellStats] = []
        for r in self.results:
            pnl, staked = daily(r, self.days)
            ci = interval(_ratio(pnl, staked, self._idx)) if self.days else None
            sd = float(np.std(pnl, ddof=1)) if len(pnl) > 1 else 0.0
            sharpe = float(np.mean(pnl) / sd) if sd > 0 else None
            self.cells.append(CellStats(r.policy, r.fill, r, ci, sharpe))

    def cell(self, policy: str, fill: str) -> CellStats | None:
        return next((c for c in self.cells if c.policy == policy and c.fill == fill), None)

    def difference(self, a: str = VERDICT_PAIR[0], b: str = VERDICT_PAIR[1],
                   fill: str = VERDICT_FILL) -> dict[str, Any] | None:
        """PnL per staked of ``a`` minus ``b`` under ``fill``, with its paired day-bootstrap CI."""
        ca, cb = self.cell(a, fill), self.cell(b, fill)
        if ca is None or cb is None:
            return None
        pa, sa = daily(ca.result, self.days)
        pb, sb = daily(cb.result, self.days)
        ra, rb = ca.result.pnl_per_staked, cb.result.pnl_per_staked
        point = None if ra is None or rb is None else ra - rb
        diffs = _ratio(pa, sa, self._idx) - _ratio(pb, sb, self._idx)
        return {"a": a, "b": b, "fill": fill, "difference": point, "ci95": interval(diffs)}

    def verdict(self) -> str:
        """One line: does the model (edge policy) beat the filters as a maker (maker-queue)?"""
        if VERDICT_FILL in self.unavailable:
            return (f"model beats filters as a maker: inconclusive ({VERDICT_FILL} unavailable: "
                    f"{self.unavailable[VERDICT_FILL]})")
        d = self.difference()
        if d is None or d["difference"] is None or d["ci95"] is None:
            return "model beats filters as a maker: inconclusive (too few filled days to compare)"
        lo, hi = d["ci95"]
        word = "yes" if lo > 0 else "no" if hi < 0 else "inconclusive"
        return (f"model beats filters as a maker: {word} (difference {d['difference'] * 100:+.1f}% "
                f"[{lo * 100:+.1f}%, {hi * 100:+.1f}%])")

    def table(self) -> str:
        head = ["policy", "fill", "windows", "entries", "fill rate", "PnL $", "PnL/staked [95% CI]",
                "Sharpe/d", "max DD $", "mk10s c", "mk60s c", "mk res c"]
        body = []
        for c in self.cells:
            r = c.result
            m = r.markouts()
            ci = f" [{c.ci[0] * 100:+.1f}, {c.ci[1] * 100:+.1f}]" if c.ci else ""
            body.append([r.policy, r.fill, str(r.windows), str(r.n_entries), _pct(r.fill_rate),
                         f"{r.pnl:+.2f}", _pct(r.pnl_per_staked, signed=True) + ci,
                         _num(c.sharpe, "+.2f"), f"{r.max_drawdown:.2f}",
                         _cents(m["markout_10s"]), _cents(m["markout_60s"]), _cents(m["markout_res"])])
        widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
        line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False))  # noqa: E731
        lines = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
        span = f"windows {self.slot_from or 'start'}..{self.slot_to or 'end'}"
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items() if v)
        excl = {}
        for r in self.results:
            for k, v in (r.excluded or {}).items():
                excl[f"{r.fill} {k}"] = v
        name, min_edge, kf = self.edge_policy
        fam = f" on {family_text(self.window_s)}" if self.window_s else ""
        out = [f"backtest of {self.model}{fam} over {self.windows} resolved windows, {len(self.days)} "
               f"days ({self.rows} decision rows, {span}"
               f"{'; skipped ' + skipped if skipped else ''})",
               f"edge policy: min_edge {min_edge if min_edge is not None else 0.0:+.3f}, Kelly "
               f"fraction {kf:g}; CIs: {self.n_boot} bootstrap resamples of whole days",
               *lines]
        if excl:
            out.append("windows left out: " + ", ".join(f"{k} {v}" for k, v in sorted(set(excl.items()))))
        for fill, why in self.unavailable.items():
            out.append(f"{fill}: unavailable ({why})")
        rebates = sum(r.rebates for r in self.results)
        out.append("maker rebates: " + (f"${rebates:.2f} credited per fill from the markets' "
                                        "rebate share" if rebates > 0 else
                                        "none (no market's fee schedule gives a rebate share)"))
        mq = self.cell("edge", VERDICT_FILL)
        if mq is not None and mq.result.markouts_by_minute():
            out.append(f"edge / {VERDICT_FILL} markouts by minute into the window (cents/share):")
            out.append("  min  fills   10s     60s     res")
            for mnt, v in mq.result.markouts_by_minute().items():
                out.append(f"  {mnt:3d}  {v['fills']:5d}  {_cents(v['markout_10s']):>6}  "
                           f"{_cents(v['markout_60s']):>6}  {_cents(v['markout_res']):>6}")
        if self.guards is not None:
            out.append(guards_line(self.guards))
        out.append(self.verdict())
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "window_s": self.window_s,
                "family": family_of(self.window_s) if self.window_s else None,
                "rows": self.rows, "windows": self.windows,
                "days": len(self.days), "skipped": self.skipped, "slot_from": self.slot_from,
                "slot_to": self.slot_to, "unavailable": self.unavailable,
                "edge_policy": {"min_edge": self.edge_policy[1], "kelly_fraction": self.edge_policy[2]},
                "results": [c.summary() for c in self.cells],
                "difference": self.difference(), "verdict": self.verdict(),
                "guards": self.guards}


def guards_line(g: dict[str, Any]) -> str:
    """How often the model's guards fired over the decision rows (each counted on its own)."""
    n = g["rows"]
    ood = (f"out_of_distribution {g['out_of_distribution']} ({_pct(g['ood_rate'], digits=2)}, "
           f"--ood-max {g['ood_max']})" if g["ood_checked"] else
           "out_of_distribution not checked (the model file has no feature_ranges)")
    return (f"model guards over {n} decision rows: {ood}; expired {g['expired']} "
            f"({_pct(g['expired_rate'], digits=2)}, --expires-after {g['expires_after_days']:g} "
            f"days, --on-expired {g['on_expired']})")


def _pct(x: float | None, signed: bool = False, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x * 100:+.{digits}f}%" if signed else f"{x * 100:.{digits}f}%"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _cents(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f}"


def pnl_png(result: BacktestResult, path: Path) -> Path:
    """Cumulative daily PnL per policy under the verdict's fill model (or the first available),
    with a 95% band from the day-bootstrap's spread of daily PnL (+-1.96 sd x sqrt(days))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fill = VERDICT_FILL if VERDICT_FILL not in result.unavailable else (
        result.results[0].fill if result.results else VERDICT_FILL)
    fig, ax = plt.subplots(figsize=(9, 5))
    x = np.arange(1, len(result.days) + 1)
    for c in result.cells:
        if c.fill != fill:
            continue
        pnl, _ = daily(c.result, result.days)
        cum = np.cumsum(pnl)
        sd = float(np.std(pnl, ddof=1)) if len(pnl) > 1 else 0.0
        band = 1.96 * sd * np.sqrt(x)
        (ln,) = ax.plot(x, cum, label=f"{c.policy} ({c.result.n_entries} entries)")
        ax.fill_between(x, cum - band, cum + band, color=ln.get_color(), alpha=0.15)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("day")
    ax.set_ylabel("cumulative PnL ($)")
    ax.set_title(f"backtest ({fill}): {result.model}")
    if ax.get_legend_handles_labels()[0]:  # the policies' lines (the zero line has no label)
        ax.legend()
    else:
        ax.text(0.5, 0.5, f"no policy was backtested with {fill} fills", transform=ax.transAxes,
                ha="center")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
