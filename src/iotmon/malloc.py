"""glibc malloc, tuned for long-running roles: fewer arenas, free pages given back.

Python's small objects live in its own pools; everything else (lists and dicts of thousands,
message bytes, librdkafka's and psycopg's buffers) comes from malloc, whose per-thread arenas
and fragmentation made most of the processing role's growth while it was behind
(BENCHMARKS.md, memory). Kept apart from ``roles/runtime.py`` so that the CLI can call
``tune_malloc`` before importing anything that starts a thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)
MALLOC_ARENAS = 2


@functools.cache
def _libc() -> Any | None:
    """glibc's malloc tuning functions, or None elsewhere (musl, macOS) or when not loadable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(arenas: int = MALLOC_ARENAS) -> bool:
    """At most ``arenas`` glibc malloc arenas in this process (glibc's default: 8 per core).
    Each thread that allocates gets an arena of its own, and the memory freed in one is not
    reused by another: the processing role, 25 minutes behind at 25,000 readings/s, had
    ~220 MiB of its 432 MiB in per-thread arenas (smaps). Call it before threads start. An
    operator's ``MALLOC_ARENA_MAX`` wins (then malloc is left alone); returns whether it
    applied."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _libc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1


def release_memory() -> None:
    """Give the free pages of the malloc heaps back to the system (``malloc_trim``): a role
    whose working set churns (processing's windows) otherwise keeps its peak for good.
    A no-op where malloc is not glibc's, or the operator set ``MALLOC_ARENA_MAX``."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
