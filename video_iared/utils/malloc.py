"""glibc malloc settings for CPU timing: keep freed tensor memory in the process instead of returning it.

PyTorch's CPU tensors come from the C library's allocator. With glibc's defaults a block above the mmap
threshold (128 KiB at start, raised adaptively up to 32 MiB) is mmap'd and unmapped on free, and free
memory at the top of the heap is returned to the system past the trim threshold, so a model whose buffers
are tens of MB maps them in again on every forward pass: page faults, paid in system time. Measured here
(TimeSformer-B 8x224, batch 1, 2 threads, interleaved repetitions, separate processes): the dense model takes
56,000-113,000 minor page faults per forward pass, none with :func:`retain_freed_memory`; its time drops by 8 %
(1247.9 -> 1143.1 ms) in the first pair of runs and by 2.5-4 % in three more, a pruned model's (keep 0.3 per group,
small buffers) by 0-2 %. A timing against the untuned dense model credits pruning with the dense model's page
faults, so the speed benchmarks apply it by default (``tools/benchmark.py --malloc``); jemalloc or tcmalloc
through LD_PRELOAD do the same job.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Optional

logger = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt accepts: in effect, never trim the heap top


def _glibc() -> Optional[ctypes.CDLL]:
    """The process's C library when it is glibc (musl, macOS: None — no mallopt of these parameters)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into this process: its C library among them
        libc.gnu_get_libc_version  # only glibc has it
        libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory() -> str:
    """Serve every block from glibc's heap (no mmap'd blocks) and never trim the heap, for this process.

    Freed memory is then reused without new page faults (the process keeps its peak footprint; threads'
    arenas still map blocks larger than their 64 MiB heaps). Returns a one-line description of what was set, for the benchmark's
    log; on a C library without glibc's mallopt nothing is changed and the line says so.
    """
    libc = _glibc()
    if libc is None:
        return "malloc: default (not glibc: mallopt settings not applied)"
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    ok_mmap = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    ok_max = libc.mallopt(M_MMAP_MAX, 0) == 1  # blocks above the threshold from the heap too (batch-8 buffers)
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not (ok_mmap and ok_max and ok_trim):
        logger.warning("mallopt refused a setting (mmap threshold: %s, mmap max: %s, trim threshold: %s)",
                       ok_mmap, ok_max, ok_trim)
    state = {True: "set", False: "refused"}
    return (f"malloc: glibc mmap threshold {MMAP_THRESHOLD_MAX >> 20} MiB ({state[ok_mmap]}), no mmap'd blocks "
            f"({state[ok_max]}), heap trimming off ({state[ok_trim]})")
