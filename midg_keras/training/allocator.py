"""Fewer glibc malloc arenas for the process: about 100 MiB less peak memory in training.

glibc gives threads that allocate at the same time separate arenas, up to 8 per core, and
memory freed in one arena is not reused by another. TensorFlow's thread pools spread a
training step's buffers over many of them. Two arenas measured 2022 and 2040 MiB peak RSS
for MIDG on MOSI-unaligned shapes at batch 32 instead of 2118 and 2123, at the same speed
(`benchmarks/throughput.py`, docs/design.md §8). Import this module without TensorFlow:
it must run before TensorFlow starts its threads.
"""

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 2


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Caps glibc's malloc arenas at `arenas`; True if the cap was set.

    Leaves the process alone where `MALLOC_ARENA_MAX` is set (the user's choice) or the C
    library is not glibc (no `mallopt`, e.g. macOS or musl).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_ARENA_MAX, arenas) == 1
