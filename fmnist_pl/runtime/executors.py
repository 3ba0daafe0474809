"""The worker processes of a ``concurrent.futures.ProcessPoolExecutor``: the one place that reads them.

``concurrent.futures`` has no public way to list an executor's workers (nor, before Python 3.14,
to kill them), so this module reads the executor's own table of its processes, which it keeps
until shutdown; everything else (the training pool, the figure drawer) goes through here.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from typing import Any


def worker_processes(pool: cf.ProcessPoolExecutor | None) -> list[Any]:
    """The executor's started worker processes (``multiprocessing.Process``), none once shut down."""
    return list((getattr(pool, "_processes", None) or {}).values())


def worker_pids(pool: cf.ProcessPoolExecutor | None) -> list[int]:
    return sorted(p.pid for p in worker_processes(pool) if p.pid is not None)


def kill_workers(pool: cf.ProcessPoolExecutor) -> None:
    """End every worker now (``kill_workers`` where Python has it, 3.14+, else each process)."""
    kill = getattr(pool, "kill_workers", None)
    if kill is not None:
        kill()
        return
    for process in worker_processes(pool):
        with contextlib.suppress(Exception):
            process.kill()
