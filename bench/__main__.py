"""Run every benchmark and print one table:
``python -m bench [--quick] [--only NAME] [--minutes M]``."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from bench import Row, machine, render


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--only", action="append", default=[], help="run only bench_NAME modules")
    ap.add_argument("--minutes", type=float, default=None,
                    help="duration of the timed benchmarks that take one (e.g. collector)")
    args = ap.parse_args()
    rows: list[Row] = []
    failed: list[str] = []
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    for name in names:
        if args.only and name.removeprefix("bench_") not in args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            mod = importlib.import_module(f"bench.{name}")
            kw = {}
            if args.minutes is not None and "minutes" in inspect.signature(mod.run).parameters:
                kw["minutes"] = args.minutes
            got = mod.run(quick=args.quick, **kw)
            rows += got
            print(f"   {name}: {len(got)} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
    print(f"\nslotml benchmarks on {machine()}\n")
    print(render(rows))
    if failed:
        print(f"\nFAILED benchmarks: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
