"""Issue 7: train, calibrate and export on one year at the design's volume (synthetic).

4 assets x 35,040 windows x 3 decision points = 420,480 rows x 24 contract features, from
``slotml.train.synthetic`` (a known signal, so early stopping behaves as on real data). The
figure is the whole of ``train_on_dataset``: XGBoost fit with early stopping, ONNX export,
isotonic calibration, both export checks, test-day metrics, feature importance (gain, and
permutation on the calibration days: 3 shuffles per feature), model + card + PNG written. The
baseline beside it, measured in the same run, is the booster fit alone (the part no export
design can avoid), so the ratio shows what export, calibration and checks add.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from bench import Row

WINDOWS_PER_YEAR = 35_040  # 365 days x 96 windows of 15 min


def run(quick: bool) -> list[Row]:
    from slotml.train.pipeline import TrainConfig, train_on_dataset
    from slotml.train.split import SplitConfig, temporal_split
    from slotml.train.synthetic import synthetic_training_set

    logging.getLogger("slotml").setLevel(logging.WARNING)
    n_windows = WINDOWS_PER_YEAR // 12 if quick else WINDOWS_PER_YEAR
    span = "1 month" if quick else "1 year"
    ds, _ = synthetic_training_set(n_windows=n_windows, seed=0)
    n = len(ds)
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(data_dir=Path(d), lake_dir=Path(d) / "lake", models_dir=Path(d) / "models",
                          split=SplitConfig(test_days=3))
        split = temporal_split(ds, cfg.split)
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        res = train_on_dataset(ds, split, cfg)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    fit_s = res.timings["fit booster"]
    export_key = next(k for k in res.timings if k.startswith("export"))
    booster = res.card["booster"]
    name = f"train+calibrate+export, {span} ({n:,} rows x {ds.n_features} features)"
    return [
        Row(issue=7, name=name, figure=total, unit="s", baseline=fit_s,
            baseline_name="booster fit alone", higher_is_better=False,
            aim="< 60 s (1 year)", met=(total < 60) if not quick else None),
        Row(issue=7, name=f"  same, throughput ({booster['best_iteration'] + 1} trees kept of "
            f"{booster['rounds_trained']})", figure=n / total, unit="rows/s"),
        Row(issue=7, name="  export + isotonic + both checks", figure=res.timings[export_key],
            unit="s", aim="", met=None),
        Row(issue=21, name=f"  feature importance (gain + permutation, {res.card['importance']['rows']:,} "
            f"calibration rows x {ds.n_features} features x {res.card['importance']['repeats']} shuffles)",
            figure=res.timings[next(k for k in res.timings if k.startswith("feature importance"))],
            unit="s", aim="", met=None),
        # wall time depends on what else runs (the box is shared); CPU time much less so
        Row(issue=7, name=f"  same, CPU time (load average {load:.1f} at start, "
            f"{booster['params']['nthread']} XGBoost thread(s))", figure=cpu, unit="s cpu",
            higher_is_better=False),
    ]


if __name__ == "__main__":  # pragma: no cover
    import sys

    from bench import render

    print(render(run(quick="--quick" in sys.argv)))
