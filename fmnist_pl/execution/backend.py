"""Where a compare's groups train: one interface, three backends.

* :class:`InProcess` (here) - this process, one group after another: a GPU, ``--workers 1``,
  and runs that must have the machine to themselves (``--separate``, ``--time-budget``).
* :class:`~fmnist_pl.execution.pool.TrainingPool` - worker processes of this machine, at once.
* :class:`~fmnist_pl.execution.ray_backend.RayCluster` - Ray tasks on a cluster.

A backend checks that the runs fit before anything is written (:meth:`Backend.check`), cuts the
planner's lockstep groups into units that fit its workers (:meth:`Backend.split`; a run's
numbers never depend on its unit), and trains units into the output folder
(:meth:`Backend.train`): every run's files land there as if it had trained here. Every backend
runs :func:`train_unit` for a unit; the orchestration (:mod:`fmnist_pl.study`) only sees this
interface.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from fmnist_pl.config import CompareConfig, RunPlan
from fmnist_pl.errors import ConfigError
from fmnist_pl.plan import check_fits, group_need, split

Echo = Callable[[str], None]


def device(accelerator: str) -> tuple[str, str]:
    """This machine's device for ``accelerator``: ("cuda" | "cpu", its name for config.json)."""
    import torch

    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return ("cuda", torch.cuda.get_device_name(0)) if cuda else ("cpu", f"CPU ({os.cpu_count()} cores)")


def check_device(config: CompareConfig, runs: Sequence[RunPlan]) -> None:
    """The accelerator asked for exists here, and every run fits in its memory (groups that do
    not are cut: :meth:`InProcess.split`)."""
    import torch

    from fmnist_pl.engine.memory import available_bytes

    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--accelerator {config.accelerator}, but torch {torch.__version__} sees no CUDA GPU "
            "here; use --accelerator cpu (or auto: the GPU when there is one)"
        )
    if config.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--accelerator mps, but this machine has no Apple GPU (MPS); use --accelerator cpu or auto")
    free, where = available_bytes(device(config.accelerator)[0])
    if free is not None:
        check_fits(runs, config.batch_size, free, f"the {where}")


def check_optimizers(runs: Sequence[RunPlan], in_worker: Callable[..., Any] | None = None) -> None:
    """Every run's optimizer accepts its hyperparameters (:func:`~fmnist_pl.optim.registry.check_buildable`).

    ``in_worker(fn, *args)``: runs ``fn`` in a process that has imported the engine (a training
    pool's worker) and returns its result. The shipped entries are built there: the first
    ``torch.optim`` optimizer a process builds imports ``torch._dynamo``, a second or more of a
    command's start that this process, which trains nothing, then never pays. An entry registered
    by the calling program is built here, where it is known.
    """
    from fmnist_pl.optim import registry

    specs = {(r.optimizer.name, r.optimizer.setting()): r.optimizer for r in runs}.values()
    here, there = [], []
    for spec in filter(registry.needs_building, specs):
        (there if in_worker is not None and registry.is_shipped(spec) else here).append(spec)
    registry.check_buildable(here)
    if there:
        in_worker(registry.check_buildable, there)


def local_units(config: CompareConfig, planned: Sequence[Sequence[RunPlan]], slots: int) -> list[list[RunPlan]]:
    """The planner's groups, each cut (:func:`~fmnist_pl.plan.halves`) until it fits this machine's
    device memory, and into at least ``slots`` units (processes that train at once), each fitting
    its share of the memory: a big study trains in several lockstep groups instead of running out."""
    from fmnist_pl.engine.memory import available_bytes

    free, _ = available_bytes(device(config.accelerator)[0])
    if free is None and slots == 1:
        return [list(g) for g in planned]
    return split(planned, slots, lambda unit: free is None or group_need(unit, config.batch_size) <= free / slots)


def train_unit(
    out: Path,
    config: CompareConfig,
    unit: Sequence[RunPlan],
    arrays: Any,
    accelerator: str,
    progress: bool,
    after_checkpoint: Any = None,
    callbacks: Sequence[Any] = (),
) -> None:
    """Train one unit into ``out`` and write its runs' files: what every backend runs for a unit.

    The engine is imported first with the garbage collector paused (once per process:
    :func:`fmnist_pl.runtime.imports.import_engine`); a pool's workers have it already.
    """
    from fmnist_pl.runtime.imports import import_engine

    import_engine()
    from fmnist_pl.execution.unit import train_and_write

    train_and_write(out, config, unit, arrays, accelerator, progress, after_checkpoint, callbacks)


class Backend(abc.ABC):
    """Where units train. A context manager: leaving it releases what it started."""

    #: Whether units train on this machine (its device must hold them; a cluster sizes its own).
    here: bool = True
    #: Training processes that run at once (recorded in config.json).
    workers: int = 1

    @abc.abstractmethod
    def check(self, runs: Sequence[RunPlan], config: CompareConfig) -> None:
        """Every run fits a worker, its optimizer accepts its hyperparameters (:func:`check_optimizers`)
        and the accelerator asked for is there; before anything is written."""

    @abc.abstractmethod
    def describe(self, config: CompareConfig) -> str:
        """The device line of config.json and of the terminal, e.g. ``CPU (2 cores)``."""

    @abc.abstractmethod
    def split(self, planned: Sequence[Sequence[RunPlan]], config: CompareConfig) -> list[list[RunPlan]]:
        """The planner's lockstep groups cut into this backend's units of work."""

    @abc.abstractmethod
    def train(
        self, out: Path, config: CompareConfig, todo: Sequence[Sequence[RunPlan]], arrays: Any, echo: Echo
    ) -> None:
        """Train every unit of ``todo``; returns when each run's files are in ``out``."""

    def for_config(self, config: CompareConfig) -> Backend:
        """The backend that actually trains ``config``: itself, unless it cannot (a pool on a GPU)."""
        return self

    def uses_gpu(self, config: CompareConfig) -> bool:
        """Whether the units train on GPUs (the float32 precision note)."""
        return device(config.accelerator)[0] == "cuda"

    def resume_options(self) -> tuple[str, ...]:
        """What a printed ``--resume`` command must add to train on this backend again."""
        return ()

    def close(self) -> None:  # noqa: B027 - a backend that starts nothing has nothing to release
        """Release what this backend started (processes, a cluster connection)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcess(Backend):
    """Every unit in this process, one after another, with Lightning's own progress bar."""

    def check(self, runs: Sequence[RunPlan], config: CompareConfig) -> None:
        check_optimizers(runs)
        check_device(config, runs)

    def describe(self, config: CompareConfig) -> str:
        return device(config.accelerator)[1]

    def split(self, planned: Sequence[Sequence[RunPlan]], config: CompareConfig) -> list[list[RunPlan]]:
        return local_units(config, planned, 1)

    def train(
        self, out: Path, config: CompareConfig, todo: Sequence[Sequence[RunPlan]], arrays: Any, echo: Echo
    ) -> None:
        for unit in todo:
            train_unit(out, config, unit, arrays, config.accelerator, config.progress)
