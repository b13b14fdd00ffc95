"""Keeping the C allocator from holding on to freed memory (glibc on Linux only; a no-op elsewhere).

Why: a soak of the web channel (bench/soak.py, 2400 s, 216,543 messages) showed Python's live heap
flat (tracemalloc, and glibc's own in-use figure steady at 14–15 MB) while RSS crept up by ~8 MiB
after warm-up. The difference was glibc keeping freed blocks in its per-thread arenas: every worker,
HTTP and channel thread may get an arena of its own, and an arena only shrinks from its top. Two
standard glibc knobs address exactly that, and both are applied here once at start and on the
janitor's schedule:

- M_ARENA_MAX (what the MALLOC_ARENA_MAX environment variable sets): fewer arenas to fragment;
  respected as given when the user sets the variable, else 2 (a daemon that waits on the network
  gains nothing from more);
- malloc_trim(0): hand free pages in every arena back to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from common.log import logger

M_ARENA_MAX = -8  # glibc's malloc.h
DEFAULT_ARENA_MAX = 2

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.gnu_get_libc_version  # only glibc has it (musl does not)
                libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
                libc.malloc_trim.argtypes = (ctypes.c_size_t,)
                _libc = libc
            except (OSError, AttributeError):
                pass
    return _libc or None


def limit_arenas() -> int | None:
    """Cap glibc's malloc arenas (before the threads start); returns the cap applied, or None."""
    libc = _glibc()
    if libc is None or os.environ.get("MALLOC_ARENA_MAX"):
        return None  # not glibc, or glibc already read the user's own setting at start
    if libc.mallopt(M_ARENA_MAX, DEFAULT_ARENA_MAX) != 1:
        logger.debug("[memory] mallopt(M_ARENA_MAX) refused")
        return None
    return DEFAULT_ARENA_MAX


def return_free_memory() -> bool:
    """Give the free pages glibc keeps back to the system; False where there is no glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
