"""One unit of work: a group of runs -> trained -> each run's files in the output folder.

What every backend runs for a unit (this process, a pool's worker, a Ray task in its scratch
folder), and the only module of the package that workers import to train (with the engine).
A run's files: history, metrics, predictions, report text, checkpoints, TensorBoard scalars.
Results only, plain data and tensors: figures are drawn by the report from these files
(:mod:`fmnist_pl.report`), so ``fmnist-pl report DIR`` can always rebuild everything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch

from fmnist_pl import store
from fmnist_pl.analysis.metrics import (
    classification_metrics_many,
    classification_report_dict,
    classification_report_text,
)
from fmnist_pl.config import CompareConfig, RunPlan
from fmnist_pl.data.idx import CLASS_NAMES, FashionMNISTArrays
from fmnist_pl.engine.evaluated import MemberResult


def _state_bytes(state: Any) -> int:
    """Bytes of the optimizer's (or searcher's) state tensors; step counters (0-d) are not counted."""
    if torch.is_tensor(state):
        return state.numel() * state.element_size() if state.dim() > 0 else 0
    if isinstance(state, dict):
        return sum(_state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_state_bytes(v) for v in state)
    return 0


def test_metrics(members: Sequence[MemberResult]) -> list[dict[str, dict[str, Any]]]:
    """Each member's test metrics of its last and best weights (``"last"``/``"best"`` -> metrics,
    loss, classification report), computed for the whole group at once."""
    out: list[dict[str, dict[str, Any]]] = [{} for _ in members]
    # A group's members are scored on the same test images: one targets tensor serves them all.
    for targets, ks in _by_targets(members):
        target = torch.tensor(targets)
        for which in ("last", "best"):
            preds = torch.stack([members[k].test_predictions[which] for k in ks])
            for k, metrics in zip(ks, classification_metrics_many(preds, target)):
                out[k][which] = metrics | {
                    "loss": members[k].history.test[which]["loss"],
                    "report": classification_report_dict(metrics, CLASS_NAMES),
                }
    return out


def _by_targets(members: Sequence[MemberResult]) -> list[tuple[list[int], list[int]]]:
    """(test targets, member indices) pairs: one pair when the members share the test set, as a group does."""
    shared: list[tuple[list[int], list[int]]] = []
    for k, member in enumerate(members):
        for targets, ks in shared:
            if member.test_targets is targets or member.test_targets == targets:
                ks.append(k)
                break
        else:
            shared.append((member.test_targets, [k]))
    return shared


def write_run(
    member: MemberResult,
    out_dir: Path,
    fit_seconds: float,
    logger: Any | None,
    test: dict[str, dict[str, Any]],
    files: store.FileWriter,
    spent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every file of one run, handed to ``files`` (written on its threads); returns its
    ``metrics.json`` content. ``logger``: its TensorBoard run; ``test``: its entry of
    :func:`test_metrics`, computed for its whole group."""
    summary = run_metrics(member, fit_seconds, test, spent)
    run_dir = store.run_dir(out_dir, member.plan.name)
    # metrics.json last: its presence marks the run finished (resume skips it).
    written = [*run_files(member, run_dir, summary), (run_dir / store.METRICS_FILE, store.json_bytes(summary))]
    if logger is not None:
        _log_test(logger, member.plan, test["last"], len(member.history.epochs), summary["best_val_loss"])
    files.write(written)
    return summary


def run_metrics(
    member: MemberResult, fit_seconds: float, test: dict[str, dict[str, Any]], spent: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A run's ``metrics.json``: its settings, status, test results, timing and implementation; under a
    budget, what ended the run (``stopped_by``: the budget's kind, or None for its epochs) and what
    it spent (``spent``: images, evaluations, budget seconds and their clock)."""
    plan, hist = member.plan, member.history
    epoch_seconds = [row["seconds"] for row in hist.epochs]
    return {
        **plan.to_dict(),
        "status": hist.status,
        "diverged_epoch": hist.diverged_epoch,
        "epochs": len(hist.epochs),
        "best_epoch": hist.best_epoch,
        "best_val_loss": hist.best_val_loss if math.isfinite(hist.best_val_loss) else None,
        "test": test,
        "timing": {
            "seconds_per_epoch": (sum(epoch_seconds) / len(epoch_seconds)) if epoch_seconds else None,
            "fit_seconds": fit_seconds,
            "lockstep_runs": member.lockstep_runs,
            "note": "wall time of the lockstep group, shared by all its runs"
            if member.lockstep_runs > 1
            else "this run's own wall time",
        },
        "optimizer_state_bytes": _state_bytes(member.optimizer_state),
        "optimizer_implementation": member.optimizer_implementation,
        "device": member.device,
        **({"stopped_by": hist.stopped_by, "spent": spent} if spent is not None else {}),
    }


def run_files(member: MemberResult, run_dir: Path, metrics: dict[str, Any]) -> list[tuple[Path, bytes]]:
    """A run's files but ``metrics.json``: history, predictions, classification report, checkpoints."""
    plan, hist = member.plan, member.history
    common = {"hidden": list(plan.hidden), "optimizer": plan.optimizer.to_dict(), "seed": plan.seed}
    # 30,000 numbers: compact (json's C encoder; with an indent it encodes in Python, 30 ms a run)
    predictions = {"targets": member.test_targets, **{w: hist.test[w]["predictions"] for w in ("last", "best")}}
    last = {"epoch": len(hist.epochs), "state_dict": member.last_state, "optimizer_state": member.optimizer_state}
    best = {"epoch": hist.best_epoch, "val_loss": metrics["best_val_loss"], "state_dict": member.best_state}
    report = classification_report_text(metrics["test"]["last"]["report"])
    return [
        *store.history_files(run_dir, hist.epochs),
        *([(run_dir / store.POINTS_FILE, store.json_bytes(hist.points))] if hist.points else []),
        (run_dir / store.PREDICTIONS_FILE, store.json_bytes(predictions, indent=None)),
        (run_dir / "classification_report.txt", report.encode("utf-8")),
        (run_dir / "checkpoints" / "last.pt", store.torch_bytes(common | last)),
        (run_dir / "checkpoints" / "best.pt", store.torch_bytes(common | best)),
    ]


def _log_test(logger: Any, plan: Any, last: dict[str, Any], step: int, best_val_loss: float | None) -> None:
    """Test scalars and the HPARAMS row of one run's TensorBoard run."""
    logger.log_metrics(
        {"test/loss": last["loss"], "test/acc": last["accuracy"], "test/f1": last["macro_f1"]}, step=step
    )
    logger.log_hyperparams(
        {
            "optimizer": plan.optimizer.name,
            "seed": plan.seed,
            "hidden": ",".join(map(str, plan.hidden)),
            **{f"opt/{k}": (str(v) if isinstance(v, (tuple, list)) else v) for k, v in plan.optimizer.hparams.items()},
        },
        metrics={
            "hparams/test_acc": last["accuracy"],
            "hparams/test_f1": last["macro_f1"],
            "hparams/best_val_loss": best_val_loss if best_val_loss is not None else math.nan,
        },
    )
    logger.finalize("success")


def datamodule_for(group: Sequence[RunPlan], config: CompareConfig, arrays: FashionMNISTArrays) -> Any:
    """The group's data: a search scores its population on its own fitness batch; gradient runs
    step on --batch-size, each seed's batches in its own order (the seeds come from the runs' plans)."""
    from fmnist_pl.data.datamodule import FashionMNISTDataModule

    search = group[0].optimizer.info.gradient_free
    batch_size = int(group[0].optimizer.hparams["batch_size"]) if search else config.batch_size
    seeds = list(dict.fromkeys(r.seed for r in group))
    return FashionMNISTDataModule(
        arrays=arrays, batch_size=batch_size, seeds=seeds, stack_seeds=not search, val_size=config.val_size
    )


def train_and_write(
    out: Path,
    config: CompareConfig,
    group: Sequence[RunPlan],
    arrays: FashionMNISTArrays,
    accelerator: str,
    progress: bool,
    after_checkpoint: Any = None,
    callbacks: Sequence[Any] = (),
) -> None:
    """Train ``group`` into the folder ``out`` - from its checkpoint there, if it has one - and write
    its runs' files. ``after_checkpoint``, ``callbacks`` (Lightning's, added to the Trainer's): see
    :func:`fmnist_pl.engine.trainer.make_trainer`."""
    from fmnist_pl.engine.trainer import train_group

    ckpt = store.group_checkpoint(out, group)
    trained = train_group(
        group,
        datamodule_for(group, config, arrays),
        out,
        config.epochs,
        accelerator,
        progress,
        config.limit_train_batches,
        resume=ckpt if ckpt.exists() else None,
        budget=config.budget_spec,
        eval_points=config.eval_points,
        after_checkpoint=after_checkpoint,
        identity=store.group_identity(config, group),
        extra_callbacks=callbacks,
        stop_epoch=config.stop_epoch,
    )
    tests = test_metrics(trained.members)
    with store.FileWriter() as files:
        for k, member in enumerate(trained.members):
            write_run(member, out, trained.fit_seconds, trained.trainer.loggers[k], tests[k], files, trained.spent)
