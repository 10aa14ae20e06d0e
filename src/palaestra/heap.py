"""Keep freed memory in the process instead of returning it to the kernel after every update.

torch's CPU allocator hands each temporary back to glibc's malloc, and glibc returns large
blocks to the kernel (memory maps above a dynamic threshold; heap tops above a trim threshold;
per-thread arenas trim on their own). An update then page-faults all its activations back in:
a POCA minibatch with its value pass on a side thread took ~3,200 page faults and ~85 ms
against ~0 faults and ~48 ms with the thresholds below (an in-process measurement here; the
usual remedy elsewhere is to preload jemalloc or tcmalloc). The cost: up to `TRIM` bytes of
freed memory stay mapped to the process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

# Blocks up to this size come from malloc's heaps, not from a fresh memory map each time.
MMAP_THRESHOLD = 64 << 20
# Free memory at a heap's top kept before it is returned to the kernel.
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def keep_freed_memory() -> bool:
    """Set glibc malloc's thresholds (process-wide, from now on). True if they were set: on
    Linux with glibc; elsewhere (musl, macOS, Windows) nothing happens."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
