"""Operator mistakes end in one clear line, exit code 2, no traceback, password masked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.util import free_port

SECRET = "s3cr3t-pw"


def run_all(cmds: list[list[str]], tmp: Path) -> list[subprocess.CompletedProcess]:
    """Run the CLI invocations concurrently (each pays Python's start-up)."""
    env = {**os.environ, "SLOTML_HOME": str(tmp)}
    env.pop("SLOTML_DB_URL", None)
    procs = [subprocess.Popen([sys.executable, "-m", "slotml.cli", *c], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    out = []
    for c, p in zip(cmds, procs, strict=True):
        so, se = p.communicate(timeout=60)
        out.append(subprocess.CompletedProcess(c, p.returncode, so, se))
    return out


def check_one_line(res: subprocess.CompletedProcess, *needles: str) -> None:
    err = res.stderr.strip()
    assert res.returncode == 2, (res.args, res.returncode, res.stdout, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert SECRET not in err + res.stdout
    for n in needles:
        assert n in err, (n, err)


def test_config_errors_without_a_server(tmp_path: Path) -> None:
    closed = free_port()
    hang = socket.socket()  # listens, never accepts: the handshake never comes
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    (tmp_path / "adir.db").mkdir()
    try:
        res = run_all([
            ["db", "init", "--db", f"mysql://u:{SECRET}@127.0.0.1:{closed}/x"],
            ["db", "init", "--connect-timeout", "1",
             "--db", f"mysql://u:{SECRET}@127.0.0.1:{hang.getsockname()[1]}/x"],
            ["db", "init", "--db", f"postgres://u:{SECRET}@127.0.0.1/x"],
            ["db", "init", "--db", "not a url"],
            ["db", "init", "--db", f"mysql://u:{SECRET}@127.0.0.1:99999/x"],
            ["db", "init", "--db", f"sqlite:///{tmp_path / 'adir.db'}"],
        ], tmp_path)
    finally:
        hang.close()
    check_one_line(res[0], "cannot reach MySQL server 127.0.0.1", "refused", "u:***@")
    check_one_line(res[1], "cannot reach MySQL server", "no answer within 1 s")
    check_one_line(res[2], "unknown scheme 'postgres'")
    check_one_line(res[3], "is not a URL")
    check_one_line(res[4], "bad port")
    check_one_line(res[5], "is a directory")


@pytest.mark.mysql
def test_config_errors_with_the_server(mysql_server, tmp_path: Path) -> None:
    u = mysql_server
    base = f"{u.host}:{u.port}"
    res = run_all([
        ["db", "init", "--db", f"mysql://{u.user}:{SECRET}@{base}/{u.database}"],
        ["db", "init", "--db", f"mysql://{u.user}:{u.password}@{base}/{u.database}_nosuchdb"],
        ["db", "init", "--db", f"mysql://{u.user}:{u.password}@{base}/{u.database}"],
    ], tmp_path)
    check_one_line(res[0], "access denied", "wrong user or password")
    check_one_line(res[1], "unknown database", f"{u.database}_nosuchdb")
    assert res[2].returncode == 0, res[2].stderr
    assert "slot_snapshots" in res[2].stdout


def test_db_schema_prints_the_reference(tmp_path: Path) -> None:
    res = run_all([["db", "schema"], ["db", "schema", "--ddl", "sqlite"]], tmp_path)
    assert res[0].returncode == 0 and "| `tick_ms` | BIGINT | no |" in res[0].stdout
    assert res[1].returncode == 0 and "CREATE TABLE IF NOT EXISTS \"slot_resolutions\"" in res[1].stdout
