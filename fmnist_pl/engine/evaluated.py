"""What every engine does the same way, whatever trains the weights: validate, record, test, resume.

A gradient group (:class:`~fmnist_pl.engine.lockstep.LitLockstep`, K runs in lockstep) and a
gradient-free run (:class:`~fmnist_pl.engine.search.LitSearch`, one search distribution) differ
only in how a training step changes the weights. Everything a run's results are made of - the
validation loss and accuracy after every epoch, the per-epoch history row (with images seen,
forward evaluations and seconds, so that methods share one axis of compute), the best epoch's
weights, the test predictions of the last and the best weights, and the record that survives
a resume - is done here once, on logits ``[K, 10, B]`` the subclass provides. That is what puts
both kinds of method on the same footing in the report and the statistics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics

from fmnist_pl.architecture import NUM_CLASSES
from fmnist_pl.config import RunPlan
from fmnist_pl.engine.history import MemberHistory
from fmnist_pl.store.checkpoints import IDENTITY_KEY


@dataclass
class MemberResult:
    """Everything training produced for one member, as data for the results writer."""

    plan: RunPlan
    history: MemberHistory  # its .test: "last"/"best" -> {"loss", "predictions"}
    test_targets: list[int]
    last_state: dict[str, torch.Tensor]  # plain-MLP state_dicts
    best_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    optimizer_implementation: str
    device: str
    lockstep_runs: int  # runs that shared its training group (1: trained alone)
    # history.test's predictions as tensors ("last"/"best" -> [images]): the results writer scores a
    # whole group at once from these, instead of turning every run's lists back into tensors
    test_predictions: dict[str, torch.Tensor]


class LitEvaluated(pl.LightningModule):
    """Base of the engines: K runs whose logits come from :meth:`member_logits` / :meth:`best_logits`.

    A subclass trains (``training_step``) and adds to ``_train_loss_sum``, ``_train_correct``
    (``[K]`` tensors), ``_train_seen`` (images per run) and ``_train_evaluations`` (forward
    evaluations per run: images x population for a search), and implements :meth:`keep_best`.

    Longer than our usual class because a LightningModule is one object by design: its hooks
    (training, validation, test, checkpoint) share the per-run state they update, and splitting
    them would only pass that state around.
    """

    def __init__(self, members: Sequence[RunPlan]) -> None:
        super().__init__()
        self.members = list(members)
        self.histories = [MemberHistory() for _ in self.members]
        self.register_buffer("active", torch.ones(len(self.members), dtype=torch.bool))
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(
            NUM_CLASSES, average="micro", multidim_average="samplewise"
        )
        self.stopped_by: str | None = None  # set by the budget callback (fmnist_pl.engine.budget) when it stops
        self.budget_clock: str | None = None
        self.identity: str | None = None  # whose runs these are, saved in every checkpoint (store.group_identity)
        self.previous_fit_seconds = 0.0  # training time before the checkpoint this fit resumed from
        self.waited = 0.0  # seconds this fit waited for other runs' turns (TakeTurns)
        self._fit_clock: float | None = None
        self._test: dict[str, dict[str, Any]] = {}
        self._test_targets: list[int] = []
        self._test_predictions: dict[str, torch.Tensor] = {}
        self._reset_epoch_sums()

    # ----------------------------------------------------------------- what a subclass provides
    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[K, 10, B]`` of every run's current weights on ``x: [B, 784]``."""
        raise NotImplementedError

    def best_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[K, 10, B]`` of every run's best-validation-epoch weights."""
        raise NotImplementedError

    def keep_best(self, k: int) -> None:
        """Run ``k`` has a new best validation loss: keep its current weights as its best."""
        raise NotImplementedError

    def epoch_logged(self, k: int) -> dict[str, float]:
        """Further TensorBoard scalars of run ``k`` for the epoch just recorded (a search's sigma)."""
        return {}

    # ----------------------------------------------------------------- clocks
    def epoch_clock(self) -> torch.optim.Optimizer:
        """An optimizer with one empty parameter, stepped through Lightning's public
        ``LightningOptimizer.step`` once per EPOCH (at its first batch, :meth:`tick`), returned last
        by ``configure_optimizers``; so ``trainer.global_step`` counts epochs here.

        Why it is not a checkpoint callback: every ``ModelCheckpoint`` save (epoch end, validation
        end, exception, ``save_last``) is skipped while ``trainer.global_step`` equals the step of its
        previous save, and in manual optimization ``global_step`` counts ``LightningOptimizer.step``
        calls alone. The engines update their weights outside that wrapper (a lockstep step may be a
        CUDA graph, a search's is EvoTorch's; the wrapper's bookkeeping on every batch would be a
        sizeable share of a small step), so without the clock ``global_step`` stays 0 and no
        checkpoint is ever written. Each way around it breaks something: overriding the callback's
        private skip test or bumping the loop's private step counter ties the engine to Lightning's
        internals, and saving with ``trainer.save_checkpoint`` from a callback of ours changes what a
        checkpoint holds (no clock in ``optimizer_states``, ``global_step`` 0), so a run in progress
        could not resume from its checkpoint (:meth:`holds` counts the clock among the optimizers)."""
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(0, device=self.device))], lr=0.0)

    def on_train_start(self) -> None:
        wrapped = self.optimizers()
        self._clock = wrapped[-1] if isinstance(wrapped, list) else wrapped

    def tick(self, batch_idx: int) -> None:
        """Step the epoch clock at an epoch's first batch (Lightning counts wrapper steps only inside training_step)."""
        if batch_idx == 0:
            self._clock.step()

    def wall(self) -> float:
        """Wall time less the time spent waiting for a turn (:class:`~fmnist_pl.engine.budget.TakeTurns`):
        the seconds this run trained, whatever else trained between its steps."""
        return time.perf_counter() - self.waited

    def fit_seconds(self) -> float:
        """Wall seconds of training so far, across interruptions (each resume adds its own)."""
        now = self.wall() - self._fit_clock if self._fit_clock is not None else 0.0
        return self.previous_fit_seconds + now

    def on_fit_start(self) -> None:
        self._fit_clock = self.wall()

    # ----------------------------------------------------------------- training sums
    def _reset_epoch_sums(self) -> None:
        # Zeroed in place, never reallocated: a captured CUDA graph keeps writing to these.
        k, device = len(self.members), self.active.device
        sums = getattr(self, "_train_loss_sum", None)
        if sums is None or sums.device != device:
            self._train_loss_sum = torch.zeros(k, device=device, dtype=torch.float64)
            self._train_correct = torch.zeros(k, device=device, dtype=torch.long)
            self._val_loss_sum = torch.zeros(k, device=device, dtype=torch.float64)
        else:
            for t in (self._train_loss_sum, self._train_correct, self._val_loss_sum):
                t.zero_()
        self._train_seen = 0
        self._train_evaluations = 0
        self._train_batches = 0
        self._val_seen = 0

    def on_train_epoch_start(self) -> None:
        self._reset_epoch_sums()
        self._epoch_started = self.wall()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._train_batches += 1

    def record_point(self, val_loss: list[float], val_acc: list[float], batches: int) -> None:
        """One anytime validation point of every run still training (:mod:`fmnist_pl.engine.anytime`):
        in its history and its TensorBoard run, at the step of its images seen. ``batches``: this
        epoch's so far."""
        epoch = self.current_epoch + batches / max(1, self.trainer.num_training_batches)
        seconds = self.wall() - self._epoch_started
        for k, hist in enumerate(self.histories):
            if hist.diverged:
                continue
            before = hist.epochs[-1] if hist.epochs else {}
            point = {
                "epoch": epoch,
                "images": int(before.get("images", 0)) + self._train_seen,
                "evaluations": int(before.get("evaluations", 0)) + self._train_evaluations,
                "seconds": sum(r["seconds"] for r in hist.epochs) + seconds,
                "val_loss": val_loss[k],
                "val_acc": val_acc[k],
            }
            hist.points.append(point)
            if self.loggers:
                self.loggers[k].log_metrics(
                    {"anytime/val_loss": val_loss[k], "anytime/val_acc": val_acc[k]}, step=point["images"]
                )

    @staticmethod
    def member_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-member, per-image cross-entropy ``[K, B]`` from logits ``[K, C, B]``."""
        return F.cross_entropy(logits, targets, reduction="none")

    # ----------------------------------------------------------------- validation
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.member_logits(x)
        targets = y.expand(len(self.members), -1)
        self._val_loss_sum += self.member_losses(logits, targets).sum(1)
        self._val_seen += len(y)
        self.val_acc.update(logits.argmax(1), targets)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._val_loss = (self._val_loss_sum / max(self._val_seen, 1)).tolist()
        self._val_acc = torch.atleast_1d(self.val_acc.compute()).tolist()  # torchmetrics squeezes K=1
        self.val_acc.reset()
        self._val_loss_sum.zero_()
        self._val_seen = 0

    def on_train_epoch_end(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = self.wall() - self._epoch_started
        epoch = self.current_epoch + 1
        n = len(self.members)
        train_loss = (self._train_loss_sum / max(self._train_seen, 1)).tolist()
        train_acc = (self._train_correct.double() / max(self._train_seen, 1)).tolist()
        val_loss = getattr(self, "_val_loss", [float("nan")] * n)
        val_acc = getattr(self, "_val_acc", [float("nan")] * n)
        for k, hist in enumerate(self.histories):
            if hist.diverged:
                continue
            before = hist.epochs[-1] if hist.epochs else {}
            # Running totals: the report's axes of compute (images seen, forward evaluations, seconds).
            images = int(before.get("images", 0)) + self._train_seen
            evaluations = int(before.get("evaluations", 0)) + self._train_evaluations
            row = {
                "epoch": epoch,
                "train_loss": train_loss[k],
                "train_acc": train_acc[k],
                "val_loss": val_loss[k],
                "val_acc": val_acc[k],
                "seconds": seconds,
                "images": images,
                "evaluations": evaluations,
            }
            if self.stopped_by is not None:
                hist.stopped_by = self.stopped_by
                if self._train_batches < self.trainer.num_training_batches:  # a budget ended it mid-epoch
                    row["fraction"] = self._train_batches / self.trainer.num_training_batches
            outcome = hist.record(row)
            if outcome == "diverged":
                self.active[k] = False
                continue
            if outcome == "best":
                self.keep_best(k)
            if self.loggers:
                self.loggers[k].log_metrics(
                    {
                        "train/loss": train_loss[k],
                        "train/acc": train_acc[k],
                        "val/loss": val_loss[k],
                        "val/acc": val_acc[k],
                        "time/epoch_seconds": seconds,
                        "compute/images": images,
                        "compute/evaluations": evaluations,
                        **self.epoch_logged(k),
                    },
                    step=epoch,
                )
        if not bool(self.active.any()):
            self.trainer.should_stop = True

    # ----------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        n = len(self.members)
        self._test = {
            which: {"loss": torch.zeros(n, dtype=torch.float64, device=self.device), "predictions": []}
            for which in ("last", "best")
        }
        self._test_targets = []
        self._test_predictions = {}

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        targets = y.expand(len(self.members), -1)
        for which, logits in (("last", self.member_logits(x)), ("best", self.best_logits(x))):
            self._test[which]["predictions"].append(logits.argmax(1))
            self._test[which]["loss"] += self.member_losses(logits, targets).sum(1)
        self._test_targets.append(y)

    def on_test_epoch_end(self) -> None:
        target = torch.cat(self._test_targets)
        for which in ("last", "best"):
            predictions = torch.cat(self._test[which]["predictions"], dim=1).cpu()
            self._test_predictions[which] = predictions
            preds = predictions.tolist()
            losses = (self._test[which]["loss"] / len(target)).tolist()
            for k, hist in enumerate(self.histories):
                hist.test[which] = {"loss": losses[k], "predictions": preds[k]}
        self._test_targets = target.tolist()

    def test_predictions(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s test predictions ("last"/"best" -> [images]), after ``trainer.test``."""
        return {which: predictions[k] for which, predictions in self._test_predictions.items()}

    # ----------------------------------------------------------------- resume
    def holds(self, checkpoint: dict[str, Any]) -> bool:
        """Whether a Lightning checkpoint (loaded as data) is one of this module's runs: their
        histories, and (subclasses add) the tensors and state that say whose weights these are."""
        histories = checkpoint.get("fmnist_histories")
        return isinstance(histories, list) and len(histories) == len(self.members)

    @staticmethod
    def _has_tensor(checkpoint: dict[str, Any], key: str, shape: tuple[int, ...]) -> bool:
        tensor = checkpoint.get("state_dict", {}).get(key)
        return tensor is not None and tuple(tensor.shape) == shape

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fmnist_histories"] = [h.to_dict() for h in self.histories]
        if self.identity is not None:
            checkpoint[IDENTITY_KEY] = self.identity
        checkpoint["fmnist_fit_seconds"] = self.fit_seconds()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("fmnist_histories")
        if saved:
            self.histories = [MemberHistory.from_dict(h) for h in saved]
        self.previous_fit_seconds = float(checkpoint.get("fmnist_fit_seconds", 0.0))
