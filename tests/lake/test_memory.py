"""Bounded memory: a flush rewriting many partitions holds only a few merged ones at a time."""

from __future__ import annotations

import platform
from pathlib import Path

import pyarrow as pa

from slotml.ingest.schema import SNAPSHOTS
from slotml.lake import read_manifest
from slotml.lake.export import WRITE_AHEAD, ExportConfig, _TableWriter, bound_native_heap
from slotml.lake.readers import SqliteSource, normalize
from slotml.settings import DbUrl
from tests.lake.storedb import BASE_SLOT, snapshot_rows, write
from tests.lake.test_export import export


def test_rewriting_many_partitions_keeps_few_merged_in_memory(tmp_path: Path) -> None:
    url = DbUrl(scheme="sqlite", path=tmp_path / "store.db")
    days = 30
    write(url, [r for d in range(days)
                for r in snapshot_rows(2, ticks=2, slot0=BASE_SLOT + d * 86400, seed=d)])
    lake = tmp_path / "lake"
    export(url, lake)
    live = read_manifest(lake).tables[SNAPSHOTS.name].files
    assert len(live) == days * 4

    src = SqliteSource(url)
    chunk = pa.concat_tables(normalize(c, SNAPSHOTS) for c in src.read(SNAPSHOTS, None))
    src.close()
    cfg = ExportConfig(db=url, lake_dir=lake, fsync=False, buffer_rows=10**9)
    w = _TableWriter(cfg, SNAPSHOTS, run_id=99, live=live)
    held, peak = [0], [0]  # partitions merged (old file read + new rows) and not yet written
    merge, written = w._merge, w._written

    def counting_merge(key):  # type: ignore[no-untyped-def]
        out = merge(key)
        held[0] += 1
        peak[0] = max(peak[0], held[0])
        return out

    def counting_written(*a):  # type: ignore[no-untyped-def]
        written(*a)
        held[0] -= 1

    w._merge, w._written = counting_merge, counting_written  # type: ignore[method-assign]
    w.add(chunk)  # every row again: every partition has a file to merge with
    w.finish()
    assert w.stats.partitions_rewritten == days * 4 and held[0] == 0
    assert peak[0] <= WRITE_AHEAD + 1  # not all 120 at once
    assert sum(f.rows for f in w.live()) == chunk.num_rows  # the anti-join replaced, not added


def test_native_heap_bound_applies_on_glibc() -> None:
    if platform.libc_ver()[0] == "glibc":
        assert bound_native_heap()
