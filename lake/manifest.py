"""The lake's commit point: ``_manifest.json`` lists the live files; readers use only those.

A run writes its new data files first, then swaps the manifest in one ``os.replace`` (write a
temp file, fsync, rename, fsync the folder), so a reader sees either the old lake or the new
one, never half a run. The manifest also carries each table's incremental high-water mark and
the files a run superseded, which are deleted only after a grace period for readers still
holding the previous manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "_manifest.json"
FORMAT_VERSION = 1


@dataclass
class FileEntry:
    """One live Parquet file (path relative to the lake dir)."""

    path: str
    rows: int
    symbol: str
    date: str
    max_updated_at: float  # lets the next run read back only the files near its cutoff

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileEntry:
        return cls(path=d["path"], rows=int(d["rows"]), symbol=d["symbol"], date=d["date"],
                   max_updated_at=float(d["max_updated_at"]))


@dataclass
class TableState:
    files: list[FileEntry] = field(default_factory=list)
    # Next run reads rows with updated_at >= cutoff (database clock, already minus the overlap).
    cutoff: float | None = None
    fingerprint: str = ""

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableState:
        return cls(files=[FileEntry.from_dict(f) for f in d.get("files", [])],
                   cutoff=d.get("cutoff"), fingerprint=d.get("fingerprint", ""))


@dataclass
class Manifest:
    id: int = 0
    created_at: float = 0.0
    tables: dict[str, TableState] = field(default_factory=dict)
    # Files a run replaced, kept until `since + grace` for readers still on an older manifest.
    superseded: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # the store it mirrors (password masked)
    source_key: str = ""  # DbUrl.key() of that store: another store means a full rebuild

    def live_paths(self) -> set[str]:
        return {f.path for t in self.tables.values() for f in t.files}

    def files(self, table: str) -> list[FileEntry]:
        t = self.tables.get(table)
        return list(t.files) if t else []

    def only_dates(self, dates: set[str]) -> Manifest:
        """The same manifest with only the files of ``dates`` (a read-only view for queries)."""
        return Manifest(id=self.id, tables={
            name: TableState(files=[f for f in t.files if f.date in dates], fingerprint=t.fingerprint)
            for name, t in self.tables.items()})

    def to_json(self) -> str:
        d = {
            "format": FORMAT_VERSION,
            "id": self.id,
            "created_at": self.created_at,
            "source": self.source,
            "source_key": self.source_key,
            "tables": {name: {"rows": t.rows, "cutoff": t.cutoff, "fingerprint": t.fingerprint,
                              "files": [asdict(f) for f in t.files]}
                       for name, t in self.tables.items()},
            "superseded": self.superseded,
        }
        return json.dumps(d, indent=1, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        return cls(id=int(d["id"]), created_at=float(d.get("created_at", 0.0)),
                   tables={k: TableState.from_dict(v) for k, v in d.get("tables", {}).items()},
                   superseded=list(d.get("superseded", [])), source=d.get("source", ""),
                   source_key=d.get("source_key", ""))


def read_manifest(lake_dir: Path | str) -> Manifest:
    """The lake's current manifest; an empty one (id 0, no files) if the lake has none yet."""
    p = Path(lake_dir) / MANIFEST_NAME
    try:
        text = p.read_text()
    except FileNotFoundError:
        return Manifest()
    return Manifest.from_json(text)


def write_manifest(lake_dir: Path, manifest: Manifest) -> None:
    """Atomically replace the manifest (the commit point of a run)."""
    lake_dir.mkdir(parents=True, exist_ok=True)
    final = lake_dir / MANIFEST_NAME
    tmp = lake_dir / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(lake_dir)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
