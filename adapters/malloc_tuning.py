"""Keep the C allocator from mapping and unmapping memory for every large buffer (glibc only).

A daemon or relay moving data allocates buffers of a few hundred KiB all the time: each
socket read (up to 256 KiB), each chunk an application reads, each batch of records.  glibc's
``malloc`` serves a request of 128 KiB or more with its own ``mmap`` (and ``munmap`` on free)
until its dynamic threshold catches up, and gives the top of the heap back to the kernel
whenever 256 KiB of it are free: then every such buffer costs a page fault per 4 KiB touched
and the kernel zeroing the pages, about 250 us per 256 KiB here against 12 us from the heap
(``bench/`` figures: a relayed transfer 6-8% faster).  ``tune_malloc()`` sets the two
thresholds at start: allocations up to ``MMAP_THRESHOLD`` come from the heap and up to
``TRIM_THRESHOLD`` of free heap stays with the process.  Elsewhere (another C library, no
``mallopt``) it does nothing; so do the ``MALLOC_*`` / ``GLIBC_TUNABLES`` settings a user gave,
which win (they are read before this runs, and it leaves a threshold they set alone).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Largest allocation served from the heap, and the free heap kept before trimming.
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 8 << 20


def tune_malloc(environ: Mapping[str, str] | None = None) -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); whether they were set."""
    env = os.environ if environ is None else environ
    if "GLIBC_TUNABLES" in env or "MALLOC_MMAP_THRESHOLD_" in env or "MALLOC_TRIM_THRESHOLD_" in env:
        return False  # the user's own settings
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt of these)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
