"""Importing the training engine (torch, Lightning and what they bring) at the least cost.

Why: the engine's import is the start of every training process - a compare's pool workers
(whose fork server imports it once, :mod:`fmnist_pl.runtime.preload`), a Ray task's worker,
this process when it trains itself (a GPU, ``--workers 1``) - and the critical path of a
compare's start: the first epoch begins when it ends. Importing torch and Lightning creates
hundreds of thousands of objects that live as long as the process, and CPython's cyclic garbage
collector, triggered by allocation counts alone, traverses them again and again while they are
created: a good part of the import's time, freeing next to nothing (figures, measured with
``gc.callbacks``: benchmarks/RESULTS.md). So the import runs with the collector paused, and what
it created is then frozen (``gc.freeze``): out of the collector's sight for good, so that the
process's later collections - every few thousand allocations while it trains - skip it, and, as
the ``gc`` docs advise before a fork, do not write to its pages.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import sys
import threading
from typing import Iterator

# What training a unit needs (fmnist_pl.execution.unit), the heavy part of it Lightning's.
ENGINE = ("fmnist_pl.engine.trainer", "fmnist_pl.execution.unit")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Inside: no cyclic garbage collection. On leaving, every object alive is frozen and the
    collector is left as it was (on, unless the caller had turned it off).

    For imports: what they create lives as long as the process. Freezing pins what is alive at
    that moment, so do not wrap work that leaves garbage cycles behind (a trained model, say).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def import_engine() -> None:
    """Import the training engine, with the collector paused; a no-op once it is imported.

    The no-op matters: a process that trains one group after another (a Ray worker) must not
    freeze each group's leftovers, which the collector would then never free.
    """
    if all(name in sys.modules for name in ENGINE):
        return
    with collector_paused():
        for name in ENGINE:
            importlib.import_module(name)


def freeze_at_exit() -> None:
    """Make this process's exit cheap: at exit, freeze every object still alive (once per process).

    The interpreter's shutdown would otherwise garbage-collect the objects that torch, Lightning
    and matplotlib created at import - noticeable time, with a compare's output pipes still open -
    only for the OS to free the memory anyway. Frozen objects are exempt; files and other atexit
    handlers are finalized as always (atexit runs handlers last-registered first, and this one is
    registered early).
    """
    global _freezes_at_exit
    if not _freezes_at_exit:
        _freezes_at_exit = True
        atexit.register(gc.freeze)


_freezes_at_exit = False


def import_in_background(name: str) -> None:
    """Import module ``name`` on a daemon thread, while this process waits for others anyway."""
    threading.Thread(target=importlib.import_module, args=(name,), daemon=True, name=f"import-{name}").start()
