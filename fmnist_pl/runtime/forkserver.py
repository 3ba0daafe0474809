"""The multiprocessing fork server of this process: find it, and stop it when no pool needs it.

Why: a training pool's fork server imports the engine once for all its workers; left alone once
the pool is closed, it would end only with this process, taking its own interpreter's exit
time while still holding the output pipes a caller reads. The standard library keeps no
public handle on it, so its pid is read from the module's private state, in this one place.
"""

from __future__ import annotations

import contextlib
import os
import signal


def fork_server_pid() -> int | None:
    """The pid of this process's fork server, or None when none runs."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)  # the stdlib keeps no public handle


def stop_fork_server() -> None:
    """Kill this process's fork server; the next pool that needs one starts a new one (the stdlib
    reaps the old one then)."""
    pid = fork_server_pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
