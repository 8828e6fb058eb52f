"""glibc heap settings for a process that runs the learner (the worker, ``streamrec evaluate``).

Process-wide, so they are set by the entry points, never by a learner. Elsewhere than glibc (musl, macOS) they do
nothing.
"""

from __future__ import annotations

from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def glibc() -> Any:
    """The C library when it is glibc (None elsewhere: musl, macOS)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas (call before threads start).

    Faust's consumer thread, RocksDB's background threads and torch's would each get an arena of their own (up
    to 8 per core); memory freed in one stays mapped there, which a soak shows as RSS creeping upwards.
    """
    libc = glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)


def keep_freed_tensor_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Let freed tensor buffers be reused instead of handed back to the OS after every op; True if set.

    A learning step allocates and frees several blocks of 3-7 MB (a (512, 50, 64) float tensor is 6.5 MB).
    By default glibc serves blocks that size with ``mmap`` (or trims the heap top once 2x the dynamic
    threshold is free), so every op page-faults freshly zeroed memory: about 4,000 minor faults per 8 such
    blocks. Raising the two thresholds ends that; the offline learner runs ~15% more events/s. Memory that
    is freed stays mapped until ``malloc_trim`` (the worker calls it every ``malloc_trim_interval_s``).
    """
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                      trim_threshold))
