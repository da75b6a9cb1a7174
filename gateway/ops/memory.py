"""What the long-running `run` process does first, to keep its peak RSS down (issue 19):
glibc's malloc settings (`tune_malloc`) and a module paho imports but never uses deferred
(gateway/deferred.py). `prepare_service` does both.

glibc serves an allocation of 128 KiB or more with its own mmap, freed back to the kernel at
once, but raises that threshold (up to 32 MiB) each time such a block is freed, so from then on
the large, short-lived buffers of a running gateway (zlib's deflate state per InfluxDB write,
big bytes objects, resized dicts) come from the heap, where a free leaves holes that stay
resident. A fixed threshold of 64 KiB keeps them in mmap: `run` peaks 0.2-0.3 MiB lower idle
and at 200 readings/s (bench/RESULTS-issue19.md). An mmap per such block costs a few µs; there
are a handful per write.

Only the process that runs the service calls this; `check`, `schema` and the tests keep glibc's
defaults and import as usual. Elsewhere than glibc (no `mallopt`) the malloc part does nothing.
"""

from __future__ import annotations

import ctypes

from gateway.deferred import defer

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>; setting it also turns the dynamic threshold off
MMAP_THRESHOLD = 64 * 1024


def tune_malloc() -> bool:
    """Set glibc's mmap threshold (above). True if the C library took it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def prepare_service() -> None:
    """First thing in `run`, before the service's own imports and allocations."""
    tune_malloc()
    # paho-mqtt's, for a proxy lookup it makes only with PySocks installed (not a dependency)
    defer("urllib.request")
