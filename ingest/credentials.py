"""PolyBolt's CLOB L2 credentials (key, secret, passphrase): loaded once, never printed.

From a JSON file named by ``--polybolt-credentials`` (``{"key": .., "secret": ..,
"passphrase": ..}``; ``apiKey`` is accepted for ``key``), refused unless only its owner can
read it (mode 0600 or stricter), else from ``SLOTML_POLYBOLT_KEY`` / ``_SECRET`` /
``_PASSPHRASE``. ``Credentials`` prints as a mask (``repr``, ``str``, the start-up config
line), and no error message quotes a value.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from slotml.errors import UserError

ENV = ("SLOTML_POLYBOLT_KEY", "SLOTML_POLYBOLT_SECRET", "SLOTML_POLYBOLT_PASSPHRASE")
FIELDS = ("key", "secret", "passphrase")


class Credentials:
    """The three values, masked wherever the object is printed."""

    __slots__ = ("key", "secret", "passphrase", "origin")

    def __init__(self, key: str, secret: str, passphrase: str, origin: str) -> None:
        self.key, self.secret, self.passphrase, self.origin = key, secret, passphrase, origin

    def auth(self) -> dict[str, str]:
        """The ``auth`` object of PolyBolt's ``op: auth`` frame."""
        return {"apiKey": self.key, "secret": self.secret, "passphrase": self.passphrase}

    def __repr__(self) -> str:
        return f"<PolyBolt credentials from {self.origin}: key ***, secret ***, passphrase ***>"

    __str__ = __repr__


def _from_file(path: Path) -> Credentials:
    try:
        st = path.stat()
    except OSError as e:
        raise UserError(f"--polybolt-credentials {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"--polybolt-credentials {path}: not a file")
    if st.st_mode & 0o077:
        raise UserError(f"--polybolt-credentials {path}: mode {stat.S_IMODE(st.st_mode):04o} "
                        f"lets others read the secret; chmod 600 {path}")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"--polybolt-credentials {path}: not a JSON object with key, secret "
                        "and passphrase") from None
    if isinstance(obj, dict) and "key" not in obj and "apiKey" in obj:
        obj["key"] = obj["apiKey"]
    if not isinstance(obj, dict):
        raise UserError(f"--polybolt-credentials {path}: not a JSON object with key, secret "
                        "and passphrase")
    missing = [f for f in FIELDS if not isinstance(obj.get(f), str) or not obj[f]]
    if missing:
        raise UserError(f"--polybolt-credentials {path}: missing or empty {', '.join(missing)}")
    return Credentials(obj["key"], obj["secret"], obj["passphrase"], str(path))


def load_credentials(path: Path | None, needed: bool, source: str) -> Credentials | None:
    """The credentials, from ``path`` if given, else the environment; a one-line error when
    ``needed`` (``--price-source`` ``source`` uses PolyBolt) and there are none."""
    if path is not None:
        return _from_file(Path(path))
    values = [os.environ.get(k) or "" for k in ENV]
    if any(values) and not all(values):
        unset = [k for k, v in zip(ENV, values, strict=True) if not v]
        raise UserError(f"PolyBolt credentials: {', '.join(unset)} not set (set all three)")
    if all(values):
        return Credentials(*values, origin="environment")
    if needed:
        raise UserError(f"--price-source {source} needs PolyBolt's L2 credentials: "
                        f"--polybolt-credentials FILE (mode 0600) or {', '.join(ENV)}")
    return None
