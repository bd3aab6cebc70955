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
    return DbUrl.parse(os.environ.get("SLOTML_TEST_MYSQL_URL", DEFAULT_TEST_MYSQL_URL))


def _mysql_reachable(url: DbUrl) -> str | None:
    """None if we can log in, else the reason."""
    import pymysql

    try:
        conn = pymysql.connect(host=url.host, port=url.port, user=url.user,
                               password=url.password, database=url.database, connect_timeout=3)
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


_browser_state: dict[str, str | None] = {"error": None}


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths for the browser tests, or skip (fail under CI=true).

    Debian's ``chromium`` and ``chromium-driver`` packages (.ci/run installs them)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
        _browser_state["error"] = f"{missing} not found"
        msg = f"browser tests need {missing} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " - CI must run the browser tests (.ci/run installs them)")
        pytest.skip(msg)
    return browser, driver


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    berr = _browser_state["error"]
    if berr and os.environ.get("CI", "").lower() != "true":
        terminalreporter.write_line("")
        terminalreporter.write_line(
            "!!! BROWSER TESTS DID NOT RUN: " + berr + ". Install Debian's chromium and "
            "chromium-driver (sudo bash .ci/run does it)", red=True, bold=True,
        )
    err = _mysql_state["error"]
    if err and os.environ.get("CI", "").lower() != "true":
        terminalreporter.write_line("")
        terminalreporter.write_line(
            "!!! MySQL TESTS DID NOT RUN: " + err + ". Start MariaDB and create the test user "
            "(sudo bash .ci/run does both), or set SLOTML_TEST_MYSQL_URL=mysql://user:pass@host:3306/db",
            red=True, bold=True,
        )
