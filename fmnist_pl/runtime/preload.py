"""What a training pool's workers import before any work arrives (see :mod:`fmnist_pl.execution.pool`).

Imported once by the pool's fork server, whose forked workers then start with it in memory
(or by each spawned worker, where there is no fork server): the engine, with the collector
paused and then frozen (:func:`fmnist_pl.runtime.imports.import_engine`, which says why).

Only such a process imports this module, as it also makes that process's exit cheap: an
interpreter holding torch and Lightning would garbage-collect the objects they created at
shutdown (a noticeable wait, while it still holds the compare's output pipes open) only for the OS to free
the memory anyway (:func:`fmnist_pl.runtime.imports.freeze_at_exit`, as the command line's).
"""

from fmnist_pl.runtime.imports import freeze_at_exit, import_engine

import_engine()
freeze_at_exit()
