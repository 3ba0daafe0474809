"""Stop each run when it has spent its budget: seconds, training images or forward evaluations.

A Lightning callback, checked after every training step (as Lightning's own ``max_time`` is),
which sets ``trainer.should_stop``: Lightning then validates the epoch it stops in, and the
engine records that epoch as partial (its ``fraction``) with the budget that stopped it
(``stopped_by``). What was spent is callback state, so it is saved in the group's checkpoint
and a resumed run continues the same budget.

Why seconds are not Lightning's ``max_time``: that counts wall time from the first step, so a
run pays its warm-up (allocations, first kernels) and whatever else the machine was doing at its
turn. Here the clock starts after a warm-up step and, on a CPU, counts the CPU time of the thread
that trains (Lightning's hooks and the step run on it; torch's other OpenMP threads work in step
with it): time the OS gives another program is not counted. Side by side it varied less across
repeats than the process's CPU time, whose OpenMP threads spin while they wait (figures:
benchmarks/RESULTS.md). Runs of one compare take turns on the machine (:class:`TakeTurns`), so a
slow minute hits them alike; it is still not equal work, which the images and evaluations budgets are.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl

from fmnist_pl.config import Budget


class BudgetStop(pl.Callback):
    """Stops training once ``budget`` is spent; ``spent()`` says how much was, in every unit."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.images = 0  # before the current epoch
        self.evaluations = 0
        self.seconds = 0.0  # before this fit (a resume adds its own)
        self._clock: float | None = None  # set after the warm-up step of this fit
        self._cpu = True

    # ----------------------------------------------------------------- what was spent
    def _now(self) -> float:
        return time.thread_time() if self._cpu else time.perf_counter()

    def spent(self, pl_module: Any | None = None) -> dict[str, float]:
        """Images, evaluations and budget seconds spent so far (``pl_module``: add its current epoch)."""
        images, evaluations = self.images, self.evaluations
        if pl_module is not None:
            images += pl_module._train_seen
            evaluations += pl_module._train_evaluations
        seconds = self.seconds + (self._now() - self._clock if self._clock is not None else 0.0)
        return {"images": images, "evaluations": evaluations, "seconds": seconds}

    # ----------------------------------------------------------------- hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._cpu = pl_module.device.type == "cpu"
        self._clock = None
        pl_module.budget_clock = "training thread CPU time" if self._cpu else "wall time"
        if self.spent()[self.budget.kind] >= self.budget.amount:
            # Resumed from the checkpoint of the epoch that spent it (killed while testing, say):
            # not one more step.
            trainer.should_stop = True
            pl_module.stopped_by = self.budget.kind

    def pause(self) -> None:
        """Stop the clock (validation is not training); :meth:`resume` starts it again."""
        if self._clock is not None:
            self.seconds, self._clock = self.spent()["seconds"], None
            self._paused = True

    def resume(self, pl_module: Any | None = None) -> None:
        if getattr(self, "_paused", False):
            if pl_module is not None and pl_module.device.type == "cuda":
                import torch

                torch.cuda.synchronize(pl_module.device)
            self._clock, self._paused = self._now(), False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._clock is None:  # the warm-up step: the clock starts now
            if pl_module.device.type == "cuda":
                import torch

                torch.cuda.synchronize(pl_module.device)
            self._clock = self._now()
            if self.budget.kind == "seconds":
                return
        if self.spent(pl_module)[self.budget.kind] >= self.budget.amount:
            trainer.should_stop = True
            pl_module.stopped_by = self.budget.kind

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Validation is not training: the clock pauses while it runs."""
        if not trainer.sanity_checking:
            self.pause()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.resume(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # Before the module records the epoch and the checkpoint is written (callbacks run first,
        # checkpoints last): the totals then include this epoch.
        self.images += pl_module._train_seen
        self.evaluations += pl_module._train_evaluations

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = self.spent()["seconds"]
        self._clock = None

    # ----------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images, "evaluations": self.evaluations, "seconds": self.spent()["seconds"]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.images = int(state_dict.get("images", 0))
        self.evaluations = int(state_dict.get("evaluations", 0))
        self.seconds = float(state_dict.get("seconds", 0.0))


class TakeTurns(pl.Callback):
    """Between training steps, hand the machine to the next run of a seconds-budget compare once this
    run's slice is used up (:class:`fmnist_pl.runtime.turns.Turns`).

    The wait is added to the module's ``waited``, which its wall clocks (seconds per epoch, the
    anytime points' seconds) leave out: a run's seconds stay its own. The budget clock needs no
    correction: a thread that waits spends no CPU time.
    """

    def __init__(self, turns: Any, key: int) -> None:
        self.turns = turns
        self.key = key

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        pl_module.waited += self.turns.pass_on(self.key)
