"""Process-wide tuning for a training process: torch and BLAS threads, denormal flushing and
glibc malloc thresholds. Only `palaestra learn` with `accel: auto` calls `tune_process`, or a
Python caller who asks (`palaestra.learn(..., tune_process=True)`): it changes the whole
process, which a notebook or an application embedding palaestra may not want.

- One torch thread (unless `torch_settings.num_threads` says otherwise): the products of RL's
  small networks are too small for intra-op threads to pay off, and the side thread
  (`palaestra.accel.threads`) takes the second core.
- NumPy's BLAS (the NumPy acting mirror's products) gets the same budget: OpenBLAS's own threads
  spin-wait for busy cores, and on a loaded 2-core machine that made one 96-agent forward pass
  take 40 ms instead of 0.5.
- Denormal floats (below 1.2e-38) make CPU arithmetic 20-30x slower, and Adam's second moment of
  tiny gradients is full of them: a sqrt over 9k of them took 200 us instead of 7.
- glibc returns large freed blocks to the kernel (memory maps above a dynamic threshold; heap
  tops above a trim threshold), so an update page-faults all its activations back in: a POCA
  minibatch took ~3,200 page faults and ~85 ms against ~0 faults and ~48 ms with the thresholds
  below (the usual remedy elsewhere is to preload jemalloc or tcmalloc). The cost: up to `TRIM`
  bytes of freed memory stay mapped to the process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Dict

import torch

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


def flushes_denormals() -> bool:
    """Whether the CPU currently flushes denormal floats to zero (there is no getter)."""
    return float((torch.tensor([1e-39], dtype=torch.float32) * 1.0)[0]) == 0.0


def set_threads(threads: int) -> None:
    """torch's intra-op threads and NumPy's BLAS threads."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")


def tune_process(threads: int) -> Dict[str, object]:
    """All of the above, for the rest of the process. Returns what was set (for the log)."""
    set_threads(threads)
    return {"threads": threads, "flush_denormal": torch.set_flush_denormal(True),
            "malloc_thresholds": keep_freed_memory()}
