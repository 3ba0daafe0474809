"""Flush-to-zero for denormal floats on every CPU thread torch computes on.

Why: as the MLP trains, its softmax outputs for confident predictions underflow into the
denormal range (|x| < 1.2e-38), and x86 float arithmetic on denormals is ~100x slower, which
slows a long CPU compare by about a third. TensorFlow - the reference's framework -
flushes denormals to zero on CPU by default; so do we, while training.

``torch.set_flush_denormal`` sets the flag (MXCSR) of the calling thread only, and half of
the work runs on OpenMP worker threads (with the flag on the main thread alone, a trained
model's step stays ~40% slower). No library exposes a
per-thread hook, so this runs one OpenMP parallel region of torch's own libgomp whose body
sets the flag on each thread of the pool torch uses.
"""

from __future__ import annotations

import ctypes
import logging

import torch

log = logging.getLogger(__name__)
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _gomp_libraries() -> list[str]:
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "libgomp" in line and "/" in line})
    except OSError:
        return []


def flush_denormals(enabled: bool) -> bool:
    """Set flush-to-zero on the main thread and torch's OpenMP threads; True if it took effect."""
    if not torch.set_flush_denormal(enabled):
        return False  # the CPU has no FTZ/DAZ: nothing to do anywhere
    for path in _gomp_libraries():
        try:
            gomp = ctypes.CDLL(path)  # CDLL releases the GIL during the call; the body re-takes it
            body = _CALLBACK(lambda _: torch.set_flush_denormal(enabled))
            gomp.GOMP_parallel(body, None, ctypes.c_uint(torch.get_num_threads()), ctypes.c_uint(0))
        except (OSError, AttributeError) as exc:  # another OpenMP runtime: the main thread still has it
            log.debug("could not set flush-to-zero on OpenMP threads of %s: %s", path, exc)
    return True
