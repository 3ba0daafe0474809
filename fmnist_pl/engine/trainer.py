"""A Lightning Trainer around one group (lockstep runs, or one gradient-free run): fit, test, hand back results.

The Trainer gets one TensorBoard logger per run (``trainer.loggers[k]`` is run k's
``tensorboard/<run>``), an atomic epoch checkpoint of the whole group (what ``--resume``
continues), and a progress bar. Writing a run's files is not done here (see
:mod:`fmnist_pl.execution.unit`): the engine returns data.
"""

from __future__ import annotations

import logging
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fmnist_pl import store
from fmnist_pl.config import Budget, RunPlan
from fmnist_pl.data.datamodule import FashionMNISTDataModule
from fmnist_pl.engine.anytime import AnytimeValidation
from fmnist_pl.engine.budget import BudgetStop, TakeTurns
from fmnist_pl.engine.evaluated import LitEvaluated, MemberResult
from fmnist_pl.engine.lockstep import LitLockstep
from fmnist_pl.runtime.stops import Stopped
from fmnist_pl.runtime.training import training_settings
from fmnist_pl.store import group_checkpoint

# Lightning warns that epochs shorter than log_every_n_steps log nothing per step: we log per
# epoch on purpose. The pytree notice is Lightning's own use of a deprecated torch API.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # batches are on-device slices
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")  # resume
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


def quiet_lightning() -> None:
    """Keep Lightning's start-up tips to itself: the litlogger advert, ``LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES``,
    "GPU available: True", and the hint to lower float32 matmul precision on tensor-core GPUs,
    which we decline on purpose (full fp32, so that CPU and GPU results differ only by rounding).
    Warnings and errors still show."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: a kill mid-write never corrupts last.ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        store.atomic_torch_save(Path(path), checkpoint)


AfterCheckpoint = Callable[[pl.Trainer, Path], None]


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, telling ``after`` each time it has written the epoch's checkpoint
    (the Ray backend ships it, and the TensorBoard files, to the driver: no shared disk needed)."""

    def __init__(self, after: AfterCheckpoint | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after = after
        self._told: tuple[str, int] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Top-1 without a monitor keeps the newest epoch as best_model_path; tell once per write.
        path = Path(self.best_model_path) if self.best_model_path else None
        if self.after is None or path is None or not path.exists():
            return
        written = (str(path), path.stat().st_mtime_ns)
        if written != self._told:
            self._told = written
            self.after(trainer, path)


class StopAtEpoch(pl.Callback):
    """End the fit after epoch ``epoch`` of a longer plan: the Trainer keeps ``max_epochs`` (the plan),
    so the learning-rate schedule and the anytime points are the full runs', and the fit is their
    exact prefix; its epoch checkpoint is what a successive-halving survivor goes on from."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch >= self.epoch:  # resumed from the checkpoint of that epoch: not one more step
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the module records the epoch and the checkpoint is written (monitoring callbacks last).
        if trainer.current_epoch + 1 >= self.epoch:
            trainer.should_stop = True


def _callbacks(group_dir: Path, progress: bool, after_checkpoint: AfterCheckpoint | None) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = [
        # The whole group's state after every epoch: what --resume continues from.
        # (monitor=None, top 1: the newest epoch; save_last alone saves nothing since Lightning 2.6)
        EpochCheckpoint(
            after_checkpoint,
            dirpath=str(group_dir),
            filename="last",
            monitor=None,
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        ),
    ]
    if progress:
        # Redrawing the bar every step costs more than a step; 20 is still smooth.
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    return callbacks


def make_trainer(
    out_dir: Path,
    runs: Sequence[str],
    epochs: int,
    accelerator: str,
    group_dir: Path,
    progress: bool = True,
    limit_train_batches: int | None = None,
    budget: Budget | None = None,
    after_checkpoint: AfterCheckpoint | None = None,
    eval_points: int = 0,
    extra_callbacks: Sequence[pl.Callback] = (),
    stop_epoch: int | None = None,
) -> pl.Trainer:
    """A Trainer whose ``loggers[k]`` is run k's TensorBoard run (``tensorboard/<run>``).

    ``budget``: what each run may spend (:class:`~fmnist_pl.engine.budget.BudgetStop`, checked after
    every step; the epoch it stops in is validated and recorded, partial).
    ``after_checkpoint(trainer, path)``: called after every epoch checkpoint is written.
    ``eval_points``: validations per run spread over its budget (:mod:`fmnist_pl.engine.anytime`),
    where its epoch ends are fewer (a budget, or fewer epochs than points).
    ``extra_callbacks``: run after those (a seconds budget's turn-taking hands the machine on after them).
    ``stop_epoch``: end the fit after this epoch of the ``epochs`` plan (:class:`StopAtEpoch`).

    The epoch checkpoint is written on a thread while the next epoch trains (Lightning's
    ``AsyncCheckpointIO``: it snapshots the tensors first, so the file holds the epoch's end): a
    study's checkpoint is large enough that writing it in line would hold a GPU idle for a good
    part of an epoch. Not when
    ``after_checkpoint`` must see each file as soon as the epoch ends (the Ray backend ships it).
    A process killed before the write completes resumes from the epoch before.
    """
    quiet_lightning()
    loggers = [
        TensorBoardLogger(save_dir=str(out_dir / "tensorboard"), name=run, version="", default_hp_metric=False)
        for run in runs
    ]
    callbacks = _callbacks(group_dir, progress, after_checkpoint)
    # First, in this order (before the checkpoint, which Lightning runs last): the budget sets
    # should_stop that the anytime validation reads.
    stop = BudgetStop(budget) if budget is not None else None
    anytime = (
        AnytimeValidation(eval_points, epochs, stop)
        if eval_points and (stop is not None or epochs < eval_points)
        else None
    )
    at_epoch = StopAtEpoch(stop_epoch) if stop_epoch is not None and stop_epoch < epochs else None
    callbacks[:0] = [c for c in (at_epoch, stop, anytime, *extra_callbacks) if c is not None]
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO() if after_checkpoint is not None else AsyncCheckpointIO(AtomicCheckpointIO())],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10**9,  # we log per epoch, per run, ourselves
        limit_train_batches=limit_train_batches,
        deterministic=False,
        default_root_dir=str(group_dir),
    )


@dataclass
class GroupResult:
    """What training one lockstep group produced: each member's results and the group's wall time."""

    members: list[MemberResult]
    fit_seconds: float  # the group's training wall time, summed over interruptions and resumes
    trainer: pl.Trainer  # its loggers[k] is run k's TensorBoard run, still open for the test scalars
    spent: dict[str, Any] | None = None  # under a budget: the images, evaluations and budget seconds each run spent


def is_search(group: Sequence[RunPlan]) -> bool:
    """A group of one gradient-free run (the planner never mixes kinds: see ``run.plan.groups``)."""
    return group[0].optimizer.info.gradient_free


def build_module(group: Sequence[RunPlan]) -> LitEvaluated:
    """The engine for a group: an EvoTorch search for a gradient-free run, else the lockstep ensemble."""
    if is_search(group):
        from fmnist_pl.engine.search import LitSearch

        if len(group) != 1:
            raise ValueError("a gradient-free run trains alone")
        return LitSearch(group[0])
    return LitLockstep(group, hidden=group[0].hidden)


def train_group(
    group: Sequence[RunPlan],
    datamodule: FashionMNISTDataModule,
    out_dir: Path,
    epochs: int,
    accelerator: str = "auto",
    progress: bool = True,
    limit_train_batches: int | None = None,
    resume: Path | None = None,
    budget: Budget | None = None,
    after_checkpoint: AfterCheckpoint | None = None,
    identity: str | None = None,
    eval_points: int = 0,
    extra_callbacks: Sequence[pl.Callback] = (),
    stop_epoch: int | None = None,
) -> GroupResult:
    """Train ``group`` (runs of one architecture, seed-major, or one gradient-free run), then test every run.

    ``identity``: the group's fingerprint (:func:`fmnist_pl.store.group_identity`), saved in its
    checkpoint; a ``resume`` checkpoint must carry the same."""
    group_dir = group_checkpoint(out_dir, group).parent
    model = build_module(group)
    model.identity = identity
    trainer = make_trainer(
        out_dir,
        [r.name for r in group],
        epochs,
        accelerator,
        group_dir,
        progress,
        limit_train_batches,
        budget,
        after_checkpoint,
        eval_points,
        extra_callbacks,
        stop_epoch,
    )
    for logger, run in zip(trainer.loggers, group):
        logger.hparams.update(run.to_dict())  # its hparams.yaml: this run's own key (written at the first save)
    if resume is not None:
        check_checkpoint(resume, model)
    try:
        with training_settings():
            # weights_only: a checkpoint is data, never code to unpickle.
            trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume) if resume else None, weights_only=True)
    except SIGTERMException:
        raise Stopped(signal.SIGTERM) from None
    except (KeyboardInterrupt, SystemExit):
        # Outside a compare's own handlers (stops_as_exceptions), Lightning turns Ctrl-C into
        # SystemExit(1) after its graceful shutdown; the last finished epoch's checkpoint stays.
        raise Stopped(signal.SIGINT) from None
    if trainer.interrupted:
        raise Stopped(signal.SIGINT)
    trainer.test(model, datamodule=datamodule, verbose=False)
    stop = next((c for c in trainer.callbacks if isinstance(c, BudgetStop)), None)
    spent = {**stop.spent(), "clock": model.budget_clock} if stop is not None else None
    if spent is not None and any(isinstance(c, TakeTurns) for c in trainer.callbacks):
        spent["waited"] = model.waited  # seconds other runs trained between this one's steps
    return GroupResult(model.results(), model.fit_seconds(), trainer, spent)


def check_checkpoint(path: Path, model: LitEvaluated) -> None:
    """A group checkpoint must load as data (``weights_only``), be this compare's (its identity) and
    hold ``model``'s runs (:meth:`LitEvaluated.holds`), before Lightning is handed it: a damaged or
    foreign one is one line saying what to do, not a traceback."""
    if model.identity is not None:
        checkpoint = store.check_group_checkpoint(path, model.identity)
    else:
        checkpoint = store.load_checkpoint(path)
    if not isinstance(checkpoint, dict) or not model.holds(checkpoint):
        group = model.members
        raise store.ResultsError(
            f"{path} does not hold this group's {len(group)} runs of hidden "
            f"{','.join(map(str, group[0].hidden))}; {store.restart_fix(path)}"
        )
