"""Issue 20: how often is an ordinary weekly challenger refused on stationary history?

One sim history (``slotml sim backfill``, 4 assets, 15-minute windows, the default book), exported
to a lake. Week 0: a first model trained on the initial span (``--challenge`` with no champion:
promoted, refit ``--final``). Then every week k = 1..N the lake "as it stood" at the end of week
k (``TrainConfig.slot_to``) trains a challenger exactly as the weekly cron does (``slotml train
--challenge``, default parameters, test slice = the last 7 days) and it is compared with the
current champion. Nothing is degraded: on stationary data a refusal is a false alarm of the
rule, and the aim is a refusal rate below 20%.

    python -m bench.challenge_rate [--weeks 20] [--initial-weeks 4] [--work-dir DIR]
                                   [--history DIR] [--calibration isotonic|platt]
    python -m bench.challenge_rate --reeval [--work-dir DIR]   # the same pairs, other levels

``--reeval`` compares each week's stored (champion, challenger) pair again and says what the
rule would have decided with the Brier check alone and with the PnL check at 95% / 99%
(approximate: the pairs are the ones the 90% rule produced; another rule changes later
champions).

Not part of ``make test`` (about a minute or two a week on 2 cores). Prints one line a week and a
summary; writes ``<work-dir>/challenge_weeks.jsonl`` (each week's decision, CIs, bootstrap shares
and both models' thresholds) and the models' ``registry.jsonl``. The summary also reads the
same pairs with expanded-percentile CIs (small-sample coverage, see ``expanded_ok``).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from slotml.model_file import CALIBRATIONS

DAY_S = 86400
WEEK_S = 7 * DAY_S
END = "2026-11-01"


def _slotml(*args: str) -> list[str]:
    return [sys.executable, "-m", "slotml.cli", *args]


def history(d: Path, days: float, seed: int) -> None:
    """Backfill and export once (a marker keeps a finished history)."""
    marker = d / ".done_history"
    key = f"days={days:g} seed={seed} end={END}"
    if marker.exists() and marker.read_text() == key:
        return
    d.mkdir(parents=True, exist_ok=True)
    for cmd in (_slotml("sim", "backfill", "--data-dir", str(d), "--days", f"{days:g}", "--seed",
                        str(seed), "--symbols", "BTC,ETH,SOL,XRP", "--end", END),
                _slotml("export", "--data-dir", str(d), "--grace", "0")):
        t0 = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"{' '.join(cmd[3:5])} done in {time.monotonic() - t0:.0f}s", flush=True)
    marker.write_text(key)


def thresholds(models: Path, champion: str | None, challenger: str) -> dict[str, Any]:
    """Each model's chosen edge-policy thresholds (its card's ``entry_policy.chosen``, without
    the grid): were the two models trading the same min_edge when one was refused?"""
    out: dict[str, Any] = {}
    for name, f in (("champion", champion), ("challenger", challenger)):
        card = models / f"{Path(f).stem}_card.json" if f else None
        ok = card is not None and card.exists()
        chosen = (json.loads(card.read_text()).get("entry_policy") or {}).get("chosen") if ok else None
        out[name] = {k: chosen.get(k) for k in ("min_edge", "kelly_fraction", "fill")} if chosen else None
    return out


def first_slot(lake: Path) -> int:
    from slotml.lake import connect

    con = connect(lake)
    try:
        return int(con.execute("SELECT min(slot_ts) FROM slot_resolutions").fetchall()[0][0])
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weeks", type=int, default=20, help="challenges (default 20)")
    ap.add_argument("--initial-weeks", type=int, default=4, help="the first model's span (default 4)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/slotml_bench_challenge"))
    ap.add_argument("--history", type=Path, default=None,
                    help="an exported data dir to use instead of backfilling one")
    ap.add_argument("--calibration", choices=CALIBRATIONS, default="isotonic",
                    help="every model's calibration (train's --calibration; default isotonic)")
    ap.add_argument("--reeval", action="store_true",
                    help="re-compare the stored weekly pairs and report other levels")
    a = ap.parse_args(argv)
    if a.reeval:
        return reeval(a.work_dir, a.history or a.work_dir / "history")

    from slotml.train.challenge import run_challenge
    from slotml.train.pipeline import TrainConfig
    from slotml.train.split import SplitConfig

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hist = a.history or a.work_dir / "history"
    if a.history is None:
        history(hist, (a.initial_weeks + a.weeks) * 7, a.seed)
    lake = hist / "lake"
    start = first_slot(lake)
    models = a.work_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    out_path = a.work_dir / "challenge_weeks.jsonl"
    done = {}
    if out_path.exists():  # resume
        for line in out_path.read_text().splitlines():
            r = json.loads(line)
            done[r["week"]] = r
    for k in range(0, a.weeks + 1):
        if k in done:
            continue
        slot_to = start + (a.initial_weeks + k) * WEEK_S
        cfg = TrainConfig(data_dir=hist, lake_dir=lake, models_dir=models,
                          split=SplitConfig(test_days=7.0, policy_days=None), slot_to=slot_to,
                          calibration=a.calibration)
        t0 = time.monotonic()
        o = run_challenge(cfg)
        b = o.decision.get("brier") or {}
        p = o.decision.get("maker_pnl") or {}
        rec = {"week": k, "slot_to": slot_to, "promoted": o.promoted, "reason": o.reason,
               "champion": o.champion, "challenger": o.challenger.model_path.name,
               "brier_diff": b.get("difference"), "brier_ci": b.get("ci"),
               "pnl_diff": p.get("difference"), "pnl_ci": p.get("ci"),
               "brier_share_over_margin": b.get("share_over_margin"), "brier_days": b.get("days"),
               "pnl_share_worse": p.get("share_worse"), "pnl_days": p.get("days"),
               "thresholds": thresholds(models, o.champion, o.challenger.model_path.name),
               "seconds": round(time.monotonic() - t0, 1)}
        with out_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        done[k] = rec
        print(f"week {k:2d}: {'promoted' if o.promoted else 'REFUSED '} ({rec['seconds']:.0f}s) "
              f"{o.reason}", flush=True)
    weeks = [done[k] for k in range(1, a.weeks + 1)]
    refused = [r["week"] for r in weeks if not r["promoted"]]
    rate = len(refused) / len(weeks) if weeks else float("nan")
    print(f"\nchallenges: {len(weeks)} weeks, refused {len(refused)} ({rate:.0%}): weeks {refused}; "
          f"aim < 20%: {'met' if rate < 0.2 else 'NOT met'}")
    exp = [r["week"] for r in weeks if not expanded_ok(r)]
    print(f"read with expanded-percentile CIs (Hesterberg; same pairs, approximate): refused "
          f"{len(exp)} ({len(exp) / max(len(weeks), 1):.0%}): weeks {exp}")
    return 0


def expanded_ok(r: dict[str, Any]) -> bool:
    """Would the week's pair pass with both CIs widened to small-sample coverage (the
    expanded percentile interval, Hesterberg 2015: alpha' / 2 = Phi(-sqrt(n / (n - 1)) *
    t_{alpha / 2, n - 1}), n = the days resampled)? Read from the shares of bootstrap draws
    the registry keeps (the margin is already in them); None shares (no CI) keep the week's
    own decision. The level is the promotion rule's own."""
    from scipy import stats

    from slotml.train.challenge import Rule

    level = Rule().level

    def tail(n: int | None) -> float | None:
        if not n or n < 2:
            return None
        t = stats.t.ppf(1 - (1 - level) / 2, n - 1)
        return float(stats.norm.cdf(-np.sqrt(n / (n - 1)) * t))

    ab, ap = tail(r.get("brier_days")), tail(r.get("pnl_days"))
    so, sw = r.get("brier_share_over_margin"), r.get("pnl_share_worse")
    if ab is None or so is None:
        return bool(r["promoted"])
    if so > ab:
        return False
    return not (ap is not None and sw is not None and sw > 1 - ap)


def reeval(work: Path, hist: Path) -> int:
    from slotml.train.challenge import Rule, compare, decide

    logging.basicConfig(level=logging.WARNING)
    weeks = [json.loads(x) for x in (work / "challenge_weeks.jsonl").read_text().splitlines()]
    rule = Rule()
    tally: dict[str, list[int]] = {"spec 90%": [], "Brier only": [], "PnL at 95%": [], "PnL at 99%": []}
    n = 0
    for w in weeks:
        if not w["champion"]:
            continue
        n += 1
        models = work / "models"
        c = compare(models / w["champion"], models / w["challenger"], hist / "lake", rule)
        ok, _ = decide(c, rule)
        b, p = c["brier"], c["pnl"]
        brier_ok = b["ci"] is not None and b["ci"][1] < rule.margin
        sw = p.get("share_worse")
        for name, good in (("spec 90%", ok), ("Brier only", brier_ok),
                           ("PnL at 95%", brier_ok and not (sw is not None and sw > 0.975)),
                           ("PnL at 99%", brier_ok and not (sw is not None and sw > 0.995))):
            if not good:
                tally[name].append(w["week"])
        print(f"week {w['week']:2d}: spec {'promoted' if ok else 'REFUSED'}; Brier share over "
              f"margin {b['share_over_margin']:.3f}, PnL share worse {sw}", flush=True)
    for name, refused in tally.items():
        print(f"{name}: refused {len(refused)} of {n} ({len(refused) / n:.0%}): weeks {refused}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
