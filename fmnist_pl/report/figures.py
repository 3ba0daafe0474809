"""The report's matplotlib figures as jobs, drawn here or by worker processes started ahead of time.

A figure is a pure function of plain data (:mod:`fmnist_pl.report.plots`), so a job is just the
function's name and its arguments, and any process can draw it. Drawing is what a report spends
most of its time on (~70 ms a figure, plus ~0.5 s to import matplotlib), all of it after the
training, on one core. :class:`Drawer` moves it off the critical path, the way a
``ProcessPoolExecutor`` is meant to be used:

* its workers are spawned when a compare starts, so their imports run on a core that torch's
  import leaves idle, and then wait, without using CPU, while the runs train;
* at the end, the figures are submitted first and drawn while this process computes the summary
  (:func:`fmnist_pl.study.compare.finish`); then this process draws those no worker has started.

Without a drawer, or if its workers are gone (killed, say), every figure is drawn here, the same.
The command line starts the drawer; a Python program may pass one to ``compare``/``sweep``
(``with Drawer() as d: compare(config, drawer=d)``) from under ``if __name__ == "__main__":``,
as a spawned worker imports the program's ``__main__`` module again, as with any ``multiprocessing``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from fmnist_pl.runtime.executors import worker_pids
from fmnist_pl.runtime.imports import collector_paused, freeze_at_exit
from fmnist_pl.runtime.stops import as_child_of, lifeline


@dataclass(frozen=True)
class FigureJob:
    """``plots.<kind>(*args, **kwargs)`` as a PNG data URI."""

    kind: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def draw(job: FigureJob) -> str:
    """Draw one figure and return it as a ``data:image/png`` URI (in whichever process runs it)."""
    from fmnist_pl.report import plots

    return plots.data_uri(plots.png_bytes(getattr(plots, job.kind)(*job.args, **job.kwargs)))


def _drawn_here(jobs: Sequence[FigureJob]) -> Callable[[], list[str]]:
    """The collector that draws ``jobs`` in this process, when called."""
    return lambda: [draw(job) for job in jobs]


def _worker_start(owner: Any) -> None:
    """A worker ignores Ctrl-C, leaves when its owner is gone (:func:`fmnist_pl.runtime.stops.as_child_of`),
    and imports matplotlib now, at a lower priority: its figures are needed only at the end, and
    meanwhile the cores go to what training waits for (the training workers' imports, say).

    Its exit, which the command waits for, skips collecting what matplotlib made at import
    (:func:`~fmnist_pl.runtime.imports.freeze_at_exit`, as the command line's own exit does)."""
    as_child_of(owner)
    with contextlib.suppress(OSError, AttributeError):  # not on Windows
        os.nice(10)
    with collector_paused():  # matplotlib's import, as the engine's (fmnist_pl.runtime.imports)
        importlib.import_module("fmnist_pl.report.plots")
    freeze_at_exit()


def default_workers() -> int:
    """One worker per core but one (this process computes the summary meanwhile), at most four:
    a report has a dozen figures; a big study's, about thirty."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class Drawer:
    """Worker processes that draw :class:`FigureJob` s; spawned (never forked: torch's threads)
    at construction, so that they are ready when the figures are. A context manager."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._lifeline = lifeline()  # the workers leave when this process is gone
        self._pool: cf.ProcessPoolExecutor | None = cf.ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(self._lifeline[0],),
        )
        # A no-op each: every worker process starts (and imports) now.
        self._started = [self._pool.submit(int) for _ in range(self.workers)]

    def submit(self, jobs: Sequence[FigureJob]) -> Callable[[], list[str]]:
        """Start drawing ``jobs``; returns a function that waits for their data URIs, in order."""
        if self._pool is None:
            return _drawn_here(jobs)
        try:
            futures = [self._pool.submit(draw, job) for job in jobs]
        except (RuntimeError, cf.process.BrokenProcessPool):  # shut down, or a worker died
            return _drawn_here(jobs)

        def collect() -> list[str]:
            # The jobs that no worker has taken yet are drawn here, from the last one back, while the
            # workers finish theirs: this process would only wait otherwise.
            drawn = {i: draw(jobs[i]) for i in reversed(range(len(jobs))) if futures[i].cancel()}
            for i, future in enumerate(futures):
                if i not in drawn:
                    try:
                        drawn[i] = future.result()
                    except cf.process.BrokenProcessPool:
                        drawn[i] = draw(jobs[i])
            return [drawn[i] for i in range(len(jobs))]

        return collect

    def worker_pids(self) -> list[int]:
        """The drawing processes' ids, once each has started (its initializer run); none once closed."""
        cf.wait(self._started)
        return worker_pids(self._pool)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            for end in self._lifeline:
                end.close()

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def draw_all(jobs: Sequence[FigureJob], drawer: Drawer | None = None) -> Callable[[], list[str]]:
    """Start drawing ``jobs`` (with ``drawer``'s workers, or here when collected); returns the collector."""
    return drawer.submit(jobs) if drawer is not None else _drawn_here(jobs)
