"""Fewer glibc malloc arenas for the process: about 100 MiB less peak memory in training.

glibc gives threads that allocate at the same time separate arenas, up to 8 per core, and
memory freed in one arena is not reused by another. TensorFlow's thread pools spread a
training step's buffers over many of them. For MIDG on MOSI-unaligned shapes at batch 32
(`benchmarks/throughput.py`, docs/design.md §8) the peak RSS was 2118-2123 MiB with glibc's
default, 2022-2070 with two arenas and 2019-2030 with one, at the same speed (125.7 samples/s
with one on a quiet machine, 123.0 with two). Import this module without TensorFlow:
it must run before TensorFlow starts its threads.
"""

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 1


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
