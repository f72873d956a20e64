"""The allocator hints: harmless wherever they run, taken where glibc is the C library."""

from __future__ import annotations

import platform

from monitor.allocator import map_large_blocks, release_free_memory


def test_allocator_hints_answer_whether_they_were_taken() -> None:
    taken = map_large_blocks()
    released = release_free_memory()
    assert isinstance(taken, bool) and isinstance(released, bool)
    if platform.libc_ver()[0] == "glibc":
        assert taken
