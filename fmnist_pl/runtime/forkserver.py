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
    """Kill this process's fork server, and any worker it forked that still runs; the next pool that
    needs one starts a new one (the stdlib reaps the old one then).

    The server is frozen first (SIGSTOP), so that it forks nothing between the listing of its
    children and their end. A worker caught in its start-up (a pool closed at once, on bad input)
    would otherwise outlive the server, unknown to its pool, and print a traceback into this
    process's terminal once this process has exited and removed the semaphores it is unpickling.
    """
    pid = fork_server_pid()
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    # Until it is dead, not only signalled: a dying server closes its socket before it can be
    # reaped, and a pool started in that moment would find it "still running" (the stdlib asks
    # waitpid) and have its connection refused. WNOWAIT leaves the reaping to the stdlib.
    with contextlib.suppress(ChildProcessError, AttributeError):  # not our child; no waitid (not Linux)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc; none elsewhere, where a fork server
    is rare)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        found.append(int(entry.name))
    return found
