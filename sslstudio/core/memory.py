"""Giving memory a finished job freed back to the system.

glibc keeps what a thread freed in that thread's heap arena for it to reuse; a long-lived app
whose jobs run on worker threads (a training run, then the features of 200,000 images) kept
gigabytes resident after each job had freed them. `malloc_trim` returns the free pages of every
arena. Elsewhere (macOS, Windows, musl) the allocators return memory on their own, and this does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap memory to the system; True when the allocator could."""
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))
