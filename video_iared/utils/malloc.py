"""glibc malloc settings for CPU timing: keep freed tensor memory in the process instead of returning it.

PyTorch's CPU tensors come from the C library's allocator. With glibc's defaults a block above the mmap
threshold (128 KiB at start, raised adaptively up to 32 MiB) is mmap'd and unmapped on free, and free
memory at the top of the heap is returned to the system past the trim threshold, so a model whose buffers
are tens of MB maps them in again on every forward pass: page faults, paid in system time. Measured here
(TimeSformer-B 8x224, batch 1, 2 threads, 4 interleaved repetitions): the dense model takes 56,000-113,000
minor page faults per forward pass and 1247.9 ms; with :func:`retain_freed_memory` none and 1143.1 ms
(-8 %); a pruned model (keep 0.3 per group, small buffers) 211.3 -> 206.4 ms (-2 %). A timing against the
untuned dense model would credit pruning with the dense model's page faults, so the speed benchmarks apply
it by default (``tools/benchmark.py --malloc``); jemalloc or tcmalloc through LD_PRELOAD do the same job.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Optional

logger = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt accepts: in effect, never trim the heap top


def _glibc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # only glibc has it (musl, macOS: no mallopt of these parameters)
        libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory() -> str:
    """Set glibc's mmap threshold to its maximum and disable heap trimming for this process.

    Blocks up to 32 MiB then come from the heap and freed memory is reused without new page faults (the
    process keeps its peak footprint). Returns a one-line description of what was set, for the benchmark's
    log; on a C library without glibc's mallopt nothing is changed and the line says so.
    """
    libc = _glibc()
    if libc is None:
        return "malloc: default (not glibc: mallopt settings not applied)"
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_mmap = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not (ok_mmap and ok_trim):
        logger.warning("mallopt refused a setting (mmap threshold: %s, trim threshold: %s)", ok_mmap, ok_trim)
    return (f"malloc: glibc mmap threshold {MMAP_THRESHOLD_MAX >> 20} MiB ({'set' if ok_mmap else 'refused'}), "
            f"heap trimming off ({'set' if ok_trim else 'refused'})")
