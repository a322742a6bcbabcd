"""The process's malloc settings, set by the service itself at start-up, so that `make serve`, the image
and the tests run with the same ones (glibc's environment variables apply only where someone sets them).

- Two arenas, not eight per core: per-thread arenas added about 70 MiB of resident memory across the
  inference threads (bench/soak.py).
- Blocks of MMAP_THRESHOLD_BYTES and more always mapped on their own, and so returned to the system
  when freed. glibc otherwise raises that threshold to the largest block freed (up to 32 MiB), after
  which the decoded photos of varied sizes are carved from the heap and leave it fragmented: resident
  memory then swung by 44 MiB over 600 photos of distinct sizes, and by 11 MiB with this setting
  (in process; docs/performance.md#photos-as-users-send-them).
"""

from __future__ import annotations

import ctypes
import ctypes.util

ARENAS = 2
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
# mallopt's parameters (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_allocator() -> bool:
    """Apply the settings above; False where the C library is not glibc (nothing is changed)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, ARENAS)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
