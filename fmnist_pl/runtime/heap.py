"""Keep freed memory in the process while training, instead of handing it back to the OS.

Why: every lockstep step frees and reallocates the same tensors (gradients, activations,
optimizer temporaries; the first layer's gradient alone is megabytes for a group of models).
glibc's malloc serves blocks that large with fresh ``mmap`` pages or trims them off the heap
top on free, so each step page-faults its memory in again, a sizeable share of a CPU step
(figures: benchmarks/RESULTS.md). PyTorch's CPU allocator has no cache of its own (unlike its
CUDA one), so we tell malloc to keep the memory (``mallopt``), as
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` would at process start. Peak memory is
unchanged: the same blocks are reused, they are just not returned and refetched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from typing import Iterator

log = logging.getLogger(__name__)

# mallopt(3) parameters and the values we use while training.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
TRAINING = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20}
# glibc's documented defaults, set back afterwards (glibc's dynamic mmap threshold stays off
# once any value is set; it then behaves like the static threshold of older glibc).
DEFAULTS = {M_MMAP_THRESHOLD: 128 << 10, M_TRIM_THRESHOLD: 128 << 10, M_TOP_PAD: 128 << 10}


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def _set(libc: ctypes.CDLL, values: dict[int, int]) -> bool:
    return all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in values.items())


@contextlib.contextmanager
def retain_freed_memory() -> Iterator[bool]:
    """While inside: freed blocks stay in the heap for reuse. Yields whether it took effect.

    A no-op (yields False) where the C library has no ``mallopt`` (macOS, Windows, musl).
    """
    libc = _libc()
    applied = libc is not None and _set(libc, TRAINING)
    if libc is not None and not applied:
        log.debug("mallopt refused the training values; malloc keeps its defaults")
    try:
        yield applied
    finally:
        if applied and libc is not None:
            _set(libc, DEFAULTS)
            if hasattr(libc, "malloc_trim"):
                libc.malloc_trim(ctypes.c_size_t(0))  # hand the kept memory back now
