"""One lockstep training: a Trainer with a TensorBoard logger per run -> per-run artifacts on disk."""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fmnist_pl import metrics, plots, results
from fmnist_pl.data import FashionMNISTDataModule
from fmnist_pl.denormals import flush_denormals
from fmnist_pl.heap import retain_freed_memory
from fmnist_pl.idx import CLASS_NAMES
from fmnist_pl.model import LitLockstep

# Lightning warns that epochs shorter than log_every_n_steps log nothing per step: we log per
# epoch on purpose. The pytree notice is Lightning's own use of a deprecated torch API.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # batches are on-device slices
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")  # resume
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")

GRID_IMAGES = 40  # the reference showed the first 40 test images


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: a kill mid-write never corrupts last.ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        results.atomic_torch_save(Path(path), checkpoint)


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped training; the last epoch's checkpoint is kept for --resume."""


def make_trainer(out_dir: Path, runs: Sequence[str], epochs: int, accelerator: str, group_dir: Path,
                 progress: bool = True, limit_train_batches: int | None = None) -> pl.Trainer:
    """A Trainer whose ``loggers[k]`` is run k's TensorBoard run (``tensorboard/<run>``)."""
    loggers = [TensorBoardLogger(save_dir=str(out_dir / "tensorboard"), name=run, version="",
                                 default_hp_metric=False) for run in runs]
    callbacks: list[pl.Callback] = [
        # The whole group's state after every epoch: what --resume continues from.
        # (monitor=None, top 1: the newest epoch; save_last alone saves nothing since Lightning 2.6)
        ModelCheckpoint(dirpath=str(group_dir), filename="last", monitor=None, save_top_k=1,
                        save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    if progress:
        # Redrawing the bar every step costs more than a step; 20 is still smooth.
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    return pl.Trainer(
        max_epochs=epochs, accelerator=accelerator, devices=1, logger=loggers, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=10**9,  # we log per epoch, per run, ourselves
        limit_train_batches=limit_train_batches, deterministic=False, default_root_dir=str(group_dir),
    )


@contextlib.contextmanager
def fast_cpu_math() -> Iterator[None]:
    """While training: flush denormals to zero, keep freed memory, skip Lightning's NVML probe.

    * Denormals: as TensorFlow (the reference) does on CPU; without it a 30-epoch CPU run slowed
      from 5.9 to 8 s/epoch (see :mod:`fmnist_pl.denormals`).
    * Freed memory stays in the heap: no page faults for the tensors every step reallocates
      (see :mod:`fmnist_pl.heap`; 20 models: 11.3 -> 8.9 ms a step).
    * Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (fork safety for DataLoader workers,
      which we do not use); with it every Adam step's CUDA-graph health check probes NVML
      (~40 µs measured) on a machine without a GPU.
    """
    flushed = flush_denormals(True)
    nvml_check = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    try:
        with retain_freed_memory():
            yield
    finally:
        if flushed:
            flush_denormals(False)
        if nvml_check is not None:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = nvml_check


def group_checkpoint(out_dir: Path, members: list[dict[str, Any]]) -> Path:
    """Where a lockstep group keeps its last-epoch Trainer checkpoint (what resume continues)."""
    return out_dir / "checkpoints" / f"group-{members[0]['run'].replace('/', '_')}" / "last.ckpt"


def train_group(members: list[dict[str, Any]], hidden: Sequence[int], datamodule: FashionMNISTDataModule,
                out_dir: Path, epochs: int, accelerator: str = "auto", progress: bool = True,
                limit_train_batches: int | None = None, resume: Path | None = None) -> list[dict[str, Any]]:
    """Train ``members`` (dicts of run, optimizer, seed) in lockstep; write and return each run's metrics."""
    group_dir = group_checkpoint(out_dir, members).parent
    model = LitLockstep(members, hidden=hidden)
    trainer = make_trainer(out_dir, [m["run"] for m in members], epochs, accelerator, group_dir,
                           progress, limit_train_batches)
    started = time.perf_counter()
    try:
        with fast_cpu_math():
            # weights_only: a checkpoint is data, never code to unpickle.
            trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume) if resume else None, weights_only=True)
    except (KeyboardInterrupt, SystemExit) as exc:
        # Lightning turns Ctrl-C into SystemExit(1) and SIGTERM into SIGTERMException(SystemExit)
        # after its own graceful shutdown; the checkpoint of the last finished epoch stays.
        raise TrainingInterrupted(type(exc).__name__) from None
    if trainer.interrupted:
        raise TrainingInterrupted("interrupted")
    fit_seconds = time.perf_counter() - started
    trainer.test(model, datamodule=datamodule, verbose=False)
    return [write_run(model, trainer, k, out_dir, fit_seconds) for k in range(len(members))]


def _state_bytes(state: dict[str, Any]) -> int:
    return sum(t.numel() * t.element_size() for s in state["state"] for t in s.values()
               if torch.is_tensor(t) and t.dim() > 0)


def write_run(model: LitLockstep, trainer: pl.Trainer, k: int, out_dir: Path, fit_seconds: float) -> dict[str, Any]:
    """Every artifact of run ``k``: history, metrics, report text, plots, checkpoints, TensorBoard hparams."""
    member, hist = model.members[k], model.histories[k]
    run_dir = out_dir / "runs" / member.run
    run_dir.mkdir(parents=True, exist_ok=True)
    targets = model.test_targets
    test = {which: {key: v for key, v in hist.test[which].items() if key != "predictions"}
            for which in ("last", "best")}
    for which in ("last", "best"):
        test[which]["report"] = metrics.classification_report_dict(test[which], CLASS_NAMES)
    predictions = {which: hist.test[which]["predictions"] for which in ("last", "best")}
    opt_state = model.member_optimizer_state(k)
    epochs_run = len(hist.epochs)
    epoch_seconds = [row["seconds"] for row in hist.epochs]
    summary = {
        "run": member.run, "optimizer": member.optimizer.to_dict(), "seed": member.seed,
        "hidden": list(model.net.hidden), "status": hist.status, "diverged_epoch": hist.diverged_epoch,
        "epochs": epochs_run, "best_epoch": hist.best_epoch,
        "best_val_loss": hist.best_val_loss if math.isfinite(hist.best_val_loss) else None,
        "test": test,
        "timing": {
            "seconds_per_epoch": (sum(epoch_seconds) / len(epoch_seconds)) if epoch_seconds else None,
            "fit_seconds": fit_seconds, "lockstep_runs": len(model.members),
            "note": "wall time of the lockstep group, shared by all its runs" if len(model.members) > 1
            else "this run's own wall time",
        },
        "optimizer_state_bytes": _state_bytes(opt_state),
        "optimizer_implementation": model.member_optimizer_implementation(k),
        "device": str(model.device),
    }
    results.write_history(run_dir, hist.epochs)
    results.write_json(run_dir / results.PREDICTIONS_FILE, {"targets": targets, **predictions})
    results.atomic_write_text(run_dir / "classification_report.txt",
                              metrics.classification_report_text(test["last"]["report"]))
    plots.save(plots.learning_curves(hist.epochs, title=member.run), run_dir / "learning_curves.png")
    plots.save(plots.confusion_matrix(test["last"]["confusion_matrix"], CLASS_NAMES, title=member.run),
               run_dir / "confusion_matrix.png")
    images = trainer.datamodule.splits["test"][0][:GRID_IMAGES].cpu()
    plots.save(plots.image_grid(images, targets[:GRID_IMAGES], predictions["last"][:GRID_IMAGES], CLASS_NAMES,
                                title=f"{member.run}: first {GRID_IMAGES} test images"),
               run_dir / "predictions.png")
    ckpt_dir = run_dir / "checkpoints"
    common = {"hidden": list(model.net.hidden), "optimizer": member.optimizer.to_dict(), "seed": member.seed}
    results.atomic_torch_save(ckpt_dir / "last.pt", common | {
        "epoch": epochs_run, "state_dict": model.net.member_state_dict(k), "optimizer_state": opt_state})
    results.atomic_torch_save(ckpt_dir / "best.pt", common | {
        "epoch": hist.best_epoch, "val_loss": summary["best_val_loss"],
        "state_dict": model.net.member_state_dict(k, model._best_params())})
    logger = trainer.loggers[k]
    last = test["last"]
    logger.log_metrics({"test/loss": last["loss"], "test/acc": last["accuracy"], "test/f1": last["macro_f1"]},
                       step=epochs_run)
    logger.log_hyperparams(
        {"optimizer": member.optimizer.name, "seed": member.seed, "hidden": ",".join(map(str, model.net.hidden)),
         **{f"opt/{k2}": (str(v) if isinstance(v, (tuple, list)) else v) for k2, v in member.optimizer.hparams.items()}},
        metrics={"hparams/test_acc": last["accuracy"], "hparams/test_f1": last["macro_f1"],
                 "hparams/best_val_loss": summary["best_val_loss"] or math.nan})
    logger.finalize("success")
    # metrics.json last: its presence marks the run finished (resume skips it).
    results.write_json(run_dir / results.METRICS_FILE, summary)
    return summary
