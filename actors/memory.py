"""glibc's allocator, told to keep large freed buffers for reuse in worker and API processes.

A conversion allocates and frees buffers of tens of megabytes (decoded frames, resampled pixels,
encoded bytes). glibc serves requests above its mmap threshold with fresh mmap()s and unmaps them
on free; it raises that threshold by itself after the first such free, but only while nothing else
has tuned it, and in a worker process (with boto3, pypdfium2 and the rest loaded) it often stays
low. Those buffers are then zero-filled page by page by the kernel: measured here, 1,900 to 9,200
page faults per 12 MP photo depending on what the process loaded and in which order (the worst
case, 20 ms of system time on top of 67 ms of conversion), against 30 to 330 with the thresholds set.

A fixed threshold above the usual buffer sizes, and a trim threshold above that, make freed memory
go back to the heap for the next job. The peak of one conversion is unchanged.

The trim threshold alone does not bound what an idle process keeps. Each thread allocates from an
arena of its own, whose heaps are at most 64 MiB; the free top of such a heap is given back only
above the trim threshold, which at 128 MiB it can never reach, and malloc_trim() does not touch it
either (it returns the free chunks inside every arena, and the top of the main heap only). So
every worker thread's arena kept up to 64 MiB resident: idle workers of a pod stayed at 539 and
351 MB, then, with malloc_trim alone, at 313 and 254 MiB, all of it in thread arenas (smaps).
Hence one arena per process (M_ARENA_MAX): the threads share the main heap, whose free top and
free chunks malloc_trim() does give back; conversions allocate few, large buffers (pixels) and
Python its small objects from its own pools, so the threads rarely wait on the arena's lock. After
a job that used more than TRIM_AFTER_BYTES, release_free_memory() (malloc_trim) returns them; small
jobs still reuse their buffers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Buffers up to this size come from the heap (Pillow allocates images in blocks of 16 MiB).
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
#: Free heap above this much at the top of the main heap is given back to the system.
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024
#: A job estimated above this much is followed by release_free_memory().
TRIM_AFTER_BYTES = 64 * 1024 * 1024


def _glibc() -> ctypes.CDLL | None:
    """glibc itself, or None (not Linux, or another C library whose malloc has no such knobs)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  glibc only; musl's mallopt does nothing
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the system; whether anything was released."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return bool(libc.malloc_trim(0))


def keep_large_buffers() -> bool:
    """Set the thresholds in this process; whether they were set (only glibc has mallopt)."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = (
        bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
        and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
        and bool(mallopt(M_ARENA_MAX, 1))  # before the worker threads start: see the module
    )
    if not applied:
        log.warning("could not set glibc's malloc thresholds; large buffers are mapped afresh per job")
    return applied
