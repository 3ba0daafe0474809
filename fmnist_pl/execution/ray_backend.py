"""Training groups as Ray tasks: one task per unit of work, results back to the driver, no shared disk.

Ray Core, not Ray Tune: a unit here is a *lockstep group* of many runs (one Tune trial is one
configuration), and since Ray 2.7 Tune/Train keep checkpoints only on cloud storage or a
shared filesystem, which a cluster of lab machines often lacks. Tasks give the rest directly:
declared resources, retries when a worker or node dies, cancellation.

    driver ── ray.put(arrays) ──────────────────────────────> every task (no dataset on the nodes)
    task   ── after every epoch: group checkpoint + TensorBoard files ──> Mailbox (an actor on the head)
    driver <── every half second: drains the Mailbox into the output folder (live TensorBoard,
               the checkpoint --resume continues from); a finished task returns all its runs' files,
               which the driver writes as a local run does (metrics.json last)

Faults: a task whose worker process or node dies is run again by Ray (``max_retries``), from
its unit's newest checkpoint in the Mailbox; resuming from an epoch checkpoint gives the
uninterrupted numbers (tests/test_resume.py). An exception in our code is not retried
(``retry_exceptions=False``, Ray's default for tasks): the study stops once, traceback in
``errors.log``. Ctrl-C cancels every task, keeps the newest checkpoints, and ``--resume``
continues.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import ray

from fmnist_pl import store
from fmnist_pl.config import CompareConfig, RunPlan
from fmnist_pl.errors import GroupFailed, resume_command
from fmnist_pl.execution.backend import Backend, Echo, check_optimizers, train_unit
from fmnist_pl.execution.cluster import RaySession, connect, parse_address
from fmnist_pl.execution.driver import Driver, UnitProgress, drive
from fmnist_pl.plan import check_fits, group_need, split
from fmnist_pl.store import group_checkpoint

MAX_RETRIES = 3  # runs of a task after its worker or node died (Ray's default for tasks)
POLL_S = 0.5  # how often the driver writes what the workers sent (TensorBoard lags by at most this)
GPU_SHARE_MAX = 4  # at most this many units share one GPU, and only when all of them fit its memory
MEMORY_MARGIN = 0.8  # of a worker's memory a unit may plan to use (estimates are not promises)
ERRORS_FILE = "errors.log"


@dataclass(frozen=True)
class Resources:
    """What each task asks Ray for, and the device it then trains on."""

    num_cpus: float
    num_gpus: float
    accelerator: str  # "cpu" or "gpu" for Lightning inside the task
    slots: int  # units the cluster runs at once with these requests
    per_unit_bytes: float  # memory a unit may use on its device


@dataclass
class UnitResult:
    """What a finished task sends back: every file of its runs, relative to the output folder."""

    files: dict[str, bytes]
    where: str  # node and process that finished it
    seconds: float  # the task's wall time, including Lightning's start and the test


@dataclass
class Epoch:
    unit: str
    epoch: int
    where: str


# ---------------------------------------------------------------------------- sizing
@ray.remote(num_gpus=1)
def _gpu_memory() -> int:
    import torch

    return int(torch.cuda.get_device_properties(0).total_memory)


def resources(session: RaySession, config: CompareConfig, largest: float) -> Resources:
    """One CPU per unit (its torch threads), or a GPU share: 1/k of a GPU when k units of the
    ``largest`` size fit its memory (at most GPU_SHARE_MAX), else a whole one."""
    if session.uses_gpus(config.accelerator):
        if session.gpu_bytes is None:  # probed once per session: the probe waits for a whole GPU
            session.gpu_bytes = ray.get(_gpu_memory.remote())
        total = session.gpu_bytes
        share = max(1, min(GPU_SHARE_MAX, int(total * MEMORY_MARGIN // max(largest, 1))))
        return Resources(
            num_cpus=1,
            num_gpus=1 / share,
            accelerator="gpu",
            slots=int(session.gpus) * share,
            per_unit_bytes=total * MEMORY_MARGIN,
        )
    # The smallest node bounds a unit: Ray may place any unit on any node.
    per_cpu = min(m / max(c, 1) for m, c in zip(session.node_memory, session.node_cpus))
    return Resources(
        num_cpus=1,
        num_gpus=0,
        accelerator="cpu",
        slots=max(1, int(session.cpus)),
        per_unit_bytes=per_cpu * MEMORY_MARGIN,
    )


def check(session: RaySession, runs: Sequence[RunPlan], config: CompareConfig) -> None:
    """Every run fits one worker of this cluster (checked before anything is written)."""
    res = resources(session, config, max(group_need([r], config.batch_size) for r in runs))
    check_fits(runs, config.batch_size, res.per_unit_bytes, "a worker of this cluster has")


def units(session: RaySession, planned: Sequence[Sequence[RunPlan]], config: CompareConfig) -> list[list[RunPlan]]:
    """The planner's groups cut into units that fit a worker, and at least as many as the cluster
    runs at once (so every worker has one). A run's numbers do not depend on its unit."""
    res = resources(session, config, max(group_need(g, config.batch_size) for g in planned))
    return split(planned, res.slots, lambda u: group_need(u, config.batch_size) <= res.per_unit_bytes)


def unit_key(unit: Sequence[RunPlan]) -> str:
    """A unit's name in the mailbox: its checkpoint folder's name (unique per run set)."""
    return group_checkpoint(Path("."), unit).parent.name


# ---------------------------------------------------------------------------- the worker side
@ray.remote(num_cpus=0, max_restarts=0)
class Mailbox:
    """Per-epoch messages from the tasks, held until the driver drains them; and each running
    unit's newest checkpoint, which a retried task resumes from."""

    def __init__(self) -> None:
        self.latest: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.checkpoints: dict[str, bytes] = {}
        self.epochs: list[Epoch] = []

    def epoch(self, unit: str, epoch: int, where: str, checkpoint: bytes, files: dict[str, bytes]) -> None:
        self.latest[unit] = self.checkpoints[unit] = checkpoint
        self.files.update(files)
        self.epochs.append(Epoch(unit, epoch, where))

    def newest(self, unit: str) -> bytes | None:
        return self.latest.get(unit)

    def drain(self) -> tuple[list[Epoch], dict[str, bytes], dict[str, bytes]]:
        out = (self.epochs, self.files, self.checkpoints)
        self.epochs, self.files, self.checkpoints = [], {}, {}
        return out

    def forget(self, unit: str) -> None:
        self.latest.pop(unit, None)


def _files(root: Path, *folders: str) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for folder in folders
        if (root / folder).exists()
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


SCRATCH_PREFIX = "fmnist-pl-unit-"  # + the worker's pid + "-": a task's scratch folder in the node's temp folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_dead_scratch() -> None:
    """Remove the scratch folders of workers that are gone. A task removes its own when it ends,
    but a worker killed mid-task (the very failure retries are for; or the cluster stopped by
    Ctrl-C) never reaches that, and its folder holds an epoch checkpoint (gigabytes for a study)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)
def train_task(
    key: str,
    unit: list[RunPlan],
    config: CompareConfig,
    accelerator: str,
    threads: int,
    arrays: Any,
    start: bytes | None,
    mailbox: Any,
) -> UnitResult:
    """Train one unit in a scratch folder of this node and return its runs' files.

    ``start``: the checkpoint the driver had when it submitted the task (a --resume); the
    mailbox's is newer when this is a retry after a worker or node died.
    """
    import torch

    began = time.perf_counter()
    torch.set_num_threads(threads)
    where = f"node {ray.get_runtime_context().get_node_id()[:8]} ({ray.util.get_node_ip_address()}) pid {os.getpid()}"
    _remove_dead_scratch()
    work = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    try:
        resume = group_checkpoint(work, unit)
        checkpoint = ray.get(mailbox.newest.remote(key)) or start
        if checkpoint is not None:
            resume.parent.mkdir(parents=True)
            resume.write_bytes(checkpoint)

        def ship(trainer: Any, path: Path) -> None:
            for logger in trainer.loggers:
                logger.experiment.flush()
            # Waited for: an epoch counts as kept once the mailbox holds it.
            ray.get(
                mailbox.epoch.remote(
                    key, trainer.current_epoch + 1, where, path.read_bytes(), _files(work, "tensorboard")
                )
            )

        # A fresh scratch folder: it holds a checkpoint exactly when one was written above.
        train_unit(work, config, unit, arrays, accelerator, progress=False, after_checkpoint=ship)
        return UnitResult(_files(work, "runs", "tensorboard"), where, time.perf_counter() - began)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _remove_dead_scratch()  # a worker killed while this task ran may not have been reaped at its start


# ---------------------------------------------------------------------------- the driver side
def _write(out: Path, files: dict[str, bytes]) -> None:
    """Files from a worker into the output folder; ``metrics.json`` (a run's finished mark) last."""
    root = out.resolve()
    for rel in sorted(files, key=lambda r: Path(r).name == store.METRICS_FILE):
        path = (root / rel).resolve()
        if root not in path.parents:
            raise store.ResultsError(f"a worker sent a file outside the output folder: {rel}")
        store.atomic_write_bytes(path, files[rel])


def _failure(out: Path, unit: Sequence[RunPlan], index: int, total: int, exc: Exception, spec: str) -> GroupFailed:
    """The one-line error for a unit that failed, with its traceback in errors.log (and on stderr)."""
    names = ", ".join(r.name for r in unit)
    # The worker's own traceback (Ray keeps it as text), without the terminal colours of its title.
    text = re.sub(r"\x1b\[[0-9;]*m", "", getattr(exc, "traceback_str", None) or str(exc)).rstrip()
    store.atomic_write_text(out / ERRORS_FILE, f"group {index} of {total} ({names}) failed:\n{text}\n")
    print(text, file=sys.stderr)
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        what = f"{type(cause).__name__}: {cause}"
    else:  # the worker or node died more often than Ray retries
        what = f"{type(exc).__name__} after {MAX_RETRIES} retries"
    first = what.strip().splitlines()[0] if what.strip() else type(exc).__name__
    return GroupFailed(
        f"group {index} of {total} ({names}) failed: {first}; traceback in {out / ERRORS_FILE}; "
        f"after a fix, continue with: {resume_command(out, '--ray', spec)}"
    )


def train(
    session: RaySession, out: Path, config: CompareConfig, todo: Sequence[Sequence[RunPlan]], arrays: Any, echo: Echo
) -> None:
    """Every unit of ``todo`` as a Ray task; their files written into ``out`` as they arrive."""
    if not todo:
        return
    res = resources(session, config, max(group_need(u, config.batch_size) for u in todo))
    where = f" - dashboard: {session.dashboard}" if session.dashboard else ""
    gpu = f", {res.num_gpus:g} GPU" if res.num_gpus else ""
    echo(
        f"Ray: {len(todo)} groups of {min(map(len, todo))}-{max(map(len, todo))} runs on {session.describe()}, "
        f"{res.num_cpus:g} CPU{gpu} each{where}"
    )
    mailbox = Mailbox.options(resources={"node:__internal_head__": 0.001}).remote()
    data = ray.put(arrays)
    tasks: dict[Any, tuple[int, list[RunPlan]]] = {}
    for index, unit in enumerate(todo, 1):
        ckpt = group_checkpoint(out, unit)
        start = ckpt.read_bytes() if ckpt.exists() else None
        ref = train_task.options(num_cpus=res.num_cpus, num_gpus=res.num_gpus).remote(
            unit_key(unit), list(unit), config, res.accelerator, max(1, math.floor(res.num_cpus)), data, start, mailbox
        )
        tasks[ref] = (index, list(unit))
    by_key = {unit_key(u): u for _, u in tasks.values()}
    progress = UnitProgress(len(todo), config.epochs, echo, config.progress)

    def wait(pending: list[Any]) -> tuple[list[Any], list[Any]]:
        return ray.wait(pending, num_returns=len(pending), timeout=POLL_S)

    def drain() -> None:
        epochs, files, checkpoints = ray.get(mailbox.drain.remote())
        _write(out, files)
        for key, data_ in checkpoints.items():
            store.atomic_write_bytes(group_checkpoint(out, by_key[key]), data_)
        for e in epochs:
            progress.epoch(e.unit, e.epoch)

    def done(ref: Any) -> tuple[str, str]:
        index, unit = tasks[ref]
        try:
            result: UnitResult = ray.get(ref)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayError) as exc:
            raise _failure(out, unit, index, len(todo), exc, session.target.spec) from None
        _write(out, result.files)
        mailbox.forget.remote(unit_key(unit))
        return unit_key(unit), (
            f"group {index} of {len(todo)} done ({len(unit)} run{'s' if len(unit) != 1 else ''}: "
            f"{', '.join(r.name for r in unit)}) on {result.where} in {result.seconds:.1f} s"
        )

    def abort(pending: list[Any]) -> None:
        for ref in pending:
            ray.cancel(ref, force=True)
        try:
            drain()  # keep the newest checkpoints: --resume continues from them
        except Exception:  # noqa: BLE001 - a Ctrl-C may have reached the mailbox too; the older ones stay
            traceback.print_exc(limit=0)

    drive(list(tasks), Driver(wait, drain, done, abort), progress)


class RayCluster(Backend):
    """Units as Ray tasks on the cluster at ``spec`` (a ``--ray`` value, parsed at once: a bad one is
    a one-line error). Connected at first use - after everything else a user can get wrong has
    been checked - and disconnected on :meth:`close`, which for ``local[:N]`` also stops the Ray
    instance and its workers. One backend may serve several compares (a sweep's two)."""

    here = False

    def __init__(self, spec: str) -> None:
        self.target = parse_address(spec)
        self._session: RaySession | None = None

    @property
    def session(self) -> RaySession:
        if self._session is None:
            self._session = connect(self.target)
        return self._session

    def check(self, runs: Sequence[RunPlan], config: CompareConfig) -> None:
        check_optimizers(runs)
        check(self.session, runs, config)

    def describe(self, config: CompareConfig) -> str:
        return self.session.describe()

    def split(self, planned: Sequence[Sequence[RunPlan]], config: CompareConfig) -> list[list[RunPlan]]:
        return units(self.session, planned, config)

    def train(
        self, out: Path, config: CompareConfig, todo: Sequence[Sequence[RunPlan]], arrays: Any, echo: Echo
    ) -> None:
        train(self.session, out, config, todo, arrays, echo)

    def uses_gpu(self, config: CompareConfig) -> bool:
        return self.session.uses_gpus(config.accelerator)

    def resume_options(self) -> tuple[str, ...]:
        return ("--ray", self.target.spec)

    def close(self) -> None:
        if self._session is not None:
            self._session = None
            ray.shutdown()
