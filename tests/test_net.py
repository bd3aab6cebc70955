"""Servers bind their port before anything else: a busy or impossible port is one line, exit 2.

Before issue 19: `sim serve --port 70000`, `api --port 70000` and a port already in use for
`sim serve` and `api` ended in a traceback (late, inside aiohttp/uvicorn).
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from slotml.cli import main
from slotml.errors import UserError
from slotml.net import bind_listener, ensure_port_free


@pytest.fixture
def busy_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [x for x in err.strip().splitlines() if not x[:4].isdigit()]  # start-up log lines
    assert len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


def test_bind_listener_binds_and_listens() -> None:
    s = bind_listener("127.0.0.1", 0)
    try:
        port = s.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # accepted by the backlog: it really listens
        with pytest.raises(UserError, match="already in use"):
            bind_listener("127.0.0.1", port, "api")
    finally:
        s.close()
    ensure_port_free("127.0.0.1", port)  # closed again: free


@pytest.mark.parametrize("host,port,msg", [
    ("127.0.0.1", 70000, "not in 0..65535"),
    ("no-such-host.invalid", 8000, "cannot resolve"),
    ("192.0.2.1", 0, "not one of this machine's"),  # TEST-NET-1: never local
])
def test_impossible_addresses(host: str, port: int, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        bind_listener(host, port, "server")


def test_sim_serve_busy_port_is_one_line(busy_port: int, capsys) -> None:
    assert main(["sim", "serve", "--port", str(busy_port), "--family", "5s"]) == 2
    line = _error_line(capsys)
    assert "sim serve" in line and str(busy_port) in line and "already in use" in line


def test_api_busy_port_is_one_line(busy_port: int, tmp_path: Path, capsys) -> None:
    db = tmp_path / "s.db"
    sqlite3.connect(db).close()  # a store file, so the api gets as far as binding
    assert main(["api", "--port", str(busy_port), "--db", f"sqlite:///{db}",
                 "--data-dir", str(tmp_path)]) == 2
    assert "already in use" in _error_line(capsys)


@pytest.mark.parametrize("argv", [["sim", "serve", "--port", "70000"], ["api", "--port", "70000"],
                                  ["api", "--port", "0"], ["dashboard", "--port", "-1"]])
def test_out_of_range_ports(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    assert "--port" in _error_line(capsys)


def test_dashboard_busy_port_is_one_line(busy_port: int, tmp_path: Path, capsys) -> None:
    (tmp_path / "lake").mkdir()
    assert main(["dashboard", "--port", str(busy_port), "--data-dir", str(tmp_path)]) == 2
    assert "already in use" in _error_line(capsys)
