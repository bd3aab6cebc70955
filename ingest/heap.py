"""Fix glibc's mmap threshold for the long-running collector (issue 23's flat RSS).

glibc serves a request above its mmap threshold with its own mapping, returned to the OS on
free. The threshold starts at 128 KiB but is *dynamic*: each time a mapped block is freed the
threshold rises to that block's size (up to 32 MiB). In the collector the large blocks are
websocket frames and JSON bodies of every size, so after a few hours they all land in the main
heap (brk), where holes between long-lived small objects cannot be given back: RSS crept
+2.9 MB/h with Python's own allocations flat (``python -m bench.trace_memory``, README). Any
explicit ``mallopt(M_MMAP_THRESHOLD, n)`` turns the dynamic rise off; 128 KiB held RSS at
+0.3 MB/h in the same run.

Only glibc has ``mallopt``; elsewhere (musl, macOS) this does nothing and says so. A
``MALLOC_MMAP_THRESHOLD_`` set in the environment is glibc's own knob, read before Python
starts: it wins and is left alone.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
ENV = "MALLOC_MMAP_THRESHOLD_"
MAX_KIB = 32 * 1024  # --mmap-threshold-kib's top: glibc refuses a fixed threshold above HEAP_MAX_SIZE / 2 (64-bit: 32 MiB)


def _libc() -> ctypes.CDLL | None:
    # the running process's own symbols: libc is loaded already, and find_library("c") would
    # spawn ldconfig at every start-up
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def fix_mmap_threshold(kib: int) -> str:
    """Set glibc's mmap threshold to ``kib`` KiB (0: leave glibc's dynamic one); say what was done."""
    if kib == 0:
        return "mmap threshold: glibc's dynamic default (--mmap-threshold-kib 0)"
    if os.environ.get(ENV):
        return f"mmap threshold: {ENV}={os.environ[ENV]} from the environment"
    libc = _libc()
    if libc is None:
        return "mmap threshold: not glibc, left to the allocator"
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if libc.mallopt(M_MMAP_THRESHOLD, int(kib) * 1024) != 1:
        return f"mmap threshold: glibc refused {kib} KiB, its dynamic default stays"
    return f"mmap threshold: fixed at {kib} KiB (glibc's dynamic rise off)"
