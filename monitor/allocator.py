"""Asking the C allocator to give freed memory back to the system (glibc; elsewhere a no-op).

A million watched events means dict tables and lists of tens of megabytes, built at start-up
and in every poll round. glibc serves such blocks with mmap at first, but once one is freed it
raises its threshold to that size, so that later ones come from the heap, whose freed space it
keeps: resident memory then stays at its peak. Fixing the threshold keeps every large block
mapped, so freeing one returns it at once.
"""

from __future__ import annotations

import ctypes

#: mallopt's parameter number for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3
#: Blocks of this size and more are always mapped, never taken from the heap.
LARGE_BLOCK = 1 << 20


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)  # the C library the interpreter already uses
    except (OSError, TypeError):
        return None


def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Serve blocks of `threshold` bytes and more with mmap, always (glibc's mallopt, which
    also stops it from moving the threshold). Returns whether the allocator took it; call it
    early, before the first large block is freed."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (glibc's malloc_trim); whether any were."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    return bool(trim(0))
