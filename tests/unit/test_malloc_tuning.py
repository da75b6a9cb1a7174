"""`run` sets glibc's mmap threshold (gateway/ops/memory.py, issue 19: peak RSS)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_threshold_is_taken_by_glibc_in_a_fresh_process() -> None:
    """In a process of its own (the test runner keeps glibc's defaults): glibc accepts the
    setting, and a block above the threshold is then served by its own mmap (mallinfo2's
    hblkhd counts exactly those bytes), while with the defaults a freed large block has
    raised the threshold so the same block comes from the heap. (A block the heap's free top
    can hold is served from there either way: hence blocks larger than any top here.)"""
    code = textwrap.dedent("""
        import ctypes, sys
        from gateway.ops.memory import MMAP_THRESHOLD, tune_malloc

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                         "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = MallInfo2
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = (ctypes.c_void_p,)
        # glibc's dynamic threshold: freeing a 9 MiB mmap'd block raises it to that
        libc.free(libc.malloc(9 * 2**20))
        if sys.argv[1] == "tuned":  # and the setting brings it back down, for good
            assert tune_malloc()
        size = 8 * 2**20  # above MMAP_THRESHOLD
        before = libc.mallinfo2().hblkhd
        p = libc.malloc(size)
        mapped = libc.mallinfo2().hblkhd - before
        libc.free(p)
        print(mapped >= size)
    """)
    out = {mode: subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                check=True).stdout.strip() for mode in ("tuned", "default")}  # fmt: skip
    assert out == {"tuned": "True", "default": "False"}
