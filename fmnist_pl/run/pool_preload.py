"""What a training pool's workers import before any work arrives (see :mod:`fmnist_pl.run.pool`).

Imported once by the pool's fork server, whose forked workers then start with it in memory
(or by each spawned worker, where there is no fork server). This import is the critical path of
a compare's start: the first epoch begins when it ends. So it runs with the cyclic garbage
collector paused. Importing torch and Lightning creates ~400,000 objects that live as long as the
process, and the collector, triggered by allocation counts alone, traverses them again and
again: 889, 81 and 6 collections of generations 0, 1 and 2 during this import, 0.67 s of it
(CPython 3.11, measured with ``gc.callbacks``), freeing next to nothing. The survivors are then
frozen (``gc.freeze``): moved out of the collector's sight for good, so that the workers' own
collections skip them (and, as the ``gc`` docs advise before a fork, do not write to their pages).

Only such a process imports this module, as it also makes that process's exit cheap: an
interpreter holding torch and Lightning would garbage-collect the objects they created at
shutdown (~1.5 s, while it still holds the compare's output pipes open) only for the OS to free
the memory anyway. Frozen objects are exempt (``gc.freeze`` again at exit, for what training
created, as the command line does at its own exit: ``fmnist_pl.cli._leave``).
"""

import atexit
import gc

gc.disable()
try:
    import fmnist_pl.engine.trainer  # noqa: F401 - Lightning and torch, ~3 s of one core
    import fmnist_pl.run.artifacts  # noqa: F401
    import fmnist_pl.run.compare  # noqa: F401
finally:
    gc.freeze()
    gc.enable()

atexit.register(gc.freeze)
