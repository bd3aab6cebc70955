"""lake/: the nightly, incremental, hive-partitioned Parquet mirror of the store.

Readers: ``slotml.lake.connect()`` (DuckDB views over the manifest's files) and
``slotml.lake.read_manifest()``. Writer: ``slotml.lake.export.run_export`` (``slotml export``).
Heavy imports happen on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slotml.lake.manifest import Manifest, read_manifest
    from slotml.lake.query import connect

__all__ = ["connect", "read_manifest", "Manifest"]


def __getattr__(name: str) -> Any:
    if name == "connect":
        from slotml.lake.query import connect

        return connect
    if name in ("read_manifest", "Manifest"):
        from slotml.lake import manifest

        return getattr(manifest, name)
    raise AttributeError(name)
