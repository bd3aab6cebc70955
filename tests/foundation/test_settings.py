from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from slotml.errors import UserError
from slotml.settings import CommonSettings, DbUrl, add_common_args, log_config, mask_url


def test_sqlite_relative_and_absolute() -> None:
    assert DbUrl.parse("sqlite:///rel/path.db").path == Path("rel/path.db")
    assert DbUrl.parse("sqlite:////abs/path.db").path == Path("/abs/path.db")


def test_mysql_url_parts_and_masking() -> None:
    u = DbUrl.parse("mysql://bot:s3cr%40t@db.example:3307/slots")
    assert (u.user, u.password, u.host, u.port, u.database) == ("bot", "s3cr@t", "db.example", 3307, "slots")
    assert "s3cr" not in str(u) and "s3cr" not in repr(u)
    assert str(u) == "mysql://bot:***@db.example:3307/slots"


@pytest.mark.parametrize("url", ["postgres://a@b/c", "nonsense", "mysql://u:p@/db", "mysql://u:p@h:3306/",
                                 "sqlite://", "mysql://u:p@h:notaport/db"])
def test_bad_urls_are_user_errors_without_password(url: str) -> None:
    with pytest.raises(UserError) as e:
        DbUrl.parse(url)
    assert ":p@" not in str(e.value)


def test_mask_url_in_text() -> None:
    assert mask_url("cannot reach mysql://u:hunter2@h:3306/db now") == "cannot reach mysql://u:***@h:3306/db now"


def test_precedence_flag_env_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = argparse.ArgumentParser()
    add_common_args(p)
    monkeypatch.delenv("SLOTML_HOME", raising=False)
    monkeypatch.delenv("SLOTML_DB_URL", raising=False)
    s = CommonSettings.from_args(p.parse_args([]))
    assert s.data_dir == Path("./data") and s.db.path == Path("data/slotml.db")
    monkeypatch.setenv("SLOTML_HOME", str(tmp_path))
    monkeypatch.setenv("SLOTML_DB_URL", "mysql://u:pw@h:3306/d")
    s = CommonSettings.from_args(p.parse_args([]))
    assert s.data_dir == tmp_path and s.db.scheme == "mysql"
    s = CommonSettings.from_args(p.parse_args(["--data-dir", "x", "--db", "sqlite:///y.db"]))
    assert s.data_dir == Path("x") and s.db.path == Path("y.db")


def test_spool_dir_is_per_database(tmp_path: Path) -> None:
    a = CommonSettings(data_dir=tmp_path, db=DbUrl.parse("sqlite:///a.db"))
    b = CommonSettings(data_dir=tmp_path, db=DbUrl.parse("sqlite:///b.db"))
    c = CommonSettings(data_dir=tmp_path, db=DbUrl.parse("mysql://u:p@h:3306/d"))
    assert len({a.spool_dir, b.spool_dir, c.spool_dir}) == 3
    assert "p@" not in str(c.spool_dir)


def test_log_config_masks_secrets(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    s = CommonSettings(data_dir=tmp_path, db=DbUrl.parse("mysql://u:topsecret@h:3306/d"))
    with caplog.at_level(logging.INFO):
        log_config(s)
    assert "topsecret" not in caplog.text and "mysql://u:***@h:3306/d" in caplog.text
