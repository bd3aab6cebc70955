"""Settings shared by every command: data dir, database URL, logging.

Precedence: command-line flag > environment variable > default. Each stage keeps its own typed
config dataclass (e.g. ``slotml.ingest.config.CollectorConfig``) built on top of
``CommonSettings``; every command logs its config once at start-up with secrets masked
(``log_config``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from slotml.errors import UserError

ENV_HOME = "SLOTML_HOME"
ENV_DB_URL = "SLOTML_DB_URL"
DEFAULT_DATA_DIR = "./data"
EMBEDDED_DB_NAME = "slotml.db"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DbUrl:
    """A parsed database URL.

    ``sqlite:///rel/path.db`` (relative to the working directory), ``sqlite:////abs/path.db``,
    ``mysql://user:password@host:3306/db``. ``str()`` masks the password; ``raw`` keeps it.
    """

    scheme: str  # "sqlite" or "mysql"
    path: Path | None = None  # sqlite only
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    host: str = ""
    port: int = 3306
    database: str = ""

    @classmethod
    def parse(cls, url: str) -> DbUrl:
        if not url or "://" not in url:
            raise UserError(
                f"database URL {mask_url(url)!r} is not a URL: use sqlite:///path.db or "
                "mysql://user:password@host:3306/db"
            )
        scheme = url.split("://", 1)[0].lower()
        if scheme == "sqlite":
            rest = url[len("sqlite://"):]
            if not rest.startswith("/") or rest == "/":
                raise UserError(
                    f"database URL {url!r}: a SQLite URL is sqlite:///relative/path.db or "
                    "sqlite:////absolute/path.db"
                )
            return cls(scheme="sqlite", path=Path(rest[1:]))
        if scheme in ("mysql", "mariadb", "mysql+aiomysql", "mysql+pymysql"):
            parts = urlsplit(url)
            try:
                port = parts.port or 3306
            except ValueError as e:
                raise UserError(f"database URL {mask_url(url)!r}: bad port ({e})") from None
            db = parts.path.lstrip("/")
            if not parts.hostname:
                raise UserError(f"database URL {mask_url(url)!r}: no host")
            if not db or "/" in db:
                raise UserError(f"database URL {mask_url(url)!r}: name one database, e.g. .../slotml")
            return cls(
                scheme="mysql",
                user=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                host=parts.hostname,
                port=port,
                database=db,
            )
        raise UserError(
            f"database URL {mask_url(url)!r}: unknown scheme {scheme!r} (use sqlite or mysql)"
        )

    @property
    def raw(self) -> str:
        if self.scheme == "sqlite":
            return f"sqlite:///{self.path}"
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def __str__(self) -> str:
        if self.scheme == "sqlite":
            return f"sqlite:///{self.path}"
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        return f"mysql://{auth}{self.host}:{self.port}/{self.database}"

    def key(self) -> str:
        """A file-name-safe identity for this database (spool folders: one per database)."""
        if self.scheme == "sqlite":
            ident = str(Path(self.path).resolve()) if self.path else ""
            stem = Path(self.path).stem if self.path else "sqlite"
            label = f"sqlite-{stem}"
        else:
            ident = f"{self.user}@{self.host}:{self.port}/{self.database}"
            label = f"mysql-{self.host}-{self.port}-{self.database}"
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        return f"{label}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}"


_URL_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]*)(@)")


def mask_url(text: str) -> str:
    """Hide any password embedded in a URL inside ``text``."""
    return _URL_PASSWORD.sub(r"\1***\3", text or "")


@dataclass(frozen=True)
class CommonSettings:
    """What every command shares."""

    data_dir: Path
    db: DbUrl
    log_format: str = "text"
    log_level: str = "INFO"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def spool_dir(self) -> Path:
        """One spool per database, so two stores never share one."""
        return self.data_dir / "spool" / self.db.key()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CommonSettings:
        data_dir = Path(getattr(args, "data_dir", None) or os.environ.get(ENV_HOME) or DEFAULT_DATA_DIR)
        url = getattr(args, "db", None) or os.environ.get(ENV_DB_URL)
        db = DbUrl.parse(url) if url else default_db(data_dir)
        return cls(
            data_dir=data_dir,
            db=db,
            log_format=getattr(args, "log_format", None) or "text",
            log_level=getattr(args, "log_level", None) or "INFO",
        )


def default_db(data_dir: Path) -> DbUrl:
    """The embedded store: a SQLite file under the data dir."""
    return DbUrl(scheme="sqlite", path=Path(data_dir) / EMBEDDED_DB_NAME)


def add_common_args(parser: argparse.ArgumentParser, db: bool = True, writes: bool = True) -> None:
    """Flags every command takes. Defaults are resolved in ``CommonSettings.from_args``.
    ``writes``: the command may create the data dir (else it must exist)."""
    from slotml import argtypes

    g = parser.add_argument_group("common")
    g.add_argument("--data-dir", type=argtypes.output_dir if writes else argtypes.existing_dir,
                   help=f"data directory (env {ENV_HOME}, default {DEFAULT_DATA_DIR})")
    if db:
        g.add_argument(
            "--db",
            help=f"database URL (env {ENV_DB_URL}; default sqlite under the data dir): "
            "sqlite:///rel.db, sqlite:////abs.db, mysql://user:pass@host:3306/db",
        )
    g.add_argument("--log-format", choices=["text", "json"], default="text")
    g.add_argument("--log-level", type=argtypes.log_level, default="INFO",
                   help=f"{', '.join(argtypes.LOG_LEVELS)} (default INFO)")


def _masked(value: Any) -> Any:
    if isinstance(value, DbUrl):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_url(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _masked(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not _is_secret(f.name)}
    if isinstance(value, tuple | list):
        return [_masked(v) for v in value]
    return value


def _is_secret(name: str) -> bool:
    return any(s in name.lower() for s in ("password", "secret", "token_key", "api_key", "passphrase"))


def config_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict, secrets masked or dropped."""
    return _masked(config)


def log_config(config: Any, logger: logging.Logger | None = None) -> None:
    """Log a command's typed config once at start-up, secrets masked."""
    (logger or log).info(
        "config %s: %s",
        type(config).__name__,
        " ".join(f"{k}={v}" for k, v in config_dict(config).items()),
    )


def start_command(args: argparse.Namespace, config: Any = None,
                  logger: logging.Logger | None = None) -> CommonSettings:
    """The preamble of every command handler: common settings from the flags (env, defaults),
    logging set up, and the command's typed config logged once with secrets masked. Handlers
    that build their config from the settings call it first and log the config themselves."""
    from slotml.log import setup_logging

    common = CommonSettings.from_args(args)
    setup_logging(common.log_format, common.log_level)
    if config is not None:
        log_config(config, logger)
    return common
