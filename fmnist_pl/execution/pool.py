"""Training units in worker processes of this machine, at the same time: the CPU backend of a compare.

Why: one process that trains the default four optimizers in lockstep keeps a 2-core CPU only
partly busy. A step of four small MLPs at batch 32 is mostly Python and framework work (the
Lightning loop, autograd, the optimizers' bookkeeping) that runs on one core, and batch-32
matrix multiplies that split poorly over two threads. Two processes of one thread each, each
training half of the group in lockstep, overlap all of it, with bit-identical weights
(figures: ``benchmarks/RESULTS.md``).

A unit is what the Ray backend calls one (:func:`fmnist_pl.plan.split`): a lockstep group,
cut so that every worker has one, with its own epoch checkpoint. On one machine the disk is
shared, so a worker writes its runs' files into the output folder itself, exactly as training in
this process does; the driver only shows progress and answers stops and failures.

    driver ── TrainingPool(n) at start: a fork server imports Lightning once, then forks n workers
    driver ── one task per unit (its runs, the config, the arrays) ──> a worker, 1 thread per core share
    worker ── after every epoch checkpoint: (unit, epoch) on a queue ──> the driver's progress bar
    worker ── runs/<run>/*, tensorboard/<run>, checkpoints/group-*/last.ckpt ──> the output folder

Stops and faults: workers ignore Ctrl-C; the driver ends them (each unit keeps its last epoch
checkpoint, written atomically) and ``--resume`` continues every unit from its own. A checkpoint
that does not load is refused here, before any work is sent; an error in a worker (a checkpoint
of another group, say) is raised in the driver as it was raised there; a worker that dies (the
kernel's out-of-memory killer, say) ends the compare with one line saying how to resume.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import multiprocessing
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fmnist_pl.config import CompareConfig, RunPlan
from fmnist_pl.errors import ConfigError, GroupFailed, resume_command
from fmnist_pl.execution.backend import (
    Backend,
    Echo,
    InProcess,
    check_device,
    check_optimizers,
    device,
    local_units,
    train_unit,
)
from fmnist_pl.execution.driver import Driver, UnitProgress, drive
from fmnist_pl.runtime.executors import kill_workers, worker_pids
from fmnist_pl.runtime.forkserver import fork_server_pid, stop_fork_server
from fmnist_pl.runtime.sockets import keep_socket_paths_short
from fmnist_pl.runtime.stops import as_child_of, lifeline
from fmnist_pl.runtime.turns import Turns

PRELOAD = "fmnist_pl.runtime.preload"  # what a worker runs, imported before any work arrives
POLL_S = 0.5  # how often the driver reads the workers' epoch messages
CPU_ACCELERATORS = ("auto", "cpu")  # a pool trains on this machine's CPU cores; a GPU trains in this process
TURN_TAKERS = 8  # runs of a seconds budget that take turns at once (a process each; more wait for a place)
TURN_KEYS = 4096  # units one training call may hand turns among (a byte of shared memory each)


def usable_cores() -> int:
    """The cores this process may run on (a container's or ``taskset``'s share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def nvidia_gpu_present() -> bool:
    """Whether the NVIDIA driver shows a GPU, without importing torch (which the command line
    imports only after it has started the pool, so that their imports overlap)."""
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())


def default_workers(config: CompareConfig) -> int:
    """One training process per core, at most one per run (a unit holds at least one run).

    1 - every run in this process - on a GPU (``--accelerator gpu``, or ``auto`` where the driver
    shows one), which one process keeps busy, and for ``--separate``, which times each run alone.
    Under a seconds budget, a process for each run (at most :data:`TURN_TAKERS`): they take turns
    (:mod:`fmnist_pl.runtime.turns`), one training at a time on every core.
    """
    if config.accelerator not in CPU_ACCELERATORS or (config.accelerator == "auto" and nvidia_gpu_present()):
        return 1
    if config.takes_turns:
        return max(1, min(TURN_TAKERS, config.run_count))
    if config.trains_alone:
        return 1
    return max(1, min(usable_cores(), config.run_count))


def check_workers(workers: int, config: CompareConfig, ray: str | None = None) -> None:
    """``--workers`` asked of a compare that cannot use them is one line, not silently ignored."""
    if workers < 1:
        raise ConfigError(f"--workers {workers}: at least 1 (1 trains every run in this process)")
    if workers == 1:
        return
    if ray is not None:
        raise ConfigError(
            "--workers sets the training processes of this machine; with --ray the cluster's CPUs "
            "decide: drop --workers"
        )
    if config.accelerator not in CPU_ACCELERATORS:
        raise ConfigError(
            f"--workers {workers} trains on CPU cores; with --accelerator {config.accelerator} every "
            "run trains in this process: drop --workers or use --accelerator cpu"
        )
    if config.trains_alone and not config.takes_turns:
        raise ConfigError(
            f"--workers {workers} trains runs at the same time, but --separate times each run alone: drop --workers"
        )


# ---------------------------------------------------------------------------- the worker side
_epochs: Any = None  # this worker's end of the driver's epoch queue (set by _worker_start)
_turns: Turns | None = None  # the pool's turns, for runs that take turns (set by _worker_start)


def _worker_start(owner: Any, epochs: Any, turns: Turns) -> None:
    """Ignore Ctrl-C and leave with the pool's owner (:func:`~fmnist_pl.runtime.stops.as_child_of`); have the
    engine imported (:mod:`fmnist_pl.runtime.preload`; the fork server did it, where there is one)."""
    global _epochs, _turns
    as_child_of(owner)
    _epochs, _turns = epochs, turns
    importlib.import_module(PRELOAD)


@dataclass(frozen=True)
class UnitDone:
    """What a worker returns for a finished unit (its files are already in the output folder)."""

    pid: int
    seconds: float  # the task's wall time, including Lightning's start and the test


def train_in_worker(
    out: Path, key: int, unit: list[RunPlan], config: CompareConfig, threads: int, arrays: Any, take_turns: bool = False
) -> UnitDone:
    """Train one unit in this worker with ``threads`` torch threads, from its checkpoint if it has
    one, and write its runs' files into ``out`` (:func:`fmnist_pl.execution.backend.train_unit`).
    ``take_turns``: train only in this unit's turns (:mod:`fmnist_pl.runtime.turns`), from its
    start to its last file."""
    import torch

    began = time.perf_counter()
    torch.set_num_threads(threads)

    def tell(trainer: Any, path: Path) -> None:
        for logger in trainer.loggers:  # live TensorBoard, and nothing lost if the worker is ended
            logger.experiment.flush()
        if _epochs is not None:
            _epochs.put((key, trainer.current_epoch + 1))

    if not take_turns or _turns is None:
        train_unit(out, config, unit, arrays, "cpu", progress=False, after_checkpoint=tell)
        return UnitDone(os.getpid(), time.perf_counter() - began)
    from fmnist_pl.engine.budget import TakeTurns

    waited = _turns.join(key)
    try:
        train_unit(out, config, unit, arrays, "cpu", False, tell, [TakeTurns(_turns, key)])
    finally:
        _turns.leave(key)
    return UnitDone(os.getpid(), time.perf_counter() - began - waited)


# ---------------------------------------------------------------------------- the driver side
class TrainingPool(Backend):
    """``workers`` processes of this machine that train units at the same time, started at
    construction, so that their imports overlap this process's. A context manager.

    They are forked from a fork server that imports the engine (Lightning, ~2.5 s of one core) once
    for all of them, before any torch thread exists - never from this process, whose torch threads
    a fork would break. Where there is no fork server (Windows), each is spawned and imports it.

    The command line starts one (see :func:`default_workers`); a Python program may pass one to
    ``compare``/``sweep`` from under ``if __name__ == "__main__":``, as every worker imports the
    program's ``__main__`` module again, as with any ``multiprocessing``::

        with TrainingPool(2) as pool:
            compare(CompareConfig(epochs=30), backend=pool)

    On a GPU, and for runs that must have the machine to themselves, it leaves the training to
    this process (:meth:`for_config`).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a training pool needs at least 1 worker, not {workers}")
        # The fork server's socket, and those torch makes in the workers (which inherit the folder).
        keep_socket_paths_short()
        forkserver = "forkserver" in multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if forkserver else "spawn")
        if forkserver:
            context.set_forkserver_preload([PRELOAD])
        self.workers = workers
        self._forkserver = forkserver
        self._server_before = fork_server_pid()  # one this pool starts, it stops when it closes
        self._used = False
        self._epochs = context.Queue()
        self._lifeline = lifeline()  # the workers leave when this process is gone
        self._turns = Turns(context, TURN_KEYS)
        self._pool: cf.ProcessPoolExecutor | None = cf.ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_worker_start,
            initargs=(self._lifeline[0], self._epochs, self._turns),
        )
        # From a thread: starting a worker waits for the fork server's imports, which this process
        # need not wait for until it has work to send.
        self._starting = threading.Thread(
            target=_start_workers, args=(self._pool, workers), daemon=True, name="pool-start"
        )
        self._starting.start()

    def check(self, runs: Sequence[RunPlan], config: CompareConfig) -> None:
        # This process reads the data into torch tensors once the checks pass: it imports torch now,
        # while the workers start, not after waiting for them. The optimizers are built in a worker,
        # which has imported torch's optimizers (torch._dynamo), so that this process need not.
        import torch  # noqa: F401

        check_device(config, runs)
        check_optimizers(runs, lambda fn, *args: self.run_in_worker(fn, *args).result())

    def describe(self, config: CompareConfig) -> str:
        return device(config.accelerator)[1]

    def split(self, planned: Sequence[Sequence[RunPlan]], config: CompareConfig) -> list[list[RunPlan]]:
        return local_units(config, planned, self.workers)

    def for_config(self, config: CompareConfig) -> Backend:
        """This pool on a CPU; this process where one GPU is kept busy by one process, or where runs
        timed alone must not share the machine (``--separate``; a seconds budget, unless its runs
        take turns in this pool's workers)."""
        if device(config.accelerator)[0] != "cpu":
            return InProcess()
        if config.trains_alone and not (config.takes_turns and self.workers > 1):
            return InProcess()
        return self

    def train(
        self, out: Path, config: CompareConfig, todo: Sequence[Sequence[RunPlan]], arrays: Any, echo: Echo
    ) -> None:
        """Train every unit of ``todo``, at most ``workers`` at once; returns when all are written."""
        if self._pool is None:
            raise RuntimeError("this training pool was closed")
        if not todo:
            return
        self._used = True
        self._starting.join()
        at_once = min(self.workers, len(todo))
        turns = config.takes_turns
        if turns and len(todo) > TURN_KEYS:
            raise ConfigError(
                f"{len(todo)} runs under a seconds budget: at most {TURN_KEYS} take turns; split the compare"
            )
        threads = usable_cores() if turns else max(1, usable_cores() // at_once)
        how = (
            f"taking turns of {self._turns.slice_s:g} s, one training at a time" if turns and at_once > 1 else "at once"
        )
        echo(
            f"training {len(todo)} group{'s' if len(todo) != 1 else ''} in {at_once} process"
            f"{'es' if at_once != 1 else ''} {how}, {threads} thread{'s' if threads != 1 else ''} each"
        )
        futures = {
            self._pool.submit(train_in_worker, out, key, list(unit), config, threads, arrays, turns): key
            for key, unit in enumerate(todo)
        }
        progress = UnitProgress(len(todo), config.epochs, echo, config.progress)

        def wait(pending: list[cf.Future]) -> tuple[list[cf.Future], list[cf.Future]]:
            ready, rest = cf.wait(pending, timeout=POLL_S, return_when=cf.FIRST_COMPLETED)
            return list(ready), list(rest)

        def done(future: cf.Future) -> tuple[str, str]:
            key = futures[future]
            names = ", ".join(r.name for r in todo[key])
            try:
                result: UnitDone = future.result()
            except cf.process.BrokenProcessPool:
                raise GroupFailed(
                    f"the worker process training {names} died (killed, or out of memory?); finished "
                    f"epochs are kept: continue with: {resume_command(out)}"
                ) from None
            return str(key), (
                f"group {key + 1} of {len(todo)} done ({names}) in process {result.pid} in {result.seconds:.1f} s"
            )

        # A stop or a failure ends every worker: each unit keeps its last epoch checkpoint.
        drive(list(futures), Driver(wait, lambda: self._drain(progress), done, lambda _: self._end()), progress)

    @property
    def closed(self) -> bool:
        """Whether its workers are gone (closed, or ended by a stop or a failed group)."""
        return self._pool is None

    def run_in_worker(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """Run ``fn(*args)`` in one of the workers, once they have started: a way to look inside a
        worker (what it imported, its collector) for tests and debugging."""
        if self._pool is None:
            raise RuntimeError("this training pool was closed")
        self._starting.join()
        return self._pool.submit(fn, *args)

    def worker_pids(self) -> list[int]:
        """The worker processes' ids, once they have started (none once closed)."""
        self._starting.join()
        return worker_pids(self._pool)

    def _drain(self, progress: UnitProgress) -> None:
        while True:
            try:
                key, epoch = self._epochs.get_nowait()
            except (queue.Empty, OSError, ValueError):  # empty, or closed by a stop
                return
            progress.epoch(str(key), epoch)

    def _end(self) -> None:
        """Kill the workers now (no epoch is lost: checkpoints are written atomically) and close."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        kill_workers(pool)
        self._release(pool)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not self._used:
            # Nothing was trained (bad input, or a compare that ran on a GPU): the fork server may
            # still be importing, for seconds (which the start of the workers waits for), holding
            # this process's output open; it is not needed.
            self._stop_own_fork_server()
        self._starting.join()
        self._release(pool)
        # Idle now; left alone it would end only with this process, and then take its own
        # interpreter's exit (~0.4 s) while still holding the output pipes a caller reads.
        self._stop_own_fork_server()

    def _stop_own_fork_server(self) -> None:
        """Stop the fork server if this pool started it (one that was there before is left alone)."""
        if self._forkserver and fork_server_pid() not in (None, self._server_before):
            stop_fork_server()

    def _release(self, pool: cf.ProcessPoolExecutor) -> None:
        pool.shutdown(wait=True, cancel_futures=True)
        self._epochs.close()
        for end in self._lifeline:
            end.close()


def _start_workers(pool: cf.ProcessPoolExecutor, workers: int) -> None:
    """Start every worker now (a no-op task each), or nothing if the pool is closed meanwhile."""
    with contextlib.suppress(Exception):  # closed (or its fork server stopped) before they started
        for _ in range(workers):
            pool.submit(int)


def local_backend(workers: int) -> Backend:
    """A :class:`TrainingPool` of ``workers``, or :class:`InProcess` (train in this process) for 1."""
    return TrainingPool(workers) if workers > 1 else InProcess()
