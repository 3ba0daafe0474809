"""What a training pool's workers import before any work arrives (see :mod:`fmnist_pl.run.pool`).

Imported once by the pool's fork server, whose forked workers then start with it in memory
(or by each spawned worker, where there is no fork server). Only such a process imports it,
as it also makes that process's exit cheap: an interpreter holding torch and Lightning would
garbage-collect the ~million objects they created at shutdown (~1.5 s, while it still holds the
compare's output pipes open) only for the OS to free the memory anyway. Frozen objects are exempt
(``gc.freeze``, as the command line does at its own exit: ``fmnist_pl.cli._leave``).
"""

import atexit
import gc

import fmnist_pl.engine.trainer  # noqa: F401 - Lightning and torch, ~4 s of one core
import fmnist_pl.run.artifacts  # noqa: F401
import fmnist_pl.run.compare  # noqa: F401

atexit.register(gc.freeze)
