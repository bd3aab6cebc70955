"""ingest/heap.py: a fixed mmap threshold keeps large blocks out of glibc's main heap.

Each check runs in a fresh interpreter, whose allocator has not yet raised its threshold. The
probe frees one 1 MiB mapped block (glibc's dynamic rule then lifts the threshold to 1 MiB) and
asks for 200 KiB: with the dynamic default that block comes from the heap; fixed at 128 KiB it
is a mapping of its own, counted by ``mallinfo2().hblks``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from slotml.ingest.heap import ENV, fix_mmap_threshold

PROBE = """
import ctypes, sys
from slotml.ingest.heap import fix_mmap_threshold
print(fix_mmap_threshold(int(sys.argv[1])), file=sys.stderr)

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = Mallinfo2
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(200 * 1024)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                           reason="mallopt and mallinfo2 are glibc's")


def _mapped_blocks(kib: int, env: dict[str, str] | None = None) -> tuple[int, str]:
    e = {k: v for k, v in os.environ.items() if k != ENV} | (env or {})
    out = subprocess.run([sys.executable, "-c", PROBE, str(kib)], capture_output=True,
                         text=True, env=e, check=True)
    return int(out.stdout.strip()), out.stderr.strip()


@glibc
def test_fixed_threshold_maps_a_block_the_dynamic_one_puts_on_the_heap() -> None:
    dynamic, said = _mapped_blocks(0)
    assert (dynamic, said) == (0, "mmap threshold: glibc's dynamic default (--mmap-threshold-kib 0)")
    fixed, said = _mapped_blocks(128)
    assert fixed == 1
    assert said == "mmap threshold: fixed at 128 KiB (glibc's dynamic rise off)"


@glibc
def test_the_environment_variable_wins() -> None:
    mapped, said = _mapped_blocks(128, {ENV: "4194304"})  # 4 MiB: the 200 KiB block is heap
    assert mapped == 0
    assert said == f"mmap threshold: {ENV}=4194304 from the environment"


def test_collect_option_range_and_default() -> None:
    from slotml.cli import build_parser

    p = build_parser()
    assert p.parse_args(["collect"]).mmap_threshold_kib == 128
    assert p.parse_args(["collect", "--mmap-threshold-kib", "0"]).mmap_threshold_kib == 0
    with pytest.raises(SystemExit) as e:
        p.parse_args(["collect", "--mmap-threshold-kib", "40000"])
    assert e.value.code == 2
    assert fix_mmap_threshold(0).endswith("(--mmap-threshold-kib 0)")
