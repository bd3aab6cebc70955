"""supervisord runs the collector from deploy/supervisor against the sim; SIGKILL mid-window.

The real supervisord (from PyPI) reads the real program file with %(ENV_...)s paths; the test
kills the collector with SIGKILL in the middle of a window, sees supervisord bring it back,
and checks the store: no duplicate rows, the window in progress resumed (snapshots on both
sides of the kill), windows that ended before the kill resolved afterwards, all matching the sim.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slotml.sim.config import SimConfig
from slotml.sim.runner import sim_in_thread
from tests.ingest.collector_harness import get_json, get_text
from tests.util import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SYMBOLS = ("BTC", "ETH")


def _ctl(conf: Path, *args: str) -> str:
    out = subprocess.run([str(BIN / "supervisorctl"), "-c", str(conf), *args],
                         capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def _pid(conf: Path) -> int:
    try:
        return int(_ctl(conf, "pid", "slotml-collect"))
    except ValueError:
        return 0


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _count(db: Path) -> int:
    try:
        return _rows(db, "select count(*) from slot_snapshots")[0][0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.fixture(scope="module")
def sim():
    with sim_in_thread(SimConfig(family="5s", symbols=SYMBOLS, seed=3)) as s:
        yield s


def test_supervisord_restarts_a_killed_collector_which_resumes(sim, tmp_path: Path) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    db = tmp_path / "store.db"
    port = free_port()
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""
[unix_http_server]
file={tmp_path}/supervisor.sock
[supervisord]
nodaemon=true
logfile={logs}/supervisord.log
pidfile={tmp_path}/supervisord.pid
childlogdir={logs}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{tmp_path}/supervisor.sock
[include]
files = {ROOT}/deploy/supervisor/slotml-collect.conf
""")
    env = dict(os.environ)
    env.update({
        "SLOTML_ROOT": str(ROOT), "SLOTML_BIN": str(BIN / "slotml"), "SLOTML_HOME": str(home),
        "SLOTML_LOG_DIR": str(logs), "SLOTML_DB_URL": f"sqlite:///{db}",
        "SLOTML_GAMMA_URL": sim.gamma_url, "SLOTML_CLOB_URL": sim.clob_url,
        "SLOTML_CLOB_WS_URL": sim.ws_market_url, "SLOTML_RTDS_WS_URL": sim.rtds_url,
        "SLOTML_COLLECT_ARGS": (f"--family 5s --symbols {','.join(SYMBOLS)} "
                                "--snapshot-interval 0.5 --discovery-interval 1 "
                                "--resolution-interval 0.5 --stale-after 3 --retry-limit 12 "
                                f"--health-port {port}"),
    })
    sup = subprocess.Popen([str(BIN / "supervisord"), "-c", str(conf)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    health = f"http://127.0.0.1:{port}/health"
    try:
        wait_for(lambda: _pid(conf) > 0, timeout=20, what="collector started by supervisord")
        first = _pid(conf)
        wait_for(lambda: _count(db) > 20, timeout=30, what="snapshots before the kill")
        # kill inside a window, 1.2 s after the previous one ended: that one resolves on the
        # sim 1.7-3.3 s after its end, i.e. always after the kill
        now = time.time()
        kill_at = int(now // 5) * 5 + 6.2
        time.sleep(kill_at - now)
        os.kill(first, signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: _pid(conf) not in (0, first), timeout=20, what="supervisord restart")
        second = _pid(conf)
        wait_for(lambda: get_json(health, timeout=2)[0] == 200, timeout=30, interval=0.3,
                 what="health after restart")
        time.sleep(11)  # windows that ended around the kill have time to resolve
        metrics = get_text(f"http://127.0.0.1:{port}/metrics")
        _ctl(conf, "stop", "slotml-collect")  # SIGTERM: graceful
        stopped = _pid(conf) == 0
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(30)
        except subprocess.TimeoutExpired:
            sup.kill()
    assert second != first and stopped
    assert "slotml_windows_resumed_total" in metrics

    # no duplicates (the keys are unique; the count per key proves it end to end)
    dup = _rows(db, "select symbol, slot_ts, tick_ms, count(*) c from slot_snapshots "
                    "group by 1, 2, 3 having c > 1")
    assert dup == []
    assert _rows(db, "select symbol, slot_ts, count(*) c from slot_resolutions "
                     "group by 1, 2 having c > 1") == []
    # the window in progress at the kill has rows from both processes
    slot = int(killed_at // 5) * 5
    for sym in SYMBOLS:
        caps = [r[0] for r in _rows(db, f"select captured_at from slot_snapshots where "
                                        f"symbol='{sym}' and slot_ts={slot}")]
        assert any(c < killed_at for c in caps) and any(c > killed_at for c in caps), (sym, caps)
    # windows that ended before the kill were resolved after it, correctly
    late = _rows(db, f"select symbol, slot_ts, resolved_up, resolved_at from slot_resolutions "
                     f"where end_ts <= {killed_at} and resolved_at > {killed_at}")
    assert late, "no window resolved after the restart"
    for sym, ts, up, _at in late:
        m = sim.market(sym, ts)
        assert bool(up) is get_json(f"{sim.control_url}/outcome?slug={m.slug}")[1]["up"]
    # the log is JSON lines and carries no secrets
    lines = (logs / "slotml-collect.log").read_text().splitlines()
    parsed = [json.loads(x) for x in lines if x.startswith("{")]
    assert any("config CollectorConfig" in p["msg"] for p in parsed)
    assert any(p["msg"].startswith("resumed") for p in parsed)
