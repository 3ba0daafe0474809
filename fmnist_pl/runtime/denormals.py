"""Flush-to-zero for denormal floats on every CPU thread torch computes on.

Why: as the MLP trains, its softmax outputs for confident predictions underflow into the
denormal range (|x| < 1.2e-38), and x86 float arithmetic on denormals is far slower, enough to
slow a long CPU compare markedly (figures: benchmarks/RESULTS.md). TensorFlow - the reference's
framework - flushes denormals to zero on CPU by default; so do we, while training.

``torch.set_flush_denormal`` sets the flag (MXCSR) of the calling thread only, and much of the
work runs on OpenMP worker threads, so the main thread alone would leave most of the gain on the
table - and make a run's numbers depend on which thread computed which chunk. No library exposes
a per-thread hook, so this runs one OpenMP parallel region of torch's own libgomp whose body
sets the flag on each thread of the pool torch uses. Under another OpenMP runtime that cannot be
done: :func:`flush_denormals` says so, and warns once, so that a run is not silently mixed.
"""

from __future__ import annotations

import ctypes
import enum
import logging

import torch

log = logging.getLogger(__name__)
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_warned = False


class Reach(enum.IntEnum):
    """Which threads got the flag. Falsy only for ``NOWHERE``, so ``if flush_denormals(True):`` still
    means "the flag was set, set it back afterwards"."""

    NOWHERE = 0  # the CPU has no FTZ/DAZ
    MAIN_THREAD = 1  # this thread only: torch's OpenMP workers could not be reached
    EVERY_THREAD = 2  # this thread and every thread of torch's OpenMP pool

    @property
    def label(self) -> str:
        """How ``config.json`` says it."""
        return {0: "none (the CPU has no FTZ/DAZ)", 1: "main thread only", 2: "every thread"}[int(self)]


def _gomp_libraries() -> list[str]:
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "libgomp" in line and "/" in line})
    except OSError:
        return []


def _on_gomp_threads(enabled: bool, threads: int) -> bool:
    """Run ``torch.set_flush_denormal(enabled)`` on ``threads`` threads of every libgomp loaded; whether one ran it."""
    reached = False
    for path in _gomp_libraries():
        try:
            gomp = ctypes.CDLL(path)  # CDLL releases the GIL during the call; the body re-takes it
            body = _CALLBACK(lambda _: torch.set_flush_denormal(enabled))
            gomp.GOMP_parallel(body, None, ctypes.c_uint(threads), ctypes.c_uint(0))
            reached = True
        except (OSError, AttributeError) as exc:  # not a libgomp we can drive
            log.debug("could not set flush-to-zero on OpenMP threads of %s: %s", path, exc)
    return reached


def flush_denormals(enabled: bool) -> Reach:
    """Set (or clear) flush-to-zero on this thread and torch's OpenMP threads; says which threads got it.

    Where torch computes on more than one thread and no libgomp could be driven, the workers keep
    their own setting: one warning per process names the fix.
    """
    global _warned
    if not torch.set_flush_denormal(enabled):
        return Reach.NOWHERE  # the CPU has no FTZ/DAZ: nothing to do anywhere
    threads = torch.get_num_threads()
    if _on_gomp_threads(enabled, threads) or threads == 1:
        return Reach.EVERY_THREAD
    if not _warned:
        _warned = True
        log.warning(
            "flush-to-zero reached only the main thread (torch's OpenMP runtime is not libgomp), so "
            "results may depend on threading; call torch.set_num_threads(1) or use a torch built with libgomp"
        )
    return Reach.MAIN_THREAD
