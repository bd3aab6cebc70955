"""Shared fixtures: real SQLite files, the real MariaDB/MySQL test server, polling helpers.

MySQL: tests read SLOTML_TEST_MYSQL_URL (default below). Under CI=true an unreachable server
FAILS the run; on a developer machine without one, the MySQL tests are skipped and the run
ends with one loud line saying so and how to enable them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slotml.settings import DbUrl

DEFAULT_TEST_MYSQL_URL = "mysql://slotml:slotml@127.0.0.1:3306/slotml_test"
FIXTURES = Path(__file__).parent / "fixtures"

_mysql_state: dict[str, str | None] = {"error": None, "checked": None}


def _mysql_url() -> DbUrl:
    """SLOTML_TEST_MYSQL_URL; under pytest-xdist (``make test``), each worker gets a database of
    its own, ``<database>_<worker>`` (e.g. slotml_test_gw0; the test user may create
    ``slotml_test_*``), so tests that drop every table never meet in one database."""
    import dataclasses

    url = DbUrl.parse(os.environ.get("SLOTML_TEST_MYSQL_URL", DEFAULT_TEST_MYSQL_URL))
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return dataclasses.replace(url, database=f"{url.database}_{worker}") if worker else url


def _mysql_reachable(url: DbUrl) -> str | None:
    """None if we can log in (creating a worker's own database first), else the reason."""
    import pymysql

    try:
        conn = pymysql.connect(host=url.host, port=url.port, user=url.user,
                               password=url.password, connect_timeout=3, autocommit=True)
        try:
            if os.environ.get("PYTEST_XDIST_WORKER"):
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
            conn.select_db(url.database)
        finally:
            conn.close()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "not usable"
        return f"{type(e).__name__}: {e}"


def drop_all_tables(url: DbUrl) -> None:
    import pymysql

    conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                           database=url.database, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            for (name,) in cur.fetchall():
                cur.execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _no_stale_log_handlers():
    """A command run in-process (``main([...])``) points the root logger at the sys.stderr of
    its moment, under capsys a capture file closed when the test ends; the next test's log
    records (a sim thread's, say) would then print "--- Logging error" into that test's stderr.
    Remove the plain StreamHandlers a test added (pytest's own capture handlers are subclasses)."""
    import logging

    root = logging.getLogger()
    before = set(map(id, root.handlers))
    yield
    for h in list(root.handlers):
        if type(h) is logging.StreamHandler and id(h) not in before:
            root.removeHandler(h)


@pytest.fixture(scope="session")
def mysql_server() -> DbUrl:
    """The MySQL test server's URL, or skip (fail under CI=true) when it cannot be reached."""
    url = _mysql_url()
    if _mysql_state["checked"] is None:
        _mysql_state["checked"] = "yes"
        _mysql_state["error"] = _mysql_reachable(url)
    err = _mysql_state["error"]
    if err:
        msg = f"MySQL test server {url} unreachable ({err})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " - CI must run the MySQL tests (.ci/run prepares the server)")
        pytest.skip(msg)
    return url


@pytest.fixture
def mysql_db(mysql_server: DbUrl) -> DbUrl:
    """An empty MySQL test database (every table dropped first)."""
    drop_all_tables(mysql_server)
    return mysql_server


@pytest.fixture
def sqlite_db(tmp_path: Path) -> DbUrl:
    return DbUrl(scheme="sqlite", path=tmp_path / "store.db")


@pytest.fixture(params=["sqlite", "mysql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> DbUrl:
    """The same suite against both backends."""
    if request.param == "sqlite":
        return DbUrl(scheme="sqlite", path=tmp_path / "store.db")
    return request.getfixturevalue("mysql_db")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths for the browser tests, or skip (fail under CI=true).

    Debian's ``chromium`` and ``chromium-driver`` packages (.ci/run installs them)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
        msg = f"browser tests need {missing} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " - CI must run the browser tests (.ci/run installs them)")
        pytest.skip(msg)
    return browser, driver


def _skip_reason(terminalreporter, marker: str) -> str | None:
    """The first skip reason containing ``marker``: read from the reports, so the loud lines
    below also appear when the skips happened in pytest-xdist workers (other processes)."""
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if marker in reason:
            return reason.removeprefix("Skipped: ")
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if os.environ.get("CI", "").lower() == "true":
        return  # under CI both fail the run instead of skipping
    berr = _skip_reason(terminalreporter, "browser tests need")
    if berr:
        terminalreporter.write_line("")
        terminalreporter.write_line(
            "!!! BROWSER TESTS DID NOT RUN: " + berr + ". Install Debian's chromium and "
            "chromium-driver (sudo bash .ci/run does it)", red=True, bold=True,
        )
    err = _skip_reason(terminalreporter, "MySQL test server")
    if err:
        terminalreporter.write_line("")
        terminalreporter.write_line(
            "!!! MySQL TESTS DID NOT RUN: " + err + ". Start MariaDB and create the test user "
            "(sudo bash .ci/run does both), or set SLOTML_TEST_MYSQL_URL=mysql://user:pass@host:3306/db",
            red=True, bold=True,
        )
