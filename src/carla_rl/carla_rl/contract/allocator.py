"""glibc malloc settings for the processes that allocate large short-lived buffers every tick.

glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB at start, raised as mmapped chunks
are freed) with a fresh ``mmap``, and hands the top of the heap back to the kernel once more than
``M_TRIM_THRESHOLD`` lies free there. A buffer of a few hundred KiB that is allocated and freed every
tick (the policy's float frames, 16 x 4 x 84 x 84 x 4 B = 1.8 MB; a 340 KB ``EnvStepBatch``; a
replay batch) can then be faulted in page by page each time: on the 2-core dev machine
``frames.float() / 255`` at batch 16 took 2.2-2.8 ms in 2 of 7 processes with the defaults (0.12-0.22 ms
in the others) and 0.12-0.14 ms in all 7 with the settings below (2026-11-26, commit d363eab).

:func:`tune_allocator` fixes the mmap threshold (which also stops glibc's dynamic adjustment) and
raises the trim threshold, so such buffers are reused from the heap. It is what PyTorch's CPU
performance guide gets from jemalloc or tcmalloc, without a preloaded library. Every node process
(``node_runner``) and the ``carla-rl`` CLI call it at start; ``CARLA_RL_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

TUNING_ENV = "CARLA_RL_MALLOC_TUNING"
MMAP_THRESHOLD_BYTES = 32 << 20   # the ceiling of glibc's own dynamic threshold on 64-bit; older glibc refuse more
TRIM_THRESHOLD_BYTES = 256 << 20  # free heap top kept before it is returned to the kernel
_M_TRIM_THRESHOLD = -1            # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Apply the settings where the C library is glibc; returns whether they were applied."""
    if os.environ.get(TUNING_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
