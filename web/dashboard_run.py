"""``slotml dashboard``'s launcher: warm the per-date cache, then run the Streamlit page.

Apart from the numbers (``dashboard.py``) so that the cache, which reads those numbers, and the
launcher, which builds the cache, import in one direction only.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from slotml.model_file import resolve_model_path
from slotml.serve.scorer import Scorer
from slotml.web.dashboard_cache import DashboardCache

APP = Path(__file__).with_name("dashboard_app.py")
log = logging.getLogger(__name__)


def streamlit_command(lake_dir: Path | str, model: str | None, *, host: str = "127.0.0.1",
                      port: int = 8501, monitor_dir: Path | str | None = None) -> list[str]:
    """The command line that serves the dashboard (``slotml dashboard``; tests run the same)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.address", host, "--server.port", str(int(port)),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--global.developmentMode", "false",
           "--", "--lake-dir", str(lake_dir)]
    if model:
        cmd += ["--model", str(model)]
    if monitor_dir:
        cmd += ["--monitor-dir", str(monitor_dir)]
    return cmd


def warm_cache(lake_dir: Path | str, model: str | None) -> None:
    """Bring the per-date aggregate cache up to date before the first visit (a year's first
    build takes a while; afterwards only new or rewritten days are computed). Best effort: the
    page reads the lake itself if the cache cannot be written."""
    cache = DashboardCache(lake_dir)
    try:
        st = cache.update()
    except Exception as e:  # noqa: BLE001 - best effort, logged
        log.warning("dashboard cache %s not built: %s", cache.dir, e)
        return
    print(f"dashboard cache {cache.dir}: {st.computed} of {st.dates} days computed "
          f"in {st.seconds:.1f}s", flush=True)
    if model:
        try:
            path = resolve_model_path(model)
            cache.calibration_rows(Scorer.load(path), path)
        except Exception as e:  # noqa: BLE001 - no model is a normal state
            log.info("calibration not cached: %s", e)


def run_streamlit(lake_dir: Path | str, model: str | None, *, host: str = "127.0.0.1",
                  port: int = 8501, monitor_dir: Path | str | None = None) -> int:
    """Serve the dashboard until interrupted; returns streamlit's exit code."""
    warm_cache(lake_dir, model)
    print(f"dashboard on http://{host}:{port} (lake {lake_dir})", flush=True)
    proc = subprocess.Popen(streamlit_command(lake_dir, model, host=host, port=port,
                                              monitor_dir=monitor_dir))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return 130
